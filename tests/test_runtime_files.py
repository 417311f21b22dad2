"""fgmd.runtime.files (atomic writes) and fgmd.runtime.lock (one writer per output)."""

from __future__ import annotations

import ast
import errno
import json
import logging
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fgmd.retrieval import Index
from fgmd.runtime import files, lock
from fgmd.runtime.checkpoint import load_checkpoint, save_checkpoint
from fgmd.runtime.files import OutputError, append_line, make_folder, new_file_mode, write_atomic

SRC = Path(__file__).resolve().parents[1] / "src"


def leftovers(folder: Path) -> list[str]:
    """Temporary files of write_atomic left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_atomic_writes_bytes_text_and_callables(tmp_path):
    target = tmp_path / "out.bin"
    write_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    write_atomic(target, "héllo")
    assert target.read_text(encoding="utf-8") == "héllo"
    write_atomic(target, lambda handle: handle.write(b"from a callable"))
    assert target.read_bytes() == b"from a callable"
    assert leftovers(tmp_path) == []


def test_write_atomic_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    os.chmod(target, 0o640)
    write_atomic(target, "new")
    assert target.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("fails_in", ["write", "fsync", "replace"])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch, fails_in):
    target = tmp_path / "metrics.json"
    target.write_text("old contents")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if fails_in == "write":
        data = lambda handle: (handle.write(b"partial"), disk_full())  # noqa: E731
    else:
        data = "new contents"
        monkeypatch.setattr(files.os, fails_in, disk_full)
    with pytest.raises(
        OutputError,
        match=r"cannot write .*metrics.json: no space left on the device \(the existing file is unchanged\)",
    ):
        write_atomic(target, data)
    monkeypatch.undo()
    assert target.read_text() == "old contents"
    assert leftovers(tmp_path) == []


def test_a_failed_first_write_leaves_no_file_at_all(tmp_path, monkeypatch):
    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", disk_full)
    with pytest.raises(OutputError, match="no space left"):
        write_atomic(tmp_path / "new.json", "{}")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_a_real_full_file_system_keeps_the_old_file(tmp_path):
    """On a 1 MiB tmpfs (needs root; skipped elsewhere, where the ENOSPC tests above stand in)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        target = mount / "index.bin"
        write_atomic(target, b"old" * 1000)
        with pytest.raises(OutputError, match="no space left"):
            write_atomic(target, os.urandom(2 * 1024 * 1024))
        assert target.read_bytes() == b"old" * 1000
        assert leftovers(mount) == []
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_append_line_adds_whole_lines_and_repairs_a_torn_last_line(tmp_path):
    log = tmp_path / "log.jsonl"
    append_line(log, '{"epoch": 0}')
    append_line(log, '{"epoch": 1}')
    assert log.read_text() == '{"epoch": 0}\n{"epoch": 1}\n'
    log.write_text('{"epoch": 0}\n{"epo')  # a line cut by an old-style append
    append_line(log, '{"epoch": 1}')
    assert log.read_text().splitlines() == ['{"epoch": 0}', '{"epo', '{"epoch": 1}']


@pytest.mark.parametrize("make_parent", ["file", "proc"])
def test_make_folder_names_the_folder_and_the_cause(tmp_path, make_parent):
    if make_parent == "file":
        (tmp_path / "afile").write_text("x")
        folder, cause = tmp_path / "afile" / "run", "is a file, not a folder"
    else:
        folder, cause = Path("/proc/fgmd-test/run"), ""
    with pytest.raises(OutputError, match=re.escape(f"cannot write {folder}: ") + ".*" + re.escape(cause)):
        make_folder(folder)


WRITERS = {"write_text", "write_bytes", "savefig", "fdopen", "to_csv", "dump"}


def writing_calls(tree: ast.AST) -> list[int]:
    """Lines of calls that write a file directly: ``x.write_text(...)``, ``torch.save(...)``,
    ``open(..., "w")``/``path.open("a")``, ``figure.savefig(...)``, ``json.dump(...)``, ..."""
    inside = {  # writers handed to write_atomic write into its temporary file: allowed
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "write_atomic"
        for argument in node.args[1:]
        for inner in ast.walk(argument)
    }
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or id(node) in inside:
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name == "save" and isinstance(node.func, ast.Attribute) and getattr(node.func.value, "id", "") == "torch":
            lines.append(node.lineno)
        elif (
            name == "export" and isinstance(node.func, ast.Attribute) and getattr(node.func.value, "attr", "") == "onnx"
        ):
            lines.append(node.lineno)
        elif name in WRITERS:
            lines.append(node.lineno)
        elif name == "open":
            modes = [a for a in node.args[1:2] if isinstance(a, ast.Constant)]
            if isinstance(node.func, ast.Attribute):  # path.open(mode)
                modes = [a for a in node.args[:1] if isinstance(a, ast.Constant)]
            modes += [k.value for k in node.keywords if k.arg == "mode" and isinstance(k.value, ast.Constant)]
            if any(set(str(m.value)) & set("wax+") for m in modes):
                lines.append(node.lineno)
    return lines


def test_no_output_is_written_any_other_way():
    """Every file fgmd writes goes through runtime.files (issue 13, point 2): no module but
    runtime/files.py opens a file for writing or calls a library's own file writer."""
    offenders = []
    for path in sorted((SRC / "fgmd").rglob("*.py")):
        if path.relative_to(SRC).as_posix() == "fgmd/runtime/files.py":
            continue
        text = path.read_text()
        for number in writing_calls(ast.parse(text)):
            offenders.append(f"{path.relative_to(SRC)}:{number}: {text.splitlines()[number - 1].strip()}")
    assert offenders == []


def test_the_writer_scan_finds_direct_writes():
    found = writing_calls(
        ast.parse(
            "p.write_text('x')\ntorch.save(s, f)\nopen(p, 'w')\np.open('a')\nopen(p)\nfig.savefig(p)\nopen(p, mode='rb')\n"
            "write_atomic(p, lambda f: torch.save(s, f))\ntorch.onnx.export(m, x, p)"
        )
    )
    assert sorted(found) == [1, 2, 3, 4, 6, 9]


# --------------------------------------------------------------------------- locks

HOLDER = """
import sys, types
fgmd = types.ModuleType("fgmd")  # fgmd.runtime imports nothing else: skip the package's (torch) imports
fgmd.__path__ = [sys.argv[2]]
sys.modules["fgmd"] = fgmd
from fgmd.runtime import lock
with lock.hold(sys.argv[1], "test output"):
    print("held", flush=True)
    sys.stdin.read()
"""


def hold_in_another_process(path: Path) -> subprocess.Popen:
    """A process that holds the lock ``path`` until its stdin is closed."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(SRC / "fgmd")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path):
    path = tmp_path / ".fgmd.lock"
    holder = hold_in_another_process(path)
    try:
        with pytest.raises(lock.LockedError) as caught:
            with lock.hold(path, "run folder x"):
                pass
        message = str(caught.value)
        assert message.startswith("run folder x is in use by another fgmd process")
        assert f"pid {holder.pid} on " in message and re.search(r"started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", message)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    with lock.hold(path, "run folder x"):  # released when the holder ended
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()  # removed on release


def test_a_killed_holder_leaves_a_stale_lock_that_is_taken_over_with_a_warning(tmp_path, caplog):
    path = tmp_path / ".fgmd.lock"
    holder = hold_in_another_process(path)
    holder.kill()  # SIGKILL: no chance to remove the file
    holder.wait(timeout=30)
    assert json.loads(path.read_text())["pid"] == holder.pid
    with caplog.at_level(logging.WARNING, logger="fgmd.runtime"):
        with lock.hold(path, "index a.fgidx"):
            pass
    assert f"taking over a stale lock left by pid {holder.pid}" in caplog.text
    assert "no longer running" in caplog.text


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    path = tmp_path / ".fgmd.lock"
    with lock.hold(path, "x"):
        with lock.hold(path, "x"):
            pass
        assert path.exists()  # still held by the outer hold
    assert not path.exists()


@pytest.fixture
def umask():
    """Set the process umask for a test, restoring it afterwards."""
    old = os.umask(0o022)
    yield lambda value: os.umask(value)
    os.umask(old)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_checkpoints_and_indexes_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    assert new_file_mode() == expected
    path = save_checkpoint(tmp_path / "best.pt", {"model": {"w": torch.ones(2)}})
    assert stat.S_IMODE(path.stat().st_mode) == expected
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    codes = np.random.default_rng(0).standard_normal((3, 16))
    index = Index(16, "pan", {"bits": 16}, codes, ["a", "b", "c"]).save(tmp_path / "x.fgidx")
    assert stat.S_IMODE(index.stat().st_mode) == expected
    assert os.umask(mask) == mask  # reading the mode left the umask as it was
