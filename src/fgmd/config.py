"""Run configuration: nested dataclasses, loaded from YAML, overridable from the command line.

A configuration is plain data. ``Config.to_dict()`` gives the plain ``dict`` stored inside
checkpoints (loadable with ``torch.load(..., weights_only=True)``) and ``Config.from_dict``
rebuilds it, rejecting unknown keys and wrong types with the dotted name of the field.

Overrides use dotted keys and YAML values: ``model.bits=64``, ``train.lr=1e-3``,
``data.modalities=[ms,pan]``.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the field."""


SCALINGS = ("none", "percentile")

# Choice lists belong to the modules that implement them (data formats: fgmd.data.datasets;
# pretrained weights: fgmd.models.pretrained; stem modes: fgmd.models.backbone; VAIS
# modalities and every format's option checks: the format's module). ``validate`` asks them at
# call time: those modules build on the dataclasses defined here, so they cannot be imported
# while this module loads.


LEGACY_CHANNELS = 3  # the band count of runs written before channels could be inferred (Config.from_run)


@dataclass
class ModalityConfig:
    """How the images of one modality are read, scaled and normalised.

    ``channels`` is the number of bands the encoder sees after band selection
    (1 for PAN/IR, 3 for RGB, N for multispectral); ``0`` (the default) infers it: ``len(bands)``
    when ``bands`` is set, else the band count of the modality's first training image
    (``fgmd.data.validation.prepare_training_data``). ``fgmd train`` and ``fgmd check-data`` infer
    it, and the trainer stores the number in the run config, so every checkpoint holds it.
    ``mean``/``std`` are per band, in the
    [0, 1] scale of the decoded (and scaled) image; an empty list means the ImageNet
    statistics for 3 bands and their averages for any other band count.

    Applied to each decoded image, in this order (``fgmd.data.radiometry``):

    - ``bands``: 0-based band indices to keep (``[]``: all bands); ``[0]`` reads a grey image
      stored either as 1 band or as 3 equal bands.
    - ``scaling``: ``none`` (the decoder's [0, 1] scale) or ``percentile``: per band,
      ``y = clip((x - low) / (high - low), 0, 1)`` with ``low``/``high`` the ``percentiles``
      (default 2 and 98 %) of the band's values over a seeded sample of training images.
      ``scale_low``/``scale_high`` hold them; the trainer computes and stores them at the
      start of a run when they are empty, so a checkpoint's config reproduces the scaling.
    - ``invert``: ``y = 1 - x`` (thermal IR shown "hot = dark" or the other way round).
    - ``equalize``: per-band histogram equalisation over 256 levels (OpenCV's formula).
    """

    channels: int = 0  # 0: inferred from the images (see above)
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    bands: list[int] = field(default_factory=list)
    scaling: str = "none"
    percentiles: list[float] = field(default_factory=lambda: [2.0, 98.0])
    scale_low: list[float] = field(default_factory=list)
    scale_high: list[float] = field(default_factory=list)
    invert: bool = False
    equalize: bool = False


@dataclass
class MRSSIDOptions:
    """MRSSID / FSISR layout: ``<root>/<image_dir>/<prefix><id><suffix>`` and ``<root>/<split>.txt``.

    ``prefixes`` maps each modality to its file-name prefix (``FC_`` is the panchromatic side).
    ``group_by_prefix``: ids ``<n>_<a>_<b>_<class>`` sharing ``<n>`` form a group, and a group
    seen in two splits is reported by ``fgmd check-data`` as possible leakage.
    """

    image_dir: str = "images"
    prefixes: dict[str, str] = field(default_factory=lambda: {"ms": "MS_", "pan": "FC_"})
    suffix: str = ".jpg"
    list_dir: str = ""
    group_by_prefix: bool = True


@dataclass
class VAISOptions:
    """VAIS lists written by ``fgmd prepare vais``; ``labels``: ``basic`` (6 classes) or ``fine``."""

    labels: str = "basic"


@dataclass
class CSVOptions:
    """Generic CSV: ``file`` (relative to ``data.root``) with one path column per modality.

    ``path_columns`` maps a modality to its column; a modality not listed uses ``<modality>_path``.
    """

    file: str = "pairs.csv"
    path_columns: dict[str, str] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Where the data is and how it is split and augmented.

    ``format`` is a key of ``fgmd.data.datasets.FORMATS``; its options are the section of the same name
    (``mrssid``, ``vais``, ``csv``). ``class_names`` names the classes of formats whose files
    hold label indices only (MRSSID), or pins the names and count of any format (a label
    outside it is an error). ``scaling_sample`` caps the training images read to compute
    percentile scaling. Relative paths (``root``) are relative to the current directory.
    Image paths that lead outside ``root`` (absolute CSV paths, ``..``, symbolic links) are
    reported by the data check as a warning, or as an error with ``confine_to_root``.
    """

    format: str = "folder"
    root: str = ""
    modalities: list[str] = field(default_factory=lambda: ["ms", "pan"])
    modality: dict[str, ModalityConfig] = field(default_factory=dict)
    train_split: str = "train"
    query_split: str = "query"
    database_split: str = "database"
    val_fraction: float = 0.1
    image_size: int = 224
    resize: int = 256
    hflip: bool = True
    num_workers: int = 0
    cache_images: bool = False
    class_names: list[str] = field(default_factory=list)
    scaling_sample: int = 256
    confine_to_root: bool = False
    mrssid: MRSSIDOptions = field(default_factory=MRSSIDOptions)
    vais: VAISOptions = field(default_factory=VAISOptions)
    csv: CSVOptions = field(default_factory=CSVOptions)

    def modality_config(self, name: str) -> ModalityConfig:
        """The settings of modality ``name`` (defaults when the config does not list it)."""
        return self.modality.get(name, ModalityConfig())


@dataclass
class ModelConfig:
    """FG-MD encoder architecture (docs/DESIGN.md §2). ``fdfsp``/``adf`` switch the modules off.

    ``pretrained`` picks the initial trunk weights: ``none`` (random), ``imagenet``
    (torchvision ``MobileNet_V2_Weights.IMAGENET1K_V1``, what ``pretrained=True`` loads in
    the FSISR/FG-MD scripts) or ``imagenet_v2`` (``IMAGENET1K_V2``). The weights are
    downloaded into the torch hub cache on first use, or read from ``pretrained_path`` (a
    local state dict with torchvision or timm ``mobilenetv2_100`` key names). Only
    ``width_mult: 1.0`` has pretrained weights.
    """

    bits: int = 32
    width_mult: float = 1.0
    zero_init_residual: bool = True
    pretrained: str = "none"
    pretrained_path: str = ""
    fdfsp: bool = True
    adf: bool = True
    # Design variants (docs/MODULES.md "Design variants"); the defaults are the published model.
    # Levels after which an FDFSP block sits (1-4; the paper: L2, L3, L4).
    fdfsp_levels: list[int] = field(default_factory=lambda: [2, 3, 4])
    # The ADF gate also scales the L4 features by 2G (the paper: it only weights the pooling).
    adf_gate_features: bool = False
    head_hidden: int = 512
    stem: str = "adapt"
    fdfsp_kernel_size: int = 7
    fdfsp_mlp_reduction: int = 8
    adf_reduction: int = 4


@dataclass
class LossConfig:
    """Objective weights (docs/DESIGN.md §2 "Objective")."""

    classification_weight: float = 1.0
    quantization_weight: float = 1.0
    triplet_weight: float = 1.0
    margin: float = 0.25
    mining_k: int = 20
    damd: bool = True
    damd_weight: float = 0.1
    damd_reduction: int = 16


@dataclass
class TrainConfig:
    """Optimisation schedule and run bookkeeping."""

    epochs: int = 200
    batch_size: int = 32
    lr: float = 1e-4
    # Learning rate of the FDFSP and ADF parameters = lr × this (a design variant; 1 = one rate
    # for all, as published). The StepLR schedule scales both rates alike.
    module_lr_mult: float = 1.0
    weight_decay: float = 0.0
    lr_step: int = 10
    lr_gamma: float = 0.9
    eval_every: int = 1
    device: str = "auto"
    amp: bool = False
    # Model and batches in channels_last memory layout: the same math, and on CPU (oneDNN) and
    # CUDA (cuDNN) the MobileNetV2 convolutions and BatchNorms run much faster in it.
    channels_last: bool = True
    # torch.compile each encoder (in place; needs a C++ compiler on CPU, Triton on CUDA).
    compile: bool = False
    sync_bn: bool = False
    # Batches of training pairs used to re-estimate BatchNorm statistics before each
    # validation (and so in every saved model); 0 keeps the running averages of training.
    bn_recalibration_batches: int = 20
    # Also score the test split (queries vs database) at every validation epoch and log it
    # as "test" in log.jsonl. Selection (best.pt) still uses validation only; this exists to
    # report the optimistic "best on test" number the published scripts select by.
    track_test: bool = False


@dataclass
class EvalConfig:
    """Which retrieval metrics are reported (docs/DESIGN.md §4)."""

    map_at_k: list[int] = field(default_factory=lambda: [100])
    map_at_r: int = 0
    precision_at: list[int] = field(default_factory=lambda: [10, 50, 100])
    # Images per encoder call when encoding for evaluation (eval mode: the codes do not depend
    # on it). Large, so a GPU is not starved by per-batch overheads; lower it if memory is short.
    batch_size: int = 256
    # The validation metric (mean of both directions) that picks best.pt: any reported metric
    # name, e.g. map_tie (tie-aware mAP, the default: breaking ties by database index lets a
    # degenerate epoch with near-constant codes win on a class-sorted split), map, map_tie@100.
    select_on: str = "map_tie"

    def metric_names(self) -> list[str]:
        """Names of the per-direction metrics these settings report (see ``retrieval_metrics``)."""
        names = ["map", "map_tie"]
        names += [f"{m}@{k}" for k in self.map_at_k for m in ("map", "map_tie")]
        names += [f"{m}@{k}" for k in self.precision_at for m in ("precision", "precision_tie", "recall")]
        return names + (["map@R"] if self.map_at_r else [])


@dataclass
class Config:
    """A complete run: data, model, loss, training and evaluation settings."""

    seed: int = 0
    out_dir: str = "runs/run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (str/int/float/bool/list/dict only)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Build from a nested dict; unknown keys and wrong types raise :class:`ConfigError`."""
        config = _build(cls, data, "")
        validate(config)
        return config

    @classmethod
    def from_run(cls, data: dict[str, Any]) -> Config:
        """The config stored with a run (a checkpoint's ``"config"``, a run's ``config.yaml``, an
        index's encoder identity).

        Runs store every band count: fgmd infers a ``channels: 0`` before training. Runs written
        before that (until 2026-12-03, when the default was 3) may omit a modality's settings;
        they get ``channels: 3``, the value they were trained with.
        """
        values = dict(data)
        section = dict(values.get("data") or {})
        modality = {name: dict(entry or {}) for name, entry in (section.get("modality") or {}).items()}
        for name in section.get("modalities") or DataConfig().modalities:
            entry = modality.setdefault(name, {})
            if not entry.get("channels"):
                entry["channels"] = LEGACY_CHANNELS
        values["data"] = {**section, "modality": modality}
        return cls.from_dict(values)

    def design_settings(self) -> dict[str, Any]:
        """The design-variant settings that differ from the published model and act on a module
        this config has (``{"model.fdfsp_levels": [1, 2], ...}``; empty for the published one)."""
        model, defaults = self.model, ModelConfig()
        changed: dict[str, Any] = {}
        if model.fdfsp and model.fdfsp_levels != defaults.fdfsp_levels:
            changed["model.fdfsp_levels"] = model.fdfsp_levels
        if model.adf and model.adf_gate_features != defaults.adf_gate_features:
            changed["model.adf_gate_features"] = model.adf_gate_features
        if (model.fdfsp or model.adf) and self.train.module_lr_mult != TrainConfig().module_lr_mult:
            changed["train.module_lr_mult"] = self.train.module_lr_mult
        return changed

    def with_overrides(self, overrides: list[str]) -> Config:
        """A copy with ``key.sub=value`` overrides applied (values parsed as YAML)."""
        data = self.to_dict()
        for item in overrides:
            apply_override(data, item)
        return Config.from_dict(data)

    def with_values(self, values: dict[str, Any]) -> Config:
        """A copy with ``{"key.sub": value}`` set as given (no YAML parsing: for values built
        in code, such as paths, which may hold ``#``, ``: `` or other YAML syntax)."""
        data = self.to_dict()
        for key, value in values.items():
            set_dotted(data, key, value)
        return Config.from_dict(data)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config file (or start from the defaults) and apply dotted overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from error
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping, got {type(loaded).__name__}")
        data = loaded or {}
    for item in overrides or []:
        apply_override(data, item)
    section = data.get("data")
    if isinstance(section, dict):
        root = section.get("root")
        if isinstance(root, str) and root and not os.path.isabs(root):
            # stored absolute, so the run's config works from any directory (report, eval, search)
            section["root"] = os.path.abspath(root)
    try:
        return Config.from_dict(data)
    except ConfigError as error:
        named = [item for item in overrides or [] if (key := item.split("=", 1)[0].strip()) and key in str(error)]
        if named:  # overrides set the keys the error names: blame them, not the file
            which = "override" if len(named) == 1 else "overrides"
            raise ConfigError(f"{which} {', '.join(map(repr, named))}: {error}") from None
        raise ConfigError(f"{path}: {error}" if path is not None else str(error)) from None


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set ``data[a][b] = value`` for an override ``a.b=value`` (value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key.sub=value")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"override {item!r}: value is not valid YAML: {error}") from error
    set_dotted(data, key.strip(), value, what=f"override {item!r}")


def set_dotted(data: dict[str, Any], key: str, value: Any, what: str | None = None) -> None:
    """Set ``data[a][b] = value`` for the dotted ``key`` ``a.b`` (sections created as needed)."""
    what = what or f"key {key!r}"
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"{what} has an empty key part")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{what}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def differing_keys(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the entries in which two nested config dicts differ."""
    keys = []
    for key in sorted(set(a) | set(b)):
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            keys += differing_keys(a[key], b[key], f"{prefix}{key}.")
        elif a.get(key) != b.get(key):
            keys.append(f"{prefix}{key}")
    return keys


def validate(config: Config) -> None:
    """Cross-field checks that types alone cannot express."""
    bits = config.model.bits
    if bits % 8 or not 8 <= bits <= 128:
        raise ConfigError(f"model.bits must be a multiple of 8 between 8 and 128, got {bits}")
    if config.model.width_mult <= 0:
        raise ConfigError(f"model.width_mult must be positive, got {config.model.width_mult}")
    from fgmd.models.backbone import FDFSP_LEVEL_CHOICES, STEM_MODES
    from fgmd.models.pretrained import PRETRAINED_CHOICES

    if config.model.pretrained not in PRETRAINED_CHOICES:
        raise ConfigError(
            f"model.pretrained must be one of {', '.join(PRETRAINED_CHOICES)}, got {config.model.pretrained!r}"
        )
    if config.model.pretrained_path and config.model.pretrained == "none":
        raise ConfigError(
            f"model.pretrained_path is set ({config.model.pretrained_path}) but model.pretrained is 'none': "
            "set model.pretrained=imagenet to load it"
        )
    if config.model.pretrained != "none" and config.model.width_mult != 1.0:
        raise ConfigError(
            f"model.pretrained={config.model.pretrained} needs model.width_mult=1.0 (ImageNet weights exist "
            f"only for the full-width MobileNetV2), got {config.model.width_mult}; "
            "use model.pretrained=none for other widths"
        )
    levels = config.model.fdfsp_levels
    if not levels or sorted(set(levels)) != levels or not set(levels) <= set(FDFSP_LEVEL_CHOICES):
        raise ConfigError(
            f"model.fdfsp_levels must list distinct levels from {list(FDFSP_LEVEL_CHOICES)} in increasing order, "
            f"got {levels}"
        )
    if config.model.stem not in STEM_MODES:
        raise ConfigError(f"model.stem must be one of {', '.join(STEM_MODES)}, got {config.model.stem!r}")
    mods = config.data.modalities
    if len(mods) != 2 or mods[0] == mods[1]:
        raise ConfigError(f"data.modalities must name two different modalities, got {mods}")
    for name in config.data.modality:
        if name not in mods:
            raise ConfigError(f"data.modality.{name}: not one of data.modalities {mods}")
    for name in mods:
        mod = config.data.modality_config(name)
        if mod.channels < 0:
            raise ConfigError(f"data.modality.{name}.channels must be >= 1 (or 0: inferred), got {mod.channels}")
        for stat in ("mean", "std"):
            values = getattr(mod, stat)
            if values and mod.channels and len(values) != mod.channels:
                raise ConfigError(f"data.modality.{name}.{stat} has {len(values)} values for {mod.channels} channels")
        if any(s <= 0 for s in mod.std):
            raise ConfigError(f"data.modality.{name}.std must be positive, got {mod.std}")
        _validate_radiometry(name, mod)
    _validate_formats(config.data)
    if not 0.0 <= config.data.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {config.data.val_fraction}")
    if config.data.resize < config.data.image_size:
        raise ConfigError(f"data.resize ({config.data.resize}) must be >= data.image_size ({config.data.image_size})")
    positive = {
        "train.epochs": config.train.epochs,
        "train.batch_size": config.train.batch_size,
        "train.eval_every": config.train.eval_every,
        "train.lr_step": config.train.lr_step,
        "eval.batch_size": config.eval.batch_size,
        "data.image_size": config.data.image_size,
        "loss.damd_reduction": config.loss.damd_reduction,
    }
    for name, value in positive.items():
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    for name, values in (("eval.map_at_k", config.eval.map_at_k), ("eval.precision_at", config.eval.precision_at)):
        if any(k < 1 for k in values):
            raise ConfigError(f"{name} values must be >= 1, got {values}")
    if config.eval.select_on not in config.eval.metric_names():
        raise ConfigError(
            f"eval.select_on must be a reported metric ({', '.join(config.eval.metric_names())}), "
            f"got {config.eval.select_on!r}"
        )
    if config.eval.map_at_r < 0:
        raise ConfigError(f"eval.map_at_r must be >= 0 (0 = not reported), got {config.eval.map_at_r}")
    if config.train.lr <= 0 or not 0 < config.train.lr_gamma <= 1:
        raise ConfigError("train.lr must be > 0 and train.lr_gamma in (0, 1]")
    if config.train.module_lr_mult <= 0:
        raise ConfigError(f"train.module_lr_mult must be > 0, got {config.train.module_lr_mult}")
    if config.data.num_workers < 0 or config.train.bn_recalibration_batches < 0:
        raise ConfigError("data.num_workers and train.bn_recalibration_batches must be >= 0")
    if config.loss.mining_k < 1:
        raise ConfigError(f"loss.mining_k must be >= 1, got {config.loss.mining_k}")


def _validate_radiometry(name: str, mod: ModalityConfig) -> None:
    where = f"data.modality.{name}"
    if mod.bands:
        if any(b < 0 for b in mod.bands):
            raise ConfigError(f"{where}.bands are 0-based band indices, got {mod.bands}")
        if mod.channels and len(mod.bands) != mod.channels:
            raise ConfigError(f"{where}.bands selects {len(mod.bands)} band(s) but channels is {mod.channels}")
    if mod.scaling not in SCALINGS:
        raise ConfigError(f"{where}.scaling must be one of {', '.join(SCALINGS)}, got {mod.scaling!r}")
    if len(mod.percentiles) != 2 or not 0.0 <= mod.percentiles[0] < mod.percentiles[1] <= 100.0:
        raise ConfigError(f"{where}.percentiles must be [low, high] with 0 <= low < high <= 100, got {mod.percentiles}")
    if bool(mod.scale_low) != bool(mod.scale_high):
        raise ConfigError(f"{where}.scale_low and scale_high must be set together")
    for stat in ("scale_low", "scale_high"):
        values = getattr(mod, stat)
        if values and mod.channels and len(values) != mod.channels:
            raise ConfigError(f"{where}.{stat} has {len(values)} values for {mod.channels} channels")
    if any(hi <= lo for lo, hi in zip(mod.scale_low, mod.scale_high)):
        raise ConfigError(
            f"{where}: every scale_high must exceed its scale_low, got {mod.scale_low} / {mod.scale_high}"
        )


def _validate_formats(data: DataConfig) -> None:
    from fgmd.data.datasets import FORMATS

    if data.format not in FORMATS:
        raise ConfigError(f"data.format must be one of {', '.join(FORMATS)}, got {data.format!r}")
    if len(set(data.class_names)) != len(data.class_names):
        raise ConfigError(f"data.class_names has duplicates: {data.class_names}")
    if data.scaling_sample < 1:
        raise ConfigError(f"data.scaling_sample must be >= 1, got {data.scaling_sample}")
    FORMATS[data.format].check_options(data)


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Recursively construct dataclass ``cls`` from ``data``, checking keys and types."""
    where = prefix.rstrip(".") or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(known))})")
    kwargs = {name: _coerce(hints[name], value, f"{prefix}{name}") for name, value in data.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, name: str) -> Any:
    """Check ``value`` against type ``hint`` (with int→float widening) and convert."""
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, name + ".")
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(hint):
            if option is type(None) and value is None:
                return None
            try:
                return _coerce(option, value, name)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[-1])
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_coerce(item, v, f"{name}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        _, item = typing.get_args(hint)
        return {str(k): _coerce(item, v, f"{name}.{k}") for k, v in value.items()}
    if hint is float:
        if isinstance(value, str):  # PyYAML reads "1e-3" (no dot) as a string: accept it as a number
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if value is None or isinstance(value, (dict, list)):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{name}: unsupported type {hint}")
