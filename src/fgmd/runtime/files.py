"""Every file fgmd writes goes through :func:`write_atomic` (or :func:`append_line`).

The data is written to a temporary file in the target's folder, flushed and fsynced, given
the mode of the file it replaces, and renamed over the target with ``os.replace``; the folder
is fsynced so the rename survives a power cut. A process killed at any moment, or a disk
that fills up, therefore leaves either the old file or the new one under the final name,
never an empty or truncated file; the temporary file is removed on any error (a SIGKILL
leaves it behind, under a hidden ``.<name>.*.tmp`` name: the next writer holding the
output's lock removes it with :func:`remove_stale_temps`).

A failure to write (full disk, read-only file system, missing permission, a parent that is
a file) raises :class:`OutputError`, one line naming the file and the cause.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

_UMASK_LOCK = threading.Lock()

Data = bytes | bytearray | memoryview | str | Callable[[BinaryIO], object]

_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.ENOENT: "the folder does not exist",
}


class OutputError(OSError):
    """An output file or folder cannot be written; the message names it and the cause."""

    def __init__(self, path: str | os.PathLike, error: OSError, kept: bool = False) -> None:
        cause = _CAUSES.get(error.errno or 0) or error.strerror or str(error) or type(error).__name__
        note = " (the existing file is unchanged)" if kept else ""
        super().__init__(error.errno, f"cannot write {os.fspath(path)}: {cause}{note}")
        self.path = os.fspath(path)

    def __str__(self) -> str:
        return self.strerror or ""


def make_folder(path: str | os.PathLike) -> Path:
    """Create folder ``path`` and its parents if missing; :class:`OutputError` when that fails."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as error:  # the path (or a parent) is a file
        raise OutputError(path, OSError(errno.ENOTDIR, "not a folder")) from error
    except OSError as error:
        raise OutputError(path, error) from error
    return path


def write_atomic(path: str | os.PathLike, data: Data, *, durable: bool = True, encoding: str = "utf-8") -> Path:
    """Replace ``path`` by ``data`` atomically; returns ``path``.

    ``data`` is bytes, a string (encoded with ``encoding``), or a callable that writes to the
    binary file object it is given (e.g. ``lambda f: torch.save(obj, f)``). The parent folder
    must exist. ``durable=False`` skips the fsyncs (still atomic against a killed process,
    not against a power cut): for bulk files that are cheap to regenerate.
    """
    path = Path(path)
    folder = path.parent
    existed = path.exists()
    try:
        mode = path.stat().st_mode & 0o777 if existed else new_file_mode()
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as error:
        raise OutputError(path, error, kept=existed) from error
    try:
        with os.fdopen(fd, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data.encode(encoding) if isinstance(data, str) else data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        if isinstance(error, OSError) and not isinstance(error, OutputError):
            raise OutputError(path, error, kept=existed) from error
        raise
    if durable:
        _fsync_folder(folder)
    return path


def append_line(path: str | os.PathLike, line: str) -> Path:
    """Add ``line`` (no newline) at the end of the text file ``path``, atomically.

    The file is rewritten whole through :func:`write_atomic`: meant for small logs (one line
    per epoch), where a torn append would otherwise leave a half line behind.
    """
    path = Path(path)
    try:
        old = path.read_bytes() if path.exists() else b""
    except OSError as error:
        raise OutputError(path, error) from error
    if old and not old.endswith(b"\n"):
        old += b"\n"
    return write_atomic(path, old + line.encode("utf-8") + b"\n")


def remove_stale_temps(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Delete the temporary files a killed :func:`write_atomic` left in ``folder`` (those of
    target ``name`` only, or all); returns them. Only the holder of the folder's lock
    (``fgmd.runtime.lock``) may call it: another writer's temporary file looks the same."""
    pattern = f".{name}.*.tmp" if name else ".*.tmp"
    removed = []
    for path in Path(folder).glob(pattern):
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


def new_file_mode() -> int:
    """The mode an ordinary ``open(path, "w")`` would give a new file: ``0o666`` less the
    process umask (``0o644`` with the usual umask 022). ``tempfile.mkstemp`` creates files
    with ``0o600``; files written through a temporary file are set to this mode instead."""
    with _UMASK_LOCK:  # the umask can only be read by setting it
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def _fsync_folder(folder: Path) -> None:
    """Persist a rename in ``folder``; not possible on every platform or file system."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
