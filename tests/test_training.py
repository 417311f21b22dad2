import json

import pytest
import torch

from conftest import tiny_overrides
from fgmd.api import evaluate_checkpoint, load_model
from fgmd.config import ConfigError, load_config
from fgmd.data.transforms import build_transforms
from fgmd.evaluation.evaluate import evaluate_model
from fgmd.runtime.checkpoint import CheckpointError, load_checkpoint
from fgmd.runtime.hints import suggested_options
from fgmd.training.trainer import Trainer, fit, split_validation


def test_split_validation_is_stratified_disjoint_and_seeded():
    labels = torch.nn.functional.one_hot(torch.arange(40) % 4, 4).float()
    train, val = split_validation(labels, 0.25, seed=1)
    assert sorted(train + val) == list(range(40)) and not set(train) & set(val)
    assert [int(labels[val, c].sum()) for c in range(4)] == [2, 2, 2, 2]  # round(0.25 * 10) per class
    assert split_validation(labels, 0.25, seed=1) == (train, val)
    assert split_validation(labels, 0.0, seed=1) == (list(range(40)), [])


def test_split_validation_keeps_groups_on_one_side():
    # 4 classes x 10 items; items come in groups of 2 (near-duplicates), one class ungrouped
    labels = torch.nn.functional.one_hot(torch.arange(40) % 4, 4).float()
    groups = ["" if i % 4 == 3 else f"scene{i // 8}-{i % 4}" for i in range(40)]
    for seed in range(5):
        train, val = split_validation(labels, 0.3, seed=seed, groups=groups)
        assert sorted(train + val) == list(range(40)) and not set(train) & set(val)
        for group in set(groups) - {""}:
            sides = {i in val for i in range(40) if groups[i] == group}
            assert len(sides) == 1, (seed, group)  # never split across train and validation
        for c in range(4):
            assert int(labels[val, c].sum()) in (3, 4)  # whole pairs: round(0.3 * 10) = 3, or one over
    big = ["scene"] * 50 + [""]  # a group larger than the target never goes to validation
    for seed in range(8):
        assert split_validation(torch.ones(51, 1), 0.1, seed=seed, groups=big) == (list(range(50)), [50])
    one_group = ["same"] * 40  # a single unit cannot be split: everything trains
    assert split_validation(labels[:, :1].expand(40, 1), 0.3, seed=0, groups=one_group) == (list(range(40)), [])


def training_pairs_map(trainer: Trainer) -> float:
    """Mean cross-modal mAP of the training pairs against themselves (eval mode, fresh BN statistics)."""
    trainer.recalibrate()
    transforms = build_transforms(trainer.config.data, train=False)
    sets = {m: trainer.calibration_set.images(m, transforms[m]) for m in trainer.modalities}
    return evaluate_model(trainer.model, sets, sets, trainer.config.eval)["mean_map"]


def test_tiny_run_learns_and_writes_a_complete_run_directory(micro_dataset, tmp_path):
    overrides = tiny_overrides(
        micro_dataset,
        tmp_path / "run",
        **{
            "train.epochs": 60,
            "train.batch_size": 12,
            "train.lr": 3e-3,
            "train.eval_every": 60,
            "data.val_fraction": 0.0,
        },
    )
    trainer = Trainer(load_config(None, overrides), progress=False)
    initial = training_pairs_map(trainer)
    result = trainer.fit()
    final = training_pairs_map(trainer)
    assert final > initial + 0.2, (initial, final)
    run = result.run_dir
    for name in ("config.yaml", "log.jsonl", "last.pt", "best.pt"):
        assert (run / name).is_file()
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(1, 61))  # counted from 1, as on screen
    for term in ("classification", "quantization", "triplet", "damd", "damd_weighted", "total"):
        assert term in log[0]
    assert log[-1]["classification"] < log[0]["classification"] - 1.0
    metrics = evaluate_checkpoint(run / "best.pt")
    assert set(metrics["directions"]) == {"ms->pan", "pan->ms"}
    assert metrics["selected_on"] == "last"  # no validation split: the last epoch is kept
    assert json.loads((run / "metrics.json").read_text())["mean_map"] == pytest.approx(metrics["mean_map"])


def test_checkpoints_load_with_weights_only(tiny_config):
    result = fit(tiny_config(**{"train.epochs": 1}), progress=False)
    state = torch.load(result.run_dir / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and isinstance(state["config"], dict)
    model, config = load_model(result.run_dir / "best.pt")
    assert config.model.bits == 16
    codes = model.encode(torch.zeros(1, 1, 32, 32), "pan")
    assert codes.shape == (1, 16)


def test_resume_after_interruption_equals_uninterrupted_run(tiny_config, tmp_path, monkeypatch):
    reference = fit(tiny_config(**{"train.epochs": 3, "out_dir": str(tmp_path / "ref")}), progress=False)
    config = tiny_config(**{"train.epochs": 3, "out_dir": str(tmp_path / "killed")})

    original = Trainer.train_epoch

    def crash_at_epoch_2(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt("simulated kill")
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "train_epoch", crash_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        fit(config, progress=False)
    monkeypatch.setattr(Trainer, "train_epoch", original)
    with pytest.raises(FileExistsError, match="already holds a run") as refused:
        fit(config, progress=False)
    assert "--" not in str(refused.value) and suggested_options(refused.value) == ("resume", "overwrite")
    resumed = fit(config, resume=True, progress=False)

    a = load_checkpoint(reference.run_dir / "last.pt")
    b = load_checkpoint(resumed.run_dir / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    log_a = (reference.run_dir / "log.jsonl").read_text().splitlines()
    log_b = (resumed.run_dir / "log.jsonl").read_text().splitlines()
    assert len(log_b) == 3
    assert [json.loads(x)["total"] for x in log_a] == [json.loads(x)["total"] for x in log_b]


def test_resume_refuses_a_changed_config_but_allows_machine_changes(tiny_config, tmp_path, caplog):
    fit(tiny_config(**{"train.epochs": 1}), progress=False)
    with pytest.raises(ConfigError, match="model.bits"):
        fit(tiny_config(**{"train.epochs": 2, "model.bits": 24}), resume=True, progress=False)
    fit(tiny_config(**{"train.epochs": 2, "eval.batch_size": 7}), resume=True, progress=False)  # exact: no warning
    assert "bit-identical" not in caplog.text
    # loader workers only decode: exact. Another device continues the run, with a warning that it is inexact
    fit(tiny_config(**{"train.epochs": 3, "data.num_workers": 1}), resume=True, progress=False)
    assert "bit-identical" not in caplog.text
    fit(tiny_config(**{"train.epochs": 4, "train.device": "cpu"}), resume=True, progress=False)
    assert "train.device" in caplog.text and "bit-identical" in caplog.text and "data.num_workers" not in caplog.text
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["epoch"] == 4 and state["world_size"] == 1


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(path)
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="not an fgmd checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("select_on", ["map_tie", "map"])
def test_best_checkpoint_is_the_epoch_with_the_best_validation_select_on_metric(tiny_config, tmp_path, select_on):
    config = tiny_config(**{"train.epochs": 3, "eval.select_on": select_on, "out_dir": tmp_path / select_on})
    result = fit(config, progress=False)
    log = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    scores = [r["val"]["mean"][select_on] for r in log]
    assert all("map_tie" in r["val"]["mean"] and "map" in r["val"]["mean"] for r in log)
    assert result.best_epoch == scores.index(max(scores)) + 1  # the first among equals; epochs from 1
    assert load_checkpoint(result.run_dir / "best.pt")["epoch"] == result.best_epoch


def test_a_validation_fraction_that_leaves_no_validation_pair_stops_at_start(micro_dataset, tmp_path):
    overrides = tiny_overrides(micro_dataset, tmp_path / "run", **{"data.val_fraction": 0.1})  # too few per class
    with pytest.raises(ConfigError, match=r"data.val_fraction=0.1 leaves no validation pair in the \d+ training pairs"):
        Trainer(load_config(None, overrides), progress=False)
    assert not (tmp_path / "run").exists()  # nothing trained or written


def test_one_line_per_evaluation_counts_epochs_from_one(tiny_config, capsys):
    from fgmd.training.trainer import evaluation_line

    metrics = {"mean": {"map_tie": 0.5}, "directions": {"ms->pan": {"map_tie": 0.4}, "pan->ms": {"map_tie": 0.6}}}
    assert evaluation_line(4, 10, metrics, "map_tie", 0.5, 4, True, 125.0) == (
        "epoch 4/10: validation map_tie 0.5000 (ms->pan 0.4000, pan->ms 0.6000); new best, ETA 2m05s"
    )
    assert evaluation_line(10, 10, metrics, "map_tie", 0.7, 2, False, 0.0) == (
        "epoch 10/10: validation map_tie 0.5000 (ms->pan 0.4000, pan->ms 0.6000); best 0.7000 at epoch 2"
    )
    fit(tiny_config(**{"train.epochs": 2, "train.eval_every": 1}), progress=True)
    lines = [line for line in capsys.readouterr().out.splitlines() if "validation map_tie" in line]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert "new best" in lines[0]


def test_module_learning_rate_multiplier_makes_a_second_group():
    from fgmd.config import ModelConfig
    from fgmd.models.fgmd import build_model
    from fgmd.training.trainer import parameter_groups

    objective = torch.nn.Linear(2, 2)
    full = build_model(ModelConfig(width_mult=0.5), {"ms": 3, "pan": 1}, load_pretrained=False)
    modules = full.module_parameters()
    own = {id(p) for e in full.encoders.values() for m in (e.fdfsp, e.adf) for p in m.parameters()}
    assert modules and {id(p) for p in modules} == own
    groups = parameter_groups(full, objective, 1e-4, 10.0)
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(1e-3) and "lr" not in groups[0]
    assert {id(p) for p in groups[1]["params"]} == own
    everything = list(full.parameters()) + list(objective.parameters())
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(id(p) for p in everything)
    assert len(parameter_groups(full, objective, 1e-4, 1.0)) == 1  # as published: old optimiser states load
    baseline = build_model(ModelConfig(width_mult=0.5, fdfsp=False, adf=False), {"ms": 3, "pan": 1}, False)
    assert baseline.module_parameters() == [] and len(parameter_groups(baseline, objective, 1e-4, 10.0)) == 1
