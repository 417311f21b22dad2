"""The search page in a real browser: Playwright driving Debian's chromium (headless).

Playwright cannot download its own browsers here, so the system ``chromium`` package is used
(``.ci/run`` installs it); without it the test is skipped, saying so. The screenshot is
written under the test's temporary folder (``FGMD_SCREENSHOT=path`` writes it there too).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="the test extra (playwright) is not installed")

import fgmd
from fgmd.data.datasets import build_dataset
from fgmd.retrieval.encode_archive import build_index
from fgmd.retrieval.image_search import search_images
from fgmd.serve.app import create_app
from fgmd.serve.service import SearchService

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def server(tiny_checkpoint):
    paths = []
    for modality in ("ms", "pan"):
        path = tiny_checkpoint.parent / f"browser_{modality}.fgidx"
        build_index(tiny_checkpoint, modality, path, split="database", num_workers=0, progress=False)
        paths.append(path)
    app = create_app(SearchService(tiny_checkpoint, paths))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", paths
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield browser
        browser.close()


def test_page_searches_and_shows_k_thumbnails(server, browser, tiny_checkpoint, tmp_path):
    url, (ms_index, pan_index) = server
    _, config = fgmd.load_model(tiny_checkpoint)
    query = Path(build_dataset(config.data, "query").images("ms").records[0].paths["ms"])
    expected = search_images(pan_index, tiny_checkpoint, [query], "ms", k=10)[0]

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.wait_for_selector("#modality-ms")
    page.wait_for_function("document.querySelectorAll('#split-pick option').length > 1")
    page.select_option("#k", "10")
    page.set_input_files("#file", str(query))
    page.click("#search-button")
    page.wait_for_selector(".hit")
    cards = page.locator(".hit")
    assert cards.count() == 10
    distances = [int(text.split("=")[1]) for text in page.locator(".hit .dist").all_inner_texts()]
    assert distances == expected.distances.tolist()
    assert page.locator(".hit .id").all_inner_texts() == list(expected.ids)
    page.wait_for_function(  # every thumbnail loaded
        "[...document.querySelectorAll('.hit img')].every(img => img.complete && img.naturalWidth > 0)"
    )
    assert page.locator("#query-preview img").count() == 1  # the server's preview of the upload
    assert "ranks 1–10 of" in page.inner_text("#summary")

    page.click("#next")
    page.wait_for_selector('.hit[data-rank="11"]')
    assert page.locator(".hit .rank").first.inner_text() == "#11"

    # a query from the split: its label is known, so the hits are marked right or wrong
    page.select_option("#k", "20")
    page.select_option("#split-pick", index=1)
    page.click("#search-button")
    page.wait_for_selector(".hit.relevant, .hit.irrelevant")
    page.wait_for_function("document.querySelectorAll('.hit').length === 20")
    marked = page.locator(".hit.relevant").count() + page.locator(".hit.irrelevant").count()
    assert marked == 20
    page.wait_for_function(
        "[...document.querySelectorAll('.hit img')].every(img => img.complete && img.naturalWidth > 0)"
    )
    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("FGMD_SCREENSHOT"):
        shutil.copy(shot, os.environ["FGMD_SCREENSHOT"])
    assert not errors


def test_page_shows_errors_of_bad_uploads(server, browser, tmp_path):
    url, _ = server
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("#modality-ms")
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image at all")
    page.set_input_files("#file", str(bad))
    page.click("#search-button")
    page.wait_for_selector("#error", state="visible")
    assert "not an image in a supported format" in page.inner_text("#error")
    assert page.locator(".hit").count() == 0

    grey = tmp_path / "grey.png"
    from PIL import Image

    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(grey)
    page.set_input_files("#file", str(grey))
    page.click("#search-button")
    page.wait_for_function("document.getElementById('error').textContent.includes('channels is 3')")


def test_benchmark_view_sorts_worst_first_and_clicks_through(server, browser):
    url, _ = server
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("#modality-ms")
    page.click("#tab-bench")
    page.wait_for_selector("#bench-table tbody tr")
    values = [float(t.split()[-1]) for t in page.locator("#bench-table tbody td:nth-child(4)").all_inner_texts()]
    assert values == sorted(values) and len(values) > 1
    first_id = page.locator("#bench-table tbody td:nth-child(2)").first.inner_text()
    page.click("#bench-table th[data-key=ap]")  # best first
    page.wait_for_function("document.querySelector('#bench-table th[data-key=ap]').textContent.includes('▼')")
    again = [float(t.split()[-1]) for t in page.locator("#bench-table tbody td:nth-child(4)").all_inner_texts()]
    assert again == sorted(values, reverse=True)
    page.click("#bench-table th[data-key=ap]")
    page.locator("#bench-table tbody tr").first.click()
    page.wait_for_selector("#search-panel .hit")
    assert first_id in page.text_content("#results-title")
