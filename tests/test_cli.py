import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import tiny_overrides

SRC = str(Path(__file__).resolve().parents[1] / "src")


def run_cli(*args, cwd=None):
    """Run ``python -m fgmd`` on this checkout's sources (installed or not)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "fgmd", *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_cli_end_to_end_on_a_generated_dataset(tmp_path):
    data = tmp_path / "data"
    out = run_cli("generate-demo-data", "--out", str(data), "--per-class", "10")
    assert out.returncode == 0, out.stderr
    assert (data / "pairs.csv").is_file()

    run = tmp_path / "run"
    overrides = tiny_overrides(data, run, **{"train.epochs": 1})
    out = run_cli("train", "--quiet", *overrides)
    assert out.returncode == 0, out.stderr
    assert "best epoch" in out.stdout

    out = run_cli("eval", "--quiet", "--checkpoint", str(run / "best.pt"))
    assert out.returncode == 0, out.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["directions"]) == {"ms->pan", "pan->ms"}
    assert 0.0 <= metrics["mean_map"] <= 1.0
    assert "| mean" in out.stdout and "ms → pan" in out.stdout
    assert "mAP (tie-aware)" in out.stdout and "mAP (ties by index)" in out.stdout
    assert 0.0 <= metrics["mean_map_tie"] <= 1.0 and "tie-aware" in metrics["ties"]


def test_cli_info_reports_both_models():
    out = run_cli("info", "model.width_mult=0.25", "--image-size", "64")
    assert out.returncode == 0, out.stderr
    assert "FG-MD" in out.stdout and "baseline" in out.stdout and "total" in out.stdout


def test_cli_user_errors_are_short_and_name_the_problem(tmp_path):
    out = run_cli("train", f"data.root={tmp_path / 'nowhere'}", f"out_dir={tmp_path / 'run'}")
    assert out.returncode == 2
    assert "nowhere" in out.stderr and "Expected layout" in out.stderr
    assert "Traceback" not in out.stderr
    out = run_cli("train", "model.bits=13")
    assert out.returncode == 2 and "model.bits" in out.stderr
    out = run_cli("eval", "--checkpoint", str(tmp_path / "missing.pt"))
    assert out.returncode == 2 and "missing.pt" in out.stderr


def test_library_messages_name_no_command_line_flag():
    """Only fgmd.cli spells flags; library errors are tagged with option names instead."""
    import ast
    import re

    flag = re.compile(r"(^|[\s(])--[a-z][a-z-]*")
    offenders = []
    for path in Path(SRC, "fgmd").rglob("*.py"):
        if "cli" in path.relative_to(SRC).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and flag.search(node.value):
                if not isinstance(getattr(node, "parent", None), ast.Expr):
                    offenders.append(f"{path.name}:{node.lineno}: {node.value.strip()[:60]}")
    docstrings = {
        f"{p.name}:{n.body[0].lineno}"
        for p in Path(SRC, "fgmd").rglob("*.py")
        for n in ast.walk(ast.parse(p.read_text()))
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(n) is not None
    }
    assert [o for o in offenders if o.split(": ")[0] not in docstrings] == []


def test_cli_adds_the_flag_for_an_option_a_library_error_names():
    from fgmd.cli.main import build_parser, flag_hint
    from fgmd.runtime.hints import suggest

    parser = build_parser()
    error = suggest(FileExistsError("x exists"), "append", "overwrite")
    assert flag_hint(parser, "index", error) == " (see --append, --overwrite)"
    assert flag_hint(parser, "search", error) == ""  # search has neither flag
    assert flag_hint(parser, "index", FileExistsError("untagged")) == ""


def test_help_version_and_argument_errors_do_not_import_torch():
    """`fgmd --help`, `--version` and argument errors answer without loading torch (fast)."""
    probe = (
        "import sys\n"
        "from fgmd.cli.main import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit as stop:\n"
        "    code = stop.code\n"
        "print('exit', code, 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    for args, code in (
        (["--help"], 0),
        (["--version"], 0),
        (["train", "--help"], 0),
        (["eval"], 2),
        (["no-such-command"], 2),
    ):
        out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, env=env)
        assert out.stdout.strip().endswith(f"exit {code} False"), (args, out.stdout, out.stderr)
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("fgmd ")
    import fgmd

    assert version.stdout.split()[1] == fgmd.__version__
    assert callable(fgmd.load_model) and "search_images" in dir(fgmd)  # lazy exports still resolve


def test_overrides_anywhere_and_refused_where_meaningless(capsys):
    from fgmd.cli.main import main

    assert main(["info", "--image-size", "32", "model.width_mult=0.25", "--set", "model.bits=16"]) == 0
    out = capsys.readouterr().out
    assert "FG-MD (config)" in out
    assert main(["generate-demo-data", "--out", "x", "seed=3"]) == 2
    assert "takes no config overrides (got seed=3)" in capsys.readouterr().err
    assert main(["info", "modle.bits=16"]) == 2  # a typo is a config error naming the key, not an image path
    assert "modle" in capsys.readouterr().err


def test_info_follows_the_image_size_and_describes_a_checkpoint(tiny_checkpoint, capsys):
    from fgmd.cli.main import main

    assert main(["info", "model.width_mult=0.25", "data.image_size=48"]) == 0
    small = capsys.readouterr().out
    assert "MACs @ 48x48" in small
    assert main(["info", "--checkpoint", str(tiny_checkpoint)]) == 0  # a 32 px run
    out = capsys.readouterr().out
    assert "MACs @ 32x32" in out and "epoch 1 of 1, selected on last" in out and "16 bits, 32 px inputs" in out
    macs = [line for line in out.splitlines() if "FG-MD (config)" in line and "total" in line][0]
    assert main(["info", "--checkpoint", str(tiny_checkpoint), "--image-size", "64"]) == 0
    bigger = [line for line in capsys.readouterr().out.splitlines() if "FG-MD (config)" in line and "total" in line][0]
    assert float(bigger.split("|")[-2].strip()[:-1]) > 3.5 * float(macs.split("|")[-2].strip()[:-1])
