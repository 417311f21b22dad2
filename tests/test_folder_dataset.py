import shutil

import pytest
import torch

from fgmd.config import load_config
from fgmd.data.datasets import DataFormatError, DatasetNotFoundError, PairedFolderDataset, build_dataset
from fgmd.data.transforms import build_transforms


@pytest.fixture
def copy_of(tiny_dataset, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(tiny_dataset, root)
    return root


def test_folder_dataset_samples_and_modality_views(tiny_dataset):
    config = load_config(
        None,
        [
            f"data.root={tiny_dataset}",
            "data.image_size=32",
            "data.resize=36",
            "data.modality={ms: {channels: 3}, pan: {channels: 1}}",
        ],
    )
    train = build_dataset(config.data, "train", build_transforms(config.data, train=True))
    sample = train[0]
    assert sample["image_ms"].shape == (3, 32, 32) and sample["image_pan"].shape == (1, 32, 32)
    assert sample["label"].sum() == 1 and isinstance(sample["id"], str)
    assert train.num_classes == len(train.class_names) >= 5
    query = build_dataset(config.data, "query")
    pan = query.images("pan")
    assert len(pan) == len(query) and pan[0]["image"].shape[0] == 1
    assert torch.equal(pan.labels, query.labels)


def test_paired_crops_keep_modalities_aligned(tiny_dataset):
    config = load_config(
        None,
        [
            f"data.root={tiny_dataset}",
            "data.image_size=48",
            "data.resize=64",
            "data.modality={ms: {channels: 3}, pan: {channels: 3}}",
        ],
    )
    transforms = build_transforms(config.data, train=True)
    params = transforms["ms"].sample_params()
    image = torch.rand(3, 64, 64)
    a = transforms["ms"](image, params)
    b = transforms["pan"](image, params)
    assert torch.equal(a, b)  # same image, same params -> same crop and flip


def test_missing_root_shows_expected_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="Expected layout") as info:
        PairedFolderDataset(tmp_path / "nope", "train")
    assert "pairs.csv" in str(info.value) and "nope" in str(info.value)


def test_duplicate_id_names_file_and_line(copy_of):
    csv = copy_of / "pairs.csv"
    lines = csv.read_text().splitlines()
    lines.append(lines[1])
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=rf"pairs.csv:{len(lines)}: duplicate id"):
        PairedFolderDataset(copy_of, "train")


def test_missing_image_names_the_row(copy_of):
    first_id = (copy_of / "pairs.csv").read_text().splitlines()[1].split(",")[0]
    next((copy_of / "images" / "pan").glob(f"{first_id}.*")).unlink()
    with pytest.raises(DataFormatError, match=rf"pairs.csv:2: no image for id '{first_id}'"):
        PairedFolderDataset(copy_of, "train")


def test_bad_label_and_unknown_split(copy_of):
    csv = copy_of / "pairs.csv"
    lines = csv.read_text().splitlines()
    parts = lines[3].split(",")
    parts[1] = "x"
    lines[3] = ",".join(parts)
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DataFormatError, match="pairs.csv:4: label 'x' is a class name but labels are numbers from .*pairs.csv:2 on"
    ):
        PairedFolderDataset(copy_of, "train")
    shutil.rmtree(copy_of)


def test_unknown_split_lists_the_splits(tiny_dataset):
    with pytest.raises(DataFormatError, match="no rows of split 'validation'"):
        PairedFolderDataset(tiny_dataset, "validation")


def test_folder_dataset_takes_every_extension_fgmd_index_takes(copy_of, tmp_path):
    """One list of image extensions (fgmd.data.io) for the folder format and `fgmd index --folder`."""
    from PIL import Image, features

    from fgmd.data.io import SUPPORTED_EXTENSIONS
    from fgmd.retrieval.encode_archive import folder_source

    if not features.check("webp"):
        pytest.skip("Pillow without WebP")
    assert ".webp" in SUPPORTED_EXTENSIONS
    first = sorted((copy_of / "images" / "pan").glob("*.png"))[0]
    Image.open(first).save(first.with_suffix(".webp"), lossless=True)
    first.unlink()
    config = load_config(None, [f"data.root={copy_of}", "data.modality={ms: {channels: 3}, pan: {channels: 1}}"])
    found = [
        r for s in ("train", "query", "database") for r in build_dataset(config.data, s).records if r.id == first.stem
    ]
    assert found and str(found[0].paths["pan"]).endswith(".webp")
    assert first.stem in folder_source(copy_of / "images" / "pan").ids
