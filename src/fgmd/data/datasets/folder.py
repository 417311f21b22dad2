"""The folder layout: ``images/<modality>/<id>.<ext>`` plus ``pairs.csv``.

This is the layout of the shared EuroSAT MS/PAN benchmark and of the generated demo data::

    root/
      images/<modality_a>/<id>.png     (or .jpg/.jpeg/.tif/.tiff/.bmp)
      images/<modality_b>/<id>.png
      pairs.csv                        id,label,class_name,split[,group]

``label`` is a class index, or several separated by ``;`` for multi-label data (then
``class_name`` lists as many names, in the same order). Every id must have an image in both
modalities (a paired format). The optional ``group`` column marks near-duplicates (see
``Record.group``).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from fgmd.config import DataConfig
from fgmd.data.datasets.base import DatasetNotFoundError, FormatDataset, ListedRecords, check_root
from fgmd.data.io import SUPPORTED_EXTENSIONS
from fgmd.data.issues import IssueLog
from fgmd.data.records import Record

REQUIRED_COLUMNS = ("id", "label", "class_name", "split")


def expected_layout(modalities: Sequence[str]) -> str:
    a, b = modalities
    return (
        f"  <root>/images/{a}/<id>.png\n  <root>/images/{b}/<id>.png\n"
        "  <root>/pairs.csv   with header: id,label,class_name,split"
    )


def _index_images(folder: Path, issues: IssueLog) -> dict[str, Path]:
    """Map each image stem in ``folder`` to its path (one listing, no per-file stat)."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in SUPPORTED_EXTENSIONS:
            if path.stem in found:
                issues.error(str(folder), f"two images for id {path.stem!r}: {found[path.stem].name}, {path.name}")
                continue
            found[path.stem] = path
    return found


def read_folder_records(
    root: str | Path, modalities: Sequence[str], issues: IssueLog | None = None, class_names: Sequence[str] = ()
) -> tuple[list[Record], list[str]]:
    """Parse ``pairs.csv`` of a folder dataset into records of every split, and the class names.

    Raises :class:`DatasetNotFoundError` when the root, ``pairs.csv`` or an image folder is
    missing; reports (strict ``issues``: raises :class:`DataFormatError`, naming
    ``pairs.csv:line``) a malformed row, a duplicate id, a label without a name, or an id
    without an image in a modality.
    """
    issues = issues if issues is not None else IssueLog(strict=True)
    root = check_root(root, expected_layout(modalities))
    csv_path = root / "pairs.csv"
    if not csv_path.is_file():
        raise DatasetNotFoundError(f"{csv_path} not found", expected_layout(modalities))
    image_index = {}
    for modality in modalities:
        folder = root / "images" / modality
        if not folder.is_dir():
            raise DatasetNotFoundError(f"image folder {folder} not found", expected_layout(modalities))
        image_index[modality] = _index_images(folder, issues)

    listed = ListedRecords(csv_path, class_names, issues)
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            issues.error(f"{csv_path}:1", f"missing column(s) {missing}; header is {reader.fieldnames}")
            return [], list(class_names)
        for row in reader:
            parsed = listed.parse(row, reader.fieldnames or [], reader.line_num)
            if parsed is None:
                continue
            where, sample_id, labels, split = parsed
            paths = {}
            for modality in modalities:
                path = image_index[modality].get(sample_id)
                if path is None:
                    issues.error(where, f"no image for id {sample_id!r} in {root / 'images' / modality}")
                    continue
                paths[modality] = path
            if not paths:  # (a record missing one image is kept for the counts; its error stops training)
                continue
            listed.add(row, sample_id, labels, paths, split, where)
    return listed.finish()


class PairedFolderDataset(
    FormatDataset, name="folder", paired=True, layout=lambda data: expected_layout(data.modalities)
):
    """One split of a folder-layout dataset (see module docstring)."""

    @classmethod
    def scan(cls, data: DataConfig, issues: IssueLog, splits: Sequence[str] | None = None):
        return read_folder_records(data.root, data.modalities, issues, data.class_names)

    @classmethod
    def unreferenced_images(cls, data: DataConfig, records: Sequence[Record]) -> dict[str, list[Path]]:
        used = {m: {r.paths[m] for r in records if r.has(m)} for m in data.modalities}
        out = {}
        for m in data.modalities:
            folder = Path(data.root) / "images" / m
            if folder.is_dir():
                out[m] = sorted(
                    p for p in folder.iterdir() if p.suffix.lower() in SUPPORTED_EXTENSIONS and p not in used[m]
                )
        return out
