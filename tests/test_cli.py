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
    assert "| mean" in out.stdout and "ms->pan" in out.stdout


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
