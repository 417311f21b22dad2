"""The exceptions that mean "the user's input is wrong" (the CLI prints them without a traceback)."""

from fgmd.config import ConfigError
from fgmd.data.datasets.base import DataFormatError, DatasetNotFoundError
from fgmd.data.io import ImageReadError
from fgmd.retrieval.encode_archive import ArchiveError
from fgmd.retrieval.image_search import IndexMismatchError
from fgmd.retrieval.index_file import IndexFileError
from fgmd.runtime.checkpoint import CheckpointError
from fgmd.runtime.device import DeviceError
from fgmd.runtime.files import OutputError
from fgmd.runtime.lock import LockedError

USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    DatasetNotFoundError,
    DataFormatError,
    DeviceError,
    ImageReadError,
    CheckpointError,
    FileExistsError,
    ArchiveError,
    IndexFileError,
    IndexMismatchError,
    LockedError,
    OutputError,
)
