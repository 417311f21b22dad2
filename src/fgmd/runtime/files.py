"""File-system helpers: the permission bits of files fgmd creates."""

from __future__ import annotations

import os
import threading

_UMASK_LOCK = threading.Lock()


def new_file_mode() -> int:
    """The mode an ordinary ``open(path, "w")`` would give a new file: ``0o666`` less the
    process umask (``0o644`` with the usual umask 022). ``tempfile.mkstemp`` creates files
    with ``0o600``; files written through a temporary file are set to this mode instead."""
    with _UMASK_LOCK:  # the umask can only be read by setting it
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask
