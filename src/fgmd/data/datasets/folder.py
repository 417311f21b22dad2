"""The folder layout: ``images/<modality>/<id>.<ext>`` plus ``pairs.csv``.

This is the layout of the shared EuroSAT MS/PAN benchmark and of the generated demo data::

    root/
      images/<modality_a>/<id>.png     (or .jpg/.jpeg/.tif/.tiff/.bmp)
      images/<modality_b>/<id>.png
      pairs.csv                        id,label,class_name,split

``label`` is a class index, or several separated by ``;`` for multi-label data (then
``class_name`` lists as many names, in the same order).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from fgmd.data.datasets.base import CrossModalDataset, DataFormatError, DatasetNotFoundError
from fgmd.data.records import Record

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
REQUIRED_COLUMNS = ("id", "label", "class_name", "split")


def expected_layout(modalities: Sequence[str]) -> str:
    a, b = modalities
    return (
        f"  <root>/images/{a}/<id>.png\n  <root>/images/{b}/<id>.png\n"
        "  <root>/pairs.csv   with header: id,label,class_name,split"
    )


def _index_images(folder: Path) -> dict[str, Path]:
    """Map each image stem in ``folder`` to its path (one listing, no per-file stat)."""
    found: dict[str, Path] = {}
    for path in folder.iterdir():
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            if path.stem in found:
                raise DataFormatError(f"{folder}: two images for id {path.stem!r}: {found[path.stem].name}, {path.name}")
            found[path.stem] = path
    return found


def read_folder_records(root: str | Path, modalities: Sequence[str]) -> tuple[list[Record], list[str]]:
    """Parse ``pairs.csv`` of a folder dataset into records of every split, and the class names.

    Raises :class:`DatasetNotFoundError` when the root, ``pairs.csv`` or an image folder is
    missing, and :class:`DataFormatError` (naming ``pairs.csv:line``) for a malformed row,
    a duplicate id, a label without a name, or an id without an image in a modality.
    """
    root = Path(root)
    csv_path = root / "pairs.csv"
    if not root.is_dir():
        raise DatasetNotFoundError(f"dataset root {root} does not exist", expected_layout(modalities))
    if not csv_path.is_file():
        raise DatasetNotFoundError(f"{csv_path} not found", expected_layout(modalities))
    image_index = {}
    for modality in modalities:
        folder = root / "images" / modality
        if not folder.is_dir():
            raise DatasetNotFoundError(f"image folder {folder} not found", expected_layout(modalities))
        image_index[modality] = _index_images(folder)

    records: list[Record] = []
    names: dict[int, str] = {}
    seen: dict[str, int] = {}
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataFormatError(f"{csv_path}:1: missing column(s) {missing}; header is {reader.fieldnames}")
        for row in reader:
            line = reader.line_num
            where = f"{csv_path}:{line}"
            sample_id = (row["id"] or "").strip()
            if not sample_id:
                raise DataFormatError(f"{where}: empty id")
            if sample_id in seen:
                raise DataFormatError(f"{where}: duplicate id {sample_id!r} (first on line {seen[sample_id]})")
            seen[sample_id] = line
            labels = _parse_labels(row["label"], where)
            class_names = [n.strip() for n in (row["class_name"] or "").split(";")]
            if len(class_names) != len(labels):
                raise DataFormatError(f"{where}: {len(labels)} label(s) but {len(class_names)} class name(s)")
            for label, name in zip(labels, class_names):
                if names.setdefault(label, name) != name:
                    raise DataFormatError(f"{where}: label {label} is named {name!r} here but {names[label]!r} before")
            split = (row["split"] or "").strip()
            if not split:
                raise DataFormatError(f"{where}: empty split")
            paths = {}
            for modality in modalities:
                path = image_index[modality].get(sample_id)
                if path is None:
                    raise DataFormatError(f"{where}: no image for id {sample_id!r} in {root / 'images' / modality}")
                paths[modality] = path
            records.append(Record(sample_id, tuple(labels), paths, split, where))
    if not records:
        raise DataFormatError(f"{csv_path}: no rows")
    class_names = []
    for label in range(max(names) + 1):
        if label not in names:
            raise DataFormatError(f"{csv_path}: no row names class {label} (labels must be 0..{max(names)})")
        class_names.append(names[label])
    return records, class_names


def _parse_labels(text: str | None, where: str) -> list[int]:
    try:
        labels = [int(part) for part in (text or "").split(";")]
    except ValueError:
        raise DataFormatError(f"{where}: label {text!r} is not an integer (or integers separated by ';')") from None
    if any(label < 0 for label in labels):
        raise DataFormatError(f"{where}: negative label {text!r}")
    return labels


class PairedFolderDataset(CrossModalDataset):
    """One split of a folder-layout dataset (see module docstring)."""

    def __init__(self, root: str | Path, split: str, modalities: Sequence[str] = ("ms", "pan"), **kwargs):
        records, class_names = read_folder_records(root, modalities)
        splits = sorted({r.split for r in records})
        if split not in splits:
            raise DataFormatError(f"{Path(root) / 'pairs.csv'}: no rows of split {split!r} (splits: {splits})")
        super().__init__([r for r in records if r.split == split], modalities, class_names, **kwargs)
        self.root = Path(root)
        self.split = split
