"""The interactive view's one-pass aggregate, its spreading, and the plot's rendered image."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embedscope.kernels.raster import bin_points_cpu
from embedscope.kernels.view_raster import (
    choose_spread,
    pick_pixels,
    spatial_index,
    spread_fill,
    view_grid,
)


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(3)
    n = 40_000
    codes = rng.integers(0, 5, n).astype(np.int8)
    xy = rng.normal(size=(n, 2)) * np.array([2.0, 1.0]) + codes[:, None]
    values = rng.uniform(-1, 1, n)
    values[::97] = np.nan
    return xy[:, 0].astype(np.float32), xy[:, 1].astype(np.float32), codes, values


PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30], [200, 100, 50]], dtype=np.float32)
RANGES = [((-3.0, 6.0), (-2.0, 5.0)), ((0.0, 1.0), (0.5, 1.5))]


@pytest.mark.parametrize(("x_range", "y_range"), RANGES)
def test_counts_and_colour_mix_equal_per_category_counts(points, x_range, y_range):
    x, y, codes, _ = points
    grid = view_grid(x, y, x_range, y_range, 37, 23, codes=codes, palette=PALETTE)
    per_cat = bin_points_cpu(x, y, x_range, y_range, 37, 23, categories=codes, n_categories=5)
    np.testing.assert_array_equal(grid.count, per_cat.sum(axis=0))
    # the colour mix is datashader's count-weighted mean of the category colours
    expected = np.einsum("chw,ck->hwk", per_cat.astype(np.float64), PALETTE.astype(np.float64))
    np.testing.assert_allclose(grid.rgb_sum, expected, rtol=1e-5)
    assert grid.count.sum() > 0


def test_value_sum_skips_nan(points):
    x, y, _, values = points
    (xr_, yr_) = RANGES[0]
    grid = view_grid(x, y, xr_, yr_, 30, 20, values=values, pick=False)
    keep = ~np.isnan(values)
    sums = bin_points_cpu(x[keep], y[keep], xr_, yr_, 30, 20, weights=values[keep])[0]
    counts = bin_points_cpu(x[keep], y[keep], xr_, yr_, 30, 20)[0]
    np.testing.assert_allclose(grid.value_sum, sums, atol=1e-9)
    np.testing.assert_array_equal(grid.count, counts)
    assert grid.index is None and grid.rgb_sum is None


def test_pick_is_the_point_nearest_each_pixel_centre(points):
    x, y, _, _ = points
    (x0, x1), (y0, y1) = xr_, yr_ = RANGES[1]
    w, h = 16, 12
    grid = view_grid(x, y, xr_, yr_, w, h)
    inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    fx = (x.astype(np.float64) - x0) * (w / (x1 - x0))
    fy = (y.astype(np.float64) - y0) * (h / (y1 - y0))
    col = np.minimum(fx.astype(np.int64), w - 1)
    row = np.minimum(fy.astype(np.int64), h - 1)
    d = (fx - col - 0.5) ** 2 + (fy - row - 0.5) ** 2
    for r in range(h):
        for c in range(w):
            members = np.flatnonzero(inside & (row == r) & (col == c))
            got = grid.index[r, c]
            if members.size == 0:
                assert got == -1
            else:
                assert got in members and d[got] <= d[members].min() + 1e-6


def test_same_result_on_one_thread_and_many(points):
    import numba

    x, y, codes, _ = points
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = view_grid(x, y, *RANGES[0], 50, 40, codes=codes, palette=PALETTE)
    finally:
        numba.set_num_threads(before)
    many = view_grid(x, y, *RANGES[0], 50, 40, codes=codes, palette=PALETTE)
    np.testing.assert_array_equal(one.count, many.count)
    np.testing.assert_array_equal(one.index, many.index)


# the data's extent, a zoom, a view reaching past the data, one within a single cell
SPAN_VIEWS = [*RANGES, ((-9.0, 12.0), (-6.0, 9.0)), ((0.2, 0.4), (0.6, 0.7))]


@pytest.mark.parametrize(("x_range", "y_range"), SPAN_VIEWS)
def test_spans_of_the_spatial_index_read_every_point_in_view(points, x_range, y_range):
    x, y, codes, values = points
    si = spatial_index(x, y, cells=64)
    xs, ys, cs, vs = x[si.order], y[si.order], codes[si.order], values[si.order]
    spans = si.spans(x_range, y_range)
    read = np.zeros(xs.size, bool)
    for a, b in spans:
        read[a:b] = True
    inside = (xs >= x_range[0]) & (xs <= x_range[1]) & (ys >= y_range[0]) & (ys <= y_range[1])
    assert read[inside].all()
    if x_range[1] - x_range[0] < 1:
        assert read.mean() < 0.2  # a zoom skips most points (negative control: a full read)
    whole = view_grid(xs, ys, x_range, y_range, 41, 29, codes=cs, palette=PALETTE, values=vs)
    part = view_grid(xs, ys, x_range, y_range, 41, 29, codes=cs, palette=PALETTE, values=vs, spans=spans)
    np.testing.assert_array_equal(part.count, whole.count)
    np.testing.assert_array_equal(part.index, whole.index)
    np.testing.assert_allclose(part.rgb_sum, whole.rgb_sum, rtol=1e-6)
    np.testing.assert_allclose(part.value_sum, whole.value_sum, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("x_range", "y_range"), SPAN_VIEWS)
@pytest.mark.parametrize("cells", [1, 7, 256])
def test_pick_pixels_equals_the_view_pass_pick(points, x_range, y_range, cells):
    x, y, codes, values = points
    si = spatial_index(x, y, cells=cells)
    xs, ys, cs, vs = x[si.order], y[si.order], codes[si.order], values[si.order]
    w, h = 33, 21
    for kwargs in ({}, {"codes": cs, "palette": PALETTE[:4]}, {"values": vs}):
        grid = view_grid(xs, ys, x_range, y_range, w, h, **kwargs)
        got = pick_pixels(xs, ys, si, x_range, y_range, w, h, np.arange(w * h),
                          codes=kwargs.get("codes"), n_colours=4 if "codes" in kwargs else 0,
                          values=kwargs.get("values"))
        np.testing.assert_array_equal(got.reshape(h, w), grid.index)
    assert (grid.index >= 0).any()
    assert pick_pixels(xs, ys, si, x_range, y_range, w, h, np.array([-1]))[0] == -1


def test_pick_pixels_on_tied_points_keeps_the_lowest_position():
    x = np.array([0.5, 0.5, 0.25, 0.5], np.float32)
    y = np.array([0.5, 0.5, 0.75, 0.5], np.float32)
    si = spatial_index(x, y, cells=4)
    xs, ys = x[si.order], y[si.order]
    grid = view_grid(xs, ys, (0.0, 1.0), (0.0, 1.0), 1, 1)
    got = pick_pixels(xs, ys, si, (0.0, 1.0), (0.0, 1.0), 1, 1, np.array([0]))
    assert got[0] == grid.index[0, 0]
    assert xs[got[0]] == 0.5 and ys[got[0]] == 0.5


def test_view_grid_bad_input(points):
    x, y, codes, _ = points
    with pytest.raises(ValueError, match="palette"):
        view_grid(x, y, *RANGES[0], 10, 10, codes=codes)
    with pytest.raises(ValueError, match="x_range"):
        view_grid(x, y, (1.0, 1.0), (0.0, 1.0), 10, 10)
    with pytest.raises(ValueError, match="entries"):
        view_grid(x, y, *RANGES[0], 10, 10, codes=codes[:5], palette=PALETTE)


def _image(alpha_mask):
    import datashader.transfer_functions as tf

    h, w = alpha_mask.shape
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[alpha_mask] = (200, 30, 60, 180)
    return tf.Image(rgba.view(np.uint32).reshape(h, w), dims=("y", "x"),
                    coords={"y": np.arange(h, dtype=float), "x": np.arange(w, dtype=float)})


@pytest.mark.parametrize("n_lit", [5, 60, 400, 3000])
def test_choose_spread_agrees_with_datashader_dynspread(n_lit):
    import datashader.transfer_functions as tf

    rng = np.random.default_rng(n_lit)
    mask = np.zeros((60, 80), bool)
    mask.flat[rng.choice(mask.size, n_lit, replace=False)] = True
    img = _image(mask)
    px = choose_spread(mask, threshold=0.5, max_px=3)
    theirs = tf.dynspread(img, threshold=0.5, max_px=3)
    ours_footprint = (tf.spread(img, px, shape="circle") if px else img).data >> 24 > 0
    np.testing.assert_array_equal(ours_footprint, theirs.data >> 24 > 0)


def test_spread_fill_covers_datashaders_circle_and_carries_ids():
    import datashader.transfer_functions as tf

    mask = np.zeros((21, 21), bool)
    mask[10, 10] = True
    index = np.full((21, 21), -1, np.int64)
    index[10, 10] = 1234
    img = _image(mask)
    for px in (1, 2, 3):
        packed, spread_ids = spread_fill(np.asarray(img.data), index, px)
        footprint = packed >> 24 > 0
        np.testing.assert_array_equal(footprint, tf.spread(img, px, shape="circle").data >> 24 > 0)
        assert (spread_ids[footprint] == 1234).all() and (spread_ids[~footprint] == -1).all()
        assert (packed[footprint] == img.data[10, 10]).all()  # a lone point keeps its own colour
    packed, ids = spread_fill(np.asarray(img.data), None, 0)
    assert ids is None and (packed == img.data).all()


def test_rendered_view_carries_the_hovered_points_metadata():
    from embedscope.viz import EmbeddingPlot

    rng = np.random.default_rng(0)
    n = 50_000
    coords = rng.uniform(0, 10, size=(n, 2)).astype(np.float32)
    meta = pd.DataFrame({"label": rng.integers(0, 3, n), "word": [f"w{i}" for i in range(n)],
                         "score": rng.normal(size=n)})
    ep = EmbeddingPlot(coords, meta, color="label", width=50, height=40)
    rgb = ep.render((2.0, 4.0), (2.0, 4.0))
    data = rgb.data
    assert data.attrs["selector_columns"] == ["__index__", "label", "word", "score"]
    index = data["__index__"].values
    hit = index >= 0
    assert hit.mean() > 0.3 and ((data["A"].values > 0) == hit).all()
    rows = index[hit]
    np.testing.assert_array_equal(data["word"].values[hit], meta["word"].to_numpy()[rows])
    np.testing.assert_allclose(data["score"].values[hit], meta["score"].to_numpy()[rows])
    np.testing.assert_array_equal(data["label"].values[hit].astype(int), meta["label"].to_numpy()[rows])
    assert (data["word"].values[~hit] == "-").all() and np.isnan(data["score"].values[~hit]).all()
    # each pixel's point lies inside the view, within the pixel or a spread radius of it
    xs, ys = data["x"].values, data["y"].values
    r, c = np.nonzero(hit)
    px_w = 2.0 / 50
    assert np.abs(coords[rows, 0] - xs[c]).max() <= (ep.spread + 0.5) * px_w + 1e-6
    assert np.abs(coords[rows, 1] - ys[r]).max() <= (ep.spread + 0.5) * (2.0 / 40) + 1e-6
    # a selection change reuses the rendered view and only fades it
    ep.select([1, 2, 3])
    assert ep._base_image((2.0, 4.0), (2.0, 4.0), muted=True).data is ep._last_render[1].data
