"""`fgmd search` / `fgmd.search_images`: output formats, exact results, refusing mismatched indexes."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

import fgmd
from deploy_fixtures import run_cli
from fgmd.codes import hamming_distances, pack_codes
from fgmd.data.datasets import build_dataset
from fgmd.retrieval.encode_archive import build_index
from fgmd.retrieval.image_search import IndexMismatchError


@pytest.fixture(scope="module")
def pan_index(tiny_checkpoint):
    path = tiny_checkpoint.parent / "db.fgidx"
    build_index(tiny_checkpoint, "pan", path, split="database", num_workers=0, progress=False)
    return path


@pytest.fixture(scope="module")
def ms_queries(tiny_checkpoint):
    model, config = fgmd.load_model(tiny_checkpoint)
    records = build_dataset(config.data, "query").images("ms").records
    return [str(r.paths["ms"]) for r in records[:3]]


def test_search_formats(tiny_checkpoint, pan_index, ms_queries, tmp_path, capsys):
    base = ["search", "--index", pan_index, "--checkpoint", tiny_checkpoint, "--modality", "ms", *ms_queries, "-k", "4"]
    code, table, stderr = run_cli(capsys, *base)
    assert code == 0, stderr
    lines = table.splitlines()
    assert [cell.strip() for cell in lines[0].split("|")[1:-1]] == ["query", "rank", "id", "distance", "label", "path"]
    assert len(lines) == 2 + 3 * 4

    code, text, _ = run_cli(capsys, *base, "--format", "json")
    result = json.loads(text)
    assert result["index_modality"] == "pan" and result["query_modality"] == "ms" and result["k"] == 4
    assert [q["query"] for q in result["queries"]] == ms_queries
    assert all([r["rank"] for r in q["results"]] == [1, 2, 3, 4] for q in result["queries"])

    code, _, _ = run_cli(capsys, *base, "--format", "csv", "--out", tmp_path / "hits.csv")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "hits.csv").read_text())))
    assert code == 0 and len(rows) == 12 and list(rows[0]) == ["query", "rank", "id", "distance", "label", "path"]

    # the hits are the exact Hamming top-k (ties by index position) of the query codes
    index = fgmd.Index.load(pan_index)
    model, config = fgmd.load_model(tiny_checkpoint)
    query_codes = pack_codes(fgmd.encode_files(model, config, ms_queries, "ms"))
    distances = hamming_distances(query_codes, index.codes)
    for q, query in enumerate(result["queries"]):
        order = np.lexsort((np.arange(len(index)), distances[q]))[:4]
        assert [r["id"] for r in query["results"]] == index.ids[order]
        assert [r["distance"] for r in query["results"]] == distances[q, order].tolist()
        # each hit carries its class name and its file relative to the archive root
        assert [r["label"] for r in query["results"]] == [i.rsplit("_", 1)[0] for i in index.ids[order]]
        assert [r["path"] for r in query["results"]] == [index.paths[int(p)] for p in order]
        assert all(r["path"].endswith(".png") for r in query["results"]) and result["index_root"] == index.root

    # radius search returns every item within the radius
    radius = int(np.sort(distances[0])[5])
    code, text, _ = run_cli(capsys, *base[:-2], "--radius", radius, "--format", "json", "--backend", "mih")
    first = json.loads(text)["queries"][0]["results"]
    assert code == 0 and len(first) == int((distances[0] <= radius).sum())
    assert all(r["distance"] <= radius for r in first)


def test_search_a_split_and_the_python_api(tiny_checkpoint, pan_index, ms_queries, capsys):
    code, text, stderr = run_cli(
        capsys,
        "search",
        "--index",
        pan_index,
        "--checkpoint",
        tiny_checkpoint,
        "--modality",
        "ms",
        "--split",
        "query",
        "-k",
        "2",
        "--format",
        "json",
    )
    assert code == 0, stderr
    queries = json.loads(text)["queries"]
    assert len(queries) == 12 and queries[0]["query"] == "tanks_3"

    results = fgmd.search_images(fgmd.Index.load(pan_index), fgmd.load_model(tiny_checkpoint), ms_queries, "ms", k=3)
    assert [r.query for r in results] == ms_queries
    assert all(len(r.ids) == 3 and r.labels.shape == (3, 6) for r in results)
    assert [r.ids for r in results] == [
        [h["id"] for h in q["results"]]
        for q in json.loads(
            run_cli(
                capsys,
                "search",
                "--index",
                pan_index,
                "--checkpoint",
                tiny_checkpoint,
                "--modality",
                "ms",
                *ms_queries,
                "-k",
                "3",
                "--format",
                "json",
            )[1]
        )["queries"]
    ]


def test_search_refuses_an_index_of_another_encoder_or_the_same_modality(
    tiny_checkpoint, other_checkpoint, pan_index, ms_queries, capsys
):
    base = ["search", "--index", pan_index, "--modality", "ms", *ms_queries]
    code, _, stderr = run_cli(capsys, *base, "--checkpoint", other_checkpoint)
    assert code == 2 and "not made by this checkpoint's pan encoder" in stderr and "weights_sha256" in stderr
    assert "Traceback" not in stderr
    code, _, stderr = run_cli(
        capsys, "search", "--index", pan_index, "--modality", "pan", ms_queries[0], "--checkpoint", tiny_checkpoint
    )
    assert code == 2 and "like the queries" in stderr
    with pytest.raises(
        IndexMismatchError, match=r"preprocessing\[ms\]\.center_crop: \[32, 32\] in the index, \[28, 28\]"
    ):
        fgmd.search_images(pan_index, tiny_checkpoint, ms_queries, "ms", overrides=["data.image_size=28"])
    with pytest.raises(IndexMismatchError, match="no 'rgb' encoder"):
        fgmd.search_images(pan_index, tiny_checkpoint, ms_queries, "rgb")


@pytest.mark.skipif(not fgmd.retrieval.backends.faiss_available(), reason="approximate search needs faiss")
def test_approximate_search_reports_its_calibration(tiny_checkpoint, pan_index, ms_queries, capsys):
    code, text, stderr = run_cli(
        capsys,
        "search",
        "--index",
        pan_index,
        "--checkpoint",
        tiny_checkpoint,
        "--modality",
        "ms",
        *ms_queries,
        "-k",
        "4",
        "--format",
        "json",
        "--approximate",
        "--recall",
        "0.9",
    )
    assert code == 0, stderr
    result = json.loads(text)
    approx = result["approximate"]
    assert approx["recall_target"] == 0.9 and 1 <= approx["nprobe"] <= approx["nlist"]
    assert approx["calibrated_recall_at_100"] >= 0.9 and "approximate search: nprobe" in stderr
    assert all(len(q["results"]) == 4 for q in result["queries"])
    # a tiny index has one cluster (faiss needs 39 codes per cluster), probed: exact distances
    assert approx["nlist"] == approx["nprobe"] == 1
    exact = json.loads(
        run_cli(
            capsys,
            "search",
            "--index",
            pan_index,
            "--checkpoint",
            tiny_checkpoint,
            "--modality",
            "ms",
            *ms_queries,
            "-k",
            "4",
            "--format",
            "json",
        )[1]
    )
    for a, b in zip(result["queries"], exact["queries"]):
        assert [r["distance"] for r in a["results"]] == [r["distance"] for r in b["results"]]
    code, text, stderr = run_cli(
        capsys,
        "search",
        "--index",
        pan_index,
        "--checkpoint",
        tiny_checkpoint,
        "--modality",
        "ms",
        *ms_queries,
        "-k",
        "4",
        "--format",
        "json",
        "--approximate",
        "--nprobe",
        "1",
    )
    given = json.loads(text)["approximate"]
    assert code == 0 and given["nprobe"] == 1 and given["calibrated_recall_at_100"] is None and "given" in stderr


def test_index_info_describes_a_file(pan_index, capsys):
    code, out, _ = run_cli(capsys, "index", "--info", pan_index)
    index = fgmd.Index.load(pan_index)
    assert code == 0 and f"{len(index)} pan items, 16-bit codes, 6 classes (" in out
    assert f"root {index.root}" in out and index.paths[0] in out and "weights sha256" in out
    code, _, err = run_cli(capsys, "index", "--modality", "pan")
    assert code == 2 and "needs --checkpoint, --out, --split or --folder" in err
