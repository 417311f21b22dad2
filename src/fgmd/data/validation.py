"""Dataset checks: ``fgmd check-data`` and the check at the start of ``fgmd train``.

:func:`check_data` parses the configured dataset with a collecting :class:`IssueLog` and
returns a :class:`DataReport`: what was found (records, pairs and images per modality,
class counts per split) and every problem as an :class:`Issue` (severity, location,
message). Severities:

- **error** (training must not start): missing root or index file (the message shows the
  expected layout), malformed line or label, label out of range, duplicate id, a listed
  image that is missing, unreadable or has the wrong band count (each naming ``file:line``
  and the image), a configured split with no records, a modality count mismatch in a
  paired format.
- **warning**: possible leakage between the train, query and database splits (the same
  id, the same group such as MRSSID's ``<n>`` scene number or VAIS's ship, or identical
  decoded image content), identical images under different ids, a split missing a class,
  image files no record uses.
- **info**: notes (``database`` = ``train`` under the FSISR protocol, computed scaling).

``decode=True`` (``fgmd check-data``) decodes every listed image once; ``fgmd train`` calls
:func:`prepare_training_data`, which runs the same checks **without decoding** (the format
parsers still check that every listed file exists) and computes missing percentile
scaling statistics.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from fgmd.config import Config, ConfigError, DataConfig
from fgmd.data.datasets import FORMATS
from fgmd.data.datasets.base import DatasetNotFoundError
from fgmd.data.io import ImageReadError, read_image
from fgmd.data.issues import ERROR, INFO, WARNING, DataCheckError, Issue, IssueLog
from fgmd.data.radiometry import ModalityReader, percentile_bounds
from fgmd.data.records import Record

__all__ = ["DataReport", "Issue", "SplitSummary", "check_data", "check_minable", "prepare_training_data"]

logger = logging.getLogger("fgmd.data")
_EXAMPLES = 5


@dataclass
class SplitSummary:
    """One split: its roles, records, pairs, images per modality and records per class."""

    name: str
    roles: list[str]
    records: int = 0
    pairs: int = 0
    images: dict[str, int] = field(default_factory=dict)
    class_counts: list[int] = field(default_factory=list)


@dataclass
class ModalityImageStats:
    """What decoding the images of one modality found (``fgmd check-data`` only)."""

    files: int = 0
    readable: int = 0
    bands_on_disk: list[int] = field(default_factory=list)  # distinct native band counts
    min_size: tuple[int, int] | None = None  # (H, W) of the smallest / largest image by area
    max_size: tuple[int, int] | None = None


@dataclass
class DataReport:
    """The result of :func:`check_data`. ``ok`` is False when there is an error."""

    format: str
    root: str
    modalities: list[str]
    roles: dict[str, str]
    class_names: list[str] = field(default_factory=list)
    splits: dict[str, SplitSummary] = field(default_factory=dict)
    images: dict[str, ModalityImageStats] = field(default_factory=dict)
    decoded: bool = False
    scaling: dict[str, dict] = field(default_factory=dict)
    channels: dict[str, dict] = field(default_factory=dict)  # inferred band counts: {m: {"channels", "from"}}
    issues: list[Issue] = field(default_factory=list)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == ERROR]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == WARNING]

    @property
    def notes(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == INFO]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["issues"] = [i.to_dict() for i in self.issues]
        out["ok"] = self.ok
        return out


def check_data(config: Config, decode: bool = True, progress: bool = False, scaling: bool = True) -> DataReport:
    """Check the dataset ``config.data`` describes (see the module docs).

    Args:
        config: the run config (``data`` section; ``seed`` seeds the scaling sample).
        decode: decode every listed image once (unreadable files, band counts, sizes,
            identical content); otherwise only the parsers' existence checks run.
        progress: show a progress bar while decoding.
        scaling: compute percentile scaling bounds that the config leaves unset.
    """
    data = config.data
    roles = {"train": data.train_split, "query": data.query_split, "database": data.database_split}
    report = DataReport(data.format, data.root, list(data.modalities), roles)
    log = IssueLog(strict=False)
    fmt = FORMATS[data.format]
    split_names = list(dict.fromkeys(roles.values()))
    try:
        records, class_names = fmt.scan(data, log, split_names)
    except DatasetNotFoundError as error:
        log.error(data.root or "data.root", str(error))
        report.issues = log.items
        return report
    except (UnicodeDecodeError, csv.Error, OSError) as error:  # e.g. a binary file where a list should be
        log.error(data.root, f"cannot read the dataset's lists: {type(error).__name__}: {error}")
        report.issues = log.items
        return report
    report.class_names = class_names
    by_split: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_split[record.split].append(record)

    for split in split_names:
        split_roles = [role for role, name in roles.items() if name == split]
        members = by_split.get(split, [])
        summary = SplitSummary(split, split_roles)
        summary.records = len(members)
        summary.pairs = sum(all(r.has(m) for m in data.modalities) for r in members)
        summary.images = {m: sum(r.has(m) for r in members) for m in data.modalities}
        counts = [0] * len(class_names)
        for record in members:
            for label in record.labels:
                if label < len(counts):
                    counts[label] += 1
        summary.class_counts = counts
        report.splits[split] = summary
        if not members:
            found = sorted(by_split)
            log.error(
                data.root,
                f"no usable records of split {split!r} ({'/'.join(split_roles)} split; splits found: {found})",
            )
            continue
        if fmt.PAIRED and len(set(summary.images.values())) > 1:
            counts_text = ", ".join(f"{n} {m}" for m, n in summary.images.items())
            log.error(data.root, f"split {split!r}: modality count mismatch ({counts_text} images)")
        if "train" in split_roles and summary.pairs == 0:
            log.error(data.root, f"split {split!r} (train) has no pair with both modalities to train on")
        absent = [f"{class_names[i]} ({i})" for i, n in enumerate(counts) if n == 0]
        if absent and class_names:
            more = f", ... ({len(absent)} in all)" if len(absent) > _EXAMPLES else ""
            log.warning(data.root, f"split {split!r} has no record of class(es) {', '.join(absent[:_EXAMPLES])}{more}")

    _check_unreferenced(fmt, data, records, log)
    _check_confined(data, records, log)
    check_minable(by_split.get(data.train_split, []), data.modalities, log)
    config = _infer_channels(config, by_split, report, log)
    same_train_db = _check_train_database(roles, by_split, log)
    comparisons = _comparisons(roles, same_train_db)
    _check_overlap(comparisons, by_split, log, key=lambda r: r.id, what="id")
    _check_overlap(comparisons, by_split, log, key=lambda r: r.group, what="group")
    if decode:
        _decode_all(config, by_split, split_names, comparisons, report, log, progress)
    if scaling and not log.errors:
        _scaling(config, by_split, report, log)
    report.issues = log.items
    return report


def prepare_training_data(config: Config, progress: bool = False) -> Config:
    """The check run at the start of ``fgmd train``; returns the config to train with.

    Runs :func:`check_data` without decoding the images (the parsers check every listed
    file exists; ``fgmd check-data`` decodes them all). Warnings are logged (logger
    ``fgmd.data``, shown on stderr by default); errors raise :class:`DataCheckError`
    before anything is trained. Band counts left to inference (``channels: 0``) and
    percentile scaling bounds that the config leaves unset are computed on the training split
    and written into the returned config, so the run's ``config.yaml`` and checkpoints
    reproduce the input at evaluation time.
    """
    report = check_data(config, decode=False, progress=progress)
    for issue in report.warnings:
        logger.warning("data check: warning: %s", issue)
    if report.errors:
        raise DataCheckError(
            f"data check failed for the {config.data.format} dataset at {config.data.root!r} "
            f"({len(report.errors)} error(s); `fgmd check-data` gives the full report):",
            report.issues,
        )
    for modality, inferred in report.channels.items():
        logger.info("data: %s has %d band(s), inferred from %s", modality, inferred["channels"], inferred["from"])
    config = _with_channels(config, report.channels)
    if not any(s.get("computed") for s in report.scaling.values()):
        return config
    values = config.to_dict()
    for modality, stats in report.scaling.items():
        if stats.get("computed"):
            section = values["data"]["modality"].setdefault(modality, {})
            section.update({"scale_low": stats["low"], "scale_high": stats["high"]})
            logger.info("data: %s percentile scaling low %s high %s", modality, stats["low"], stats["high"])
    return Config.from_dict(values)


# --------------------------------------------------------------------------- helpers


def _where(records: Sequence[Record]) -> str:
    return ", ".join(f"{r.id} ({r.source})" for r in records)


def _check_unreferenced(fmt, data, records, log: IssueLog) -> None:
    try:
        unused = fmt.unreferenced_images(data, records)
    except OSError:
        return
    for modality, paths in unused.items():
        if paths:
            examples = ", ".join(p.name for p in paths[:_EXAMPLES])
            log.warning(
                str(paths[0].parent), f"{len(paths)} {modality} image(s) not used by any split listed, e.g. {examples}"
            )


def _check_confined(data: DataConfig, records: Sequence[Record], log: IssueLog) -> None:
    """Report image paths that lead outside ``data.root`` once they are resolved (absolute
    paths, ``..`` parts, symbolic links): a warning, or an error with ``data.confine_to_root``."""
    root = Path(data.root).resolve()
    outside = [
        (record, path, resolved)
        for record in records
        for path in record.paths.values()
        if not (resolved := Path(path).resolve()).is_relative_to(root)
    ]
    if not outside:
        return
    record, path, resolved = outside[0]
    link = f" -> {resolved}" if Path(path) != resolved else ""
    message = f"{len(outside)} image path(s) lead outside the data root {root}, e.g. {path}{link}"
    if data.confine_to_root:
        log.error(record.source, f"{message} (refused: data.confine_to_root is true)")
    else:
        log.warning(record.source, f"{message} (set data.confine_to_root=true to refuse them)")


def check_minable(train: Sequence[Record], modalities: Sequence[str], log: IssueLog) -> None:
    """Triplet mining needs, for every training pair, a pair sharing no label with it (a
    negative). Multi-label data can break this (an item labelled with every class); checked
    on the distinct label sets, so it costs O(distinct sets²), not O(pairs²). Run on the whole
    training split by :func:`check_data`, and by the trainer again on the pairs left after
    the validation split."""
    sets: dict[frozenset, Record] = {}
    for record in train:
        if all(record.has(m) for m in modalities):
            sets.setdefault(frozenset(record.labels), record)
    lonely = [record for labels, record in sets.items() if all(labels & other for other in sets)]
    for record in lonely[:_EXAMPLES]:
        log.error(
            record.source,
            f"training pair {record.id!r} (labels {sorted(record.labels)}) shares a label with "
            "every other training pair: triplet mining has no negative for it",
        )


def _check_train_database(roles: dict[str, str], by_split, log: IssueLog) -> bool:
    """Notes train = database (FSISR protocol); True when the two hold the same ids."""
    train, database = roles["train"], roles["database"]
    if train == database:
        log.info("", f"the database split is the train split {train!r} (FSISR protocol)")
        return True
    train_ids = {r.id for r in by_split.get(train, [])}
    db_ids = {r.id for r in by_split.get(database, [])}
    if train_ids and train_ids == db_ids:
        log.info(
            "",
            f"split {database!r} (database) holds exactly the ids of split {train!r} (train): "
            "the FSISR protocol, where the training pairs are the retrieval database",
        )
        return True
    return False


def _comparisons(roles: dict[str, str], same_train_db: bool) -> list[tuple[str, str]]:
    """Pairs of distinct splits whose overlap would be leakage.

    When the database is the training set (FSISR), database vs query is the same comparison
    as train vs query and train vs database is the protocol, so only train vs query is left.
    """
    pairs = [(roles["train"], roles["query"])]
    if not same_train_db:
        pairs += [(roles["database"], roles["query"]), (roles["train"], roles["database"])]
    out: list[tuple[str, str]] = []
    for a, b in pairs:
        if a != b and (a, b) not in out and (b, a) not in out:
            out.append((a, b))
    return out


def _check_overlap(comparisons, by_split, log: IssueLog, key, what: str) -> None:
    for a, b in comparisons:
        index_a: dict[str, Record] = {}
        for record in by_split.get(a, []):
            if key(record):
                index_a.setdefault(key(record), record)
        shared: dict[str, tuple[Record, Record]] = {}
        for record in by_split.get(b, []):
            k = key(record)
            if k and k in index_a and k not in shared:
                shared[k] = (index_a[k], record)
        if not shared:
            continue
        examples = "; ".join(f"{k}: {_where(pair)}" for k, pair in list(shared.items())[:_EXAMPLES])
        detail = " (near-duplicates: possible leakage)" if what == "group" else " (leakage)"
        log.warning("", f"{len(shared)} {what}(s) occur in both split {a!r} and split {b!r}{detail}, e.g. {examples}")


def _decode_all(config, by_split, split_names, comparisons, report: DataReport, log: IssueLog, progress: bool) -> None:
    data = config.data
    items: dict[tuple[str, str], list[Record]] = {}
    for split in split_names:
        for record in by_split.get(split, []):
            for modality in data.modalities:
                if record.has(modality):
                    items.setdefault((modality, str(record.paths[modality])), []).append(record)
    stats = {m: ModalityImageStats() for m in data.modalities}
    bands_seen: dict[str, set[int]] = {m: set() for m in data.modalities}
    hashes: dict[tuple[str, str], list[Record]] = defaultdict(list)
    wrong_bands: dict[tuple[str, int], list[tuple[str, Record]]] = defaultdict(list)  # one error per count
    for (modality, path), users in tqdm(items.items(), desc="decode images", disable=not progress):
        mod = data.modality_config(modality)
        stat = stats[modality]
        stat.files += 1
        try:
            image = read_image(path)
            native = image.shape[0]
            bands_seen[modality].add(native)
            if mod.bands:
                bad = [b for b in mod.bands if b >= native]
                if bad:
                    raise ImageReadError(
                        path,
                        f"data.modality.{modality}.bands {mod.bands}: band {bad[0]} out of range, "
                        f"the image has {native} band(s)",
                    )
                image = image[mod.bands]
            if mod.channels and image.shape[0] != mod.channels:  # 0: not inferred (an error says why)
                wrong_bands[(modality, int(image.shape[0]))].append((path, users[0]))
                continue
        except ImageReadError as error:
            log.error(users[0].source, f"{error.path}: {error.reason}")
            continue
        stat.readable += 1
        size = (int(image.shape[1]), int(image.shape[2]))
        if stat.min_size is None or size[0] * size[1] < stat.min_size[0] * stat.min_size[1]:
            stat.min_size = size
        if stat.max_size is None or size[0] * size[1] > stat.max_size[0] * stat.max_size[1]:
            stat.max_size = size
        digest = hashlib.blake2b(image.numpy().tobytes(), digest_size=16)
        digest.update(repr(tuple(image.shape)).encode())
        for record in users:
            hashes[(modality, digest.hexdigest())].append(record)
    for (modality, count), mismatched in wrong_bands.items():
        channels = data.modality_config(modality).channels
        path, record = mismatched[0]
        selected = " after band selection" if data.modality_config(modality).bands else ""
        inferred = report.channels.get(modality)
        source = f" (inferred from {inferred['from']})" if inferred else ""
        fix = f"set data.modality.{modality}.channels={count}"
        if count > channels:
            fix += f", or pick {channels} of the bands with data.modality.{modality}.bands=[...]"
        log.error(
            record.source,
            f"{len(mismatched)} {modality} image(s) have {count} band(s){selected} but "
            f"data.modality.{modality}.channels is {channels}{source} (first: {path}): {fix}",
        )
    for modality, stat in stats.items():
        stat.bands_on_disk = sorted(bands_seen[modality])
    report.images = stats
    report.decoded = True

    leaks: dict[tuple[str, str], list[tuple[str, Record, Record]]] = defaultdict(list)
    duplicates: list[tuple[str, Record, Record]] = []
    allowed = {frozenset(pair) for pair in comparisons}
    for (modality, _), users in hashes.items():
        distinct: dict[str, Record] = {}
        for record in users:
            distinct.setdefault(f"{record.split}\0{record.id}", record)
        if len(distinct) < 2:
            continue
        members = list(distinct.values())
        first = members[0]
        for other in members[1:]:
            if other.split == first.split:
                duplicates.append((modality, first, other))
            elif frozenset((first.split, other.split)) in allowed and other.id != first.id:
                # (the same id in two splits is already reported by the id check)
                leaks[(first.split, other.split)].append((modality, first, other))
    for (a, b), found in leaks.items():
        examples = "; ".join(f"{m}: {_where((x, y))}" for m, x, y in found[:_EXAMPLES])
        log.warning(
            "",
            f"{len(found)} image(s) with identical content in split {a!r} and split {b!r} "
            f"under different ids (leakage), e.g. {examples}",
        )
    if duplicates:
        examples = "; ".join(f"{m}: {_where((x, y))}" for m, x, y in duplicates[:_EXAMPLES])
        log.warning(
            "",
            f"{len(duplicates)} image(s) identical to another image of the same split under a "
            f"different id, e.g. {examples}",
        )


def _infer_channels(config: Config, by_split, report: DataReport, log: IssueLog) -> Config:
    """``config`` with every ``channels: 0`` replaced by the inferred band count (recorded in
    ``report.channels``): ``len(bands)`` when bands are selected, else the band count of the
    modality's first image in the training split (in list order; any split when it has none)."""
    data = config.data
    inferred: dict[str, dict] = {}
    for modality in data.modalities:
        mod = data.modality_config(modality)
        if mod.channels:
            continue
        if mod.bands:
            inferred[modality] = {"channels": len(mod.bands), "from": f"data.modality.{modality}.bands"}
            continue
        splits = [data.train_split, *(s for s in by_split if s != data.train_split)]
        candidates = (r for s in splits for r in by_split.get(s, []) if r.has(modality))
        bands, tried = None, 0
        for record in candidates:  # the first image that decodes (the decode pass reports the others)
            try:
                bands = int(read_image(record.paths[modality]).shape[0])
                break
            except ImageReadError:
                tried += 1
            if tried == _EXAMPLES:
                break
        if bands is None:
            if tried:  # (no image at all: the split checks have reported it)
                log.error(
                    data.root,
                    f"cannot infer the band count of {modality}: its first {tried} image(s) do not decode "
                    f"(set data.modality.{modality}.channels)",
                )
            continue
        inferred[modality] = {"channels": bands, "from": str(record.paths[modality])}
        log.info(
            "",
            f"{modality}: {bands} band(s), inferred from the first readable {record.split!r} image {record.paths[modality]} "
            f"(data.modality.{modality}.channels is 0; fgmd train stores the number in the run config)",
        )
    try:
        resolved = _with_channels(config, inferred)
    except ConfigError as error:  # e.g. data.modality.<m>.mean has 1 value for the 3 bands found
        found = "; ".join(f"{m}: {c['channels']} band(s) from {c['from']}" for m, c in inferred.items())
        log.error(data.root, f"{error} (band counts inferred: {found})")
        return config
    report.channels = inferred
    return resolved


def _with_channels(config: Config, inferred: dict[str, dict]) -> Config:
    """``config`` with the band counts of ``inferred`` (``{m: {"channels": n, ...}}``) set."""
    if not inferred:
        return config
    values = config.to_dict()
    for modality, found in inferred.items():
        values["data"]["modality"].setdefault(modality, {})["channels"] = found["channels"]
    return Config.from_dict(values)


def _scaling(config: Config, by_split, report: DataReport, log: IssueLog) -> None:
    data = config.data
    train = by_split.get(data.train_split, [])
    for modality in data.modalities:
        mod = data.modality_config(modality)
        if mod.scaling != "percentile":
            continue
        if mod.scale_low:
            report.scaling[modality] = {"low": list(mod.scale_low), "high": list(mod.scale_high), "computed": False}
            log.info(
                "",
                f"{modality}: percentile scaling with the configured bounds low {mod.scale_low}, high {mod.scale_high}",
            )
            continue
        paths = [r.paths[modality] for r in train if r.has(modality)]
        reader = ModalityReader(modality, mod, radiometry=False)
        try:
            low, high = percentile_bounds(paths, reader, mod.percentiles, data.scaling_sample, config.seed)
        except (ImageReadError, ValueError) as error:
            log.error("", f"{modality}: cannot compute percentile scaling on split {data.train_split!r}: {error}")
            continue
        report.scaling[modality] = {
            "low": low,
            "high": high,
            "computed": True,
            "images": min(len(paths), data.scaling_sample),
        }
        log.info(
            "",
            f"{modality}: percentile scaling {mod.percentiles[0]:g}-{mod.percentiles[1]:g}% computed on "
            f"{min(len(paths), data.scaling_sample)} of {len(paths)} {data.train_split!r} images (seed {config.seed}): "
            f"scale_low {low}, scale_high {high} (fgmd train stores them in the run config)",
        )
