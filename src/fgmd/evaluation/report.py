"""Visual report of a run: PNG figures and one ``report.md`` page that links them.

``generate_report(run_dir)`` loads ``best.pt`` (the model selected on validation), encodes
the query and database splits of both modalities and writes into ``run_dir/report/``:

- ``pr_curves.png``: PR curves of Hamming-radius retrieval, both directions;
- ``precision_at_k.png``: precision@k / recall@k curves, both directions;
- ``retrieval_<a>_to_<b>.png`` per direction: a few queries with their top-10 from the
  other modality, green frame = same class, red = other class;
- ``training_curves.png``: every loss term per epoch and validation mAP (test mAP too when
  tracked) per evaluation, from ``log.jsonl``;
- ``codes_pca.png``: 2-D PCA of the database codes, coloured by class;
- the module diagnostics of :func:`fgmd.evaluation.diagnostics.report_diagnostics` (runs
  with FDFSP, ADF or DAMD): ``adf_gates.png``, ``fdfsp_band_gains.png``, ``fdfsp_spectra.png``,
  ``damd_attention.png``, ``damd_terms.png``, ``identity_distance.png``, ``diagnostics.json``;
- ``report.md``: metrics of both directions, the three model-selection views (selected on
  validation / last epoch / best on test, optimistic) and the figures;
- ``report.html``: the same page, self-contained (figures inline), plus the AP of each class;
- ``pr_curves.csv``, ``precision_at_k.csv``, ``per_class_ap.csv``: the numbers behind the
  curves and the per-class table. The chance level (dotted in the curves) is the precision of
  a random ranking: the mean over queries of the fraction of relevant database items.

``compare_runs(run_dirs, out)`` overlays the curves of several runs (a sweep, an ablation)
from their CSVs and writes ``compare.html`` and ``compare.csv``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from fgmd.codes import hamming_distance, sign_codes
from fgmd.data.datasets import build_dataset
from fgmd.data.preprocess import build_preprocessor
from fgmd.evaluation import plots, report_html
from fgmd.evaluation.diagnostics import report_diagnostics
from fgmd.evaluation.evaluate import cross_modal_metrics, encode_images, metric_title, metrics_table
from fgmd.evaluation.metrics import (
    average_precision_per_query,
    pr_curve_by_radius,
    precision_recall_at_ranks,
    relevance,
)
from fgmd.models import load_run
from fgmd.runtime.device import resolve_device
from fgmd.runtime.files import make_folder, write_atomic
from fgmd.runtime.run_log import checkpoint_epoch, read_log
from fgmd.tables import render_table

REPORT_DIR = "report"


def _ranks(num_db: int, points: int = 60) -> list[int]:
    """Cut-offs 1..N for the P@k curve: dense at the top, about ``points`` values in all."""
    values = np.unique(np.round(np.geomspace(1, num_db, points)).astype(int))
    return sorted(set(values.tolist()) | set(range(1, min(num_db, 20) + 1)))


def _pick_queries(labels: torch.Tensor, count: int, seed: int) -> list[int]:
    """``count`` query indices spread over the classes (one per class in turn), reproducible."""
    generator = torch.Generator().manual_seed(seed)
    first = labels.argmax(1)
    pools = []
    for label in first.unique().tolist():
        members = (first == label).nonzero().flatten()
        pools.append(members[torch.randperm(len(members), generator=generator)].tolist())
    picked: list[int] = []
    while len(picked) < min(count, len(labels)):
        for pool in pools:
            if pool and len(picked) < count:
                picked.append(pool.pop(0))
    return picked


def degenerate_code_warnings(codes: dict[str, torch.Tensor], role: str) -> list[str]:
    """Warnings for modalities whose codes (sign-binarised) take very few distinct values.

    With identical codes every distance ties, the ranking is the database order and mAP
    reflects how the database happens to be sorted, not the model.
    """
    warnings = []
    for modality, values in codes.items():
        distinct = len(torch.unique(sign_codes(values), dim=0))
        if len(values) > 1 and distinct <= max(1, len(values) // 50):
            warnings.append(
                f"{len(values)} {role} codes of {modality} take only {distinct} distinct value(s): distances tie, "
                "the ranking falls back to database order and the mAP mostly reflects that order, not the model"
            )
    return warnings


def _label_text(label: torch.Tensor, class_names: Sequence[str]) -> str:
    names = [class_names[i] for i in (label > 0).nonzero().flatten().tolist()]
    text = "+".join(names) or "(none)"
    return text if len(text) <= 18 else text[:17] + "…"


def _selection_views(
    run_dir: Path, log: list[dict], state: dict, checkpoint_metrics: dict, checkpoint: Path
) -> list[dict]:
    """Rows for the model-selection table: selected on validation, last epoch, best on test."""
    views = []
    selected_on = state.get("selected_on", "last")
    if checkpoint.name == "best.pt":
        label = (
            "selected on validation (best.pt)"
            if selected_on == "validation"
            else "best.pt (no validation split: last epoch)"
        )
        views.append({"view": label, "epoch": checkpoint_epoch(state), "metrics": checkpoint_metrics})
    else:
        views.append({"view": f"this checkpoint ({checkpoint.name})", "epoch": None, "metrics": checkpoint_metrics})
    last_path = run_dir / "metrics_last.json"
    last_log = [r for r in log if "test" in r and r["epoch"] == len(log)]
    if last_path.exists():
        views.append(
            {"view": "last epoch (last.pt)", "epoch": len(log) or None, "metrics": json.loads(last_path.read_text())}
        )
    elif last_log:
        views.append({"view": "last epoch (from the test log)", "epoch": len(log), "metrics": last_log[0]["test"]})
    else:
        views.append(
            {
                "view": "last epoch",
                "epoch": len(log) or None,
                "metrics": None,
                "note": "not evaluated (fgmd sweep/ablate write metrics_last.json)",
            }
        )
    tested = [r for r in log if "test" in r]
    if tested:
        best = max(tested, key=lambda r: r["test"]["mean_map"])
        views.append(
            {
                "view": "best on test — optimistic, as the published FSISR/FG-MD scripts select",
                "epoch": best["epoch"],
                "metrics": best["test"],
            }
        )
    else:
        views.append(
            {
                "view": "best on test — optimistic",
                "epoch": None,
                "metrics": None,
                "note": "not tracked (train.track_test=false)",
            }
        )
    return views


def _views_table(views: list[dict], directions: list[str]) -> str:
    """One row per model-selection view: mAP of each direction and the mean, index-broken and tie-aware."""
    keys = ("map", "map_tie")
    headers = ["model", "epoch"]
    headers += [f"{d.replace('->', ' → ')} {metric_title(k)}" for d in directions for k in keys]
    headers += [f"mean {metric_title(k)}" for k in keys]
    rows = []
    for view in views:
        metrics = view["metrics"]
        if metrics is None:
            cells: list[object] = [None] * (2 * len(directions) + 1) + [view["note"]]
        else:
            cells = [metrics["directions"][d].get(k) for d in directions for k in keys]
            cells += [metrics["mean"].get(k) for k in keys]
        rows.append([view["view"], view["epoch"], *cells])
    return render_table(headers, rows)


@torch.no_grad()
def generate_report(
    run_dir: str | Path,
    checkpoint: str | Path | None = None,
    out_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    num_queries: int | None = None,
    top_k: int = 10,
    seed: int = 0,
    progress: bool = False,
) -> Path:
    """Write the figures and ``report.md`` of ``run_dir``; returns the path of ``report.md``.

    Args:
        run_dir: a run folder (``best.pt``, ``log.jsonl``, ...).
        checkpoint: the model to report on (default ``run_dir/best.pt``).
        out_dir: where to write (default ``run_dir/report``).
        overrides: config overrides for evaluation, e.g. ``data.root=/moved/data``.
        num_queries: queries per retrieval grid (default: one per class); top_k: results
            shown per query.
        seed: picks the grid queries.
    """
    run_dir = Path(run_dir)
    checkpoint = Path(checkpoint) if checkpoint else run_dir / "best.pt"
    out = Path(out_dir) if out_dir else run_dir / REPORT_DIR
    model, config, state = load_run(checkpoint, overrides)
    make_folder(out)
    class_names = list(state.get("class_names") or [])
    device = resolve_device(config.train.device)
    model.to(device)

    data = config.data
    inputs = {m: build_preprocessor(data, m) for m in data.modalities}
    query_split = build_dataset(data, data.query_split)
    db_split = query_split if data.database_split == data.query_split else build_dataset(data, data.database_split)
    class_names = class_names or query_split.class_names
    modalities = list(data.modalities)
    queries = {m: query_split.images(m) for m in modalities}  # untransformed, for display
    database = {m: db_split.images(m) for m in modalities}

    def codes_of(split, modality: str) -> torch.Tensor:
        images = split.images(modality, inputs[modality])
        return encode_images(model, images, config.eval.batch_size, device, data.num_workers, progress)

    q_codes = {m: codes_of(query_split, m) for m in modalities}
    db_codes = {m: codes_of(db_split, m) for m in modalities}
    q_labels = {m: queries[m].labels for m in modalities}
    db_labels = {m: database[m].labels for m in modalities}
    metrics = cross_modal_metrics(q_codes, q_labels, db_codes, db_labels, config.eval)
    warnings = degenerate_code_warnings(db_codes, "database") + degenerate_code_warnings(q_codes, "query")

    pairs = [(modalities[0], modalities[1]), (modalities[1], modalities[0])]
    directions = [f"{a}->{b}" for a, b in pairs]
    pr, pk, chance, class_ap = {}, {}, {}, {}
    for (a, b), direction in zip(pairs, directions):
        pr[direction] = pr_curve_by_radius(q_codes[a], db_codes[b], q_labels[a], db_labels[b])
        ranks = _ranks(len(db_codes[b]))
        pk[direction] = precision_recall_at_ranks(q_codes[a], db_codes[b], q_labels[a], db_labels[b], ranks)
        chance[direction] = chance_precision(q_labels[a], db_labels[b])
        ap = average_precision_per_query(q_codes[a], db_codes[b], q_labels[a], db_labels[b], tie_aware=True)
        class_ap[direction] = per_class_ap(ap, q_labels[a], class_names)
    figures = {"pr": plots.plot_pr_curves(out / "pr_curves.png", pr, config.model.bits, chance)}
    figures["pk"] = plots.plot_precision_at_k(out / "precision_at_k.png", pk, chance)
    write_curves(out, pr, pk, chance, class_ap)

    grids = {}
    for (a, b), direction in zip(pairs, directions):
        picked = _pick_queries(q_labels[a], num_queries or len(class_names), seed)
        distances = hamming_distance(q_codes[a][picked], db_codes[b])
        order = torch.argsort(distances, dim=1, stable=True)[:, :top_k]
        relevant = relevance(q_labels[a][picked], db_labels[b])
        rows = []
        for i, qi in enumerate(picked):
            results = [
                {
                    "image": database[b][j]["image"].numpy(),
                    "id": database[b].records[j].id,
                    "label": _label_text(db_labels[b][j], class_names),
                    "distance": int(distances[i, j]),
                    "relevant": bool(relevant[i, j]),
                }
                for j in order[i].tolist()
            ]
            rows.append(
                {
                    "image": queries[a][qi]["image"].numpy(),
                    "id": queries[a].records[qi].id,
                    "label": _label_text(q_labels[a][qi], class_names),
                    "results": results,
                }
            )
        notes = [f"{m}: bands 1–3 shown as RGB" for m in (a, b) if data.modality_config(m).channels > 3]
        if degenerate_code_warnings({b: db_codes[b]}, "database"):
            notes.append(f"all {b} database codes are (nearly) identical: ties are shown in database order")
        name = f"retrieval_{a}_to_{b}.png"
        grids[direction] = plots.plot_retrieval_grid(out / name, direction, rows, "; ".join(notes))

    log = read_log(run_dir)
    selected_epoch = checkpoint_epoch(state) if checkpoint.name == "best.pt" else None
    if log:
        figures["curves"] = plots.plot_training_curves(out / "training_curves.png", log, selected_epoch, directions)
    figures["pca"] = plots.plot_code_projection(
        out / "codes_pca.png",
        {m: db_codes[m].numpy() for m in modalities},
        {m: db_labels[m].argmax(1).numpy() for m in modalities},
        class_names,
    )

    views = _selection_views(run_dir, log, state, metrics, checkpoint)
    write_atomic(out / "metrics.json", json.dumps({**metrics, "checkpoint": str(checkpoint)}, indent=2))
    md = _markdown(run_dir, checkpoint, config, state, metrics, views, directions, figures, grids, len(log), warnings)
    diagnostics = report_diagnostics(checkpoint, out, overrides, model)
    md += "\n" + diagnostics
    path = out / "report.md"
    write_atomic(path, md)
    html = report_html.render_report(
        title=f"FG-MD run report: {run_dir}",
        summary=[line[2:] for line in md.split("\n## ")[0].splitlines() if line.startswith("- ")],
        warnings=warnings,
        metrics_table=metrics_table(metrics, recall=True),
        views_table=_views_table(views, directions),
        class_ap=class_ap,
        chance=chance,
        figures=figures,
        grids=grids,
        diagnostics=diagnostics,
    )
    write_atomic(out / "report.html", html)
    return path


def chance_precision(query_labels: torch.Tensor, db_labels: torch.Tensor, block: int = 1024) -> float:
    """Precision of a random ranking at any cut-off: the mean over queries ``[Q, L]`` of the
    fraction of database items ``[N, L]`` sharing a label with the query."""
    total = 0.0
    for start in range(0, len(query_labels), block):
        total += float(relevance(query_labels[start : start + block], db_labels).double().mean(1).sum())
    return total / max(len(query_labels), 1)


def per_class_ap(ap: torch.Tensor, query_labels: torch.Tensor, class_names: Sequence[str]) -> dict[str, dict]:
    """``{class: {"ap": mean AP of the queries with that label, "queries": count}}`` from the
    per-query AP ``[Q]`` and the queries' labels ``[Q, L]`` (a multi-label query counts in
    each of its classes)."""
    result = {}
    for c, name in enumerate(class_names):
        members = query_labels[:, c] > 0
        count = int(members.sum())
        result[name] = {"ap": float(ap[members].mean()) if count else float("nan"), "queries": count}
    return result


def write_curves(
    out: Path,
    pr: Mapping[str, tuple],
    pk: Mapping[str, tuple],
    chance: Mapping[str, float],
    class_ap: Mapping[str, Mapping[str, dict]],
) -> None:
    """The numbers behind the figures: ``pr_curves.csv`` (direction, radius, precision, recall,
    chance), ``precision_at_k.csv`` (direction, k, precision, recall, chance) and
    ``per_class_ap.csv`` (direction, class, ap, queries)."""
    for name, curves, column in (("pr_curves.csv", pr, "radius"), ("precision_at_k.csv", pk, "k")):
        handle = io.StringIO(newline="")
        writer = csv.writer(handle)
        writer.writerow(["direction", column, "precision", "recall", "chance"])
        for direction, (x, precision, recall) in curves.items():
            for row in zip(x, precision, recall):
                writer.writerow([direction, int(row[0]), f"{row[1]:.6f}", f"{row[2]:.6f}", f"{chance[direction]:.6f}"])
        write_atomic(out / name, handle.getvalue())
    handle = io.StringIO(newline="")
    writer = csv.writer(handle)
    writer.writerow(["direction", "class", "ap", "queries"])
    for direction, classes in class_ap.items():
        for name, values in classes.items():
            writer.writerow([direction, name, f"{values['ap']:.6f}", values["queries"]])
    write_atomic(out / "per_class_ap.csv", handle.getvalue())


def read_curves(path: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], dict[str, float]]:
    """``({direction: (x, precision, recall)}, {direction: chance})`` from a curve CSV of
    :func:`write_curves`."""
    rows: dict[str, list[list[float]]] = {}
    chance: dict[str, float] = {}
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for direction, x, precision, recall, level in reader:
            rows.setdefault(direction, []).append([float(x), float(precision), float(recall)])
            chance[direction] = float(level)
    curves = {}
    for direction, values in rows.items():
        array = np.asarray(values)  # [points, 3]: x, precision, recall
        curves[direction] = (array[:, 0], array[:, 1], array[:, 2])
    return curves, chance


def compare_runs(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    overrides: Sequence[str] = (),
    progress: bool = False,
) -> Path:
    """Overlay the runs' curves (a sweep, an ablation) and tabulate their metrics.

    Each run's ``report/`` CSVs are used; a run without them gets its report generated first
    (``generate_report`` with ``overrides``). Writes ``out/compare.html`` (figures inline),
    ``out/compare.csv`` (mAP per direction and mean per run) and the overlay PNGs; returns the
    path of ``compare.html``. Runs are named by their folder names.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names: dict[str, Path] = {}
    for run in map(Path, run_dirs):
        name = run.name if run.name not in names else str(run)
        names[name] = run
    pr_runs: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    pk_runs: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    rows: list[dict[str, object]] = []
    chance: dict[str, float] = {}
    for name, run in names.items():
        report = run / REPORT_DIR
        if not (report / "pr_curves.csv").exists():
            generate_report(run, overrides=overrides, progress=progress)
        pr, chance_pr = read_curves(report / "pr_curves.csv")
        pk, _ = read_curves(report / "precision_at_k.csv")
        chance = chance or chance_pr
        pr_runs[name] = {d: (recall, precision) for d, (_, precision, recall) in pr.items()}
        pk_runs[name] = {d: (k, precision) for d, (k, precision, _) in pk.items()}
        metrics = json.loads((report / "metrics.json").read_text())
        rows.append(
            {
                "run": name,
                "folder": str(run),
                **{f"{d} mAP": v["map"] for d, v in metrics["directions"].items()},
                **{f"{d} mAP (tie-aware)": v["map_tie"] for d, v in metrics["directions"].items()},
                "mean mAP": metrics["mean"]["map"],
                "mean mAP (tie-aware)": metrics["mean"]["map_tie"],
            }
        )
    figures = {
        "pr": plots.plot_comparison(
            out / "compare_pr.png", pr_runs, "recall", "precision", "PR (Hamming radius)", chance
        ),
        "pk": plots.plot_comparison(
            out / "compare_precision_at_k.png", pk_runs, "k", "precision@k", "precision@k", chance
        ),
    }
    columns = list(dict.fromkeys(key for row in rows for key in row))
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, columns)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "compare.csv", table.getvalue())
    path = out / "compare.html"
    write_atomic(path, report_html.render_comparison(rows, columns, figures, chance))
    return path


def _markdown(
    run_dir, checkpoint, config, state, metrics, views, directions, figures, grids, epochs_logged, warnings
) -> str:
    m = config.model
    modules = [name for name, on in (("FDFSP", m.fdfsp), ("ADF", m.adf), ("DAMD", config.loss.damd)) if on] or [
        "none (baseline)"
    ]
    design = config.design_settings()
    if design:  # a design variant (docs/MODULES.md), not the published model
        modules.append("design variant: " + ", ".join(f"{key}={value}" for key, value in design.items()))
    lines = [
        f"# FG-MD run report: `{run_dir}`",
        "",
        f"- checkpoint: `{checkpoint}` (epoch {checkpoint_epoch(state)}, selected on {state.get('selected_on', 'last')})",
        f"- data: {config.data.format} at `{config.data.root}`; modalities {' ↔ '.join(config.data.modalities)}; "
        f"queries from split `{config.data.query_split}`, database `{config.data.database_split}`",
        f"- model: {m.bits} bits, MobileNetV2 width {m.width_mult}, pretrained {m.pretrained}, modules: {', '.join(modules)}; "
        f"{epochs_logged} of {config.train.epochs} epochs logged",
        "",
        *(line for w in warnings for line in (f"> **Warning:** {w}.", "")),
        "## Retrieval metrics of this checkpoint (test split)",
        "",
        metrics_table(metrics, recall=True),
        "",
        "## Model selection",
        "",
        "All rows are scored on the test split. Only the validation-selected model is an honest estimate; "
        "the best-on-test row picks the epoch by its test score, as the published FSISR/FG-MD scripts do, "
        "and is optimistic.",
        "",
        _views_table(views, directions),
        "",
        "## Precision–recall (Hamming radius)",
        "",
        f"![PR curves]({figures['pr'].name})",
        "",
        "## Precision@k and recall@k",
        "",
        f"![precision@k]({figures['pk'].name})",
        "",
        "## Retrieval examples",
        "",
        "Each row: a query (blue frame) and its top results from the other modality by Hamming distance `d`; "
        "green frame = same class (relevant), red = other class.",
        "",
    ]
    for direction, path in grids.items():
        lines += [f"### {direction.replace('->', ' → ')}", "", f"![retrieval {direction}]({path.name})", ""]
    if "curves" in figures:
        lines += ["## Training curves", "", f"![training curves]({figures['curves'].name})", ""]
    lines += ["## Code projection", "", f"![PCA of codes]({figures['pca'].name})", ""]
    return "\n".join(lines)
