"""viz benchmark: aggregation + shading through embedscope against datashader called directly,
and the server-side re-render of the interactive plot after a zoom.

    .venv/bin/python benchmarks/viz.py [--n 10000000] [--repeats 5]

Prints a table, writes benchmarks/results/viz.json and viz.md. Warm-up (numba JIT of
datashader's kernels) is timed separately and reported apart. Peers run in the same
process on the same data, so ratios hold on a busy machine while absolute times vary.
On a GPU machine (cupy importable) it also times the CuPy raster twin on 100M points.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
WIDTH, HEIGHT = 1200, 900


def _time(fn, repeats: int) -> tuple[float, float, list[float]]:
    """(first call, median of the warm calls, warm times) in seconds."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    warm = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - t0)
    return first, statistics.median(warm), warm


def _png_bytes(img) -> int:
    buffer = io.BytesIO()
    img.to_pil().save(buffer, format="PNG")
    return buffer.tell()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--categories", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--app-repeats", type=int, default=10)
    parser.add_argument("--skip-app", action="store_true", help="skip the interactive re-render timing")
    args = parser.parse_args()

    import datashader as ds
    import datashader.transfer_functions as tf
    import numba

    from embedscope.viz.aggregate import category_colors, raster, shade

    rng = np.random.default_rng(0)
    n = args.n
    centres = rng.uniform(-20, 20, size=(args.categories, 2))
    labels = rng.integers(0, args.categories, n).astype(np.int32)
    coords = (centres[labels] + rng.normal(size=(n, 2))).astype(np.float32)
    cats = pd.Categorical.from_codes(labels, [str(i) for i in range(args.categories)])
    frame = pd.DataFrame({"x": coords[:, 0].copy(), "y": coords[:, 1].copy(), "label": cats})
    xr_ = (float(frame["x"].min()), float(frame["x"].max()))
    yr_ = (float(frame["y"].min()), float(frame["y"].max()))
    key = category_colors(cats.categories)
    rows = []

    def record(case: str, impl: str, first: float, warm: float, note: str = "") -> None:
        rows.append({"case": case, "impl": impl, "n_points": n, "warmup_s": round(first, 4),
                     "warm_median_s": round(warm, 4), "note": note})

    # -- counts: aggregate + shade + PNG
    def direct_count():
        agg = ds.Canvas(WIDTH, HEIGHT, x_range=xr_, y_range=yr_).points(frame, "x", "y", agg=ds.count())
        return _png_bytes(tf.set_background(tf.shade(agg, cmap=["lightblue", "darkblue"], how="eq_hist", min_alpha=100), "white"))

    def ours_count():
        agg = raster(frame, width=WIDTH, height=HEIGHT, x_range=xr_, y_range=yr_)
        return _png_bytes(shade(agg, cmap=["lightblue", "darkblue"]))

    def ours_count_numpy():
        agg = raster(coords, width=WIDTH, height=HEIGHT, x_range=xr_, y_range=yr_)
        return _png_bytes(shade(agg, cmap=["lightblue", "darkblue"]))

    def direct_agg_only():
        return ds.Canvas(WIDTH, HEIGHT, x_range=xr_, y_range=yr_).points(frame, "x", "y", agg=ds.count())

    def ours_agg_only():
        return raster(frame, width=WIDTH, height=HEIGHT, x_range=xr_, y_range=yr_)

    for case, impl, fn in [
        ("count: aggregate only", "datashader direct", direct_agg_only),
        ("count: aggregate only", "embedscope raster (pandas)", ours_agg_only),
        ("count -> shade -> PNG", "datashader direct", direct_count),
        ("count -> shade -> PNG", "embedscope (pandas)", ours_count),
        ("count -> shade -> PNG", "embedscope (numpy n x 2)", ours_count_numpy),
    ]:
        first, warm, _ = _time(fn, args.repeats)
        record(case, impl, first, warm)
        print(f"{case:28s} {impl:30s} warm-up {first:7.3f} s   warm {warm:7.4f} s", flush=True)

    # -- counts by category
    def direct_cat():
        agg = ds.Canvas(WIDTH, HEIGHT, x_range=xr_, y_range=yr_).points(frame, "x", "y", agg=ds.count_cat("label"))
        return _png_bytes(tf.set_background(tf.shade(agg, color_key=key, how="eq_hist", min_alpha=100), "white"))

    def ours_cat():
        agg = raster(frame, by="label", width=WIDTH, height=HEIGHT, x_range=xr_, y_range=yr_)
        return _png_bytes(shade(agg, color_key=key))

    for impl, fn in [("datashader direct", direct_cat), ("embedscope (pandas)", ours_cat)]:
        first, warm, _ = _time(fn, args.repeats)
        record(f"{args.categories} categories -> shade -> PNG", impl, first, warm)
        print(f"{args.categories} categories -> PNG          {impl:30s} warm-up {first:7.3f} s   warm {warm:7.4f} s", flush=True)

    def ratio(case: str, ours: str, peer: str = "datashader direct") -> float:
        get = {(r["case"], r["impl"]): r["warm_median_s"] for r in rows}
        return round(get[(case, ours)] / get[(case, peer)], 3)

    ratios = {
        "aggregate only (pandas)": ratio("count: aggregate only", "embedscope raster (pandas)"),
        "count PNG (pandas)": ratio("count -> shade -> PNG", "embedscope (pandas)"),
        "count PNG (numpy input)": ratio("count -> shade -> PNG", "embedscope (numpy n x 2)"),
        "categories PNG (pandas)": ratio(f"{args.categories} categories -> shade -> PNG", "embedscope (pandas)"),
    }

    # -- the app's server-side re-render after a zoom
    if not args.skip_app:
        import datashader as ds
        import holoviews as hv
        from holoviews.operation.datashader import dynspread, rasterize
        from holoviews.operation.datashader import shade as hv_shade

        from embedscope.viz.aggregate import category_colors
        from embedscope.viz.figure import EmbeddingPlot

        frame["v"] = frame["x"] * frame["y"]

        def holoviews_chain(color: str | None, hover: bool) -> object:
            """HoloViews' own rasterize -> dynspread -> shade with a first() selector: the peer."""
            hv.extension("bokeh", logo=False)
            points = hv.Points(frame, kdims=["x", "y"], vdims=[c for c in ("label", "v") if c in frame])
            agg = ds.count_cat(color) if color == "label" else ds.mean(color) if color else ds.count()
            raster = rasterize(points, aggregator=agg, width=800, height=600,
                               **({"selector": ds.first("x")} if hover else {}))
            opts = {"color_key": category_colors(frame["label"].cat.categories)} if color == "label" else {}
            shaded = hv_shade(dynspread(raster, threshold=0.5, max_px=3), cnorm="eq_hist", min_alpha=100, **opts)
            return shaded.opts(tools=["hover"] if hover else [], width=800, height=600)

        cases = [("50 cats, hover", "label", True), ("value mean, hover", "v", True), ("density, no hover", None, False)]
        for label, color, hover in cases:
            peers = [("embedscope EmbeddingPlot", lambda color=color, hover=hover: EmbeddingPlot(
                         frame[["x", "y", "label", "v"]], color=color, hover=hover, width=800, height=600,
                         hover_columns=["label"], _prepared=True).view),
                     ("HoloViews rasterize/dynspread/shade", lambda color=color, hover=hover: holoviews_chain(color, hover))]
            for impl, make in peers:
                bokeh_plot = hv.renderer("bokeh").get_plot(make())
                # the Bokeh server updates every RangeXY stream of the plot on a zoom; do the same
                streams = [s for s in bokeh_plot.streams if isinstance(s, hv.streams.RangeXY)]
                spans = [(-10, 10), (-5, 5), (-2, 2), (0, 1), (-15, 15)]
                state = {"i": 0}

                def zoom(streams=streams, state=state, spans=spans):
                    lo, hi = spans[state["i"] % len(spans)]
                    state["i"] += 1
                    for stream in streams:
                        stream.update(x_range=(lo, hi), y_range=(lo, hi))
                    hv.streams.Stream.trigger(streams)

                first, warm, times = _time(zoom, args.app_repeats)
                record(f"app re-render after zoom (800x600, {label})", impl, first, warm,
                       f"worst warm zoom {max(times):.3f} s; spans cycle {spans}")
                print(f"app re-render ({label:20s}) {impl:36s} warm-up {first:7.3f} s   warm {warm:7.4f} s"
                      f"   worst {max(times):7.4f} s", flush=True)
        for label, _, _ in cases:
            case = f"app re-render after zoom (800x600, {label})"
            ratios[f"app re-render, {label} (ours / HoloViews chain)"] = ratio(
                case, "embedscope EmbeddingPlot", "HoloViews rasterize/dynspread/shade")

    # -- GPU twin (only where cupy works)
    gpu = None
    try:
        import cupy as cp

        from embedscope.kernels.raster import bin_points_gpu

        m = 100_000_000
        gx = cp.random.standard_normal(m, dtype=cp.float32)
        gy = cp.random.standard_normal(m, dtype=cp.float32)

        def gpu_count():
            bin_points_gpu(gx, gy, (-5, 5), (-5, 5), WIDTH, HEIGHT)
            cp.cuda.Device().synchronize()

        first, warm, _ = _time(gpu_count, args.repeats)
        gpu = {"n_points": m, "warmup_s": first, "warm_median_s": warm}
        print(f"GPU bincount twin, 100M points: warm {warm * 1e3:.1f} ms")
    except Exception as exc:  # no cupy / no device here
        gpu = {"skipped": f"{type(exc).__name__}: {exc}"[:200]}

    result = {
        "benchmark": "viz",
        "command": "python benchmarks/viz.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                                                            if k in ("n", "categories", "repeats")),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "numba_threads": numba.get_num_threads(), "datashader": ds.__version__},
        "raster": {"width": WIDTH, "height": HEIGHT},
        "rows": rows,
        "ratios": ratios,
        "gpu": gpu,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "viz.json").write_text(json.dumps(result, indent=2))
    lines = ["| case | implementation | points | warm-up (s) | warm median (s) |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['case']} | {r['impl']} | {r['n_points']:,} | {r['warmup_s']:.3f} | {r['warm_median_s']:.4f} |" for r in rows]
    lines += ["", "| ratio (ours / peer, warm medians) | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in ratios.items()]
    lines += ["", f"GPU: {json.dumps(gpu)}", "", f"Command: `{result['command']}`; machine: {result['machine']}"]
    (RESULTS / "viz.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
