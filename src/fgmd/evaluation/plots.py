"""Report figures (matplotlib, Agg canvas; no pyplot global state). Each function writes one PNG.

Inputs are plain arrays/dicts so the figures can be redrawn from saved numbers. matplotlib
is an optional dependency (``pip install 'fgmd[report]'``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from fgmd.runtime.files import make_folder, write_atomic

CORRECT = (0.13, 0.63, 0.20)  # green
WRONG = (0.85, 0.13, 0.13)  # red
QUERY = (0.20, 0.35, 0.80)  # blue
DPI = 110


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the installation
        raise ImportError("reports need matplotlib: pip install 'fgmd[report]' (or pip install matplotlib)") from None
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path) -> Path:
    make_folder(path.parent)
    return write_atomic(
        path, lambda file: figure.savefig(file, format=path.suffix[1:], dpi=DPI, bbox_inches="tight", facecolor="white")
    )


def _arrow(direction: str) -> str:
    return direction.replace("->", " → ")


def _chance_lines(axis, chance: Mapping[str, float] | None) -> None:
    """Dotted horizontal lines at the precision of a random ranking, one per direction."""
    for (direction, value), colour in zip((chance or {}).items(), ("C0", "C1")):
        axis.axhline(
            value, color=colour, linestyle=":", linewidth=1.2, label=f"chance {_arrow(direction)} ({value:.3f})"
        )


def plot_pr_curves(
    path: Path,
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    bits: int,
    chance: Mapping[str, float] | None = None,
) -> Path:
    """PR curves of Hamming-ball retrieval (radius 0..K), one line per direction, and P/R against radius.

    ``curves[direction] = (radius, precision, recall)`` as from ``pr_curve_by_radius``;
    ``chance[direction]``: the precision of a random ranking (drawn as a dotted line).
    """
    figure = _figure(11.5, 4.2)
    left, right = figure.subplots(1, 2)
    for (direction, (radius, precision, recall)), colour in zip(curves.items(), ("C0", "C1")):
        valid = ~(np.isnan(precision) | np.isnan(recall))
        left.plot(recall[valid], precision[valid], "-o", color=colour, markersize=3, label=_arrow(direction))
        right.plot(radius, precision, "-", color=colour, label=f"precision {_arrow(direction)}")
        right.plot(radius, recall, "--", color=colour, label=f"recall {_arrow(direction)}")
    _chance_lines(left, chance)
    left.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title="PR curve (Hamming radius 0…K)")
    right.set(
        xlabel="Hamming radius r",
        ylabel="value",
        xlim=(0, bits),
        ylim=(0, 1.02),
        title="precision / recall within radius r",
    )
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="best")
    return _save(figure, path)


def plot_precision_at_k(
    path: Path,
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    chance: Mapping[str, float] | None = None,
) -> Path:
    """Precision@k and recall@k against k, one line per direction (``(ranks, precision, recall)``);
    ``chance[direction]``: the precision@k of a random ranking (any k), a dotted line."""
    figure = _figure(11.5, 4.2)
    left, right = figure.subplots(1, 2)
    for (direction, (ranks, precision, recall)), colour in zip(curves.items(), ("C0", "C1")):
        left.plot(ranks, precision, "-", color=colour, label=_arrow(direction))
        right.plot(ranks, recall, "-", color=colour, label=_arrow(direction))
    _chance_lines(left, chance)
    left.set(xlabel="k (top-k of the Hamming ranking)", ylabel="precision@k", ylim=(0, 1.02), title="precision@k")
    right.set(xlabel="k (top-k of the Hamming ranking)", ylabel="recall@k", ylim=(0, 1.02), title="recall@k")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="best")
        axis.set_xlim(left=1)
    return _save(figure, path)


def display_image(image: np.ndarray, size: int = 96) -> np.ndarray:
    """``[C, H, W]`` in [0, 1] -> ``[size, size, 3]`` RGB for display.

    1 band (or 2): gray from the first band; 3 bands: as is; more: the first three bands as
    RGB. A per-image 1–99 % percentile stretch (all bands together, so colours keep their
    balance) makes dark sensor data visible.
    """
    import torch
    import torch.nn.functional as F

    image = np.asarray(image, dtype=np.float32)
    rgb = np.repeat(image[:1], 3, axis=0) if image.shape[0] < 3 else image[:3]
    low, high = np.percentile(rgb, [1, 99])
    rgb = np.clip((rgb - low) / max(high - low, 1e-6), 0.0, 1.0)
    resized = F.interpolate(
        torch.from_numpy(rgb)[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return resized[0].clamp(0, 1).permute(1, 2, 0).numpy()


def _framed(image: np.ndarray, colour: Sequence[float], width: int) -> np.ndarray:
    framed = np.empty((image.shape[0] + 2 * width, image.shape[1] + 2 * width, 3), dtype=np.float32)
    framed[:] = colour
    framed[width:-width, width:-width] = image
    return framed


def _short(text: str, width: int = 18) -> str:
    """``text`` cut to ``width`` characters, keeping its end (ids differ at the end)."""
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def plot_retrieval_grid(
    path: Path,
    direction: str,
    queries: Sequence[dict],
    band_note: str = "",
) -> Path:
    """Query images (left, blue frame) and their top-k of the other modality (green: relevant, red: not).

    ``queries[i] = {"image": [C,H,W], "label": str, "id": str, "results": [{"image", "label", "id",
    "distance", "relevant"}]}``; each image is captioned with its id.
    """
    rows = len(queries)
    top_k = max(len(q["results"]) for q in queries)
    cell = 1.25
    figure = _figure(cell * (top_k + 1.35), cell * 1.55 * rows + 0.6)
    grid = figure.add_gridspec(rows, top_k + 2, width_ratios=[1, 0.35] + [1] * top_k, wspace=0.06, hspace=0.62)
    for r, query in enumerate(queries):
        axis = figure.add_subplot(grid[r, 0])
        axis.imshow(_framed(display_image(query["image"]), QUERY, 6))
        axis.set_title(f"query\n{query['label']}", fontsize=8, color=QUERY, fontweight="bold")
        axis.text(0.5, -0.04, _short(query["id"]), transform=axis.transAxes, ha="center", va="top", fontsize=6.5)
        axis.axis("off")
        for c, result in enumerate(query["results"]):
            axis = figure.add_subplot(grid[r, c + 2])
            colour = CORRECT if result["relevant"] else WRONG
            axis.imshow(_framed(display_image(result["image"]), colour, 6))
            axis.set_title(f"#{c + 1} d={result['distance']}\n{result['label']}", fontsize=7, color=colour)
            axis.text(0.5, -0.04, _short(result["id"]), transform=axis.transAxes, ha="center", va="top", fontsize=6)
            axis.axis("off")
    precision = [np.mean([res["relevant"] for res in q["results"]]) for q in queries]
    title = f"Retrieval {_arrow(direction)}: top-{top_k} by Hamming distance d (green = same class, red = other class)"
    subtitle = f"mean precision@{top_k} of these queries {np.mean(precision):.2f}" + (
        f"; {band_note}" if band_note else ""
    )
    figure.suptitle(f"{title}\n{subtitle}", fontsize=10)
    return _save(figure, path)


def plot_training_curves(
    path: Path,
    log: Sequence[dict],
    selected_epoch: int | None = None,
    directions: Sequence[str] = (),
) -> Path:
    """Each loss term per epoch (own panel, unweighted) and, full width below, validation mAP
    (and test mAP when ``train.track_test`` logged it) per evaluation.

    ``selected_epoch`` (1-based) marks the epoch of ``best.pt``.
    """
    skip = {"epoch", "lr", "lr_modules", "time_s", "pairs_per_s", "mining_s"}
    terms = [k for k in log[0] if k not in skip and not k.endswith("_weighted") and isinstance(log[0][k], (int, float))]
    terms = sorted(terms, key=lambda t: (t == "total", t))  # total last
    columns = 4 if len(terms) > 6 else 3
    term_rows = math.ceil(len(terms) / columns)
    figure = _figure(3.6 * columns, 2.7 * term_rows + 3.4)
    grid = figure.add_gridspec(term_rows + 1, columns, height_ratios=[1] * term_rows + [1.25])
    from matplotlib.ticker import MaxNLocator

    epochs = np.array([r["epoch"] for r in log])
    for index, term in enumerate(terms):
        axis = figure.add_subplot(grid[index // columns, index % columns])
        axis.plot(
            epochs, [r.get(term, np.nan) for r in log], "-o", markersize=3, color="C2" if term == "total" else "C0"
        )
        axis.set_title(f"{term} (unweighted)" if term != "total" else "total loss (weighted sum)", fontsize=10)
        axis.set_xlabel("epoch", fontsize=8)
        axis.tick_params(labelsize=8)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    axis = figure.add_subplot(grid[term_rows, :])
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    values = []
    for key, marker, colour, name in (
        ("val", "o", "C3", "validation"),
        ("test", "s", "C4", "test (logged only, never used to select)"),
    ):
        points = [(r["epoch"], r[key]) for r in log if key in r]
        if not points:
            continue
        x = [p[0] for p in points]
        mean = [p[1]["mean_map"] for p in points]
        values += mean
        axis.plot(x, mean, "-" + marker, color=colour, markersize=4, linewidth=2, label=f"{name}: mean (ties by index)")
        tie = [p[1].get("mean", {}).get("map_tie", np.nan) for p in points]
        values += tie
        axis.plot(x, tie, "-.", color=colour, linewidth=2, label=f"{name}: mean (tie-aware)")
        for direction, style in zip(directions, (":", "--")):
            per = [p[1]["directions"].get(direction, {}).get("map", np.nan) for p in points]
            values += per
            axis.plot(x, per, style, color=colour, alpha=0.6, label=f"{name}: {_arrow(direction)} (ties by index)")
    if selected_epoch is not None and values:
        axis.axvline(
            selected_epoch,
            color="k",
            alpha=0.5,
            linestyle="--",
            label=f"best.pt (epoch {selected_epoch}, on validation)",
        )
    axis.set_title("mAP per evaluation", fontsize=10)
    axis.set(xlabel="epoch", ylabel="mAP")
    axis.grid(alpha=0.3)
    if values:
        finite = [v for v in values if np.isfinite(v)]
        low, high = min(finite), max(finite)
        pad = max(0.05, (high - low) * 0.15)
        axis.set_ylim(max(0.0, low - pad), min(1.02, high + pad))
        axis.set_xlim(0.5, max(epochs) + 0.5)
        axis.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    else:
        axis.text(
            0.5,
            0.5,
            "no validation split: nothing evaluated during training",
            ha="center",
            va="center",
            transform=axis.transAxes,
        )
    figure.tight_layout()
    return _save(figure, path)


def plot_code_projection(
    path: Path,
    codes: Mapping[str, np.ndarray],
    classes: Mapping[str, np.ndarray],
    class_names: Sequence[str],
) -> Path:
    """2-D PCA of the (tanh) codes of both modalities, coloured by class, one marker per modality."""
    stacked = np.concatenate([np.asarray(c, dtype=np.float64) for c in codes.values()])
    centred = stacked - stacked.mean(0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    explained = singular**2 / max((singular**2).sum(), 1e-12)
    figure = _figure(6.8, 5.6)
    axis = figure.subplots()
    colours = [_class_colour(i, len(class_names)) for i in range(len(class_names))]
    for (modality, values), marker in zip(codes.items(), ("o", "^")):
        xy = (np.asarray(values, dtype=np.float64) - stacked.mean(0)) @ vt[:2].T
        labels = np.asarray(classes[modality])
        axis.scatter(
            xy[:, 0], xy[:, 1], c=[colours[i] for i in labels], marker=marker, s=22, alpha=0.75, edgecolors="none"
        )
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="s", linestyle="", color=colours[i], label=n) for i, n in enumerate(class_names)]
    handles += [Line2D([], [], marker=m, linestyle="", color="gray", label=mod) for mod, m in zip(codes, ("o", "^"))]
    axis.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    axis.set(
        xlabel=f"PC1 ({explained[0]:.0%} of variance)",
        ylabel=f"PC2 ({explained[1] if len(explained) > 1 else 0:.0%})",
        title="PCA of database codes (colour: class, marker: modality)",
    )
    axis.grid(alpha=0.3)
    return _save(figure, path)


def _class_colour(index: int, count: int):
    from matplotlib import colormaps

    if count <= 10:
        return colormaps["tab10"](index)
    if count <= 20:
        return colormaps["tab20"](index)
    return colormaps["turbo"](index / max(count - 1, 1))


def plot_comparison(
    path: Path,
    runs: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
    xlabel: str,
    ylabel: str,
    title: str,
    chance: Mapping[str, float] | None = None,
) -> Path:
    """One panel per direction, one line per run: ``runs[run][direction] = (x, y)``;
    ``chance[direction]`` (optional) is drawn as a dotted grey line."""
    directions = list(dict.fromkeys(d for curves in runs.values() for d in curves))
    figure = _figure(5.8 * len(directions), 4.2)
    axes = np.atleast_1d(figure.subplots(1, len(directions)))
    for axis, direction in zip(axes, directions):
        for (run, curves), colour in zip(runs.items(), (f"C{i}" for i in range(10**6))):
            if direction in curves:
                x, y = curves[direction]
                valid = ~np.isnan(np.asarray(y, dtype=float))
                axis.plot(np.asarray(x)[valid], np.asarray(y)[valid], "-", color=colour, label=run)
        if chance and direction in chance:
            axis.axhline(chance[direction], color="0.5", linestyle=":", label=f"chance ({chance[direction]:.3f})")
        axis.set(xlabel=xlabel, ylabel=ylabel, ylim=(0, 1.02), title=f"{title}: {_arrow(direction)}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="best")
    return _save(figure, path)
