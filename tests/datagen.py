"""Tiny generated dataset trees for the dataset-format tests (no real data in the repo)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, seed: int, size: int = 8, bands: int = 3, value: int | None = None) -> Path:
    """A small image with content determined by ``seed`` (or constant ``value``); format from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size, size, bands) if bands > 1 else (size, size)
    array = np.full(shape, value, np.uint8) if value is not None else rng.integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(array).save(path)
    return path


def write_folder_dataset(root: Path, rows: list[tuple[str, str, str, str]], modalities=("ms", "pan")) -> Path:
    """Folder layout: ``rows`` of ``(id, label, class_name, split)``; ms 3 bands 8x8, pan 1 band 16x16."""
    for i, (sample_id, *_rest) in enumerate(rows):
        write_image(root / "images" / modalities[0] / f"{sample_id}.png", seed=2 * i, size=8, bands=3)
        write_image(root / "images" / modalities[1] / f"{sample_id}.png", seed=2 * i + 1, size=16, bands=1)
    with (root / "pairs.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label", "class_name", "split"])
        writer.writerows(rows)
    return root


def simple_rows(per_class: int = 3, classes=("a", "b", "c"), splits=("train", "query", "database")) -> list:
    rows = []
    for split in splits:
        for label, name in enumerate(classes):
            for n in range(per_class):
                rows.append((f"{split}_{name}_{n}", str(label), name, split))
    return rows
