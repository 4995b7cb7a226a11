"""The 3-D view's page in a real headless browser (chromium, Playwright), opened from file://.

Skipped as tests/test_app_browser.py is (its ``browser_page`` fixture is reused): where
chromium or Playwright is missing, unless CI requires them. Every request that is not
for the file itself is refused and recorded: the page must draw with nothing fetched.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from tests.test_app_browser import browser_page  # noqa: F401  (the fixture)

HOSTILE = "<img src=x onerror=alert(1)>"
#: Clusters around the origin, off the default camera's line of sight (1, 1, 1), so the
#: hostile cluster at the origin is what the middle of the scene shows.
OUTER = [(8.0, -8.0, 0.0), (-8.0, 8.0, 0.0), (0.0, 0.0, 8.0), (0.0, 0.0, -8.0)]
HOVER_JS = "() => Array.from(document.querySelectorAll('.hovertext')).map(e => e.textContent).join(' | ')"
SCENE_JS = """() => { const c = document.querySelector('.js-plotly-plot .gl-container canvas');
  if (!c) return null; const r = c.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; }"""


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    from embedscope.viz.view3d import save_html_3d

    rng = np.random.default_rng(2)
    centres = np.array([(0.0, 0.0, 0.0)] * 300 + [c for c in OUTER for _ in range(400)])
    X = centres + rng.normal(scale=0.5, size=centres.shape)
    labels = [HOSTILE] * 300 + [name for name in "abcd" for _ in range(400)]
    meta = pd.DataFrame({"label": labels, "word": [f"w{i}" for i in range(len(X))]})
    path = tmp_path_factory.mktemp("view3d_page") / "view.html"
    save_html_3d(X, path, meta, "label", title="three clusters")
    return path


def _hover_text(page, sx: float, sy: float, wait_s: float = 4.0) -> str:
    """The hover label's text after the mouse rests at (sx, sy); "" when none shows."""
    page.mouse.move(sx, sy, steps=3)
    deadline = wait_s * 1000
    waited = 0
    while waited < deadline:
        text = page.evaluate(HOVER_JS)
        if text:
            return text
        page.wait_for_timeout(150)
        waited += 150
    return ""


def test_page_draws_the_webgl_view_offline_and_hover_shows_escaped_metadata(page_file, browser_page):  # noqa: F811
    from PIL import Image

    page = browser_page
    fetched: list[str] = []
    dialogs: list[str] = []

    def route(request_route):
        url = request_route.request.url
        if url.startswith("file://"):
            request_route.continue_()
        else:
            fetched.append(url)
            request_route.abort()

    page.route("**/*", route)
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(page_file.as_uri())
    page.wait_for_selector(".js-plotly-plot .gl-container canvas", timeout=60_000)
    page.get_by_text("3-D view").first.wait_for()
    page.wait_for_timeout(1000)  # the first WebGL frame after the canvas exists
    left, top, width, height = page.evaluate(SCENE_JS)
    assert width > 300 and height > 300
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot(
        clip={"x": left, "y": top, "width": width, "height": height}))).convert("RGB")).astype(int)
    # coloured points were drawn (the grid and axes are greys; glasbey colours are saturated)
    saturated = (shot.max(axis=2) - shot.min(axis=2)) > 80
    assert saturated.mean() > 0.002, saturated.mean()
    # the legend lists the categories, the hostile one as text
    legend = page.evaluate("() => Array.from(document.querySelectorAll('.legendtext')).map(e => e.textContent)")
    assert legend == [HOSTILE, "a", "b", "c", "d"]
    # the modebar keeps its 3-D tools but has no button that posts the data to a server
    titles = page.evaluate("() => Array.from(document.querySelectorAll('.modebar-btn')).map(b => b.dataset.title)")
    assert "Orbital rotation" in titles and not [t for t in titles if "Share" in t or "Edit" in t], titles

    # hover at the middle of the scene: the hostile cluster, its value shown literally
    cx, cy = left + width / 2, top + height / 2
    text = ""
    for dx, dy in ((0, 0), (4, 4), (-4, -4)):
        text = _hover_text(page, cx + dx, cy + dy)
        if text:
            break
    assert f"label: {HOSTILE}" in text and "row " in text, text
    # negative control: an empty corner of the scene shows no point
    assert _hover_text(page, left + 15, top + height - 15, wait_s=1.5) == ""
    # nothing of the user's data became markup, and nothing ran or was fetched
    assert page.evaluate("() => document.querySelectorAll('img').length") == 0
    assert dialogs == [] and fetched == [], (dialogs, fetched)
