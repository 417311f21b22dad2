"""Dataset base classes shared by every on-disk format.

A format module (``folder.py``, ...) only parses its layout into :class:`Record` objects;
everything that turns records into tensors lives here, so training and evaluation run the
same code whatever the format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import torch
from torch.utils.data import Dataset

from fgmd.config import DataConfig
from fgmd.data.io import read_image
from fgmd.data.issues import DataFormatError, IssueLog
from fgmd.data.preprocess import Preprocessor
from fgmd.data.records import Record, multi_hot
from fgmd.data.transforms import ModalityTransform


class DatasetNotFoundError(FileNotFoundError):
    """The dataset root or one of its index files does not exist; the message shows the layout."""

    def __init__(self, what: str, expected_layout: str):
        super().__init__(f"{what}\nExpected layout:\n{expected_layout}")


ImageReader = Callable[[Path], torch.Tensor]


class CrossModalDataset(Dataset):
    """The pairs of one split of a two-modality dataset, as a map-style dataset.

    ``self[i]`` is ``{"image_<a>": [C_a,S,S], "image_<b>": [C_b,S,S], "label": [L],
    "index": i, "id": str}``; with ``transforms`` unset the images are the decoded
    ``[C,H,W]`` tensors in [0, 1]. Training transforms draw one crop/flip per pair and apply
    it to both images, so co-registered views stay aligned.

    ``records`` may hold objects imaged in one modality only (VAIS): they are not pairs,
    but they are still query/database items, available through :meth:`images`.

    ``reader`` decodes a file: one callable for every modality, or a mapping modality ->
    callable (band selection and radiometry differ per modality, see ``radiometry.py``).
    """

    def __init__(
        self,
        records: Sequence[Record],
        modalities: Sequence[str],
        class_names: Sequence[str],
        transforms: dict[str, ModalityTransform] | None = None,
        reader: ImageReader | Mapping[str, ImageReader] = read_image,
        cache_images: bool = False,
    ):
        if len(modalities) != 2:
            raise ValueError(f"a cross-modal dataset needs two modalities, got {list(modalities)}")
        self.modalities = tuple(modalities)
        self.class_names = list(class_names)
        self.records = list(records)
        self.pairs = [r for r in self.records if all(r.has(m) for m in self.modalities)]
        self.labels = multi_hot(self.pairs, len(self.class_names))
        self.transforms = transforms
        self.reader = reader
        self._cache: dict[tuple[str, str], torch.Tensor] | None = {} if cache_images else None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.pairs)

    def reader_of(self, modality: str) -> ImageReader:
        """The callable that decodes the images of ``modality``."""
        return self.reader[modality] if isinstance(self.reader, Mapping) else self.reader

    def load(self, record: Record, modality: str) -> torch.Tensor:
        """Decoded image ``[C, H, W]`` of ``record`` in ``modality`` (cached when enabled)."""
        if self._cache is None:
            return self.reader_of(modality)(record.paths[modality])
        key = (record.id, modality)
        if key not in self._cache:
            self._cache[key] = self.reader_of(modality)(record.paths[modality])
        return self._cache[key]

    def pair_image(self, index: int, modality: str) -> torch.Tensor:
        """Transformed image of pair ``index`` in ``modality`` (its own random crop)."""
        image = self.load(self.pairs[index], modality)
        return self.transforms[modality](image) if self.transforms else image

    def __getitem__(self, index: int) -> dict:
        record = self.pairs[index]
        sample = {"label": self.labels[index], "index": index, "id": record.id}
        params = None
        if self.transforms:
            params = self.transforms[self.modalities[0]].sample_params()
        for modality in self.modalities:
            image = self.load(record, modality)
            if self.transforms:
                image = self.transforms[modality](image, params)
            sample[f"image_{modality}"] = image
        return sample

    def subset(self, indices: Sequence[int]) -> CrossModalDataset:
        """A dataset of the pairs at ``indices`` (same classes, transforms and reader)."""
        subset = CrossModalDataset(
            [self.pairs[i] for i in indices], self.modalities, self.class_names, self.transforms, self.reader
        )
        subset._cache = self._cache
        return subset

    def images(self, modality: str, transform: ModalityTransform | Preprocessor | None = None) -> ModalityImages:
        """Every record of this split that has a ``modality`` image, paired or not.

        With a :class:`~fgmd.data.preprocess.Preprocessor` the images are read and transformed
        by it (the encoder inputs of evaluation); with a transform (or none) they are read by
        this dataset's reader.
        """
        if modality not in self.modalities:
            raise KeyError(f"unknown modality {modality!r}; this dataset has {list(self.modalities)}")
        records = [r for r in self.records if r.has(modality)]
        if isinstance(transform, Preprocessor):
            return ModalityImages(records, modality, self.num_classes, transform.transform, transform.reader)
        return ModalityImages(records, modality, self.num_classes, transform, self.reader_of(modality))


class FormatDataset(CrossModalDataset):
    """Base of the on-disk formats: how a layout is found, parsed and built from a config.

    A format declares itself in its class statement, ``class X(FormatDataset, name=...,
    paired=..., options=..., layout=...)``: ``NAME``, ``PAIRED`` (every record must have both
    modalities), ``OPTIONS`` (the name of its ``DataConfig`` section, if any) and the function
    describing its expected layout (``expected_layout``). It implements :meth:`scan_root` (or
    :meth:`scan`), which parses the splits it is asked for and reports each problem to an
    :class:`IssueLog` (strict: the first error raises :class:`DataFormatError`, naming
    ``file:line``), and :meth:`check_options` when its config section can be wrong.

    ``Format(root, split, modalities, options=..., class_names=..., transforms=..., reader=...,
    cache_images=...)`` is one split; :meth:`from_config` builds it from ``data.*``.
    """

    NAME: ClassVar[str] = ""
    PAIRED: ClassVar[bool] = True
    OPTIONS: ClassVar[str] = ""
    DEFAULT_MODALITIES: ClassVar[tuple[str, str]] = ("ms", "pan")
    LAYOUT: ClassVar[Callable[[DataConfig], str] | None] = None

    def __init_subclass__(
        cls,
        *,
        name: str = "",
        paired: bool = True,
        options: str = "",
        layout: Callable[[DataConfig], str] | None = None,
        modalities: tuple[str, str] | None = None,
        **kwargs,
    ) -> None:
        super().__init_subclass__(**kwargs)
        cls.NAME, cls.PAIRED, cls.OPTIONS = name, paired, options
        cls.LAYOUT = staticmethod(layout) if layout is not None else None
        if modalities is not None:
            cls.DEFAULT_MODALITIES = modalities

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        modalities: Sequence[str] | None = None,
        *,
        options: object | None = None,
        class_names: Sequence[str] = (),
        **kwargs,
    ):
        modalities = tuple(modalities or self.DEFAULT_MODALITIES)
        data = self.make_config(root, modalities, options, class_names)
        records, names = self.scan(data, IssueLog(strict=True), [split])
        chosen = [r for r in records if r.split == split]
        if not chosen:
            found = sorted({r.split for r in records})
            raise DataFormatError(f"{self.NAME} dataset at {root}: no rows of split {split!r} (splits: {found})")
        super().__init__(chosen, modalities, names, **kwargs)
        self.root = Path(root)
        self.split = split
        self.data = data

    @classmethod
    def make_config(cls, root, modalities, options=None, class_names=()) -> DataConfig:
        """The ``DataConfig`` equivalent to constructor arguments."""
        extra = {cls.OPTIONS: options} if cls.OPTIONS and options is not None else {}
        return DataConfig(
            format=cls.NAME, root=str(root), modalities=list(modalities), class_names=list(class_names), **extra
        )

    @classmethod
    def from_config(cls, data: DataConfig, split: str, **kwargs) -> FormatDataset:
        """The ``split`` of the dataset ``data`` describes (``kwargs``: transforms, reader, cache_images)."""
        options = getattr(data, cls.OPTIONS) if cls.OPTIONS else None
        return cls(data.root, split, data.modalities, options=options, class_names=data.class_names, **kwargs)

    @classmethod
    def check_options(cls, data: DataConfig) -> None:
        """Raise ``ConfigError`` (naming the field) when ``data`` cannot describe this format;
        called by config validation. The base format has nothing to check."""

    @classmethod
    def expected_layout(cls, data: DataConfig) -> str:
        """What this format expects on disk (shown when the data is not found)."""
        if cls.LAYOUT is None:
            raise NotImplementedError(f"format {cls.NAME!r} declares no layout")
        return cls.LAYOUT(data)

    @classmethod
    def scan(
        cls, data: DataConfig, issues: IssueLog, splits: Sequence[str] | None = None
    ) -> tuple[list[Record], list[str]]:
        """Records of ``splits`` (``None``: every split the layout defines) and the class names.

        Raises :class:`DatasetNotFoundError` (with the expected layout) when the root or an
        index file is missing; other problems go to ``issues``.
        """
        layout = cls.expected_layout(data)
        return cls.scan_root(check_root(data.root, layout), layout, data, issues, splits)

    @classmethod
    def scan_root(
        cls, root: Path, layout: str, data: DataConfig, issues: IssueLog, splits: Sequence[str] | None
    ) -> tuple[list[Record], list[str]]:
        """:meth:`scan` once ``data.root`` is known to be a folder (``layout`` for error messages)."""
        raise NotImplementedError

    @classmethod
    def unreferenced_images(cls, data: DataConfig, records: Sequence[Record]) -> dict[str, list[Path]]:
        """Image files of each modality in the layout that no record of any split uses."""
        return {}


def check_root(root: str | Path, layout: str) -> Path:
    """``root`` as a Path; :class:`DatasetNotFoundError` (showing ``layout``) when it is not a folder."""
    if not str(root):
        raise DatasetNotFoundError("data.root is not set: point it at the dataset folder", layout)
    path = Path(root)
    if not path.is_dir():
        raise DatasetNotFoundError(f"dataset root {path} does not exist", layout)
    return path


def parse_label_list(text: str | None, where: str, issues: IssueLog, table: ClassTable) -> list[int] | None:
    """``"3"``, ``"0;4"``, ``"ship"`` or ``"ship;harbour"`` -> class indices (names through
    ``table``); reports a malformed, unknown or negative label (returns None)."""
    parts = [part.strip() for part in (text or "").split(";")]
    if not all(parts):
        issues.error(where, f"label {text!r} is empty (give class indices or names separated by ';')")
        return None
    labels = []
    for part in parts:
        if part.lstrip("-").isdigit():
            labels.append(int(part))
            continue
        index = table.index_of(part, where, issues)
        if index is None:
            return None
        labels.append(index)
    if any(label < 0 for label in labels):
        issues.error(where, f"negative label {text!r}")
        return None
    if len(set(labels)) != len(labels):
        issues.error(where, f"label {text!r} repeats a class")
        return None
    return labels


def numbered_fields(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """``(line number, "path:line", whitespace-separated fields)`` of every non-blank line of a text
    list file (a trailing newline or blank line is not a record)."""
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            fields = line.split()
            if fields:
                yield line_no, f"{path}:{line_no}", fields


class ListedRecords:
    """The records of one ``csv.DictReader``-listed file (folder and csv formats) as it is read.

    ``parse`` checks the shared columns of a row (:func:`parse_listed_row`), ``add`` keeps a
    record, ``finish`` returns ``(records, class_names)`` (an empty file is an error).
    """

    def __init__(self, path: Path, class_names: Sequence[str], issues: IssueLog):
        self.path, self.issues = path, issues
        self.table = ClassTable(class_names)
        self.records: list[Record] = []
        self.labels_seen: set[int] = set()
        self.seen: dict[str, int] = {}

    def parse(
        self, row: dict[str | None, str | None], fieldnames: Sequence[str], line: int
    ) -> tuple[str, str, list[int], str] | None:
        """``(where, id, labels, split)`` of a row, or ``None`` when it has an error (reported)."""
        where = f"{self.path}:{line}"
        parsed = parse_listed_row(row, fieldnames, where, line, self.seen, self.table, self.issues)
        return None if parsed is None else (where, *parsed)

    def add(self, row: dict, sample_id: str, labels: list[int], paths: dict[str, Path], split: str, where: str) -> None:
        self.labels_seen.update(labels)
        group = (row.get("group") or "").strip()
        self.records.append(Record(sample_id, tuple(labels), paths, split, where, group))

    def finish(self) -> tuple[list[Record], list[str]]:
        if not self.records and not self.issues.errors:
            self.issues.error(str(self.path), "no rows")
        return self.records, self.table.class_names(self.labels_seen, str(self.path), self.issues)


def parse_listed_row(
    row: dict[str | None, str | None],
    fieldnames: Sequence[str],
    where: str,
    line: int,
    seen: dict[str, int],
    table: ClassTable,
    issues: IssueLog,
) -> tuple[str, list[int], str] | None:
    """The columns every ``csv.DictReader``-listed format shares: ``id``, ``label``,
    ``class_name`` (when ``fieldnames`` has it) and ``split``.

    Checks the field count, an empty or duplicate id (``seen``: id -> first line, updated),
    the labels (:func:`parse_label_list`), the class names against ``table`` and an empty
    split. Returns ``(id, labels, split)``, or None after reporting the row's first problem.
    """
    if None in row or any(value is None for value in row.values()):
        issues.error(where, f"expected {len(fieldnames)} fields, got a different number")
        return None
    sample_id = (row["id"] or "").strip()
    if not sample_id:
        issues.error(where, "empty id")
        return None
    if sample_id in seen:
        issues.error(where, f"duplicate id {sample_id!r} (first on line {seen[sample_id]})")
        return None
    seen[sample_id] = line
    labels = parse_label_list(row["label"], where, issues, table)
    if labels is None:
        return None
    names = [n.strip() for n in (row["class_name"] or "").split(";")] if "class_name" in fieldnames else None
    if names is not None and len(names) != len(labels):
        issues.error(where, f"{len(labels)} label(s) but {len(names)} class name(s)")
        return None
    if not table.add(labels, names, where, issues):
        return None
    split = (row["split"] or "").strip()
    if not split:
        issues.error(where, "empty split")
        return None
    return sample_id, labels, split


class ClassTable:
    """Class index -> name, collected from rows, or pinned by ``data.class_names``.

    A label may name its class instead of numbering it: with ``data.class_names`` the name
    is looked up there; without, names get indices in the order they first appear (one file
    uses either numbers or names then, so the two cannot clash).
    """

    def __init__(self, pinned: Sequence[str] = ()):
        self.pinned = list(pinned)
        self.names: dict[int, str] = dict(enumerate(self.pinned))
        self.first_seen: dict[int, str] = {}
        self.by_name: dict[str, int] = {name: i for i, name in enumerate(self.pinned)}
        self.numbered_at: str | None = None  # where a numeric label was first seen (unpinned)
        self.named_at: str | None = None  # where a named label was first seen (unpinned)

    def index_of(self, name: str, where: str, issues: IssueLog) -> int | None:
        """The class index of a label given by name; None after reporting why there is none."""
        if name in self.by_name:
            return self.by_name[name]
        if self.pinned:
            issues.error(where, f"class {name!r} is not in data.class_names ({', '.join(self.pinned)})")
            return None
        if self.numbered_at is not None:
            issues.error(
                where,
                f"label {name!r} is a class name but labels are numbers from {self.numbered_at} on: "
                "use one or the other (or list the names in data.class_names)",
            )
            return None
        self.named_at = self.named_at or where
        index = len(self.by_name)
        self.by_name[name] = index
        self.names[index] = name
        self.first_seen[index] = where
        return index

    def add(self, labels: Sequence[int], names: Sequence[str] | None, where: str, issues: IssueLog) -> bool:
        """Check ``labels`` (and their ``names``, if the file has them) against what is known."""
        ok = True
        for i, label in enumerate(labels):
            if not self.pinned and label not in self.by_name.values():
                if self.named_at is not None:
                    issues.error(
                        where,
                        f"label {label} is a number but labels are class names from {self.named_at} "
                        "on: use one or the other (or list the names in data.class_names)",
                    )
                    return False
                self.numbered_at = self.numbered_at or where
            if self.pinned and label >= len(self.pinned):
                issues.error(
                    where,
                    f"label {label} out of range: data.class_names has {len(self.pinned)} classes (0..{len(self.pinned) - 1})",
                )
                ok = False
                continue
            self.first_seen.setdefault(label, where)
            if names is None:
                continue
            name = names[i]
            known = self.names.setdefault(label, name)
            if known != name:
                origin = "data.class_names" if self.pinned else f"before ({self.first_seen.get(label, '?')})"
                issues.error(where, f"label {label} is named {name!r} here but {known!r} in {origin}")
                ok = False
        return ok

    def class_names(self, labels_seen: set[int], source: str, issues: IssueLog) -> list[str]:
        if self.pinned:
            return list(self.pinned)
        if not labels_seen:
            return []
        count = max(labels_seen) + 1
        unused = [label for label in range(count) if label not in labels_seen]
        if unused:  # one error, at the row of the largest label (often a single typo such as 99)
            shown = ", ".join(map(str, unused[:5])) + (f", ... ({len(unused)} in all)" if len(unused) > 5 else "")
            issues.error(
                self.first_seen.get(count - 1, source),
                f"label {count - 1} implies {count} classes, but no row has class {shown}; labels must be "
                "0..C-1 with every class used, or data.class_names must name every class",
            )
        return [self.names.get(label, f"class_{label}") for label in range(count)]


class ModalityImages(Dataset):
    """The images of one modality, for encoding: ``self[i] = {"image": [C,S,S], "label": [L], "index": i, "id": str}``."""

    def __init__(
        self,
        records: Sequence[Record],
        modality: str,
        num_classes: int,
        transform: ModalityTransform | None = None,
        reader: ImageReader = read_image,
    ):
        self.records = list(records)
        self.modality = modality
        self.labels = multi_hot(self.records, num_classes)
        self.transform = transform
        self.reader = reader

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        image = self.reader(record.paths[self.modality])
        if self.transform is not None:
            image = self.transform(image)
        return {"image": image, "label": self.labels[index], "index": index, "id": record.id}
