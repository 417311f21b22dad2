"""Tests of the procedural MS/PAN demo dataset generator (fgmd.data.synthetic)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fgmd.data.synthetic import (
    CLASS_NAMES,
    generate_demo_dataset,
    mtf_gaussian_sigma,
    render_sample,
)

N_PER_CLASS = 40  # 240 pairs: enough for stable class-separability estimates, ~1-2 s to write


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate_demo_dataset(tmp_path_factory.mktemp("synth") / "demo", n_per_class=N_PER_CLASS, seed=0)


def _rows(root: Path) -> list[dict[str, str]]:
    with open(root / "pairs.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- layout


def test_class_names():
    assert len(CLASS_NAMES) >= 6
    assert len(set(CLASS_NAMES)) == len(CLASS_NAMES)
    assert all(re.fullmatch(r"[a-z]+", name) for name in CLASS_NAMES)


def test_layout_and_csv(dataset: Path):
    with open(dataset / "pairs.csv", encoding="utf-8") as f:
        header = f.readline()
    assert header == "id,label,class_name,split\n"
    rows = _rows(dataset)
    assert len(rows) == N_PER_CLASS * len(CLASS_NAMES)
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    for r in rows:
        assert CLASS_NAMES[int(r["label"])] == r["class_name"]
        assert re.fullmatch(rf"{r['class_name']}_\d+", r["id"])
        assert r["split"] in {"train", "query", "database"}
    for modality in ("ms", "pan"):
        files = {p.stem for p in (dataset / "images" / modality).iterdir()}
        assert files == set(ids)
        assert all(p.suffix == ".png" for p in (dataset / "images" / modality).iterdir())
    assert {p.name for p in dataset.iterdir()} == {"images", "masks", "pairs.csv", "README.md"}
    assert {p.stem for p in (dataset / "masks").iterdir()} == files
    readme = (dataset / "README.md").read_text(encoding="utf-8")
    assert "seed=0" in readme and "generate_demo_dataset" in readme
    for name in CLASS_NAMES:
        assert name in readme


def test_split_counts_stratified(dataset: Path):
    rows = _rows(dataset)
    for name in CLASS_NAMES:
        mine = [r["split"] for r in rows if r["class_name"] == name]
        counts = {s: mine.count(s) for s in ("train", "query", "database")}
        assert counts == {"train": 20, "query": 4, "database": 16}, name


def test_custom_splits_counts(tmp_path: Path):
    root = generate_demo_dataset(
        tmp_path / "d",
        n_per_class=7,
        seed=1,
        size=32,
        ms_ratio=4,
        splits=(("a", 0.6), ("b", 0.3), ("c", 0.1)),
    )
    rows = _rows(root)
    for name in CLASS_NAMES:
        counts = [sum(1 for r in rows if r["class_name"] == name and r["split"] == s) for s in "abc"]
        assert counts == [4, 2, 1]  # largest remainder: 4.2, 2.1, 0.7 -> 4, 2, 1


def test_image_sizes_and_modes(dataset: Path):
    for sample_id in ("tanks_0", "ship_3", f"buildings_{N_PER_CLASS - 1}"):
        with Image.open(dataset / "images" / "ms" / f"{sample_id}.png") as ms:
            assert ms.mode == "RGB" and ms.size == (16, 16)
        with Image.open(dataset / "images" / "pan" / f"{sample_id}.png") as pan:
            assert pan.mode == "L" and pan.size == (64, 64)


def test_other_geometry():
    s = render_sample(3, 0, seed=5, size=48, ms_ratio=3)
    assert s.ms.shape == (16, 16, 3) and s.ms.dtype == np.uint8
    assert s.pan.shape == (48, 48) and s.pan.dtype == np.uint8
    assert s.reference.shape == (48, 48, 3)


def test_mtf_sigma_matches_eurosat_readme():
    assert mtf_gaussian_sigma(4) == pytest.approx(1.976, abs=1e-3)


# --------------------------------------------------------------------------- determinism


def test_deterministic_bytes(tmp_path: Path):
    a = generate_demo_dataset(tmp_path / "a", n_per_class=3, seed=7)
    b = generate_demo_dataset(tmp_path / "b", n_per_class=3, seed=7)
    files_a, files_b = _tree_bytes(a), _tree_bytes(b)
    assert files_a.keys() == files_b.keys()
    assert files_a == files_b
    c = generate_demo_dataset(tmp_path / "c", n_per_class=3, seed=8)
    assert _tree_bytes(c)["images/pan/ship_0.png"] != files_a["images/pan/ship_0.png"]


def test_sample_independent_of_n_per_class():
    a = render_sample(1, 2, seed=4)
    b = render_sample(1, 2, seed=4)
    assert np.array_equal(a.ms, b.ms) and np.array_equal(a.pan, b.pan)
    assert not np.array_equal(render_sample(1, 3, seed=4).pan, a.pan)


def test_ms_and_pan_show_the_same_scene():
    for label in range(len(CLASS_NAMES)):
        s = render_sample(label, 0, seed=2)
        ms_luma = s.ms.astype(float) @ np.array([0.299, 0.587, 0.114])
        pan_blocks = s.pan.astype(float).reshape(16, 4, 16, 4).mean(axis=(1, 3))
        corr = np.corrcoef(ms_luma.ravel(), pan_blocks.ravel())[0, 1]
        assert corr > 0.7, (CLASS_NAMES[label], corr)
        clean_pan = np.rint(s.reference @ [0.299, 0.587, 0.114] * 255)
        assert not np.array_equal(s.pan, clean_pan)  # PAN has its own noise


# --------------------------------------------------------------------------- overwrite


def test_refuses_non_empty_folder(tmp_path: Path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=re.escape(str(out))):
        generate_demo_dataset(out, n_per_class=2)
    assert (out / "notes.txt").read_text() == "keep me"
    assert not (out / "pairs.csv").exists()


def test_overwrite_replaces_dataset_files(tmp_path: Path):
    out = generate_demo_dataset(tmp_path / "d", n_per_class=3, seed=0)
    (out / "notes.txt").write_text("keep me")
    generate_demo_dataset(out, n_per_class=2, seed=0, overwrite=True)
    ids = {r["id"] for r in _rows(out)}
    assert len(ids) == 2 * len(CLASS_NAMES)
    assert {p.stem for p in (out / "images" / "pan").iterdir()} == ids  # stale *_2 ids are gone
    assert (out / "notes.txt").read_text() == "keep me"


def test_empty_existing_folder_is_fine(tmp_path: Path):
    generate_demo_dataset(tmp_path, n_per_class=1)
    assert len(_rows(tmp_path)) == len(CLASS_NAMES)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 62},  # not a multiple of ms_ratio
        {"size": 8, "ms_ratio": 1},
        {"n_per_class": 0},
        {"seed": -1},
        {"splits": (("train", 0.5), ("query", 0.4))},
        {"splits": (("train", 0.5), ("train", 0.5))},
    ],
)
def test_invalid_arguments(tmp_path: Path, kwargs):
    with pytest.raises(ValueError):
        generate_demo_dataset(tmp_path / "x", **kwargs)


# --------------------------------------------------------------------------- class information


def _nearest_centroid_accuracy(features: np.ndarray, labels: np.ndarray, train: np.ndarray) -> float:
    mu, sd = features[train].mean(0), features[train].std(0) + 1e-9
    f = (features - mu) / sd
    centroids = np.stack([f[train & (labels == c)].mean(0) for c in range(len(CLASS_NAMES))])
    test = ~train
    pred = np.argmin(((f[test][:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    return float((pred == labels[test]).mean())


def _structure_features(gray: np.ndarray) -> np.ndarray:
    """Shift-, rotation-, contrast- and polarity-invariant structure descriptor of a grey image.

    Radially averaged log power spectrum, sorted angular power distribution, and a
    gradient-orientation histogram rolled to its peak plus a gradient-magnitude histogram.
    """
    x = gray.astype(np.float64)
    x = (x - x.mean()) / (x.std() + 1e-6)
    h, w = x.shape
    power = np.abs(np.fft.fftshift(np.fft.fft2(x))) ** 2
    yy, xx = np.mgrid[:h, :w] - h // 2
    radius = np.hypot(yy, xx)
    rbin = np.minimum(radius.astype(int), h // 2)
    radial = np.bincount(rbin.ravel(), power.ravel(), minlength=h // 2 + 1)
    radial = radial / np.bincount(rbin.ravel(), minlength=h // 2 + 1)
    ring = (radius > 1) & (radius < h // 2)
    angle = np.mod(np.arctan2(yy, xx), np.pi)
    abin = np.minimum((angle[ring] / np.pi * 12).astype(int), 11)
    angular = np.bincount(abin, power[ring], minlength=12)
    angular = np.sort(np.log(angular / angular.sum()))[::-1]
    gy, gx = np.gradient(x)
    mag, ori = np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), np.pi)
    hog = np.bincount(np.minimum((ori / np.pi * 12).astype(int), 11).ravel(), mag.ravel(), minlength=12)
    hog = np.roll(hog / (hog.sum() + 1e-9), -int(np.argmax(hog)))
    mag_hist = np.histogram(mag, bins=8, range=(0, 2))[0] / mag.size
    return np.concatenate([np.log(radial[1:] + 1e-6), angular, hog, mag_hist])


def test_colour_carries_no_class_but_structure_does(dataset: Path):
    rows = _rows(dataset)
    labels = np.array([int(r["label"]) for r in rows])
    index = np.array([int(r["id"].rsplit("_", 1)[1]) for r in rows])
    train = index % 2 == 0  # half of every class fits the centroids, the other half is scored

    def load(modality: str, sample_id: str) -> np.ndarray:
        with Image.open(dataset / "images" / modality / f"{sample_id}.png") as img:
            return np.asarray(img, dtype=np.float64)

    ms = [load("ms", r["id"]) for r in rows]
    pan = [load("pan", r["id"]) for r in rows]

    chance = 1.0 / len(CLASS_NAMES)
    mean_rgb = np.stack([m.reshape(-1, 3).mean(0) for m in ms])
    acc_colour = _nearest_centroid_accuracy(mean_rgb, labels, train)
    assert acc_colour < 0.45, acc_colour
    pan_mean = np.stack([[p.mean()] for p in pan])
    assert _nearest_centroid_accuracy(pan_mean, labels, train) < 0.45

    pan_small = [p.reshape(32, 2, 32, 2).mean(axis=(1, 3)) for p in pan]
    acc_pan = _nearest_centroid_accuracy(np.stack([_structure_features(p) for p in pan_small]), labels, train)
    ms_luma = [m @ np.array([0.299, 0.587, 0.114]) for m in ms]
    acc_ms = _nearest_centroid_accuracy(np.stack([_structure_features(m) for m in ms_luma]), labels, train)
    assert acc_pan > 0.7 and acc_pan > acc_colour + 0.3, (acc_pan, acc_colour, chance)
    assert acc_ms > 0.7, acc_ms  # the shapes survive the 16x16 MS view


def test_target_mask_marks_the_target():
    """The mask is the target's coverage: it splits every scene into target and background, and
    the reference's luminance differs between the two (target/background pairs have contrast)."""
    luma = np.array([0.299, 0.587, 0.114])
    for label in range(len(CLASS_NAMES)):
        s = render_sample(label, 1, seed=3, size=64)
        mask = s.target_mask
        assert mask.shape == (64, 64) and mask.min() >= 0.0 and mask.max() <= 1.0
        inside, outside = mask > 0.99, mask < 0.01
        assert 0.02 < inside.mean() < 0.9, (CLASS_NAMES[label], inside.mean())
        assert outside.mean() > 0.05
        gap = abs((s.reference[inside] @ luma).mean() - (s.reference[outside] @ luma).mean())
        assert gap > 0.05, (CLASS_NAMES[label], gap)
    assert np.array_equal(render_sample(1, 2, seed=4).target_mask, render_sample(1, 2, seed=4).target_mask)


def test_mask_files_hold_the_target_mask(tmp_path: Path):
    dataset = generate_demo_dataset(tmp_path / "d", n_per_class=1, seed=6)
    with Image.open(dataset / "masks" / "ship_0.png") as image:
        assert image.mode == "L" and image.size == (64, 64)
        stored = np.asarray(image).astype(float) / 255
    assert np.abs(stored - render_sample(1, 0, seed=6).target_mask).max() <= 0.5 / 255 + 1e-9
