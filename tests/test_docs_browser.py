"""The built documentation site opens in a real browser without errors.

Debian's headless Chromium (``apt-get install chromium``; CI installs it) loads pages of the
site, served from 127.0.0.1 by a local http.server, runs their JavaScript and dumps the DOM.
A page passes when the browser logs no console message (an uncaught exception or a
``console.error`` of the theme's scripts shows up there), every file the page asked the
server for exists, and the page's title and text arrived. Skipped where Chromium or the
docs dependency group is missing.
"""

from __future__ import annotations

import functools
import http.server
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium"
                                         if os.path.exists("/usr/bin/chromium") else None)
#: (page path under the site, text the rendered page must contain)
PAGES = [
    ("", "What do you want to do?"),
    ("cli/", "Data specs"),
    ("gallery/", "Initialization"),
    ("api/fastnn/", "compile_step"),
    ("api/kernels/", "dense_forward"),
]

pytestmark = [
    pytest.mark.slow,  # a site build and one browser start per page: 15-30 s here
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)"),
]


class _Recorder(http.server.SimpleHTTPRequestHandler):
    """Serves the site and remembers every request's path and status."""

    requests: list[tuple[str, int]]

    def log_request(self, code="-", size="-"):
        self.requests.append((self.path, int(code) if str(code).isdigit() else 0))

    def log_message(self, format, *args):  # quiet
        pass


@pytest.fixture(scope="module")
def served_site(tmp_path_factory):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert build.returncode == 0, build.stdout + build.stderr
    requests: list[tuple[str, int]] = []
    handler = type("Handler", (_Recorder,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", requests
    finally:
        server.shutdown()
        server.server_close()


def chromium(url: str, profile: pathlib.Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=4000", *extra, url],
        capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("page, text", PAGES, ids=[p or "index" for p, _ in PAGES])
def test_page_loads_without_errors(served_site, tmp_path, page, text):
    base, requests = served_site
    del requests[:]
    result = chromium(base + page, tmp_path / "profile", "--dump-dom")
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, "\n".join(console)
    failed = [(path, code) for path, code in requests if code >= 400]
    assert not failed, failed
    dom = result.stdout
    assert re.search(r"<title>[^<]*fastnn[^<]*</title>", dom), dom[:500]
    assert text in dom
    # the theme's JavaScript ran: it marks the document once it has set the page up
    assert 'data-md-color-scheme' in dom or "md-header" in dom


def test_screenshot_of_the_first_page(served_site, tmp_path):
    """A picture of Getting started, to look at (written to $FASTNN_DOCS_SCREENSHOT when
    set); here it is checked to be a PNG of the asked size."""
    base, _ = served_site
    shot = pathlib.Path(os.environ.get("FASTNN_DOCS_SCREENSHOT") or tmp_path / "index.png")
    result = chromium(base, tmp_path / "profile", f"--screenshot={shot}",
                      "--window-size=1280,900", "--hide-scrollbars")
    assert shot.is_file(), result.stderr[-2000:]
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(header[16:20], "big") == 1280
