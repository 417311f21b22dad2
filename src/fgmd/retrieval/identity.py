"""Encoder identity: what an index file records about the encoder that produced its codes.

An index built by ``fgmd index`` stores, as its ``encoder`` metadata::

    {"config": <the checkpoint's run config, a plain dict>,
     "weights_sha256": <sha256 of the state_dict tensors of the branch that encoded the images>,
     "modality": <that branch's modality>,
     "bits": <K>,
     "preprocessing": <Preprocessor.spec() of that modality: bands, scaling, sizes, mean/std>}

(``preprocessing`` is absent in indexes written before it was stored; it is derived from
``config`` and compared through it, so those indexes still match.)

Queries are encoded by the *other* branch of the same checkpoint. ``identity_mismatches``
decides whether an index and a query model belong together: the query checkpoint's copy of
the indexed branch must hash to the stored ``weights_sha256`` (so the index holds exactly
the codes this checkpoint would produce), the code length must match, and so must the parts
of the config that change what a code means — the ``model`` section, the modality pair and
the preprocessing of both modalities (``Preprocessor.spec``: bands, radiometry, sizes, mean/std). Bookkeeping
entries (``data.root``, ``out_dir``, training schedule, ...) are not compared: a checkpoint
copied to another machine still matches its index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fgmd.config import Config, ConfigError
from fgmd.data.preprocess import build_preprocessor

__all__ = ["encoder_identity", "identity_mismatches", "preprocessing_of", "weights_sha256"]


def weights_sha256(module: nn.Module) -> str:
    """sha256 (hex) of ``module.state_dict()``: every entry's name, dtype, shape and raw bytes,
    in state-dict order. Parameters and buffers (BatchNorm statistics) both count."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        header = f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0{tensor.numel()}\0".encode()
        digest.update(len(header).to_bytes(8, "little"))
        digest.update(header)
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def encoder_identity(encoder: nn.Module, config: Config, modality: str) -> dict[str, Any]:
    """The identity of ``encoder`` (the ``modality`` branch of a model trained with ``config``)."""
    bits = getattr(encoder, "bits", config.model.bits)
    return {
        "config": config.to_dict(),
        "weights_sha256": weights_sha256(encoder),
        "modality": modality,
        "bits": bits,
        "preprocessing": preprocessing_of(config, modality),
    }


def preprocessing_of(config: Mapping[str, Any] | Config, modality: str) -> dict[str, Any]:
    """What the encoder of ``modality`` is fed: its ``Preprocessor.spec()`` under ``config``."""
    if not isinstance(config, Config):
        config = Config.from_run(dict(config))
    return build_preprocessor(config.data, modality).spec()


def _meaning(config: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a config dict that change what a code means (see the module docs)."""
    try:
        parsed = Config.from_run(dict(config))
    except (ConfigError, TypeError, ValueError):  # not a config this fgmd understands: compare as stored
        return {"config": dict(config)}
    modalities = list(parsed.data.modalities)
    return {
        "model": parsed.to_dict()["model"],
        "data.modalities": modalities,
        **{f"preprocessing[{m}]": preprocessing_of(parsed, m) for m in modalities},
    }


def identity_mismatches(stored: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between a stored encoder identity and the expected one
    (empty when they match). Compares ``modality``, ``bits``, ``weights_sha256`` and the
    meaningful parts of ``config``."""
    problems = []
    for key in ("modality", "bits", "weights_sha256"):
        if stored.get(key) != expected.get(key):
            problems.append(f"{key}: {stored.get(key)!r} in the index, {expected.get(key)!r} expected")
    stored_config, expected_config = stored.get("config"), expected.get("config")
    if not isinstance(stored_config, Mapping) or not isinstance(expected_config, Mapping):
        if stored_config != expected_config:
            problems.append("config: missing or not a mapping")
        return problems
    a, b = _meaning(stored_config), _meaning(expected_config)
    for key in sorted(set(a) | set(b)):
        old, new = a.get(key), b.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):  # name the entries that differ
            problems += [
                f"config {key}.{entry}: {old.get(entry)!r} in the index, {new.get(entry)!r} expected"
                for entry in sorted(set(old) | set(new))
                if old.get(entry) != new.get(entry)
            ]
        elif old != new:
            problems.append(f"config {key}: {old!r} in the index, {new!r} expected")
    return problems
