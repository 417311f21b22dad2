"""`fgmd serve`: the JSON API (FastAPI TestClient) against the library's search, bad uploads,
uploads kept in memory, concurrency, thumbnails, the benchmark view and old indexes."""

from __future__ import annotations

import io
import struct
import tempfile
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("httpx", reason="the test extra (httpx) is not installed")

from fastapi.testclient import TestClient

import fgmd
from deploy_fixtures import run_cli
from fgmd.codes import hamming_distances, unpack_codes
from fgmd.data.datasets import build_dataset
from fgmd.evaluation.metrics import retrieval_metrics
from fgmd.retrieval import Index
from fgmd.retrieval.encode_archive import build_index
from fgmd.retrieval.image_search import search_images
from fgmd.serve.app import create_app
from fgmd.serve.service import SearchService


@pytest.fixture(scope="module")
def indexes(tiny_checkpoint):
    paths = {}
    for modality in ("ms", "pan"):
        paths[modality] = tiny_checkpoint.parent / f"serve_{modality}.fgidx"
        build_index(tiny_checkpoint, modality, paths[modality], split="database", num_workers=0, progress=False)
    return paths


@pytest.fixture(scope="module")
def service(tiny_checkpoint, indexes):
    return SearchService(tiny_checkpoint, [indexes["ms"], indexes["pan"]])


@pytest.fixture(scope="module")
def client(service):
    return TestClient(create_app(service))


@pytest.fixture(scope="module")
def query_files(tiny_checkpoint):
    _, config = fgmd.load_model(tiny_checkpoint)
    records = build_dataset(config.data, "query").images("ms").records
    return {"ms": [Path(r.paths["ms"]) for r in records[:4]], "pan": [Path(r.paths["pan"]) for r in records[:4]]}


def upload(client, path_or_bytes, modality="ms", name="query.png", **fields):
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    form = {"modality": modality, **{key: str(value) for key, value in fields.items()}}
    return client.post("/api/search", data=form, files={"image": (name, data, "application/octet-stream")})


def test_health_info_and_page(client, indexes):
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["indexes"] == {
        "ms": len(Index.load(indexes["ms"])),
        "pan": len(Index.load(indexes["pan"])),
    }
    info = client.get("/api/info").json()
    assert info["query_modalities"] == ["ms", "pan"] and info["bits"] == 16
    assert info["class_names"] and info["indexes"]["pan"]["paths"] is True
    page = client.get("/")
    assert page.status_code == 200 and "<title>fgmd cross-modal search</title>" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # self-contained: nothing fetched elsewhere


@pytest.mark.parametrize("modality", ["ms", "pan"])
def test_upload_matches_library_search(client, tiny_checkpoint, indexes, query_files, modality):
    other = "pan" if modality == "ms" else "ms"
    index = Index.load(indexes[other])
    for file in query_files[modality]:
        answer = upload(client, file, modality, name=file.name, k=7)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        expected = search_images(index, tiny_checkpoint, [file], modality, k=7)[0]
        assert [r["id"] for r in body["results"]] == list(expected.ids)
        assert [r["distance"] for r in body["results"]] == expected.distances.tolist()
        assert [r["rank"] for r in body["results"]] == list(range(1, 8))
        assert body["index_modality"] == other and body["total"] == len(index)
        assert body["query"]["label"] is None and all(r["relevant"] is None for r in body["results"])
        assert body["query"]["preview"].startswith("data:image/png;base64,")
        first = body["results"][0]
        assert first["path"] == index.paths[first["position"]] and first["path"].endswith(".png")


def test_tie_groups_paging_and_radius(client, service, indexes, query_files):
    index = Index.load(indexes["pan"])
    data = query_files["ms"][0].read_bytes()
    _, model_input = service.preprocess_upload(data, "q.png", "ms")
    distances = hamming_distances(service.encode(model_input[None], "ms"), index.codes)[0]
    order = np.lexsort((np.arange(len(distances)), distances))  # (distance, position)

    pages = [upload(client, data, k=5, offset=offset).json() for offset in (0, 5, 10)]
    hits = [hit for page in pages for hit in page["results"]]
    assert [hit["position"] for hit in hits] == order[:15].tolist()
    assert [hit["rank"] for hit in hits] == list(range(1, 16))
    for hit in hits:
        assert hit["tie_group"] == int((distances == hit["distance"]).sum())

    radius = int(np.sort(distances)[20])
    within = order[distances[order] <= radius]
    body = upload(client, data, k=200, radius=radius).json()
    assert body["mode"] == "radius" and body["total"] == len(within)
    assert [hit["position"] for hit in body["results"]] == within.tolist()
    page2 = upload(client, data, k=4, offset=4, radius=radius).json()
    assert [hit["position"] for hit in page2["results"]] == within[4:8].tolist()


def test_split_query_has_labels_and_relevance(client, service, indexes):
    items = client.get("/api/queries/ms").json()["items"]
    assert items and all(item["label"] for item in items)
    index = Index.load(indexes["pan"])
    names = service.class_names
    for item in items[:3]:
        body = client.post("/api/search", data={"modality": "ms", "query_id": item["id"], "k": "10"}).json()
        assert body["query"]["id"] == item["id"] and body["query"]["label"] == item["label"]
        for hit in body["results"]:
            hit_labels = [names[c] for c in np.flatnonzero(index.labels[hit["position"]])]
            assert hit["label"] == hit_labels
            assert hit["relevant"] == bool(set(hit_labels) & set(item["label"]))
    missing = client.post("/api/search", data={"modality": "ms", "query_id": "no-such-item"})
    assert missing.status_code == 404 and "no-such-item" in missing.json()["error"]


def test_split_query_equals_upload_of_its_file(client, service):
    split = service.query_split("pan")
    by_id = client.post("/api/search", data={"modality": "pan", "query_id": split.ids[1], "k": "8"}).json()
    by_file = upload(client, Path(split.paths[1]), "pan", k=8).json()
    assert [r["id"] for r in by_id["results"]] == [r["id"] for r in by_file["results"]]
    assert [r["distance"] for r in by_id["results"]] == [r["distance"] for r in by_file["results"]]


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG structure whose IHDR claims ``width`` x ``height`` (a few bytes of pixel data)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def png_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    "data, status, message",
    [
        (b"this is not an image", 422, "not an image in a supported format"),
        (b"", 422, "empty file"),
        (None, 422, "truncated"),  # a PNG cut in half
        (None, 422, "band(s) but data.modality.ms.channels is 3"),  # a 1-band image for ms
        (png_header_only(50000, 50000), 422, "decompression-bomb"),
    ],
    ids=["not-image", "empty", "truncated", "wrong-bands", "bomb-header"],
)
def test_bad_uploads_get_clear_4xx(client, query_files, data, status, message):
    if message == "truncated":
        whole = query_files["ms"][0].read_bytes()
        data = whole[: len(whole) // 2]
    elif message.startswith("band(s)"):
        data = png_bytes(np.zeros((40, 40), dtype=np.uint8))
    answer = upload(client, data, "ms", name="bad.png")
    assert answer.status_code == status
    error = answer.json()["error"]
    assert message in error and "bad.png" in error


def test_request_errors(client, service, tiny_checkpoint, indexes, query_files):
    data = query_files["ms"][0].read_bytes()
    cases = [
        (client.post("/api/search", data={"k": "5"}, files={"image": ("q.png", data)}), 400, "'modality'"),
        (upload(client, data, "sar"), 400, "query modalities"),
        (upload(client, data, k=0), 400, "k must be between 1"),
        (upload(client, data, k="ten"), 400, "must be an integer"),
        (upload(client, data, radius=99), 400, "radius must be between 0 and 16"),
        (client.post("/api/search", data={"modality": "ms"}), 400, "'image' (a file) or 'query_id'"),
        (client.post("/api/search", content=b"{}", headers={"content-type": "application/json"}), 415, "multipart"),
        (
            client.post("/api/search", data={"modality": "ms", "query_id": "x"}, files={"image": ("q.png", data)}),
            400,
            "not both",
        ),
        (client.get("/api/thumbnail/pan/100000"), 404, "no item 100000"),
        (client.get("/api/thumbnail/sar/0"), 404, "no sar index"),
    ]
    for answer, status, message in cases:
        assert answer.status_code == status, answer.text
        assert message in answer.json()["error"]
    small = TestClient(create_app(service, max_upload_bytes=1024))
    too_big = upload(small, data + bytes(200_000), name="big.png")
    assert too_big.status_code == 413 and "limit is" in too_big.json()["error"]


def test_uploads_stay_in_memory(client, query_files, monkeypatch):
    """A 3 MiB upload (above Starlette's 1 MiB spooling threshold) is parsed without any temp file."""

    def no_files(*args, **kwargs):
        raise AssertionError("an upload was written to a temporary file")

    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, no_files)
    rng = np.random.default_rng(0)
    big = png_bytes(rng.integers(0, 256, (1100, 1100, 3), dtype=np.uint8))  # noise: PNG cannot compress it
    assert len(big) > 3 * 1024 * 1024
    answer = upload(client, big, "ms", name="big.png", k=3)
    assert answer.status_code == 200, answer.text
    assert answer.json()["query"]["size"] == [3, 1100, 1100]


def test_multiband_16bit_tiff_upload_uses_training_preprocessing(client, tiny_checkpoint, indexes, tmp_path):
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(1)
    array = rng.integers(0, 65536, (48, 48, 3), dtype=np.uint16)
    path = tmp_path / "scene.tif"
    tifffile.imwrite(path, array, photometric="rgb")
    answer = upload(client, path, "ms", name="scene.tif", k=6)
    assert answer.status_code == 200, answer.text
    expected = search_images(indexes["pan"], tiny_checkpoint, [path], "ms", k=6)[0]
    assert [r["id"] for r in answer.json()["results"]] == list(expected.ids)
    assert [r["distance"] for r in answer.json()["results"]] == expected.distances.tolist()
    single = tmp_path / "pan16.tif"
    tifffile.imwrite(single, array[..., 0])
    answer = upload(client, single, "pan", name="pan16.tif", k=6)
    expected = search_images(indexes["ms"], tiny_checkpoint, [single], "pan", k=6)[0]
    assert answer.status_code == 200 and [r["id"] for r in answer.json()["results"]] == list(expected.ids)


def test_concurrent_requests_match_sequential(client, query_files):
    files = query_files["ms"] + query_files["ms"]
    expected = [[r["id"] for r in upload(client, f, k=5).json()["results"]] for f in files]
    got: dict[int, list[str]] = {}

    def ask(i: int) -> None:
        got[i] = [r["id"] for r in upload(client, files[i], k=5).json()["results"]]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(files))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [got[i] for i in range(len(files))] == expected


def test_thumbnails(client, service):
    answer = client.get("/api/thumbnail/pan/0")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(answer.content))
    assert max(picture.size) == 128 and picture.mode == "L"  # pan: one band
    picture = Image.open(io.BytesIO(client.get("/api/query-thumbnail/ms/0").content))
    assert picture.mode == "RGB"


def test_benchmark_is_the_eval_map(client, service, indexes):
    body = client.get("/api/benchmark/ms").json()
    split = service.query_split("ms")
    assert [row["id"] for row in body["queries"]] == split.ids
    index = Index.load(indexes["pan"])
    batch = torch.stack([split.images[i]["image"] for i in range(len(split.ids))])
    model, _ = fgmd.load_model(service.checkpoint)
    with torch.no_grad():
        codes = model.encoders["ms"].encode(batch)
    db = torch.from_numpy(unpack_codes(index.codes, 16)).float()
    metrics = retrieval_metrics(codes, db, torch.from_numpy(split.labels), torch.from_numpy(np.array(index.labels)))
    assert body["map"] == pytest.approx(metrics["map"], abs=1e-9)
    assert body["map"] == pytest.approx(np.mean([row["ap"] for row in body["queries"]]), abs=1e-12)
    assert body["map_tie"] == pytest.approx(metrics["map_tie"], abs=1e-9)
    assert body["map_tie"] == pytest.approx(np.mean([row["ap_tie"] for row in body["queries"]]), abs=1e-12)


def test_index_without_paths_finds_files_through_the_dataset(tiny_checkpoint, indexes, tmp_path):
    full = Index.load(indexes["pan"])
    old = Index(full.bits, full.modality, full.encoder, full.codes, full.ids.tolist(), full.labels)
    old.save(tmp_path / "old.fgidx")
    client = TestClient(create_app(SearchService(tiny_checkpoint, [tmp_path / "old.fgidx"])))
    assert client.get("/api/info").json()["query_modalities"] == ["ms"]
    body = client.post(
        "/api/search",
        data={"modality": "ms", "query_id": client.get("/api/queries/ms").json()["items"][0]["id"], "k": "3"},
    ).json()
    first = body["results"][0]
    assert first["path"] == full.file_of(first["position"])
    assert client.get(first["thumbnail"]).status_code == 200


def test_relative_data_root_resolved_against_the_run(tiny_checkpoint, indexes, tmp_path, monkeypatch):
    from fgmd.serve.service import _resolve_root

    _, config = fgmd.load_model(tiny_checkpoint)
    root = Path(config.data.root)
    monkeypatch.chdir(root.parent)
    relative = config.with_values({"data.root": root.name})
    monkeypatch.chdir(tmp_path)  # the relative root does not exist from here
    assert _resolve_root(relative, root.parent).data.root == str(root)
    assert _resolve_root(relative, None).data.root == root.name


def test_cli_serve_defaults_to_loopback(tiny_checkpoint, indexes, capsys, monkeypatch):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    code, out, err = run_cli(capsys, "serve", "--checkpoint", tiny_checkpoint, "--index", indexes["pan"])
    assert code == 0 and calls[0]["host"] == "127.0.0.1" and calls[0]["port"] == 8000
    assert "open http://127.0.0.1:8000/" in out and "warning" not in err
    code, out, err = run_cli(
        capsys, "serve", "--checkpoint", tiny_checkpoint, "--index", indexes["pan"], "--index", indexes["pan"]
    )
    assert code == 2 and "both hold pan codes" in err
    code, out, err = run_cli(
        capsys, "serve", "--checkpoint", tiny_checkpoint, "--index", indexes["pan"], "--host", "0.0.0.0"
    )
    assert code == 0 and "no authentication" in err


def test_demo_next_hint_commands_index_and_serve(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    """The commands `fgmd demo` prints at the end run as printed on a demo-layout folder."""
    import shlex
    import shutil

    import uvicorn

    from fgmd.cli.commands.demo import serve_hint

    out = tmp_path / "demo"
    (out / "run").mkdir(parents=True)
    shutil.copy(tiny_checkpoint, out / "run" / "best.pt")
    lines = serve_hint(out).splitlines()
    assert lines[0].startswith("next:") and len(lines) == 4
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append(kwargs))
    for line in lines[1:]:
        argv = shlex.split(line)
        assert argv[0] == "fgmd"
        code, _, err = run_cli(capsys, *argv[1:], *(["--quiet"] if argv[1] == "index" else []))
        assert code == 0, err
    assert served and Index.load(out / "pan.fgidx").paths is not None
