"""Code-length sweep: one run per bit length K, same config otherwise; one table.

``run_sweep(config, [16, 32, 64])`` trains/evaluates ``<out_dir>/bits_<K>`` for each K
(resumable, see :func:`~fgmd.experiments.runs.train_and_evaluate`) and writes
``<out_dir>/sweep.md`` and ``<out_dir>/sweep.csv``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fgmd.config import Config, ConfigError
from fgmd.experiments.runs import SELECTION_NOTES, RunSummary, column_titles, metric_columns, train_and_evaluate
from fgmd.experiments.tables import write_tables

DEFAULT_BITS = (16, 24, 32, 48, 64)


@dataclass
class SweepResult:
    rows: list[dict]
    markdown: Path
    csv: Path
    runs: dict[int, RunSummary]


def sweep_configs(config: Config, bits: Sequence[int]) -> dict[int, Config]:
    """``{K: config with model.bits=K and out_dir=<out_dir>/bits_K}``."""
    if not bits:
        raise ConfigError("give at least one bit length")
    if len(set(bits)) != len(bits):
        raise ConfigError(f"repeated bit lengths in {list(bits)}")
    base = Path(config.out_dir)
    return {k: config.with_values({"model.bits": k, "out_dir": str(base / f"bits_{k}")}) for k in bits}


def run_sweep(
    config: Config,
    bits: Sequence[int] = DEFAULT_BITS,
    progress: bool = True,
    report: bool = True,
    on_run: Callable[[int, RunSummary], None] | None = None,
) -> SweepResult:
    """Train and evaluate one run per bit length; write the sweep table into ``config.out_dir``."""
    configs = sweep_configs(config, bits)
    runs: dict[int, RunSummary] = {}
    for k, run_config in configs.items():
        runs[k] = train_and_evaluate(run_config, progress=progress, report=report)
        if on_run is not None:
            on_run(k, runs[k])
    first = next(iter(runs.values()))
    titles = {"bits": "bits", "run_dir": "run", **column_titles(first.directions)}
    rows = [{"bits": k, **metric_columns(s), "run_dir": str(s.run_dir)} for k, s in runs.items()]
    columns = list(rows[0])
    md_columns = [c for c in columns if c not in ("run_dir", "val_map_mean", "last_epoch")]
    title = f"Code-length sweep ({' ↔ '.join(config.data.modalities)}, {config.data.format} data at {config.data.root})"
    notes = [
        *SELECTION_NOTES,
        f"Runs: {Path(config.out_dir)}/bits_<K>; one config otherwise (train.epochs={config.train.epochs}).",
    ]
    md, csv_path = write_tables(Path(config.out_dir), "sweep", title, rows, columns, titles, notes, md_columns)
    return SweepResult(rows, md, csv_path, runs)
