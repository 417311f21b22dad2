"""A generic CSV with an explicit image path per modality (IGS-like and your own data).

::

    root/
      pairs.csv     (data.csv.file)   with header, e.g. for modalities [optical, sar]:
                    id,optical_path,sar_path,label,class_name,split[,group]
                    a01,img/opt/a01.tif,img/sar/a01.tif,2,harbour,train
                    a02,img/opt/a02.tif,,0;3,field;road,query      <- no sar image: a single-modality item

- One path column per modality, ``<modality>_path`` unless ``data.csv.path_columns`` names
  another. Relative paths are resolved against the CSV's folder; absolute paths are kept.
  An **empty** path means the object was not imaged in that modality: the row is not a
  training pair but is still a query/database item of the other modality. A row needs at
  least one path; a non-empty path to a missing file is an error.
- ``label``: a class index, or several separated by ``;`` (multi-label: relevant = sharing
  at least one label). ``class_name`` (optional column) names them in the same order;
  without it the names are ``data.class_names`` or ``class_<i>``.
- ``split``: any name; ``data.train_split`` / ``query_split`` / ``database_split`` pick them.
- ``group`` (optional): rows sharing a group are near-duplicates (leakage check).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from fgmd.config import ConfigError, DataConfig
from fgmd.data.datasets.base import DatasetNotFoundError, FormatDataset, ListedRecords
from fgmd.data.issues import IssueLog


def path_column(data: DataConfig, modality: str) -> str:
    return data.csv.path_columns.get(modality, f"{modality}_path")


def expected_layout(data: DataConfig) -> str:
    columns = ",".join(["id", *(path_column(data, m) for m in data.modalities), "label", "class_name", "split"])
    return (
        f"  <root>/{data.csv.file}   with header: {columns}   (class_name and group optional)\n"
        "  image paths relative to the CSV's folder (or absolute); an empty path = no image of that modality"
    )


class CSVDataset(FormatDataset, name="csv", paired=False, options="csv", layout=expected_layout):
    """One split of a CSV-listed dataset (see the module docs)."""

    @classmethod
    def check_options(cls, data: DataConfig) -> None:
        for name in data.csv.path_columns:
            if name not in data.modalities:
                raise ConfigError(f"data.csv.path_columns.{name}: not one of data.modalities {data.modalities}")

    @classmethod
    def scan_root(cls, root: Path, layout: str, data: DataConfig, issues: IssueLog, splits: Sequence[str] | None):
        csv_path = root / data.csv.file
        if not csv_path.is_file():
            raise DatasetNotFoundError(f"{csv_path} not found", layout)
        base = csv_path.parent
        columns = {m: path_column(data, m) for m in data.modalities}
        listed = ListedRecords(csv_path, data.class_names, issues)
        with csv_path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in ("id", *columns.values(), "label", "split") if c not in header]
            if missing:
                issues.error(f"{csv_path}:1", f"missing column(s) {missing}; header is {header}")
                return [], list(data.class_names)
            for row in reader:
                parsed = listed.parse(row, header, reader.line_num)
                if parsed is None:
                    continue
                where, sample_id, labels, split = parsed
                paths, ok = {}, True
                for modality, column in columns.items():
                    text = row[column].strip()
                    if not text:
                        continue
                    path = Path(text) if Path(text).is_absolute() else base / text
                    if not path.is_file():
                        issues.error(where, f"{modality} image {path} not found (column {column})")
                        ok = False
                        continue
                    paths[modality] = path
                if not ok:
                    continue
                if not paths:
                    issues.error(where, f"id {sample_id!r} has no image: every path column is empty")
                    continue
                listed.add(row, sample_id, labels, paths, split, where)
        return listed.finish()
