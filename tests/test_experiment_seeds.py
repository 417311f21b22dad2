"""The ablation over seeds: mean ± sd and paired gains checked by hand; the CLI end to end (tiny runs)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import yaml

from conftest import tiny_overrides
from fgmd.cli.main import main
from fgmd.config import ConfigError
from fgmd.experiments.seeds import mean_sd, summarise_seeds


def fake_ablation(folder, seed, rows):
    """An ablation folder as `fgmd ablate` leaves it: ablation.csv + each run's config.yaml."""
    folder.mkdir(parents=True)
    with (folder / "ablation.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["variant", "map_mean", "map_tie_mean", "run_dir"])
        for label, by_index, tie in rows:
            run = folder / label.replace(" ", "_").replace("+", "p").replace("(", "").replace(")", "")
            run.mkdir()
            (run / "config.yaml").write_text(yaml.safe_dump({"seed": seed}))
            writer.writerow([label, by_index, tie, run])
    return folder


def test_mean_sd_is_the_sample_standard_deviation():
    mean, sd = mean_sd([0.5, 0.6, 0.7])
    assert mean == pytest.approx(0.6) and sd == pytest.approx(0.1)
    assert mean_sd([0.42]) == (0.42, None)


def test_seed_summary_by_hand(tmp_path):
    folders = [
        fake_ablation(tmp_path / "s0", 0, [("baseline", 0.50, 0.48), ("full (FG-MD)", 0.55, 0.52)]),
        fake_ablation(tmp_path / "s1", 1, [("baseline", 0.60, 0.58), ("full (FG-MD)", 0.58, 0.57)]),
        fake_ablation(tmp_path / "s2", 2, [("baseline", 0.40, 0.44)]),  # full missing for seed 2
    ]
    summary = summarise_seeds(folders, tmp_path / "out")
    assert summary.values["baseline"]["map_tie_mean"] == {0: 0.48, 1: 0.58, 2: 0.44}
    rows = list(csv.DictReader(summary.csv.open()))
    baseline, full = rows
    sd = math.sqrt(((0.48 - 0.5) ** 2 + (0.58 - 0.5) ** 2 + (0.44 - 0.5) ** 2) / 2)
    assert baseline["map_tie_mean_sd"] == f"0.5000 ± {sd:.4f}" and baseline["seeds"] == "3"
    assert baseline["paired_gain_tie"] == ""
    assert full["seeds"] == "2" and full["map_tie_seed2"] == "" and full["map_tie_seed0"] == "0.52"
    gains = [0.52 - 0.48, 0.57 - 0.58]  # same-seed differences: +0.04, -0.01
    gain_sd = math.sqrt((gains[0] - 0.015) ** 2 + (gains[1] - 0.015) ** 2)
    assert full["paired_gain_tie"] == f"0.0150 ± {gain_sd:.4f}"
    assert "Ablation over seeds" in summary.markdown.read_text()


def test_seed_summary_refuses_mixed_or_repeated_seeds(tmp_path):
    with pytest.raises(ConfigError, match="holds no ablation.csv"):
        summarise_seeds([tmp_path], tmp_path / "out")
    a = fake_ablation(tmp_path / "a", 0, [("baseline", 0.5, 0.5)])
    b = fake_ablation(tmp_path / "b", 0, [("baseline", 0.6, 0.6)])
    with pytest.raises(ConfigError, match="seed 0 appears twice for baseline"):
        summarise_seeds([a, b], tmp_path / "out")


def test_ablate_over_seeds_from_the_cli(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "study"
    # band counts left to inference: the second call must reuse the runs, not refuse them
    overrides = tiny_overrides(tiny_dataset, out, **{"train.epochs": 1, "data.modality": "{}"})
    args = [
        "ablate",
        "--quiet",
        "--no-report",
        "--timing-repeats",
        "1",
        "--variants",
        "baseline",
        "adf+train.module_lr_mult=3",
    ]
    assert main([*args, "--seeds", "0", "1", *overrides]) == 0
    first = (out / "seed_0" / "baseline" / "best.pt").stat().st_mtime_ns
    assert main([*args, "--seeds", "0", "1", *overrides]) == 0
    assert (out / "seed_0" / "baseline" / "best.pt").stat().st_mtime_ns == first  # reused, not retrained
    printed = capsys.readouterr().out
    assert "Ablation over seeds" in printed and (out / "ablation_seeds.csv").is_file()
    rows = {r["variant"]: r for r in csv.DictReader((out / "ablation_seeds.csv").open())}
    assert set(rows) == {"baseline", "+ADF [train.module_lr_mult=3]"}
    assert rows["+ADF [train.module_lr_mult=3]"]["seeds"] == "2"
    design = out / "seed_1" / "adf+train.module_lr_mult=3"
    stored = yaml.safe_load((design / "config.yaml").read_text())
    assert stored["model"]["adf"] is True and stored["model"]["fdfsp"] is False and stored["seed"] == 1
    assert stored["train"]["module_lr_mult"] == 3
    epoch = json.loads((design / "log.jsonl").read_text().splitlines()[0])
    assert epoch["lr_modules"] == pytest.approx(3 * epoch["lr"])  # the ADF parameters' own Adam group
    assert "lr_modules" not in json.loads((out / "seed_1" / "baseline" / "log.jsonl").read_text().splitlines()[0])
    for seed in (0, 1):
        per_seed = {r["variant"]: r for r in csv.DictReader((out / f"seed_{seed}" / "ablation.csv").open())}
        assert float(rows["baseline"][f"map_tie_seed{seed}"]) == pytest.approx(
            float(per_seed["baseline"]["map_tie_mean"]), abs=5e-5
        )
    assert main(["ablate", "--combine", str(out / "seed_0"), str(out / "seed_1"), f"out_dir={tmp_path / 'again'}"]) == 0
    assert (tmp_path / "again" / "ablation_seeds.csv").read_text() == (out / "ablation_seeds.csv").read_text()


def test_design_variants_and_split_folders_of_one_seed_combine(tmp_path):
    """Rows keyed by variant_key (design variants) sort after their base; one seed's variants may
    come from two folders (a study run in two calls), a repeated variant may not."""
    old = fake_ablation(tmp_path / "s0_first", 0, [("baseline", 0.50, 0.40), ("full (FG-MD)", 0.52, 0.44)])
    later = tmp_path / "s0_second"
    later.mkdir()
    spec = "full+train.module_lr_mult=10"
    with (later / "ablation.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["variant", "variant_key", "map_mean", "map_tie_mean", "run_dir"])
        for key, label, tie in [(spec, "full (FG-MD) [train.module_lr_mult=10]", 0.47), ("adf", "+ADF", 0.41)]:
            (later / key).mkdir()
            (later / key / "config.yaml").write_text(yaml.safe_dump({"seed": 0}))
            writer.writerow([label, key, tie, tie, later / key])
    summary = summarise_seeds([old, later], tmp_path / "out")
    rows = list(csv.DictReader(summary.csv.open()))
    assert [r["variant"] for r in rows] == [
        "baseline",
        "+ADF",
        "full (FG-MD)",
        "full (FG-MD) [train.module_lr_mult=10]",
    ]
    assert rows[3]["paired_gain_tie"] == "0.0700" and rows[1]["paired_gain_tie"] == "0.0100"
    with pytest.raises(ConfigError, match="seed 0 appears twice for baseline"):
        summarise_seeds([old, later, old], tmp_path / "out")
