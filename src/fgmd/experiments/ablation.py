"""Ablation runner: baseline, +FDFSP, +ADF, +DAMD and full FG-MD under one training budget.

Every variant is the given config with only the three module switches changed
(``model.fdfsp``, ``model.adf``, ``loss.damd``), trained into ``<out_dir>/<variant>``
(resumable: a finished run with ``metrics.json`` is not retrained). The table
``<out_dir>/ablation.md`` / ``.csv`` gives per variant the test mAP of both directions and
their mean (model selected on validation; last-epoch and best-on-test views beside it),
the inference parameters (both branches; DAMD is training-only), the training-only
parameters (class projection + DAMD attention), and the encoder time in ms per image
(eval mode, batch 1 and 32, at ``data.image_size``), measured for all variants side by side
in one process after training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from fgmd.config import Config, ConfigError
from fgmd.experiments.params import parameter_counts
from fgmd.experiments.runs import SELECTION_NOTES, RunSummary, column_titles, metric_columns, train_and_evaluate
from fgmd.experiments.tables import write_tables

#: variant -> (table label, FDFSP, ADF, DAMD)
VARIANTS: dict[str, tuple[str, bool, bool, bool]] = {
    "baseline": ("baseline", False, False, False),
    "fdfsp": ("+FDFSP", True, False, False),
    "adf": ("+ADF", False, True, False),
    "damd": ("+DAMD", False, False, True),
    "full": ("full (FG-MD)", True, True, True),
}
TIMING_BATCH_SIZES = (1, 32)


@dataclass
class AblationResult:
    rows: list[dict]
    markdown: Path
    csv: Path
    runs: dict[str, RunSummary]


def variant_config(config: Config, variant: str) -> Config:
    """``config`` with the switches of ``variant`` and ``out_dir=<out_dir>/<variant>``."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown ablation variant {variant!r}; choose from {', '.join(VARIANTS)}")
    _, fdfsp, adf, damd = VARIANTS[variant]
    return config.with_values(
        {"model.fdfsp": fdfsp, "model.adf": adf, "loss.damd": damd, "out_dir": str(Path(config.out_dir) / variant)}
    )


def encoder_timings(
    configs: dict[str, Config], repeats: int = 5, batch_sizes: Sequence[int] = TIMING_BATCH_SIZES
) -> dict[str, dict[int, float]]:
    """ms per image per branch of every variant, measured side by side (see ``measure_encode_time``)."""
    from fgmd.models import measure_encode_time, model_from_config
    from fgmd.runtime.device import resolve_device

    first = next(iter(configs.values()))
    device = resolve_device(first.train.device)
    models = {name: model_from_config(c, load_pretrained=False) for name, c in configs.items()}
    return measure_encode_time(models, first.data.image_size, tuple(batch_sizes), repeats=repeats, device=device)


def run_ablation(
    config: Config,
    variants: Sequence[str] | None = None,
    progress: bool = True,
    report: bool = True,
    timing_repeats: int = 5,
    on_run: Callable[[str, RunSummary], None] | None = None,
) -> AblationResult:
    """Train/evaluate the variants (all by default, in table order) and write the ablation table."""
    from fgmd.runtime.checkpoint import load_checkpoint

    variants = list(variants or VARIANTS)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown ablation variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if len(set(variants)) != len(variants):
        raise ConfigError(f"repeated variants in {variants}")
    variants = [v for v in VARIANTS if v in variants]  # table order
    configs = {v: variant_config(config, v) for v in variants}
    runs: dict[str, RunSummary] = {}
    for name, run_config in configs.items():
        runs[name] = train_and_evaluate(run_config, progress=progress, report=report)
        if on_run is not None:
            on_run(name, runs[name])

    trained = {name: load_checkpoint(summary.run_dir / "best.pt") for name, summary in runs.items()}
    # the runs' own configs: band counts inferred and scaling computed by the trainer
    configs = {
        name: Config.from_run(state["config"]).with_values({"train.device": config.train.device})
        for name, state in trained.items()
    }
    timings = encoder_timings(configs, repeats=timing_repeats)
    rows = []
    for name, summary in runs.items():
        label, fdfsp, adf, damd = VARIANTS[name]
        num_classes = len(trained[name]["class_names"])
        params, train_only = parameter_counts(configs[name], num_classes)
        rows.append(
            {
                "variant": label,
                "fdfsp": fdfsp,
                "adf": adf,
                "damd": damd,
                **metric_columns(summary),
                "params": params,
                "params_M": params / 1e6,
                "train_only_params": train_only,
                **{f"ms_per_image_b{b}": timings[name][b] for b in TIMING_BATCH_SIZES},
                "run_dir": str(summary.run_dir),
            }
        )
    directions = next(iter(runs.values())).directions
    titles = {
        "variant": "variant",
        **column_titles(directions),
        "params_M": "params (M, inference)",
        "train_only_params": "train-only params",
        **{f"ms_per_image_b{b}": f"ms/img b{b}" for b in TIMING_BATCH_SIZES},
    }
    columns = list(rows[0])
    hidden = {"fdfsp", "adf", "damd", "params", "run_dir", "val_map_mean", "last_epoch"}
    md_columns = [c for c in columns if c not in hidden]
    from fgmd.runtime.device import resolve_device

    device = resolve_device(next(iter(configs.values())).train.device)
    notes = [
        *SELECTION_NOTES,
        "Variants differ only in model.fdfsp / model.adf / loss.damd; everything else (data, epochs, seed, "
        f"optimiser) is the same config (train.epochs={config.train.epochs}, model.bits={config.model.bits}).",
        "params: both branches at inference. DAMD adds no inference parameters; its attention modules and the "
        "class projection exist only while training (train-only params).",
        f"ms/img: one branch's encode time per image (best of {timing_repeats} rounds, mean of the two branches), "
        f"eval mode, {config.data.image_size}×{config.data.image_size} input, batch 1 and 32, all variants timed "
        f"side by side in one process after training (device {device}, CPU threads: {torch.get_num_threads()}). "
        "Compare rows, not machines; on a shared machine rerun `fgmd ablate` (it only re-times finished runs) "
        "if the rows look inconsistent.",
        f"Runs: {Path(config.out_dir)}/<variant>.",
    ]
    md, csv_path = write_tables(Path(config.out_dir), "ablation", "Ablation", rows, columns, titles, notes, md_columns)
    return AblationResult(rows, md, csv_path, runs)
