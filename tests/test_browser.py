"""Reports and the explorer in a real browser (headless Chromium driven by playwright).

Serves a freshly rendered report folder over http on 127.0.0.1 and the explorer through Voila
on 127.0.0.1, and checks: no console errors, no request leaves the machine (the pages open
offline), every figure renders, and changing the explorer's method changes the heatmap.
Screenshots go to the test's tmp folder (and to ``$LRPKIT_SCREENSHOTS`` when set).

Needs Debian's ``chromium`` (``apt-get install -y chromium``; ``python3 tasks.py test`` installs
it when missing) and the ``playwright`` and ``voila`` Python packages (dev extra); the test
skips with a message naming what is missing.
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("LRPKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="headless browser test needs Debian's chromium "
                       "(apt-get install -y chromium) or LRPKIT_CHROMIUM=/path/to/chrome"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package "
                               "(pip install playwright; the browser itself comes from apt's chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serve(folder: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


class _Page:
    """A page that records console errors and aborts (and records) every non-local request."""

    def __init__(self, browser, width=1400, height=1000):
        self.ctx = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.ctx.new_page()
        self.errors: list[str] = []
        self.external: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

        def route(r):
            host = urlparse(r.request.url).hostname
            if r.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
                r.continue_()
            else:
                self.external.append(r.request.url)
                r.abort()

        self.page.route("**/*", route)

    def images_ok(self) -> tuple[int, list[str]]:
        """(number of visible images, the sources of those that did not render)."""
        imgs = self.page.eval_on_selector_all(
            "img", "els => els.filter(e => e.offsetParent !== null)"
                   ".map(e => [e.currentSrc.slice(0, 60), e.complete && e.naturalWidth > 0])")
        return len(imgs), [src for src, ok in imgs if not ok]

    def close(self):
        self.ctx.close()


def _shots(tmp_path: Path) -> Path:
    d = Path(os.environ.get("LRPKIT_SCREENSHOTS") or tmp_path / "screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_reports_render_offline_without_console_errors(browser, tmp_path):
    from lrpkit.batch import run_all

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    shutil.copy(ROOT / "tests" / "notebooks" / "grid_probe.ipynb", nbs / "00_probe.ipynb")
    out = tmp_path / "reports"
    summary = run_all("smoke", out_dir=out, nb_dir=nbs, progress=False, retries=0)
    assert summary.ok, str(summary)
    shots = _shots(tmp_path)
    with _serve(out) as base:
        pg = _Page(browser)
        try:
            pg.page.goto(f"{base}/index.html", wait_until="load")
            n, broken = pg.images_ok()
            assert n >= 1 and not broken                      # the thumbnail
            assert pg.page.locator("a[href='00_probe.html']").count() == 1
            pg.page.screenshot(path=str(shots / "index.png"), full_page=True)
            pg.page.click("a[href='00_probe.html']")
            pg.page.wait_for_load_state("load")
            n, broken = pg.images_ok()
            assert n >= 1 and not broken                      # the embedded figure
            assert "load_config" not in pg.page.content()     # code hidden
            pg.page.screenshot(path=str(shots / "report.png"), full_page=True)
            assert not pg.errors, pg.errors
            assert not pg.external, f"the report loads from a network: {pg.external}"
        finally:
            pg.close()


@pytest.fixture(scope="module")
def voila(scenes_root, tmp_path_factory):
    voila_bin = Path(sys.executable).parent / "voila"
    if not voila_bin.exists():
        pytest.skip("the explorer browser test needs voila (pip install voila)")
    from explorer_setup import make_explorer_config

    cfg = make_explorer_config(tmp_path_factory.mktemp("voila"), scenes_root)
    from lrpkit.widgets import voila_command

    port = _free_port()
    argv, env = voila_command(ROOT / "tests" / "notebooks" / "explorer_app.ipynb", port, config=cfg)
    log = tmp_path_factory.mktemp("voila-log") / "voila.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    t0 = time.time()
    while time.time() - t0 < 120:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            break
        if proc.poll() is not None:
            pytest.fail(f"voila exited: {log.read_text()[-2000:]}")
        time.sleep(0.3)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _heatmap_src(page) -> str:
    return page.eval_on_selector(".lrpkit-heatmap", "e => e.currentSrc || e.src || ''")


def test_explorer_in_voila_method_change_changes_heatmap(browser, voila, tmp_path):
    shots = _shots(tmp_path)
    pg = _Page(browser, width=1500, height=1100)
    page = pg.page
    try:
        page.goto(voila, wait_until="load", timeout=300_000)
        page.wait_for_selector(".lrpkit-heatmap", timeout=300_000)
        page.wait_for_function("() => { const e = document.querySelector('.lrpkit-heatmap');"
                               " return e && e.naturalWidth > 0; }", timeout=300_000)
        page.wait_for_function("() => !document.querySelector('.lrpkit-busy .lrpkit-spin')", timeout=300_000)
        n, broken = pg.images_ok()
        assert n >= 3 and not broken, broken      # image | heatmap + colour bar | overlay, scores, curve
        views = page.eval_on_selector_all(".lrpkit-heatmap, .lrpkit-scores, .lrpkit-curve",
                                          "els => els.map(e => e.naturalWidth)")
        assert len(views) == 3 and all(w > 0 for w in views), views
        # parameters are drop-downs, number boxes and check boxes: no free-text box reads "None"
        texts = page.eval_on_selector_all("input[type=text]", "els => els.map(e => e.value)")
        assert "None" not in texts, texts
        before = page.locator(".lrpkit-heatmap").screenshot()
        src = _heatmap_src(page)
        page.screenshot(path=str(shots / "explorer.png"))
        page.select_option(".lrpkit-method select", "sensitivity")
        page.wait_for_function(f"() => {{ const e = document.querySelector('.lrpkit-heatmap');"
                               f" return e && (e.currentSrc || e.src) !== {src!r} && e.naturalWidth > 0; }}",
                               timeout=300_000)
        page.wait_for_function("() => !document.querySelector('.lrpkit-busy .lrpkit-spin')", timeout=300_000)
        after = page.locator(".lrpkit-heatmap").screenshot()
        assert after != before                                  # the pixels changed, not only the URL
        assert "sensitivity" in page.inner_text(".lrpkit-busy")
        page.screenshot(path=str(shots / "explorer-sensitivity.png"))
        assert not pg.errors, pg.errors
        assert not pg.external, f"the explorer loads from a network: {pg.external}"
    finally:
        pg.close()
