"""The static tile site (``plot --tiles``) in headless chromium from file://, and its tiles."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.test_app_browser import ARGS, CHROMIUM, FIGURE_JS, WAIT_MS, sync_api

CENTRES = {"north": (0.0, 8.0), "south": (0.0, -8.0), "east": (8.0, 0.0)}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from embedscope.cli import main

    root = tmp_path_factory.mktemp("tiles")
    rng = np.random.default_rng(0)
    parts = [pd.DataFrame({"x": rng.normal(cx, 1.0, 2000), "y": rng.normal(cy, 1.0, 2000), "region": name,
                           "word": [f"<b>{name}</b>{i}" for i in range(2000)]})
             for name, (cx, cy) in CENTRES.items()]
    pd.concat(parts, ignore_index=True).to_parquet(root / "coords.parquet")
    out = root / "site"
    assert main(["plot", str(root / "coords.parquet"), "--tiles", "--out", str(out), "--max-zoom", "3",
                 "--color", "region", "--labels-from", "region", "--quiet"]) == 0
    return out


def test_pyramid_layout_and_seamless_tiles(site):
    from PIL import Image

    manifest = json.loads((site / "embedscope-site.json").read_text())
    assert manifest["max_zoom"] == 3 and manifest["points"] == 6000
    files = sorted(p.relative_to(site / "tiles").as_posix() for p in (site / "tiles").rglob("*.png"))
    assert "0/0/0.png" in files and manifest["tiles"] == len(files)
    # Level 1 is four tiles: stitched, they are the level drawn at twice the size of level 0,
    # so its ink sits where level 0's does (same shape, not the same pixels).
    whole = np.asarray(Image.open(site / "tiles/0/0/0.png").convert("RGBA"))[..., 3] > 0
    # Only pixels holding points have ink: three blobs cover a small part of the map.
    assert 0.005 < whole.mean() < 0.3
    stitched = np.zeros((512, 512), dtype=bool)
    for tx in range(2):
        for ty in range(2):
            path = site / f"tiles/1/{tx}/{ty}.png"
            if path.exists():
                stitched[ty * 256:(ty + 1) * 256, tx * 256:(tx + 1) * 256] = \
                    np.asarray(Image.open(path).convert("RGBA"))[..., 3] > 0
    half = stitched.reshape(256, 2, 256, 2).any(axis=(1, 3))
    assert (half & whole).sum() / max(whole.sum(), 1) > 0.8
    # Empty tiles are not written; the page exists and carries no markup from the data.
    assert len([f for f in files if f.startswith("3/")]) < 64
    page = (site / "index.html").read_text()
    assert "<b>north</b>" not in page


def test_page_zooms_the_tiles_from_file_url(site):
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.set_default_timeout(WAIT_MS)
            requested: list[str] = []
            page.on("request", lambda req: requested.append(req.url))
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto((site / "index.html").as_uri())
            page.wait_for_function(f"() => window.Bokeh && Bokeh.index && ({FIGURE_JS})() !== null", timeout=60_000)
            page.wait_for_timeout(1500)
            assert any("/tiles/" in url for url in requested), requested[:5]
            deepest_before = max(int(u.split("/tiles/")[1].split("/")[0]) for u in requested if "/tiles/" in u)
            assert page.locator("text=north").count() >= 1  # a label and the legend
            fig = page.evaluate(FIGURE_JS)
            cx, cy = fig["left"] + fig["fl"] + fig["fw"] / 2, fig["top"] + fig["ft"] + fig["fh"] / 2
            page.mouse.move(cx, cy)
            for _ in range(8):
                page.mouse.wheel(0, -300)
                page.wait_for_timeout(150)
            page.wait_for_timeout(1500)
            after = page.evaluate(FIGURE_JS)
            assert after["x1"] - after["x0"] < (fig["x1"] - fig["x0"]) / 2  # it zoomed
            deepest_after = max(int(u.split("/tiles/")[1].split("/")[0]) for u in requested if "/tiles/" in u)
            assert deepest_after > deepest_before  # deeper tiles were fetched
            page.screenshot(path=str(site.parent / "zoomed.png"))
            assert not errors, errors
        finally:
            browser.close()
