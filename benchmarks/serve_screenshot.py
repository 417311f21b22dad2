"""Screenshot of the `fgmd serve` page (docs/serve.png): headless chromium via Playwright.

Serves the given checkpoint and indexes in this process, opens the page, runs one search with
an item of the query split (so hits are marked green/red by label) and saves a full-page
screenshot. Needs the serve and test extras and Debian's chromium.

    python benchmarks/serve_screenshot.py --checkpoint runs/demo/run/best.pt \\
        --index runs/demo/ms.fgidx --index runs/demo/pan.fgidx --query-id ship_7 --out docs/serve.png
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import _common  # noqa: F401 (puts src/ on sys.path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--index", action="append", required=True)
    parser.add_argument("--modality", default="ms", help="query modality (default ms)")
    parser.add_argument("--query-id", help="item of the query split to search with (default: the first)")
    parser.add_argument("--k", default="20", choices=("10", "20", "50", "100"))
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--out", type=Path, default=Path("docs/serve.png"))
    args = parser.parse_args()

    import uvicorn
    from playwright.sync_api import sync_playwright

    from fgmd.serve.app import create_app
    from fgmd.serve.service import SearchService

    app = create_app(SearchService(args.checkpoint, args.index))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                args=["--no-sandbox", "--disable-dev-shm-usage"],
            )
            page = browser.new_page(viewport={"width": args.width, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector(f"#modality-{args.modality}")
            page.check(f"#modality-{args.modality}")
            page.wait_for_function("document.querySelectorAll('#split-pick option').length > 1")
            page.select_option("#k", args.k)
            if args.query_id:
                page.select_option("#split-pick", args.query_id)
            else:
                page.select_option("#split-pick", index=1)
            page.click("#search-button")
            page.wait_for_selector(".hit")
            page.wait_for_function(
                "[...document.querySelectorAll('.hit img')].every(img => img.complete && img.naturalWidth > 0)"
            )
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    finally:
        server.should_exit = True
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
