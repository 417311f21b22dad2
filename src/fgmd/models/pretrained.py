"""ImageNet-pretrained MobileNetV2 trunk weights: download/cache, local files, key-name mapping.

``model.pretrained`` (``imagenet`` = torchvision ``IMAGENET1K_V1``, ``imagenet_v2`` =
``IMAGENET1K_V2``) names the weights; ``model.pretrained_path`` reads them from a local file
instead of torch's download cache. Accepted files are state dicts (``torch.save``; also
wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``, or ``.safetensors`` when the
``safetensors`` package is installed) with either

- torchvision names: ``features.<i>.…`` (``classifier.*`` is ignored), or
- timm ``mobilenetv2_100`` names: ``conv_stem``, ``bn1``, ``blocks.<s>.<j>.…``,
  ``conv_head``, ``bn2`` (``classifier.*`` ignored), mapped onto torchvision's layout;

``module.`` and ``model.`` prefixes (DataParallel, wrappers) are stripped. Any other key
that is missing, unexpected or of the wrong shape is an error that lists the keys.

The weights go into the 3-band trunk of the reference encoder *before* :func:`build_model`
deep-copies it per modality, so both branches start from the same trunk; 1-band and N-band
stems are then adapted from the RGB filters (:func:`~fgmd.models.backbone.adapt_stem_weight`).
"""

from __future__ import annotations

import os
import re
import urllib.error
from pathlib import Path
from typing import cast

import torch
from torch import Tensor, nn

from ..config import ConfigError

__all__ = [
    "PretrainedWeightsError",
    "TORCHVISION_WEIGHTS",
    "convert_state_dict",
    "load_pretrained_trunk",
    "pretrained_state_dict",
    "read_state_dict",
    "timm_to_torchvision",
]

#: ``model.pretrained`` value -> torchvision ``MobileNet_V2_Weights`` member name.
TORCHVISION_WEIGHTS = {"imagenet": "IMAGENET1K_V1", "imagenet_v2": "IMAGENET1K_V2"}
PRETRAINED_CHOICES = ("none", *TORCHVISION_WEIGHTS)  # model.pretrained choices

_PREFIXES = ("module.", "model.")
_CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema")
_MAX_LISTED = 8

# timm InvertedResidual / DepthwiseSeparableConv submodule -> torchvision ``features.<i>.conv`` path.
_TIMM_IR = {
    "conv_pw": "conv.0.0",
    "bn1": "conv.0.1",
    "conv_dw": "conv.1.0",
    "bn2": "conv.1.1",
    "conv_pwl": "conv.2",
    "bn3": "conv.3",
}
_TIMM_DS = {"conv_dw": "conv.0.0", "bn1": "conv.0.1", "conv_pw": "conv.1", "bn2": "conv.2"}
_TIMM_TOP = {"conv_stem": "features.0.0", "bn1": "features.0.1", "conv_head": "features.18.0", "bn2": "features.18.1"}
_TIMM_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.([A-Za-z0-9_]+)\.(.+)$")


class PretrainedWeightsError(ConfigError):
    """Pretrained weights cannot be obtained or do not fit the trunk; the message says how to fix it."""


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f", … ({len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a local weights file (``torch.save`` state dict or ``.safetensors``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PretrainedWeightsError(f"model.pretrained_path: no such file: {path}")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise PretrainedWeightsError(
                f"{path} is a .safetensors file but the safetensors package is not installed "
                "(pip install safetensors), or convert it with torch.save(state_dict, 'weights.pth')"
            ) from None
        return dict(load_file(str(path)))
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unpickling failure means "not a plain state dict"
        # torch's own message suggests weights_only=False, which would run code from the file
        raise PretrainedWeightsError(
            f"{path} is not a trusted weights file: it is damaged, or holds Python objects besides tensors and "
            "plain values (refused without running anything in it); save the weights with "
            "torch.save(model.state_dict(), path)"
        ) from None
    return _unwrap(loaded, path)


def _unwrap(loaded: object, path: Path | str) -> dict[str, Tensor]:
    """The state dict inside ``loaded``: itself, or under ``state_dict``/``model``/... ."""
    if isinstance(loaded, dict) and not any(isinstance(v, Tensor) for v in loaded.values()):
        for key in _CONTAINER_KEYS:
            if isinstance(loaded.get(key), dict):
                return _unwrap(loaded[key], path)
    if not isinstance(loaded, dict) or not loaded:
        raise PretrainedWeightsError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    tensors = {str(k): v for k, v in loaded.items() if isinstance(v, Tensor)}
    if not tensors:
        raise PretrainedWeightsError(f"{path} holds no tensors (keys: {_listed(sorted(map(str, loaded)))})")
    return tensors


def timm_to_torchvision(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename timm ``mobilenetv2_100`` keys to torchvision ``features.<i>`` keys.

    Blocks ``blocks.<s>.<j>`` are numbered in (stage, index) order as ``features.1..17``;
    a block with ``conv_pwl`` is an inverted residual, one without it the expansion-1
    depthwise-separable first block. Unknown keys are kept unchanged (and reported later).
    """
    blocks = sorted({(int(m[1]), int(m[2])) for k in state if (m := _TIMM_BLOCK.match(k))})
    feature_index = {block: i + 1 for i, block in enumerate(blocks)}
    inverted = {(int(m[1]), int(m[2])) for k in state if (m := _TIMM_BLOCK.match(k)) and m[3] == "conv_pwl"}
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        new = key
        if match := _TIMM_BLOCK.match(key):
            block = (int(match[1]), int(match[2]))
            table = _TIMM_IR if block in inverted else _TIMM_DS
            if match[3] in table:
                new = f"features.{feature_index[block]}.{table[match[3]]}.{match[4]}"
        else:
            module, _, rest = key.partition(".")
            if module in _TIMM_TOP and rest:
                new = f"{_TIMM_TOP[module]}.{rest}"
        out[new] = value
    return out


def convert_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """torchvision-named trunk weights from a torchvision- or timm-style state dict.

    Strips ``module.``/``model.`` prefixes, maps timm names, drops ``classifier.*``.
    """
    stripped: dict[str, Tensor] = {}
    for key, value in state.items():
        while key.startswith(_PREFIXES):
            key = key.split(".", 1)[1]
        stripped[key] = value
    if any(k.startswith(("conv_stem.", "blocks.", "conv_head.")) for k in stripped):
        stripped = timm_to_torchvision(stripped)
    return {k: v for k, v in stripped.items() if not k.startswith("classifier.")}


def _torch_cache_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _download(source: str) -> dict[str, Tensor]:
    """torchvision's ImageNet weights for ``source`` (torch hub cache, downloaded when missing)."""
    from torchvision.models import MobileNet_V2_Weights

    weights = MobileNet_V2_Weights[TORCHVISION_WEIGHTS[source]]
    try:
        return weights.get_state_dict(progress=False, check_hash=True, map_location="cpu", weights_only=True)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
        cache = _torch_cache_file(weights.url)
        raise PretrainedWeightsError(
            f"model.pretrained={source}: could not download the ImageNet weights of MobileNetV2 "
            f"({weights}) from {weights.url}: {error}.\n"
            "Without internet access: download that file on a machine that has it, copy it here and "
            f"either set model.pretrained_path=/path/to/{cache.name}, or put it in torch's download "
            f"cache at {cache} (the cache folder follows $TORCH_HOME). "
            "Or train from random weights with model.pretrained=none."
        ) from None
    except RuntimeError as error:  # hash mismatch or an unreadable (partial) cached file
        raise PretrainedWeightsError(
            f"model.pretrained={source}: the ImageNet weights of MobileNetV2 could not be read ({error}); "
            f"delete {_torch_cache_file(weights.url)} and try again, or set model.pretrained_path"
        ) from None


def pretrained_state_dict(source: str, path: str = "") -> dict[str, Tensor]:
    """torchvision-named MobileNetV2 trunk weights for ``model.pretrained=source``.

    ``path`` (``model.pretrained_path``) reads a local file instead of the download cache.
    """
    if source not in TORCHVISION_WEIGHTS:
        raise PretrainedWeightsError(
            f"model.pretrained={source!r} names no weights; choose one of {', '.join(TORCHVISION_WEIGHTS)} or none"
        )
    state = read_state_dict(path) if path else _download(source)
    return convert_state_dict(state)


def load_pretrained_trunk(trunk: nn.Module, source: str, path: str = "", width_mult: float = 1.0) -> None:
    """Load ImageNet weights into a 3-band :class:`~fgmd.models.backbone.MobileNetV2Trunk` (in place).

    Raises:
        PretrainedWeightsError: width other than 1.0, weights unavailable, or keys/shapes that
            do not match the trunk (listed in the message).
    """
    if width_mult != 1.0:
        raise PretrainedWeightsError(
            f"pretrained MobileNetV2 weights exist only for model.width_mult=1.0, got {width_mult}; "
            "use model.pretrained=none for other widths"
        )
    stem = cast(nn.Conv2d, cast(nn.Sequential, cast(nn.Sequential, trunk.features)[0])[0])
    if stem.in_channels != 3:
        raise ValueError("load pretrained weights before adapting the stem (the trunk must still take 3 bands)")
    where = path or f"torchvision {TORCHVISION_WEIGHTS.get(source, source)}"
    state = pretrained_state_dict(source, path)
    expected = trunk.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"missing {len(missing)}: {_listed(missing)}")
        if unexpected:
            problems.append(f"unexpected {len(unexpected)}: {_listed(unexpected)}")
        raise PretrainedWeightsError(
            f"{where} does not match the MobileNetV2 trunk (torchvision names features.<i>…, or timm "
            f"mobilenetv2_100 names; module./model. prefixes and classifier.* are ignored): " + "; ".join(problems)
        )
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if wrong:
        raise PretrainedWeightsError(
            f"{where}: {len(wrong)} tensors have the wrong shape for a width-1.0, 3-band MobileNetV2: {_listed(wrong)}"
        )
    full = {k: state.get(k, v) for k, v in expected.items()}
    trunk.load_state_dict(full, strict=True)
