"""One writer per output: an advisory lock file held for the whole life of a long writer.

``fgmd train`` holds ``<out_dir>/.fgmd.lock`` (including a resumed run) and ``fgmd index``
holds ``<out>.lock``. The lock is an ``fcntl.flock`` on that file, so the kernel releases it
when the holder exits in any way (a crash or SIGKILL included); the file also records who
holds it (pid, host, command, start time) so a refused writer can say which process is in
the way. A lock file whose recorded holder is gone (killed before it could remove the file)
is *stale*: the next writer takes it over and says so in a warning.

The lock is re-entrant inside one process (a second ``hold`` of the same path only counts),
so an outer function can take it early and an inner one can take it again. It is advisory:
it stops other fgmd processes, not other programs. ``flock`` works on local file systems and
on NFS v4; where the file system cannot lock, fgmd warns and continues without a lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from fgmd.runtime.files import OutputError

logger = logging.getLogger("fgmd.runtime")

_held: dict[str, list] = {}  # realpath -> [fd or None, count]


class LockedError(RuntimeError):
    """Another process holds the lock; the message names it."""


def describe_holder(info: dict) -> str:
    """``pid 123 on host, 'fgmd train ...', started 2026-12-03 08:50:01 UTC`` from a lock record."""
    if not info:
        return "a process that is starting (no details recorded yet)"
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)) if isinstance(started, (int, float)) else "?"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, '{info.get('command', '?')}', started {when}"


@contextlib.contextmanager
def hold(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold the lock file ``path`` (its folder must exist) for the body of the ``with``.

    ``what`` names the guarded output in the refusal, e.g. ``"run folder runs/x"``. Raises
    :class:`LockedError` at once (no waiting) when another process holds it.
    """
    path = Path(path)
    key = os.path.realpath(path)
    if key in _held:
        _held[key][1] += 1
    else:
        _held[key] = [_acquire(path, what), 1]
    try:
        yield
    finally:
        entry = _held[key]
        entry[1] -= 1
        if entry[1] == 0:
            del _held[key]
            if entry[0] is not None:
                _release(path, entry[0])


def _acquire(path: Path, what: str) -> int | None:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise OutputError(path, error) from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise LockedError(
                f"{what} is in use by another fgmd process ({describe_holder(holder)}); "
                "wait for it to finish, or write somewhere else"
            ) from None
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                logger.warning("%s: the file system cannot lock files; make sure no other process writes there", path)
                return None
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed this file while we waited on it: lock the new one
    previous = _read(fd)
    if previous:
        logger.warning(
            "%s: taking over a stale lock left by %s, which is no longer running (it was killed or "
            "crashed; its output may be incomplete)",
            what,
            describe_holder(previous),
        )
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else "?",
        "started": round(time.time(), 3),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    with contextlib.suppress(OSError):
        os.fsync(fd)
    return fd


def _release(path: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)  # while still locked: a waiter re-checks the inode and retries
    os.close(fd)  # closing releases the flock


def _read(fd: int) -> dict:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}
