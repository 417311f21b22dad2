"""The README's Python API block runs as written (in a fresh folder)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_api_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Python API") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the Python API section has no python block"
    return match.group(1)


def test_readme_python_api_block_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(python_api_block(), str(README) + ":Python API", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert re.search(r"mean mAP \d\.\d{3}; codes \(3, 16\); self-retrieval mAP 1\.00", out), out
    assert (tmp_path / "runs" / "api" / "run" / "metrics.json").is_file()
