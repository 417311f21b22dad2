"""Terminal tables of evaluation results."""

from __future__ import annotations

from fgmd.tables import render_table


def metrics_table(metrics: dict) -> str:
    """Both directions and their mean, one row each, from an evaluation result."""
    first = next(iter(metrics["directions"].values()))
    keys = ["map"] + sorted(k for k in first if k.startswith("map@")) + sorted(
        (k for k in first if k.startswith("precision@")), key=lambda k: int(k.split("@")[1])
    )
    rows = [[name, *(values[k] for k in keys)] for name, values in metrics["directions"].items()]
    rows.append(["mean", *(metrics["mean"][k] for k in keys)])
    return render_table(["direction", *keys], rows)
