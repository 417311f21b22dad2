"""The same ablation under several seeds: per-seed test mAP, mean ± sd and the paired gain over the baseline.

Single runs differ by 2–5 points between seeds on the project's data (BENCHMARKS.md), so a
module's effect is only read off several seeds. :func:`run_seeds` trains one ablation folder
per seed (``<out_dir>/seed_<s>``, each an ordinary ``fgmd ablate`` folder, reused when
finished); :func:`summarise_seeds` reads any set of finished ablation folders (one per seed)
and writes ``ablation_seeds.md`` / ``.csv`` / ``.png``:

- per variant and seed: the test mean mAP of the model selected on validation, tie-aware
  (``map_tie_mean``) and with ties broken by index (``map_mean``);
- mean ± sd over the seeds (sample standard deviation, ``ddof=1``; none for one seed);
- the paired difference to the baseline of the same seed, mean ± sd over the seeds that
  have both (the seed fixes the data order and the validation split, not the weights of
  models of different shape, so pairing removes only part of the seed's effect).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from fgmd.config import Config, ConfigError
from fgmd.experiments.ablation import VARIANTS, ordered_variants, parse_variant, run_ablation
from fgmd.experiments.tables import write_tables
from fgmd.runtime.files import write_atomic

SUMMARY_STEM = "ablation_seeds"
METRICS = ("map_tie_mean", "map_mean")  # tie-aware first: it is what selection and the verdict use


@dataclass
class SeedSummary:
    """What :func:`summarise_seeds` wrote and read: ``values[variant][metric][seed]``."""

    markdown: Path
    csv: Path
    figure: Path | None
    values: dict[str, dict[str, dict[int, float]]]


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``ddof=1``; ``None`` for fewer than two values)."""
    if not values:
        raise ValueError("no values")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _format(mean: float, sd: float | None) -> str:
    return f"{mean:.4f}" if sd is None else f"{mean:.4f} ± {sd:.4f}"


def read_ablation(folder: Path) -> tuple[int, dict[str, dict[str, float]]]:
    """``(seed, {variant key: {metric: value}})`` of a finished ``fgmd ablate`` folder.

    The seed is read from the runs' own ``config.yaml`` (every row must agree).

    Raises:
        ConfigError: no ``ablation.csv``, a row of an unknown variant, or rows of different seeds.
    """
    table = folder / "ablation.csv"
    if not table.is_file():
        raise ConfigError(f"{folder} holds no ablation.csv (run `fgmd ablate` with out_dir={folder} first)")
    by_label = {label: key for key, (label, *_rest) in VARIANTS.items()}
    rows: dict[str, dict[str, float]] = {}
    seeds = set()
    with table.open(newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            # tables written before design variants have no variant_key: their labels are the base ones
            key = row.get("variant_key") or by_label.get(row.get("variant", ""))
            if key is None:
                raise ConfigError(f"{table}, line {line}: unknown variant {row.get('variant')!r}")
            try:
                parse_variant(key)
            except ConfigError as error:
                raise ConfigError(f"{table}, line {line}: {error}") from None
            rows[key] = {m: float(row[m]) for m in METRICS if row.get(m)}
            run_dir = Path(row["run_dir"])
            if not (run_dir / "config.yaml").is_file():  # written relative to another directory, or moved
                run_dir = folder / key
            config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
            seeds.add(int(config.get("seed", Config().seed)))
    if len(seeds) != 1:
        raise ConfigError(f"{table}: its runs were trained with different seeds {sorted(seeds)}")
    return seeds.pop(), rows


def summarise_seeds(folders: Sequence[str | Path], out_dir: str | Path) -> SeedSummary:
    """Combine finished ablation folders of different seeds into ``out_dir/ablation_seeds.*``."""
    out_dir = Path(out_dir)
    values: dict[str, dict[str, dict[int, float]]] = {}
    for folder in folders:
        seed, found = read_ablation(Path(folder))
        for variant, metrics in found.items():
            for metric, value in metrics.items():
                seen = values.setdefault(variant, {}).setdefault(metric, {})
                if seed in seen:
                    raise ConfigError(f"seed {seed} appears twice for {variant} ({folder})")
                seen[seed] = value
    if not values:
        raise ConfigError("no ablation rows to summarise")
    seeds = sorted({s for metrics in values.values() for per_seed in metrics.values() for s in per_seed})
    variants = [v.key for v in ordered_variants(list(values))]
    labels = {key: parse_variant(key).label for key in variants}
    baseline = values.get("baseline", {}).get("map_tie_mean", {})
    rows = []
    for variant in variants:
        tie = values[variant].get("map_tie_mean", {})
        index = values[variant].get("map_mean", {})
        row: dict[str, object] = {"variant": labels[variant], "seeds": len(tie or index)}
        for seed in seeds:
            row[f"map_tie_seed{seed}"] = None if seed not in tie else round(tie[seed], 4)
        row["map_tie_mean_sd"] = _format(*mean_sd(list(tie.values()))) if tie else None
        row["map_mean_sd"] = _format(*mean_sd(list(index.values()))) if index else None
        paired = [tie[s] - baseline[s] for s in tie if s in baseline]
        row["paired_gain_tie"] = _format(*mean_sd(paired)) if paired and variant != "baseline" else None
        rows.append(row)
    titles = {
        "variant": "variant",
        "seeds": "seeds",
        **{f"map_tie_seed{s}": f"seed {s} (tie-aware)" for s in seeds},
        "map_tie_mean_sd": "mean ± sd (tie-aware)",
        "map_mean_sd": "mean ± sd (ties by index)",
        "paired_gain_tie": "Δ vs baseline, same seed (tie-aware)",
    }
    notes = [
        "Test mean mAP (both directions averaged) of the model each run selected on its validation split; "
        "the test split was never used to select.",
        "sd: sample standard deviation over seeds (ddof=1). Δ: variant minus baseline of the same seed, "
        "mean ± sd over the seeds that have both.",
        "Folders: " + ", ".join(str(Path(f)) for f in folders) + ".",
    ]
    md, csv_path = write_tables(out_dir, SUMMARY_STEM, "Ablation over seeds", rows, list(titles), titles, notes)
    return SeedSummary(md, csv_path, _plot(out_dir / f"{SUMMARY_STEM}.png", values, variants), values)


def _plot(path: Path, values: Mapping[str, Mapping[str, Mapping[int, float]]], variants: Sequence[str]) -> Path | None:
    """Per-seed tie-aware mAP of each variant (dots) with its mean ± sd (bar); ``None`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, axis = plt.subplots(figsize=(1.4 * len(variants) + 2.0, 3.4))
    seeds = sorted({s for v in variants for s in values[v].get("map_tie_mean", {})})
    for x, variant in enumerate(variants):
        per_seed = values[variant].get("map_tie_mean", {})
        if not per_seed:
            continue
        mean, sd = mean_sd(list(per_seed.values()))
        axis.errorbar([x], [mean], yerr=[sd or 0.0], fmt="_", markersize=22, capsize=6, color="black", zorder=3)
        for seed, value in per_seed.items():
            offset = 0.3 * (seeds.index(seed) / max(len(seeds) - 1, 1) - 0.5)
            axis.scatter([x + offset], [value], s=22, color=f"C{seed % 10}", zorder=2)
    axis.set_xticks(range(len(variants)), [parse_variant(v).label for v in variants], rotation=15, ha="right")
    axis.set_ylabel("test mean mAP (tie-aware)")
    axis.set_title("per seed (dots, colour = seed) and mean ± sd (bars)", fontsize=9)
    axis.grid(axis="y", alpha=0.3)
    write_atomic(path, lambda file: figure.savefig(file, format="png", dpi=120, bbox_inches="tight"))
    plt.close(figure)
    return path


def run_seeds(
    config: Config,
    seeds: Sequence[int],
    variants: Sequence[str] | None = None,
    *,
    progress: bool = True,
    report: bool = True,
    timing_repeats: int = 5,
    on_seed: Callable[[int, Path], None] | None = None,
) -> SeedSummary:
    """Run the ablation once per seed into ``<config.out_dir>/seed_<s>`` and summarise them there."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"the seeds must be distinct and at least one, got {list(seeds)}")
    root = Path(config.out_dir)
    folders = []
    for seed in seeds:
        folder = root / f"seed_{seed}"
        run_ablation(
            config.with_values({"seed": seed, "out_dir": str(folder)}),
            variants,
            progress=progress,
            report=report,
            timing_repeats=timing_repeats,
        )
        folders.append(folder)
        if on_seed is not None:
            on_seed(seed, folder)
    return summarise_seeds(folders, root)
