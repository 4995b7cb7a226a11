"""``serve A B`` without a browser: pairing, the moved layer, linked selection, marks, filter, export;
and the quality layer's colours and figures in ``plot`` / ``serve``."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from embedscope.errors import DataError
from embedscope.viz.app import legend_html
from embedscope.viz.compare_app import CompareData, CompareExplorer, side_frames, top_moved
from embedscope.viz.layers import default_color, layer_style, quality_summary

N = 600


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Layout a (three clusters), and b: a rotated, scaled and shuffled, with cluster 2's points
    scattered at random (their neighbourhoods change), each with its own quality column."""
    rng = np.random.default_rng(0)
    label = np.repeat([0, 1, 2], N // 3)
    A = np.array([[0, 0], [10, 0], [0, 10]])[label] + rng.normal(size=(N, 2))
    B = (A @ np.array([[0.0, -1.0], [1.0, 0.0]])) * 3
    scattered = label == 2
    B[scattered] = rng.uniform(-40, 40, size=(scattered.sum(), 2))
    ids = np.array([f"item{i}" for i in range(N)])
    qa, qb = rng.uniform(size=N).astype(np.float32), rng.uniform(size=N).astype(np.float32)
    root = tmp_path_factory.mktemp("compare_app")
    pd.DataFrame({"x": A[:, 0], "y": A[:, 1], "id": ids, "label": label, "quality": qa}).to_parquet(root / "a.parquet")
    order = rng.permutation(N)
    pd.DataFrame({"x": B[order, 0], "y": B[order, 1], "id": ids[order], "quality": qb[order],
                  "seed": 7}).to_parquet(root / "b.parquet")
    return root, A, B, label, qa, qb, order


def test_top_moved_keeps_the_top_share_with_ties():
    moved = np.array([0.1, 0.9, 0.5, 0.9, 0.0, 0.7])
    rows, cutoff = top_moved(moved, 0.34)  # ceil(2.04) = 3 -> the values >= 0.7
    assert cutoff == 0.7 and list(rows) == [1, 3, 5]
    rows, cutoff = top_moved(moved, 0.2)  # 2 points, a tie at 0.9 kept together
    assert list(rows) == [1, 3]
    rows, _ = top_moved(moved, 0.1)  # one point asked: both tied ones stay
    assert list(rows) == [1, 3]
    assert top_moved(moved, 1.0)[0] is None
    for bad in (0, -0.5, 1.5, float("nan")):
        with pytest.raises(ValueError, match="share"):
            top_moved(moved, bad)


def test_side_frames_keep_each_layouts_own_columns():
    a = pd.DataFrame({"id": ["p", "q", "r"], "quality": [0.1, 0.2, 0.3], "label": [1, 2, 3]})
    b = pd.DataFrame({"id": ["r", "p", "q"], "quality": [0.9, 0.7, 0.8], "seed": [5, 5, 5]})
    order = np.array([1, 2, 0])  # b's rows in a's order
    side_a, side_b, differing = side_frames(a, b, order)
    assert list(side_a.columns) == list(side_b.columns) == ["id", "quality", "label", "seed"]
    assert list(side_a["quality"]) == [0.1, 0.2, 0.3] and list(side_b["quality"]) == [0.7, 0.8, 0.9]
    assert list(side_b["id"]) == ["p", "q", "r"] and list(side_b["label"]) == [1, 2, 3]
    assert differing == ["quality"]  # 'id' is equal once paired


def test_compare_data_pairs_by_id_and_finds_what_moved(pair):
    root, A, B, label, qa, qb, _ = pair
    data = CompareData(str(root / "a.parquet"), str(root / "b.parquet"), on="id", k=10)
    np.testing.assert_allclose(data.frames[1]["x"].to_numpy(), B[:, 0].astype(data.frames[1]["x"].dtype))
    np.testing.assert_allclose(data.frames[0]["y"].to_numpy(), A[:, 1].astype(data.frames[0]["y"].dtype))
    # rotation and scale keep the neighbours; the scattered cluster loses them
    moved = data.moved
    assert np.median(moved[label != 2]) < 0.3 and np.median(moved[label == 2]) > 0.9
    np.testing.assert_allclose(data.frames[0]["quality"], qa)
    np.testing.assert_allclose(data.frames[1]["quality"], qb)
    assert "Moved (k=10)" in data.summary() and data.summary().count("Quality") == 2
    # negative control: by row order the shuffled file pairs strangers, and nearly every point "moves"
    stranger = CompareData(str(root / "a.parquet"), str(root / "b.parquet"), k=10)
    assert np.median(stranger.moved) > 0.9


def test_compare_data_refuses_mismatches_with_a_named_error(pair, tmp_path):
    root = pair[0]
    short = pd.read_parquet(root / "b.parquet").iloc[:-1]
    short.to_parquet(tmp_path / "short.parquet")
    with pytest.raises(DataError, match=r"600 rows and short.parquet 599"):
        CompareData(str(root / "a.parquet"), str(tmp_path / "short.parquet"))
    with pytest.raises(DataError, match=r"ids differ: 1 only in a.parquet"):
        CompareData(str(root / "a.parquet"), str(tmp_path / "short.parquet"), on="id")
    with pytest.raises(DataError, match="no column 'key'"):
        CompareData(str(root / "a.parquet"), str(root / "b.parquet"), on="key")
    pd.read_parquet(root / "b.parquet").assign(moved=1.0).to_parquet(tmp_path / "m.parquet")
    with pytest.raises(DataError, match="already has a 'moved' column"):
        CompareData(str(root / "a.parquet"), str(tmp_path / "m.parquet"), on="id")
    np.save(tmp_path / "vectors.npy", np.zeros((N, 8), np.float32))
    with pytest.raises(DataError, match="vectors, not coordinates"):
        CompareData(str(root / "a.parquet"), str(tmp_path / "vectors.npy"))
    with pytest.raises(DataError, match="colour by"):
        CompareData(str(root / "a.parquet"), str(root / "b.parquet"), on="id", color="nope")


def test_explorer_links_selection_marks_filters_and_exports(pair):
    root, A, B, label, _, qb, _ = pair
    data = CompareData(str(root / "a.parquet"), str(root / "b.parquet"), on="id", k=10)
    ex = CompareExplorer(data)
    a, b = ex.plots
    assert a.color == "moved" and a.span == (0.0, 1.0)
    # a box in panel a selects cluster 1 there and the same rows in panel b
    a._on_bounds(bounds=(5, -5, 15, 5))
    expected = np.flatnonzero(label == 1)
    np.testing.assert_array_equal(a.selected, expected)
    np.testing.assert_array_equal(b.selected, expected)
    assert f"Selected {expected.size:,} point(s) in both panels" in ex.selection_info.object
    # a selection made in panel b comes back to a
    b.select([3, 4])
    np.testing.assert_array_equal(a.selected, [3, 4])
    exported = pd.read_csv(io.BytesIO(ex._export().getvalue()))
    assert list(exported.columns[:6]) == ["row", "x_a", "y_a", "x_b", "y_b", "moved"]
    assert list(exported["row"]) == [3, 4] and "quality_b" in exported.columns
    np.testing.assert_allclose(exported["x_b"], B[[3, 4], 0], rtol=1e-6)
    np.testing.assert_allclose(exported["quality_b"], qb[[3, 4]], rtol=1e-6)
    # hovering on a point of panel b marks that row in both; empty space marks nothing
    row = 250
    assert ex.mark_at(1, float(B[row, 0]), float(B[row, 1])) == row
    assert ex.marked == row and f"row {row}" in ex.mark_info.object
    assert ex._rings[0].data["x"] == [float(ex.plots[0].frame["x"][row])]
    assert ex._rings[1].data["y"] == [float(ex.plots[1].frame["y"][row])]
    far = float(np.abs(B).max()) * 5
    assert ex.mark_at(1, far, far) == -1 and ex.marked == row
    assert ex.mark_at(0, float("nan"), 0.0) == -1
    # the filter keeps the 1/3 that moved most (the scattered cluster) in both panels
    ex.set_share(1 / 3)
    assert ex.rows is not None and np.mean(label[ex.rows] == 2) > 0.9
    assert len(ex.plots[0].frame) == len(ex.plots[1].frame) == ex.rows.size
    assert "Showing" in ex.filter_info.object and "moved >=" in ex.filter_info.object
    # panel row ids map back to the files' rows; a mark and the export say the file's row
    ex.plots[1].select([0, 1])
    np.testing.assert_array_equal(ex.plots[0].selected, [0, 1])
    picked = ex.rows[[0, 1]]
    assert list(pd.read_csv(io.BytesIO(ex._export().getvalue()))["row"]) == list(picked)
    ex.mark_at(0, float(A[picked[0], 0]), float(A[picked[0], 1]), clicked=True)
    assert f"row {picked[0]}" in ex.mark_info.object
    ex.set_share(1.0)  # all points again; the selection keeps its items
    assert ex.rows is None and list(ex.plots[1].selected) == list(picked)
    ex.color.value = "quality"  # each panel coloured by its own layout's quality
    np.testing.assert_allclose(ex.plots[1].frame["quality"], qb)
    assert ex.plots[1].color == "quality" and ex.plots[1].span == (0.0, 1.0)


def test_recolour_keeps_both_panels_and_lists_the_legend_in_the_sidebar(pair):
    root, *_ = pair
    ex = CompareExplorer(CompareData(str(root / "a.parquet"), str(root / "b.parquet"), on="id", k=10))
    a, b = ex.plots
    assert not a.legend and not b.legend  # no legend layer on either panel
    assert "<b>moved</b>" in ex.legend.object
    a.select([5, 6, 7])
    versions = [p._colour.colour_version for p in ex.plots]
    ex.color.value = "label"
    assert ex.plots[0] is a and ex.plots[1] is b  # recoloured in place, not built again
    assert [p._colour.colour_version for p in ex.plots] == [v + 1 for v in versions]
    assert a.color == b.color == "label" and a.color_kind == "category"
    assert a._category_colors == b._category_colors  # one legend fits both panels
    assert ex.legend.object.count("<li") == 3 and "<b>label</b> (3)" in ex.legend.object
    np.testing.assert_array_equal(b.selected, [5, 6, 7])
    ex.color.value = "(density)"
    assert a.color is None and b.color is None and ex.legend.object == legend_html(a)


def test_quality_layer_style_default_and_png_legend(tmp_path):
    from PIL import Image

    from embedscope.viz.cli import main

    assert layer_style("label") == {} and layer_style("quality")["how"] == "linear"
    assert default_color(pd.DataFrame({"quality": [1.0]})) == "quality"
    assert default_color(pd.DataFrame({"quality": [1.0]}), "label") == "label"
    assert default_color(None) is None
    s = quality_summary([0.2, 0.4, 0.6, 0.8, np.nan])
    assert s == {"mean": pytest.approx(0.5), "share_below": 0.5, "n": 4}
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 1, size=(4000, 2))
    quality = (xy[:, 0] > 0.5).astype(np.float32)  # left half kept nothing, right half everything
    pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "quality": quality}).to_parquet(tmp_path / "q.parquet")
    assert main(["plot", str(tmp_path / "q.parquet"), "--out", str(tmp_path / "q.png"), "--width", "200",
                 "--height", "150", "--quiet"]) == 0
    img = np.asarray(Image.open(tmp_path / "q.png").convert("RGB")).astype(int)
    assert img.shape[1] > 200  # the colour bar column
    left, right = img[20:130, 10:90].reshape(-1, 3), img[20:130, 110:190].reshape(-1, 3)
    left, right = left[left.min(axis=1) < 230], right[right.min(axis=1) < 230]  # the inked pixels
    cmap = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in layer_style("quality")["cmap"]])
    # the low end of the map (black) on the left, its high end (orange-yellow) on the right, linearly
    assert len(left) > 500 and len(right) > 500
    assert np.abs(np.median(left, 0) - cmap[0]).max() < 40 and np.abs(np.median(right, 0) - cmap[-1]).max() < 40


def test_serve_flags_of_two_layouts_are_refused_where_they_do_not_apply(pair, capsys):
    from embedscope.viz.cli import main

    root = pair[0]
    # one-line errors, exit code 2, before any data is read or port bound
    assert main(["serve", str(root / "a.parquet"), "--on", "id", "--port", "0"]) == 2
    assert "error: --on applies to two layouts compared" in capsys.readouterr().err
    assert main(["serve", str(root / "a.parquet"), "--k", "5", "--port", "0"]) == 2
    assert "error: --k applies to two layouts compared" in capsys.readouterr().err
    assert main(["serve", str(root / "a.parquet"), str(root / "b.parquet"), "--meta", "m.csv", "--port", "0"]) == 2
    assert "error: --meta applies to one input" in capsys.readouterr().err


def test_serve_colours_by_quality_and_shows_its_figures(tmp_path):
    from embedscope.viz.app import AppData, Explorer

    rng = np.random.default_rng(2)
    quality = np.r_[np.zeros(100), np.full(300, 0.8)].astype(np.float32)
    pd.DataFrame({"x": rng.normal(size=400), "y": rng.normal(size=400), "label": rng.integers(0, 3, 400),
                  "quality": quality}).to_parquet(tmp_path / "q.parquet")
    explorer = Explorer(AppData(str(tmp_path / "q.parquet"), verbose=False))
    assert explorer.plot.color == "quality" and explorer.plot.span == (0.0, 1.0) and explorer.plot.how == "linear"
    text = " ".join(str(getattr(o, "object", "")) for o in explorer.layout[0])
    assert "Quality: mean 0.600, 25.0% of points below 0.5" in text
    explorer.color.value = "label"  # other columns keep their own shading
    assert explorer.plot.span is None and explorer.plot.how == "eq_hist"
    # negative control: no quality column, no figures and another colour (the first category column)
    pd.read_parquet(tmp_path / "q.parquet").drop(columns="quality").to_parquet(tmp_path / "p.parquet")
    plain = Explorer(AppData(str(tmp_path / "p.parquet"), verbose=False))
    assert plain.plot.color != "quality" and "Quality" not in " ".join(str(getattr(o, "object", "")) for o in plain.layout[0])
