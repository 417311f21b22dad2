"""Imports run down the layers (docs/ARCHITECTURE.md): no module imports a package above its own."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fgmd"
LAYER = {
    "runtime": 0, "codes": 0, "tables": 0, "allocator": 0,
    "config": 1, "data": 2, "models": 3,
    "training": 4, "evaluation": 4, "retrieval": 4, "export": 4,
    "experiments": 5, "api": 5, "errors": 6, "demo": 6,
    "cli": 7, "serve": 7, "__init__": 7, "__main__": 8,
}  # fmt: skip
# Config validation asks the modules that own a choice list, at call time (docs/DESIGN.md §6).
ALLOWED = {("config", "fgmd.data.datasets"), ("config", "fgmd.models.backbone"), ("config", "fgmd.models.pretrained")}


def imported_modules(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_no_import_runs_up_the_layers():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for module in imported_modules(ast.parse(path.read_text())):
            parts = module.split(".")
            if parts[0] != "fgmd" or (own, module) in ALLOWED:
                continue
            target = parts[1] if len(parts) > 1 else "__init__"
            if target != own and LAYER[target] > LAYER[own]:
                upward.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert upward == []


def test_every_top_level_module_has_a_layer():
    names = {
        p.name.removesuffix(".py") for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()
    }
    assert names <= set(LAYER), names - set(LAYER)
