"""What keeps a zoom's re-render cheap: filled pixels shaded alone, hover read per pixel, no debounce."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="module")
def clusters():
    rng = np.random.default_rng(5)
    n = 20_000
    label = rng.integers(0, 6, n)
    xy = (rng.normal(scale=4, size=(6, 2))[label] + rng.normal(size=(n, 2))).astype(np.float32)
    meta = pd.DataFrame({"label": pd.Categorical([f"c{k}" for k in label]), "score": rng.normal(size=n),
                         "share": rng.uniform(size=n), "word": [f"w{i}" for i in range(n)]})
    return xy, meta


def _full_grid_shade(ep, x_range, y_range):
    """The image as datashader shades the whole grid (the way render did before)."""
    import datashader.transfer_functions as tf
    import xarray as xr

    from embedscope.kernels.view_raster import view_grid
    from embedscope.viz.figure import MIN_ALPHA

    w, h = ep.width, ep.height
    g = view_grid(ep._x, ep._y, x_range, y_range, w, h, codes=ep._codes, palette=ep._palette, values=ep._values,
                  pick=False)
    counts = xr.DataArray(g.count, dims=("y", "x"))
    if g.rgb_sum is not None:
        alpha = tf.shade(counts, cmap="black", how=ep.how, min_alpha=MIN_ALPHA).data.view(np.uint8)[..., 3::4]
        with np.errstate(divide="ignore", invalid="ignore"):
            mix = np.nan_to_num(g.rgb_sum / g.count[..., None], nan=0.0).astype(np.uint8)
        rgba = np.dstack([mix, alpha.reshape(h, w)])
        return rgba
    if g.value_sum is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(g.count > 0, g.value_sum / g.count, np.nan)
        img = tf.shade(xr.DataArray(mean, dims=("y", "x")), cmap=ep._shade_cmap(), how=ep.how, min_alpha=MIN_ALPHA,
                       span=ep.span)
    else:
        img = tf.shade(counts, cmap=ep._shade_cmap(), how=ep.how, min_alpha=MIN_ALPHA)
    return np.asarray(img.data, dtype=np.uint32).view(np.uint8).reshape(h, w, 4)


@pytest.mark.parametrize(("color", "options"), [("label", {}), ("score", {}), ("score", {"how": "linear"}),
                                                ("share", {"how": "linear", "span": (0.0, 1.0)}), (None, {})])
def test_shading_the_filled_pixels_alone_gives_datashaders_image(clusters, color, options):
    from embedscope.viz import EmbeddingPlot

    xy, meta = clusters
    ep = EmbeddingPlot(xy, meta, color=color, width=90, height=70, spread=0, **options)
    for view in (ep.extent, ((-2.0, 3.0), (-1.0, 2.5))):
        rgb = ep.render(*view)
        got = np.dstack([rgb.data[b].values for b in "RGBA"])
        want = _full_grid_shade(ep, *view)
        assert (got[..., 3] > 0).any() and (got[..., 3] == 0).any()
        np.testing.assert_array_equal(got, want)
    # negative control: another normalisation gives other colours
    other = EmbeddingPlot(xy, meta, color=color, width=90, height=70, spread=0,
                          how="log" if options.get("how") != "log" else "linear")
    if color != "label":  # categories take their colour from the palette; only alpha follows `how`
        assert not np.array_equal(np.dstack([other.render(*ep.extent).data[b].values for b in "RGBA"]),
                                  _full_grid_shade(ep, *ep.extent))


def test_hover_columns_are_read_per_pixel_on_demand(clusters, monkeypatch):
    from embedscope.viz import EmbeddingPlot

    xy, meta = clusters
    ep = EmbeddingPlot(xy, meta, color="label", width=60, height=50)
    sizes = []
    original = EmbeddingPlot._hover_values

    def spy(self, column, index):
        sizes.append(np.asarray(index).size)
        return original(self, column, index)

    monkeypatch.setattr(EmbeddingPlot, "_hover_values", spy)
    data = ep.render().data
    assert max(sizes) == 1  # the render gathered no column for its pixels, only a sample for the type
    index = data["__index__"].values
    r, c = np.argwhere(index >= 0)[0]
    sizes.clear()
    # what HoloViews' server hover does with the cursor's position
    picked = data.sel(x=float(data["x"][c]), y=float(data["y"][r]), method="nearest").to_dict()["data_vars"]
    row = int(picked["__index__"]["data"])
    assert row == index[r, c] and sizes and set(sizes) == {1}  # one pixel read, per column
    assert picked["word"]["data"] == meta["word"][row] and picked["score"]["data"] == pytest.approx(meta["score"][row])
    assert picked["label"]["data"] == meta["label"][row]
    # the whole column still reads as before; an empty pixel shows "-"
    words = data["word"].values
    np.testing.assert_array_equal(words[index >= 0], meta["word"].to_numpy()[index[index >= 0]])
    assert (words[index < 0] == "-").all() and sizes[-1] == index.size


@pytest.mark.parametrize("sparse", [False, True])
def test_hover_row_of_one_pixel_equals_the_whole_band(clusters, monkeypatch, sparse):
    # The CPU view pass no longer picks a point per pixel: the hover's row is looked up
    # for the pixel read (kernels.view_raster.pick_pixels), through a spread too.
    from embedscope.kernels import view_raster
    from embedscope.viz import EmbeddingPlot

    xy, meta = clusters
    if sparse:  # few points spread thin: spread pixels show a neighbour's point
        xy = np.random.default_rng(1).uniform(0, 1, size=(60, 2)).astype(np.float32)
        meta = meta.iloc[:60].reset_index(drop=True)
    ep = EmbeddingPlot(xy, meta, color="label", width=120, height=90, spread=3)
    data = ep.render().data
    picks = []
    real = view_raster.pick_pixels
    monkeypatch.setattr(view_raster, "pick_pixels", lambda *a, **k: picks.append(1) or real(*a, **k))
    whole = data["__index__"].values
    assert not picks  # the whole band came from one view pass with its own pick
    shown = np.argwhere(whole >= 0)
    assert shown.shape[0] > 20 and (whole < 0).any() and whole.dtype == np.int64
    if sparse:  # the spread drew pixels that hold no point of their own
        grid = view_raster.view_grid(ep._sorted[1], ep._sorted[2], *ep.extent, 120, 90)
        assert ((whole >= 0) & (grid.count == 0)).any()
    rng = np.random.default_rng(0)
    for r, c in [*shown[rng.choice(len(shown), 20)], *np.argwhere(whole < 0)[:5], (-1, -1)]:
        one = ep.render().data["__index__"][int(r), int(c)].values
        assert int(one) == whole[r, c], (r, c)
    assert picks  # single pixels were looked up, not picked by a pass
    # the hover columns read through the same rows
    r, c = shown[0]
    assert ep.render().data["word"][int(r), int(c)].values == meta["word"][whole[r, c]]


def test_served_hover_reads_one_pixel_of_the_shared_text(clusters):
    from embedscope.viz import EmbeddingPlot
    from embedscope.viz.app import _served_plot_class

    xy, meta = clusters
    ep = _served_plot_class(EmbeddingPlot)(xy, meta, color="label", width=60, height=50)
    shared = meta["word"].to_numpy(dtype=object)
    ep.shared_text = {"word": shared}
    data = ep.render().data
    index = data["__index__"].values
    r, c = np.argwhere(index >= 0)[0]
    picked = data.isel(x=c, y=r)["word"].values
    assert picked.shape == () and picked.item() is shared[index[r, c]]  # the shared object, not a copy
    assert data.isel(x=slice(0, 3), y=0)["word"].values.shape == (3,)


def test_range_callback_renders_without_holoviews_debounce(clusters):
    import holoviews as hv
    from holoviews.plotting.bokeh.callbacks import RangeXYCallback

    from embedscope.viz import EmbeddingPlot

    xy, meta = clusters
    ep = EmbeddingPlot(xy[:500], meta.iloc[:500], width=80, height=60)
    plot = hv.renderer("bokeh").get_plot(ep.view)
    found = [cb for p in plot.traverse(lambda p: p) for cb in getattr(p, "callbacks", [])
             if isinstance(cb, RangeXYCallback)]
    assert len(found) == 1 and found[0].debounce == 0
    assert RangeXYCallback.debounce == 100  # the class (other plots of the process) keeps HoloViews' wait
    # negative control: a plain HoloViews plot with a range stream still debounces
    other = hv.DynamicMap(lambda x_range, y_range: hv.Points([]), streams=[hv.streams.RangeXY()])
    cbs = [cb for p in hv.renderer("bokeh").get_plot(other).traverse(lambda p: p)
           for cb in getattr(p, "callbacks", []) if isinstance(cb, RangeXYCallback)]
    assert cbs and cbs[0].debounce == 100


def test_view_image_sends_bokeh_the_image_holoviews_would_build(clusters):
    import holoviews as hv
    from holoviews.plotting.bokeh.raster import RGBPlot

    from embedscope.viz import EmbeddingPlot

    xy, meta = clusters
    ep = EmbeddingPlot(xy, meta, color="label", width=70, height=40)
    view = ep.render((-3.0, 4.0), (-2.0, 2.0))
    assert isinstance(view, hv.RGB) and view._packed is not None
    plot = hv.renderer("bokeh").get_plot(view)
    assert type(plot).__name__ == "ViewImagePlot"
    fast, mapping, style = plot.get_data(view, {}, {"alpha": 0.25})
    slow, slow_mapping, slow_style = RGBPlot.get_data(plot, view, {}, {"alpha": 0.25})
    assert fast["image"][0] is view._packed and fast["image"][0].shape == (40, 70)
    np.testing.assert_array_equal(fast["image"][0], slow["image"][0])
    for key in ("x", "y", "dw", "dh"):
        assert fast[key][0] == pytest.approx(slow[key][0])
    assert mapping == slow_mapping and style == slow_style
    # the faded view (a selection is shown) keeps the fast path; a plain copy falls back
    ep.select([0, 1])
    faded = ep._base_image((-3.0, 4.0), (-2.0, 2.0), muted=True, width=70, height=40)
    assert faded._packed is view._packed or faded._packed.shape == (40, 70)
    copy = view.clone()
    assert copy._packed is None
    np.testing.assert_array_equal(plot.get_data(copy, {}, {})[0]["image"][0], slow["image"][0])


def test_spatial_order_is_a_permutation_by_cell_and_the_view_maps_back_to_rows(clusters):
    from embedscope.kernels.view_raster import spatial_order, view_grid
    from embedscope.viz import EmbeddingPlot

    xy, meta = clusters
    x, y = xy[:, 0], xy[:, 1]
    order = spatial_order(x, y, cells=16)
    assert order.dtype == np.int32 and np.array_equal(np.sort(order), np.arange(len(x)))
    cx = np.minimum(((x - x.min()) / (x.max() - x.min()) * 16).astype(int), 15)
    cy = np.minimum(((y - y.min()) / (y.max() - y.min()) * 16).astype(int), 15)
    keys = (cy * 16 + cx)[order]
    assert (np.diff(keys) >= 0).all() and not (np.diff(cx * 16 + cy) >= 0).all()  # negative control: rows are not
    with pytest.raises(ValueError, match="cells"):
        spatial_order(x, y, cells=300)
    # the plot reads the points in that order; the hover still names rows of the frame
    ep = EmbeddingPlot(xy, meta, color="score", width=64, height=48)
    assert ep._sorted is not None and not np.array_equal(ep._sorted[0].order, np.arange(len(x)))
    view = ((-3.0, 4.0), (-2.0, 2.0))
    index = ep.render(*view).data["__index__"].values
    plain = view_grid(x, y, *view, 64, 48, values=ep._values).index
    picked = plain >= 0
    assert picked.any() and np.array_equal(index >= 0, picked)
    # the same point, or one exactly as near the pixel centre (a tie, broken by position)
    same = index[picked] == plain[picked]
    assert same.mean() > 0.99
    # shared: a second plot of the same frame reuses the order
    frame = ep._points_frame
    other = EmbeddingPlot(frame, color="label", _prepared=True, width=64, height=48)
    assert other._sorted[0] is EmbeddingPlot(frame, _prepared=True, width=64, height=48)._sorted[0]


def test_highlight_layer_equals_datashaders_shade_of_the_selection(clusters):
    import datashader.transfer_functions as tf

    from embedscope.kernels.view_raster import choose_spread, spread_fill
    from embedscope.viz import EmbeddingPlot
    from embedscope.viz.aggregate import raster
    from embedscope.viz.figure import HIGHLIGHT

    xy, meta = clusters
    ep = EmbeddingPlot(xy, meta, width=80, height=60)
    ep.select(np.flatnonzero(meta["label"].to_numpy() == "c2"))
    view = ((-4.0, 5.0), (-3.0, 3.0))
    got = ep._highlight_image(*view, width=80, height=60).data
    agg = raster(ep.frame.iloc[ep.selected][["x", "y"]], width=80, height=60, x_range=view[0], y_range=view[1])
    packed = np.asarray(tf.shade(agg, cmap=[HIGHLIGHT, HIGHLIGHT], how="linear", min_alpha=255).data, dtype=np.uint32)
    packed, _ = spread_fill(packed, None, choose_spread(packed >> 24 > 0, threshold=0.5, max_px=ep.spread))
    want = np.ascontiguousarray(packed).view(np.uint8).reshape(60, 80, 4)[::-1]
    assert (want[..., 3] == 255).any()
    np.testing.assert_array_equal(np.asarray(got), want)
    # a new selection is drawn, not the coordinates gathered for the last one
    ep.select([])
    ep.select(np.flatnonzero(meta["label"].to_numpy() == "c4"))
    assert not np.array_equal(np.asarray(ep._highlight_image(*view, width=80, height=60).data), want)


def test_set_color_recolours_the_same_plot(clusters):
    from embedscope.errors import DataError
    from embedscope.viz import EmbeddingPlot

    xy, meta = clusters
    ep = EmbeddingPlot(xy, meta, color="label", width=60, height=50, legend=False)
    view = ((-1.0, 1.0), (-1.0, 1.0))
    by_label = ep._base_image(*view, width=60, height=50)._packed.copy()
    fresh = EmbeddingPlot(xy, meta, color="score", width=60, height=50, legend=False)
    ep.set_color("score")
    version = ep._colour.colour_version
    by_score = ep._base_image(*view, width=60, height=50, colour_version=version)._packed
    assert ep.color == "score" and ep.color_kind == "value" and version == 1
    np.testing.assert_array_equal(by_score, fresh.render(*view, size=(60, 50))._packed)  # as a new plot draws it
    assert not np.array_equal(by_score, by_label)
    ep.set_color(None)
    assert ep.color is None and ep.color_kind is None
    ep.set_color("label")
    np.testing.assert_array_equal(ep.render(*view, size=(60, 50))._packed, by_label)
    with pytest.raises(DataError, match="no column 'nope'"):
        ep.set_color("nope")
    assert ep.color == "label"  # a refused colour leaves the plot as it was
    with pytest.raises(ValueError, match="legend"):
        EmbeddingPlot(xy, meta, color="label", width=60, height=50).set_color("score")
