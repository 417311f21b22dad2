"""Sweep and ablation runners, test-split tracking, visual reports and `fgmd info` (tiny runs, 1 epoch)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import tiny_overrides
from fgmd.cli.main import main
from fgmd.config import ConfigError, load_config
from fgmd.evaluation.report import generate_report
from fgmd.experiments import VARIANTS, run_ablation, run_sweep, variant_config
from fgmd.experiments.params import parameter_counts
from fgmd.experiments.sweep import sweep_configs

ONE_EPOCH = {"train.epochs": 1, "train.track_test": "true"}


@pytest.fixture(scope="module")
def ablation(tiny_dataset, tmp_path_factory):
    """Baseline and full FG-MD trained for one epoch each (test split tracked), no reports."""
    out = tmp_path_factory.mktemp("ablation")
    config = load_config(None, tiny_overrides(tiny_dataset, out, **ONE_EPOCH))
    return config, run_ablation(config, ["full", "baseline"], progress=False, report=False, timing_repeats=1)


def test_ablation_switches_remove_modules_and_damd_adds_no_inference_parameters(tiny_dataset, tmp_path):
    config = load_config(None, tiny_overrides(tiny_dataset, tmp_path))
    counts = {v: parameter_counts(variant_config(config, v), num_classes=6) for v in VARIANTS}
    inference = {v: c[0] for v, c in counts.items()}
    assert inference["baseline"] < inference["fdfsp"] < inference["full"]
    assert inference["baseline"] < inference["adf"] < inference["full"]
    assert inference["full"] - inference["baseline"] == (inference["fdfsp"] - inference["baseline"]) + (
        inference["adf"] - inference["baseline"]
    )
    assert inference["damd"] == inference["baseline"]  # DAMD is training-only
    train_only = {v: c[1] for v, c in counts.items()}
    assert train_only["damd"] > train_only["baseline"] == 16 * 6  # projection only without DAMD
    assert train_only["full"] == train_only["damd"]
    for variant, (label, fdfsp, adf, damd) in VARIANTS.items():
        c = variant_config(config, variant)
        assert (c.model.fdfsp, c.model.adf, c.loss.damd) == (fdfsp, adf, damd)
        assert c.out_dir.endswith(variant) and c.train == config.train and c.data == config.data
    with pytest.raises(ConfigError, match="unknown ablation variant"):
        variant_config(config, "fdfsp_adf")
    with pytest.raises(ConfigError, match="base variants do not combine"):
        variant_config(config, "fdfsp+adf")
    with pytest.raises(ConfigError, match="not of the form"):
        variant_config(config, "fdfsp+levels")


def test_run_folders_keep_yaml_syntax_in_out_dir(tiny_dataset, tmp_path):
    odd = tmp_path / "exp #3: [a]"  # a comment marker, a mapping colon and a flow list in YAML
    config = load_config(None, tiny_overrides(tiny_dataset, tmp_path)).with_values({"out_dir": str(odd)})
    assert config.out_dir == str(odd)
    assert variant_config(config, "adf").out_dir == str(odd / "adf")
    assert sweep_configs(config, [16, 24])[24].out_dir == str(odd / "bits_24")


def test_ablation_table_has_one_row_per_variant_in_table_order(ablation):
    config, result = ablation
    assert [r["variant"] for r in result.rows] == ["baseline", "full (FG-MD)"]
    md = result.markdown.read_text()
    for text in (
        "baseline",
        "full (FG-MD)",
        "ms → pan mAP",
        "pan → ms mAP",
        "mean mAP",
        "last-epoch mean mAP",
        "best-on-test mean mAP (ties by index, optimistic)",
        "mean mAP (tie-aware)",
        "last-epoch mean mAP (tie-aware)",
        "params (M, inference)",
        "ms/img b1",
        "ms/img b32",
        "selected on the validation split",
    ):
        assert text in md, text
    with result.csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["variant"] for r in rows] == ["baseline", "full (FG-MD)"]
    for row in rows:
        values = [
            float(row[k]) for k in ("map_ms_to_pan", "map_pan_to_ms", "map_mean", "last_map_mean", "best_test_map_mean")
        ]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert float(row["map_mean"]) == pytest.approx((values[0] + values[1]) / 2)
        ties = [float(row[k]) for k in ("map_tie_ms_to_pan", "map_tie_pan_to_ms", "map_tie_mean", "last_map_tie_mean")]
        assert all(0.0 <= v <= 1.0 for v in ties)
        assert float(row["map_tie_mean"]) == pytest.approx((ties[0] + ties[1]) / 2)
        assert float(row["ms_per_image_b1"]) > 0 and float(row["ms_per_image_b32"]) > 0
    assert int(rows[0]["params"]) < int(rows[1]["params"])
    assert int(rows[0]["train_only_params"]) < int(rows[1]["train_only_params"])


def test_track_test_logs_test_metrics_but_selects_on_validation(ablation):
    config, result = ablation
    run = result.runs["full"].run_dir
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert "test" in log[0] and "val" in log[0]
    assert set(log[0]["test"]["directions"]) == {"ms->pan", "pan->ms"}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["selected_on"] == "validation"
    # one epoch: the selected, last and best-on-test models are all that epoch's weights
    assert metrics["mean_map"] == pytest.approx(log[0]["test"]["mean_map"])
    summary = result.runs["full"]
    assert summary.best_on_test["epoch"] == summary.selected["epoch"] == summary.last["epoch"] == 1


def test_ablation_is_resumable_and_the_cli_reuses_finished_runs(ablation, monkeypatch, capsys):
    config, result = ablation

    def no_training(*args, **kwargs):
        raise AssertionError("a finished variant must not be retrained")

    monkeypatch.setattr("fgmd.training.trainer.fit", no_training)
    overrides = tiny_overrides(config.data.root, config.out_dir, **ONE_EPOCH)
    code = main(
        ["ablate", "--quiet", "--no-report", "--timing-repeats", "1", "--variants", "baseline", "full", *overrides]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "| baseline" in out and "| full (FG-MD)" in out
    changed = tiny_overrides(config.data.root, config.out_dir, **{**ONE_EPOCH, "train.lr": 0.5})
    assert main(["ablate", "--quiet", "--no-report", "--variants", "baseline", *changed]) == 2
    assert "different config (train.lr)" in capsys.readouterr().err


def test_sweep_writes_one_row_per_bit_length(tiny_dataset, tmp_path):
    config = load_config(None, tiny_overrides(tiny_dataset, tmp_path / "sweep", **{"train.epochs": 1}))
    result = run_sweep(config, [24, 16], progress=False, report=False)
    assert [r["bits"] for r in result.rows] == [24, 16]
    assert (tmp_path / "sweep" / "bits_16" / "metrics.json").is_file()
    assert yaml.safe_load((tmp_path / "sweep" / "bits_24" / "config.yaml").read_text())["model"]["bits"] == 24
    md = result.markdown.read_text()
    assert "| 24 " in md and "| 16 " in md and "ms → pan mAP" in md and "mean mAP" in md
    with result.csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["bits"]) for r in rows] == [24, 16]
    assert all(r["best_test_map_mean"] == "" for r in rows)  # not tracked: empty, not invented
    assert "–" in md  # shown as not available


def _check_png(path, min_size=(300, 200)):
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= min_size[0] and image.height >= min_size[1], (path, image.size)
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    assert pixels.std() > 10, f"{path} looks blank"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20, f"{path} has almost no colours"


def test_report_writes_readable_figures_and_a_page_linking_them(ablation, tmp_path):
    config, result = ablation
    run = result.runs["full"].run_dir
    page = generate_report(run, out_dir=tmp_path / "report", num_queries=3, top_k=5)
    names = [
        "pr_curves.png",
        "precision_at_k.png",
        "retrieval_ms_to_pan.png",
        "retrieval_pan_to_ms.png",
        "training_curves.png",
        "codes_pca.png",
    ]
    text = page.read_text()
    for name in names:
        _check_png(tmp_path / "report" / name)
        assert f"]({name})" in text, name
    for heading in (
        "selected on validation (best.pt)",
        "last epoch (last.pt)",
        "best on test — optimistic",
        "ms → pan",
        "pan → ms",
        "mean mAP (tie-aware)",
        "mean mAP (ties by index)",
        "ms → pan mAP (tie-aware)",
    ):
        assert heading in text, heading
    # the grid marks results: green and red frame pixels are present (random-ish tiny model: both kinds)
    grid = np.asarray(Image.open(tmp_path / "report" / "retrieval_ms_to_pan.png").convert("RGB")).astype(int)
    green = ((grid[..., 1] > 140) & (grid[..., 0] < 60) & (grid[..., 2] < 80)).sum()
    red = ((grid[..., 0] > 190) & (grid[..., 1] < 60) & (grid[..., 2] < 60)).sum()
    assert green + red > 500


def test_report_html_is_self_contained_with_per_class_ap_chance_and_curve_data(ablation, tmp_path):
    import re

    _, result = ablation
    run = result.runs["full"].run_dir
    out = tmp_path / "report"
    generate_report(run, out_dir=out, top_k=4)  # default: one grid query per class
    html = (out / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', html)
    # 6 report figures and the module diagnostics' figures (a full FG-MD run), all inline
    assert len(sources) > 6 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<h2>Module diagnostics</h2>" in html and "<table>" in html.split("Module diagnostics")[1]
    assert "http://" not in html and "https://" not in html and "<link" not in html
    metrics = json.loads((out / "metrics.json").read_text())
    with (out / "per_class_ap.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    classes = sorted({r["class"] for r in rows})
    assert len(classes) == 6 and all(f"<td>{name}</td>" in html for name in classes)
    for direction, values in metrics["directions"].items():
        mine = [r for r in rows if r["direction"] == direction]
        weighted = sum(float(r["ap"]) * int(r["queries"]) for r in mine) / sum(int(r["queries"]) for r in mine)
        assert weighted == pytest.approx(values["map_tie"], abs=1e-5)  # single-label: classes partition the queries
    with (out / "pr_curves.csv").open() as handle:
        pr = list(csv.DictReader(handle))
    from fgmd.data.datasets import build_dataset
    from fgmd.models import load_run

    _, config, _ = load_run(run / "best.pt")
    assert {r["direction"] for r in pr} == set(metrics["directions"]) and len(pr) == 2 * (config.model.bits + 1)
    query = build_dataset(config.data, "query").images("ms").labels.argmax(1)
    database = build_dataset(config.data, "database").images("pan").labels.argmax(1)
    expected = float((query[:, None] == database[None, :]).double().mean())
    assert float(pr[0]["chance"]) == pytest.approx(expected, abs=1e-6)
    with (out / "precision_at_k.csv").open() as handle:
        assert {"direction", "k", "precision", "recall", "chance"} <= set(next(csv.DictReader(handle)))
    # one query per class in each grid by default: 6 rows, taller than a grid of 2 queries
    small = generate_report(run, out_dir=tmp_path / "small", num_queries=2, top_k=4).parent
    with Image.open(out / "retrieval_ms_to_pan.png") as six, Image.open(small / "retrieval_ms_to_pan.png") as two:
        assert six.height > 2 * two.height


def test_report_compare_overlays_runs(ablation, tmp_path, capsys):
    _, result = ablation
    runs = [result.runs["full"].run_dir, result.runs["baseline"].run_dir]
    assert main(["report", "--compare", *map(str, runs), "--out", str(tmp_path / "cmp"), "--quiet"]) == 0
    assert "2 runs" in capsys.readouterr().out
    with (tmp_path / "cmp" / "compare.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["run"] for r in rows] == [run.name for run in runs]
    for row, run in zip(rows, runs):
        assert float(row["mean mAP"]) == pytest.approx(
            json.loads((run / "report" / "metrics.json").read_text())["mean"]["map"]
        )
    html = (tmp_path / "cmp" / "compare.html").read_text()
    assert html.count('src="data:image/png;base64,') == 2 and "chance" in html.lower()
    _check_png(tmp_path / "cmp" / "compare_pr.png")
    assert main(["report", "--compare", str(runs[0])]) == 2  # one run is not a comparison


def test_report_cli(ablation, tmp_path, capsys):
    _, result = ablation
    run = result.runs["baseline"].run_dir
    assert main(["report", str(run), "--out", str(tmp_path / "r"), "--queries", "2", "--top-k", "3", "--quiet"]) == 0
    assert (tmp_path / "r" / "report.md").is_file() and "report.html" in capsys.readouterr().out
    assert (tmp_path / "r" / "report.html").is_file()


def test_info_compares_with_the_paper_claim(capsys):
    assert main(["info", "model.width_mult=0.25", "--image-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "FG-MD (config)" in out and "baseline" in out and "total" in out
    assert "~22M" in out and "7.34M" in out and "ResNet-50" in out and "do not pad" in out


def test_overrides_after_list_options_stay_overrides(capsys):
    from fgmd.cli.common import extract_overrides

    sections = {"seed", "model", "data", "out_dir"}
    argv = ["sweep", "--bits", "16", "32", "model.adf=false", "--set", "seed=1", "--set=out_dir=x"]
    assert extract_overrides(argv, sections) == (
        ["sweep", "--bits", "16", "32"],
        ["model.adf=false", "seed=1", "out_dir=x"],
    )
    assert extract_overrides(["search", "img=1.png", "a.png", "--", "data.root=x"], sections) == (
        ["search", "img=1.png", "a.png", "--", "data.root=x"],
        [],
    )
    assert main(["sweep", "--bits", "16", "sixteen", "seed=1"]) == 2
    assert "--bits takes integers" in capsys.readouterr().err
    assert main(["ablate", "--variants", "baseline", "fdfsp+adf", "seed=1"]) == 2
    assert "base variants do not combine" in capsys.readouterr().err


def test_design_variants_add_settings_and_keep_table_order(tiny_dataset, tmp_path):
    from fgmd.experiments.ablation import ordered_variants, parse_variant

    config = load_config(None, tiny_overrides(tiny_dataset, tmp_path))
    spec = "fdfsp+model.fdfsp_levels=[1,2]+train.module_lr_mult=10"
    c = variant_config(config, spec)
    assert (c.model.fdfsp, c.model.adf, c.loss.damd) == (True, False, False)
    assert c.model.fdfsp_levels == [1, 2] and c.train.module_lr_mult == 10
    assert c.out_dir == str(tmp_path / spec) and c.data == config.data
    assert parse_variant(spec).label == "+FDFSP [model.fdfsp_levels=[1,2], train.module_lr_mult=10]"
    order = ordered_variants(["full+loss.damd_weight=1", "full", "baseline", "fdfsp+train.module_lr_mult=3"])
    assert [v.key for v in order] == ["baseline", "fdfsp+train.module_lr_mult=3", "full", "full+loss.damd_weight=1"]
    assert variant_config(config, "adf+train.module_lr_mult=3").design_settings() == {"train.module_lr_mult": 3}
    assert variant_config(config, "full").design_settings() == {}
    for bad, message in [
        ("full+model.adf=false", "set by the study"),
        ("full+seed=3", "set by the study"),
        ("full+model.fdfsp_levels=[1, 2]", "no spaces"),
        ("full+model.fdfsp_levels=[7]", "model.fdfsp_levels"),
        ("full+train.no_such_key=1", "no_such_key"),
        ("full+data.image_size=96", "set by the study"),
        ("full+train.lr=1+train.lr=2", "sets train.lr twice"),
        ("full+model={}", "is a section"),
        ("baseline+train.module_lr_mult=10", "acts on FDFSP or ADF, which the baseline variant does not have"),
        ("adf+model.fdfsp_levels=[1,2]", "acts on FDFSP, which the adf"),
        ("fdfsp+loss.damd_weight=1", "acts on DAMD"),
    ]:
        with pytest.raises(ConfigError, match=message):
            variant_config(config, bad)
    with pytest.raises(ConfigError, match="repeated"):
        ordered_variants(["full", "full"])
