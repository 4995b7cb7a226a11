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
