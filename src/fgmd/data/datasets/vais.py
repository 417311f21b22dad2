"""VAIS (visible <-> infrared ship photos): ``fgmd prepare vais`` and the prepared lists.

**The download** (VAIS, Zhang et al., CVPR-W 2015) has ``annotations.txt``, one line per
object, 7 space-separated fields::

    visible_path ir_path fine_label basic_label unique_id is_train is_night

paths relative to the annotations' folder, ``null`` for a modality the object was not imaged
in; ``basic_label`` one of the 6 classes :data:`BASIC_CLASSES`; ``unique_id`` the ship (several
lines show the same ship); ``is_train`` the official split (1 train, 0 test); ``is_night`` 0/1.

**prepare** (:func:`prepare_vais`) checks every line (field count, 0/1 flags, known basic
class, existing image files; each error names ``annotations.txt:line``, and nothing is
written while there is one) and writes canonical lists into ``out``::

    train_pairs.csv        id,visible_path,ir_path,basic_label,fine_label,night,ship,source
                           official train objects with both images: the training pairs
    query_visible.csv      id,path,basic_label,fine_label,night,ship,source
    query_ir.csv           official test objects with that image (paired or not): queries
    database_visible.csv   official train objects with that image (paired or not): the
    database_ir.csv        retrieval database (``--database test``: the test objects)
    fine_classes.txt       the fine class names, one per line (line i = fine label i)

Paths in the lists are relative to ``out``. An object's id is its visible image path without
extension (its IR path when it has no visible image); ``ship`` is ``unique_id``, the record's
group (a ship in both splits is reported by ``fgmd check-data``); ``source`` the annotation line.

**The dataset** (``data.format: vais``, ``data.root`` = the lists' folder) reads split ``s``
from ``s_pairs.csv`` and/or ``s_<modality>.csv``, merging rows of the same id, so ``query``
and ``database`` hold single-modality items too (``CrossModalDataset.records`` vs ``.pairs``).
``data.vais.labels`` picks ``basic`` (default) or ``fine`` labels. Modalities: ``visible``, ``ir``.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fgmd.config import ConfigError, DataConfig
from fgmd.data.datasets.base import DatasetNotFoundError, FormatDataset, numbered_fields
from fgmd.data.issues import DataCheckError, IssueLog
from fgmd.data.records import Record
from fgmd.runtime.files import make_folder, write_atomic

BASIC_CLASSES = ("cargo", "sailing", "passenger", "medium-other", "tug", "small")
MODALITIES = ("visible", "ir")
LABEL_SETS = ("basic", "fine")  # data.vais.labels choices
ANNOTATION_FIELDS = ("visible_path", "ir_path", "fine_label", "basic_label", "unique_id", "is_train", "is_night")
SPLITS = ("train", "query", "database")
PAIR_COLUMNS = ("id", "visible_path", "ir_path", "basic_label", "fine_label", "night", "ship", "source")
SINGLE_COLUMNS = ("id", "path", "basic_label", "fine_label", "night", "ship", "source")
FINE_CLASSES_FILE = "fine_classes.txt"


@dataclass(frozen=True)
class VAISObject:
    """One line of ``annotations.txt``."""

    id: str
    paths: dict[str, Path]
    fine: str
    basic: str
    ship: str
    is_train: bool
    is_night: bool
    source: str


def read_annotations(root: str | Path, issues: IssueLog, filename: str = "annotations.txt") -> list[VAISObject]:
    """Parse and check ``<root>/annotations.txt``; every problem goes to ``issues`` with ``file:line``."""
    root = Path(root)
    layout = (
        f"  <root>/{filename}   7 space-separated fields per line: {' '.join(ANNOTATION_FIELDS)}\n"
        "  <root>/<visible_path>, <root>/<ir_path>   the images ('null' = not imaged in that modality)"
    )
    if not root.is_dir():
        raise DatasetNotFoundError(f"VAIS folder {root} does not exist", layout)
    path = root / filename
    if not path.is_file():
        raise DatasetNotFoundError(f"{path} not found", layout)
    objects: list[VAISObject] = []
    seen: dict[str, int] = {}
    for line_no, where, fields in numbered_fields(path):
        if len(fields) != len(ANNOTATION_FIELDS):
            issues.error(
                where,
                f"expected {len(ANNOTATION_FIELDS)} space-separated fields "
                f"({' '.join(ANNOTATION_FIELDS)}), got {len(fields)}",
            )
            continue
        visible, ir, fine, basic, ship, is_train, is_night = fields
        ok = True
        for name, value in (("is_train", is_train), ("is_night", is_night)):
            if value not in ("0", "1"):
                issues.error(where, f"{name} must be 0 or 1, got {value!r}")
                ok = False
        if basic not in BASIC_CLASSES:
            issues.error(where, f"unknown basic_label {basic!r} (expected one of {', '.join(BASIC_CLASSES)})")
            ok = False
        paths = {}
        for modality, rel in zip(MODALITIES, (visible, ir)):
            if rel == "null":
                continue
            image = root / rel
            if not image.is_file():
                issues.error(where, f"{modality} image {image} not found")
                ok = False
            paths[modality] = image
        if not (visible != "null" or ir != "null"):
            issues.error(where, "both visible_path and ir_path are null")
            ok = False
        if not ok:
            continue
        primary = visible if visible != "null" else ir
        object_id = Path(primary).with_suffix("").as_posix()
        if object_id in seen:
            issues.error(where, f"image {primary} already listed on line {seen[object_id]}")
            continue
        seen[object_id] = line_no
        objects.append(VAISObject(object_id, paths, fine, basic, ship, is_train == "1", is_night == "1", where))
    if not objects and not issues.errors:
        issues.error(str(path), "no objects")
    return objects


@dataclass
class PreparedVAIS:
    """What :func:`prepare_vais` wrote: the folder, the file names and the counts."""

    out: Path
    files: dict[str, int]  # list file -> rows
    issues: IssueLog

    def summary(self) -> str:
        rows = "\n".join(f"  {name:<22} {count:>5} rows" for name, count in self.files.items())
        return f"wrote VAIS lists to {self.out}:\n{rows}"


def prepare_vais(
    root: str | Path, out: str | Path | None = None, database: str = "train", annotations: str = "annotations.txt"
) -> PreparedVAIS:
    """Check VAIS's ``annotations.txt`` and write the canonical lists (see the module docs).

    ``database``: ``train`` (default; queries from the official test split are searched
    against the official training objects, as in the FSISR/MRSSID protocol) or ``test``.
    Raises :class:`DataCheckError` (listing every error, ``file:line``) and writes nothing
    when the annotations have errors.
    """
    if database not in ("train", "test"):
        raise ValueError(f"database must be 'train' or 'test', got {database!r}")
    root = Path(root)
    out = Path(out) if out is not None else root
    issues = IssueLog(strict=False)
    objects = read_annotations(root, issues, annotations)
    if issues.errors:
        raise DataCheckError(f"{root / annotations}: {len(issues.errors)} error(s); nothing written", issues.items)
    train = [o for o in objects if o.is_train]
    test = [o for o in objects if not o.is_train]
    db = train if database == "train" else test
    shared = sorted({o.ship for o in train} & {o.ship for o in test})
    if shared:
        issues.warning(
            str(root / annotations),
            f"{len(shared)} ship(s) (unique_id) appear in both the official "
            f"train and test split, e.g. {', '.join(shared[:5])}",
        )
    make_folder(out)

    def rel(path: Path) -> str:
        return Path(os.path.relpath(path.resolve(), out.resolve())).as_posix()

    def meta(o: VAISObject) -> list[str]:
        return [o.basic, o.fine, str(int(o.is_night)), o.ship, f"{annotations}:{o.source.rsplit(':', 1)[1]}"]

    files: dict[str, int] = {}

    def write(name: str, header: Sequence[str], rows: list[list[str]]) -> None:
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer)
        writer.writerow(header)
        writer.writerows(rows)
        write_atomic(out / name, buffer.getvalue())
        files[name] = len(rows)

    pairs = [o for o in train if all(m in o.paths for m in MODALITIES)]
    write(
        "train_pairs.csv", PAIR_COLUMNS, [[o.id, rel(o.paths["visible"]), rel(o.paths["ir"]), *meta(o)] for o in pairs]
    )
    for role, members in (("query", test), ("database", db)):
        for modality in MODALITIES:
            rows = [[o.id, rel(o.paths[modality]), *meta(o)] for o in members if modality in o.paths]
            write(f"{role}_{modality}.csv", SINGLE_COLUMNS, rows)
    fine = sorted({o.fine for o in objects})
    write_atomic(out / FINE_CLASSES_FILE, "".join(f"{name}\n" for name in fine))
    files[FINE_CLASSES_FILE] = len(fine)
    return PreparedVAIS(out, files, issues)


def expected_layout(data: DataConfig | None = None) -> str:
    return (
        "  <root>/train_pairs.csv, query_visible.csv, query_ir.csv, database_visible.csv, database_ir.csv,\n"
        f"  <root>/{FINE_CLASSES_FILE}\n"
        "  written by prepare_vais(<VAIS folder with annotations.txt>, <root>) (the 'prepare vais' command)"
    )


class VAISDataset(
    FormatDataset, name="vais", paired=False, options="vais", layout=expected_layout, modalities=MODALITIES
):
    """One split (``train``, ``query``, ``database``) of the prepared VAIS lists."""

    @classmethod
    def check_options(cls, data: DataConfig) -> None:
        if data.vais.labels not in LABEL_SETS:
            raise ConfigError(f"data.vais.labels must be one of {', '.join(LABEL_SETS)}, got {data.vais.labels!r}")
        if sorted(data.modalities) != sorted(MODALITIES):
            raise ConfigError(
                f"data.modalities must be {list(MODALITIES)} (in either order) for VAIS, got {data.modalities}"
            )

    @classmethod
    def scan_root(cls, root: Path, layout: str, data: DataConfig, issues: IssueLog, splits: Sequence[str] | None):
        if data.vais.labels == "fine":
            names_file = root / FINE_CLASSES_FILE
            if not names_file.is_file():
                raise DatasetNotFoundError(f"{names_file} not found", layout)
            class_names = [n.strip() for n in names_file.read_text(encoding="utf-8").splitlines() if n.strip()]
            column = "fine_label"
        else:
            class_names, column = list(BASIC_CLASSES), "basic_label"
        index = {name: i for i, name in enumerate(class_names)}
        records: list[Record] = []
        for split in dict.fromkeys(splits or SPLITS):
            sources = [("pairs", root / f"{split}_pairs.csv")] + [
                (m, root / f"{split}_{m}.csv") for m in data.modalities
            ]
            present = [(kind, path) for kind, path in sources if path.is_file()]
            if not present:
                names = ", ".join(p.name for _, p in sources)
                raise DatasetNotFoundError(f"no list of split {split!r} in {root} (looked for {names})", layout)
            merged: dict[str, dict] = {}
            for kind, path in present:
                cls._read_list(path, kind, data.modalities, column, index, merged, issues)
            for item in merged.values():
                records.append(Record(item["id"], (item["label"],), item["paths"], split, item["where"], item["ship"]))
        return records, class_names

    @staticmethod
    def _read_list(
        path: Path, kind: str, modalities, column: str, index: dict[str, int], merged: dict, issues: IssueLog
    ):
        expected = PAIR_COLUMNS if kind == "pairs" else SINGLE_COLUMNS
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in expected if c not in (reader.fieldnames or [])]
            if missing:
                issues.error(f"{path}:1", f"missing column(s) {missing}; header is {reader.fieldnames}")
                return
            seen: dict[str, int] = {}
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if None in row or any(v is None for v in row.values()):
                    issues.error(where, f"expected {len(expected)} fields, got a different number")
                    continue
                object_id = row["id"].strip()
                if object_id in seen:
                    issues.error(where, f"duplicate id {object_id!r} (first on line {seen[object_id]})")
                    continue
                seen[object_id] = reader.line_num
                name = row[column].strip()
                if name not in index:
                    issues.error(where, f"unknown {column} {name!r} (classes: {', '.join(index)})")
                    continue
                columns = {m: f"{m}_path" for m in modalities} if kind == "pairs" else {kind: "path"}
                paths, ok = {}, True
                for modality, col in columns.items():
                    image = path.parent / row[col].strip()
                    if not row[col].strip() or not image.is_file():
                        issues.error(where, f"{modality} image {image} not found")
                        ok = False
                    paths[modality] = image
                if not ok:
                    continue
                item = merged.setdefault(
                    object_id,
                    {"id": object_id, "label": index[name], "paths": {}, "where": where, "ship": row["ship"].strip()},
                )
                if item["label"] != index[name]:
                    issues.error(
                        where, f"id {object_id!r} has {column} {name!r} here but another one at {item['where']}"
                    )
                    continue
                item["paths"].update(paths)
