"""VAIS: ``fgmd prepare vais`` from a generated annotations.txt, the prepared lists, IR options."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datagen import write_image
from fgmd.cli.main import main as cli_main
from fgmd.config import ConfigError, load_config
from fgmd.data.datasets import DatasetNotFoundError, VAISDataset, build_dataset
from fgmd.data.datasets.vais import BASIC_CLASSES, prepare_vais
from fgmd.data.io import ImageReadError
from fgmd.data.issues import DataCheckError
from fgmd.data.validation import check_data

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "vais.yaml"

# visible ir fine basic ship is_train is_night
LINES = [
    "vis/v01.png ir/i01.png bulk-carrier cargo 1 1 0",
    "vis/v02.png ir/i02.png sailboat sailing 2 1 0",
    "vis/v03.png null ferry passenger 3 1 0",  # visible only (train): database item, not a pair
    "null ir/i04.png tugboat tug 4 1 1",  # IR only, night
    "vis/v05.png ir/i05.png small-boat small 5 1 1",
    "vis/v06.png ir/i06.png patrol medium-other 6 1 0",
    "vis/v07.png ir/i07.png bulk-carrier cargo 7 0 0",  # test pairs
    "vis/v08.png ir/i08.png sailboat sailing 8 0 1",
    "vis/v09.png null ferry passenger 9 0 0",  # test, visible only: still a query
    "null ir/i10.png tugboat tug 4 0 1",  # test, IR only; ship 4 also in train
    "",
]


def make_vais(root: Path, lines=LINES, ir_bands: int = 1) -> Path:
    for i, line in enumerate(lines):
        fields = line.split()
        if len(fields) < 2:
            continue
        if fields[0] != "null":
            write_image(root / fields[0], seed=2 * i, size=8, bands=3)
        if fields[1] != "null":
            write_image(root / fields[1], seed=2 * i + 1, size=6, bands=ir_bands)
    (root / "annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def vais_config(root, *extra):
    return load_config(CONFIG, [f"data.root={root}", "data.image_size=8", "data.resize=10", *extra])


def test_prepare_round_trip(tmp_path):
    src = make_vais(tmp_path / "VAIS")
    out = tmp_path / "lists"
    assert cli_main(["prepare", "vais", "--root", str(src), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "database_ir.csv",
        "database_visible.csv",
        "fine_classes.txt",
        "query_ir.csv",
        "query_visible.csv",
        "train_pairs.csv",
    ]
    config = vais_config(out)
    train = build_dataset(config.data, "train")
    assert [r.id for r in train.pairs] == ["vis/v01", "vis/v02", "vis/v05", "vis/v06"]  # both modalities only
    assert train.class_names == list(BASIC_CLASSES)
    assert train[0]["label"].tolist() == [1, 0, 0, 0, 0, 0]  # cargo
    query = build_dataset(config.data, "query")
    assert len(query.pairs) == 2 and len(query.records) == 4  # 2 pairs + a visible-only + an IR-only object
    assert query.images("visible").ids == ["vis/v07", "vis/v08", "vis/v09"]
    assert query.images("ir").ids == ["vis/v07", "vis/v08", "ir/i10"]
    database = build_dataset(config.data, "database")
    assert len(database.images("visible")) == 5 and len(database.images("ir")) == 5  # paired or not
    ir = database.images("ir")[0]["image"]
    assert ir.shape == (1, 6, 6)  # single band, native size (no transform)

    fine = build_dataset(vais_config(out, "data.vais.labels=fine").data, "query")
    assert fine.class_names == sorted({line.split()[2] for line in LINES if line})
    assert fine.class_names[int(fine.labels[0].argmax())] == "bulk-carrier"

    report = check_data(config)
    assert report.ok
    assert any("1 group(s) occur in both split 'database' and split 'query'" in w.message for w in report.warnings)


def test_prepare_reports_every_bad_line_and_writes_nothing(tmp_path):
    lines = LINES[:4] + [
        "vis/v05.png ir/i05.png small-boat small 5 1",  # 6 fields
        "vis/v06.png ir/i06.png patrol medium-other 6 yes 0",  # bad is_train
        "vis/v07.png ir/i07.png thing spaceship 7 0 0",  # unknown basic class
        "null null ferry passenger 9 0 2",  # no image, bad is_night
    ]
    src = make_vais(tmp_path / "VAIS", lines)
    (src / "vis" / "v02.png").unlink()
    out = tmp_path / "lists"
    with pytest.raises(DataCheckError) as info:
        prepare_vais(src, out)
    text = str(info.value)
    ann = src / "annotations.txt"
    assert f"{ann}:2: visible image {src / 'vis' / 'v02.png'} not found" in text
    assert f"{ann}:5: expected 7 space-separated fields" in text and "got 6" in text
    assert f"{ann}:6: is_train must be 0 or 1, got 'yes'" in text
    assert f"{ann}:7: unknown basic_label 'spaceship'" in text
    assert (
        f"{ann}:8: is_night must be 0 or 1, got '2'" in text
        and f"{ann}:8: both visible_path and ir_path are null" in text
    )
    assert not out.exists()
    assert cli_main(["prepare", "vais", "--root", str(src), "--out", str(out)]) == 1


def test_ir_options_and_band_check(tmp_path):
    src = make_vais(tmp_path / "VAIS", ir_bands=3)  # IR stored as 3 equal... (here: random) bands
    prepare_vais(src)  # lists beside annotations.txt
    plain = build_dataset(vais_config(src, "data.modality.ir.bands=[]").data, "train")
    with pytest.raises(ImageReadError, match=r"i01.png.*has 3 band\(s\) but data.modality.ir.channels is 1"):
        plain.images("ir")[0]
    report = check_data(vais_config(src, "data.modality.ir.bands=[]"))
    assert not report.ok and any("train_pairs.csv:2" in e.location and "i01.png" in e.message for e in report.errors)

    base = build_dataset(vais_config(src).data, "train").images("ir")[0]["image"]
    assert base.shape == (1, 6, 6)
    inverted = build_dataset(vais_config(src, "data.modality.ir.invert=true").data, "train").images("ir")[0]["image"]
    assert torch.allclose(inverted, 1 - base)
    equalized = build_dataset(vais_config(src, "data.modality.ir.equalize=true").data, "train").images("ir")[0]["image"]
    assert equalized.min() == 0 and equalized.max() == 1


def test_missing_lists_show_how_to_prepare(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="prepare vais"):
        VAISDataset(tmp_path, "train")
    with pytest.raises(ConfigError, match=r"data.modalities must be \['visible', 'ir'\]"):
        load_config(None, ["data.format=vais", "data.modalities=[rgb, ir]"])
