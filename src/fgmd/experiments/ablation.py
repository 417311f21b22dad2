"""Ablation runner: baseline, +FDFSP, +ADF, +DAMD and full FG-MD under one training budget,
and design variants of them.

Every variant is the given config with only the three module switches changed
(``model.fdfsp``, ``model.adf``, ``loss.damd``) and, for a design variant, a few more
settings: ``full+train.module_lr_mult=10`` is the full model with module learning rates ×10,
``fdfsp+model.fdfsp_levels=[1,2]+loss.damd_weight=1`` chains several. Each variant is trained
into ``<out_dir>/<variant>`` (resumable: a finished run with ``metrics.json`` is not retrained).
The table ``<out_dir>/ablation.md`` / ``.csv`` gives per variant the test mAP of both
directions and their mean (model selected on validation; last-epoch and best-on-test views
beside it), the inference parameters (both branches; DAMD is training-only), the
training-only parameters (class projection + DAMD attention), and the encoder time in ms per
image (eval mode, batch 1 and 32, at ``data.image_size``), measured for all variants side by
side in one process after training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from fgmd.config import Config, ConfigError, apply_override
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
#: keys a design variant may not set: the switches are the base variant's, the rest is the study's
#: (the encoder timings of all rows are taken at one image size)
_RESERVED_KEYS = ("model.fdfsp", "model.adf", "loss.damd", "seed", "out_dir", "data.image_size")
#: design settings -> the modules (FDFSP, ADF, DAMD) of which at least one must be on for them to act
_NEEDS_MODULE: dict[str, tuple[bool, bool, bool]] = {
    "model.fdfsp_": (True, False, False),
    "model.adf_": (False, True, False),
    "train.module_lr_mult": (True, True, False),
    "loss.damd_": (False, False, True),
}


@dataclass(frozen=True)
class Variant:
    """One ablation row: a base variant of :data:`VARIANTS` plus design overrides.

    Attributes:
        key: the spelling on the command line and the run folder's name
            (``full`` or ``full+train.module_lr_mult=10``).
        base: the base variant (``baseline``, ``fdfsp``, ``adf``, ``damd``, ``full``).
        overrides: the ``key=value`` settings after the base, YAML values as in config overrides.
    """

    key: str
    base: str
    overrides: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """Table label: the base's, with the overrides in brackets."""
        label = VARIANTS[self.base][0]
        return f"{label} [{', '.join(self.overrides)}]" if self.overrides else label

    @property
    def switches(self) -> tuple[bool, bool, bool]:
        """(FDFSP, ADF, DAMD) of the base variant."""
        _, fdfsp, adf, damd = VARIANTS[self.base]
        return fdfsp, adf, damd


@dataclass
class AblationResult:
    rows: list[dict]
    markdown: Path
    csv: Path
    runs: dict[str, RunSummary]


def parse_variant(spec: str) -> Variant:
    """``base[+key=value...]`` -> :class:`Variant`.

    Raises:
        ConfigError: an unknown base, two bases, an override that is not ``key=value``, holds
            spaces or a ``/`` (the spec names a folder), sets a key twice, sets a switch,
            ``seed``, ``out_dir`` or ``data.image_size``, or sets a module's option on a base
            without that module (such a row would repeat its base).
    """
    base, *overrides = spec.split("+")
    if base not in VARIANTS:
        raise ConfigError(
            f"unknown ablation variant {spec!r}; choose from {', '.join(VARIANTS)} (optionally +key=value)"
        )
    keys: list[str] = []
    for item in overrides:
        key = item.split("=", 1)[0]
        if item in VARIANTS:
            raise ConfigError(
                f"unknown ablation variant {spec!r}: base variants do not combine (full has all three modules); "
                "after the base come only +key=value settings"
            )
        if "=" not in item or not key:
            raise ConfigError(f"variant {spec!r}: {item!r} is not of the form key.sub=value ('+' separates settings)")
        if any(c.isspace() for c in item) or "/" in item:
            raise ConfigError(f"variant {spec!r}: {item!r} may hold no spaces or '/' (the variant names its folder)")
        if key in _RESERVED_KEYS:
            raise ConfigError(
                f"variant {spec!r}: {key} is set by the study (the base variant, the seed, out_dir, the image size), "
                "not by a variant"
            )
        if key in keys:
            raise ConfigError(f"variant {spec!r} sets {key} twice")
        keys.append(key)
        needs = next((modules for prefix, modules in _NEEDS_MODULE.items() if key.startswith(prefix)), None)
        if needs is not None and not any(n and on for n, on in zip(needs, VARIANTS[base][1:])):
            names = " or ".join(name for name, n in zip(("FDFSP", "ADF", "DAMD"), needs) if n)
            raise ConfigError(f"variant {spec!r}: {key} acts on {names}, which the {base} variant does not have")
    return Variant(spec, base, tuple(overrides))


def _dotted(data: dict, key: str) -> object:
    """``data[a][b]`` for ``a.b``, or ``None`` where the path does not exist."""
    node: object = data
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def variant_config(config: Config, variant: str | Variant) -> Config:
    """``config`` with the switches and overrides of ``variant`` and ``out_dir=<out_dir>/<variant key>``."""
    spec = variant if isinstance(variant, Variant) else parse_variant(variant)
    fdfsp, adf, damd = spec.switches
    data = config.with_values(
        {"model.fdfsp": fdfsp, "model.adf": adf, "loss.damd": damd, "out_dir": str(Path(config.out_dir) / spec.key)}
    ).to_dict()
    for item in spec.overrides:
        key = item.split("=", 1)[0]
        if isinstance(_dotted(data, key), dict):
            raise ConfigError(f"variant {spec.key!r}: {key} is a section; set its keys one by one ({key}.<name>=...)")
        apply_override(data, item)
    try:
        return Config.from_dict(data)
    except ConfigError as error:
        raise ConfigError(f"variant {spec.key!r}: {error}") from None


def ordered_variants(specs: Sequence[str] | None) -> list[Variant]:
    """The variants of ``specs`` (all five base variants when ``None``) in table order: by
    base variant, each design variant after the others of its base in the order given.

    Raises:
        ConfigError: an invalid or repeated variant.
    """
    parsed = [parse_variant(s) for s in specs or VARIANTS]
    keys = [v.key for v in parsed]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"repeated variants in {keys}")
    order = list(VARIANTS)
    return sorted(parsed, key=lambda v: (order.index(v.base), bool(v.overrides)))


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

    specs = {v.key: v for v in ordered_variants(variants)}
    configs = {key: variant_config(config, spec) for key, spec in specs.items()}
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
        spec = specs[name]
        fdfsp, adf, damd = spec.switches
        num_classes = len(trained[name]["class_names"])
        params, train_only = parameter_counts(configs[name], num_classes)
        rows.append(
            {
                "variant": spec.label,
                "variant_key": spec.key,
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
    hidden = {"variant_key", "fdfsp", "adf", "damd", "params", "run_dir", "val_map_mean", "last_epoch"}
    md_columns = [c for c in columns if c not in hidden]
    from fgmd.runtime.device import resolve_device

    device = resolve_device(next(iter(configs.values())).train.device)
    notes = [
        *SELECTION_NOTES,
        "Variants differ only in model.fdfsp / model.adf / loss.damd and the settings in brackets; everything else "
        f"(data, epochs, seed, optimiser) is the same config (train.epochs={config.train.epochs}, "
        f"model.bits={config.model.bits}).",
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
