"""The FG-MD network (docs/DESIGN.md §2): knows nothing of losses, data or files."""

from .adf import ADF, GatedPool
from .complexity import count_macs, count_parameters, measure_encode_time, model_summary
from .encoder import EncoderOutput, ModalityEncoder
from .factory import load_run, model_from_config
from .fdfsp import FDFSP
from .fgmd import FGMD, build_model
from .head import HashHead
from .pretrained import PretrainedWeightsError, load_pretrained_trunk

__all__ = [
    "build_model",
    "FGMD",
    "ModalityEncoder",
    "EncoderOutput",
    "FDFSP",
    "ADF",
    "GatedPool",
    "HashHead",
    "count_parameters",
    "count_macs",
    "model_summary",
    "measure_encode_time",
    "model_from_config",
    "load_run",
    "load_pretrained_trunk",
    "PretrainedWeightsError",
]
