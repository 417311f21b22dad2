"""CPU memory-allocator tuning for PyTorch work on Linux/glibc (applied by the ``fgmd`` CLI).

With glibc's default settings every allocation above the mmap threshold (at most 32 MiB,
adjusted at run time) is a fresh ``mmap`` and every free an ``munmap``. A CNN forward or
backward pass at 224×224 allocates and frees such activation buffers layer after layer, so
the process page-faults and zeroes them again on every batch: on the development machine
batch-32 CNN inference ran 2.7–3.4× slower, and training 1.9× slower, than with the buffers
kept (BENCHMARKS.md, "Encoder throughput", "Training throughput"). :func:`tune_cpu_allocator` sets ``M_MMAP_MAX = 0``
(large blocks come from the heap) and a high ``M_TRIM_THRESHOLD`` (freed heap memory is
kept for reuse), the run-time equivalent of
``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...``.

The cost: the process keeps its peak heap until it exits (memory is reused, not returned
to the system). Long-lived servers that should shrink after a burst can opt out with
``FGMD_MALLOC_TUNING=0``. The library never calls this on import; the CLI calls it once at
start-up, and scripts may call it themselves.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["tune_cpu_allocator"]

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's <malloc.h>
_M_MMAP_MAX = -4
_KEEP_FREED_BYTES = 2**31 - 1  # mallopt takes an int: the largest trim threshold it accepts


def tune_cpu_allocator() -> bool:
    """Keep large freed blocks in glibc's heap for reuse (see the module docs).

    Returns True when the settings were applied; False on non-Linux systems, C libraries
    without ``mallopt`` (musl), or when ``FGMD_MALLOC_TUNING=0`` is set.
    """
    if os.environ.get("FGMD_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_FREED_BYTES))
