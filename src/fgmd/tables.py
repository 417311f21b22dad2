"""Markdown tables (readable as plain text too), used by the CLI, experiments and reports."""

from __future__ import annotations

from collections.abc import Sequence


def format_cell(value: object) -> str:
    """Cell text: floats with 4 decimals, ``None`` as an en dash, anything else ``str``."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table of ``rows`` under ``headers``; no rows gives the header alone."""
    header = [str(h) for h in headers]
    cells = [[format_cell(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])
