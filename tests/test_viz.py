"""viz: raster counts, categorical aggregation, plot objects, PNG/HTML export, the plot CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embedscope.datasets import make_mixture
from embedscope.errors import DataError
from embedscope.kernels.raster import bin_points, bin_points_cpu
from embedscope.viz.aggregate import raster, shade
from embedscope.viz.select import rows_in_box, rows_in_polygon


@pytest.fixture(scope="module")
def blobs():
    """Four tight, well separated 2-D clusters with labels and words."""
    rng = np.random.default_rng(0)
    centres = np.array([[-5.0, -5.0], [5.0, -5.0], [-5.0, 5.0], [5.0, 5.0]])
    labels = rng.integers(0, 4, 8000)
    coords = (centres[labels] + rng.normal(scale=0.4, size=(8000, 2))).astype(np.float32)
    meta = pd.DataFrame({"label": labels, "word": [f"w{i}" for i in range(8000)]})
    return coords, meta


# ----------------------------------------------------------------------------- raster


def _hist(coords, agg):
    (x0, x1), (y0, y1) = agg.attrs["x_range"], agg.attrs["y_range"]
    h, w = agg.shape[:2]
    counts, _, _ = np.histogram2d(coords[:, 1], coords[:, 0], bins=[h, w], range=[[y0, y1], [x0, x1]])
    return counts


def test_raster_counts_equal_histogram2d(blobs):
    coords, _ = blobs
    agg = raster(coords, width=64, height=48)
    assert agg.dims == ("y", "x") and agg.shape == (48, 64) and agg.dtype == np.uint32
    np.testing.assert_array_equal(agg.values, _hist(coords, agg))
    assert int(agg.sum()) == len(coords)  # points on the upper edge are kept, not cropped


def test_raster_explicit_range_drops_outside(blobs):
    coords, _ = blobs
    agg = raster(coords, width=30, height=20, x_range=(0, 8), y_range=(-8, 0))
    np.testing.assert_array_equal(agg.values, _hist(coords, agg))
    inside = (coords[:, 0] >= 0) & (coords[:, 0] <= 8) & (coords[:, 1] >= -8) & (coords[:, 1] <= 0)
    assert int(agg.sum()) == int(inside.sum()) and 0 < inside.sum() < len(coords)


def test_raster_pandas_and_numpy_agree(blobs):
    coords, meta = blobs
    frame = pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "label": meta["label"]})
    a = raster(coords, width=40, height=30)
    b = raster(frame, width=40, height=30)
    np.testing.assert_array_equal(a.values, b.values)


def test_raster_by_category(blobs):
    coords, meta = blobs
    agg = raster(coords, by=meta["label"].to_numpy(), width=40, height=30)
    assert agg.dims == ("y", "x", "category") and agg.shape == (30, 40, 4)
    total = raster(coords, width=40, height=30)
    np.testing.assert_array_equal(agg.values.sum(axis=2), total.values)
    for k in range(4):
        sub = coords[meta["label"].to_numpy() == k]
        counts, _, _ = np.histogram2d(sub[:, 1], sub[:, 0], bins=[30, 40],
                                      range=[agg.attrs["y_range"], agg.attrs["x_range"]])
        np.testing.assert_array_equal(agg.values[:, :, k], counts)
    # by a DataFrame column name
    frame = pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "label": meta["label"]})
    named = raster(frame, by="label", width=40, height=30)
    np.testing.assert_array_equal(named.values, agg.values)


def test_raster_mean_of_value(blobs):
    coords, _ = blobs
    agg = raster(coords, value=coords[:, 0], width=20, height=10)
    counts = raster(coords, width=20, height=10).values
    assert np.isnan(agg.values[counts == 0]).all()
    centres = agg.coords["x"].values
    filled = counts > 0
    # the mean x of a pixel lies inside that pixel's column
    half = (centres[1] - centres[0]) / 2
    col = np.broadcast_to(centres, agg.shape)
    assert (np.abs(agg.values[filled] - col[filled]) <= half + 1e-6).all()


def test_raster_bad_input():
    with pytest.raises(ValueError, match="shape"):
        raster(np.zeros(10))
    with pytest.raises(ValueError, match="not found"):
        raster(pd.DataFrame({"x": [1.0], "y": [2.0]}), by="nope")
    with pytest.raises(ValueError, match="positive"):
        raster(np.zeros((3, 2)), width=0)
    with pytest.raises(ValueError, match="one value per point"):
        raster(np.zeros((3, 2)), by=[1, 2])


def test_raster_dask_dataframe(blobs):
    dd = pytest.importorskip("dask.dataframe")
    coords, _ = blobs
    frame = dd.from_pandas(pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1]}), npartitions=3)
    agg = raster(frame, width=32, height=24)
    np.testing.assert_array_equal(agg.values, raster(coords, width=32, height=24).values)


def test_kernel_cpu_twin_matches_datashader(blobs):
    coords, meta = blobs
    agg = raster(coords, by=meta["label"].to_numpy(), width=50, height=40)
    grid = bin_points(coords[:, 0], coords[:, 1], agg.attrs["x_range"], agg.attrs["y_range"], 50, 40,
                      meta["label"].to_numpy(), 4)
    np.testing.assert_array_equal(grid.transpose(1, 2, 0), agg.values)
    weights = bin_points_cpu(coords[:, 0], coords[:, 1], (-8, 8), (-8, 8), 16, 16, weights=np.full(len(coords), 2.0))
    counts = bin_points_cpu(coords[:, 0], coords[:, 1], (-8, 8), (-8, 8), 16, 16)
    np.testing.assert_allclose(weights, 2.0 * counts)
    with pytest.raises(ValueError, match="x_range"):
        bin_points_cpu(coords[:, 0], coords[:, 1], (1, 1), (0, 1), 4, 4)


@pytest.mark.gpu
def test_gpu_twin_same_aggregate(blobs):
    cp = pytest.importorskip("cupy")
    coords, meta = blobs
    labels = meta["label"].to_numpy()
    for kwargs in ({}, {"by": labels}, {"value": coords[:, 1]}):
        cpu = raster(coords, width=50, height=40, **kwargs)
        gkw = {k: cp.asarray(v) for k, v in kwargs.items()}
        gpu = raster(cp.asarray(coords), width=50, height=40, **gkw)
        assert gpu.dims[:2] == cpu.dims[:2] and gpu.dtype == cpu.dtype
        np.testing.assert_allclose(cp.asnumpy(gpu.data), cpu.values, equal_nan=True)
        np.testing.assert_allclose(gpu.coords["x"].values, cpu.coords["x"].values)
    img = shade(raster(cp.asarray(coords), width=50, height=40))
    assert img.shape == (40, 50)


# ----------------------------------------------------------------------------- selection


def test_rows_in_box_and_polygon(blobs):
    coords, _ = blobs
    x, y = coords[:, 0].astype(np.float64), coords[:, 1].astype(np.float64)
    box = rows_in_box(x, y, 6.0, 6.0, 0.0, 0.0)  # corners in any order
    expected = np.flatnonzero((x >= 0) & (x <= 6) & (y >= 0) & (y <= 6))
    np.testing.assert_array_equal(box, expected)
    square = np.array([[0, 0], [6, 0], [6, 6], [0, 6]], dtype=float)
    np.testing.assert_array_equal(rows_in_polygon(x, y, square), expected)
    triangle = np.array([[0, 0], [10, 0], [0, 10]], dtype=float)
    tri = rows_in_polygon(x, y, triangle)
    expected_tri = np.flatnonzero((x > 0) & (y > 0) & (x + y < 10))
    assert len(np.setxor1d(tri, expected_tri)) <= 2  # only points exactly on an edge may differ
    with pytest.raises(ValueError, match="polygon"):
        rows_in_polygon(x, y, np.zeros((2, 2)))


# ----------------------------------------------------------------------------- plot objects


def _render(view):
    import holoviews as hv

    return hv.render(view, backend="bokeh")


@pytest.mark.parametrize("kind", ["numpy", "pandas", "reducer"])
def test_plot_builds(kind, blobs):
    import holoviews as hv

    from embedscope.viz import plot

    coords, meta = blobs
    if kind == "numpy":
        view = plot(coords, meta, color="label")
    elif kind == "pandas":
        view = plot(pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "word": meta["word"], "v": coords[:, 0]}),
                    color="v")
    else:
        from embedscope.engine.base import BaseReducer

        class Fitted(BaseReducer):
            """A stand-in fitted reducer: plot() only reads embedding_."""

            def __init__(self, n_components=2):
                self.n_components = n_components

            def fit(self, X, y=None):
                self.embedding_ = np.asarray(X)[:, :2]
                return self

        view = plot(Fitted().fit(coords), meta)
    assert isinstance(view, hv.DynamicMap) and isinstance(view[()], hv.Overlay)
    fig = _render(view)
    tools = {type(t).__name__ for t in fig.tools}
    assert {"HoverTool", "BoxSelectTool", "LassoSelectTool", "WheelZoomTool"} <= tools


def test_plot_of_a_real_reducer(mixture_5k):
    from embedscope import PCA
    from embedscope.viz import plot

    X, labels = mixture_5k
    reducer = PCA(n_components=2)
    if not hasattr(reducer.fit(X), "embedding_"):
        reducer.embedding_ = reducer.transform(X)  # PCA keeps no embedding_; plot reads it
    _render(plot(reducer, pd.DataFrame({"label": labels}), color="label"))


def test_plot_unfitted_and_bad_input(blobs):
    from embedscope import PCA
    from embedscope.viz import plot

    coords, meta = blobs
    with pytest.raises(ValueError, match="not fitted"):
        plot(PCA(n_components=2))
    bad = coords.copy()
    bad[7, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        plot(bad)
    with pytest.raises(DataError, match="colour"):
        plot(coords, meta, color="nope")
    with pytest.raises(DataError, match="rows"):
        plot(coords, meta.iloc[:10])
    with pytest.raises(DataError, match="shape"):
        plot(np.zeros((5, 4)))


def test_selection_yields_full_data_rows(blobs):
    from embedscope.viz import EmbeddingPlot

    coords, meta = blobs
    ep = EmbeddingPlot(coords, meta, color="label")
    seen = []
    ep.on_select(seen.append)
    ep.bounds.event(bounds=(0.0, 0.0, 10.0, 10.0))
    expected = np.flatnonzero((coords[:, 0] >= 0) & (coords[:, 0] <= 10) & (coords[:, 1] >= 0) & (coords[:, 1] <= 10))
    np.testing.assert_array_equal(ep.selected, expected)
    assert len(seen) == 1 and len(expected) > 1000  # rows of the data, far more than the pixels hit
    frame = ep.selection_frame()
    assert list(frame["row"]) == list(expected) and (frame["label"].astype(int) == 3).all()
    ep.lasso.event(geometry=np.array([[-10, -10], [0, -10], [0, 0], [-10, 0]]))
    assert (meta["label"].to_numpy()[ep.selected] == 0).all() and ep.selected.size > 1000
    # highlighted layer draws exactly the selected points; the base is muted
    rgb = ep.highlight[()]
    alpha = rgb.data["A"] if hasattr(rgb.data, "data_vars") else np.asarray(rgb.dimension_values(5))
    assert np.asarray(alpha).max() == 255
    assert ep._muted.muted is True
    ep.clear_selection()
    assert ep.selected.size == 0 and ep._muted.muted is False
    # with nothing selected the highlight layer is one transparent pixel, not a full image
    empty = ep.highlight[()]
    assert empty.data.shape[:2] == (1, 1) and not np.asarray(empty.data).any()
    with pytest.raises(IndexError):
        ep.select([len(coords)])
    with pytest.raises(IndexError):
        ep.select([-1, 2])
    # unsorted, repeated ids come back sorted and unique; sorted ones are taken as they are, copied
    assert ep.select([5, 2, 5, 0]).tolist() == [0, 2, 5]
    mine = np.array([1, 3, 4])
    ids = ep.select(mine)
    mine[0] = 7
    assert ids.tolist() == [1, 3, 4] and ep.selected.tolist() == [1, 3, 4]


def test_bokeh_figure_has_prompt_ranges_and_fresh_hover(blobs):
    """The hooks: zoom ranges reported 50 ms after a step; the hover filter and redraw installed."""
    import holoviews as hv

    from embedscope.viz import EmbeddingPlot
    from embedscope.viz.figure import RANGES_DELAY_MS

    coords, meta = blobs
    ep = EmbeddingPlot(coords[:500], meta.iloc[:500], width=120, height=90, responsive=True,
                       x_range=(0.0, 6.0), y_range=(0.0, 6.0))
    fig = hv.render(ep.view, backend="bokeh")
    assert fig.lod_timeout == RANGES_DELAY_MS < 500
    assert (fig.x_range.start, fig.x_range.end) == pytest.approx((0.0, 6.0))  # the view asked for
    hover = [t for t in fig.tools if t.__class__.__name__ == "HoverTool" and "embedscope_fresh" in t.tags]
    assert len(hover) == 1 and "image_index" in hover[0].filters[""].code
    position = hover[0].callback.args["position"]
    assert position.js_property_callbacks.get("change:data")
    # negative control: without hover there is no server hover to fix
    plain = hv.render(EmbeddingPlot(coords[:500], hover=False, width=120, height=90).view, backend="bokeh")
    assert not [t for t in plain.tools if "embedscope_fresh" in getattr(t, "tags", [])]


def test_bokeh_figure_draws_on_a_plain_canvas(blobs):
    """No WebGL: HoloViews asks for it by default, and BokehJS then copies its (empty) WebGL
    canvas into the plot at every paint, a GPU read-back of the whole plot per frame."""
    import holoviews as hv

    from embedscope.viz import EmbeddingPlot

    coords, meta = blobs
    fig = hv.render(EmbeddingPlot(coords[:500], meta.iloc[:500], width=120, height=90).view, backend="bokeh")
    assert fig.output_backend == "canvas"
    # negative control: a HoloViews plot of its own defaults asks for WebGL
    assert hv.render(hv.Points(coords[:50]), backend="bokeh").output_backend == "webgl"


# ----------------------------------------------------------------------------- export + CLI


def _png_pixels(path):
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _cluster_pixels(img, coords, width, height):
    """Mean darkness at each cluster centre versus the empty middle of the image."""
    non_white = (img < 245).any(axis=2)
    return non_white


def test_save_png_and_html(tmp_path, blobs):
    from embedscope.viz import save_html, save_png

    coords, meta = blobs
    png = save_png(coords, tmp_path / "p.png", meta, "label", width=400, height=300)
    img = _png_pixels(png)
    assert img.shape[0] == 300 and img.shape[1] > 400  # legend column on the right
    with pytest.raises(FileExistsError):
        save_png(coords, png, meta, "label")
    html = save_html(coords, tmp_path / "p.html", meta, "label", width=400, height=300, serve_hint="embedscope serve x")
    text = html.read_text()
    assert "does <b>not re-aggregate</b>" in text and "embedscope serve x" in text
    assert "cdn.bokeh.org" not in text  # standalone: resources inlined


def test_cli_plot_png_shows_separate_clusters(tmp_path, blobs, capsys):
    from embedscope.cli import main
    from embedscope.io.write import write_coords

    coords, meta = blobs
    src = write_coords(tmp_path / "coords.parquet", coords, meta[["label"]])
    out = tmp_path / "plot.png"
    assert main(["plot", str(src), "--color", "label", "--out", str(out), "--width", "200", "--height", "200"]) == 0
    captured = capsys.readouterr()
    assert str(out) in captured.out and "embedscope serve" in captured.err
    img = _png_pixels(out)[:, :200]
    ink = (img < 235).any(axis=2)
    # the four clusters sit in the four quadrants; the cross between them stays empty
    quadrants = [ink[:90, :90], ink[:90, 110:], ink[110:, :90], ink[110:, 110:]]
    assert all(q.mean() > 0.02 for q in quadrants), [q.mean() for q in quadrants]
    assert ink[95:105, :].mean() < 0.01 and ink[:, 95:105].mean() < 0.01
    assert 0.03 < ink.mean() < 0.6  # neither blank nor saturated
    colours = {tuple(img[r, c]) for q, (r0, c0) in zip(quadrants, [(0, 0), (0, 110), (110, 0), (110, 110)], strict=True)
               for r, c in [np.argwhere(q)[len(np.argwhere(q)) // 2] + (r0, c0)]}
    assert len(colours) == 4  # each cluster drawn in its own glasbey colour
    # density (no colour) and html also work; existing output needs --force
    assert main(["plot", str(src), "--out", str(out), "--quiet"]) == 2
    assert main(["plot", str(src), "--out", str(out), "--force", "--quiet"]) == 0
    assert main(["plot", str(src), "--color", "label", "--out", str(tmp_path / "p.html")]) == 0


def test_cli_plot_errors(tmp_path, capsys):
    from embedscope.cli import main

    vectors = tmp_path / "v.npy"
    np.save(vectors, make_mixture(50, 8, 2)[0])
    assert main(["plot", str(vectors), "--out", str(tmp_path / "a.png")]) == 2
    assert "reduce" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "missing.npy"), "--out", str(tmp_path / "a.png")]) == 2
    assert "no such file" in capsys.readouterr().err
    np.save(tmp_path / "c.npy", np.zeros((10, 2)))
    assert main(["plot", str(tmp_path / "c.npy"), "--out", str(tmp_path / "a.jpg")]) == 2
    assert ".png or .html" in capsys.readouterr().err


# ------------------------------------------------------- bounds: categories, sizes (#14)


def test_plan_categories_keeps_the_most_frequent_plus_other():
    from embedscope.viz.aggregate import OTHER_COLOR, plan_categories

    names = [f"c{i}" for i in range(10)]
    counts = [5, 1, 9, 1, 0, 7, 1, 3, 1, 2]
    plan = plan_categories(names, counts, "name", max_categories=4)
    # the 3 most frequent (9, 7, 5) in their original order, then the rest as one category
    assert plan.names == ["c0", "c2", "c5", "other"] and plan.other == "other"
    assert plan.note == ("colour column 'name' has 9 distinct values; drawing the 3 most frequent in their own "
                         "colours and the other 6 (9 points) as 'other'")
    np.testing.assert_array_equal(plan.mapping, [0, 3, 1, 3, -1, 2, 3, 3, 3, 3])  # c4 has no points
    np.testing.assert_array_equal(plan.recode(np.array([2, 4, -1, 9])), [1, -1, -1, 3])
    colors = plan.colors()
    assert list(colors) == plan.names and colors["other"] == OTHER_COLOR and len(set(colors.values())) == 4


def test_plan_categories_is_deterministic_and_bounded():
    from embedscope.viz.aggregate import MAX_CATEGORIES, plan_categories

    # all tied: the earlier categories win, whatever the run
    plan = plan_categories([f"w{i:04d}" for i in range(2000)], np.ones(2000), "name")
    assert len(plan.names) == MAX_CATEGORIES
    assert plan.names[:-1] == [f"w{i:04d}" for i in range(MAX_CATEGORIES - 1)]
    # within the limit, nothing changes and nothing is said
    few = plan_categories(["a", "b"], [0, 3], "name")
    assert few.names == ["a", "b"] and few.note is None and few.other is None
    # a kept category named "other" does not merge with the bucket
    clash = plan_categories(["other", "x", "y"], [9, 1, 1], max_categories=2)
    assert clash.names == ["other", "(other)"]
    with pytest.raises(ValueError, match="one entry per category"):
        plan_categories(["a", "b"], [1])


def test_raster_and_exports_group_many_categories(blobs, caplog):
    import logging

    from embedscope.viz import EmbeddingPlot
    from embedscope.viz.aggregate import MAX_CATEGORIES, OTHER_COLOR
    from embedscope.viz.export import render_image

    coords, meta = blobs
    words = meta["word"].to_numpy()  # 8,000 distinct values
    with caplog.at_level(logging.WARNING, logger="embedscope"):
        agg = raster(coords, by=words, width=40, height=30)
    assert agg.shape == (30, 40, MAX_CATEGORIES) and agg.coords["category"].values[-1] == "other"
    np.testing.assert_array_equal(agg.values.sum(axis=2), raster(coords, width=40, height=30).values)
    assert int(agg.values[:, :, -1].sum()) == len(coords) - (MAX_CATEGORIES - 1)
    assert "8,000 distinct values" in caplog.text
    # the same for a DataFrame column, in the export and in the live plot
    frame = pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "word": words})
    assert raster(frame, by="word", width=40, height=30).shape[2] == MAX_CATEGORIES
    _, info = render_image(coords, meta, "word", width=60, height=40)
    assert len(info["colors"]) == MAX_CATEGORIES and info["colors"]["other"] == OTHER_COLOR
    assert "8,000 distinct values" in info["note"]
    view = EmbeddingPlot(coords, meta, "word", width=60, height=40)
    assert len(view._category_colors) == MAX_CATEGORIES and view.note == info["note"]
    assert view._codes.max() == MAX_CATEGORIES - 1
    # the hover still names each point's own word, not "other"
    grid = view.render()
    hovered = grid.data["word"].values
    shown = hovered[hovered != "-"]
    assert shown.size and "other" not in set(shown)


def test_raster_dask_groups_many_categories(blobs):
    dd = pytest.importorskip("dask.dataframe")
    from embedscope.viz.aggregate import MAX_CATEGORIES

    coords, meta = blobs
    frame = pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "word": meta["word"]})
    lazy = raster(dd.from_pandas(frame, npartitions=3), by="word", width=32, height=24)
    eager = raster(frame, by="word", width=32, height=24)
    assert lazy.shape == (24, 32, MAX_CATEGORIES)
    np.testing.assert_array_equal(lazy.values, eager.values)
    assert list(lazy.coords["word"].values) == list(eager.coords["word"].values)
    # known categories, some without points: counted on the workers all the same
    known = frame.assign(word=pd.Categorical(frame["word"], categories=[*frame["word"], "unused"]))
    lazy = raster(dd.from_pandas(known, npartitions=3), by="word", width=32, height=24)
    eager = raster(known, by="word", width=32, height=24)
    assert lazy.shape == eager.shape == (24, 32, MAX_CATEGORIES)
    np.testing.assert_array_equal(lazy.values, eager.values)


def test_size_and_memory_bounds_refuse_before_allocating(blobs):
    from embedscope.viz import EmbeddingPlot
    from embedscope.viz.aggregate import MAX_SPREAD, check_raster_size, shade
    from embedscope.viz.export import render_image
    from embedscope.viz.select import MAX_POLYGON_VERTICES, rows_in_polygon

    coords, meta = blobs
    assert check_raster_size(1200.0, 900, 40, budget=None) == (1200, 900)
    with pytest.raises(ValueError, match="width 200,000 is over the bound of 16,384"):
        check_raster_size(200_000, 10)
    with pytest.raises(ValueError, match="height 20,000 is over"):
        check_raster_size(10, 20_000)
    with pytest.raises(ValueError, match="100,000,000 pixels is over the bound"):
        check_raster_size(10_000, 10_000)
    with pytest.raises(ValueError, match="whole numbers"):
        check_raster_size("wide", 10)
    # the budget: 1200 x 900 x 40 categories needs ~0.8 GB
    with pytest.raises(ValueError, match=r"x 40 colour categories needs about 0.8 GiB but only 0.5 GiB .* "
                                         r"fewer categories"):
        check_raster_size(1200, 900, 40, budget=1 << 29)
    check_raster_size(1200, 900, 40, budget=1 << 30)
    with pytest.raises(ValueError, match="over the bound"):
        raster(coords, width=100_000)
    with pytest.raises(ValueError, match="over the bound"):
        render_image(coords, width=1, height=50_000)
    with pytest.raises(ValueError, match="over the bound"):
        EmbeddingPlot(coords, meta, width=40_000)
    with pytest.raises(ValueError, match=rf"spread must be in \[0, {MAX_SPREAD}\]"):
        render_image(coords, spread=10_000)
    with pytest.raises(ValueError, match="spread must be in"):
        EmbeddingPlot(coords, spread=-1)
    many = pd.DataFrame({f"m{i}": np.zeros(len(coords)) for i in range(40)})
    with pytest.raises(ValueError, match="40 hover_columns is over the bound of 32"):
        EmbeddingPlot(coords, many, hover_columns=list(many.columns))
    with pytest.raises(ValueError, match="spread must be in"):
        shade(raster(coords, width=8, height=8), spread=MAX_SPREAD + 1)
    ring = np.column_stack([np.cos(np.linspace(0, 6.28, MAX_POLYGON_VERTICES + 1)),
                            np.sin(np.linspace(0, 6.28, MAX_POLYGON_VERTICES + 1))])
    with pytest.raises(ValueError, match="over the bound of 10,000"):
        rows_in_polygon(coords[:, 0], coords[:, 1], ring)
    # a lasso that long from the browser is thinned, not refused
    view = EmbeddingPlot(coords, meta, width=60, height=40)
    view._on_lasso(geometry=ring * 20)
    assert view.selected.size == len(coords)


def test_hover_of_long_category_names_is_not_fixed_width(blobs):
    from embedscope.viz import EmbeddingPlot

    coords, meta = blobs
    long = meta.assign(text=pd.Categorical(["x" * 40_000 if i % 2 else "short" for i in range(len(meta))]))
    view = EmbeddingPlot(coords, long, width=200, height=150, hover_columns=["text"])
    index = np.zeros((40, 50), dtype=np.int64)
    index[0, 1], index[1, 0] = 1, -1
    values = view._hover_values("text", index)
    # a fixed-width array would cost 160 kB a pixel here (320 MB for this small view)
    assert values.dtype == object and values[1, 0] == "-" and values[0, 1] == "x" * 40_000
    assert values[0, 0] == "short"


def test_value_colour_says_nan_points_and_refuses_all_nan(blobs, caplog):
    import logging

    dd = pytest.importorskip("dask.dataframe")
    from embedscope.viz.cli import _render_lazy
    from embedscope.viz.export import render_image

    coords, _ = blobs
    v = coords[:, 0].astype(np.float64)
    v[:100] = np.nan
    frame = pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "v": v, "none": np.full(len(v), np.nan)})
    lazy = dd.from_pandas(frame, npartitions=3)
    with caplog.at_level(logging.WARNING, logger="embedscope"):
        render_image(frame, color="v", width=40, height=30)
        _render_lazy(lazy, "v", width=40, height=30, how="eq_hist")
    assert caplog.text.count("column 'v' has no value (NaN) for 100 of 8,000 points") == 2
    with pytest.raises(DataError, match="'none' holds no numbers"):
        render_image(frame, color="none", width=40, height=30)
    with pytest.raises(DataError, match="'none' holds no numbers"):
        _render_lazy(lazy, "none", width=40, height=30, how="eq_hist")


def test_memory_budget_reads_a_containers_limit(tmp_path):
    from embedscope._memory import _cgroup_left

    assert _cgroup_left(str(tmp_path)) is None  # no cgroup files: no limit from there
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "memory.current").write_text("1000\n")
    assert _cgroup_left(str(tmp_path)) is None  # v2 without a limit
    (tmp_path / "memory.max").write_text(f"{3 << 30}\n")
    (tmp_path / "memory.current").write_text(f"{2 << 30}\n")
    (tmp_path / "memory.stat").write_text(f"anon 5\ninactive_file {1 << 29}\nactive_file 7\n")
    assert _cgroup_left(str(tmp_path)) == (1 << 30) + (1 << 29)
    v1 = tmp_path / "v1" / "memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(f"{9223372036854771712}\n")  # v1's "no limit"
    (v1 / "memory.usage_in_bytes").write_text("10\n")
    assert _cgroup_left(str(tmp_path / "v1")) is None
    (v1 / "memory.limit_in_bytes").write_text(f"{4 << 30}\n")
    (v1 / "memory.usage_in_bytes").write_text(f"{1 << 30}\n")
    assert _cgroup_left(str(tmp_path / "v1")) == 3 << 30
