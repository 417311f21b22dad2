"""MRSSID in the layout of the FSISR code (MS <-> PAN ship chips).

::

    root/
      images/MS_<id>.jpg        multispectral side       (data.mrssid.prefixes / suffix)
      images/FC_<id>.jpg        panchromatic side ("FC")
      train.txt                 one line per pair: <id> <0/1 digit per class>
      database.txt              e.g. "1466_2_1_3 0 0 0 1 0 0"
      test.txt

A split is the file ``<split>.txt`` (in ``data.mrssid.list_dir``, default the root). The
label is a one-hot (or multi-hot) vector of 0/1 digits, one per class, written as separate
fields or as one field (``000100``); every line must have the same number of digits, or
``len(data.class_names)`` when that is set. The files hold no class names: they are
``data.class_names`` or ``class_0 .. class_<L-1>``.

The FSISR protocol (configs/mrssid.yaml): train on ``train``, queries ``test``, database
``database`` (= the training pairs), MAP@R with R = 86. Ids look like ``<n>_<a>_<b>_<class>``;
with ``data.mrssid.group_by_prefix`` the ``<n>`` part is the record's group, so
``fgmd check-data`` warns about ``<n>`` values found in both train and test.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from fgmd.config import ConfigError, DataConfig
from fgmd.data.datasets.base import DatasetNotFoundError, FormatDataset, numbered_fields
from fgmd.data.issues import IssueLog
from fgmd.data.records import Record

DEFAULT_SPLITS = ("train", "database", "test")


def expected_layout(data: DataConfig) -> str:
    opts = data.mrssid
    lines = [
        f"  <root>/{opts.image_dir}/{opts.prefixes.get(m, '<prefix>')}<id>{opts.suffix}   ({m})"
        for m in data.modalities
    ]
    lists = f"<root>/{opts.list_dir}/" if opts.list_dir else "<root>/"
    lines.append(f"  {lists}<split>.txt   one line per pair: <id> <one 0/1 digit per class>, e.g.")
    lines.append("      1466_2_1_3 0 0 0 1 0 0")
    lines.append(
        f"  splits used: {', '.join(dict.fromkeys([data.train_split, data.query_split, data.database_split]))}"
    )
    return "\n".join(lines)


def _parse_digits(fields: list[str]) -> list[int] | None:
    digits = fields if len(fields) > 1 else list(fields[0]) if fields else []
    if not digits or any(d not in ("0", "1") for d in digits):
        return None
    return [int(d) for d in digits]


class MRSSIDDataset(FormatDataset, name="mrssid", paired=True, options="mrssid", layout=expected_layout):
    """One split of MRSSID (FSISR layout; see the module docs)."""

    @classmethod
    def check_options(cls, data: DataConfig) -> None:
        prefixes = data.mrssid.prefixes
        missing = [m for m in data.modalities if m not in prefixes]
        if missing:
            raise ConfigError(f"data.mrssid.prefixes has no prefix for modality {missing[0]!r} (has {prefixes})")
        if prefixes[data.modalities[0]] == prefixes[data.modalities[1]]:
            raise ConfigError(
                f"data.mrssid.prefixes: the two modalities share the prefix {prefixes[data.modalities[0]]!r}"
            )

    @classmethod
    def scan_root(cls, root: Path, layout: str, data: DataConfig, issues: IssueLog, splits: Sequence[str] | None):
        opts = data.mrssid
        image_dir = root / opts.image_dir
        if not image_dir.is_dir():
            raise DatasetNotFoundError(f"image folder {image_dir} not found", layout)
        list_dir = root / opts.list_dir if opts.list_dir else root
        splits = list(dict.fromkeys(splits or DEFAULT_SPLITS))
        files = {}
        for split in splits:
            path = list_dir / f"{split}.txt"
            if not path.is_file():
                raise DatasetNotFoundError(f"split list {path} not found (split {split!r})", layout)
            files[split] = path
        with os.scandir(image_dir) as entries:
            on_disk = {entry.name for entry in entries}

        num_classes = len(data.class_names) or None
        width_source = "data.class_names"
        records: list[Record] = []
        for split, path in files.items():
            seen: dict[str, int] = {}
            for line_no, where, fields in numbered_fields(path):
                sample_id = fields[0]
                digits = _parse_digits(fields[1:])
                if digits is None:
                    issues.error(where, f"expected '<id> <0/1 digit per class>', got {' '.join(fields)!r}")
                    continue
                if num_classes is None:
                    num_classes, width_source = len(digits), f"{path.name}:{line_no}"
                if len(digits) != num_classes:
                    issues.error(where, f"{len(digits)} label digits but {num_classes} classes (as in {width_source})")
                    continue
                labels = tuple(i for i, d in enumerate(digits) if d)
                if not labels:
                    issues.error(where, f"id {sample_id!r} has no class (all label digits are 0)")
                    continue
                if sample_id in seen:
                    issues.error(where, f"duplicate id {sample_id!r} (first on line {seen[sample_id]})")
                    continue
                seen[sample_id] = line_no
                paths = {}
                for modality in data.modalities:
                    name = f"{opts.prefixes[modality]}{sample_id}{opts.suffix}"
                    if name not in on_disk:
                        issues.error(where, f"no {modality} image {image_dir / name}")
                        continue
                    paths[modality] = image_dir / name
                if not paths:  # (a pair missing one image is kept for the counts; its error stops training)
                    continue
                group = sample_id.split("_", 1)[0] if opts.group_by_prefix and "_" in sample_id else ""
                records.append(Record(sample_id, labels, paths, split, where, group))
        class_names = list(data.class_names) or [f"class_{i}" for i in range(num_classes or 0)]
        return records, class_names

    @classmethod
    def unreferenced_images(cls, data: DataConfig, records: Sequence[Record]) -> dict[str, list[Path]]:
        opts = data.mrssid
        image_dir = Path(data.root) / opts.image_dir
        if not image_dir.is_dir():
            return {}
        out = {}
        for m in data.modalities:
            used = {r.paths[m].name for r in records if r.has(m)}
            prefix = opts.prefixes[m]
            out[m] = sorted(
                image_dir / name
                for name in os.listdir(image_dir)
                if name.startswith(prefix) and name.endswith(opts.suffix) and name not in used
            )
        return out
