"""A run's ``log.jsonl``: one JSON record per finished epoch, and the one reader of it.

Epochs are numbered from 1 everywhere fgmd shows or stores them: the progress bar
(``epoch 3/12``), the ``"epoch"`` field of each log record, ``best.pt``'s ``"epoch"`` (the
epoch it was saved after), ``last.pt``'s ``"epoch"`` (the number of finished epochs, which is
the same number) and the ``"epoch"`` of ``metrics.json``. Logs written before 2026-12-03
counted from 0; :func:`read_log` renumbers them, so readers see one convention.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fgmd.runtime.files import write_atomic

LOG_FILE = "log.jsonl"


class RunLogError(ValueError):
    """A line of ``log.jsonl`` that is not a JSON record with an ``"epoch"``."""


def read_log(run_dir: str | Path, *, skip_broken: bool = False) -> list[dict]:
    """The per-epoch records of ``run_dir/log.jsonl``, epochs numbered from 1 (``[]`` without a log).

    Args:
        run_dir: the run folder.
        skip_broken: leave out lines that do not parse (a line cut by a kill) instead of raising.

    Raises:
        RunLogError: a line is not a JSON object with an integer ``"epoch"`` (file and line named).
    """
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if skip_broken:
                continue
            raise RunLogError(f"{path}, line {number}: not a JSON record ({error.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            if skip_broken:
                continue
            raise RunLogError(f"{path}, line {number}: a record needs an integer 'epoch'")
        records.append(record)
    if records and records[0]["epoch"] == 0:  # written before epochs counted from 1
        records = [{**record, "epoch": record["epoch"] + 1} for record in records]
    return records


def keep_epochs(run_dir: str | Path, epochs_done: int) -> None:
    """Rewrite the log with only the records of epochs ``1..epochs_done`` (those a ``last.pt``
    covers: a killed run may have logged an epoch it never checkpointed, or cut a line)."""
    path = Path(run_dir) / LOG_FILE
    if not path.exists():
        return
    kept = [record for record in read_log(run_dir, skip_broken=True) if record["epoch"] <= epochs_done]
    write_atomic(path, "".join(json.dumps(record) + "\n" for record in kept))


EPOCHS_FROM = 1  # written as "epochs_from" into best.pt, last.pt and metrics.json since epochs count from 1


def checkpoint_epoch(state: Mapping[str, Any]) -> int | None:
    """The epoch a checkpoint (or the ``metrics.json`` of one) records, counted from 1.

    ``last.pt`` stores the number of finished epochs, which is already the 1-based number of
    its last epoch. ``best.pt`` (it has ``"selected_on"``) and its ``metrics.json`` store the
    epoch it was saved after; those written before epochs counted from 1 (no
    ``"epochs_from"`` key) stored it from 0 and are shifted here.
    """
    epoch = state.get("epoch")
    if not isinstance(epoch, int):
        return None
    if "selected_on" in state and state.get("epochs_from") != EPOCHS_FROM:
        return epoch + 1
    return epoch
