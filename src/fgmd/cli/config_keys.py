"""What every config key means, and the documents built from it: ``fgmd config template``
(a commented YAML of every key) and docs/CONFIG.md (``fgmd config keys``).

``KEYS`` holds one line per dotted key of :class:`fgmd.config.Config`; a test checks that it
covers every field and nothing else. ``data.modality.<m>.*`` keys are described once, for a
modality ``<m>``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import yaml

from fgmd.config import Config, ModalityConfig

FORMAT_SECTIONS = {"mrssid": "mrssid", "vais": "vais", "csv": "csv"}  # data.format -> its options section

KEYS: dict[str, str] = {
    "seed": "seed of every random draw (validation split, initialisation, mining, augmentation)",
    "out_dir": "run folder: config.yaml, log.jsonl, last.pt, best.pt, metrics.json, report/",
    "data.format": "on-disk layout: folder (images/<modality>/<id>.<ext> + pairs.csv), csv, mrssid or vais",
    "data.root": "dataset folder; a relative path is relative to the current directory and stored absolute",
    "data.modalities": "the two modalities, in order (query/database directions are both evaluated)",
    "data.modality": "per-modality reading and normalisation, data.modality.<m>.* below",
    "data.train_split": "split used for training (and for the validation fraction)",
    "data.query_split": "split whose images are the queries of evaluation",
    "data.database_split": "split whose images are the database of evaluation",
    "data.val_fraction": "fraction of each class of the training split held out for model selection "
    "(0: keep the last epoch); one that leaves no validation pair is refused at start",
    "data.image_size": "side of the square crop the encoders see, pixels",
    "data.resize": "side images are resized to before cropping (random crop when training, centre crop otherwise)",
    "data.hflip": "random horizontal flips when training",
    "data.num_workers": "image decoding processes (0: in the main process)",
    "data.cache_images": "keep decoded evaluation images in memory between evaluations",
    "data.class_names": "names of the classes; pins their number and order (labels may then be given by name)",
    "data.scaling_sample": "training images read to compute percentile scaling",
    "data.confine_to_root": "refuse image paths that lead outside data.root (default: a warning)",
    "data.mrssid.image_dir": "MRSSID: folder of the images under data.root",
    "data.mrssid.prefixes": "MRSSID: file-name prefix of each modality (FC_ is the panchromatic side)",
    "data.mrssid.suffix": "MRSSID: file-name suffix of the images",
    "data.mrssid.list_dir": "MRSSID: folder of the <split>.txt lists under data.root ('' = data.root)",
    "data.mrssid.group_by_prefix": "MRSSID: ids sharing the leading scene number form a group (kept on one "
    "side of the validation split; reported when seen in two splits)",
    "data.vais.labels": "VAIS: basic (6 classes) or fine labels, from the lists of `fgmd prepare vais`",
    "data.csv.file": "CSV format: the table, relative to data.root",
    "data.csv.path_columns": "CSV format: column holding each modality's image path (default <modality>_path)",
    "data.modality.<m>.channels": "bands the encoder of <m> sees after band selection (1 PAN/IR, 3 RGB, N MS); "
    "0: inferred from the first training image (len(bands) when bands are set), stored in the run config",
    "data.modality.<m>.mean": "per-band mean for normalisation ([]: ImageNet's for 3 bands, their average otherwise)",
    "data.modality.<m>.std": "per-band std for normalisation ([]: as for mean)",
    "data.modality.<m>.bands": "0-based bands to keep, in order ([]: all); [0] reads grey stored as 1 or 3 bands",
    "data.modality.<m>.scaling": "none (uint8 /255, uint16 /65535, float as stored) or percentile (per-band stretch)",
    "data.modality.<m>.percentiles": "low and high percentiles of the percentile stretch",
    "data.modality.<m>.scale_low": "per-band low bounds of the stretch (computed and stored by training when empty)",
    "data.modality.<m>.scale_high": "per-band high bounds of the stretch (as scale_low)",
    "data.modality.<m>.invert": "y = 1 - x after scaling (thermal IR polarity)",
    "data.modality.<m>.equalize": "per-band histogram equalisation over 256 levels",
    "model.bits": "hash code length K (a multiple of 8, 8..128)",
    "model.width_mult": "MobileNetV2 width multiplier (pretrained weights exist for 1.0 only)",
    "model.zero_init_residual": "start each residual block's last BatchNorm at zero",
    "model.pretrained": "initial trunk weights: none, imagenet (IMAGENET1K_V1) or imagenet_v2",
    "model.pretrained_path": "a local state dict of the ImageNet weights instead of the torch hub cache",
    "model.fdfsp": "FDFSP frequency blocks after the stride-2 stages",
    "model.adf": "ADF dynamic filter and spatial gate in the final pooling",
    "model.fdfsp_levels": "levels (1-4) after which an FDFSP block sits (design variant; published: [2, 3, 4])",
    "model.adf_gate_features": "the ADF gate also scales the L4 features by 2G (design variant)",
    "model.head_hidden": "hidden width of the hash head (1280 -> hidden -> hidden -> K)",
    "model.stem": "first conv for non-RGB inputs: adapt (a conv over the bands) or replicate (1 band to 3)",
    "model.fdfsp_kernel_size": "FDFSP spatial kernel size",
    "model.fdfsp_mlp_reduction": "FDFSP channel MLP reduction",
    "model.adf_reduction": "ADF channel reduction",
    "loss.classification_weight": "weight of the classification term",
    "loss.quantization_weight": "weight of the quantization term (codes towards ±1)",
    "loss.triplet_weight": "weight of the cross-modal triplet term",
    "loss.margin": "triplet margin on L2-normalised codes",
    "loss.mining_k": "positives/negatives are drawn among the k hardest of the per-epoch code bank",
    "loss.damd": "DAMD attention distillation between the two encoders (training only)",
    "loss.damd_weight": "λ, weight of the DAMD term",
    "loss.damd_reduction": "channel reduction of the DAMD attention modules",
    "train.epochs": "epochs to train",
    "train.batch_size": "training pairs per step",
    "train.lr": "Adam learning rate",
    "train.module_lr_mult": "learning rate of the FDFSP and ADF parameters = lr × this (design variant)",
    "train.weight_decay": "Adam weight decay",
    "train.lr_step": "epochs between learning-rate decays",
    "train.lr_gamma": "factor of each learning-rate decay",
    "train.eval_every": "epochs between validations (and the last epoch)",
    "train.device": "auto (CUDA when available), cpu, cuda, cuda:1, ...",
    "train.amp": "bfloat16 autocast for the forward pass",
    "train.channels_last": "channels_last memory layout (same math, faster convolutions)",
    "train.compile": "torch.compile each encoder (needs a C++ compiler on CPU, Triton on CUDA)",
    "train.sync_bn": "SyncBatchNorm across torchrun processes (CUDA only)",
    "train.bn_recalibration_batches": "training batches that re-estimate BatchNorm statistics before each "
    "validation (0: keep the running averages)",
    "train.track_test": "also score the test split at each validation (logged only, never used to select)",
    "eval.map_at_k": "cut-offs of mAP@k (DeepHash-pytorch convention)",
    "eval.map_at_r": "R of mAP@R (FSISR convention; 0: not reported)",
    "eval.precision_at": "cut-offs of precision@k and recall@k",
    "eval.batch_size": "images per encoder call when evaluating (does not change the codes)",
    "eval.select_on": "validation metric that picks best.pt (map_tie: tie-aware mAP; or any reported metric)",
}


def _fields(cls: type, prefix: str) -> Iterator[tuple[str, Any]]:
    """``(dotted key, default)`` of every leaf field of dataclass ``cls``; modality settings
    are listed once under ``data.modality.<m>``."""
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if key == "data.modality":
            yield key, {}
            yield from _fields(ModalityConfig, "data.modality.<m>.")
        elif dataclasses.is_dataclass(default):
            yield from _fields(type(default), f"{key}.")
        else:
            yield key, default


def config_keys() -> list[tuple[str, Any]]:
    """Every dotted key of :class:`Config` with its default, in declaration order."""
    return list(_fields(Config, ""))


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def keys_markdown() -> str:
    """docs/CONFIG.md: every key with its default and meaning, by section."""
    lines = [
        "# Configuration keys",
        "",
        "Every key of an fgmd config, its default and what it does. A config is a YAML file",
        "whose missing keys take these defaults; any key can be overridden on the",
        "command line as `KEY=VALUE` (YAML value), anywhere on the line (also after the set option).",
        "`fgmd config show` prints the resolved config, `fgmd config template` a commented file of",
        "every key. This file is generated by `fgmd config keys` (a test checks it is current).",
        "",
    ]
    section = None
    for key, default in config_keys():
        head = key.split(".")[0] if "." in key else "(top level)"
        if head != section:
            section = head
            lines += ["", f"## {section}", "", "| key | default | meaning |", "|---|---|---|"]
        shown = _yaml_value(default).replace("|", "\\|")
        meaning = KEYS[key].replace("|", "/").replace("<", "&lt;").replace(">", "&gt;")
        lines.append(f"| `{key}` | `{shown}` | {meaning} |")
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def template(data_format: str = "folder") -> str:
    """A YAML config of every key at its default, each with its meaning as a comment; the
    options section of ``data_format`` only, and one modality entry per default modality."""
    if data_format not in ("folder", *FORMAT_SECTIONS):
        raise ValueError(f"unknown data format {data_format!r}; choose one of folder, {', '.join(FORMAT_SECTIONS)}")
    skipped = {section for fmt, section in FORMAT_SECTIONS.items() if fmt != data_format}
    lines = [
        f"# fgmd config template (data.format: {data_format}); every key at its default.",
        "# Delete what you do not change; `fgmd config show` with this file as the config prints the result.",
    ]
    from fgmd.data.datasets.vais import MODALITIES as VAIS_MODALITIES

    modalities = list(VAIS_MODALITIES) if data_format == "vais" else Config().data.modalities
    opened: set[str] = set()
    for key, default in config_keys():
        parts = key.split(".")
        if len(parts) > 2 and parts[1] in skipped:
            continue
        if key == "data.modality":
            lines.append(f"  # {KEYS[key]}")
            lines.append("  modality:")
            continue
        if key.startswith("data.modality.<m>."):
            continue
        for depth in range(1, len(parts)):
            parent = ".".join(parts[:depth])
            if parent not in opened:
                opened.add(parent)
                lines.append(f"{'  ' * (depth - 1)}{parts[depth - 1]}:")
        value = {"data.format": data_format, "data.modalities": modalities}.get(key, default)
        lines.append(f"{'  ' * (len(parts) - 1)}{parts[-1]}: {_yaml_value(value)}  # {KEYS[key]}")
    block = []
    for name in modalities:
        block.append(f"    {name}:")
        for key, default in _fields(ModalityConfig, ""):
            block.append(f"      {key}: {_yaml_value(default)}  # {KEYS['data.modality.<m>.' + key]}")
    at = next(i for i, line in enumerate(lines) if line == "  modality:") + 1
    return "\n".join(lines[:at] + block + lines[at:]) + "\n"
