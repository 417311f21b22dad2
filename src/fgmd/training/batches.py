"""The training data path: decoded images held once, triplet batches augmented as whole tensors.

Per-sample loading (a DataLoader calling a transform for each of the ``6B`` images of a
step) cost about a tenth of a CPU step and, on a GPU, kept the device waiting. Here:

* :class:`ResizedImages` decodes every training pair once (band selection and radiometry
  through the dataset's per-modality reader) and resizes it to ``data.resize``² — the
  deterministic part of the training transform — into one ``[N, C, R, R]`` float32 tensor
  per modality, kept on the training device when it fits (on the host otherwise).
* :class:`TripletBatches` yields, per step, the anchors and the mined positives/negatives of
  both modalities, cropped, flipped and normalised in a few batched tensor operations on that
  device (:func:`crop_flip`), already in ``channels_last`` layout.

Random draws: the crop/flip parameters of an epoch come from one ``torch.Generator`` seeded
with the epoch seed (and the rank), drawn in a fixed order per batch — anchors (shared by
both images of a pair, keeping co-registered views aligned), then per modality positives and
negatives (:func:`draw_crops`). They are drawn on the host, so the augmentation is the same
whichever device holds the images and however many loader workers decoded them.
The result equals :class:`fgmd.data.transforms.ModalityTransform` applied image by image with
the same parameters (tested).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from fgmd.config import DataConfig
from fgmd.data.datasets import CrossModalDataset
from fgmd.data.transforms import normalisation, resize_square

logger = logging.getLogger("fgmd.training")

# Images stay on a CUDA device when they need at most this fraction of its free memory.
DEVICE_MEMORY_FRACTION = 0.5


@dataclass(frozen=True)
class Crops:
    """Crop offsets and flips of ``n`` images: ``top``, ``left`` ``[n]`` long, ``flip`` ``[n]`` bool."""

    top: torch.Tensor
    left: torch.Tensor
    flip: torch.Tensor


def draw_crops(count: int, slack: int, hflip: bool, generator: torch.Generator) -> Crops:
    """Random crops of ``count`` images: offsets uniform in ``[0, slack]``, flips with probability 1/2."""
    offsets = torch.randint(0, slack + 1, (2, count), generator=generator)
    flip = torch.rand(count, generator=generator) < 0.5
    return Crops(offsets[0], offsets[1], flip if hflip else torch.zeros(count, dtype=torch.bool))


def centre_crops(count: int, slack: int) -> Crops:
    """The evaluation crop of ``count`` images (centre, no flip)."""
    offset = torch.full((count,), slack // 2, dtype=torch.long)
    return Crops(offset, offset.clone(), torch.zeros(count, dtype=torch.bool))


def crop_flip(images: torch.Tensor, crops: Crops, size: int, rows: torch.Tensor | None = None) -> torch.Tensor:
    """Crops ``[n, C, size, size]`` of ``images [N, C, R, R]`` at ``crops``, the flipped ones mirrored.

    ``rows [n]`` picks the images (default: all ``N``, in order); ``crops`` and ``rows`` must be
    on ``images.device``. One gather for the whole batch, reading only the cropped pixels; the
    result is in ``channels_last`` memory layout (what the encoders run fastest on), values
    equal to slicing and flipping each image.
    """
    device = images.device
    steps = torch.arange(size, device=device)
    top_rows = crops.top[:, None] + steps  # [n, S]
    cols = crops.left[:, None] + torch.where(
        crops.flip[:, None], size - 1 - steps, steps
    )  # [n, S], reversed when flipped
    batch = (torch.arange(len(images), device=device) if rows is None else rows)[:, None, None]
    # advanced indices on dims 0, 2, 3 around a slice: the result is [n, S, S, C]
    pixels = images[batch, :, top_rows[:, :, None], cols[:, None, :]]
    return pixels.permute(0, 3, 1, 2)  # [n, C, S, S], channels_last strides


class _Decoded(Dataset):
    """Pair ``i`` of ``pairs`` in one modality, decoded and resized to ``[C, R, R]``.

    Reads through the modality's reader directly: the dataset's image cache is not filled
    (this store replaces it for training).
    """

    def __init__(self, pairs: CrossModalDataset, modality: str, resize: int, channels: int):
        self.pairs, self.modality, self.resize, self.channels = pairs, modality, resize, channels
        self.read = pairs.reader_of(modality)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.pairs.pairs[index].paths[self.modality]
        image = self.read(path)
        if image.shape[0] != self.channels:
            raise ValueError(
                f"{path}: expected {self.channels} band(s) for modality {self.modality!r}, got {image.shape[0]}"
            )
        return resize_square(image, self.resize)


class ResizedImages:
    """Every pair of a training set, decoded and resized once: ``images[m]`` ``[N, C, R, R]`` float32.

    ``labels`` ``[N, L]`` are the pairs' labels; ``nbytes`` the size of all ``images``. Values
    are kept in float32 after radiometry (not re-quantised to uint8), so batches equal the
    evaluation-time transform exactly; a store larger than the device budget stays on the host.

    Args:
        pairs: the training pairs (their readers apply band selection and radiometry).
        resize: ``R`` (``data.resize``).
        channels: expected bands per modality; another count is an error naming the file.
        device: where the tensors live (a CUDA device only when they fit, see
            :data:`DEVICE_MEMORY_FRACTION`); :attr:`device` says where they ended up.
        num_workers: DataLoader workers decoding in parallel.
    """

    def __init__(
        self,
        pairs: CrossModalDataset,
        resize: int,
        channels: dict[str, int],
        device: torch.device,
        num_workers: int = 0,
        progress: bool = True,
    ):
        self.modalities = pairs.modalities
        self.resize = resize
        self.labels = pairs.labels
        count = len(pairs)
        needed = sum(count * channels[m] * resize * resize * 4 for m in self.modalities)
        self.device = device if _fits(device, needed) else torch.device("cpu")
        self.images: dict[str, torch.Tensor] = {}
        for modality in self.modalities:
            store = torch.empty(count, channels[modality], resize, resize)
            decoded = _Decoded(pairs, modality, resize, channels[modality])
            loader = DataLoader(decoded, batch_size=64, num_workers=num_workers)
            done = 0
            bar = tqdm(loader, desc=f"decoding {modality}", disable=not progress, leave=False, unit="batch")
            for batch in bar:
                store[done : done + len(batch)] = batch
                done += len(batch)
            self.images[modality] = store.to(self.device)
        self.nbytes = needed
        logger.info("training images: %.1f MiB of float32 on %s", needed / 2**20, self.device)

    def __len__(self) -> int:
        return len(self.labels)


def _fits(device: torch.device, nbytes: int) -> bool:
    """Whether ``nbytes`` may live on ``device`` (always on the host; on CUDA, see DEVICE_MEMORY_FRACTION)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_MEMORY_FRACTION * free


class Normaliser:
    """Per-band ``(x - mean) / std`` of ``[n, C, S, S]`` batches, with the modality's statistics."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device):
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std


@dataclass
class TripletBatch:
    """One step's inputs, role-major per modality (anchors, positives, negatives).

    ``images[m]`` ``[3B, C, S, S]`` and ``labels[m]`` ``[3B, L]`` on the training device;
    ``index`` ``[B]`` the pairs whose anchors these are, on the training device too (so the
    code-bank update needs no copy).
    """

    images: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    index: torch.Tensor


class TripletBatches:
    """The batches of one epoch: pair ``i``'s anchors with the positives/negatives mined for them.

    Args:
        store: the decoded training images (``N`` pairs).
        positives, negatives: per modality ``m``, ``[N]`` pair indices whose ``m`` image serves
            the *other* modality's anchor ``i`` (the layout
            :class:`fgmd.training.objective.FGMDObjective` expects).
        order: ``[n]`` pair indices of this process, in visiting order.
        batch_size: anchors per batch ``B`` (the last batch may be smaller).
        image_size: crop size ``S``; ``hflip``: random horizontal flips.
        normalise: per modality, the :class:`Normaliser` of the training transform.
        generator: host generator of the crop/flip draws (seeded per epoch and rank).
        device: training device the batches are built on.
        memory_format: layout of the image batches (``channels_last`` unless the model runs
            in the default contiguous layout).

    Iterating draws the whole epoch's crops first (per batch: ``B`` anchor crops shared by both
    modalities, then ``2B`` per modality for positives and negatives) and copies them, the
    order and the mined indices to the device once; the batches themselves then need no
    host-device transfer or synchronisation.
    """

    def __init__(
        self,
        store: ResizedImages,
        positives: dict[str, torch.Tensor],
        negatives: dict[str, torch.Tensor],
        order: torch.Tensor,
        batch_size: int,
        image_size: int,
        hflip: bool,
        normalise: dict[str, Normaliser],
        generator: torch.Generator,
        device: torch.device,
        memory_format: torch.memory_format = torch.channels_last,
    ):
        self.store, self.order, self.batch_size = store, order, batch_size
        self.image_size, self.hflip = image_size, hflip
        self.normalise, self.generator, self.device = normalise, generator, device
        self.memory_format = memory_format
        source = store.images[store.modalities[0]].device  # where the gathers run
        self.source_device = source
        self.positives = {m: p.to(source) for m, p in positives.items()}
        self.negatives = {m: n.to(source) for m, n in negatives.items()}
        self.labels = store.labels.to(source)

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch_size)

    def __iter__(self) -> Iterator[TripletBatch]:
        slack = self.store.resize - self.image_size
        anchor_crops: list[Crops] = []
        other_crops: dict[str, list[Crops]] = {m: [] for m in self.store.modalities}
        for start in range(0, len(self.order), self.batch_size):  # the draws, in the documented order
            size = len(self.order[start : start + self.batch_size])
            anchor_crops.append(draw_crops(size, slack, self.hflip, self.generator))
            for m in self.store.modalities:
                other_crops[m].append(draw_crops(2 * size, slack, self.hflip, self.generator))
        source = self.source_device
        order = self.order.to(source)
        crops = {m: [_to(_cat(a, o), source) for a, o in zip(anchor_crops, other_crops[m])] for m in other_crops}
        for number, start in enumerate(range(0, len(self.order), self.batch_size)):
            yield self._batch(order[start : start + self.batch_size], {m: c[number] for m, c in crops.items()})

    def _batch(self, index: torch.Tensor, crops: dict[str, Crops]) -> TripletBatch:
        images, labels = {}, {}
        for m in self.store.modalities:
            rows = torch.cat([index, self.positives[m][index], self.negatives[m][index]])  # [3B] role-major
            cropped = crop_flip(self.store.images[m], crops[m], self.image_size, rows)
            cropped = cropped.to(self.device, non_blocking=True)
            images[m] = self.normalise[m](cropped).contiguous(memory_format=self.memory_format)
            labels[m] = self.labels[rows].to(self.device, non_blocking=True)
        return TripletBatch(images, labels, index.to(self.device, non_blocking=True))


def _cat(first: Crops, second: Crops) -> Crops:
    return Crops(
        *(
            torch.cat([a, b])
            for a, b in zip((first.top, first.left, first.flip), (second.top, second.left, second.flip))
        )
    )


def _to(crops: Crops, device: torch.device) -> Crops:
    return Crops(crops.top.to(device), crops.left.to(device), crops.flip.to(device))


def epoch_order(count: int, seed: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """This process's share ``[ceil(count / world_size)]`` of a seeded permutation of ``count`` pairs.

    The same indices as ``DistributedSampler(shuffle=True, drop_last=False)`` (tested).

    The permutation is padded by wrapping around to a multiple of ``world_size``; process
    ``rank`` takes every ``world_size``-th entry from ``rank``.
    """
    permutation = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    total = math.ceil(count / world_size) * world_size
    if total > count:
        permutation = permutation.repeat(math.ceil(total / count))[:total]
    return permutation[rank::world_size]


def normalisers(data: DataConfig, device: torch.device) -> dict[str, Normaliser]:
    """The training normalisation of every modality of ``data`` (a ``DataConfig``)."""
    return {m: Normaliser(*normalisation(data.modality_config(m)), device) for m in data.modalities}
