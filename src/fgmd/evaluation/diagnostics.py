"""Module diagnostics: what FDFSP, ADF and DAMD do inside a (trained) FG-MD model.

Every number here answers "does the module do anything, and what?" on a set of images:

- :func:`probe_encoder` runs one branch on a batch and captures, with forward hooks, the
  maps around each module: the maps before and after each FDFSP (L2–L4 unless
  ``model.fdfsp_levels`` says otherwise; and the stage inputs), the
  L4 map before and after ADF, the gate, and the final map that the gate pools.
- ADF: :func:`gate_contrast` (coefficient of variation of the gate over positions, 0 for a
  uniform gate), :func:`gate_entropy` (entropy of the gate as a distribution over positions,
  divided by its maximum: 1 = uniform, 0 = all weight on one position) and
  :func:`gate_target_share` (share of the gate's mass on a known target mask, beside the
  target's share of the area, which is what a uniform gate gives).
- FDFSP: :func:`band_gain_stats` (the learned low/mid/high gains, mean and spread over
  images) and :func:`radial_power_spectrum` of each level's map without and with the block.
- DAMD: :func:`damd_attention` (the teacher's spatial attention maps and channel weights on
  a few pairs) and :func:`loss_terms` (each loss term per epoch from ``log.jsonl``).
- All modules: :func:`identity_distance`, how far each module is from the identity it
  starts as, in parameters (RMS of the parameters whose zero initialisation makes it the
  identity) and in effect (relative change of the map or pooled descriptor it produces).

:func:`diagnose_model` computes all of them for both branches; :func:`diagnose_checkpoint`
does it for a run's checkpoint on its query split; :func:`write_diagnostics` writes the
figures and ``diagnostics.json``; :func:`report_diagnostics` does all three and returns the
section ``fgmd report`` adds to ``report.md``. docs/MODULES.md explains how to read them::

    from fgmd.evaluation.diagnostics import diagnose_checkpoint, write_diagnostics
    result = diagnose_checkpoint("runs/aid10/best.pt", num_images=16)
    print(result.diagnostics.identity["pan"])      # [{"module": "FDFSP L2", ...}, ...]
    write_diagnostics(result.diagnostics, "runs/aid10/diagnostics", result.images, result.masks)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fgmd.config import Config, DataConfig, ModalityConfig
from fgmd.data.datasets import build_dataset
from fgmd.data.io import read_image
from fgmd.data.preprocess import build_preprocessor
from fgmd.data.transforms import ModalityTransform
from fgmd.models import load_run
from fgmd.models.adf import ADF
from fgmd.models.encoder import ModalityEncoder
from fgmd.models.fdfsp import FDFSP, band_masks
from fgmd.models.fgmd import FGMD
from fgmd.runtime.checkpoint import load_checkpoint
from fgmd.runtime.device import resolve_device
from fgmd.runtime.files import write_atomic
from fgmd.runtime.run_log import read_log
from fgmd.training.damd import DAMD, SEMANTIC_LEVELS, SPATIAL_LEVELS

__all__ = [
    "BAND_NAMES",
    "IDENTITY_PARAMETERS",
    "EncoderProbe",
    "ModuleDiagnostics",
    "probe_encoder",
    "fdfsp_blocks",
    "gate_contrast",
    "gate_entropy",
    "gate_target_share",
    "coefficient_of_variation",
    "band_gain_stats",
    "radial_power_spectrum",
    "high_band_share",
    "identity_distance",
    "damd_attention",
    "loss_terms",
    "diagnose_model",
    "CheckpointDiagnosis",
    "read_masks",
    "diagnose_checkpoint",
    "write_diagnostics",
    "diagnostics_markdown",
    "report_diagnostics",
]

BAND_NAMES = ("low", "mid", "high")

#: Per module type, the parameters whose zero initialisation makes the module the identity
#: (FDFSP: gain MLP output layer -> gains 1, static kernel, recovery conv; ADF: the residual
#: scale gamma and the gate conv -> uniform gate). The other parameters of the module have no
#: effect while these are zero.
IDENTITY_PARAMETERS: dict[type, tuple[str, ...]] = {
    FDFSP: ("gain_mlp.2.weight", "gain_mlp.2.bias", "kernel", "recover.weight"),
    ADF: ("gamma", "gate.weight", "gate.bias"),
}

_EPS = 1e-12


# --------------------------------------------------------------------------- probing


@dataclass
class EncoderProbe:
    """Maps captured around the modules of one branch on a batch of ``B`` images.

    Attributes:
        levels: the five level maps L0..L4 as the encoder returns them (after its modules).
        fdfsp_in: per FDFSP level (2, 3, 4 by default), the stage output before the block ``[B, C, H, W]``.
        fdfsp_stage_input: per FDFSP level, the stage's input ``[B, Cin, 2H, 2W]``.
        fdfsp_out: per FDFSP level, the block's output ``[B, C, H, W]``.
        adf_in, adf_out: L4 before / after ADF ``[B, C4, h, w]`` (None without ADF).
        gate: the ADF gate ``[B, 1, h, w]`` in (0, 1) (None without ADF).
        final: the final 1x1-conv map the gate pools ``[B, C_last, h, w]``.
    """

    levels: tuple[Tensor, ...]
    fdfsp_in: dict[int, Tensor] = field(default_factory=dict)
    fdfsp_stage_input: dict[int, Tensor] = field(default_factory=dict)
    fdfsp_out: dict[int, Tensor] = field(default_factory=dict)
    adf_in: Tensor | None = None
    adf_out: Tensor | None = None
    gate: Tensor | None = None
    final: Tensor | None = None


def fdfsp_blocks(encoder: ModalityEncoder) -> list[tuple[int, FDFSP]]:
    """``[(level, block)]`` of the encoder's FDFSP blocks (empty without FDFSP)."""
    if encoder.fdfsp is None:
        return []
    return [(int(level), cast(FDFSP, block)) for level, block in encoder.fdfsp.items()]


@contextmanager
def _hooks(encoder: ModalityEncoder, captured: dict) -> Iterator[None]:
    handles = []

    def keep(name):
        def hook(module, args, output):
            captured.setdefault(name, []).append((tuple(a.detach() for a in args if a is not None), output))

        return hook

    for level, block in fdfsp_blocks(encoder):
        handles.append(block.register_forward_hook(keep(f"fdfsp{level}")))
    if encoder.adf is not None:
        handles.append(encoder.adf.register_forward_hook(keep("adf")))
    handles.append(encoder.pool.register_forward_hook(keep("pool")))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def probe_encoder(encoder: ModalityEncoder, images: Tensor, batch_size: int = 32) -> EncoderProbe:
    """Run ``encoder`` (as it is: put it in eval mode first) on ``images [B, C_in, H, W]`` and
    capture the maps around its modules (see :class:`EncoderProbe`), on the CPU."""
    captured: dict[str, list] = {}
    levels: list[list[Tensor]] = [[] for _ in range(5)]
    device = next(encoder.parameters()).device
    with _hooks(encoder, captured):
        for start in range(0, len(images), batch_size):
            output = encoder(images[start : start + batch_size].to(device))
            for index, level in enumerate(output.features):
                levels[index].append(level.float().cpu())

    def cat(name: str, pick) -> Tensor:
        return torch.cat([pick(args, out).float().cpu() for args, out in captured[name]])

    probe = EncoderProbe(levels=tuple(torch.cat(level) for level in levels))
    probe.final = cat("pool", lambda args, out: args[0])
    for level, _ in fdfsp_blocks(encoder):
        name = f"fdfsp{level}"
        probe.fdfsp_in[level] = cat(name, lambda args, out: args[0])
        probe.fdfsp_stage_input[level] = cat(name, lambda args, out: args[1])
        probe.fdfsp_out[level] = cat(name, lambda args, out: out)
    if encoder.adf is not None:
        probe.adf_in = cat("adf", lambda args, out: args[0])
        probe.adf_out = cat("adf", lambda args, out: out[0])
        probe.gate = cat("adf", lambda args, out: out[1])
    return probe


# --------------------------------------------------------------------------- ADF gate


def coefficient_of_variation(weights: Tensor) -> Tensor:
    """``std / mean`` of each row of ``weights [B, N]`` (population std): ``[B]``, 0 for uniform rows."""
    weights = weights.double()
    return (weights.std(dim=1, unbiased=False) / weights.mean(dim=1).clamp_min(_EPS)).float()


def gate_contrast(gate: Tensor) -> Tensor:
    """Coefficient of variation of each gate map over its positions: ``[B, 1, h, w]`` -> ``[B]``.

    0 for a uniform gate (plain average pooling); 1 means the gate's spread is as large as
    its mean.
    """
    return coefficient_of_variation(gate.flatten(1))


def gate_entropy(gate: Tensor) -> Tensor:
    """Normalised entropy of each gate as a distribution over positions: ``[B, 1, h, w]`` -> ``[B]``.

    ``p = G / Σ G``; ``H = -Σ p log p / log(h w)``: 1 for a uniform gate, 0 when one position
    holds all the weight. A map of one position has entropy 1 by this definition.
    """
    weights = gate.flatten(1).double()
    positions = weights.shape[1]
    if positions == 1:
        return torch.ones(weights.shape[0])
    p = weights / weights.sum(dim=1, keepdim=True).clamp_min(_EPS)
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(dim=1)
    return (entropy / math.log(positions)).float()


def _to_grid(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Area-average a mask ``[B, 1, H, W]`` onto a ``size`` grid (each cell: its covered fraction)."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask.float()
    return F.interpolate(mask.float(), size=size, mode="area")


def gate_target_share(gate: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Where the gate puts its weight, given a target mask.

    Args:
        gate: ``[B, 1, h, w]`` gate maps.
        mask: ``[B, 1, H, W]`` target masks in [0, 1] on the image grid (any size that
            area-averages onto ``h x w``; ``H, W`` multiples of ``h, w`` are exact).

    Returns:
        ``(mass_share [B], area_share [B])``: ``Σ G m / Σ G`` (share of the gate's weight on the
        target, with ``m`` the mask's coverage of each gate cell) and ``Σ m / (h w)`` (the
        target's share of the area: the mass share of a uniform gate). A gate that favours
        the target has ``mass_share > area_share``.
    """
    coverage = _to_grid(mask, (int(gate.shape[-2]), int(gate.shape[-1]))).flatten(1).double()
    weights = gate.flatten(1).double()
    mass = (weights * coverage).sum(dim=1) / weights.sum(dim=1).clamp_min(_EPS)
    return mass.float(), coverage.mean(dim=1).float()


# --------------------------------------------------------------------------- FDFSP


def band_gain_stats(gains: Tensor) -> dict[str, list[float]]:
    """Summary of FDFSP gains ``[B, C, 3]`` (low, mid, high) of one level over ``B`` images.

    Returns lists of 3 (one value per band): ``mean`` (over images and channels),
    ``std_images`` (std over images of each image's channel-mean gain: how content-adaptive
    the gains are), ``std_channels`` (std over channels of the image-mean gain), ``min`` and
    ``max`` (over images and channels). Gains are 1 at initialisation, in (0, 2).
    """
    g = gains.double()
    per_image = g.mean(dim=1)  # [B, 3]
    per_channel = g.mean(dim=0)  # [C, 3]
    return {
        "mean": g.mean(dim=(0, 1)).tolist(),
        "std_images": per_image.std(dim=0, unbiased=False).tolist(),
        "std_channels": per_channel.std(dim=0, unbiased=False).tolist(),
        "min": g.amin(dim=(0, 1)).tolist(),
        "max": g.amax(dim=(0, 1)).tolist(),
    }


def radial_power_spectrum(maps: Tensor) -> tuple[Tensor, Tensor]:
    """Radially averaged power spectrum of maps ``[B, C, H, W]``, averaged over maps.

    With ``X = fft2(x, norm="ortho")`` (so ``Σ |X|² = Σ x²``) and the radius
    ``r = sqrt(f_y² + f_x²)`` of each frequency in cycles per pixel, frequency ``(k_y, k_x)``
    falls in ring ``round(r N)``, ``N = min(H, W)``.

    Returns:
        ``radius [R]`` (the mean radius of each ring's frequencies, cycles per pixel: 0 for
        the DC ring, up to about 0.7) and ``power [R]``: the mean of ``|X|²`` over the
        frequencies of each ring and over all ``B * C`` maps (NaN for a ring without
        frequencies, whose radius is then ``k / N``).
    """
    height, width = int(maps.shape[-2]), int(maps.shape[-1])
    n = min(height, width)
    fy = torch.fft.fftfreq(height, dtype=torch.float64)
    fx = torch.fft.fftfreq(width, dtype=torch.float64)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2).flatten()  # [H*W]
    rings = torch.round(radius * n).long()
    count = int(rings.max()) + 1
    power = torch.fft.fft2(maps.double(), norm="ortho").abs().square().flatten(2).mean(dim=(0, 1))  # [H*W]
    members = torch.bincount(rings, minlength=count).double()
    empty = members == 0

    def ring_mean(values: Tensor, fill: Tensor) -> Tensor:
        sums = torch.zeros(count, dtype=torch.float64).index_add_(0, rings, values)
        return torch.where(empty, fill, sums / members.clamp_min(1))

    centres = torch.arange(count, dtype=torch.float64) / n
    return ring_mean(radius, centres), ring_mean(power, torch.full_like(centres, float("nan")))


def high_band_share(maps: Tensor) -> float:
    """Share of the power of maps ``[B, C, H, W]`` (DC excluded) in FDFSP's high band.

    ``Σ_f M_high(f) |X(f)|² / Σ_{f ≠ 0} |X(f)|²`` over all maps, with ``M_high`` the block's own
    soft high-band mask (:func:`fgmd.models.fdfsp.band_masks`: 0 up to 0.25 cycles per pixel,
    rising to 1 at 0.5), so the number means the same at every map size.
    """
    height, width = int(maps.shape[-2]), int(maps.shape[-1])
    masks, _ = band_masks(height, width, torch.device("cpu"))
    power = torch.fft.rfft2(maps.double(), norm="ortho").abs().square().sum(dim=(0, 1))  # [H, Wr]
    # the one-sided spectrum holds each column 0 < kx < W/2 once for two frequencies (kx, -kx)
    columns = torch.full((power.shape[1],), 2.0, dtype=torch.float64)
    columns[0] = 1.0
    if width % 2 == 0:
        columns[-1] = 1.0
    weighted = (power * columns).flatten()
    weighted[0] = 0.0  # DC
    total = weighted.sum()
    return float((masks[2].double() * weighted).sum() / total) if total > 0 else float("nan")


# --------------------------------------------------------------------------- identity distance


def _relative_change(after: Tensor, before: Tensor) -> float:
    """``||after - before|| / ||before||`` over the whole batch (Frobenius norms)."""
    return float((after.double() - before.double()).norm() / before.double().norm().clamp_min(_EPS))


def identity_parameter_rms(module: torch.nn.Module) -> float:
    """RMS of the parameters of ``module`` that are zero when it is the identity
    (:data:`IDENTITY_PARAMETERS`); 0 for a fresh FDFSP or ADF."""
    names = IDENTITY_PARAMETERS[type(module)]
    params = dict(module.named_parameters())
    values = torch.cat([params[name].detach().double().flatten() for name in names])
    return float(values.square().mean().sqrt())


def identity_distance(encoder: ModalityEncoder, probe: EncoderProbe) -> list[dict]:
    """How far each module of one branch is from the identity it starts as.

    One row per module: ``module`` (``FDFSP L<level>`` per block, ``ADF L4``, ``ADF pooling``),
    ``parameter_rms`` (:func:`identity_parameter_rms`; None for the pooling row, which has
    no parameters of its own) and ``output_change``: the relative change the module makes
    on the probed images, ``||after - before|| / ||before||`` over the batch — for FDFSP its
    output vs its input map, for ADF its features vs its input, for the pooling the
    gate-weighted pooled descriptor vs plain average pooling of the same final map. All are
    0 at initialisation (up to float rounding); 0.05 means the module changes what passes
    through it by 5 %.
    """
    rows: list[dict] = []
    for level, block in fdfsp_blocks(encoder):
        rows.append(
            {
                "module": f"FDFSP L{level}",
                "parameter_rms": identity_parameter_rms(block),
                "output_change": _relative_change(probe.fdfsp_out[level], probe.fdfsp_in[level]),
            }
        )
    if encoder.adf is not None and probe.adf_out is not None and probe.adf_in is not None and probe.final is not None:
        rows.append(
            {
                "module": "ADF L4",
                "parameter_rms": identity_parameter_rms(encoder.adf),
                "output_change": _relative_change(probe.adf_out, probe.adf_in),
            }
        )
        gated = encoder.pool(probe.final, probe.gate)
        rows.append(
            {
                "module": "ADF pooling",
                "parameter_rms": None,
                "output_change": _relative_change(gated, probe.final.mean(dim=(2, 3))),
            }
        )
    return rows


# --------------------------------------------------------------------------- DAMD


@torch.no_grad()
def damd_attention(damd: DAMD, teacher_levels: Sequence[Tensor]) -> dict[str, dict[int, Tensor]]:
    """The attention a teacher branch's maps get in DAMD.

    Args:
        damd: the trained attention modules.
        teacher_levels: the teacher's five level maps L0..L4 (``[B, C_l, H_l, W_l]``).

    Returns:
        ``{"spatial": {level: [B, H_l, W_l]}, "channel": {level: [B, C_l]}}`` on the CPU, for
        the spatial levels (L0–L2) and the semantic levels (L2–L4); each map or vector sums
        to one.
    """
    device = next(damd.parameters()).device
    maps = [level.float().to(device) for level in teacher_levels]
    spatial = {
        level: attention(maps[level]).reshape(maps[level].shape[0], *maps[level].shape[-2:]).cpu()
        for attention, level in zip(damd.spatial_attention, SPATIAL_LEVELS)
    }
    channel = {level: attention(maps[level]).cpu() for attention, level in zip(damd.channel_attention, SEMANTIC_LEVELS)}
    return {"spatial": spatial, "channel": channel}


def loss_terms(log: Sequence[Mapping]) -> dict[str, list[float]]:
    """Each scalar loss term per epoch from ``log.jsonl`` records: ``{term: [value per epoch]}``
    (unweighted and ``*_weighted``; NaN where an epoch lacks the term). Bookkeeping fields
    (epoch, lr, timings, digests) and evaluation records are left out."""
    skip = {"epoch", "lr", "lr_modules", "time_s", "pairs_per_s", "mining_s"}
    names: list[str] = []
    for record in log:
        for key, value in record.items():
            if key not in skip and key not in names and isinstance(value, (int, float)) and not isinstance(value, bool):
                names.append(key)
    return {name: [float(r.get(name, float("nan"))) for r in log] for name in names}


# --------------------------------------------------------------------------- all together


@dataclass
class ModuleDiagnostics:
    """Everything :func:`diagnose_model` measured; plain numbers (lists) except the maps.

    Attributes:
        modalities: the branch names.
        gates: per modality, the ADF gates ``[N, 1, h, w]`` of the probed images.
        gate_stats: per modality, ``contrast`` and ``entropy`` per image (lists of N) and
            with a mask ``target_share``/``area_share`` per image.
        band_gains: per modality, per FDFSP level, :func:`band_gain_stats`.
        spectra: per modality, per FDFSP level, ``{"radius", "without", "with"}`` (lists) and
            the power share in FDFSP's high band ``high_without``/``high_with``
            (:func:`high_band_share`).
        identity: per modality, the rows of :func:`identity_distance`.
        damd_spatial / damd_channel: per teacher modality, :func:`damd_attention` of the first
            few images (None without DAMD modules).
        terms: :func:`loss_terms` of the run's log (empty without a log).
        notes: what was measured on what (checkpoint, images), for the report.
    """

    modalities: tuple[str, ...]
    gates: dict[str, Tensor] = field(default_factory=dict)
    gate_stats: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    band_gains: dict[str, dict[int, dict[str, list[float]]]] = field(default_factory=dict)
    spectra: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    identity: dict[str, list[dict]] = field(default_factory=dict)
    damd_spatial: dict[str, dict[int, Tensor]] | None = None
    damd_channel: dict[str, dict[int, Tensor]] | None = None
    terms: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        """JSON-ready numbers (no maps): what ``diagnostics.json`` holds."""
        out: dict = {"modalities": list(self.modalities), "notes": list(self.notes)}
        gate: dict[str, dict[str, Any]] = {}
        for modality, stats in self.gate_stats.items():
            gate[modality] = {key: float(np.mean(values)) for key, values in stats.items()}
            gate[modality].update({f"{key}_per_image": list(values) for key, values in stats.items()})
        out["adf_gate"] = gate
        out["fdfsp_band_gains"] = {
            m: {f"L{level}": s for level, s in levels.items()} for m, levels in self.band_gains.items()
        }
        out["fdfsp_spectra"] = {
            m: {f"L{level}": s for level, s in levels.items()} for m, levels in self.spectra.items()
        }
        out["identity_distance"] = self.identity
        if self.damd_channel is not None and self.damd_spatial is not None:
            out["damd_channel_weights_cv"] = {
                m: {f"L{level}": float(coefficient_of_variation(w).mean()) for level, w in levels.items()}
                for m, levels in self.damd_channel.items()
            }
            out["damd_spatial_attention_cv"] = {
                m: {f"L{level}": float(coefficient_of_variation(w.flatten(1)).mean()) for level, w in levels.items()}
                for m, levels in self.damd_spatial.items()
            }
        out["loss_terms"] = self.terms
        return out


@torch.no_grad()
def diagnose_model(
    model: FGMD,
    images: Mapping[str, Tensor],
    masks: Tensor | None = None,
    damd: DAMD | None = None,
    damd_pairs: int = 4,
    log: Sequence[Mapping] = (),
    batch_size: int = 32,
) -> ModuleDiagnostics:
    """All module diagnostics of ``model`` on paired images.

    Args:
        model: an FG-MD model (put in eval mode by this function; restored afterwards).
        images: per modality, ``[N, C_m, S, S]`` preprocessed images; the same index is the
            same scene in both modalities (pairs), as DAMD compares pairs.
        masks: optional target masks ``[N, 1, S, S]`` in [0, 1], the same for both modalities.
        damd: the DAMD attention modules of the run (None: no DAMD diagnostics).
        damd_pairs: pairs shown for DAMD (the first ones).
        log: the run's ``log.jsonl`` records, for the loss terms.
        batch_size: images per forward pass.
    """
    was_training = model.training
    model.eval()
    result = ModuleDiagnostics(tuple(model.modalities))
    probes = {}
    try:
        for modality in model.modalities:
            encoder = model.encoder(modality)
            probe = probe_encoder(encoder, images[modality], batch_size)
            probes[modality] = probe
            result.identity[modality] = identity_distance(encoder, probe)
            if probe.gate is not None:
                result.gates[modality] = probe.gate
                stats = {"contrast": gate_contrast(probe.gate).tolist(), "entropy": gate_entropy(probe.gate).tolist()}
                if masks is not None:
                    mass, area = gate_target_share(probe.gate, masks)
                    stats.update({"target_share": mass.tolist(), "area_share": area.tolist()})
                result.gate_stats[modality] = stats
            blocks = fdfsp_blocks(encoder)
            if blocks:
                gains, spectra = {}, {}
                for level, block in blocks:
                    before, after = probe.fdfsp_in[level], probe.fdfsp_out[level]
                    gains[level] = band_gain_stats(block.band_gains(before.to(next(block.parameters()).device)).cpu())
                    radius, without = radial_power_spectrum(before)
                    _, with_block = radial_power_spectrum(after)
                    spectra[level] = {
                        "size": list(before.shape[-2:]),
                        "radius": radius.tolist(),
                        "without": without.tolist(),
                        "with": with_block.tolist(),
                        "high_without": high_band_share(before),
                        "high_with": high_band_share(after),
                    }
                result.band_gains[modality] = gains
                result.spectra[modality] = spectra
        if damd is not None:
            damd.eval()
            result.damd_spatial, result.damd_channel = {}, {}
            for teacher in model.modalities:
                levels = [level[:damd_pairs] for level in probes[teacher].levels]
                attention = damd_attention(damd, levels)
                result.damd_spatial[teacher] = attention["spatial"]
                result.damd_channel[teacher] = attention["channel"]
    finally:
        model.train(was_training)
    result.terms = loss_terms(log)
    return result


def _damd_of(checkpoint: Path, state: dict, config: Config, level_channels: tuple[int, ...]) -> tuple[DAMD | None, str]:
    """The run's DAMD attention modules: from ``checkpoint`` when it holds the objective
    (``last.pt``), else from ``last.pt`` beside it; with a note saying which."""
    if not config.loss.damd:
        return None, ""
    source, objective = checkpoint, state.get("objective")
    if objective is None and (checkpoint.parent / "last.pt").is_file():
        source = checkpoint.parent / "last.pt"
        last = load_checkpoint(source)
        objective = last.get("objective")
        note = (
            f"DAMD attention modules from {source.name} (after {last.get('epoch')} epochs; "
            f"{checkpoint.name} stores the encoders only)"
        )
    else:
        note = f"DAMD attention modules from {source.name}"
    if objective is None:
        return None, f"no DAMD diagnostics: neither {checkpoint.name} nor a last.pt beside it holds the DAMD modules"
    prefix = "damd."
    damd_state = {key[len(prefix) :]: value for key, value in objective.items() if key.startswith(prefix)}
    damd = DAMD(level_channels, config.loss.damd_reduction)
    damd.load_state_dict(damd_state)
    return damd, note


class CheckpointDiagnosis(NamedTuple):
    """What :func:`diagnose_checkpoint` returns.

    Attributes:
        diagnostics: the :class:`ModuleDiagnostics`.
        images: per modality, the probed images resized and cropped as the model sees them
            but not normalised (``[N, C, S, S]`` in [0, 1]), for figures.
        masks: ``[N, 1, S, S]`` target masks on the preprocessed grid, or None when the
            dataset has none.
    """

    diagnostics: ModuleDiagnostics
    images: dict[str, Tensor]
    masks: Tensor | None


def _geometry(data: DataConfig, image: Tensor) -> Tensor:
    """``image [C, H, W]`` resized and centre-cropped as evaluation does, not normalised: the
    pixels the model sees, in [0, 1]."""
    channels = int(image.shape[0])
    plain = ModalityConfig(channels=channels, mean=[0.0] * channels, std=[1.0] * channels)
    return ModalityTransform(plain, data.image_size, data.resize, train=False)(image)


def read_masks(data: DataConfig, ids: Sequence[str]) -> Tensor | None:
    """Target masks of ``ids`` from ``<data.root>/masks/<id>.png`` (as ``fgmd generate-demo-data``
    writes them), resized and centre-cropped like the evaluation images: ``[N, 1, S, S]`` in
    [0, 1]; None when the dataset has no ``masks`` folder or a listed id has no mask."""
    folder = Path(data.root) / "masks"
    paths = [folder / f"{sample_id}.png" for sample_id in ids]
    if not folder.is_dir() or not all(path.is_file() for path in paths):
        return None
    return torch.stack([_geometry(data, read_image(path, bands=[0])) for path in paths])


@torch.no_grad()
def diagnose_checkpoint(
    checkpoint: str | Path,
    overrides: Sequence[str] = (),
    num_images: int = 32,
    model: FGMD | None = None,
) -> CheckpointDiagnosis:
    """:func:`diagnose_model` of a checkpoint on ``num_images`` pairs of its query split
    (one per class in turn, picked as the report picks its queries, seed 0), with the run's DAMD modules and log, and the dataset's target
    masks when it has them (:func:`read_masks`).

    Args:
        checkpoint: ``best.pt`` or ``last.pt`` of a run.
        overrides: config overrides, e.g. ``data.root=/moved/data``.
        num_images: pairs probed.
        model: the checkpoint's model when the caller has loaded it already.
    """
    checkpoint = Path(checkpoint)
    loaded, config, state = load_run(checkpoint, overrides)
    model = model if model is not None else loaded.to(resolve_device(config.train.device))
    data = config.data
    split = build_dataset(data, data.query_split)
    modalities = list(data.modalities)
    raw = {m: split.images(m) for m in modalities}  # decoded, for display
    inputs = {m: split.images(m, build_preprocessor(data, m)) for m in modalities}  # encoder inputs
    from fgmd.evaluation.report import _pick_queries  # here: the report module imports this one

    picked = _pick_queries(raw[modalities[0]].labels, num_images, seed=0)
    shown = {m: torch.stack([_geometry(data, raw[m][i]["image"]) for i in picked]) for m in modalities}
    prepared = {m: torch.stack([inputs[m][i]["image"] for i in picked]) for m in modalities}
    masks = read_masks(data, [raw[modalities[0]].ids[i] for i in picked])
    damd, damd_note = _damd_of(checkpoint, state, config, loaded.level_channels)
    diagnostics = diagnose_model(
        model, prepared, masks=masks, damd=damd, log=read_log(checkpoint.parent), batch_size=config.eval.batch_size
    )
    diagnostics.notes.append(
        f"{checkpoint} on {len(picked)} pairs of split '{data.query_split}' (one per class in turn), "
        f"{data.image_size}x{data.image_size} px"
        + ("; target masks from the dataset's masks/ folder" if masks is not None else "")
    )
    if damd_note:
        diagnostics.notes.append(damd_note)
    return CheckpointDiagnosis(diagnostics, shown, masks)


def write_diagnostics(
    diagnostics: ModuleDiagnostics,
    out_dir: str | Path,
    images: Mapping[str, Tensor] | None = None,
    masks: Tensor | None = None,
    max_gates: int = 8,
) -> dict[str, Path]:
    """Write ``diagnostics.json`` and the PNG figures of ``diagnostics`` into ``out_dir``.

    Figures (each only when its module is in the model): ``adf_gates.png`` (needs
    ``images``, the probed images before preprocessing), ``fdfsp_band_gains.png``,
    ``fdfsp_spectra.png``, ``damd_attention.png`` (needs ``images``), ``damd_terms.png``
    (needs the loss terms), ``identity_distance.png``. Returns ``{name: path}`` including
    ``"json"``.
    """
    from fgmd.evaluation import diagnostic_plots as plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if diagnostics.gates and images is not None:
        paths["gates"] = plots.plot_gate_overlays(out / "adf_gates.png", diagnostics, images, masks, max_gates)
    if diagnostics.band_gains:
        paths["band_gains"] = plots.plot_band_gains(out / "fdfsp_band_gains.png", diagnostics.band_gains)
        paths["spectra"] = plots.plot_spectra(out / "fdfsp_spectra.png", diagnostics.spectra)
    if diagnostics.damd_spatial is not None and images is not None:
        paths["damd_attention"] = plots.plot_damd_attention(out / "damd_attention.png", diagnostics, images)
    if any(name.startswith("damd") for name in diagnostics.terms):
        paths["damd_terms"] = plots.plot_damd_terms(out / "damd_terms.png", diagnostics.terms)
    if any(diagnostics.identity.values()):
        paths["identity"] = plots.plot_identity_distance(out / "identity_distance.png", diagnostics.identity)
    paths["json"] = write_atomic(out / "diagnostics.json", json.dumps(diagnostics.summary(), indent=2))
    return paths


def diagnostics_markdown(diagnostics: ModuleDiagnostics, paths: Mapping[str, Path]) -> str:
    """The "Module diagnostics" section of a report: the numbers as tables and the figures
    written by :func:`write_diagnostics` (linked by file name, relative to the report)."""
    lines = [
        "## Module diagnostics",
        "",
        "What each FG-MD module does in this model (how to read it: docs/MODULES.md).",
        "",
    ]
    lines += [f"- {note}" for note in diagnostics.notes] + [""]
    modalities = list(diagnostics.modalities)
    if any(diagnostics.identity.values()):
        lines += [
            "### Distance from the identity",
            "",
            (
                "Relative change each module makes to what passes through it (0 = still the identity it starts as) "
                "and the RMS of the parameters whose zero initialisation makes it the identity."
            ),
            "",
            "| module | " + " | ".join(f"{m} change | {m} param RMS" for m in modalities) + " |",
            "|---|" + "---|---|" * len(modalities),
        ]
        modules = [r["module"] for r in diagnostics.identity[modalities[0]]]
        for module in modules:
            cells = []
            for m in modalities:
                row = next(r for r in diagnostics.identity[m] if r["module"] == module)
                rms = "–" if row["parameter_rms"] is None else f"{row['parameter_rms']:.3g}"
                cells.append(f"{row['output_change']:.3g} | {rms}")
            lines.append(f"| {module} | " + " | ".join(cells) + " |")
        lines += ["", f"![identity distance]({paths['identity'].name})", ""]
    if diagnostics.gate_stats:
        lines += [
            "### ADF gate",
            "",
            "| modality | contrast (cv, 0 = uniform) | entropy (1 = uniform) | gate mass on target | target area |",
            "|---|---|---|---|---|",
        ]
        for m, stats in diagnostics.gate_stats.items():
            target = f"{np.mean(stats['target_share']):.3f}" if "target_share" in stats else "– (no masks)"
            area = f"{np.mean(stats['area_share']):.3f}" if "area_share" in stats else "–"
            lines.append(
                f"| {m} | {np.mean(stats['contrast']):.3f} | {np.mean(stats['entropy']):.3f} | {target} | {area} |"
            )
        lines.append("")
        if "gates" in paths:
            lines += [f"![ADF gates]({paths['gates'].name})", ""]
    if diagnostics.band_gains:
        lines += [
            "### FDFSP",
            "",
            "| modality | level | gain low / mid / high (mean ± std over images) | high-band power without → with |",
            "|---|---|---|---|",
        ]
        for m, levels in diagnostics.band_gains.items():
            for level, stats in levels.items():
                gains = " / ".join(f"{mean:.3f} ± {std:.3f}" for mean, std in zip(stats["mean"], stats["std_images"]))
                spectrum = diagnostics.spectra[m][level]
                lines.append(
                    f"| {m} | L{level} | {gains} | {spectrum['high_without']:.1%} → {spectrum['high_with']:.1%} |"
                )
        lines += [
            "",
            f"![FDFSP band gains]({paths['band_gains'].name})",
            "",
            f"![FDFSP spectra]({paths['spectra'].name})",
            "",
        ]
    if "damd_attention" in paths or "damd_terms" in paths:
        lines += ["### DAMD", ""]
        for key, name in (("damd_attention", "attention"), ("damd_terms", "terms")):
            if key in paths:
                lines += [f"![DAMD {name}]({paths[key].name})", ""]
    return "\n".join(lines)


def report_diagnostics(
    checkpoint: str | Path,
    out_dir: str | Path,
    overrides: Sequence[str] = (),
    model: FGMD | None = None,
    num_images: int = 16,
) -> str:
    """Diagnose ``checkpoint`` (:func:`diagnose_checkpoint`), write the figures and
    ``diagnostics.json`` into ``out_dir`` and return the report section; "" for a baseline
    run (no FDFSP, ADF or DAMD: nothing to diagnose)."""
    config = Config.from_run(load_checkpoint(checkpoint)["config"]).with_overrides(list(overrides))
    if not (config.model.fdfsp or config.model.adf or config.loss.damd):
        return ""
    result = diagnose_checkpoint(checkpoint, overrides, num_images, model)
    paths = write_diagnostics(result.diagnostics, out_dir, result.images, result.masks)
    return diagnostics_markdown(result.diagnostics, paths)
