"""Result tables of sweeps and ablations, written as markdown (for people) and CSV (for scripts)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from fgmd.runtime.files import make_folder, write_atomic
from fgmd.tables import render_table


def markdown_table(rows: Sequence[dict], columns: Sequence[str], titles: dict[str, str]) -> str:
    """A markdown table of ``rows`` (dicts) restricted to ``columns``, headed by ``titles``."""
    return render_table([titles.get(c, c) for c in columns], [[row.get(c) for c in columns] for row in rows])


def write_csv(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> Path:
    """``rows`` as CSV with a header of the machine-readable ``columns`` keys; ``None`` -> empty."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return write_atomic(path, buffer.getvalue())


def write_tables(
    out_dir: Path,
    stem: str,
    title: str,
    rows: Sequence[dict],
    columns: Sequence[str],
    titles: dict[str, str],
    notes: Sequence[str] = (),
    md_columns: Sequence[str] | None = None,
) -> tuple[Path, Path]:
    """Write ``<stem>.md`` (title, table, notes) and ``<stem>.csv`` (every column) into ``out_dir``."""
    make_folder(out_dir)
    text = [f"# {title}", "", markdown_table(rows, md_columns or columns, titles), ""]
    text += [f"- {note}" for note in notes]
    md = out_dir / f"{stem}.md"
    write_atomic(md, "\n".join(text).rstrip() + "\n")
    return md, write_csv(out_dir / f"{stem}.csv", rows, columns)
