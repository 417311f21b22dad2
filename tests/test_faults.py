"""Fault injection: user mistakes, hostile files, full disks, concurrent writers, kills.

Every case runs the real command line (in this process, or in a subprocess where a process
must die) on the tiny generated dataset and a tiny trained checkpoint, and asserts the exit
code, fgmd's one-line message (no traceback, never torch's ``weights_only=False`` advice) and
that no file that existed before was lost or changed. ``pytest -m faults`` runs this file
alone; the cases that kill processes are also marked ``slow``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from conftest import tiny_overrides
from fgmd.cli.main import main as cli_main
from fgmd.retrieval import Index
from fgmd.retrieval.encode_archive import build_index
from fgmd.retrieval.search import empty_radius
from fgmd.runtime import files
from fgmd.runtime.checkpoint import load_checkpoint

pytestmark = pytest.mark.faults

SRC = Path(__file__).resolve().parents[1] / "src"


# --------------------------------------------------------------------------- helpers


def cli(capsys, *args) -> tuple[int, str, str]:
    """``fgmd ARGS`` in this process: (exit code, stdout, stderr); usage errors included."""
    try:
        code = cli_main([str(a) for a in args])
    except SystemExit as stop:  # argparse
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(err: str, command: str) -> str:
    """The single ``fgmd COMMAND: error: ...`` line of ``err`` (warnings may come before it)."""
    assert "Traceback" not in err, err
    assert "weights_only" not in err, err  # torch's advice to load with weights_only=False, never repeated
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith(f"fgmd {command}: error: "), err
    assert sum(line.startswith("fgmd ") for line in lines) == 1, err
    return lines[-1]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` and its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*.tmp")]


class Evil:
    """Unpickling this would run a command that creates a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@dataclass
class Setup:
    tmp: Path
    data: Path
    checkpoint: Path
    index: Path
    hostile: Path
    marker: Path

    def train(self, out_dir, *extra, **overrides):
        return ["train", "--quiet", *extra, *tiny_overrides(self.data, out_dir, **{"train.epochs": 1, **overrides})]

    def search(self, *extra, index=None, checkpoint=None):
        return [
            "search",
            "--index",
            index or self.index,
            "--checkpoint",
            checkpoint or self.checkpoint,
            "--modality",
            "ms",
            *extra,
        ]


@pytest.fixture(scope="module")
def built_index(tiny_checkpoint, tmp_path_factory):
    """A pan index of the tiny dataset's database split, made by the tiny checkpoint."""
    out = tmp_path_factory.mktemp("faults") / "database.fgidx"
    build_index(tiny_checkpoint, "pan", out, split="database", num_workers=0, progress=False)
    return out


@pytest.fixture
def setup(tiny_dataset, tiny_checkpoint, built_index, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    marker = tmp_path / "PWNED"
    hostile = work / "hostile.pt"
    torch.save({"format": "fgmd-checkpoint", "version": 1, "model": Evil(marker)}, hostile)
    index = work / "database.fgidx"
    shutil.copy(built_index, index)
    return Setup(work, tiny_dataset, tiny_checkpoint, index, hostile, marker)


# --------------------------------------------------------------------------- mistakes


def _existing_run(s: Setup, with_last: bool = False) -> Path:
    run = s.tmp / "run"
    run.mkdir()
    for name in ("best.pt", "log.jsonl", "config.yaml") + (("last.pt",) if with_last else ()):
        (run / name).write_bytes(f"old {name}".encode())
    return run


def _hostile_last(s: Setup) -> Path:
    run = s.tmp / "hostile_run"
    run.mkdir()
    shutil.copy(s.hostile, run / "last.pt")
    return run


def _label_99(s: Setup) -> Path:
    data = s.tmp / "data99"
    shutil.copytree(s.data, data)
    lines = (data / "pairs.csv").read_text().splitlines()
    fields = lines[5].split(",")
    lines[5] = ",".join([fields[0], "99", "", *fields[3:]])
    (data / "pairs.csv").write_text("\n".join(lines) + "\n")
    return data


def _outside_root(s: Setup) -> Path:
    data = s.tmp / "data_out"
    shutil.copytree(s.data, data)
    outside = s.tmp / "elsewhere.png"
    first = sorted((data / "images" / "pan").glob("*.png"))[0]
    shutil.move(first, outside)
    first.symlink_to(outside)  # a symbolic link that leaves the data root
    return data


def _config_file(s: Setup) -> Path:
    path = s.tmp / "config.yaml"
    path.write_text("model:\n  bits: 16\n")
    return path


def _query_image(s: Setup) -> Path:
    return sorted((s.data / "images" / "ms").glob("*.png"))[0]


MISTAKES = {
    "search -k 0": (lambda s: s.search("--split", "query", "-k", "0"), r"argument -k: must be at least 1, got 0"),
    "search -k -1": (lambda s: s.search("--split", "query", "-k", "-1"), r"argument -k: must be at least 1, got -1"),
    "search --radius -1": (
        lambda s: s.search("--split", "query", "--radius", "-1"),
        r"argument --radius: must be at least 0, got -1",
    ),
    "search a missing index": (
        lambda s: s.search("--split", "query", index=s.tmp / "nope.fgidx"),
        r"nope\.fgidx: cannot open the index: no such file",
    ),
    "search without queries": (lambda s: s.search(), r"no queries: give query IMAGE files or --split$"),
    "search --out into a missing folder": (
        lambda s: s.search("--split", "query", "--out", s.tmp / "missing" / "hits.json"),
        r"cannot write .*missing/hits\.json: the folder does not exist",
    ),
    "search an image above the pixel limit": (
        lambda s: s.search(_query_image(s)),
        r"is above fgmd's limit of 0\.0 megapixels; raise FGMD_MAX_PIXELS",
    ),
    "eval a hostile checkpoint": (
        lambda s: ["eval", "--checkpoint", s.hostile],
        r"hostile\.pt: not a trusted fgmd checkpoint",
    ),
    "eval a damaged checkpoint": (
        lambda s: ["eval", "--checkpoint", _truncated(s)],
        r"cut\.pt: damaged or not a checkpoint \(PytorchStreamReader",
    ),
    "index with a hostile checkpoint": (
        lambda s: [
            "index",
            "--checkpoint",
            s.hostile,
            "--modality",
            "pan",
            "--split",
            "database",
            "--out",
            s.tmp / "h.fgidx",
        ],
        r"not a trusted fgmd checkpoint",
    ),
    "search with a hostile checkpoint": (
        lambda s: s.search("--split", "query", checkpoint=s.hostile),
        r"not a trusted fgmd checkpoint",
    ),
    "export a hostile checkpoint": (
        lambda s: ["export", "--checkpoint", s.hostile, "--out", s.tmp / "onnx"],
        r"not a trusted fgmd checkpoint",
    ),
    "report on a hostile checkpoint": (
        lambda s: ["report", s.tmp, "--checkpoint", s.hostile, "--out", s.tmp / "rep"],
        r"not a trusted fgmd checkpoint",
    ),
    "train --resume from a hostile last.pt": (
        lambda s: s.train(_hostile_last(s), "--resume"),
        r"last\.pt: not a trusted fgmd checkpoint",
    ),
    "train from hostile pretrained weights": (
        lambda s: s.train(
            s.tmp / "p", **{"model.pretrained": "imagenet", "model.pretrained_path": s.hostile, "model.width_mult": 1.0}
        ),
        r"hostile\.pt is not a trusted weights file",
    ),
    "train into a folder holding a run": (
        lambda s: s.train(_existing_run(s)),
        r"run already holds a run \(best\.pt, config\.yaml, log\.jsonl\); resume it, overwrite it or choose another "
        r"out_dir \(see --resume, --overwrite\)$",
    ),
    "train --resume without last.pt": (
        lambda s: s.train(_existing_run(s), "--resume"),
        r"cannot resume: .*run holds no last\.pt \(it holds best\.pt, config\.yaml, log\.jsonl\)",
    ),
    "train into a folder below a file": (
        lambda s: s.train(s.hostile / "run"),
        r"cannot write .*hostile\.pt/run: a part of the path is a file, not a folder",
    ),
    "train into /proc": (lambda s: s.train("/proc/fgmd-run"), r"cannot write /proc/fgmd-run: "),
    "train with a bad override": (
        lambda s: ["train", "--config", _config_file(s), "model.bits=13"],
        r"error: override 'model\.bits=13': model\.bits must be a multiple of 8",
    ),
    "train on an out-of-range label": (
        lambda s: s.train(s.tmp / "r99", **{"data.root": _label_99(s)}),
        r"pairs\.csv:6: label 99 implies 100 classes, but no row has class",
    ),
    "check-data on a path leaving the root": (
        lambda s: [
            "check-data",
            "--no-decode",
            "--quiet",
            f"data.root={_outside_root(s)}",
            "data.confine_to_root=true",
        ],
        None,
    ),
    "index over an existing output": (
        lambda s: ["index", "--checkpoint", s.checkpoint, "--modality", "pan", "--split", "database", "--out", s.index],
        r"database\.fgidx exists",
    ),
}
if not torch.cuda.is_available():
    MISTAKES["train on cuda without CUDA"] = (
        lambda s: s.train(s.tmp / "c", **{"train.device": "cuda"}),
        r"device 'cuda' was asked for but CUDA is not available",
    )


def _truncated(s: Setup) -> Path:
    cut = s.tmp / "cut.pt"
    cut.write_bytes(s.checkpoint.read_bytes()[:1000])
    return cut


@pytest.mark.parametrize("name", list(MISTAKES))
def test_a_mistake_gets_one_line_exit_2_and_loses_nothing(setup, capsys, monkeypatch, name):
    make_args, expected = MISTAKES[name]
    if "pixel limit" in name:
        monkeypatch.setenv("FGMD_MAX_PIXELS", "10")
    args = make_args(setup)
    before = snapshot(setup.tmp)
    code, out, err = cli(capsys, *args)
    if name.startswith("check-data"):  # a report, not a single error: exit 1 (data has errors) with the finding
        assert code == 1 and "Traceback" not in err
        assert re.search(
            r"ERROR: .*pairs\.csv:\d+: 1 image path\(s\) lead outside the data root .* -> .*elsewhere\.png "
            r"\(refused: data\.confine_to_root is true\)",
            out,
        ), out
    else:
        assert code == 2, (out, err)
        line = error_line(err, args[0])
        assert re.search(expected, line), line
    assert not setup.marker.exists()  # nothing in a hostile file ran
    after = snapshot(setup.tmp)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing lost or changed
    assert temp_files(setup.tmp) == []


def test_a_path_leaving_the_root_is_a_warning_by_default(setup, capsys):
    data = _outside_root(setup)
    code, out, err = cli(capsys, "check-data", "--no-decode", "--quiet", f"data.root={data}")
    assert code == 0, out + err
    assert "WARNING" in out and "lead outside the data root" in out and "set data.confine_to_root=true" in out


def test_an_empty_radius_result_prints_an_empty_table(setup, capsys, monkeypatch):
    from fgmd.cli.commands import search

    empty = search.render([], "table", {}, None).splitlines()
    assert empty[0].startswith("| query | rank | id | distance") and len(empty) == 2  # header and rule only
    # a radius search that finds nothing, through the command line (every query misses)
    monkeypatch.setattr(Index, "radius_search", lambda self, queries, *args, **kw: empty_radius(len(queries)))
    code, out, err = cli(capsys, *setup.search("--split", "query", "--radius", "0"))
    assert code == 0, err
    assert out.splitlines()[0] == empty[0] and len(out.splitlines()) == 2


# --------------------------------------------------------------------------- one writer per output


HOLDER = """
import sys, types
fgmd = types.ModuleType("fgmd")
fgmd.__path__ = [sys.argv[2]]
sys.modules["fgmd"] = fgmd
from fgmd.runtime import lock
with lock.hold(sys.argv[1], "x"):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def holder():
    """``hold(path)``: another process holds the lock file ``path`` until the test ends."""
    processes = []

    def hold(path: Path) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path), str(SRC / "fgmd")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield hold
    for process in processes:
        process.stdin.close()
        process.wait(timeout=30)


def test_a_second_train_into_a_locked_folder_is_refused(setup, capsys, holder):
    run = setup.tmp / "busy"
    run.mkdir()
    other = holder(run / ".fgmd.lock")
    code, _, err = cli(capsys, *setup.train(run))
    assert code == 2
    line = error_line(err, "train")
    assert re.search(
        rf"run folder .*busy is in use by another fgmd process \(pid {other.pid} on .*, started "
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\); wait for it to finish, or write somewhere else",
        line,
    ), line
    assert sorted(p.name for p in run.iterdir()) == [".fgmd.lock"]  # nothing written by the refused run


def test_a_second_index_of_the_same_output_is_refused(setup, capsys, holder):
    out = setup.tmp / "new.fgidx"
    other = holder(out.with_name("new.fgidx.lock"))
    code, _, err = cli(
        capsys,
        "index",
        "--checkpoint",
        setup.checkpoint,
        "--modality",
        "pan",
        "--split",
        "database",
        "--out",
        out,
        "--quiet",
        "--workers",
        "0",
    )
    assert code == 2
    assert re.search(
        rf"index .*new\.fgidx is in use by another fgmd process \(pid {other.pid} ", error_line(err, "index")
    )
    assert not out.exists() and not out.with_name("new.fgidx.parts").exists()


def test_a_stale_run_lock_is_taken_over_with_a_warning(setup, capsys, caplog):
    run = setup.tmp / "stale"
    run.mkdir()
    (run / ".fgmd.lock").write_text(json.dumps({"pid": 999999, "host": "h", "command": "fgmd train", "started": 0}))
    (run / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")  # what a SIGKILL during a write leaves
    code, out, err = cli(capsys, *setup.train(run))
    assert code == 0, err
    assert (
        "taking over a stale lock left by pid 999999 on h, 'fgmd train', started 1970-01-01 00:00:00 UTC" in caplog.text
    )
    assert temp_files(run) == []
    assert (run / "best.pt").is_file() and not (run / ".fgmd.lock").exists()


def test_overwrite_replaces_a_run_and_resume_continues_it(setup, capsys):
    run = _existing_run(setup)
    code, _, err = cli(capsys, *setup.train(run, "--overwrite"))
    assert code == 0, err
    assert load_checkpoint(run / "last.pt")["epoch"] == 1
    assert len((run / "log.jsonl").read_text().splitlines()) == 1
    code, _, err = cli(capsys, *setup.train(run, "--resume", **{"train.epochs": 2}))
    assert code == 0, err
    assert load_checkpoint(run / "last.pt")["epoch"] == 2
    assert [json.loads(line)["epoch"] for line in (run / "log.jsonl").read_text().splitlines()] == [1, 2]


# --------------------------------------------------------------------------- full disk


def disk_full_at(monkeypatch, name_part: str):
    """Make every atomic write of a file whose name contains ``name_part`` fail with ENOSPC
    after writing part of its data (the temporary file's fsync fails)."""
    real_fsync = os.fsync
    current = {}
    real_mkstemp = files.tempfile.mkstemp

    def mkstemp(prefix="", suffix="", dir=None):
        fd, name = real_mkstemp(prefix=prefix, suffix=suffix, dir=dir)
        current[fd] = name
        return fd, name

    def fsync(fd):
        if name_part in current.get(fd, ""):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(files.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(files.os, "fsync", fsync)


DISK_FULL = {
    "eval --out": (
        lambda s: (
            s.tmp / "metrics.json",
            ["eval", "--quiet", "--checkpoint", s.checkpoint, "--out", s.tmp / "metrics.json"],
        )
    ),
    "search --out": (
        lambda s: (s.tmp / "hits.csv", s.search("--split", "query", "--format", "csv", "--out", s.tmp / "hits.csv"))
    ),
    "index --overwrite (merge)": (
        lambda s: (
            s.index,
            [
                "index",
                "--checkpoint",
                s.checkpoint,
                "--modality",
                "pan",
                "--split",
                "database",
                "--out",
                s.index,
                "--overwrite",
                "--quiet",
                "--workers",
                "0",
            ],
        )
    ),
    "train --resume (last.pt)": None,  # needs a finished run: see the test
}


@pytest.mark.parametrize("name", list(DISK_FULL))
def test_a_full_disk_keeps_the_old_file_and_leaves_no_partial_file(setup, capsys, monkeypatch, name):
    if name.startswith("train"):  # one more epoch of a finished 1-epoch run; writing its last.pt fails
        run = setup.tmp / "run"
        assert cli(capsys, *setup.train(run))[0] == 0
        target, args = run / "last.pt", setup.train(run, "--resume", **{"train.epochs": 2})
    else:
        target, args = DISK_FULL[name](setup)
    if not target.exists():
        target.write_text("old results\n")
    old = target.read_bytes()
    disk_full_at(monkeypatch, f".{target.name}.")
    code, _, err = cli(capsys, *args)
    assert code == 2
    line = error_line(err, args[0])
    assert re.search(
        rf"cannot write .*{re.escape(target.name)}: no space left on the device \(the existing file is unchanged\)",
        line,
    ), line
    assert target.read_bytes() == old
    assert temp_files(setup.tmp) == []
    assert not list(setup.tmp.rglob("*.lock"))  # released on the way out


# --------------------------------------------------------------------------- killed processes (slow)


KILLER = """
import os, signal, sys
from fgmd.cli.main import main
import fgmd.training.trainer as trainer
import fgmd.retrieval.encode_archive as archive
point = sys.argv[1]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if point == "mid-epoch":  # at the second training step of the second epoch
    train_epoch, train_step = trainer.Trainer.train_epoch, trainer.Trainer.train_step
    seen = {"epoch": None, "steps": 0}
    def epoch_hook(self, epoch):
        seen["epoch"] = epoch
        return train_epoch(self, epoch)
    def step_hook(self, batch, clock=None):
        if seen["epoch"] == 1:
            seen["steps"] += 1
            if seen["steps"] == 2:
                die()
        return train_step(self, batch, clock)
    trainer.Trainer.train_epoch, trainer.Trainer.train_step = epoch_hook, step_hook
elif point == "after last.pt":  # right after epoch 1's last.pt is on disk
    save = trainer.save_checkpoint
    def save_checkpoint(path, payload):
        save(path, payload)
        if path.name == "last.pt" and payload["epoch"] == 1:
            die()
    trainer.save_checkpoint = save_checkpoint
elif point == "validation":  # inside the second validation
    validate = trainer.Trainer.validate
    calls = []
    def validating(self):
        calls.append(1)
        if len(calls) == 2:
            die()
        return validate(self)
    trainer.Trainer.validate = validating
elif point == "index merge":  # while the merged index is being written
    import fgmd.runtime.files as files
    write = files.write_atomic
    def write_atomic(path, data, **kw):
        if str(path).endswith("out.fgidx"):
            def partial(handle):
                handle.write(b"FGMDIDX1 partial")
                handle.flush()
                die()
            return write(path, partial, **kw)
        return write(path, data, **kw)
    files.write_atomic = write_atomic
    archive.write_atomic = write_atomic
    import fgmd.retrieval.index_file as index_file
    index_file.write_atomic = write_atomic
sys.exit(main(sys.argv[2:]))
"""


def run_killed(point: str, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(Path(__file__).parent)])}
    return subprocess.run(
        [sys.executable, "-c", KILLER, point, *map(str, args)], capture_output=True, text=True, env=env
    )


@pytest.fixture(scope="module")
def reference_run(tiny_dataset, tmp_path_factory):
    """An uninterrupted 2-epoch tiny run to compare resumed runs with."""
    run = tmp_path_factory.mktemp("reference") / "run"
    assert cli_main(["train", "--quiet", *tiny_overrides(tiny_dataset, run, **{"train.epochs": 2})]) == 0
    return run


@pytest.mark.slow
@pytest.mark.parametrize("point", ["mid-epoch", "after last.pt", "validation"])
def test_a_run_killed_at_any_point_resumes_bit_identical(reference_run, tiny_dataset, tmp_path, capsys, caplog, point):
    run = tmp_path / "run"
    overrides = tiny_overrides(tiny_dataset, run, **{"train.epochs": 2})
    killed = run_killed(point, "train", "--quiet", *overrides)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert load_checkpoint(run / "last.pt")["epoch"] == 1  # the kill came after epoch 1 was saved
    code, _, err = cli(capsys, "train", "--quiet", "--resume", *overrides)
    assert code == 0, err
    assert "stale lock" in caplog.text  # the killed run's lock was found and explained
    a, b = load_checkpoint(reference_run / "last.pt"), load_checkpoint(run / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    ref_log = [json.loads(line) for line in (reference_run / "log.jsonl").read_text().splitlines()]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["mining_digest"] for r in log] == [r["mining_digest"] for r in ref_log]
    assert temp_files(run) == []


@pytest.mark.slow
def test_an_index_killed_while_merging_keeps_the_old_index_and_finishes_identically(setup, capsys):
    out = setup.tmp / "out.fgidx"
    shutil.copy(setup.index, out)
    old = out.read_bytes()
    args = [
        "index",
        "--checkpoint",
        setup.checkpoint,
        "--modality",
        "pan",
        "--split",
        "database",
        "--out",
        out,
        "--overwrite",
        "--quiet",
        "--workers",
        "0",
        "--chunk-size",
        "8",
    ]
    killed = run_killed("index merge", *args)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert out.read_bytes() == old  # the old index is intact under its name
    assert temp_files(setup.tmp)  # the kill left the partial temporary file behind ...
    code, _, err = cli(capsys, *args)
    assert code == 0, err
    assert temp_files(setup.tmp) == []  # ... which the next run of the same output removed
    assert Index.load(out).ids.tolist() == Index.load(setup.index).ids.tolist()
    assert (Index.load(out).codes == Index.load(setup.index).codes).all()


@pytest.mark.slow
def test_concurrent_searches_give_identical_results(setup):
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    outs = [setup.tmp / f"hits{i}.json" for i in range(2)]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fgmd",
                *map(str, setup.search("--split", "query", "--format", "json", "--out", out)),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for out in outs
    ]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()
    assert outs[0].read_bytes() == outs[1].read_bytes()
    assert json.loads(outs[0].read_text())["queries"]
