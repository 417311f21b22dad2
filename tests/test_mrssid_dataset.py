"""MRSSID (FSISR layout): the real split files (when the shared folder is present) and generated trees."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from datagen import write_image
from fgmd.config import load_config
from fgmd.data.datasets import DataFormatError, DatasetNotFoundError, MRSSIDDataset, build_dataset
from fgmd.data.transforms import build_transforms
from fgmd.data.validation import check_data

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "mrssid.yaml"


def shared_dir() -> Path | None:
    """The project's ``shared`` folder beside the repository (also beside the main checkout of a worktree)."""
    candidates = [REPO.parent / "shared"]
    git = REPO / ".git"
    if git.is_file():  # a git worktree: ".git" names <main>/.git/worktrees/<name>
        text = git.read_text().strip()
        if text.startswith("gitdir:"):
            candidates.append(Path(text.split(":", 1)[1].strip()).parents[2].parent / "shared")
    return next((c for c in candidates if (c / "reference" / "mrssid_splits").is_dir()), None)


SHARED = shared_dir()
SPLITS = SHARED / "reference" / "mrssid_splits" if SHARED else None


def make_mrssid(
    root: Path, lists: dict[str, list[str]], size: int = 4, prefixes=("MS_", "FC_"), suffix=".jpg", skip_images=()
) -> Path:
    """Write ``<split>.txt`` files with ``lists[split]`` as lines and one image per id and prefix."""
    root.mkdir(parents=True, exist_ok=True)
    ids = []
    for split, lines in lists.items():
        (root / f"{split}.txt").write_text("".join(line + "\n" for line in lines))
        ids += [line.split()[0] for line in lines if line.split()]
    for i, sample_id in enumerate(dict.fromkeys(ids)):
        for j, prefix in enumerate(prefixes):
            name = f"{prefix}{sample_id}{suffix}"
            if name not in skip_images:
                write_image(root / "images" / name, seed=2 * i + j, size=size, bands=3 if j == 0 else 1)
    return root


def mrssid_config(root, *extra):
    return load_config(CONFIG, [f"data.root={root}", "data.image_size=16", "data.resize=20", *extra])


@pytest.mark.skipif(
    SPLITS is None, reason="the shared folder with reference/mrssid_splits is not beside this repository"
)
def test_real_mrssid_split_files(tmp_path):
    root = tmp_path / "MRSSID"
    root.mkdir()
    for name in ("train", "database", "test"):
        shutil.copy(SPLITS / f"{name}.txt", root / f"{name}.txt")
    images = root / "images"
    images.mkdir()
    ids = [line.split()[0] for line in (SPLITS / "all.txt").read_text().splitlines() if line.strip()]
    tiny = tmp_path / "tiny.jpg"
    write_image(tiny, seed=0, size=4)
    for sample_id in ids:  # hard links: the pixels do not matter for the split checks
        for prefix in ("MS_", "FC_"):
            (images / f"{prefix}{sample_id}.jpg").hardlink_to(tiny)

    report = check_data(mrssid_config(root), decode=False)
    assert report.ok, [str(i) for i in report.errors]
    splits = report.splits
    assert (splits["train"].pairs, splits["test"].pairs, splits["database"].pairs) == (2132, 500, 2132)
    assert len(set(ids)) == 2632 and len(report.class_names) == 6
    assert splits["train"].class_counts == [86, 143, 213, 745, 314, 631]
    assert splits["test"].class_counts == [13, 36, 48, 174, 73, 156]
    assert splits["database"].class_counts == splits["train"].class_counts
    leak = [w.message for w in report.warnings if "group(s) occur in both split 'train' and split 'test'" in w.message]
    assert len(leak) == 1 and leak[0].startswith("241 group(s)")
    assert any("holds exactly the ids of split 'train'" in n.message for n in report.notes)

    config = mrssid_config(root)
    train = build_dataset(config.data, "train")
    database = build_dataset(config.data, "database")
    assert [r.id for r in train.records] == [r.id for r in database.records]  # train = database
    assert torch.equal(train.labels, database.labels)


def test_generated_tree_samples_and_custom_names(tmp_path):
    lines = {
        "train": ["1_0_0_0 1 0 0", "2_0_0_1 0 1 0", "3_0_0_2 0 0 1", "4_0_0_1 010"],  # digits may be one field
        "database": ["1_0_0_0 1 0 0", "2_0_0_1 0 1 0", "3_0_0_2 0 0 1"],
        "test": ["9_0_0_0 1 0 0", "8_0_0_2 0 0 1"],
    }
    root = make_mrssid(tmp_path / "m", lines, prefixes=("MUL-", "PAN-"), suffix=".png")
    config = mrssid_config(
        root,
        "data.modalities=[mul, pan]",
        "data.mrssid.prefixes={mul: MUL-, pan: PAN-}",
        "data.mrssid.suffix=.png",
        "data.modality={mul: {channels: 3}, pan: {channels: 1}}",
        "data.class_names=[bulk, cargo, tanker]",
    )
    train = build_dataset(config.data, "train", build_transforms(config.data, train=True))
    assert len(train) == 4 and train.class_names == ["bulk", "cargo", "tanker"]
    sample = train[3]
    assert sample["id"] == "4_0_0_1" and sample["label"].tolist() == [0, 1, 0]
    assert sample["image_mul"].shape == (3, 16, 16) and sample["image_pan"].shape == (1, 16, 16)
    test = MRSSIDDataset(root, "test", ("mul", "pan"), options=config.data.mrssid)
    assert [r.id for r in test.pairs] == ["9_0_0_0", "8_0_0_2"] and test.records[0].group == "9"
    report = check_data(config)
    assert report.ok and report.images["mul"].readable == 6


def test_errors_name_file_and_line(tmp_path):
    lines = {
        "train": ["1_a 1 0 0", "2_a 0 1 0 0", "3_a 0 2 0", "1_a 1 0 0", "5_a 0 0 0", "6_a", "7_a 0 0 1"],
        "database": ["1_a 1 0 0"],
        "test": ["8_a 0 1 0"],
    }
    root = make_mrssid(tmp_path / "m", lines, skip_images=("FC_7_a.jpg",))
    report = check_data(mrssid_config(root), decode=False)
    errors = {(Path(i.location).name, i.message.split(" ")[0]) for i in report.errors}
    messages = [str(i) for i in report.errors]
    assert any("train.txt:2: 4 label digits but 3 classes" in m for m in messages)  # label out of range
    assert any("train.txt:3: expected '<id> <0/1 digit per class>'" in m for m in messages)
    assert any("train.txt:4: duplicate id '1_a' (first on line 1)" in m for m in messages)
    assert any("train.txt:5: id '5_a' has no class" in m for m in messages)
    assert any("train.txt:6: expected" in m for m in messages)
    assert any("train.txt:7: no pan image" in m and "FC_7_a.jpg" in m for m in messages)
    assert any("modality count mismatch (2 ms, 1 pan images)" in m for m in messages)  # 1_a, 7_a (ms only)
    assert len(errors) >= 7
    with pytest.raises(DataFormatError, match=r"train.txt:2: 4 label digits"):
        build_dataset(mrssid_config(root).data, "train")


def test_missing_root_and_split_file_show_the_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="Expected layout") as info:
        MRSSIDDataset(tmp_path / "nope", "train")
    assert "MS_<id>.jpg" in str(info.value) and "FC_<id>.jpg" in str(info.value)
    root = make_mrssid(tmp_path / "m", {"train": ["1_a 1 0"]})
    report = check_data(mrssid_config(root), decode=False)
    assert not report.ok and "test.txt not found" in report.errors[0].message
    assert "Expected layout" in report.errors[0].message


def test_same_id_in_train_and_test_is_a_leakage_warning(tmp_path):
    lines = {"train": ["1_a 1 0", "2_a 0 1"], "database": ["1_a 1 0", "2_a 0 1"], "test": ["1_a 1 0", "3_b 0 1"]}
    report = check_data(mrssid_config(make_mrssid(tmp_path / "m", lines)))
    assert report.ok
    warnings = [str(w) for w in report.warnings]
    assert any("1 id(s) occur in both split 'train' and split 'test' (leakage), e.g. 1_a" in w for w in warnings)
    assert any("test.txt:1" in w for w in warnings)
