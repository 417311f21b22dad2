"""The one-command demo: generate the procedural dataset, train FG-MD on it, evaluate it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fgmd.api import evaluate_checkpoint
from fgmd.config import load_config
from fgmd.data.synthetic import generate_demo_dataset
from fgmd.training.trainer import fit, never_trained

DEMO_PAIRS_PER_CLASS = 300


def demo_config_path() -> Path:
    """The packaged demo config (``fgmd/configs/demo.yaml``)."""
    return Path(str(resources.files("fgmd") / "configs" / "demo.yaml"))


def run_demo(out: Path, progress: bool = True) -> dict:
    """Generate ``out/data`` (unless present), train into ``out/run`` and evaluate the selected model.

        Returns the metrics dict (also written to ``out/run/metrics.json``). An existing
        ``out/run`` is resumed, so re-running a finished demo only re-evaluates it (one stopped
    during its first epoch starts again).
    """
    data_dir = out / "data"
    if not (data_dir / "pairs.csv").exists():
        generate_demo_dataset(data_dir, n_per_class=DEMO_PAIRS_PER_CLASS, seed=0)
    run_dir = out / "run"
    config = load_config(demo_config_path()).with_values({"data.root": str(data_dir), "out_dir": str(run_dir)})
    fit(config, resume=(run_dir / "last.pt").exists(), progress=progress, overwrite=never_trained(run_dir))
    return evaluate_checkpoint(run_dir / "best.pt", progress=progress)
