"""Server-side re-render of one zoom of an ``EmbeddingPlot``, split by stage, against a base tree.

    .venv/bin/python benchmarks/zoom_render.py [--n 1000000] [--color moved] [--repeats 10]
    .venv/bin/python benchmarks/zoom_render.py --base /tmp/base   # the same, run at once on another checkout

Zooms one plot of ``n`` clustered points (``width x height`` raster, coloured by
``--color``: ``moved`` is a [0, 1] value shaded linearly as the compare app does,
``label`` 20 categories, ``density``) through its Bokeh plot, as the server does on a
zoom (RangeXY updated and triggered: base image, highlight layer, the plot's update),
and times each zoom and, inside it, the stages: the aggregate pass, datashader's shade,
the hover columns, HoloViews' element and plot update.

``--base DIR`` runs the same measurement in a second process importing ``embedscope``
from DIR (e.g. ``git archive main embedscope | tar -x -C DIR``), at the same time as
this one: on a machine shared with other work both see the same load, so their ratio
holds better than absolute times do (the two also compete with each other). The CPU
time of a zoom (all threads) is printed too: it depends less on the load. Writes
results/NAME.json and .md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, write_results

STAGES = (
    ("embedscope.kernels.view_raster", "aggregate_view", "aggregate pass"),
    ("datashader.transfer_functions", "shade", "datashader shade"),
    ("embedscope.viz.figure", "EmbeddingPlot._hover_values", "hover columns"),
    ("embedscope.viz.figure", "EmbeddingPlot._highlight_image", "highlight layer"),
    ("embedscope.viz.figure", "EmbeddingPlot.render", "render (all of the above but highlight)"),
    ("holoviews.plotting.bokeh.raster", "RGBPlot.get_data", "HoloViews image to Bokeh"),
    ("holoviews.plotting.plot", "GenericElementPlot.compute_ranges", "HoloViews ranges"),
)


def _spy(totals: dict[str, float]) -> None:
    """Wrap each stage's function to add its time to ``totals``."""
    import importlib

    for module_name, path, label in STAGES:
        owner = importlib.import_module(module_name)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        fn = getattr(owner, name)

        def timed(*args, _fn=fn, _label=label, **kwargs):
            start = time.perf_counter()
            try:
                return _fn(*args, **kwargs)
            finally:
                totals[_label] += time.perf_counter() - start

        setattr(owner, name, timed)


def measure(n: int, color: str, repeats: int, width: int, height: int) -> dict:
    """Median zoom and per-stage milliseconds per zoom for this process's ``embedscope``."""
    import holoviews as hv

    from embedscope.viz._input import plot_frame
    from embedscope.viz.figure import EmbeddingPlot
    from embedscope.viz.layers import layer_style

    totals: dict[str, float] = collections.defaultdict(float)
    _spy(totals)
    rng = np.random.default_rng(0)
    label = rng.integers(0, 20, n)
    xy = (rng.normal(scale=10, size=(20, 2))[label] + rng.normal(size=(n, 2))).astype(np.float32)
    meta = pd.DataFrame({"id": np.arange(n), "label": pd.Categorical([f"c{k}" for k in label]),
                         "moved": rng.uniform(size=n)})
    frame = plot_frame(xy, meta)
    start = time.perf_counter()
    column = None if color == "density" else color
    ep = EmbeddingPlot(frame, color=column, _prepared=True, responsive=True, **layer_style(column))
    plot = hv.renderer("bokeh").get_plot(ep.view)
    build = time.perf_counter() - start
    ranges = [s for s in plot.streams if isinstance(s, hv.streams.RangeXY)]
    for s in plot.streams:
        if isinstance(s, hv.streams.PlotSize):
            s.update(width=width, height=height)
    spans = []
    for scale in (1.0, 0.5, 0.25, 0.1, 0.6, 0.3):
        cx, cy = rng.uniform(-20, 20), rng.uniform(-20, 20)
        spans.append(((cx - 20 * scale, cx + 20 * scale), (cy - 20 * scale, cy + 20 * scale)))
    times, cpu = [], []
    for i in range(repeats + 2):
        if i == 2:
            totals.clear()  # the first two compile and warm up
        (x0, x1), (y0, y1) = spans[i % len(spans)]
        t0, c0 = time.perf_counter(), time.process_time()
        for s in ranges:
            s.update(x_range=(x0, x1), y_range=(y0, y1))
        hv.streams.Stream.trigger(ranges)
        if i >= 2:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return {"zoom_ms": 1000 * statistics.median(times), "zoom_cpu_ms": 1000 * statistics.median(cpu), "zoom_ms_all": [round(1000 * t, 1) for t in times],
            "build_s": build, "stages_ms": {k: 1000 * v / repeats for k, v in totals.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--color", default="moved", choices=["moved", "label", "density"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--width", type=int, default=700)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--base", help="a checkout whose embedscope/ runs the same measurement at the same time")
    parser.add_argument("--name", default="zoom_render")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    run = (args.n, args.color, args.repeats, args.width, args.height)
    if args.child:  # the base's measurement, as JSON on stdout
        print(json.dumps(measure(*run)))
        return
    base = None
    if args.base:
        env = dict(os.environ, PYTHONPATH=str(Path(args.base).resolve()), PYTHONDONTWRITEBYTECODE="1",
                   NUMBA_CACHE_DIR=str(Path(args.base).resolve() / ".numba_cache"))
        base = subprocess.Popen([sys.executable, __file__, "--child", *sys.argv[1:]], env=env,
                                stdout=subprocess.PIPE, text=True)
    mine = measure(*run)
    results = {"this tree": mine}
    if base is not None:
        out, _ = base.communicate()
        results["base"] = json.loads(out.strip().splitlines()[-1])
    rows = []
    for name, r in results.items():
        rows.append({"tree": name, "stage": "zoom (median)", "ms": round(r["zoom_ms"], 1)})
        rows.append({"tree": name, "stage": "zoom, CPU time of all threads (median)", "ms": round(r["zoom_cpu_ms"], 1)})
        rows += [{"tree": name, "stage": k, "ms": round(v, 1)} for k, v in r["stages_ms"].items()]
    for row in rows:
        print(f"{row['tree']:10s} {row['stage']:42s} {row['ms']:8.1f} ms")
    load = [round(v, 2) for v in os.getloadavg()]
    note = (f"\n\n{args.n:,} points coloured by {args.color}, {args.width} x {args.height}; stage times are per "
            f"zoom (means). Load average at the end {load} on {os.cpu_count()} CPUs.")
    if base is not None:
        ratio = results["base"]["zoom_ms"] / mine["zoom_ms"]
        cpu_ratio = results["base"]["zoom_cpu_ms"] / mine["zoom_cpu_ms"]
        note += (f" Base / this tree: {ratio:.2f}x wall time, {cpu_ratio:.2f}x CPU time (both run at the same "
                 "time).")
        print(f"base / this tree: {ratio:.2f}x wall, {cpu_ratio:.2f}x CPU")
    write_results(args.name, {"machine": machine(), "args": vars(args), "results": results, "load_average": load},
                  markdown_table(rows, ["tree", "stage", "ms"]) + note)


if __name__ == "__main__":
    main()
