"""Plain-text tables for the terminal."""

from __future__ import annotations

from collections.abc import Sequence


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table (readable as plain text too); floats printed with 4 decimals."""
    cells = [[f"{c:.4f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])


def metrics_table(metrics: dict) -> str:
    """Both directions and their mean, one row each, from an evaluation result."""
    first = next(iter(metrics["directions"].values()))
    keys = ["map"] + sorted(k for k in first if k.startswith("map@")) + sorted(
        (k for k in first if k.startswith("precision@")), key=lambda k: int(k.split("@")[1])
    )
    rows = [[name, *(values[k] for k in keys)] for name, values in metrics["directions"].items()]
    rows.append(["mean", *(metrics["mean"][k] for k in keys)])
    return render_table(["direction", *keys], rows)
