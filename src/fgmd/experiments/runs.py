"""One experiment run = train (or resume) + evaluate; and what a finished run directory says.

A run directory (``config.out_dir``) holds what the trainer writes (``config.yaml``,
``log.jsonl``, ``last.pt``, ``best.pt``) plus

- ``metrics.json``: test metrics (queries vs database) of ``best.pt``, the model selected
  on the validation split — the honest number;
- ``metrics_last.json``: test metrics of ``last.pt``, the last epoch.

With ``train.track_test`` the log also holds per-epoch test metrics, from which
:func:`summarise_run` reads the best epoch *on test* — how the published FSISR/FG-MD
scripts select, an optimistic number kept only for comparison with them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from fgmd.config import Config, ConfigError
from fgmd.runtime.files import write_atomic
from fgmd.runtime.run_log import checkpoint_epoch, read_log
from fgmd.training.resume import resume_conflicts

METRICS = "metrics.json"
METRICS_LAST = "metrics_last.json"


@dataclass
class RunSummary:
    """The three model-selection views of a finished run (all scored on the test split).

    Each view is ``{"epoch": 1-based epoch or None, "directions": {"a->b": metrics}, "mean": metrics}``
    (``metrics`` = the ``retrieval_metrics`` dict; for ``best_on_test`` only what the log holds).
    """

    run_dir: Path
    directions: list[str]
    epochs: int
    selected: dict
    last: dict
    best_on_test: dict | None = None
    validation_map: float | None = None
    extra: dict = field(default_factory=dict)


def check_run_config(run_dir: Path, config: Config) -> None:
    """Refuse to reuse a run directory trained with a different config (only
    ``fgmd.training.resume.RESUMABLE_CHANGES``, such as ``train.epochs``, may differ; the trainer warns
    about those that make the run inexact)."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.exists():
        return
    stored = Config.from_run(yaml.safe_load(saved_path.read_text()) or {})
    saved = stored.to_dict()
    # Band counts the config leaves to inference (0) are what the trainer inferred and stored.
    inferred = {
        f"data.modality.{m}.channels": stored.data.modality_config(m).channels
        for m in config.data.modalities
        if config.data.modality_config(m).channels == 0 and m in stored.data.modalities
    }
    current = config.with_values(inferred).to_dict() if inferred else config.to_dict()
    # Lists the trainer fills in when the config leaves them empty (computed percentile-scaling
    # statistics) are not differences.
    diffs = [k for k in resume_conflicts(saved, current) if _lookup(current, k) != []]
    if diffs:
        raise ConfigError(
            f"{run_dir} holds a run with a different config ({', '.join(diffs)}); "
            "use the same config to resume/reuse it, or choose another out_dir"
        )


def train_and_evaluate(config: Config, progress: bool = True, report: bool = False) -> RunSummary:
    """Train ``config`` into ``config.out_dir`` unless already done, evaluate, summarise.

    Resumable: a run whose log covers ``train.epochs`` and that has ``metrics.json`` is not
    retrained; a killed run continues from ``last.pt``. ``report`` also writes the visual
    report (``report/``) when it is missing.
    """
    from fgmd.api import evaluate_checkpoint
    from fgmd.training.trainer import fit, never_trained

    run_dir = Path(config.out_dir)
    check_run_config(run_dir, config)
    done = len(read_log(run_dir))
    if done > config.train.epochs:
        raise ConfigError(f"{run_dir} already holds {done} epochs, more than train.epochs={config.train.epochs}")
    finished = done == config.train.epochs and (run_dir / METRICS).exists() and (run_dir / "best.pt").exists()
    if not finished:  # new, killed or extended run: train, then score again
        fit(config, resume=(run_dir / "last.pt").exists(), progress=progress, overwrite=never_trained(run_dir))
        for name in (METRICS, METRICS_LAST):
            (run_dir / name).unlink(missing_ok=True)
    if not (run_dir / METRICS).exists():
        evaluate_checkpoint(run_dir / "best.pt", progress=progress)
    if not (run_dir / METRICS_LAST).exists():
        log = read_log(run_dir)
        if log and "test" in log[-1]:  # train.track_test scored the last epoch already: same weights, same numbers
            last = {**log[-1]["test"], "checkpoint": str(run_dir / "last.pt"), "epoch": len(log), "source": "log.jsonl"}
            write_atomic(run_dir / METRICS_LAST, json.dumps(last, indent=2))
        else:
            evaluate_checkpoint(run_dir / "last.pt", out=run_dir / METRICS_LAST, progress=progress)
    if report and (not finished or not (run_dir / "report" / "report.md").exists()):
        from fgmd.evaluation.report import generate_report

        generate_report(run_dir, progress=progress)
    return summarise_run(run_dir)


def _view(metrics: dict, epoch: int | None) -> dict:
    return {"epoch": epoch, "directions": metrics["directions"], "mean": metrics["mean"]}


def summarise_run(run_dir: str | Path) -> RunSummary:
    """Read a run directory: selected-on-validation, last-epoch and best-on-test views."""
    run_dir = Path(run_dir)
    log = read_log(run_dir)
    selected_metrics = json.loads((run_dir / METRICS).read_text())
    selected = _view(selected_metrics, checkpoint_epoch({"selected_on": None, **selected_metrics}))  # of best.pt
    last = None
    if (run_dir / METRICS_LAST).exists():
        last = _view(json.loads((run_dir / METRICS_LAST).read_text()), len(log) or None)
    best_on_test = None
    tested = [r for r in log if "test" in r]
    if tested:
        best = max(tested, key=lambda r: r["test"]["mean_map"])  # first epoch among equals
        best_on_test = _view(best["test"], best["epoch"])
    validation = [r["val"]["mean_map"] for r in log if "val" in r and r["epoch"] == selected["epoch"]]
    return RunSummary(
        run_dir=run_dir,
        directions=list(selected_metrics["directions"]),
        epochs=len(log),
        selected=selected,
        last=last or {"epoch": None, "directions": {}, "mean": {}},
        best_on_test=best_on_test,
        validation_map=validation[0] if validation else None,
        extra={"selected_on": selected_metrics.get("selected_on")},
    )


def metric_columns(summary: RunSummary) -> dict[str, float | int | str | None]:
    """The shared result columns of a sweep/ablation row (machine-readable keys, see :data:`COLUMN_TITLES`)."""
    a_b, b_a = summary.directions
    selected = summary.selected
    row: dict[str, float | int | str | None] = {
        "map_" + _slug(a_b): selected["directions"][a_b]["map"],
        "map_" + _slug(b_a): selected["directions"][b_a]["map"],
        "map_mean": selected["mean"]["map"],
        # tie-aware twins (None for metrics written before fgmd reported them)
        "map_tie_" + _slug(a_b): selected["directions"][a_b].get("map_tie"),
        "map_tie_" + _slug(b_a): selected["directions"][b_a].get("map_tie"),
        "map_tie_mean": selected["mean"].get("map_tie"),
        "selected_epoch": selected["epoch"],
        "val_map_mean": summary.validation_map,
    }
    if "map@R" in summary.selected["mean"]:
        row["map_at_r_" + _slug(a_b)] = summary.selected["directions"][a_b]["map@R"]
        row["map_at_r_" + _slug(b_a)] = summary.selected["directions"][b_a]["map@R"]
        row["map_at_r_mean"] = summary.selected["mean"]["map@R"]
    row["last_map_mean"] = summary.last["mean"].get("map")
    row["last_map_tie_mean"] = summary.last["mean"].get("map_tie")
    row["last_epoch"] = summary.last["epoch"]
    row["best_test_map_mean"] = summary.best_on_test["mean"]["map"] if summary.best_on_test else None
    row["best_test_epoch"] = summary.best_on_test["epoch"] if summary.best_on_test else None
    return row


def column_titles(directions: list[str]) -> dict[str, str]:
    """Human column titles (markdown) for the keys of :func:`metric_columns`."""
    a_b, b_a = directions
    arrow = lambda d: d.replace("->", " → ")  # noqa: E731
    return {
        "map_" + _slug(a_b): f"{arrow(a_b)} mAP (ties by index)",
        "map_" + _slug(b_a): f"{arrow(b_a)} mAP (ties by index)",
        "map_mean": "mean mAP (ties by index)",
        "map_tie_" + _slug(a_b): f"{arrow(a_b)} mAP (tie-aware)",
        "map_tie_" + _slug(b_a): f"{arrow(b_a)} mAP (tie-aware)",
        "map_tie_mean": "mean mAP (tie-aware)",
        "selected_epoch": "epoch (val)",
        "val_map_mean": "val mean mAP",
        "map_at_r_" + _slug(a_b): f"{arrow(a_b)} MAP@R",
        "map_at_r_" + _slug(b_a): f"{arrow(b_a)} MAP@R",
        "map_at_r_mean": "mean MAP@R",
        "last_map_mean": "last-epoch mean mAP (ties by index)",
        "last_map_tie_mean": "last-epoch mean mAP (tie-aware)",
        "last_epoch": "last epoch",
        "best_test_map_mean": "best-on-test mean mAP (ties by index, optimistic)",
        "best_test_epoch": "epoch (test)",
    }


SELECTION_NOTES = [
    "All mAP values are on the test split (each modality's queries against the other modality's database), "
    "full-ranking Hamming mAP.",
    "**ties by index**: items at equal Hamming distance ranked in database order (the hashing toolkits' "
    "convention); **tie-aware**: the expected mAP over all orders of tied items, independent of the database "
    "order (docs/DESIGN.md, metrics). Runs evaluated before fgmd reported tie-aware mAP show a dash.",
    "**mAP columns without a qualifier: model selected on the validation split** (best.pt) — the honest number.",
    "**last-epoch**: the model after the final epoch (last.pt), no selection.",
    "**best-on-test (optimistic)**: the epoch with the best *test* mean mAP, as the published FSISR/FG-MD "
    "scripts select; it tunes on the test set and overstates accuracy. Only with `train.track_test=true` "
    "(empty otherwise).",
]


def _slug(direction: str) -> str:
    return direction.replace("->", "_to_")


def _lookup(data: dict, dotted: str):
    """``data[a][b]`` for ``"a.b"``; ``None`` when a part is missing."""
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data
