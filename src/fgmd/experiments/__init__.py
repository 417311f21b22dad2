"""Experiment orchestration over the training/evaluation API: code-length sweeps and the ablation."""

from fgmd.experiments.ablation import VARIANTS, AblationResult, Variant, parse_variant, run_ablation, variant_config
from fgmd.experiments.runs import RunSummary, summarise_run, train_and_evaluate
from fgmd.experiments.sweep import DEFAULT_BITS, SweepResult, run_sweep, sweep_configs

__all__ = [
    "DEFAULT_BITS",
    "VARIANTS",
    "AblationResult",
    "RunSummary",
    "SweepResult",
    "Variant",
    "parse_variant",
    "run_ablation",
    "run_sweep",
    "summarise_run",
    "sweep_configs",
    "train_and_evaluate",
    "variant_config",
]
