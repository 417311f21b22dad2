"""Which config changes a resumed run accepts (the trainer's resume policy)."""

from __future__ import annotations

import os
from typing import Any

from fgmd.config import differing_keys

# Settings a run may change when it is resumed. EXACT ones do not change what is trained (more
# epochs extend the schedule; the evaluation batch size does not change the codes; loader
# workers only decode images, augmentation is drawn in the main process). The others are
# accepted because a resumed run often lands on another machine, but they change the numbers:
# GPU kernels, another memory layout or compiled kernels round differently, so the run is no
# longer bit-identical to an uninterrupted one.
RESUMABLE_EXACT = ("train.epochs", "eval.batch_size", "data.num_workers")
RESUMABLE_INEXACT = ("train.device", "train.channels_last", "train.compile")
RESUMABLE_CHANGES = RESUMABLE_EXACT + RESUMABLE_INEXACT


def resume_conflicts(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Dotted names in which ``current`` differs from a run's ``saved`` config, other than
    :data:`RESUMABLE_CHANGES`: a run can be resumed under ``current`` only if this is empty."""
    return [
        key
        for key in differing_keys(saved, current)
        if key not in RESUMABLE_CHANGES and not (key == "data.root" and _same_folder(saved, current))
    ]


def _same_folder(saved: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether two configs' ``data.root`` name the same folder (a run written before roots
    were stored absolute has a relative one)."""
    roots = [str((c.get("data") or {}).get("root") or "") for c in (saved, current)]
    return all(roots) and os.path.abspath(roots[0]) == os.path.abspath(roots[1])


def inexact_resume_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The :data:`RESUMABLE_INEXACT` settings in which ``current`` differs from ``saved``."""
    return [key for key in differing_keys(saved, current) if key in RESUMABLE_INEXACT]
