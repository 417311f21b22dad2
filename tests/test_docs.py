"""The docs stand on their own: the architecture tree lists every module, no reference to a design
document outside the project."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_architecture_tree_names_every_module():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    tree = text[text.index("```\nfgmd/") : text.index("```", text.index("```\nfgmd/") + 4)]
    package = ROOT / "src" / "fgmd"
    missing = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if path.name not in ("__init__.py", "__main__.py")
        and path.parent.name != "commands"  # one module per subcommand, listed as a folder
        and path.name not in tree
    ]
    assert missing == []


def test_design_references_point_into_the_project():
    assert (ROOT / "docs" / "DESIGN.md").is_file()
    offenders = []
    for path in [*ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md"), *(ROOT / "src").rglob("*.py")]:
        in_docs = path.parent.name == "docs"
        for number, line in enumerate(path.read_text().splitlines(), 1):
            linked = "docs/DESIGN.md" in line or (in_docs and "(DESIGN.md)" in line)
            if "DESIGN.md" in line and not linked and path.name != "DESIGN.md":
                offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert offenders == []
