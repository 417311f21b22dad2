"""log.jsonl: epochs counted from 1, old logs renumbered, broken lines named or skipped."""

import json

import pytest

from fgmd.runtime.run_log import RunLogError, checkpoint_epoch, keep_epochs, read_log


def write_log(folder, lines):
    (folder / "log.jsonl").write_text("".join(line + "\n" for line in lines))


def test_a_log_counted_from_one_is_read_as_written(tmp_path):
    write_log(tmp_path, [json.dumps({"epoch": 1, "total": 2.0}), json.dumps({"epoch": 2, "total": 1.5})])
    assert read_log(tmp_path) == [{"epoch": 1, "total": 2.0}, {"epoch": 2, "total": 1.5}]


def test_a_log_written_before_epochs_counted_from_one_is_renumbered(tmp_path):
    write_log(tmp_path, [json.dumps({"epoch": 0, "lr": 0.1}), json.dumps({"epoch": 1, "lr": 0.05})])
    assert [r["epoch"] for r in read_log(tmp_path)] == [1, 2]
    assert [r["lr"] for r in read_log(tmp_path)] == [0.1, 0.05]


def test_no_log_is_an_empty_log(tmp_path):
    assert read_log(tmp_path) == []


def test_a_broken_line_is_named_or_skipped(tmp_path):
    write_log(tmp_path, [json.dumps({"epoch": 1}), '{"epoch": 2, "tot'])
    with pytest.raises(RunLogError, match=r"log.jsonl, line 2: not a JSON record"):
        read_log(tmp_path)
    assert read_log(tmp_path, skip_broken=True) == [{"epoch": 1}]
    write_log(tmp_path, [json.dumps({"total": 1.0})])
    with pytest.raises(RunLogError, match=r"line 1: a record needs an integer 'epoch'"):
        read_log(tmp_path)


def test_keep_epochs_drops_what_the_checkpoint_does_not_cover_and_renumbers_old_logs(tmp_path):
    write_log(tmp_path, [json.dumps({"epoch": e}) for e in (1, 2, 3)] + ['{"epoch": 4'])
    keep_epochs(tmp_path, 2)
    assert (tmp_path / "log.jsonl").read_text().splitlines() == ['{"epoch": 1}', '{"epoch": 2}']
    write_log(tmp_path, [json.dumps({"epoch": e}) for e in (0, 1, 2)])  # old numbering: 3 epochs
    keep_epochs(tmp_path, 2)
    assert [json.loads(line)["epoch"] for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [1, 2]
    keep_epochs(tmp_path, 0)
    assert (tmp_path / "log.jsonl").read_text() == ""


def test_checkpoint_epochs_are_counted_from_one_also_for_old_files():
    assert checkpoint_epoch({"epoch": 4, "epochs_from": 1, "selected_on": "validation"}) == 4  # best.pt now
    assert checkpoint_epoch({"epoch": 3, "selected_on": "validation"}) == 4  # best.pt / metrics.json before
    assert checkpoint_epoch({"epoch": 4}) == 4  # last.pt: finished epochs, either way
    assert checkpoint_epoch({"selected_on": "last"}) is None
