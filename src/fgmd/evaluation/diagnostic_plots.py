"""Figures of the module diagnostics (:mod:`fgmd.evaluation.diagnostics`); one PNG per function.

Same conventions as :mod:`fgmd.evaluation.plots` (Agg canvas, no pyplot state, matplotlib
from the ``report`` extra). docs/MODULES.md explains how to read each figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fgmd.evaluation.plots import _figure, _save, display_image

_BAND_COLOURS = ("C0", "C1", "C3")
_CELL = 1.55


def _upsample(values: torch.Tensor, size: int) -> np.ndarray:
    """A map ``[h, w]`` -> ``[size, size]`` by nearest neighbour (each gate cell stays a visible block)."""
    return F.interpolate(values[None, None].float(), size=(size, size), mode="nearest")[0, 0].numpy()


def _overlay(axis, image: torch.Tensor, heat: torch.Tensor, size: int = 96, mask: torch.Tensor | None = None) -> None:
    """``image [C, H, W]`` in [0, 1] shown in grey with ``heat [h, w]`` on top, stretched to its own
    range (min -> dark blue, max -> yellow); ``mask [H, W]`` outlined in white."""
    grey = display_image(image.numpy(), size).mean(axis=2)
    axis.imshow(grey, cmap="gray", vmin=0, vmax=1)
    values = _upsample(heat, size)
    low, high = float(heat.min()), float(heat.max())
    axis.imshow(values, cmap="viridis", alpha=0.55, vmin=low, vmax=high if high > low else low + 1e-9)
    if mask is not None:
        shown = F.interpolate(mask[None, None].float(), size=(size, size), mode="area")[0, 0].numpy()
        axis.contour(shown, levels=[0.5], colors="white", linewidths=0.8)
    axis.set_xticks([])
    axis.set_yticks([])


def plot_gate_overlays(
    path: Path, diagnostics, images: Mapping[str, torch.Tensor], masks: torch.Tensor | None, count: int
) -> Path:
    """One row per modality: the first ``count`` images with their ADF gate overlaid.

    Each overlay is stretched to its own gate's range, printed above it with the gate's
    contrast (cv) and normalised entropy (H): a near-uniform gate still shows a pattern,
    and the printed range says how small it is.
    """
    modalities = list(diagnostics.gates)
    count = min(count, min(len(diagnostics.gates[m]) for m in modalities))
    height = (_CELL * 0.8 + 0.5) * len(modalities) + 0.7
    figure = _figure(_CELL * count + 0.4, height)
    axes = figure.subplots(len(modalities), count, squeeze=False)
    figure.subplots_adjust(top=1 - 0.75 / height, bottom=0.02, hspace=0.45, wspace=0.08)
    for row, modality in enumerate(modalities):
        gates = diagnostics.gates[modality]
        stats = diagnostics.gate_stats[modality]
        for column in range(count):
            axis = axes[row, column]
            gate = gates[column, 0]
            _overlay(axis, images[modality][column], gate, mask=None if masks is None else masks[column, 0])
            text = f"{float(gate.min()):.3f}–{float(gate.max()):.3f}\ncv {stats['contrast'][column]:.3f}  H {stats['entropy'][column]:.3f}"
            if "target_share" in stats:
                text += f"\ntarget {stats['target_share'][column]:.2f} / area {stats['area_share'][column]:.2f}"
            axis.set_title(text, fontsize=6.5)
            if column == 0:
                axis.set_ylabel(modality, fontsize=9)
    h, w = diagnostics.gates[modalities[0]].shape[-2:]
    figure.suptitle(
        f"ADF gate ({h}x{w} cells) over each image, stretched to its own range (printed: min–max);\n"
        "cv = std/mean over cells (0 = uniform), H = normalised entropy (1 = uniform)"
        + ("; white line: target mask" if masks is not None else ""),
        fontsize=8,
    )
    return _save(figure, path)


def plot_band_gains(path: Path, band_gains: Mapping[str, Mapping[int, Mapping[str, Sequence[float]]]]) -> Path:
    """Per modality: FDFSP gains per level and band, bar = mean, error bar = std over images,
    whiskers ``x`` = min and max over images and channels; the dashed line is the identity (1)."""
    modalities = list(band_gains)
    figure = _figure(4.6 * len(modalities), 3.8)
    axes = np.atleast_1d(figure.subplots(1, len(modalities)))
    for axis, modality in zip(axes, modalities):
        levels = sorted(band_gains[modality])
        x = np.arange(len(levels))
        for band, (name, colour) in enumerate(zip(("low", "mid", "high"), _BAND_COLOURS)):
            offset = (band - 1) * 0.26
            mean = np.array([band_gains[modality][level]["mean"][band] for level in levels])
            spread = np.array([band_gains[modality][level]["std_images"][band] for level in levels])
            low = np.array([band_gains[modality][level]["min"][band] for level in levels])
            high = np.array([band_gains[modality][level]["max"][band] for level in levels])
            axis.bar(
                x + offset,
                mean - 1.0,
                bottom=1.0,
                width=0.24,
                color=colour,
                label=f"{name} band",
                yerr=spread,
                capsize=3,
            )
            axis.plot(x + offset, low, "x", color="k", markersize=4)
            axis.plot(x + offset, high, "x", color="k", markersize=4)
        axis.axhline(1.0, color="k", linestyle="--", linewidth=0.8, label="identity (g = 1)")
        axis.set_xticks(x, [f"L{level}" for level in levels])
        axis.set(title=f"{modality}: FDFSP band gains", ylabel="gain g (bar from 1 to the mean)")
        values = [v for level in levels for key in ("min", "max") for v in band_gains[modality][level][key]]
        margin = max(0.02, 0.1 * (max(values) - min(values)))
        axis.set_ylim(min(min(values), 1.0) - margin, max(max(values), 1.0) + margin)
        axis.grid(alpha=0.3, axis="y")
        axis.legend(fontsize=7, loc="best")
    figure.suptitle("mean over images and channels; error bar: std over images; x: min and max", fontsize=8)
    figure.tight_layout()
    return _save(figure, path)


def plot_spectra(path: Path, spectra: Mapping[str, Mapping[int, Mapping]]) -> Path:
    """Rows = modalities, columns = FDFSP levels: radial power spectrum of the level's map
    without (dashed: the stage output entering FDFSP) and with the block (solid, its output),
    log scale, and their ratio with/without on the right axis (1 = unchanged)."""
    from matplotlib.ticker import FormatStrFormatter

    modalities = list(spectra)
    levels = sorted(spectra[modalities[0]])
    figure = _figure(4.0 * len(levels), 3.1 * len(modalities) + 0.3)
    axes = figure.subplots(len(modalities), len(levels), squeeze=False)
    for row, modality in enumerate(modalities):
        for column, level in enumerate(levels):
            axis = axes[row, column]
            entry = spectra[modality][level]
            radius = np.asarray(entry["radius"])
            without, with_block = np.asarray(entry["without"]), np.asarray(entry["with"])
            keep = radius > 0  # DC (the map's mean) left out: it dwarfs the rest
            axis.semilogy(
                radius[keep], without[keep], linestyle="--", marker="o", markersize=3, color="C7", label="without FDFSP"
            )
            axis.semilogy(radius[keep], with_block[keep], "-o", markersize=3, color="C3", label="with FDFSP")
            axis.yaxis.set_major_formatter(FormatStrFormatter("%.2g"))
            axis.yaxis.set_minor_formatter(FormatStrFormatter("%.2g"))
            ratio_axis = axis.twinx()
            ratio_axis.plot(
                radius[keep],
                with_block[keep] / without[keep],
                ":",
                color="C2",
                linewidth=1.5,
                label="ratio with / without",
            )
            ratio_axis.axhline(1.0, color="C2", alpha=0.4, linewidth=0.8)
            ratio_axis.tick_params(labelsize=7, colors="C2")
            size = "x".join(str(v) for v in entry.get("size", ()))
            axis.set_title(
                f"{modality} L{level}{f' ({size})' if size else ''}: power in the high band\n"
                f"{entry['high_without']:.1%} without, {entry['high_with']:.1%} with",
                fontsize=8,
            )
            axis.set_xlabel("radius (cycles per pixel of the level's map)", fontsize=7)
            axis.tick_params(which="both", labelsize=6.5)
            axis.grid(alpha=0.3, which="both")
            if column == 0:
                axis.set_ylabel("mean |X|² per ring", fontsize=8)
                handles = axis.get_legend_handles_labels()[0] + ratio_axis.get_legend_handles_labels()[0]
                axis.legend(handles=handles, fontsize=7)
            if column == len(levels) - 1:
                ratio_axis.set_ylabel("ratio with / without", fontsize=8, color="C2")
    figure.tight_layout()
    return _save(figure, path)


def plot_damd_attention(path: Path, diagnostics, images: Mapping[str, torch.Tensor]) -> Path:
    """Per teacher modality and pair: the image, DAMD's spatial attention on the teacher's L0, L1
    and L2 (each stretched to its range; uniform = 1/(h w) everywhere), and the channel weights
    of L2–L4 sorted, times C (1 = uniform)."""
    rows = []
    for teacher in diagnostics.damd_spatial:
        pairs = next(iter(diagnostics.damd_spatial[teacher].values())).shape[0]
        rows += [(teacher, index) for index in range(pairs)]
    spatial_levels = sorted(next(iter(diagnostics.damd_spatial.values())))
    columns = 1 + len(spatial_levels) + 1
    height = _CELL * 1.2 * len(rows) + 0.6
    figure = _figure(_CELL * (columns + 1.5), height)
    grid = figure.add_gridspec(
        len(rows),
        columns,
        width_ratios=[1] * (columns - 1) + [2],
        top=1 - 0.55 / height,
        bottom=0.04,
        hspace=0.4,
        wspace=0.15,
    )
    for row, (teacher, index) in enumerate(rows):
        axis = figure.add_subplot(grid[row, 0])
        axis.imshow(display_image(images[teacher][index].numpy()), interpolation="nearest")
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_ylabel(f"teacher {teacher}\npair {index + 1}", fontsize=7)
        for column, level in enumerate(spatial_levels):
            attention = diagnostics.damd_spatial[teacher][level][index]
            axis = figure.add_subplot(grid[row, column + 1])
            _overlay(axis, images[teacher][index], attention)
            cells = attention.numel()
            axis.set_title(
                f"L{level} ×{cells}: {float(attention.min()) * cells:.2f}–{float(attention.max()) * cells:.2f}",
                fontsize=6.5,
            )
        axis = figure.add_subplot(grid[row, columns - 1])
        for level, weights in diagnostics.damd_channel[teacher].items():
            w = np.sort(weights[index].numpy())[::-1] * weights.shape[1]
            axis.plot(np.linspace(0, 1, len(w)), w, label=f"L{level} ({weights.shape[1]} ch)")
        axis.axhline(1.0, color="k", linestyle="--", linewidth=0.8)
        axis.tick_params(labelsize=6)
        axis.grid(alpha=0.3)
        if row == len(rows) - 1:
            axis.set_xlabel("channel rank (fraction of channels)", fontsize=7)
        if row == 0:
            axis.set_title("channel weights × C, sorted (1 = uniform)", fontsize=7)
            axis.legend(fontsize=6)
    figure.suptitle(
        "DAMD teacher attention: spatial maps × (h w) (1 = uniform; printed: min–max) and channel weights",
        fontsize=8,
    )
    return _save(figure, path)


def plot_damd_terms(path: Path, terms: Mapping[str, Sequence[float]]) -> Path:
    """Left: the DAMD terms per epoch (unweighted: semantic, spatial, their sum); right: every
    weighted term of the objective, to show DAMD's share of the loss (log scale)."""
    figure = _figure(10.5, 3.6)
    left, right = figure.subplots(1, 2)
    epochs = np.arange(1, len(next(iter(terms.values()))) + 1)
    for name in ("damd_semantic", "damd_spatial", "damd"):
        if name in terms:
            left.plot(epochs, terms[name], "-o", markersize=3, label=name)
    left.set(xlabel="epoch", ylabel="unweighted value", title="DAMD terms")
    for name, values in terms.items():
        if name.endswith("_weighted"):
            right.semilogy(
                epochs,
                np.maximum(values, 1e-12),
                "-o",
                markersize=3,
                label=name.removesuffix("_weighted"),
                linewidth=2.5 if name == "damd_weighted" else 1.2,
            )
    right.set(xlabel="epoch", ylabel="weighted value (log)", title="weighted terms of the loss")
    for axis in (left, right):
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize=7)
        axis.xaxis.get_major_locator().set_params(integer=True)
    figure.tight_layout()
    return _save(figure, path)


def plot_identity_distance(path: Path, identity: Mapping[str, Sequence[Mapping]]) -> Path:
    """Horizontal bars: the relative change each module makes (``output_change``), per modality;
    the RMS of its identity parameters is printed beside each bar."""
    modules = []
    for rows in identity.values():
        modules += [r["module"] for r in rows if r["module"] not in modules]
    modalities = list(identity)
    figure = _figure(7.5, 0.55 * len(modules) * len(modalities) + 1.4)
    axis = figure.subplots()
    height = 0.8 / len(modalities)
    largest = max((r["output_change"] for rows in identity.values() for r in rows), default=0.0)
    for index, modality in enumerate(modalities):
        values = {r["module"]: r for r in identity[modality]}
        y = np.arange(len(modules)) + (index - (len(modalities) - 1) / 2) * height
        change = [values[m]["output_change"] if m in values else 0.0 for m in modules]
        axis.barh(y, change, height=height * 0.9, color=f"C{index}", label=modality)
        for yy, module, value in zip(y, modules, change):
            if module in values:
                rms = values[module]["parameter_rms"]
                text = f"{value:.3g}" + ("" if rms is None else f"  (param RMS {rms:.2g})")
                axis.text(value + largest * 0.01, yy, text, va="center", fontsize=7)
    axis.set_yticks(np.arange(len(modules)), modules)
    axis.invert_yaxis()
    axis.set_xlim(0, max(largest * 1.45, 1e-3))
    axis.set(
        xlabel="relative change ||after - before|| / ||before|| (0 = identity)",
        title="How far each module moved from the identity",
    )
    axis.grid(alpha=0.3, axis="x")
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return _save(figure, path)
