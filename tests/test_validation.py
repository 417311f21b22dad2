"""Dataset checks (fgmd.data.validation), the check at train start, and ``fgmd check-data``."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from datagen import simple_rows, write_folder_dataset, write_image
from fgmd.config import load_config
from fgmd.data.issues import DataCheckError
from fgmd.data.validation import check_data, prepare_training_data

CHANNELS = "data.modality={ms: {channels: 3}, pan: {channels: 1}}"


def folder_config(root, *extra):
    return load_config(None, [f"data.root={root}", CHANNELS, "data.image_size=8", "data.resize=8", *extra])


@pytest.fixture
def folder(tmp_path):
    return write_folder_dataset(tmp_path / "d", simple_rows())


def test_clean_dataset_summary(folder):
    report = check_data(folder_config(folder))
    assert report.ok and not report.warnings
    assert report.class_names == ["a", "b", "c"]
    assert {s: r.pairs for s, r in report.splits.items()} == {"train": 9, "query": 9, "database": 9}
    assert report.splits["train"].class_counts == [3, 3, 3]
    assert report.images["pan"].bands_on_disk == [1] and report.images["pan"].max_size == (16, 16)


def test_unreadable_image_names_file_and_line(folder):
    bad = folder / "images" / "pan" / "query_b_1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert check_data(folder_config(folder), decode=False).ok  # train start: existence only
    report = check_data(folder_config(folder))
    assert not report.ok
    (error,) = report.errors
    assert error.location == f"{folder / 'pairs.csv'}:15" and str(bad) in error.message


def test_wrong_band_count_is_an_error(folder):
    report = check_data(folder_config(folder, "data.modality.pan.channels=3"))
    (error,) = report.errors  # one line for the 27 images, with the fix, not one per image
    assert "27 pan image(s) have 1 band(s) but data.modality.pan.channels is 3" in error.message
    assert error.message.endswith("set data.modality.pan.channels=1") and "first: " in error.message
    assert check_data(folder_config(folder, "data.modality.pan.channels=1")).ok  # the printed fix works
    report = check_data(folder_config(folder, "data.modality.ms.channels=1"))
    assert "27 ms image(s) have 3 band(s)" in report.errors[0].message
    assert "or pick 1 of the bands with data.modality.ms.bands=[...]" in report.errors[0].message
    report = check_data(folder_config(folder, "data.modality.ms.bands=[5, 0, 1]"))
    assert "band 5 out of range, the image has 3 band(s)" in report.errors[0].message


def test_leakage_duplicates_absent_class_and_unused_images(folder):
    rows = [r for r in simple_rows() if not (r[3] == "query" and r[1] == "2")]  # no class c in query
    write_folder_dataset(folder, rows)
    # query_a_0 gets the pixels of train_a_0 (leakage); database_a_1 those of database_a_0 (duplicate)
    for src, dst in (("train_a_0", "query_a_0"), ("database_a_0", "database_a_1")):
        (folder / "images" / "ms" / f"{dst}.png").write_bytes((folder / "images" / "ms" / f"{src}.png").read_bytes())
    write_image(folder / "images" / "pan" / "stray.png", seed=99, size=16, bands=1)
    report = check_data(folder_config(folder))
    assert report.ok
    text = "\n".join(str(w) for w in report.warnings)
    assert "1 image(s) with identical content in split 'train' and split 'query' under different ids (leakage)" in text
    assert "ms: train_a_0" in text and "query_a_0" in text
    assert "identical to another image of the same split" in text and "database_a_1" in text
    assert "split 'query' has no record of class(es) c (2)" in text
    # the images of the removed rows are unused too
    assert (
        "4 pan image(s) not used by any split listed, e.g. query_c_0.png, query_c_1.png, query_c_2.png, stray.png"
        in text
    )
    assert "3 ms image(s) not used" in text


def test_missing_root_is_an_error_with_the_layout(tmp_path):
    report = check_data(folder_config(tmp_path / "nowhere"))
    assert not report.ok and "Expected layout" in report.errors[0].message and "pairs.csv" in report.errors[0].message


def test_train_start_stops_on_errors_and_logs_warnings(folder, caplog):
    rows = simple_rows()
    rows[4] = (rows[4][0], "x", "b", "train")
    write_folder_dataset(folder, rows)
    with pytest.raises(DataCheckError, match=r"pairs.csv:6: label 'x' is a class name but labels are numbers"):
        prepare_training_data(folder_config(folder))
    rows = [r for r in simple_rows() if not (r[3] == "query" and r[1] == "2")]
    write_folder_dataset(folder, rows)
    with caplog.at_level(logging.WARNING, logger="fgmd.data"):
        config = prepare_training_data(folder_config(folder))
    assert "has no record of class(es) c" in caplog.text
    assert config == folder_config(folder)  # nothing to compute: the config is unchanged


def test_trainer_stores_percentile_scaling_in_its_config(folder, tmp_path):
    from fgmd.runtime.checkpoint import load_checkpoint
    from fgmd.training.trainer import Trainer

    config = folder_config(
        folder,
        f"out_dir={tmp_path / 'run'}",
        "data.modality.pan.scaling=percentile",
        "data.modality.pan.percentiles=[5, 95]",
        "model.width_mult=0.25",
        "model.head_hidden=32",
        "model.bits=16",
        "train.device=cpu",
        "data.val_fraction=0",
    )
    trainer = Trainer(config, progress=False)
    pan = trainer.config.data.modality["pan"]
    assert len(pan.scale_low) == 1 and 0.0 <= pan.scale_low[0] < pan.scale_high[0] <= 1.0
    assert trainer.train_set.reader_of("pan").stretch == (pan.scale_low, pan.scale_high)
    trainer.run_dir.mkdir(parents=True)
    trainer.save_best(0, {}, "last")
    stored = load_checkpoint(trainer.run_dir / "best.pt")["config"]["data"]["modality"]["pan"]
    assert stored["scale_low"] == pan.scale_low and stored["scale_high"] == pan.scale_high
    report = check_data(config)  # check-data prints the same values
    assert report.scaling["pan"]["low"] == pan.scale_low and report.scaling["pan"]["computed"]


def test_band_counts_left_at_0_are_inferred_from_the_first_training_image(folder, tmp_path):
    from fgmd.runtime.checkpoint import load_checkpoint
    from fgmd.training.trainer import Trainer

    config = load_config(None, [f"data.root={folder}", "data.image_size=8", "data.resize=8"])  # no channels
    assert [config.data.modality_config(m).channels for m in ("ms", "pan")] == [0, 0]
    report = check_data(config)
    assert report.ok, report.errors
    assert {m: c["channels"] for m, c in report.channels.items()} == {"ms": 3, "pan": 1}
    assert report.channels["pan"]["from"] == str(folder / "images" / "pan" / "train_a_0.png")
    assert any("pan: 1 band(s), inferred from the first readable 'train' image" in n.message for n in report.notes)
    prepared = prepare_training_data(config)
    assert [prepared.data.modality_config(m).channels for m in ("ms", "pan")] == [3, 1]
    selected = load_config(None, [f"data.root={folder}", "data.modality.ms.bands=[2]"])
    assert check_data(selected, decode=False).channels["ms"] == {"channels": 1, "from": "data.modality.ms.bands"}

    trainer = Trainer(
        config.with_overrides(
            [f"out_dir={tmp_path / 'run'}", "model.width_mult=0.25", "model.head_hidden=32", "data.val_fraction=0"]
        ),
        progress=False,
    )
    assert trainer.model.encoders["pan"].in_channels == 1
    trainer.run_dir.mkdir(parents=True)
    trainer.save_best(1, {}, "last")
    stored = load_checkpoint(trainer.run_dir / "best.pt")["config"]["data"]["modality"]
    assert stored["ms"]["channels"] == 3 and stored["pan"]["channels"] == 1  # the run config holds the numbers


def test_an_image_with_another_band_count_than_the_inferred_one_is_one_error(folder):
    write_image(folder / "images" / "pan" / "query_b_1.png", seed=5, size=16, bands=3)
    report = check_data(load_config(None, [f"data.root={folder}", "data.image_size=8", "data.resize=8"]))
    (error,) = report.errors
    inferred_from = folder / "images" / "pan" / "train_a_0.png"
    assert f"1 pan image(s) have 3 band(s) but data.modality.pan.channels is 1 (inferred from {inferred_from})" in (
        error.message
    )


def test_inference_skips_an_unreadable_first_image_and_names_inconsistent_settings(folder):
    bad = folder / "images" / "pan" / "train_a_0.png"
    bad.write_bytes(b"not an image")
    report = check_data(load_config(None, [f"data.root={folder}", "data.image_size=8", "data.resize=8"]))
    assert report.channels["pan"] == {"channels": 1, "from": str(folder / "images" / "pan" / "train_a_1.png")}
    (error,) = report.errors  # the unreadable file, once; no band-count errors for the others
    assert str(bad) in error.message
    report = check_data(load_config(None, [f"data.root={folder}", "data.modality.ms.mean=[0.5]"]), decode=False)
    (error,) = report.errors
    assert (
        "mean has 1 values for 3 channels" in error.message and "band counts inferred: ms: 3 band(s)" in error.message
    )


def test_run_configs_written_before_inference_keep_their_three_bands(tiny_dataset, tmp_path):
    from conftest import tiny_overrides
    from fgmd.config import Config
    from fgmd.models import load_run, model_from_config
    from fgmd.runtime.checkpoint import save_checkpoint

    config = load_config(
        None, tiny_overrides(tiny_dataset, tmp_path, **{"data.modality": "{ms: {channels: 3}, pan: {channels: 3}}"})
    )
    stored = config.to_dict()
    stored["data"]["modality"] = {}  # how runs with the old default (3) were written
    assert [Config.from_run(stored).data.modality_config(m).channels for m in ("ms", "pan")] == [3, 3]
    model = model_from_config(config, load_pretrained=False)
    path = save_checkpoint(tmp_path / "best.pt", {"config": stored, "model": model.state_dict(), "epoch": 0})
    _, loaded, _ = load_run(path)
    assert loaded.data.modality_config("pan").channels == 3


def test_a_model_needs_known_band_counts():
    from fgmd.config import ConfigError
    from fgmd.models import model_from_config

    with pytest.raises(ConfigError, match="the band count of ms, pan is not known: set data.modality.<m>.channels"):
        model_from_config(load_config(None, []), load_pretrained=False)


def run_cli(*args):
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "fgmd", *args], capture_output=True, text=True, env=env)


def test_cli_check_data_exit_codes(folder, tmp_path, capsys):
    from fgmd.cli.main import main as cli_main

    config_path = tmp_path / "c.yaml"
    config_path.write_text(
        yaml.safe_dump({"data": {"root": str(folder), "modality": {"ms": {"channels": 3}, "pan": {"channels": 1}}}})
    )
    assert cli_main(["check-data", "--config", str(config_path), "--quiet", "--json", str(tmp_path / "r.json")]) == 0
    stdout = capsys.readouterr().out
    assert "| train    | train    | 9       | 9     | 9         | 9          |" in stdout
    assert "OK: 0 error(s), 0 warning(s)" in stdout
    assert json.loads((tmp_path / "r.json").read_text())["ok"] is True

    # as a separate process: warnings only -> exit status 0
    rows = [r for r in simple_rows() if not (r[3] == "query" and r[1] == "2")]
    write_folder_dataset(folder, rows)
    out = run_cli("check-data", "--config", str(config_path), "--quiet")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "WARNING:" in out.stdout and "OK: 0 error(s), 3 warning(s)" in out.stdout

    # errors -> exit status 1, each naming file:line
    rows[0] = ("train_a_0", "-1", "a", "train")
    write_folder_dataset(folder, rows)
    out = run_cli("check-data", "--format", "folder", "--root", str(folder), "--quiet", "--no-decode", CHANNELS)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"ERROR: {folder / 'pairs.csv'}:2: negative label '-1'" in out.stdout and "FAILED: 1 error(s)" in out.stdout


def test_class_names_in_the_label_column(tmp_path):
    """`label` may name the class: indices follow first appearance, or data.class_names when set."""
    named = [(sample_id, name, name, split) for sample_id, _, name, split in simple_rows(classes=("c", "a", "b"))]
    root = write_folder_dataset(tmp_path / "named", named)
    report = check_data(folder_config(root))
    assert report.ok, [e.message for e in report.errors]
    assert report.class_names == ["c", "a", "b"]  # order of first appearance
    pinned = check_data(folder_config(root, "data.class_names=[a, b, c]"))
    assert pinned.ok and pinned.class_names == ["a", "b", "c"]
    from fgmd.data.datasets import build_dataset

    dataset = build_dataset(folder_config(root, "data.class_names=[a, b, c]").data, "train")
    assert [int(row.argmax()) for row in dataset.labels[:9:3]] == [2, 0, 1]  # rows c, a, b -> pinned indices
    bad = check_data(folder_config(root, "data.class_names=[a, b, d]"))
    assert not bad.ok and "class 'c' is not in data.class_names (a, b, d)" in bad.errors[0].message
    mixed = named[:3] + [(named[3][0], "1", named[3][2], named[3][3])] + named[4:]
    report = check_data(folder_config(write_folder_dataset(tmp_path / "mixed", mixed)))
    assert not report.ok and "label 1 is a number but labels are class names" in report.errors[0].message
