"""Parity of exported ONNX encoders with PyTorch, on real images.

For each exported branch, the same preprocessed images go through the PyTorch model (eager,
``torch.fft`` FDFSP: the float32 model as trained) and through onnxruntime (the exported file
at its precision: fp32, fp16 or int8). Reported:

* ``max_abs_diff`` — largest absolute difference of the real-valued codes;
* ``flip_rate`` — fraction of hash bits (sign, 0 -> +1) that differ (the bit agreement is
  ``1 - flip_rate``); the check fails when it exceeds ``budget`` for any branch (default by
  precision, ``DEFAULT_BUDGETS``: 0.1% of the bits for fp32, where only rounding may differ;
  looser for fp16/int8, whose real test is the mAP below);
* ``code_change_rate`` — fraction of images whose hash code changed in at least one bit;
* mAP in both directions (labelled splits, both branches exported) — full-ranking Hamming mAP
  (``evaluation.metrics.retrieval_metrics``) of the PyTorch codes and of the ONNX codes on the
  same queries and database; the check fails when the ONNX mAP of a direction is more than
  ``max_map_drop`` (default 0.01 = one point) below PyTorch's;
* top-k overlap — for each ranking direction, the mean over queries of
  ``|top-k(PyTorch codes) ∩ top-k(ONNX codes)| / k``, both rankings exact Hamming top-k with
  ties broken by database position. With a dataset: queries = the query split of one
  modality, database = the database split of the other (both directions). With a folder:
  the folder's images rank the folder (one branch).

The figures of each branch (and the mAP of every direction) are also written into the
branch's sidecar ``<m>.json`` under ``"check"``, so the file travels with its measured cost.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from fgmd.codes import pack_codes
from fgmd.data.preprocess import Preprocessor
from fgmd.evaluation.metrics import retrieval_metrics
from fgmd.models import load_run
from fgmd.retrieval.encode_archive import ArchiveSource, SourceImages, collate_images, folder_source, split_source
from fgmd.retrieval.search import search_topk
from fgmd.tables import render_table

from .onnx import INPUT_NAME, write_json_atomic

__all__ = ["BranchParity", "ParityReport", "check_onnx"]

DEFAULT_BUDGETS = {"fp32": 1e-3, "fp16": 1e-2, "int8": 5e-2}
DEFAULT_MAX_MAP_DROP = 0.01


@dataclass
class BranchParity:
    modality: str
    images: int
    bits_compared: int
    bits_flipped: int
    flip_rate: float
    max_abs_diff: float
    images_with_flips: int
    precision: str = "fp32"

    @property
    def bit_agreement(self) -> float:
        return 1.0 - self.flip_rate

    @property
    def code_change_rate(self) -> float:
        return self.images_with_flips / self.images if self.images else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "bit_agreement": self.bit_agreement, "code_change_rate": self.code_change_rate}


@dataclass
class ParityReport:
    budget: float
    branches: dict[str, BranchParity] = field(default_factory=dict)
    topk_overlap: dict[str, float] = field(default_factory=dict)  # direction -> mean overlap
    k: int = 10
    data: str = ""
    # direction -> {"pytorch": mAP of the PyTorch codes, "onnx": mAP of the ONNX codes}
    map: dict[str, dict[str, float]] = field(default_factory=dict)
    max_map_drop: float = DEFAULT_MAX_MAP_DROP
    unchecked: list[str] = field(default_factory=list)  # exported branches that were not compared

    @property
    def passed(self) -> bool:
        flips_ok = all(b.flip_rate <= self.budget for b in self.branches.values())
        return flips_ok and all(m["pytorch"] - m["onnx"] <= self.max_map_drop for m in self.map.values())

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "budget": self.budget,
            "max_map_drop": self.max_map_drop,
            "k": self.k,
            "data": self.data,
            "branches": {m: b.to_dict() for m, b in self.branches.items()},
            "topk_overlap": self.topk_overlap,
            "map": self.map,
            "unchecked": self.unchecked,
        }


def _session(path: Path, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@torch.no_grad()
def _encode_both(encoder, session, preprocess, source: ArchiveSource, batch_size: int, num_workers: int):
    """Real-valued codes ``[N, K]`` of every image of ``source`` from PyTorch and from ONNX."""
    loader = DataLoader(
        SourceImages(source, preprocess, range(len(source))),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_images,
    )
    torch_codes, onnx_codes = [], []
    for batch in loader:
        if batch["errors"]:
            from fgmd.data.io import ImageReadError

            _, path, reason = batch["errors"][0]
            raise ImageReadError(path, reason)
        images = batch["images"]
        torch_codes.append(encoder.encode(images).float().numpy())
        onnx_codes.append(session.run(None, {INPUT_NAME: images.numpy()})[0])
    return np.concatenate(torch_codes), np.concatenate(onnx_codes)


def _topk_overlap(query_a, db_a, query_b, db_b, k: int) -> float:
    """Mean ``|top-k(a) ∩ top-k(b)| / k'`` over queries (``a``: PyTorch codes, ``b``: ONNX codes)."""
    top_a = search_topk(pack_codes(query_a), pack_codes(db_a), k, "numpy").indices
    top_b = search_topk(pack_codes(query_b), pack_codes(db_b), k, "numpy").indices
    width = top_a.shape[1]
    return float(np.mean([len(set(a) & set(b)) / width for a, b in zip(top_a, top_b)]))


def check_onnx(
    checkpoint: str | os.PathLike,
    onnx_dir: str | os.PathLike,
    *,
    folder: str | os.PathLike | None = None,
    folder_modality: str | None = None,
    recursive: bool = False,
    limit: int | None = None,
    k: int = 10,
    budget: float | None = None,
    max_map_drop: float = DEFAULT_MAX_MAP_DROP,
    batch_size: int = 32,
    num_workers: int = 0,
    threads: int | None = None,
    out: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
) -> ParityReport:
    """Compare ``onnx_dir/<modality>.onnx`` with the checkpoint's PyTorch encoders (module docs).

    Images: the checkpoint config's query and database splits (every exported branch), or
    ``folder`` for the branch ``folder_modality``. ``limit`` keeps the first N images of each
    set. ``budget`` defaults to ``DEFAULT_BUDGETS`` of the files' precision. The report is
    also written as JSON to ``out`` when given, and each branch's figures into its sidecar.
    ``report.unchecked`` lists the exported branches a folder check did not compare.
    ``overrides`` (``key=value``) adjust the stored config, e.g. ``data.root=/moved/data``.
    """
    model, config, _ = load_run(checkpoint, overrides)
    onnx_dir = Path(onnx_dir)
    exported = [m for m in model.modalities if (onnx_dir / f"{m}.onnx").is_file()]
    if folder is not None:
        if folder_modality not in model.modalities:
            raise ValueError(f"give the modality of the folder's images, one of {list(model.modalities)}")
        unchecked = [m for m in exported if m != folder_modality]
        exported = [folder_modality] if folder_modality in exported else []
    else:
        unchecked = []
    if not exported:
        raise FileNotFoundError(f"no <modality>.onnx for {list(model.modalities)} in {onnx_dir}")

    def cap(source: ArchiveSource) -> ArchiveSource:
        return source.subset(range(min(limit, len(source)))) if limit else source

    metas = {m: json.loads((onnx_dir / f"{m}.json").read_text()) for m in exported}
    precisions = {meta.get("precision", "fp32") for meta in metas.values()}
    if budget is None:
        budget = max(DEFAULT_BUDGETS.get(p, DEFAULT_BUDGETS["int8"]) for p in precisions)
    report = ParityReport(budget=budget, k=k, max_map_drop=max_map_drop, unchecked=unchecked)
    codes: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    labels: dict[tuple[str, str], torch.Tensor | None] = {}
    for modality in exported:
        meta = metas[modality]
        size, resize = meta["input"]["shape"][2], meta["preprocessing"]["resize"][0]
        preprocess = Preprocessor(modality, config.data.modality_config(modality), size, resize)
        if meta.get("format_version", 1) >= 2 and meta["preprocessing"] != preprocess.spec():
            raise ValueError(
                f"{onnx_dir / (modality + '.json')}: its preprocessing differs from the checkpoint config's "
                f"({preprocess.spec()}); export again from this checkpoint"
            )
        session = _session(onnx_dir / f"{modality}.onnx", threads)
        if folder is not None:
            sets = {"folder": cap(folder_source(folder, recursive))}
            report.data = f"folder {folder}"
        else:
            data = config.data
            sets = {
                name: cap(split_source(config, name, modality))
                for name in dict.fromkeys((data.query_split, data.database_split))
            }
            report.data = f"splits {data.query_split!r} (queries) and {data.database_split!r} (database) of {data.root}"
        pt_all, onnx_all = [], []
        for name, source in sets.items():
            pair = _encode_both(model.encoder(modality), session, preprocess, source, batch_size, num_workers)
            codes[(modality, name)] = pair
            labels[(modality, name)] = source.labels
            pt_all.append(pair[0])
            onnx_all.append(pair[1])
        pt, ox = np.concatenate(pt_all), np.concatenate(onnx_all)
        flips = (pt >= 0) != (ox >= 0)
        report.branches[modality] = BranchParity(
            modality,
            len(pt),
            int(flips.size),
            int(flips.sum()),
            float(flips.mean()),
            float(np.abs(pt - ox).max()),
            int(flips.any(axis=1).sum()),
            meta.get("precision", "fp32"),
        )
    if folder is not None and folder_modality is not None:
        pt, ox = codes[(folder_modality, "folder")]
        report.topk_overlap[f"{folder_modality}->{folder_modality}"] = _topk_overlap(pt, pt, ox, ox, k)
    elif len(exported) == 2:
        query, database = config.data.query_split, config.data.database_split
        for a, b in (exported, exported[::-1]):
            qa, qo = codes[(a, query)]
            da, do = codes[(b, database)]
            report.topk_overlap[f"{a}->{b}"] = _topk_overlap(qa, da, qo, do, k)
            query_labels, db_labels = labels[(a, query)], labels[(b, database)]
            if query_labels is not None and db_labels is not None:
                scores: dict[str, float] = {}
                for name, q, d in (("pytorch", qa, da), ("onnx", qo, do)):
                    metrics = retrieval_metrics(torch.from_numpy(q), torch.from_numpy(d), query_labels, db_labels)
                    scores[name], scores[f"{name}_tie"] = float(metrics["map"]), float(metrics["map_tie"])
                report.map[f"{a}->{b}"] = scores  # "map": ties by index; "*_tie": tie-aware
    if out is not None:
        write_json_atomic(Path(out), report.to_dict())
    for modality, meta in metas.items():
        meta["check"] = {
            "data": report.data,
            "reference": "the checkpoint's float32 PyTorch model",
            **report.branches[modality].to_dict(),
            "map": report.map,
            "passed": report.passed,
        }
        write_json_atomic(onnx_dir / f"{modality}.json", meta)
    return report


def parity_table(report: ParityReport) -> str:
    """The report as two markdown tables."""
    branches = render_table(
        [
            "branch",
            "precision",
            "images",
            "bits compared",
            "bit agreement",
            "bits flipped",
            "codes changed",
            "max |Δcode|",
        ],
        [
            [
                b.modality,
                b.precision,
                b.images,
                b.bits_compared,
                f"{100 * b.bit_agreement:.4f}%",
                b.bits_flipped,
                f"{100 * b.code_change_rate:.2f}%",
                f"{b.max_abs_diff:.2e}",
            ]
            for b in report.branches.values()
        ],
    )
    directions = list(report.topk_overlap)
    overlap = render_table(
        [
            "ranking",
            f"top-{report.k} overlap (PyTorch vs ONNX)",
            "mAP PyTorch fp32 (ties by index)",
            "mAP ONNX (ties by index)",
            "Δ mAP (ties by index)",
            "mAP PyTorch fp32 (tie-aware)",
            "mAP ONNX (tie-aware)",
        ],
        [
            [direction, f"{report.topk_overlap[direction]:.4f}"]
            + (
                [
                    f"{m['pytorch']:.4f}",
                    f"{m['onnx']:.4f}",
                    f"{m['onnx'] - m['pytorch']:+.4f}",
                    f"{m['pytorch_tie']:.4f}",
                    f"{m['onnx_tie']:.4f}",
                ]
                if (m := report.map.get(direction))
                else ["-"] * 5
            )
            for direction in directions
        ],
    )
    return branches + "\n\n" + overlap
