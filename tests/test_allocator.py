"""The glibc allocator tuning the CLI applies: it takes effect, and it can be turned off."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")

# Allocate and free a 256 MiB block, then report how much of it the process still holds:
# with the default allocator the block is unmapped on free; tuned, it stays in the heap.
PROBE = """
import ctypes, sys
from fgmd.allocator import tune_cpu_allocator
applied = tune_cpu_allocator()
def rss_kib():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])
libc = ctypes.CDLL('libc.so.6')
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 256 << 20
before = rss_kib()
block = libc.malloc(size)
ctypes.memset(block, 1, size)  # touch every page
libc.free(block)
print(applied, rss_kib() - before)
"""


def probe(env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES", "FGMD_"))}
    env.update(PYTHONPATH=SRC, **env_extra)
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    applied, kept_kib = out.stdout.split()
    return applied == "True", int(kept_kib)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_tuned_allocator_keeps_freed_blocks_and_can_be_turned_off():
    applied, kept = probe({})
    assert applied and kept > 200 * 1024  # the freed 256 MiB stays mapped for reuse
    applied, kept = probe({"FGMD_MALLOC_TUNING": "0"})
    assert not applied and kept < 64 * 1024  # default glibc: returned to the system on free
