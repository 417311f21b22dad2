"""Encode an image archive into an ``Index`` file: chunked, resumable, optionally sharded.

``build_index`` encodes the images of one modality — a split of the checkpoint's dataset
or a folder of image files — with that modality's branch of a checkpoint, and writes an
``fgmd.retrieval.Index`` (packed codes, ids, labels when known, encoder identity).

Items and order
    A split: its records with an image of the modality, in dataset order; ids and labels
    from the dataset. A folder: every file with an image extension (``fgmd.data.io``), in
    the folder itself or, with ``recursive``, below it (names starting with ``.`` are
    ignored); id = path relative to the folder, ``/``-separated, without the extension;
    sorted by id; no labels. Two files with the same id (``a.png``, ``a.jpg``) are an error.

Chunks (resumable)
    Items are cut into chunks of ``chunk_size`` in that order. Each encoded chunk is saved
    atomically as ``<out>.parts/chunk-<n>.fgidx`` (an ``Index`` whose encoder metadata is the
    identity plus a ``"chunk"`` entry: number, item range, digest of the ids and file names
    of its items, and the images skipped as unreadable). A rerun of the same command skips
    every chunk already present after checking it: an identity that differs is an error
    (another checkpoint wrote it), a chunk whose items changed (files added or renamed) is
    encoded again. When all chunks exist they are merged, in chunk order, into ``out``
    (atomic write), checked to hold every item exactly once, and the parts folder is removed.

Distributed (``torchrun --nproc_per_node N -m fgmd index ...``)
    Rank ``r`` encodes chunks ``r, r + N, r + 2N, ...`` (each resumable as above); after a
    barrier rank 0 merges. Chunk files are named by their global number, so the merged
    index is the single-process one whatever the number of processes, and a run can be
    resumed with another number of processes.

Unreadable images
    An image that cannot be decoded, or has the wrong number of bands, stops the run with an
    error naming the file. With ``skip_unreadable`` it is left out instead, listed (with the
    reason) in ``<out>.skipped.txt`` and counted in the result — never silently.

Appending
    With ``append`` the items whose ids are already in ``out`` are left out, the others are
    encoded (chunked as above) and added after the existing items. The existing index must
    have been made by the same encoder (identity check).

One writer per output
    The process that writes ``out`` (rank 0) holds ``<out>.lock`` (``fgmd.runtime.lock``) from
    before the first chunk to after the merge; a second build of the same ``out`` is refused
    at once, naming the process in the way.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from fgmd.codes import as_packed
from fgmd.config import Config
from fgmd.data.io import SUPPORTED_EXTENSIONS, ImageReadError
from fgmd.data.preprocess import Preprocessor, build_preprocessor
from fgmd.models import load_run
from fgmd.models.encoder import ModalityEncoder
from fgmd.runtime import lock
from fgmd.runtime.distributed import barrier, init_distributed
from fgmd.runtime.files import remove_stale_temps, write_atomic
from fgmd.runtime.hints import suggest

from .identity import encoder_identity, identity_mismatches
from .index_file import Index, IndexFileError

__all__ = [
    "ArchiveError",
    "ArchiveSource",
    "BuildResult",
    "build_index",
    "encode_source",
    "folder_source",
    "load_encoder",
    "split_source",
]

DEFAULT_CHUNK_SIZE = 10_000
_SKIP_HINT = " (skipping unreadable images leaves such images out)"
CHUNK_PATTERN = "chunk-{:06d}.fgidx"


class ArchiveError(ValueError):
    """The archive cannot be indexed as asked (bad arguments, mismatching encoder, ...)."""


# --------------------------------------------------------------------------- sources


@dataclass
class ArchiveSource:
    """An ordered list of images of one modality to encode.

    Attributes:
        ids: unique item ids, in order.
        paths: one image file per id (strings: a Path object per item costs ~3x the memory).
        labels: ``[N, L]`` multi-hot labels, or ``None`` when unknown (folders).
        root: folder the paths are relative to in the chunk digests and in the index.
        description: for messages (``"split 'database' of /data/x"``, ``"folder /imgs"``).
        class_names: names of the label columns, or ``None``.
    """

    ids: list[str]
    paths: list[str]
    labels: torch.Tensor | None
    root: str
    description: str
    class_names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, positions: Sequence[int]) -> ArchiveSource:
        positions = list(positions)
        labels = None if self.labels is None else self.labels[positions]
        return ArchiveSource(
            [self.ids[p] for p in positions],
            [self.paths[p] for p in positions],
            labels,
            self.root,
            self.description,
            self.class_names,
        )

    def relative_paths(self, positions: Sequence[int], root: str | None = None) -> list[str]:
        """The files of the items at ``positions`` relative to ``root`` (default: this
        source's root), ``/``-separated, as an ``Index`` stores them."""
        base = os.path.abspath(root or self.root)
        return [Path(os.path.relpath(os.path.abspath(self.paths[p]), base)).as_posix() for p in positions]

    def digest(self, start: int, stop: int) -> str:
        """sha256 of the ids and relative file names of items ``start..stop``."""
        digest = hashlib.sha256()
        prefix = os.path.join(self.root, "")
        for item_id, path in zip(self.ids[start:stop], self.paths[start:stop]):
            name = path[len(prefix) :] if path.startswith(prefix) else path
            digest.update(f"{item_id}\0{name}\n".encode())
        return digest.hexdigest()


def split_source(config: Config, split: str, modality: str) -> ArchiveSource:
    """The images of ``modality`` in split ``split`` of the checkpoint's dataset, in dataset order."""
    from fgmd.data.datasets import build_dataset

    dataset = build_dataset(config.data, split)
    images = dataset.images(modality)
    if len(images) == 0:
        raise ArchiveError(f"split {split!r} of {config.data.root} has no {modality} images")
    return ArchiveSource(
        [r.id for r in images.records],
        [str(r.paths[modality]) for r in images.records],
        images.labels,
        str(config.data.root),
        f"split {split!r} of {config.data.root}",
        list(dataset.class_names),
    )


def folder_source(folder: str | os.PathLike, recursive: bool = False) -> ArchiveSource:
    """Every image file in ``folder`` (and below it when ``recursive``), sorted by id.

    Ids are the paths relative to ``folder`` without extension, with ``/`` separators.
    Files and folders whose names start with ``.`` are ignored.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ArchiveError(f"image folder not found: {folder}")

    def is_image(name: str) -> bool:
        return not name.startswith(".") and Path(name).suffix.lower() in SUPPORTED_EXTENSIONS

    found: dict[str, str] = {}
    for directory, subdirs, files in os.walk(folder):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")] if recursive else []
        relative = os.path.relpath(directory, folder)
        prefix = "" if relative == "." else Path(relative).as_posix() + "/"
        for name in files:
            if is_image(name):
                _add_item(found, prefix + os.path.splitext(name)[0], os.path.join(directory, name))
    if not found:
        nested = not recursive and any(
            sub.is_dir() and any(is_image(name) for name in os.listdir(sub)) for sub in folder.iterdir()
        )
        error = ArchiveError(
            f"no image files ({' '.join(sorted(SUPPORTED_EXTENSIONS))}) in {folder}"
            + (" (its subfolders have images: include them recursively)" if nested else "")
        )
        raise suggest(error, "recursive") if nested else error
    ids = sorted(found)
    return ArchiveSource(ids, [found[i] for i in ids], None, str(folder), f"folder {folder}")


def _add_item(found: dict[str, str], item_id: str, path: str) -> None:
    if "\n" in item_id:
        raise ArchiveError(f"{path!r}: a file name with a newline cannot be an id")
    if item_id in found:
        raise ArchiveError(f"two images have the id {item_id!r}: {found[item_id]} and {path}")
    found[item_id] = path


# --------------------------------------------------------------------------- encoding


class SourceImages(Dataset):
    """Encoder inputs of a source, made by the modality's ``Preprocessor``; failures are
    returned, not raised, so the main process can name the file (exceptions from DataLoader
    workers lose their type)."""

    def __init__(self, source: ArchiveSource, preprocess: Preprocessor, positions: Sequence[int]):
        self.source = source
        self.preprocess = preprocess
        self.positions = list(positions)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> dict:
        position = self.positions[index]
        path = self.source.paths[position]
        try:
            return {"position": position, "image": self.preprocess(path), "error": None}
        except ImageReadError as error:
            return {"position": position, "image": None, "error": (str(error.path), error.reason)}


def collate_images(items: list[dict]) -> dict:
    good = [item for item in items if item["error"] is None]
    return {
        "positions": [item["position"] for item in good],
        "images": torch.stack([item["image"] for item in good]) if good else None,
        "errors": [(item["position"], *item["error"]) for item in items if item["error"] is not None],
    }


@torch.no_grad()
def encode_source(
    encoder: ModalityEncoder,
    preprocess: Preprocessor,
    source: ArchiveSource,
    positions: Sequence[int],
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    skip_unreadable: bool = False,
    on_batch: Callable[[int], None] | None = None,
    offer_skip: bool = True,
) -> tuple[np.ndarray, list[int], list[tuple[int, str, str]]]:
    """Encode the items of ``source`` at ``positions`` (in that order).

    Returns ``(packed codes [n, K/8] uint8, positions encoded, skipped [(position, path,
    reason)])``. An unreadable image raises ``ImageReadError`` unless ``skip_unreadable``;
    with ``offer_skip`` its message suggests skipping (and names that option, see
    ``fgmd.runtime.hints``).
    """
    encoder.eval()
    loader = DataLoader(
        SourceImages(source, preprocess, positions),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_images,
        persistent_workers=False,
    )
    codes = [np.empty((0, encoder.bits // 8), dtype=np.uint8)]
    kept: list[int] = []
    skipped: list[tuple[int, str, str]] = []
    for batch in loader:
        if batch["errors"]:
            if not skip_unreadable:
                _, path, reason = batch["errors"][0]
                if not offer_skip:
                    raise ImageReadError(path, reason)
                raise suggest(ImageReadError(path, reason + _SKIP_HINT), "skip_unreadable")
            skipped += batch["errors"]
        if batch["images"] is not None:
            output = encoder.encode(batch["images"].to(device)).float().cpu()
            codes.append(as_packed(output, encoder.bits))
            kept += batch["positions"]
        if on_batch is not None:
            on_batch(len(batch["positions"]) + len(batch["errors"]))
    return np.concatenate(codes), kept, skipped


def load_encoder(
    checkpoint: str | os.PathLike,
    modality: str,
    device: torch.device | str = "cpu",
    overrides: Sequence[str] = (),
) -> tuple[ModalityEncoder, Config, dict[str, Any]]:
    """The ``modality`` branch of a checkpoint (eval mode, on ``device``), its run config
    (with ``overrides`` applied) and its identity."""
    model, config, _ = load_run(checkpoint, overrides)
    if modality not in config.data.modalities:
        raise ArchiveError(f"{checkpoint}: the model has modalities {list(config.data.modalities)}, not {modality!r}")
    encoder = model.encoder(modality)
    identity = encoder_identity(encoder, config, modality)
    return encoder.to(device), config, identity


# --------------------------------------------------------------------------- chunks


@dataclass
class BuildResult:
    """What ``build_index`` did."""

    path: Path
    count: int  # items in the written index
    added: int  # items added to the index (rank 0; other ranks: items to encode)
    already_indexed: int = 0  # --append: source items already in the index
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (id, path, reason)
    chunks_encoded: int = 0  # by this process in this call
    chunks_reused: int = 0  # found complete on disk (by this process)
    skipped_file: Path | None = None


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def lock_file(out: Path) -> Path:
    """The lock held by the process writing ``out`` (removed when it ends)."""
    return out.with_name(out.name + ".lock")


def skipped_file(out: Path) -> Path:
    return out.with_name(out.name + ".skipped.txt")


def _chunk_info(source: ArchiveSource, number: int, start: int, stop: int) -> dict[str, Any]:
    return {"number": number, "start": start, "stop": stop, "items_sha256": source.digest(start, stop)}


def _read_chunk(
    path: Path, identity: dict[str, Any], info: dict[str, Any], skip_unreadable: bool
) -> tuple[Index, list] | None:
    """``(chunk, skipped entries)`` if the chunk file at ``path`` is complete and current;
    ``None`` when the chunk must be (re)encoded. A chunk of another encoder is an error."""
    if not path.exists():
        return None
    try:
        chunk = Index.load(path)
    except IndexFileError:
        return None  # damaged (not expected with atomic writes, and cheap to redo)
    stored = chunk.encoder
    stored_info = stored.pop("chunk", None)
    problems = identity_mismatches(stored, identity)
    if problems:
        raise ArchiveError(
            f"{path} was written by another encoder ({'; '.join(problems)}); "
            f"delete {path.parent} to start over, or use the checkpoint that wrote it"
        )
    if not isinstance(stored_info, dict) or any(stored_info.get(k) != v for k, v in info.items()):
        return None  # its items changed (files added/renamed, other --chunk-size): encode again
    if chunk.paths is None:
        return None  # written by an fgmd that did not store image paths
    skipped = stored_info.get("skipped", [])
    if skipped and not skip_unreadable:
        _, bad_path, reason = skipped[0]
        raise suggest(ImageReadError(bad_path, reason + _SKIP_HINT), "skip_unreadable")
    return chunk, skipped


def _write_chunk(
    path: Path,
    identity: dict[str, Any],
    info: dict[str, Any],
    source: ArchiveSource,
    codes: np.ndarray,
    kept: list[int],
    skipped: list[tuple[int, str, str]],
) -> Index:
    chunk_identity = {**identity, "chunk": {**info, "skipped": [[source.ids[p], path_, r] for p, path_, r in skipped]}}
    labels = None if source.labels is None else source.labels[kept].numpy()
    chunk = Index(
        identity["bits"],
        identity["modality"],
        chunk_identity,
        codes,
        [source.ids[p] for p in kept],
        labels,
        source.relative_paths(kept),
        root=source.root,
        class_names=source.class_names,
    )
    chunk.save(path)
    return chunk


def _chunk_ranges(total: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk_size, total)) for start in range(0, total, chunk_size)]


# --------------------------------------------------------------------------- build


def build_index(
    checkpoint: str | os.PathLike,
    modality: str,
    out: str | os.PathLike,
    *,
    split: str | None = None,
    folder: str | os.PathLike | None = None,
    recursive: bool = False,
    batch_size: int = 64,
    num_workers: int = 2,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    append: bool = False,
    overwrite: bool = False,
    skip_unreadable: bool = False,
    keep_parts: bool = False,
    device: str = "auto",
    progress: bool = True,
    overrides: Sequence[str] = (),
) -> BuildResult:
    """Encode a split or a folder with the ``modality`` branch of ``checkpoint`` into ``out``.

    See the module docstring for ordering, chunking/resuming, torchrun sharding, unreadable
    images and appending. ``overrides`` (``key=value``) adjust the stored config, e.g.
    ``data.root=/new/place`` for a split; preprocessing overrides change the identity.

    Returns:
        A ``BuildResult`` (on every rank; only rank 0's ``count`` describes the written file).
    """
    out = Path(out)
    if (split is None) == (folder is None):
        raise suggest(ArchiveError("give exactly one of a split or a folder"), "split", "folder")
    if chunk_size < 1 or batch_size < 1 or num_workers < 0:
        raise ArchiveError("chunk size and batch size must be positive, workers non-negative")
    if append and overwrite:
        raise suggest(ArchiveError("appending and overwriting exclude each other"), "append", "overwrite")
    if out.exists() and not (append or overwrite):
        raise suggest(
            FileExistsError(f"{out} exists: append to add new images to it, or overwrite to replace it"),
            "append",
            "overwrite",
        )
    if out.is_dir():
        raise ArchiveError(f"{out} is a folder; give the index file name")
    if not out.parent.is_dir():
        raise ArchiveError(f"output folder does not exist: {out.parent}")
    context, torch_device = init_distributed(device)
    # one writer per output: a second build of the same file is refused (rank 0 holds the lock)
    with lock.hold(lock_file(out), f"index {out}") if context.is_main else contextlib.nullcontext():
        if context.is_main:
            remove_stale_temps(out.parent, out.name)  # of a killed run: nobody else writes this output
        encoder, config, identity = load_encoder(checkpoint, modality, torch_device, overrides)
        preprocess = build_preprocessor(config.data, modality)

        if split is not None:
            source = split_source(config, split, modality)
        else:
            assert folder is not None  # checked above: a split or a folder
            source = folder_source(folder, recursive)
        existing: Index | None = None
        already = 0
        if append and out.exists():
            existing = Index.load(out)
            problems = identity_mismatches(existing.encoder, identity)
            if problems:
                raise ArchiveError(f"cannot append to {out}: it was made by another encoder ({'; '.join(problems)})")
            if (existing.labels is not None) != (source.labels is not None) and len(existing):
                raise ArchiveError(
                    f"cannot append to {out}: it {'has' if existing.labels is not None else 'has no'} labels "
                    f"but the new images ({source.description}) {'have none' if source.labels is None else 'do'}"
                )
            present = set(existing.ids.tolist())
            new_positions = [p for p, item_id in enumerate(source.ids) if item_id not in present]
            already = len(source) - len(new_positions)
            source = source.subset(new_positions)

        parts = parts_dir(out)
        ranges = _chunk_ranges(len(source), chunk_size)
        mine = list(range(context.rank, len(ranges), context.world_size))
        result = BuildResult(out, 0, len(source), already)
        if ranges:
            parts.mkdir(exist_ok=True)
        todo: list[tuple[int, dict]] = []
        for number in mine:
            start, stop = ranges[number]
            info = _chunk_info(source, number, start, stop)
            if _read_chunk(parts / CHUNK_PATTERN.format(number), identity, info, skip_unreadable) is not None:
                result.chunks_reused += 1
            else:
                todo.append((number, info))
        total = sum(ranges[n][1] - ranges[n][0] for n, _ in todo)
        bar = tqdm(total=total, desc=f"index {modality}", unit="img", disable=not (progress and context.is_main))
        for number, info in todo:
            start, stop = ranges[number]
            codes, kept, skipped = encode_source(
                encoder,
                preprocess,
                source,
                range(start, stop),
                batch_size=batch_size,
                num_workers=num_workers,
                device=torch_device,
                skip_unreadable=skip_unreadable,
                on_batch=bar.update,
            )
            _write_chunk(parts / CHUNK_PATTERN.format(number), identity, info, source, codes, kept, skipped)
            result.chunks_encoded += 1
        bar.close()
        barrier(context)
        if context.is_main:
            _merge(out, parts, source, ranges, identity, existing, skip_unreadable, result)
            if not keep_parts and parts.exists():
                shutil.rmtree(parts)
        barrier(context)
    return result


def _merge(
    out: Path,
    parts: Path,
    source: ArchiveSource,
    ranges: list[tuple[int, int]],
    identity: dict[str, Any],
    existing: Index | None,
    skip_unreadable: bool,
    result: BuildResult,
) -> None:
    """Concatenate the chunks in order into ``out``; check every item is there exactly once."""
    codes, ids, labels, paths, skipped = [], [], [], [], []
    for number, (start, stop) in enumerate(ranges):
        path = parts / CHUNK_PATTERN.format(number)
        info = _chunk_info(source, number, start, stop)
        found = _read_chunk(path, identity, info, skip_unreadable)
        if found is None:
            raise ArchiveError(
                f"chunk {number} is missing or out of date in {parts}: the process that encoded it failed; "
                "run the same command again to encode the missing chunks"
            )
        chunk, chunk_skipped = found
        skipped_ids = {entry[0] for entry in chunk_skipped}
        expected = [i for i in source.ids[start:stop] if i not in skipped_ids]
        if chunk.ids.tolist() != expected:
            raise ArchiveError(f"{path} does not hold exactly items {start}..{stop - 1} in order (gap or duplicate)")
        codes.append(chunk.codes)
        ids += expected
        if chunk.root is None or chunk.paths is None:
            raise ArchiveError(
                f"{path} records no image paths (written by another fgmd?): delete {parts} to start over"
            )
        paths += [os.path.join(chunk.root, *p.split("/")) for p in chunk.paths]
        if chunk.labels is not None:
            labels.append(chunk.labels)
        skipped += [tuple(entry) for entry in chunk_skipped]
    # An index made before paths were stored keeps none; appended items follow its root.
    keep_paths = existing is None or not len(existing) or existing.paths is not None
    root = existing.root if existing is not None and len(existing) and existing.root else source.root
    class_names = source.class_names if existing is None or not len(existing) else existing.class_names
    index = Index(
        identity["bits"], identity["modality"], identity, root=root if keep_paths else None, class_names=class_names
    )
    if existing is not None and len(existing):
        index.add(existing.codes, existing.ids.tolist(), existing.labels, existing.paths if keep_paths else None)
    if ids:
        relative = [Path(os.path.relpath(p, index.root)).as_posix() for p in paths] if keep_paths else None
        index.add(np.concatenate(codes), ids, np.concatenate(labels) if labels else None, relative)
    if len(index) != (len(existing) if existing is not None else 0) + len(source) - len(skipped):
        raise ArchiveError("merged index has the wrong number of items")  # guarded above; belt and braces
    index.save(out)
    result.count = len(index)
    result.added = len(index) - (len(existing) if existing is not None else 0)
    result.skipped = skipped
    listing = skipped_file(out)
    if skipped:
        write_atomic(listing, "".join(f"{path}\t{reason}\n" for _, path, reason in skipped))
        result.skipped_file = listing
    elif listing.exists():
        listing.unlink()  # from an earlier run: those images are now indexed or gone
