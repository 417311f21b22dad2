"""Self-contained HTML pages for ``fgmd report``: figures inlined as base64 PNG, no external
assets, readable offline and attachable to a message."""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d232b;
       max-width: 1280px; margin: 24px auto; padding: 0 18px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 30px; border-bottom: 1px solid #d8dde3; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #d8dde3; padding: 4px 9px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f6f8; }
img { max-width: 100%; border: 1px solid #eef1f4; }
.warning { background: #fff4e5; border: 1px solid #f0c36d; padding: 8px 12px; border-radius: 6px; }
.muted { color: #5f6b7a; }
.low { color: #c62828; } .high { color: #1a7f37; }
"""


def _png(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def _inline(text: str) -> str:
    """Escape ``text`` and turn markdown ``code`` and **bold** into HTML."""
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def markdown_table(table: str) -> str:
    """A markdown pipe table (header, ``|---|`` rule, rows) as an HTML table."""
    rows = [line.strip().strip("|").split("|") for line in table.strip().splitlines()]
    head, body = rows[0], [r for r in rows[2:]]
    parts = ["<table><thead><tr>", *(f"<th>{_inline(c.strip())}</th>" for c in head), "</tr></thead><tbody>"]
    for row in body:
        parts += ["<tr>", *(f"<td>{_inline(c.strip())}</td>" for c in row), "</tr>"]
    return "".join(parts) + "</tbody></table>"


def markdown_section(text: str, folder: Path) -> list[str]:
    """HTML of a report section written in the markdown subset the reports use: ``##``/``###``
    headings, ``- `` bullets, pipe tables, ``![alt](file.png)`` figures (inlined from
    ``folder``) and paragraphs."""
    html_parts: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        image = re.fullmatch(r"!\[[^\]]*\]\(([^)]+)\)", line.strip())
        if line.startswith("### "):
            html_parts.append(f"<h3>{_inline(line[4:])}</h3>")
        elif line.startswith("## "):
            html_parts.append(f"<h2>{_inline(line[3:])}</h2>")
        elif line.startswith("|"):
            table = []
            while i < len(lines) and lines[i].startswith("|"):
                table.append(lines[i])
                i += 1
            html_parts.append(markdown_table("\n".join(table)))
            continue
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            html_parts.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif image and (folder / image.group(1)).is_file():
            html_parts.append(_png(folder / image.group(1)))
        elif line.strip():
            html_parts.append(f"<p>{_inline(line)}</p>")
        i += 1
    return html_parts


def _page(title: str, body: list[str]) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _class_table(class_ap: Mapping[str, Mapping[str, dict]], chance: Mapping[str, float]) -> str:
    directions = list(class_ap)
    classes = list(dict.fromkeys(c for values in class_ap.values() for c in values))
    parts = ["<table><thead><tr><th>class</th>"]
    parts += [f"<th>{html.escape(d.replace('->', ' → '))} AP</th><th>queries</th>" for d in directions]
    parts.append("</tr></thead><tbody>")
    for name in classes:
        parts.append(f"<tr><td>{html.escape(name)}</td>")
        for direction in directions:
            values = class_ap[direction][name]
            ap = values["ap"]
            css = "" if math.isnan(ap) else ("low" if ap < 2 * chance[direction] else "high" if ap >= 0.5 else "")
            text = "–" if math.isnan(ap) else f"{ap:.4f}"
            parts.append(f'<td class="{css}">{text}</td><td>{values["queries"]}</td>')
        parts.append("</tr>")
    parts.append("<tr><td><i>chance (random ranking)</i></td>")
    parts += [f"<td>{chance[d]:.4f}</td><td></td>" for d in directions]
    return "".join(parts) + "</tr></tbody></table>"


def render_report(
    title: str,
    summary: Sequence[str],
    warnings: Sequence[str],
    metrics_table: str,
    views_table: str,
    class_ap: Mapping[str, Mapping[str, dict]],
    chance: Mapping[str, float],
    figures: Mapping[str, Path],
    grids: Mapping[str, Path],
    diagnostics: str = "",
) -> str:
    """The run report as one HTML page (tables from the markdown report, figures inlined);
    ``diagnostics``: the markdown of the module diagnostics section (figures beside it)."""
    body = [f"<h1>{html.escape(title)}</h1>", "<ul>", *(f"<li>{_inline(line)}</li>" for line in summary), "</ul>"]
    body += [f'<p class="warning"><b>Warning:</b> {_inline(w)}.</p>' for w in warnings]
    body += ["<h2>Retrieval metrics of this checkpoint (test split)</h2>", markdown_table(metrics_table)]
    body += [
        "<h2>Model selection</h2>",
        '<p class="muted">All rows are scored on the test split. Only the validation-selected model is an honest '
        "estimate; the best-on-test row picks the epoch by its test score and is optimistic.</p>",
        markdown_table(views_table),
    ]
    body += [
        "<h2>AP per class</h2>",
        '<p class="muted">Mean AP (full Hamming ranking, ties by database index) of the test queries of each class; '
        "red: below twice the chance level, green: 0.5 or more. Numbers in per_class_ap.csv.</p>",
        _class_table(class_ap, chance),
    ]
    body += [
        "<h2>Precision–recall (Hamming radius)</h2>",
        '<p class="muted">Dotted: chance, the precision of a random ranking. Numbers in pr_curves.csv.</p>',
        _png(figures["pr"]),
        "<h2>Precision@k and recall@k</h2>",
        '<p class="muted">Numbers in precision_at_k.csv.</p>',
        _png(figures["pk"]),
        "<h2>Retrieval examples</h2>",
        '<p class="muted">One query per class (blue) and its top results from the other modality by Hamming '
        "distance d; green = same class, red = other class; ids under the images.</p>",
    ]
    for direction, path in grids.items():
        body += [f"<h3>{html.escape(direction.replace('->', ' → '))}</h3>", _png(path)]
    if "curves" in figures:
        body += ["<h2>Training curves</h2>", _png(figures["curves"])]
    body += ["<h2>Code projection</h2>", _png(figures["pca"])]
    if diagnostics:
        body += markdown_section(diagnostics, Path(figures["pca"]).parent)
    return _page(title, body)


def render_comparison(
    rows: Sequence[Mapping[str, object]],
    columns: Sequence[str],
    figures: Mapping[str, Path],
    chance: Mapping[str, float],
) -> str:
    """Several runs on one page: their metrics and overlaid curves."""

    def cell(value: object) -> str:
        return f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))

    table = ["<table><thead><tr>", *(f"<th>{html.escape(c)}</th>" for c in columns), "</tr></thead><tbody>"]
    for row in rows:
        table += ["<tr>", *(f"<td>{cell(row.get(c, ''))}</td>" for c in columns), "</tr>"]
    table.append("</tbody></table>")
    levels = ", ".join(f"{d.replace('->', ' → ')} {v:.4f}" for d, v in chance.items())
    body = [
        "<h1>FG-MD run comparison</h1>",
        f'<p class="muted">{len(rows)} runs; test-split metrics of each run\'s report (its best.pt). '
        f"Chance level (random ranking): {html.escape(levels)}. Numbers in compare.csv.</p>",
        "".join(table),
        "<h2>Precision–recall (Hamming radius)</h2>",
        _png(figures["pr"]),
        "<h2>Precision@k</h2>",
        _png(figures["pk"]),
    ]
    return _page("FG-MD run comparison", body)
