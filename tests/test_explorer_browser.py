"""The explorer's legend, layout and labels in a real headless browser (#19).

One server for the module (50 categories in blobs, labels from the category), each
test its own page. Skipped as ``tests/test_app_browser.py`` is where chromium or
Playwright is missing. Screenshots go to ``EMBEDSCOPE_SCREENSHOTS`` when it is set.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_app_browser import (
    ALL_TEXT_JS,
    FIGURE_JS,
    TO_SCREEN_JS,
    WAIT_MS,
    Server,
    _open,
    browser_page,  # noqa: F401  (the fixture)
)

N_TOPICS = 50

# Geometry of the legend list (inside Panel's shadow roots): its box and its scroll state.
LEGEND_JS = """() => { function find(root) { for (const el of root.querySelectorAll('*')) {
    if (el.classList && el.classList.contains('es-legend-list')) return el;
    if (el.shadowRoot) { const f = find(el.shadowRoot); if (f) return f; } } return null; }
  const el = find(document); if (!el) return null;
  const ul = el.querySelector('ul'), r = el.getBoundingClientRect(), items = ul.querySelectorAll('li');
  ul.scrollTop = ul.scrollHeight;
  const last = items[items.length - 1].getBoundingClientRect();
  return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, n: items.length,
          scrolls: ul.scrollHeight > ul.clientHeight, last_top: last.top, last_bottom: last.bottom,
          page_width: document.documentElement.scrollWidth, window_width: window.innerWidth}; }"""
# The texts of the label glyph (Bokeh Text renderers) drawn now.
LABELS_JS = """() => { const out = []; for (const doc of Bokeh.documents) for (const m of doc.all_models)
    if (m.type === 'GlyphRenderer' && m.glyph.type === 'Text' && m.visible) out.push(...m.data_source.data.text);
  return out; }"""


CENTRES = np.random.default_rng(5).uniform(-40, 40, size=(N_TOPICS, 2))


def _topic(i: int) -> str:
    return f"topic {i:02d}"


@pytest.fixture(scope="module")
def explorer_server(tmp_path_factory):
    rng = np.random.default_rng(6)
    topic = rng.integers(0, N_TOPICS, 20_000)
    xy = CENTRES[topic] + rng.normal(size=(topic.size, 2))
    root = tmp_path_factory.mktemp("explorer-browser")
    pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "id": [f"doc-{i}" for i in range(topic.size)],
                  "topic": [_topic(t) for t in topic]}).to_parquet(root / "coords.parquet", index=False)
    server = Server(str(root / "coords.parquet"), "--labels-from", "topic")  # colour: topic, by default
    try:
        yield server
    finally:
        server.stop()


def _shot(page, name: str) -> bytes:
    png = page.screenshot()
    folder = os.environ.get("EMBEDSCOPE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / name).write_bytes(png)
    return png


def test_legend_lists_every_category_beside_the_plot_at_1366x768(explorer_server, browser_page):  # noqa: F811
    page = browser_page
    page.set_viewport_size({"width": 1366, "height": 768})
    fig = _open(page, explorer_server)
    legend = page.evaluate(LEGEND_JS)
    _shot(page, "legend-1366x768.png")
    assert legend is not None and legend["n"] == N_TOPICS, legend
    # colour defaults to the category column, and the legend lies right of the plot frame
    frame_right = fig["left"] + fig["fl"] + fig["fw"]
    assert legend["left"] >= frame_right, (legend, fig)
    assert fig["fw"] > 500 and fig["fh"] > 400, fig
    # every category is reachable: the list scrolls, its last entry comes into the window
    assert legend["scrolls"] and legend["last_bottom"] <= 768, legend
    # no horizontal scrolling of the page
    assert legend["page_width"] <= legend["window_width"], legend
    assert legend["right"] <= legend["window_width"], legend


def test_labels_toggle(explorer_server, browser_page):  # noqa: F811
    from PIL import Image

    page = browser_page
    page.set_viewport_size({"width": 1366, "height": 768})
    fig = _open(page, explorer_server)
    page.wait_for_function(f"() => ({LABELS_JS})().length > 0", timeout=WAIT_MS)
    shown = page.evaluate(LABELS_JS)
    assert shown and all(text.startswith("topic ") for text in shown), shown
    with_labels = _shot(page, "labels-on.png")
    page.locator("input[type=checkbox]").first.click()
    page.wait_for_function(f"() => ({LABELS_JS})().length === 0", timeout=WAIT_MS)
    page.wait_for_timeout(500)
    without = _shot(page, "labels-off.png")
    # the label boxes are gone from the pixels of the plot, not only from the model
    a, b = (np.asarray(Image.open(io.BytesIO(png)).convert("L")).astype(int) for png in (with_labels, without))
    x0, y0 = int(fig["left"] + fig["fl"]), int(fig["top"] + fig["ft"])
    inside = (slice(y0, y0 + int(fig["fh"])), slice(x0, x0 + int(fig["fw"])))
    assert (np.abs(a[inside] - b[inside]) > 60).sum() > 200
    # zoomed in on one topic's blob, the finer level names it
    page.locator("input[type=checkbox]").first.click()
    page.wait_for_function(f"() => ({LABELS_JS})().length > 0", timeout=WAIT_MS)
    assert "View x" in page.evaluate(ALL_TEXT_JS)
    sx, sy = page.evaluate(TO_SCREEN_JS, list(CENTRES[7]))
    page.mouse.move(sx, sy)
    for _ in range(2):
        page.mouse.wheel(0, -400)
        page.wait_for_timeout(150)
    page.wait_for_function(f"() => {{ const f = ({FIGURE_JS})(); return f.x1 - f.x0 < {(fig['x1'] - fig['x0']) / 3}; }}")
    page.wait_for_function(f"() => ({LABELS_JS})().includes({_topic(7)!r})", timeout=WAIT_MS)
    page.wait_for_timeout(1500)
    _shot(page, "labels-zoomed.png")
    zoomed = page.evaluate(LABELS_JS)
    assert _topic(7) in zoomed and all(text.startswith("topic ") for text in zoomed), (zoomed, shown)
