"""Parameter and multiply-accumulate (MAC) counting.

MACs are counted with :class:`torch.utils.flop_counter.FlopCounterMode` (MACs = FLOPs / 2).
Its formulas cover convolutions and matrix products (the usual convention of MAC counters):
elementwise work — activations, BN, residual additions, the spectral products inside FDFSP,
ADF's shift-and-add and softmaxes, pooling — is not counted.

FFTs have no formula in PyTorch, so they would count as zero. Here they are counted with the
textbook radix-2 estimate: a complex FFT of ``N`` points costs ``5 N log2 N`` real FLOPs and a
real-input (``rfft``) or real-output (``irfft``) one half of that, for ``N`` the product of the
transformed sizes. This is the cost of the default ``torch.fft`` path; the export-only matmul
DFT path (``FDFSP.use_matmul_dft``) costs more and would be counted as its matmuls.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

if TYPE_CHECKING:
    from .fgmd import FGMD

__all__ = ["count_parameters", "count_macs", "model_summary", "measure_encode_time"]

_aten = torch.ops.aten


def count_parameters(module: nn.Module) -> int:
    """Number of parameter elements of ``module`` (trainable or not)."""
    return sum(p.numel() for p in module.parameters())


def _fft_flops(shape: torch.Size, dims: list[int], complex_input: bool) -> int:
    """FLOPs of FFTs over ``dims`` of a signal of ``shape`` (see the module docstring)."""
    points = math.prod(shape[d] for d in dims)
    transforms = math.prod(shape) // max(points, 1)
    per_transform = 5 * points * math.log2(points) if points > 1 else 0.0
    return int(round(transforms * per_transform * (1.0 if complex_input else 0.5)))


def _r2c_flops(x_shape, dim, *args, out_shape=None, **kwargs) -> int:
    return _fft_flops(x_shape, dim, complex_input=False)


def _c2r_flops(x_shape, dim, *args, out_shape=None, **kwargs) -> int:
    return _fft_flops(out_shape, dim, complex_input=False)


def _c2c_flops(x_shape, dim, *args, out_shape=None, **kwargs) -> int:
    return _fft_flops(x_shape, dim, complex_input=True)


_FFT_FORMULAS = {
    _aten._fft_r2c: _r2c_flops,
    _aten._fft_c2r: _c2r_flops,
    _aten._fft_c2c: _c2c_flops,
}


def count_macs(module: nn.Module | Callable[..., Any], example_input: Tensor | tuple) -> int:
    """MACs of one ``module(example_input)`` call (no gradient), FFTs included analytically.

    ``module`` is a module or any callable (e.g. ``encoder.encode``); ``example_input`` is a
    tensor or a tuple of positional arguments. A module runs in whatever mode it is in: put it
    in eval mode for inference costs.
    """
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_FFT_FORMULAS) as counter:
        module(*args)
    return counter.get_total_flops() // 2


def model_summary(model: FGMD, image_size: int = 224) -> dict[str, Any]:
    """Parameters and inference MACs of each branch of ``model`` at ``image_size`` (batch 1).

    Returns:
        ``{"image_size", "total_params", "branches": {modality: {"in_channels", "params",
        "macs", "parts": {"trunk", "fdfsp", "adf", "head"}}}}`` (parts are parameter counts;
        a disabled module counts 0).
    """
    was_training = model.training
    model.eval()
    branches = {}
    try:
        for name in model.modalities:
            encoder = model.encoder(name)
            device = next(encoder.parameters()).device
            image = torch.zeros(1, encoder.in_channels, image_size, image_size, device=device)
            parts = {
                part: count_parameters(getattr(encoder, part)) if getattr(encoder, part) is not None else 0
                for part in ("trunk", "fdfsp", "adf", "head")
            }
            branches[name] = {
                "in_channels": encoder.in_channels,
                "params": count_parameters(encoder),
                "macs": count_macs(encoder.encode, image),
                "parts": parts,
            }
    finally:
        model.train(was_training)
    return {"image_size": image_size, "total_params": count_parameters(model), "branches": branches}


def measure_encode_time(
    models: dict[str, FGMD],
    image_size: int,
    batch_sizes: tuple[int, ...] = (1, 32),
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | str = "cpu",
) -> dict[str, dict[int, float]]:
    """Encoder time in ms per image, eval mode, for several models measured side by side.

    Every round times one ``encode`` call of every branch of every model at every batch size,
    the models in a rotated order each round, so a load change on a shared machine hits all
    models alike. The result per model and batch size is the minimum over ``repeats`` rounds
    (after ``warmup`` untimed rounds; interference from other processes only adds time, so the
    minimum is the least disturbed estimate, as ``timeit`` advises) of the per-image time of
    one branch, averaged over the two branches (a query passes through one branch).

    Returns:
        ``{name: {batch_size: ms_per_image}}``.
    """
    import time

    device = torch.device(device)
    names = list(models)
    samples: dict[str, dict[int, list[float]]] = {n: {b: [] for b in batch_sizes} for n in names}
    states = {n: m.training for n, m in models.items()}
    inputs = {
        (n, modality, b): torch.randn(b, models[n].encoder(modality).in_channels, image_size, image_size, device=device)
        for n in names
        for modality in models[n].modalities
        for b in batch_sizes
    }

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    try:
        for model in models.values():
            model.to(device).eval()
        with torch.inference_mode():
            for round_index in range(warmup + repeats):
                shift = round_index % len(names)
                for name in names[shift:] + names[:shift]:
                    model = models[name]
                    for b in batch_sizes:
                        per_branch = []
                        for modality in model.modalities:
                            x = inputs[(name, modality, b)]
                            sync()
                            start = time.perf_counter()
                            model.encode(x, modality)
                            sync()
                            per_branch.append((time.perf_counter() - start) * 1000.0 / b)
                        if round_index >= warmup:
                            samples[name][b].append(sum(per_branch) / len(per_branch))
    finally:
        for name, model in models.items():
            model.train(states[name])
    return {n: {b: min(v) for b, v in samples[n].items()} for n in names}
