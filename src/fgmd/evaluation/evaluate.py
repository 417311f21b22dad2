"""Cross-modal evaluation: encode query and database sets, score both directions.

The result dict (also the content of ``metrics.json``)::

    {"directions": {"ms->pan": {"map": ..., "map_tie": ..., "map@100": ..., ...}, "pan->ms": {...}},
     "mean": {"map": ..., ...},          # every metric averaged over the two directions
     "mean_map": ..., "mean_map_tie": ...,
     "ties": "..."}                      # what the two treatments of equal distances mean

``map``, ``map@k``, ``precision@k`` break Hamming-distance ties by database index; ``map_tie``,
``map_tie@k``, ``precision_tie@k`` are tie-aware (``fgmd.evaluation.metrics``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from fgmd.config import EvalConfig
from fgmd.data.datasets.base import ModalityImages
from fgmd.evaluation.metrics import retrieval_metrics
from fgmd.models import FGMD
from fgmd.runtime.distributed import DistContext, gather_rows
from fgmd.tables import render_table

TIES_NOTE = (
    "map, map@k, precision@k rank items at equal Hamming distance by database index; map_tie, map_tie@k, "
    "precision_tie@k are tie-aware: the expected value over all orders of the tied items"
)


@torch.no_grad()
def encode_images(
    model: FGMD,
    images: ModalityImages,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    progress: bool = False,
    context: DistContext | None = None,
) -> torch.Tensor:
    """Codes ``[N, K]`` (tanh outputs, on CPU) of every image of ``images``, in dataset order.

    The model is put in eval mode and left there. In a distributed run each process encodes
    the images ``rank, rank + world, ...`` and the rows are gathered by index: every image is
    encoded exactly once (no sampler padding), and every process gets the full result.
    ``device`` (where the batches go) defaults to the device of the model's parameters.
    """
    context = context or DistContext()
    device = device if device is not None else next(model.parameters()).device
    model.eval()
    indices = torch.arange(context.rank, len(images), context.world_size)
    loader = DataLoader(Subset(images, indices.tolist()), batch_size=batch_size, shuffle=False, num_workers=num_workers)
    chunks = [torch.empty(0, model.bits)]
    show = progress and context.is_main
    for batch in tqdm(loader, desc=f"encode {images.modality}", disable=not show, leave=False):
        chunks.append(model.encode(batch["image"].to(device), images.modality).float().cpu())
    if len(images) == 0:
        raise ValueError(f"no {images.modality} images to encode")
    return gather_rows(torch.cat(chunks), indices, len(images), context)


def cross_modal_metrics(
    codes: Mapping[str, torch.Tensor],
    labels: Mapping[str, torch.Tensor],
    database_codes: Mapping[str, torch.Tensor],
    database_labels: Mapping[str, torch.Tensor],
    config: EvalConfig,
) -> dict:
    """Metrics of both directions from already computed codes.

    ``codes[m]`` ``[Q_m, K]`` / ``labels[m]`` ``[Q_m, L]`` are the queries of modality ``m``;
    ``database_codes[m]`` / ``database_labels[m]`` the database items of modality ``m``.
    Direction ``"a->b"`` queries with modality ``a`` against the ``b`` database.
    """
    mod_a, mod_b = list(codes)
    directions = {}
    for query, target in ((mod_a, mod_b), (mod_b, mod_a)):
        directions[f"{query}->{target}"] = retrieval_metrics(
            codes[query],
            database_codes[target],
            labels[query],
            database_labels[target],
            map_at_k=tuple(config.map_at_k),
            map_at_r=config.map_at_r or None,
            precision_at=tuple(config.precision_at),
        )
    first, second = directions.values()
    mean = {
        key: (first[key] + second[key]) / 2
        for key in first
        if isinstance(first[key], float) and key in second and isinstance(second[key], float)
    }
    return {
        "directions": directions,
        "mean": mean,
        "mean_map": mean["map"],
        "mean_map_tie": mean["map_tie"],
        "ties": TIES_NOTE,
    }


def evaluate_model(
    model: FGMD,
    queries: Mapping[str, ModalityImages],
    database: Mapping[str, ModalityImages],
    config: EvalConfig,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    progress: bool = False,
    context: DistContext | None = None,
) -> dict:
    """Encode ``queries[m]`` and ``database[m]`` for both modalities and score both directions.

    A set passed as both query and database set (e.g. the validation pairs) is encoded once.
    ``device`` defaults to the device of the model's parameters.
    """
    encoded: dict[int, torch.Tensor] = {}

    def codes_of(images: ModalityImages) -> torch.Tensor:
        if id(images) not in encoded:
            encoded[id(images)] = encode_images(
                model, images, config.batch_size, device, num_workers, progress, context
            )
        return encoded[id(images)]

    return cross_modal_metrics(
        {m: codes_of(s) for m, s in queries.items()},
        {m: s.labels for m, s in queries.items()},
        {m: codes_of(s) for m, s in database.items()},
        {m: s.labels for m, s in database.items()},
        config,
    )


_NAMES = {"map": "mAP", "precision": "P", "recall": "R"}


def metric_title(key: str) -> str:
    """A table heading for a metric key: ``map`` -> ``mAP (ties by index)``, ``map_tie@100`` ->
    ``mAP@100 (tie-aware)``, ``precision@10`` -> ``P@10 (ties by index)``."""
    name, _, cutoff = key.partition("@")
    tie = name.endswith("_tie")
    base = _NAMES.get(name.removesuffix("_tie"), name) + (f"@{cutoff}" if cutoff else "")
    return base + (" (tie-aware)" if tie else " (ties by index)")


def _cutoff(key: str) -> int:
    cutoff = key.partition("@")[2]
    return int(cutoff) if cutoff.isdigit() else 0


def metrics_table(metrics: dict, recall: bool = False) -> str:
    """Both directions and their mean, one row each, from an evaluation result (markdown).

    Columns: mAP, mAP@k, MAP@R, P@k (and R@k with ``recall``), each index-broken measure
    followed by its tie-aware twin; a metric missing from a result (older metrics.json) is a dash.
    """
    first = next(iter(metrics["directions"].values()))
    families = ["map", "precision"] + (["recall"] if recall else [])
    keys = []
    for family in families:
        plain = sorted((k for k in first if k == family or k.startswith(family + "@")), key=_cutoff)
        for key in plain:
            keys.append(key)
            tie = key.replace(family, family + "_tie", 1)
            if family != "recall" and key != "map@R":
                keys.append(tie)
    rows = [
        [name.replace("->", " → "), *(values.get(k) for k in keys)] for name, values in metrics["directions"].items()
    ]
    rows.append(["mean", *(metrics["mean"].get(k) for k in keys)])
    return render_table(["direction", *map(metric_title, keys)], rows)
