"""Compact storage of item ids: one UTF-8 blob, each id terminated by ``b"\\n"``.

Ten million ids stay a single ``uint8`` array (plus ``int64`` end offsets computed with one
vectorised pass) instead of ten million Python strings; ids are decoded on access. Ids
are non-empty strings without ``"\\n"``; since UTF-8 never uses byte ``0x0A`` inside a
multi-byte character, splitting the blob on it is exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import overload

import numpy as np

SEPARATOR = 0x0A  # b"\n"


def _encode(ids: Iterable[str]) -> np.ndarray:
    """Validate and encode ids (string-level checks run in C: fast for millions)."""
    ids = list(ids)
    if not ids:
        return np.empty(0, dtype=np.uint8)
    text = "\n".join(ids) if all(isinstance(item_id, str) for item_id in ids) else None
    if text is None or text.count("\n") != len(ids) - 1 or "\n\n" in text or not ids[0] or not ids[-1]:
        bad = next(i for i in ids if not isinstance(i, str) or not i or "\n" in i)
        raise ValueError(f"ids must be non-empty strings without newlines, got {bad!r}")
    return np.frombuffer((text + "\n").encode("utf-8"), dtype=np.uint8).copy()


class IdList(Sequence[str]):
    """Read-only sequence of ids over a ``b"\\n"``-terminated UTF-8 blob ``[bytes]`` uint8.

    ``ids[i]`` is a ``str``; ``ids[a:b]`` and ``ids[array_of_positions]`` are lists.
    """

    def __init__(self, blob: np.ndarray) -> None:
        blob = np.asarray(blob, dtype=np.uint8)
        if blob.ndim != 1 or (len(blob) and blob[-1] != SEPARATOR):
            raise ValueError("the id blob must be a 1-D uint8 array ending with a newline")
        self._blob = blob
        self._ends = np.flatnonzero(blob == SEPARATOR)  # [N] position of each terminator

    @classmethod
    def from_strings(cls, ids: Iterable[str]) -> IdList:
        """Encode ``ids`` (validated: non-empty strings without newlines)."""
        return cls(_encode(ids))

    @property
    def blob(self) -> np.ndarray:
        """The stored bytes: ``[bytes]`` uint8, each id followed by ``b"\\n"``."""
        return self._blob

    def __len__(self) -> int:
        return len(self._ends)

    def _get(self, position: int) -> str:
        start = self._ends[position - 1] + 1 if position else 0
        return self._blob[start : self._ends[position]].tobytes().decode("utf-8")

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice | np.ndarray | Sequence[int]) -> list[str]: ...

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            position = int(index)
            if not -len(self) <= position < len(self):
                raise IndexError(f"id position {position} out of range for {len(self)} ids")
            return self._get(position % len(self))
        if isinstance(index, slice):
            return [self._get(p) for p in range(*index.indices(len(self)))]
        return [self[int(p)] for p in np.asarray(index).ravel()]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tolist())

    def tolist(self) -> list[str]:
        """All ids as Python strings (one vectorised decode)."""
        if not len(self):
            return []
        return self._blob.tobytes().decode("utf-8").split("\n")[:-1]

    def concat(self, other: IdList) -> IdList:
        """This list followed by ``other``."""
        return IdList(np.concatenate((self._blob, other.blob)))

    def __repr__(self) -> str:
        return f"IdList({len(self)} ids)"
