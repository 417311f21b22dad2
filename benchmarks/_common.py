"""Helpers shared by the deployment benchmarks: run metadata and markdown tables."""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# The instruction-set flags that change PyTorch's CPU kernels (oneDNN, ATen's vector code).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_flags() -> list[str]:
    """The :data:`ISA_FLAGS` this CPU reports in ``/proc/cpuinfo`` (``lscpu``'s Flags line)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in ISA_FLAGS if flag in present]
    except OSError:
        pass
    return []


def run_meta(**extra) -> dict:
    """Machine, date, command and library versions of this run."""
    import numpy
    import torch

    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]),
        "cpu": cpu_model(),
        "cpu_isa_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }
    try:
        import onnxruntime

        meta["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    meta.update(extra)
    return meta


def markdown_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(who).ru_maxrss / 1024


def write_json(path: Path | None, meta: dict, results: list[dict], table: str) -> None:
    meta["load_average_end"] = os.getloadavg()
    if path is not None:
        Path(path).write_text(json.dumps({"meta": meta, "results": results, "table": table}, indent=1) + "\n")


def find_shared_data(name: str = "eurosat_rgb5_mspan") -> Path | None:
    """``shared/data/<name>`` next to this checkout or one level up (worktrees), if present."""
    for base in (ROOT.parent, ROOT.parent.parent):
        candidate = base / "shared" / "data" / name
        if (candidate / "pairs.csv").is_file():
            return candidate
    return None
