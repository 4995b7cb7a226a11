"""The 3-D view (``embedscope plot coords3d.parquet --out view.html``): build time, page size,
and in headless chromium (here software WebGL: no GPU) load time and time per frame.

    python benchmarks/view3d.py                          # 2k, 50k, 200k and 1M points (1M: sampled to 200k)
    python benchmarks/view3d.py --sizes 20000,200000 --max-points 200000

The layout is a seeded 3-D mixture of 30 labelled clusters with a text column, coloured by
label. A frame is the scene redrawn as a drag redraws it on every mouse move, timed until
a pixel is read back (the GPU's work done); the median of four after the first.
Writes benchmarks/results/view3d.json and .md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, write_results

CHROMIUM = os.environ.get("EMBEDSCOPE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]
# One frame of the scene as a drag draws it (Plotly.relayout would re-plot the traces): the
# scene redrawn, then one pixel read back, which waits for the GPU (or SwiftShader) to finish.
DRAW_JS = """() => {
  const glplot = document.querySelector('.js-plotly-plot')._fullLayout.scene._scene.glplot, gl = glplot.gl;
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  const renderer = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
  const pixel = new Uint8Array(4), times = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    glplot.dirty = true; glplot.redraw(); gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, pixel);
    times.push(performance.now() - t0);
  }
  return [renderer, times];
}"""


def _layout(n: int) -> tuple[np.ndarray, object]:
    import pandas as pd

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 30, n)
    centres = rng.uniform(-20, 20, size=(30, 3))
    X = (centres[labels] + rng.normal(size=(n, 3))).astype(np.float32)
    meta = pd.DataFrame({"label": pd.Categorical.from_codes(labels, [f"cluster {i}" for i in range(30)]),
                         "word": [f"word-{i:07d}" for i in range(n)]})
    return X, meta


def _browser(path: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 850})
            start = time.perf_counter()
            page.goto(path.as_uri(), timeout=300_000)
            page.wait_for_selector(".js-plotly-plot .gl-container canvas", timeout=300_000)
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            load = time.perf_counter() - start
            renderer, times = page.evaluate(DRAW_JS)
            heap = page.evaluate("() => performance.memory ? performance.memory.usedJSHeapSize : 0")
        finally:
            browser.close()
    # the first draw compiles the shaders
    return {"load_s": load, "draw_ms_median": statistics.median(times[1:]), "draw_ms_first": times[0],
            "js_heap_mb": heap / 2**20, "renderer": renderer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2000,50000,200000,1000000")
    parser.add_argument("--max-points", type=int, default=None, help="default: the view's (200,000)")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--name", default="view3d")
    args = parser.parse_args()

    from embedscope.viz.view3d import DEFAULT_MAX_POINTS, View3D, save_html_3d

    max_points = args.max_points or DEFAULT_MAX_POINTS
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        X, meta = _layout(n)
        start = time.perf_counter()
        view = View3D(X, meta, max_points=max_points, title="bench")
        prepared = time.perf_counter() - start
        start = time.perf_counter()
        view.figure("label")
        coloured = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "view.html"
            start = time.perf_counter()
            info = save_html_3d(X, path, meta, "label", max_points=max_points, title="bench")
            written = time.perf_counter() - start
            row = {"points": n, "drawn": info["n_drawn"], "prepare_s": prepared, "figure_s": coloured,
                   "html_s": written, "page_mb": info["bytes"] / 2**20}
            if not args.no_browser:
                row.update(_browser(path))
        rows.append(row)
        print(row, flush=True)
    columns = ["points", "drawn", "prepare_s", "figure_s", "html_s", "page_mb", "load_s", "draw_ms_median",
               "draw_ms_first", "js_heap_mb"]
    table = markdown_table(rows, columns)
    print(table)
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    write_results(args.name, {"machine": machine(), "load_avg": load, "max_points": max_points, "rows": rows},
                  table + f"\n\nLoad average at the end: {load}. prepare: sample and escape the hover text "
                          "(once; serve shares it); figure: one colouring; html: prepare + figure + page; "
                          "load: page open to the first frame; draw: one frame of the scene (median of 4 after the "
                          f"first), renderer {rows[-1].get('renderer', 'not measured')}.")


if __name__ == "__main__":
    main()
