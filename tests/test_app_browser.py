"""``embedscope serve`` in a real headless browser (Debian's chromium, driven by Playwright).

Skipped, with the reason, where chromium or the Playwright library is missing; nothing
downloads a browser. The server runs in a subprocess on 127.0.0.1 and a free port,
with bounded waits, and is always stopped.
"""

from __future__ import annotations

import io
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

CHROMIUM = os.environ.get("EMBEDSCOPE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
WAIT_MS = 30_000

# CI sets EMBEDSCOPE_REQUIRE_BROWSER: there a missing browser is a failure, not a skip.
_REQUIRED = bool(os.environ.get("EMBEDSCOPE_REQUIRE_BROWSER"))
if not Path(CHROMIUM).exists():
    if _REQUIRED:
        raise RuntimeError(f"EMBEDSCOPE_REQUIRE_BROWSER is set but chromium is not at {CHROMIUM}")
    pytest.skip(f"chromium not found ({CHROMIUM}); CI installs it with apt-get install chromium", allow_module_level=True)
if _REQUIRED:
    import playwright.sync_api as sync_api
else:
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="Playwright for Python is not installed (pip install playwright)")

# Finds the figure's view in Bokeh's view tree and reports its ranges and screen geometry.
FIGURE_JS = """() => {
  function* walk(v) { yield v; const kids = v.children ? [...v.children()] : (v.child_views || []);
                      for (const k of kids) yield* walk(k); }
  for (const root of Bokeh.index.roots) for (const v of walk(root)) {
    if (v.model.type === "Figure") {
      const f = v.frame, r = v.canvas_view.el.getBoundingClientRect();
      return {id: v.model.id, x0: f.x_range.start, x1: f.x_range.end, y0: f.y_range.start, y1: f.y_range.end,
              left: r.left, top: r.top, fl: f.bbox.left, ft: f.bbox.top, fw: f.bbox.width, fh: f.bbox.height};
    }
  }
  return null;
}"""
TO_SCREEN_JS = """([x, y]) => {
  function* walk(v) { yield v; const kids = v.children ? [...v.children()] : (v.child_views || []);
                      for (const k of kids) yield* walk(k); }
  for (const root of Bokeh.index.roots) for (const v of walk(root)) if (v.model.type === "Figure") {
    const r = v.canvas_view.el.getBoundingClientRect();
    return [r.left + v.frame.x_scale.compute(x), r.top + v.frame.y_scale.compute(y)];
  }
}"""
TO_DATA_JS = """([sx, sy]) => {
  function* walk(v) { yield v; const kids = v.children ? [...v.children()] : (v.child_views || []);
                      for (const k of kids) yield* walk(k); }
  for (const root of Bokeh.index.roots) for (const v of walk(root)) if (v.model.type === "Figure") {
    const r = v.canvas_view.el.getBoundingClientRect();
    return [v.frame.x_scale.invert(sx - r.left), v.frame.y_scale.invert(sy - r.top)];
  }
}"""

CENTRES = {"a": (-5.0, -5.0), "b": (5.0, -5.0), "c": (-5.0, 5.0), "d": (5.0, 5.0)}
NEEDLE = (0.0, 0.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    """Coordinates (four clusters and one lone 'needle' at the origin) and matching vectors."""
    rng = np.random.default_rng(1)
    labels = rng.choice(list(CENTRES), 4000)
    coords = np.array([CENTRES[k] for k in labels]) + rng.normal(scale=0.5, size=(4000, 2))
    coords = np.vstack([coords, NEEDLE]).astype(np.float32)
    words = [f"w{i}" for i in range(4000)] + ["needle"]
    labels = [*labels, "e"]
    root = tmp_path_factory.mktemp("app")
    frame = pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "label": labels, "word": words})
    frame.to_parquet(root / "coords.parquet", index=False)
    # vectors: the coordinates padded with small noise dims, so PCA recovers the layout
    vectors = np.hstack([coords, 0.01 * rng.normal(size=(len(coords), 6))]).astype(np.float32)
    np.save(root / "vectors.npy", vectors)
    frame[["label", "word"]].to_csv(root / "meta.csv", index=False)
    return root


START_LIMIT_S = 240


class Server:
    """``embedscope serve`` in a subprocess; ``url`` once it answers."""

    def __init__(self, *args: str, launcher: list[str] | None = None, env: dict | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = tempfile.TemporaryFile()
        launcher = launcher or ["-m", "embedscope.viz.cli"]
        self.proc = subprocess.Popen([sys.executable, *launcher, "serve", *args, "--port", str(self.port), "--quiet"],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        # Only a guard against a hang: a first start compiles the view kernels (~21 s
        # cold, ~9 s warm on a quiet 2-core machine), several times that beside three
        # other test workers and a browser on the same two cores.
        deadline = time.monotonic() + START_LIMIT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise AssertionError(f"server did not answer within {START_LIMIT_S} s:\n{self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def browser_page():
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="embedscope-chromium-"), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        try:
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)
            yield page
        finally:
            context.close()


def _open(page, server: Server) -> dict:
    page.goto(server.url, timeout=WAIT_MS)
    page.wait_for_function(f"() => window.Bokeh && Bokeh.index && ({FIGURE_JS})() !== null", timeout=60_000)
    page.wait_for_timeout(1500)  # the first server-side render arrives after the figure exists
    return page.evaluate(FIGURE_JS)


def _ink(page, fig: dict) -> np.ndarray:
    """Non-white pixels of the plot frame, from a screenshot."""
    from PIL import Image

    clip = {"x": fig["left"] + fig["fl"], "y": fig["top"] + fig["ft"], "width": fig["fw"], "height": fig["fh"]}
    img = np.asarray(Image.open(io.BytesIO(page.screenshot(clip=clip))).convert("RGB")).astype(int)
    return img


# Text of the hover tooltips; Bokeh draws them inside nested shadow roots.
TOOLTIP_JS = """() => { const out = []; function visit(root) { for (const el of root.querySelectorAll('*')) {
  if (el.classList && el.classList.contains('bk-Tooltip')) out.push(el.shadowRoot ? el.shadowRoot.textContent : el.textContent);
  if (el.shadowRoot) visit(el.shadowRoot); } } visit(document); return out.join(' | '); }"""


def _hover_finds(page, sx: float, sy: float, text: str, seen: list[str] | None = None) -> bool:
    """Hover at and around (sx, sy) (rounding may put the point a pixel off); True once ``text`` shows.

    The server answers a hover asynchronously; on a loaded 2-core machine that took
    more than 1.5 s, so the exact position gets a long wait and the sweep around it
    runs twice.
    """
    for sweep in range(2):
        for dx in (0, 1, -1, 2, -2):
            for dy in (0, 1, -1):
                page.mouse.move(sx + dx, sy + dy, steps=2)
                wait = 6.0 if (dx, dy, sweep) == (0, 0, 0) else 1.5
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline:
                    shown = page.evaluate(TOOLTIP_JS).replace(" ", "")
                    if seen is not None and shown:
                        seen.append(shown)
                    if f"word:{text}" in shown:
                        return True
                    page.wait_for_timeout(100)
    return False


ALL_TEXT_JS = """() => { const out = [document.body.innerText]; function visit(root) {
  for (const el of root.querySelectorAll('*')) if (el.shadowRoot) { out.push(el.shadowRoot.textContent); visit(el.shadowRoot); } }
  visit(document); return out.join(' '); }"""


def _wait_view_label(page, view_before: str, timeout_s: float = 30.0) -> tuple[dict, str]:
    """The figure's range and the page's "View" label once the label shows that range.

    The label follows the last wheel step's render, which a busy machine delays; a fixed
    pause read an intermediate step's label. Bounded: returns what it has at the deadline.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        after = page.evaluate(FIGURE_JS)
        shown = _view_text(page)
        if (shown != view_before and f"{after['x0']:.4g}" in shown) or time.monotonic() > deadline:
            return after, shown
        page.wait_for_timeout(200)


def _view_text(page) -> str:
    """The 'View x [..], y [..]' line the server writes after each render."""
    import re

    match = re.search(r"View x \[[^\]]*\], y \[[^\]]*\]", page.evaluate(ALL_TEXT_JS))
    return match.group(0) if match else ""


@pytest.fixture(scope="module")
def coords_server(data_files):
    """One server of the four clusters, shared: each page load is its own session."""
    server = Server(str(data_files / "coords.parquet"), "--color", "label", "--text-column", "word")
    try:
        yield server
    finally:
        server.stop()


def test_serve_coordinates_in_browser(data_files, coords_server, browser_page, tmp_path):
    page = browser_page
    server = coords_server
    fig = _open(page, server)
    # the page loads and the plot image appears: four coloured clusters
    img = _ink(page, fig)
    ink = (img < 230).any(axis=2)
    assert 0.005 < ink.mean() < 0.5, ink.mean()
    page.get_by_text("4,001 points").first.wait_for()

    # hover returns the metadata of the lone point under the mouse
    sx, sy = page.evaluate(TO_SCREEN_JS, list(NEEDLE))
    assert _hover_finds(page, sx, sy, "needle"), f"hover did not show the point: {page.evaluate(TOOLTIP_JS)[-300:]}"
    # the needle's tooltip must be gone first, or a slow machine reads the stale one below
    page.mouse.move(5, 5)
    page.wait_for_function(f"() => !({TOOLTIP_JS})().replace(/ /g, '').includes('word:needle')", timeout=20_000)
    assert not _hover_finds(page, sx + 120, sy - 60, "needle"), "negative control: empty space shows the point"

    # search highlights the match
    page.mouse.move(5, 5)
    box = page.locator("input[placeholder='text to find']").first
    box.fill("needle")
    box.press("Enter")
    page.get_by_text("1 match(es) highlighted").wait_for()
    page.wait_for_timeout(1500)
    crop = _ink(page, page.evaluate(FIGURE_JS))
    hx, hy = int(sx - fig["left"] - fig["fl"]), int(sy - fig["top"] - fig["ft"])
    near = crop[max(hy - 4, 0): hy + 5, max(hx - 4, 0): hx + 5]
    red = (near[..., 0] > 180) & (near[..., 1] < 80) & (near[..., 2] < 110)
    assert red.any(), "the search match is not drawn in the highlight colour"
    page.get_by_role("button", name="Clear selection").click()
    page.get_by_text("Selected 0 point(s).").wait_for()

    # box selection; the export holds exactly the selected rows
    page.locator("[title='Box Select']").first.click()
    (ax, ay), (bx, by) = page.evaluate(TO_SCREEN_JS, [2.0, 2.0]), page.evaluate(TO_SCREEN_JS, [8.5, 8.5])
    page.mouse.move(ax, ay)
    page.mouse.down()
    page.mouse.move(bx, by, steps=8)
    page.mouse.up()
    page.get_by_text("Selected").filter(has_text="rows").first.wait_for()
    lo = page.evaluate(TO_DATA_JS, [ax, ay])
    hi = page.evaluate(TO_DATA_JS, [bx, by])
    with page.expect_download() as download:
        page.get_by_role("button", name="Export selection").click()
    target = tmp_path / "selection.csv"
    download.value.save_as(target)
    exported = pd.read_csv(target)
    coords = pd.read_parquet(data_files / "coords.parquet")
    x, y = coords["x"].to_numpy(), coords["y"].to_numpy()
    (x0, x1), (y0, y1) = sorted((lo[0], hi[0])), sorted((lo[1], hi[1]))
    inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    eps = 1e-3 * (x1 - x0)
    borderline = (np.minimum.reduce([np.abs(x - x0), np.abs(x - x1), np.abs(y - y0), np.abs(y - y1)]) < eps)
    got = np.zeros(len(x), bool)
    got[exported["row"].to_numpy()] = True
    assert inside.sum() > 500 and (exported["label"] == "d").all()
    assert not ((got != inside) & ~borderline).any()
    assert list(exported.columns[:3]) == ["row", "x", "y"] and "word" in exported.columns
    np.testing.assert_allclose(exported["x"], x[exported["row"]], rtol=1e-6)

    # a click lists the nearest neighbours (in the 2-D layout: no vectors were given)
    cx, cy = page.evaluate(TO_SCREEN_JS, [-5.0, -5.0])
    page.mouse.click(cx, cy)
    page.get_by_text("Nearest neighbours of row").wait_for()
    page.get_by_text("in the 2-D layout").first.wait_for()

    # zooming re-renders a narrower range on the server side
    before = page.evaluate(FIGURE_JS)
    view_before = _view_text(page)
    assert view_before
    mx, my = page.evaluate(TO_SCREEN_JS, [5.0, 5.0])
    page.mouse.move(mx, my)
    for _ in range(3):
        page.mouse.wheel(0, -400)
        page.wait_for_timeout(200)
    width = before["x1"] - before["x0"]
    page.wait_for_function(f"() => ({FIGURE_JS})().x1 - ({FIGURE_JS})().x0 < {0.8 * width}")
    after, shown = _wait_view_label(page, view_before)
    assert shown != view_before and f"{after['x0']:.4g}" in shown, (shown, after)


# `embedscope serve` whose reducer waits for a file to exist: a page can be opened while it reduces.
HELD_REDUCER = """
import os, sys, time
import embedscope.engine.reduce as reduce

make_reducer = reduce.make_reducer

def held(*args, **kwargs):
    reducer = make_reducer(*args, **kwargs)
    fit_transform = reducer.fit_transform

    def fit_when_released(X, *a, **k):
        deadline = time.monotonic() + 120
        while not os.path.exists(os.environ["EMBEDSCOPE_TEST_RELEASE"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        return fit_transform(X, *a, **k)

    reducer.fit_transform = fit_when_released
    return reducer

reduce.make_reducer = held
from embedscope.viz.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_serve_vectors_reduces_and_neighbours_in_original_space(data_files, browser_page, tmp_path):
    """A page opened while the vectors are reduced shows the plot when it is done, no reload.

    Bokeh sends a page the DataModel types known when its document is first served; the
    hover's model was unknown then, and the page stayed on "Reducing" with a console error.
    """
    page = browser_page
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    (tmp_path / "held.py").write_text(HELD_REDUCER)
    release = tmp_path / "release"
    server = Server(str(data_files / "vectors.npy"), "--meta", str(data_files / "meta.csv"), "--method", "pca",
                    "--text-column", "word", launcher=[str(tmp_path / "held.py")],
                    env={**os.environ, "EMBEDSCOPE_TEST_RELEASE": str(release)})
    try:
        page.goto(server.url, timeout=WAIT_MS)
        page.get_by_text("Reducing:").first.wait_for()
        page.wait_for_timeout(1000)  # the waiting page is fully built and polling
        assert page.evaluate(FIGURE_JS) is None
        release.touch()
        page.wait_for_function(f"() => ({FIGURE_JS})() !== null", timeout=90_000)
        page.get_by_text("reduced with pca").first.wait_for()
        fig = page.evaluate(FIGURE_JS)
        page.wait_for_timeout(1500)
        assert 0.001 < (_ink(page, fig) < 230).any(axis=2).mean() < 0.5, "no points drawn"
        assert not errors, errors

        # the first hover shows a point's fields or nothing, never "undefined"
        seen: list[str] = []
        cx, cy = fig["left"] + fig["fl"] + fig["fw"] / 2, fig["top"] + fig["ft"] + fig["fh"] / 2
        sx, sy = page.evaluate(TO_SCREEN_JS, page.evaluate(TO_DATA_JS, [cx, cy]))
        for dx in (-200, -100, 0, 100, 200):
            page.mouse.move(sx + dx, sy)
            for _ in range(10):
                shown = page.evaluate(TOOLTIP_JS)
                if shown:
                    seen.append(shown)
                page.wait_for_timeout(100)
        assert not [t for t in seen if "undefined" in t], seen

        # PCA keeps the layout up to sign: find a cluster through the needle's neighbours instead
        box = page.locator("input[placeholder='text to find']").first
        box.fill("needle")
        box.press("Enter")
        page.get_by_text("1 match(es) highlighted").wait_for()
        fig = page.evaluate(FIGURE_JS)
        page.mouse.click(fig["left"] + fig["fl"] + fig["fw"] / 2, fig["top"] + fig["ft"] + fig["fh"] / 2)
        page.get_by_text("in the original vector space").first.wait_for()
    finally:
        server.stop()


# The live page's figure (by its name) and its ranges, or null once the explorer replaced it.
LIVE_FIGURE_JS = """() => {
  function* walk(v) { yield v; const kids = v.children ? [...v.children()] : (v.child_views || []);
                      for (const k of kids) yield* walk(k); }
  for (const root of Bokeh.index.roots) for (const v of walk(root))
    if (v.model.type === "Figure" && v.model.name === "es-live-figure") {
      const f = v.frame;
      return {id: v.model.id, x0: f.x_range.start, x1: f.x_range.end, y0: f.y_range.start, y1: f.y_range.end};
    }
  return null;
}"""


# `embedscope serve --live` whose UMAP runs 100,000 epochs: long enough to watch and stop.
LONG_REDUCER = """
import sys
import embedscope.engine.reduce as reduce

make_reducer = reduce.make_reducer
reduce.make_reducer = lambda *args, **kwargs: make_reducer(*args, **kwargs).set_params(n_epochs=100_000)
from embedscope.viz.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_serve_live_redraws_while_fitting_and_stop_keeps_the_layout(data_files, browser_page, tmp_path):
    """The canvas changes while UMAP runs; Stop ends it and the explorer opens on that layout."""
    page = browser_page
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    (tmp_path / "long.py").write_text(LONG_REDUCER)
    server = Server(str(data_files / "vectors.npy"), "--meta", str(data_files / "meta.csv"), "--method", "umap",
                    "--live", "--color", "label", launcher=[str(tmp_path / "long.py")])
    try:
        page.goto(server.url, timeout=WAIT_MS)
        page.get_by_text("drawn live").first.wait_for()
        # the first frames come after the kNN graph and the init (and a cold numba cache)
        page.get_by_text("epoch").first.wait_for(timeout=120_000)
        fig = page.evaluate(FIGURE_JS)
        frames = [_ink(page, fig)]
        for _ in range(3):
            page.wait_for_timeout(1200)
            frames.append(_ink(page, fig))
        assert all(0.001 < (f < 230).any(axis=2).mean() < 0.6 for f in frames), "no points drawn"
        changed = [np.abs(a - b).mean() for a, b in itertools.pairwise(frames)]
        assert max(changed) > 0.5, changed  # the layout moved between frames
        page.screenshot(path=str(tmp_path / "live.png"))
        # the live figure's ranges, recorded until it leaves the page: its last frame is the
        # layout the fit stopped on (the explorer replaces it one poll after that frame)
        page.evaluate(f"() => {{ window.esLive = null; const live = {LIVE_FIGURE_JS};"
                      "setInterval(() => { const f = live(); if (f) window.esLive = f; }, 50); }")
        page.get_by_role("button", name="Stop").click()
        page.get_by_text("Colour by").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)
        stopped = page.evaluate("() => window.esLive")
        explorer = page.evaluate(FIGURE_JS)
        assert page.evaluate(LIVE_FIGURE_JS) is None and explorer["id"] != stopped["id"]
        # The live frame pads the layout's extent by 2% a side; the explorer's view line
        # shows the extent of the points it was given (4 significant digits).
        import re

        shown = [float(v) for v in re.findall(r"-?[\d.]+(?:e-?\d+)?", _view_text(page))]
        assert len(shown) == 4, _view_text(page)
        for k, (lo, hi) in enumerate((("x0", "x1"), ("y0", "y1"))):
            width = stopped[hi] - stopped[lo]
            pad = 0.02 * width / 1.04
            assert abs(shown[2 * k] - (stopped[lo] + pad)) < 2e-3 * width, (shown, stopped)
            assert abs(shown[2 * k + 1] - (stopped[hi] - pad)) < 2e-3 * width, (shown, stopped)
        note = page.evaluate(ALL_TEXT_JS)
        assert "of 100,000 steps" in note
        assert 0.001 < (_ink(page, explorer) < 230).any(axis=2).mean() < 0.6
        page.screenshot(path=str(tmp_path / "explorer.png"))
        assert not errors, errors
    finally:
        server.stop()


# The plot's HoverTool, found in the page's document by the tag the hover fix gives it.
HOVER_TOOL_JS = """() => { for (const doc of Bokeh.documents) for (const m of doc.all_models)
  if (m.type === 'HoverTool' && m.tags.includes('embedscope_fresh')) return m; return null; }"""


def _loner(data_files, label: str) -> tuple[str, list[float]]:
    """Word and position of the point of ``label`` farthest from any other point."""
    frame = pd.read_parquet(data_files / "coords.parquet")
    xy = frame[["x", "y"]].to_numpy(np.float64)
    rows = np.flatnonzero(frame["label"].to_numpy() == label)
    gap = np.sqrt(((xy[rows, None, :] - xy[None, :, :]) ** 2).sum(-1))
    gap[np.arange(rows.size), rows] = np.inf
    row = rows[gap.min(axis=1).argmax()]
    return str(frame["word"].iloc[row]), [float(v) for v in xy[row]]


def test_hover_names_the_point_under_the_cursor_or_nothing(data_files, coords_server, browser_page):
    """The tooltip names the point under the mouse or shows nothing; never the previous point.

    Bokeh draws the tooltip on mouse move, before the server has answered for the new
    position; it used to show the answer for the previous position.
    """
    page = browser_page
    _open(page, coords_server)
    # first a lone point of cluster 'd': its answer is what a stale tooltip would show later
    word, where = _loner(data_files, "d")
    ax, ay = page.evaluate(TO_SCREEN_JS, where)
    seen: list[str] = []
    assert _hover_finds(page, ax, ay, word, seen), f"hover did not show {word}: {seen[-3:]}"
    assert not [t for t in seen if t and f"word:{word}" not in t], seen

    # one jump onto the lone needle: every tooltip seen names it
    seen = []
    sx, sy = page.evaluate(TO_SCREEN_JS, list(NEEDLE))
    page.mouse.move(sx, sy)
    seen.append(page.evaluate(TOOLTIP_JS).replace(" ", ""))
    assert _hover_finds(page, sx, sy, "needle", seen), f"hover did not show the point: {seen[-3:]}"
    stale = [t for t in seen if t and "word:needle" not in t]
    assert not stale, f"the tooltip showed another point than the one under the cursor: {stale[:3]}"

    # straight on to empty space (no point within several pixels): no tooltip at all
    page.mouse.move(sx + 120, sy - 60)
    for _ in range(20):
        shown = page.evaluate(TOOLTIP_JS).replace(" ", "")
        assert "word:" not in shown, f"empty space shows a point: {shown[:200]}"
        page.wait_for_timeout(100)

    # with the server's answers stopped, the needle's answer must not be shown over the other point
    assert _hover_finds(page, sx, sy, "needle")
    page.evaluate(f"() => {{ ({HOVER_TOOL_JS})().callback = null }}")
    page.mouse.move(ax, ay)
    page.wait_for_timeout(500)
    assert "word:" not in page.evaluate(TOOLTIP_JS).replace(" ", "")
    # negative control: without the fix's filter the same move shows the stale needle there
    page.evaluate(f"() => {{ ({HOVER_TOOL_JS})().filters = {{}} }}")
    page.mouse.move(ax + 1, ay)
    page.wait_for_timeout(500)
    assert "word:needle" in page.evaluate(TOOLTIP_JS).replace(" ", ""), "negative control: no stale tooltip"


def test_layout_fills_the_window_keeps_the_view_and_clears(coords_server, browser_page):
    """The plot fills the window and follows it; a new colour keeps the zoom; Clear drops the neighbours."""
    page = browser_page
    page.set_viewport_size({"width": 1500, "height": 1100})
    fig = _open(page, coords_server)
    # sidebar 260 px and legend list 200 px; the rest of the window goes to the plot (frame
    # within its axes and toolbar)
    assert fig["fw"] > 850 and fig["fh"] > 700, fig
    for centre in CENTRES.values():  # the raster spans the whole frame: each cluster drawn where it lies
        px, py = page.evaluate(TO_SCREEN_JS, list(centre))
        img = _ink(page, fig)
        hx, hy = int(px - fig["left"] - fig["fl"]), int(py - fig["top"] - fig["ft"])
        assert (img[hy - 6: hy + 7, hx - 6: hx + 7] < 200).any(), centre
    page.set_viewport_size({"width": 1100, "height": 800})
    page.wait_for_function(f"() => ({FIGURE_JS})().fw < {fig['fw'] - 300}")
    small = page.evaluate(FIGURE_JS)
    assert small["fw"] > 450 and small["fh"] > 400 and small["fh"] < fig["fh"] - 200, small

    # zoom in, then colour by density: the view stays
    mx, my = page.evaluate(TO_SCREEN_JS, [5.0, 5.0])
    page.mouse.move(mx, my)
    view_before = _view_text(page)
    for _ in range(3):
        page.mouse.wheel(0, -400)
        page.wait_for_timeout(200)
    page.wait_for_function(f"() => ({FIGURE_JS})().x1 - ({FIGURE_JS})().x0 < {0.8 * (small['x1'] - small['x0'])}")
    zoomed, _ = _wait_view_label(page, view_before)  # the last wheel step's range reached the server
    page.mouse.move(5, 5)  # no tooltip over the frame in the screenshots
    page.wait_for_timeout(500)
    coloured = _ink(page, zoomed)
    page.locator("select").first.select_option("(density)")
    for _ in range(60):  # the same figure gets a new image (set_color), not a new figure
        page.wait_for_timeout(250)
        if not np.array_equal(_ink(page, zoomed), coloured):
            break
    else:
        raise AssertionError("the plot did not change colour")
    page.wait_for_timeout(1000)
    recoloured = page.evaluate(FIGURE_JS)
    assert recoloured["id"] == zoomed["id"]
    for key in ("x0", "x1", "y0", "y1"):
        assert recoloured[key] == pytest.approx(zoomed[key], abs=1e-6 * (zoomed["x1"] - zoomed["x0"])), \
            (key, zoomed, recoloured)

    # a click lists neighbours; Clear selection removes them with the selection
    page.mouse.click(mx, my)
    page.get_by_text("Nearest neighbours of row").wait_for()
    # the table's header: its own model update may land after the title's
    page.wait_for_function(f"() => ({ALL_TEXT_JS})().includes('distance')", timeout=30_000)
    page.get_by_role("button", name="Clear selection").click()
    page.get_by_text("Selected 0 point(s).").wait_for()
    page.get_by_text("Click a point to list its nearest neighbours.").wait_for()
    text = page.evaluate(ALL_TEXT_JS)
    assert "Nearest neighbours of row" not in text and "distance" not in text


def test_static_html_shows_its_note(tmp_path, browser_page):
    """save_html's note is in the page body, where the browser shows it (not inside BokehJS)."""
    from embedscope.viz.export import save_html

    coords = np.random.default_rng(3).normal(size=(500, 2))
    path = save_html(coords, tmp_path / "plot.html", serve_hint="embedscope serve coords.parquet")
    page = browser_page
    page.goto(path.as_uri(), timeout=WAIT_MS)
    note = page.locator("p.embedscope-note")
    note.wait_for()
    assert note.is_visible()
    assert "does not re-aggregate" in page.evaluate("() => document.body.innerText")
    assert "embedscope serve coords.parquet" in note.inner_text()
    box = note.bounding_box()
    assert box["width"] > 100 and box["height"] > 10
    # negative control: the note put in place of the file's first "<body>", as before, is not shown
    text = path.read_text(encoding="utf-8")
    start = text.index('<p class="embedscope-note"')
    note_html = text[start: text.index("</p>", start) + 4]
    old = text.replace(note_html, "").replace("<body>", f"<body>\n{note_html}", 1)
    (tmp_path / "old.html").write_text(old, encoding="utf-8")
    page.goto((tmp_path / "old.html").as_uri(), timeout=WAIT_MS)
    page.wait_for_function("() => window.Bokeh !== undefined || document.readyState === 'complete'")
    assert "does not re-aggregate" not in page.evaluate("() => document.body.innerText")


# --------------------------------------------------------------------------- hostile input

PAYLOAD = "<img src=x onerror=\"window.__xss='{}'\">"
# Every element, shadow roots included: an <img src=x> or a javascript: link anywhere means markup got through.
INJECTED_JS = """() => { const found = []; function visit(root) { for (const el of root.querySelectorAll('*')) {
  if (el.tagName === 'IMG' && el.getAttribute('src') === 'x') found.push('img');
  if (el.tagName === 'A' && (el.getAttribute('href') || '').toLowerCase().startsWith('javascript')) found.push('a');
  if (el.shadowRoot) visit(el.shadowRoot); } } visit(document); return found; }"""


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory):
    """The four clusters again, but the needle's word, a category and the file name are markup."""
    rng = np.random.default_rng(2)
    labels = list(rng.choice(list(CENTRES), 2000))
    coords = np.vstack([np.array([CENTRES[k] for k in labels]) + rng.normal(scale=0.5, size=(2000, 2)), NEEDLE])
    words = [f"w{i}" for i in range(2000)] + [PAYLOAD.format("word") + " [md](javascript:window.__xss='md') **b**"]
    labels = [PAYLOAD.format("label") if k == "a" else k for k in labels] + ["e"]
    root = tmp_path_factory.mktemp("hostile")
    path = root / (PAYLOAD.format("file").replace("/", "") + ".parquet")
    pd.DataFrame({"x": coords[:, 0].astype(np.float32), "y": coords[:, 1].astype(np.float32), "label": labels,
                  "word": words}).to_parquet(path, index=False)
    return path


def test_hostile_metadata_is_shown_as_text_never_run(hostile_files, browser_page):
    page = browser_page
    failed = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    requested = []
    page.on("request", lambda r: requested.append(r.url))
    server = Server(str(hostile_files), "--color", "label", "--text-column", "word")
    try:
        _open(page, server)
        page.get_by_text("2,001 points").first.wait_for()
        # the file name is in the sidebar as text
        assert "onerror=\"window.__xss='file'\"" in page.evaluate(ALL_TEXT_JS)

        # hover: the tooltip shows the markup as text
        sx, sy = page.evaluate(TO_SCREEN_JS, list(NEEDLE))
        assert _hover_finds(page, sx, sy, "<imgsrc=x"), page.evaluate(TOOLTIP_JS)[-300:]

        # search, then a click listing the needle's neighbours: title and table carry the value
        page.mouse.move(5, 5)
        box = page.locator("input[placeholder='text to find']").first
        box.fill("onerror")
        box.press("Enter")
        page.get_by_text("1 match(es) highlighted").wait_for()
        page.mouse.click(sx, sy)
        page.get_by_text("Nearest neighbours of row 2000").wait_for()
        text = page.evaluate(ALL_TEXT_JS)
        assert "Nearest neighbours of row 2000 (<img src=x onerror=" in text, text[-2000:]
        assert "[md](javascript:window.__xss='md') **b**" in text
        page.wait_for_timeout(1000)  # an onerror fires as soon as the broken image is parsed

        assert page.evaluate("() => window.__xss") is None
        assert page.evaluate(INJECTED_JS) == []
        # the page needed nothing from Panel's /components/ route (it answers 404 now)
        assert not [u for u in requested if "/components/" in u], requested
        assert not failed, failed

        # negative control: the same payload put in as markup does run in this browser
        page.evaluate("(p) => { const d = document.createElement('div'); d.innerHTML = p; document.body.append(d); }",
                      PAYLOAD.format("control"))
        page.wait_for_function("() => window.__xss === 'control'", timeout=10_000)
    finally:
        server.stop()


def test_dns_rebinding_name_is_refused_in_the_browser(data_files):
    """evil.example resolved to 127.0.0.1, as a rebinding attacker's DNS would: the page is refused."""
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="embedscope-chromium-"), executable_path=CHROMIUM, headless=True,
            args=[*ARGS, "--host-resolver-rules=MAP evil.example 127.0.0.1"])
        server = Server(str(data_files / "coords.parquet"))
        try:
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)
            response = page.goto(f"http://evil.example:{server.port}/", timeout=WAIT_MS)
            assert response.status == 403 and "host name" in page.content()
            assert page.evaluate("() => typeof window.Bokeh") == "undefined"
            # negative control: the server's own name through the same browser loads the app
            response = page.goto(f"http://localhost:{server.port}/", timeout=WAIT_MS)
            assert response.status == 200
            page.wait_for_function(f"() => window.Bokeh && Bokeh.index && ({FIGURE_JS})() !== null", timeout=60_000)
        finally:
            server.stop()
            context.close()
