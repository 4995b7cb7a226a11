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
