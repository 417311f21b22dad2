"""The generic CSV format, and multi-label relevance end to end (folder and CSV formats)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from torch import nn

from datagen import write_image
from fgmd.config import EvalConfig, load_config
from fgmd.data.datasets import CSVDataset, DataFormatError, build_dataset
from fgmd.data.validation import check_data
from fgmd.evaluation.evaluate import evaluate_model

HEADER = ["id", "optical_path", "sar_path", "label", "class_name", "split"]
MODS = "data.modalities=[optical, sar]"
CHANNELS = "data.modality={optical: {channels: 3}, sar: {channels: 1}}"


def write_csv(root: Path, rows, header=HEADER, name="pairs.csv") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with (root / name).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return root


def csv_config(root, *extra):
    return load_config(
        None, ["data.format=csv", f"data.root={root}", MODS, CHANNELS, "data.image_size=8", "data.resize=8", *extra]
    )


def make_csv(root: Path) -> Path:
    rows = []
    for i in range(6):
        split = ["train", "train", "train", "query", "query", "database"][i]
        opt = write_image(root / "img" / "opt" / f"s{i}.png", seed=i, size=8, bands=3)
        sar = write_image(root / "img" / "sar" / f"s{i}.tif", seed=10 + i, size=12, bands=1) if i != 4 else None
        labels = ["0", "1", "0;1", "1", "0", "0;1"][i]
        names = {"0": "ship", "1": "harbour", "0;1": "ship;harbour"}[labels]
        rows.append(
            [
                f"s{i}",
                opt.relative_to(root).as_posix(),
                sar.relative_to(root).as_posix() if sar else "",
                labels,
                names,
                split,
            ]
        )
    return write_csv(root, rows)


def test_csv_paths_missing_modality_and_multi_label(tmp_path):
    root = make_csv(tmp_path / "d")
    config = csv_config(root)
    train = build_dataset(config.data, "train")
    assert train.class_names == ["ship", "harbour"] and len(train) == 3
    assert train.labels.tolist() == [[1, 0], [0, 1], [1, 1]]
    sample = train[2]
    assert sample["image_optical"].shape == (3, 8, 8) and sample["image_sar"].shape == (1, 12, 12)
    query = CSVDataset(root, "query", ("optical", "sar"))
    assert len(query.pairs) == 1 and len(query.records) == 2  # s4 has no sar image: a query of optical only
    assert query.images("optical").ids == ["s3", "s4"] and query.images("sar").ids == ["s3"]
    report = check_data(config)
    assert report.splits["query"].images == {"optical": 2, "sar": 1}
    # s2 is labelled with both classes, so every training pair shares a label with it:
    # training could mine no negative for it, and the check says so before any training
    [error] = report.errors
    assert "'s2'" in str(error) and "no negative" in str(error) and "pairs.csv:4" in str(error)


def test_csv_errors_name_file_and_line(tmp_path):
    root = make_csv(tmp_path / "d")
    rows = list(csv.reader((root / "pairs.csv").open()))[1:]
    rows[1][2] = "img/sar/nothing.tif"  # line 3: missing file
    rows[2][1] = rows[2][2] = ""  # line 4: no image at all
    rows[3][3] = "7"  # line 5: label out of range (class_names pinned below)
    rows[3][4] = "x"
    rows.append(["s0", rows[0][1], "", "0", "ship", "train"])  # line 8: duplicate id
    write_csv(root, rows)
    report = check_data(csv_config(root, "data.class_names=[ship, harbour]"), decode=False)
    text = "\n".join(str(e) for e in report.errors)
    csv_path = root / "pairs.csv"
    assert f"{csv_path}:3: sar image {root / 'img/sar/nothing.tif'} not found" in text
    assert f"{csv_path}:4: id 's2' has no image" in text
    assert f"{csv_path}:5: label 7 out of range: data.class_names has 2 classes" in text
    assert f"{csv_path}:8: duplicate id 's0' (first on line 2)" in text
    with pytest.raises(DataFormatError, match=r"pairs.csv:3: sar image"):
        build_dataset(csv_config(root).data, "train")
    write_csv(root, rows, header=["id", "optical", "sar_path", "label", "split"])
    report = check_data(csv_config(root), decode=False)
    assert "pairs.csv:1: missing column(s) ['optical_path']" in str(report.errors[0])


class LookupEncoder(nn.Module):
    """A stand-in for FGMD: the code of an image is looked up from its (constant) grey value."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table
        self.bits = table.shape[1]
        self.anchor = nn.Parameter(torch.zeros(1))

    def encode(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        index = (x.flatten(1).mean(1) * 255).round().long()
        return self.table[index]


def brute_force_map(q_codes, q_labels, d_codes, d_labels):
    aps = []
    for qc, ql in zip(q_codes, q_labels):
        dist = [(int((torch.sign(qc) != torch.sign(dc)).sum()), j) for j, dc in enumerate(d_codes)]
        order = [j for _, j in sorted(dist)]  # ties by database index
        rel = [bool((ql * d_labels[j]).sum() > 0) for j in order]
        hits, total = 0, 0.0
        for rank, r in enumerate(rel, start=1):
            if r:
                hits += 1
                total += hits / rank
        aps.append(total / hits if hits else 0.0)
    return sum(aps) / len(aps)


@pytest.mark.parametrize("fmt", ["folder", "csv"])
def test_multi_label_relevance_end_to_end(tmp_path, fmt):
    labels = ["0", "0;1", "1", "2", "1;2", "0;2", "1", "2;0"]
    names = {"0": "a", "1": "b", "2": "c"}
    rows = []
    for i, label in enumerate(labels):
        split = "query" if i < 3 else "database"
        cls = ";".join(names[part] for part in label.split(";"))
        for modality, bands in (("optical", 3), ("sar", 1)):
            write_image(tmp_path / "images" / modality / f"x{i}.png", seed=0, size=4, bands=bands, value=i + 1)
        if fmt == "csv":
            rows.append([f"x{i}", f"images/optical/x{i}.png", f"images/sar/x{i}.png", label, cls, split])
        else:
            rows.append([f"x{i}", label, cls, split])
    write_csv(tmp_path, rows, HEADER if fmt == "csv" else ["id", "label", "class_name", "split"])
    config = csv_config(
        tmp_path,
        f"data.format={fmt}",
        "data.resize=4",
        "data.image_size=4",
        "data.modality={optical: {channels: 3, mean: [0, 0, 0], std: [1, 1, 1]}, sar: {channels: 1, mean: [0], std: [1]}}",
    )
    from fgmd.data.transforms import build_transforms

    transforms = build_transforms(config.data, train=False)
    query, database = build_dataset(config.data, "query"), build_dataset(config.data, "database")
    assert query.labels[1].tolist() == [1, 1, 0]
    table = torch.randn(16, 8, generator=torch.Generator().manual_seed(3))
    model = LookupEncoder(table)
    queries = {m: query.images(m, transforms[m]) for m in ("optical", "sar")}
    db = {m: database.images(m, transforms[m]) for m in ("optical", "sar")}
    eval_config = EvalConfig(map_at_k=[3], precision_at=[5], batch_size=4)
    metrics = evaluate_model(model, queries, db, eval_config)
    q_codes, d_codes = table[1:4], table[4:9]
    expected = brute_force_map(q_codes, query.labels, d_codes, database.labels)
    assert metrics["directions"]["optical->sar"]["map"] == pytest.approx(expected)
    # precision over the whole database (k = 5) counts the relevant items: sharing any label,
    # the queries {a}, {a,b}, {b} have 2, 4 and 2 relevant items (first label only: 2, 2, 2)
    assert metrics["directions"]["optical->sar"]["precision@5"] == pytest.approx(8 / 15)
    # sar queries against the optical database: both modalities of an object share a code here
    assert metrics["directions"]["sar->optical"]["map"] == pytest.approx(expected)
