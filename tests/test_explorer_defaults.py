"""The explorer as a new user meets it (#19), without a browser: labels in the app and
the HTML export, the legend beside the plot, titles from the reducer, search modes,
default columns, neighbours in the original space, and the CLI flags."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("panel")

CENTRES = {"cat": (0.0, 0.0), "car": (10.0, 0.0), "tree": (0.0, 10.0)}


@pytest.fixture(scope="module")
def coords_file(tmp_path_factory):
    """Three labelled blobs with an id column, a free-text column and a number column."""
    rng = np.random.default_rng(0)
    label = rng.choice(list(CENTRES), 3000)
    xy = np.array([CENTRES[k] for k in label]) + rng.normal(size=(3000, 2))
    root = tmp_path_factory.mktemp("explorer")
    frame = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "id": [f"doc-{i:05d}" for i in range(3000)],
                          "label": label, "text": [f"a small {k} number {i}" for i, k in enumerate(label)],
                          "score": rng.random(3000)})
    frame.to_parquet(root / "coords.parquet", index=False)
    return root / "coords.parquet"


def test_app_draws_labels_of_the_zoom_and_toggles_them(coords_file):
    from embedscope.viz.app import AppData, Explorer

    data = AppData(str(coords_file), labels_from="label", verbose=False)
    explorer = Explorer(data)
    assert explorer.show_labels.value and not explorer.show_labels.disabled
    shown = explorer.plot._label_items(None, None, True)
    assert sorted(shown.dimension_values("text")) == ["car", "cat", "tree"]
    # zoomed on the cat blob: only labels inside the view, from a finer level
    zoomed = explorer.plot._label_items((-2.0, 2.0), (-2.0, 2.0), True)
    assert set(zoomed.dimension_values("text")) == {"cat"}
    explorer.show_labels.value = False
    assert explorer.plot._show_labels is False and explorer.plot._labels_shown.show is False
    assert len(explorer.plot._label_items(None, None, explorer.plot._labels_shown.show)) == 0
    # a new colour keeps the toggle's state
    explorer.color.value = "(density)"
    assert explorer.plot._labels_shown.show is False
    # negative control: without --labels-from there is no label layer and the toggle is off
    plain = Explorer(AppData(str(coords_file), verbose=False))
    assert plain.show_labels.disabled and plain.plot.labels is None
    with pytest.raises(Exception, match="no metadata column 'nope' to label"):
        AppData(str(coords_file), labels_from="nope", verbose=False)


def test_html_export_carries_the_labels_of_every_level(coords_file, tmp_path):
    from embedscope.cli import main

    common = ["plot", str(coords_file), "--width", "300", "--height", "200", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "plain.html")]) == 0
    assert main([*common, "--out", str(tmp_path / "labelled.html"), "--labels-from", "label"]) == 0
    plain = (tmp_path / "plain.html").read_text(encoding="utf-8")
    labelled = (tmp_path / "labelled.html").read_text(encoding="utf-8")
    assert '"tree"' in labelled and '"Text"' in labelled and "log2(full" in labelled
    assert '"tree"' not in plain and "log2(full" not in plain


def test_legend_is_a_list_beside_the_plot_with_every_one_of_many_categories(tmp_path):
    from embedscope.viz.app import AppData, Explorer

    rng = np.random.default_rng(1)
    names = [f"topic <{i}>" for i in range(50)]  # markup in a name stays text
    frame = pd.DataFrame({"x": rng.normal(size=5000), "y": rng.normal(size=5000),
                          "topic": rng.choice(names, 5000)})
    frame.to_parquet(tmp_path / "many.parquet", index=False)
    explorer = Explorer(AppData(str(tmp_path / "many.parquet"), color="topic", verbose=False))
    html = explorer.legend.object
    assert html.count("<li") == 50 and "topic &lt;49&gt;" in html and "<49>" not in html
    colours = list(explorer.plot._category_colors.values())
    assert len(set(colours)) == 50 and "other" not in explorer.plot._category_colors
    # the plot itself carries no Bokeh legend (it covered the data); a plot outside the app does
    import holoviews as hv

    from embedscope.viz.figure import EmbeddingPlot

    def legend_items(plot):
        return sum(len(legend.items) for legend in hv.render(plot.view).legend)

    assert legend_items(explorer.plot) == 0
    assert legend_items(EmbeddingPlot(frame, color="topic")) > 0


def test_png_legend_shows_every_category_in_columns(tmp_path):
    from PIL import Image

    from embedscope.viz.export import LEGEND_WIDTH, save_png

    rng = np.random.default_rng(2)
    meta = pd.DataFrame({"topic": [f"t{i % 50}" for i in range(3000)]})
    path = save_png(rng.normal(size=(3000, 2)), tmp_path / "many.png", meta, "topic", width=300, height=300)
    # 50 rows of 16 px do not fit 300 px: the legend takes three columns beside the image
    assert Image.open(path).size == (300 + 3 * LEGEND_WIDTH, 300)


def test_reduce_records_its_parameters_for_titles(tmp_path):
    from embedscope.cli import main
    from embedscope.io.write import read_layout_info
    from embedscope.viz.app import AppData

    rng = np.random.default_rng(3)
    np.save(tmp_path / "v.npy", rng.normal(size=(400, 8)).astype(np.float32))
    out = tmp_path / "c.parquet"
    assert main(["reduce", str(tmp_path / "v.npy"), "--method", "pca", "--svd-solver", "full",
                 "--random-state", "4", "--out", str(out), "--quiet"]) == 0
    info = read_layout_info(out)
    assert info["method"] == "pca" and info["params"]["svd_solver"] == "full" and info["backend"] == "cpu"
    assert AppData(str(out), verbose=False).title == "PCA svd_solver=full, random_state=4 · c.parquet"
    # negative control: a parquet file written without the record is titled by its name alone
    pd.read_parquet(out).to_parquet(tmp_path / "plain.parquet", index=False)
    assert read_layout_info(tmp_path / "plain.parquet") is None
    assert AppData(str(tmp_path / "plain.parquet"), verbose=False).title == "plain.parquet"
    from embedscope.viz._input import layout_title

    umap = {"method": "umap", "params": {"n_neighbors": 7, "min_dist": 0.3, "metric": "cosine", "spread": 1.0}}
    assert layout_title(umap, "u.parquet") == "UMAP n_neighbors=7, min_dist=0.3, metric=cosine · u.parquet"


def test_search_modes_are_bounded_and_refuse_bad_patterns():
    from embedscope.viz.search import MAX_SEARCH_CHARS, search_rows, text_array

    values = text_array(pd.Series(["Cat food", "a cat", "dog", None, "cat", "catalogue"], dtype=object))
    assert search_rows(values, "CAT", "substring").tolist() == [0, 1, 4, 5]
    assert search_rows(values, "cat", "exact").tolist() == [4]
    assert search_rows(values, "Cat", "exact").tolist() == []  # exact is case and all
    assert search_rows(values, r"^cat\b", "regex").tolist() == [0, 4]
    with pytest.raises(ValueError, match="cannot search for") as bad:
        search_rows(values, r"(cat", "regex")
    assert "\n" not in str(bad.value)
    with pytest.raises(ValueError, match="cannot search for"):  # RE2 has no back-references
        search_rows(values, r"(a)\1", "regex")
    with pytest.raises(ValueError, match=f"limit is {MAX_SEARCH_CHARS}"):
        search_rows(values, "a" * (MAX_SEARCH_CHARS + 1), "regex")
    with pytest.raises(ValueError, match="search mode must be"):
        search_rows(values, "cat", "glob")
    # categories and numbers are searched as their text
    assert search_rows(text_array(pd.Series([10, 2, 100])), "10", "substring").tolist() == [0, 2]
    assert search_rows(text_array(pd.Categorical(["b", "a", "b"])), "b", "exact").tolist() == [0, 2]


@pytest.mark.parametrize("categories", [["Cat food", "a cat", "dog", "cat", "catalogue"], [10, 2, 100, 7]])
def test_categorical_search_equals_the_row_by_row_search(categories):
    from embedscope.viz.search import CategoricalText, search_rows, text_array

    rng = np.random.default_rng(0)
    codes = rng.integers(-1, len(categories), 5000)  # -1: missing
    column = pd.Categorical.from_codes(codes, categories=categories)
    fast = text_array(column)
    plain = text_array(pd.Series(column).astype(object))  # the same values spelt out row by row
    assert isinstance(fast, CategoricalText) and not isinstance(plain, CategoricalText)
    for needle, mode in [("CAT", "substring"), ("cat", "exact"), (r"^cat\b", "regex"), ("10", "substring"),
                         ("2", "exact"), ("zebra", "substring")]:
        got = search_rows(fast, needle, mode)
        assert got.tolist() == search_rows(plain, needle, mode).tolist(), (needle, mode)
    some = search_rows(fast, str(categories[0]), "exact")
    assert some.size > 0 and (codes[some] == 0).all()
    everything = search_rows(fast, ".", "regex")  # every value has a character: all rows but the missing
    assert everything.tolist() == np.flatnonzero(codes >= 0).tolist()


def test_default_search_and_colour_columns(coords_file):
    from embedscope.viz.app import AppData, Explorer
    from embedscope.viz.search import default_color_column, default_text_column

    data = AppData(str(coords_file), verbose=False)
    assert data.text_column == "text" and data.color == "label"  # not 'id', not the numbers
    explorer = Explorer(data)
    assert explorer.search.label == "Search text" and explorer.color.value == "label"
    explorer.search_mode.value = "regex"
    explorer.search.value = r"small (cat|car) number 1\d$"
    assert "(regex)" in explorer.selection_info.object and explorer.plot.selected.size > 5
    explorer.search.value = "small (cat"
    assert "Nothing searched" in explorer.selection_info.object
    # negative controls: only an id column, then nothing of a few categories
    ids = pd.DataFrame({"id": [f"k{i}" for i in range(100)], "n": np.arange(100)})
    assert default_text_column(ids) == "id" and default_color_column(ids) is None
    one = pd.DataFrame({"kind": ["a"] * 100, "code": [f"c{i}" for i in range(100)]})
    assert default_color_column(one) is None and default_text_column(one) == "kind"
    assert default_color_column(pd.DataFrame({"digit": np.arange(100) % 10})) == "digit"


def test_neighbours_from_vectors_beside_coordinates(coords_file, tmp_path):
    from embedscope.errors import DataError
    from embedscope.viz.app import AppData, Explorer

    rng = np.random.default_rng(4)
    # directions carry the neighbourhoods by cosine, lengths by euclidean distance
    vectors = rng.normal(size=(3000, 6)).astype(np.float32) * rng.uniform(0.1, 10, size=(3000, 1)).astype(np.float32)
    np.save(tmp_path / "v.npy", vectors)
    data = AppData(str(coords_file), vectors=str(tmp_path / "v.npy"), verbose=False)
    ids, _, space = data.neighbours(3, k=5, metric="cosine")
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert set(ids) == set(np.argsort(-(unit @ unit[3]))[1:6]) and "6 dimensions" in space and "cosine" in space
    euclid, _, _ = data.neighbours(3, k=5, metric="euclidean")
    assert set(euclid) == set(np.argsort(((vectors - vectors[3]) ** 2).sum(1))[1:6]) and set(euclid) != set(ids)
    explorer = Explorer(data)
    explorer.metric.value, explorer.k.value = "cosine", 7
    explorer._on_tap(x=float(data.frame["x"][3]), y=float(data.frame["y"][3]))
    assert len(explorer.neighbour_table.object) == 7 and "cosine" in explorer.neighbour_title.object
    # negative control: without --vectors the neighbours are the layout's
    assert "2-D layout" in AppData(str(coords_file), verbose=False).neighbours(3, k=5)[2]
    np.save(tmp_path / "short.npy", vectors[:10])
    with pytest.raises(DataError, match="has 10 rows but there are 3,000 points"):
        AppData(str(coords_file), vectors=str(tmp_path / "short.npy"), verbose=False)
    with pytest.raises(ValueError, match="k must be in"):
        data.neighbours(3, k=0)


def _serve_args(*argv):
    import argparse

    from embedscope.viz.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_serve_takes_the_reducers_flags_like_reduce(coords_file, tmp_path):
    from embedscope.errors import DataError
    from embedscope.viz.app import AppData
    from embedscope.viz.cli import _serve_reducer_params

    args = _serve_args("v.npy", "--method", "umap", "--n-neighbors", "7", "--random-state", "3", "--metric", "cosine")
    assert _serve_reducer_params(args) == {"n_neighbors": 7, "random_state": 3, "metric": "cosine"}
    with pytest.raises(ValueError, match="--perplexity does not apply to --method umap"):
        _serve_reducer_params(_serve_args("v.npy", "--method", "umap", "--perplexity", "30"))
    assert _serve_reducer_params(_serve_args("v.npy")) == {}
    np.save(tmp_path / "v.npy", np.random.default_rng(0).normal(size=(300, 5)).astype(np.float32))
    data = AppData(str(tmp_path / "v.npy"), method="pca", reducer_params={"svd_solver": "full", "random_state": 2},
                   verbose=False)
    assert data.wait(60) and data.error is None
    assert data.reducer.svd_solver == "full" and data.title == "PCA svd_solver=full, random_state=2 · v.npy"
    with pytest.raises(DataError, match="apply to vectors reduced at start"):
        AppData(str(coords_file), reducer_params={"n_neighbors": 5}, verbose=False)


def test_plot_title_spread_legend_and_3d_refusal(coords_file, tmp_path, capsys):
    from PIL import Image

    from embedscope.cli import main

    common = ["plot", str(coords_file), "--color", "label", "--width", "200", "--height", "150", "--quiet"]
    paths = {name: tmp_path / f"{name}.png" for name in ("plain", "titled", "bare", "thin")}
    assert main([*common, "--out", str(paths["plain"])]) == 0
    assert main([*common, "--out", str(paths["titled"]), "--title", "My map"]) == 0
    assert main([*common, "--out", str(paths["bare"]), "--no-legend"]) == 0
    scattered = tmp_path / "scattered.parquet"
    pd.DataFrame(np.random.default_rng(0).uniform(size=(200, 2)), columns=["x", "y"]).to_parquet(scattered)
    sparse = ["plot", str(scattered), "--width", "400", "--height", "300", "--quiet"]
    assert main([*sparse, "--out", str(paths["thin"]), "--spread", "0"]) == 0
    assert main([*sparse, "--out", str(tmp_path / "thick.png"), "--spread", "4"]) == 0
    size = {name: Image.open(path).size for name, path in paths.items()}
    assert size["plain"][1] == 150 and size["titled"][1] == 150 + 26 and size["bare"] == (200, 150)
    ink = [(np.asarray(Image.open(path).convert("L")) < 250).sum() for path in (paths["thin"], tmp_path / "thick.png")]
    assert ink[0] < ink[1]  # spread grows the sparse points
    three = tmp_path / "three.parquet"
    pd.read_parquet(coords_file).assign(z=1.0).to_parquet(three, index=False)
    capsys.readouterr()
    assert main(["plot", str(three), "--out", str(tmp_path / "three.png"), "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert "holds 3-D coordinates" in error and "--drop-z" in error and "\n" not in error
    assert main(["plot", str(three), "--out", str(tmp_path / "three.png"), "--quiet", "--drop-z"]) == 0
