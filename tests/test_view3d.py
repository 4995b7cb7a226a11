"""3-D layouts: the Plotly figure, ``plot --out *.html`` of 3-D coordinates, and the serve page.

No browser here (tests/test_view3d_browser.py opens the page); every check reads the
figure's data or the written file.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from embedscope.errors import DataError
from embedscope.viz.view3d import View3D, figure_3d, frame_3d, sample_rows

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def layout():
    rng = np.random.default_rng(0)
    n = 3_000
    labels = np.array(list("abc"))[rng.integers(0, 3, n)].astype(object)
    labels[7] = HOSTILE
    words = np.array([f"w{i}" for i in range(n)], dtype=object)
    words[5] = "%{x} {y} <b>bold</b> & \"quoted\""
    meta = pd.DataFrame({"label": labels, "word": words, "score": rng.uniform(size=n)})
    return rng.normal(size=(n, 3)).astype(np.float32), meta


def _points(fig) -> int:
    return sum(len(trace.x) for trace in fig.data)


def test_sample_cap_is_seeded_uniform_and_stated_in_the_title(layout):
    X, meta = layout
    view = View3D(X, meta, max_points=1_000, random_state=3, title="my map")
    fig = view.figure()
    assert _points(fig) == 1_000 and view.rows.size == 1_000 and np.all(np.diff(view.rows) > 0)
    assert "1,000 of 3,000 points drawn" in fig.layout.title.text and fig.layout.title.text.startswith("my map")
    # the same seed draws the same rows; another seed others; uniform: all thirds of the rows drawn alike
    assert np.array_equal(view.rows, sample_rows(3_000, 1_000, 3))
    assert not np.array_equal(view.rows, sample_rows(3_000, 1_000, 4))
    assert np.all(np.abs(np.bincount(view.rows // 1_000) - 333) < 60)
    # below the cap every point is drawn and the title has no sample note (negative control)
    full = View3D(X, meta, title="my map").figure()
    assert _points(full) == 3_000 and full.layout.title.text == "my map"
    with pytest.raises(ValueError, match="max_points"):
        View3D(X, meta, max_points=0)


def test_categories_get_the_maps_glasbey_colours_and_a_legend(layout):
    from embedscope.viz.aggregate import category_colors

    X, meta = layout
    fig = figure_3d(X, meta, "label")
    names = [trace.name for trace in fig.data]
    expected = category_colors(sorted({"a", "b", "c", HOSTILE}))
    # the legend lists every category, escaped, in the 2-D maps' colours
    assert names == ["&lt;img src=x onerror=alert(1)&gt;", "a", "b", "c"]
    assert [trace.marker.color for trace in fig.data] == [expected[HOSTILE], expected["a"], expected["b"], expected["c"]]
    assert all(trace.showlegend for trace in fig.data) and fig.layout.legend.title.text == "label"
    assert _points(fig) == 3_000
    # each trace holds its own category's rows
    for trace in fig.data[1:]:
        rows = np.array(trace.customdata[:, 0], dtype=int)
        assert (meta["label"].to_numpy()[rows] == trace.name).all()
    # 70 categories: the 63 most frequent keep a colour, the rest are one grey 'other' (noted)
    many = pd.DataFrame({"topic": [f"t{i % 70}" for i in range(3_000)]})
    fig = figure_3d(X, many, "topic")
    assert len(fig.data) == 64 and fig.data[-1].name == "other" and fig.data[-1].marker.color == "#a0a0a0"
    assert "70 distinct values" in fig.layout.title.text


def test_values_get_a_colour_bar_and_nan_points_their_own_trace(layout):
    X, meta = layout
    fig = figure_3d(X, meta, "score")
    (trace,) = fig.data
    assert trace.marker.showscale and trace.marker.colorbar.title.text == "score"
    assert np.allclose(np.asarray(trace.marker.color), meta["score"].to_numpy()[trace.customdata[:, 0].astype(int)])
    assert trace.marker.cmin == pytest.approx(meta["score"].min()) and trace.marker.cmax == pytest.approx(meta["score"].max())
    # the quality layer keeps its fixed [0, 1] span, as on the 2-D maps
    quality = figure_3d(X, pd.DataFrame({"quality": np.linspace(0.2, 0.6, 3_000)}), "quality")
    assert (quality.data[0].marker.cmin, quality.data[0].marker.cmax) == (0.0, 1.0)
    holes = meta.assign(score=np.where(np.arange(3_000) % 10 == 0, np.nan, meta["score"]))
    fig = figure_3d(X, holes, "score")
    assert len(fig.data[0].x) == 2_700 and fig.data[1].name == "no value (300)" and len(fig.data[1].x) == 300
    with pytest.raises(DataError, match="inf values"):
        figure_3d(X, meta.assign(score=np.inf), "score")
    with pytest.raises(DataError, match="no column 'nope'"):
        figure_3d(X, meta, "nope")


def test_hover_escapes_hostile_values_and_names(layout):
    X, meta = layout
    hostile_meta = meta.rename(columns={"word": "<b>w</b>%{x}"})
    fig = figure_3d(X, hostile_meta, "label")
    trace = next(t for t in fig.data if t.name.startswith("&lt;img"))
    row, label, word, score = trace.customdata[0]
    assert (row, label, word) == ("7", "&lt;img src=x onerror=alert(1)&gt;", "w7")
    assert score == f"{meta['score'][7]:.6g}"  # six significant digits, not float64's seventeen
    template = trace.hovertemplate
    # the column name cannot open a template field or a tag; the fields are the row, then the columns
    assert "&lt;b&gt;w&lt;/b&gt;&#37;&#123;x&#125;: %{customdata[2]}" in template
    assert re.findall(r"%\{[^}]*\}", template) == [f"%{{customdata[{i}]}}" for i in range(4)]
    assert template.startswith("<b>row %{customdata[0]}</b>") and template.endswith("<extra></extra>")
    text = dict(zip(*np.asarray(np.concatenate([t.customdata for t in fig.data]))[:, [0, 2]].T, strict=True))
    assert text["5"] == "&#37;&#123;x&#125; &#123;y&#125; &lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot;"
    every = json.dumps([t.customdata.tolist() for t in fig.data] + [t.name for t in fig.data])
    assert "<" not in every and ">" not in every and "%{" not in every
    # the title is user data too (file names)
    assert figure_3d(X, meta, title=HOSTILE).layout.title.text == "&lt;img src=x onerror=alert(1)&gt;"


def test_frame_3d_refuses_what_is_not_n_by_3(layout):
    X, meta = layout
    with pytest.raises(DataError, match=r"shape \(n, 3\); got \(3000, 2\)"):
        frame_3d(X[:, :2])
    bad = X.copy()
    bad[[4, 9]] = np.nan
    with pytest.raises(DataError, match=r"2 point\(s\) have NaN or inf coordinates \(rows 4, 9\)"):
        frame_3d(bad)
    with pytest.raises(DataError, match="metadata has 10 rows but there are 3000 points"):
        frame_3d(X, meta.head(10))
    frame = frame_3d(pd.DataFrame(X, columns=["x", "y", "z"]).assign(tag="t"), meta)
    assert list(frame.columns) == ["x", "y", "z", "tag", "label", "word", "score"]


@pytest.fixture(scope="module")
def coords3d(tmp_path_factory, layout):
    from embedscope.io.write import write_coords

    X, meta = layout
    root = tmp_path_factory.mktemp("view3d")
    path = root / "c3.parquet"
    write_coords(str(path), X, meta, info={"method": "umap", "params": {"n_neighbors": 15, "min_dist": 0.1,
                                                                         "metric": "euclidean", "random_state": 0}})
    return path


def test_plot_html_of_3d_coordinates_is_one_self_contained_page(coords3d, tmp_path, capsys):
    from embedscope.cli import main

    out = tmp_path / "view.html"
    assert main(["plot", str(coords3d), "--color", "label", "--out", str(out), "--max-points", "2000"]) == 0
    page = out.read_text(encoding="utf-8")
    scripts = re.findall(r"<script[^>]*>", page)
    # plotly.js is inlined: no script (or anything else) is loaded from elsewhere
    assert scripts and all(tag == "<script>" for tag in scripts), scripts
    # outside the scripts (whose code holds URL strings plotly.js never fetches for a 3-D
    # scatter: map tiles, the logo link) the page names no other place at all
    markup = re.sub(r"<script>.*?</script>", "", page, flags=re.S)
    assert "//" not in markup.replace("<!DOCTYPE html>", ""), re.findall(r".{30}//.{30}", markup)[:3]
    assert 'src="https://cdn.plot.ly' not in page
    assert len(page) > 3_000_000  # the plotly.js bundle is in the page
    assert "<title>UMAP n_neighbors=15, min_dist=0.1, metric=euclidean, random_state=0 · c3.parquet</title>" in page
    assert "2,000 of 3,000 points drawn" in page and HOSTILE not in page
    assert not list(tmp_path.glob(".*")), "a temporary file was left beside the page"
    err = capsys.readouterr().err
    assert "2,000 of 3,000 points drawn" in err and "z is not shown" not in err
    # the page is replaced only with --force, like every output
    assert main(["plot", str(coords3d), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err


def test_plot_2d_only_outputs_of_3d_coordinates_are_refused_clearly(coords3d, tmp_path, capsys):
    from embedscope.cli import main

    for extra in (["--out", str(tmp_path / "p.png")], ["--out", str(tmp_path / "site"), "--tiles"]):
        assert main(["plot", str(coords3d), *extra, "--quiet"]) == 2
        error = capsys.readouterr().err.strip()
        assert "holds 3-D coordinates" in error and "--drop-z" in error and "NAME.html" in error and "\n" not in error
    assert main(["plot", str(coords3d), "--out", str(tmp_path / "l.html"), "--labels-from", "label", "--quiet"]) == 2
    assert "--labels-from names the regions of a 2-D map" in capsys.readouterr().err
    assert main(["plot", str(coords3d), "--out", str(tmp_path / "p.png"), "--max-points", "10", "--quiet"]) == 2
    assert "--max-points applies to 3-D views" in capsys.readouterr().err
    assert main(["plot", str(coords3d), "--out", str(tmp_path / "p.html"), "--max-points", "0", "--quiet"]) == 2
    assert "--max-points must be in [1, 2,000,000]" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_serve_page_of_3d_coordinates_is_the_3d_view(coords3d):
    pytest.importorskip("panel")
    from embedscope.viz.app import AppData, make_session
    from embedscope.viz.app3d import MISSING_3D, Explorer3D

    data = AppData(str(coords3d), color="label", verbose=False)
    assert data.is_3d and data.ready and "rotatable 3-D view" in data.note
    page = Explorer3D(data)
    fig = page.pane.object
    assert [t.name for t in fig.data][1:] == ["a", "b", "c"] and fig.layout.title.text.startswith("UMAP n_neighbors=15")
    page.color.value = "score"  # the selector recolours: a colour bar
    assert len(page.pane.object.data) == 1 and page.pane.object.data[0].marker.showscale
    page.color.value = "(none)"
    assert len(page.pane.object.data) == 1 and not page.pane.object.data[0].marker.showscale
    # the page says which of the 2-D explorer's tools it lacks
    assert any(getattr(o, "object", None) == MISSING_3D for o in page.layout.select())
    assert type(make_session(data)).__name__ == "Row"
    with pytest.raises(ValueError, match="--labels-from feeds the 2-D explorer"):
        AppData(str(coords3d), labels_from="label", verbose=False)
    with pytest.raises(DataError, match="--n-components applies to vectors"):
        AppData(str(coords3d), n_components=3, verbose=False)


def test_serve_reduces_vectors_to_the_3d_view(layout, tmp_path):
    pytest.importorskip("panel")
    from embedscope.viz.app import AppData
    from embedscope.viz.app3d import Explorer3D

    X, meta = layout
    rng = np.random.default_rng(1)
    np.save(tmp_path / "v.npy", np.hstack([X, 0.01 * rng.normal(size=(len(X), 5))]).astype(np.float32))
    meta.to_csv(tmp_path / "meta.csv", index=False)
    data = AppData(str(tmp_path / "v.npy"), str(tmp_path / "meta.csv"), method="pca", n_components=3,
                   verbose=False)
    assert data.is_3d and data.wait(60) and data.error is None
    assert list(data.frame.columns[:3]) == ["x", "y", "z"] and data.view3d.n_points == 3_000
    assert data.title.startswith("PCA")
    fig = Explorer3D(data).pane.object
    assert sum(len(t.x) for t in fig.data) == 3_000
    # 2-D, the default, is still the 2-D explorer (negative control)
    assert not AppData(str(tmp_path / "v.npy"), method="pca", verbose=False).is_3d
    with pytest.raises(ValueError, match="--live draws a 2-D map"):
        AppData(str(tmp_path / "v.npy"), method="umap", live=True, n_components=3, verbose=False)
    with pytest.raises(ValueError, match="n_components must be 2 or 3"):
        AppData(str(tmp_path / "v.npy"), method="pca", n_components=4, verbose=False)


def test_compare_refuses_3d_layouts_rather_than_drawing_x_and_y(coords3d, tmp_path, capsys):
    from embedscope.cli import main
    from embedscope.viz.compare_app import CompareData

    flat = tmp_path / "flat.parquet"
    pd.read_parquet(coords3d).drop(columns="z").to_parquet(flat, index=False)
    assert main(["compare", str(flat), str(coords3d), "--out", str(tmp_path / "c.png"), "--quiet"]) == 2
    # strict: conftest waits for explorers' background reductions, whose progress lines
    # once landed in this capture from an earlier test on the same xdist worker
    error = capsys.readouterr().err.strip()
    assert "c3.parquet holds 3-D coordinates; compare draws 2-D maps" in error and "\n" not in error
    with pytest.raises(DataError, match="holds 3-D coordinates; comparing draws 2-D maps"):
        CompareData(str(coords3d), str(flat))
    assert CompareData(str(flat), str(flat)).frames[0].shape[0] == 3_000  # 2-D pairs still compare


def test_2d_maps_of_3d_coordinates_in_python_say_z_is_not_shown(layout, caplog, monkeypatch):
    import embedscope.viz.export as export
    from embedscope.viz._input import note_dropped_z

    X, _ = layout

    def stop(*args, **kwargs):  # the aggregate itself is not what is tested (a cold one compiles for 30 s)
        raise RuntimeError("stop before the aggregate")

    monkeypatch.setattr(export, "raster", stop)
    with caplog.at_level("WARNING", logger="embedscope"), pytest.raises(RuntimeError, match="stop"):
        export.render_image(X[:500], width=60, height=40)  # save_png's and save_html's first step
    assert "z is not shown" in caplog.text and "figure_3d" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="embedscope"):
        note_dropped_z(pd.DataFrame(X, columns=["x", "y", "z"]))
        assert "z is not shown" in caplog.text
        caplog.clear()
        with pytest.raises(RuntimeError, match="stop"):
            export.render_image(X[:500, :2], width=60, height=40)
        note_dropped_z(pd.DataFrame(X[:, :2], columns=["x", "y"]))
    assert "z is not shown" not in caplog.text  # negative control: 2-D input, no word


def test_dask_plot_refuses_3d_shards_without_drop_z(coords3d, tmp_path):
    import shutil

    from embedscope.viz.cli import _parquet_coords

    shards = tmp_path / "shards"
    shards.mkdir()
    shutil.copy(coords3d, shards / "part-0.parquet")
    with pytest.raises(DataError, match="holds 3-D coordinates \\(a z column\\); plot draws 2-D images: give --drop-z"):
        _parquet_coords(str(shards), "label")
    _, columns = _parquet_coords(str(shards), "label", drop_z=True)
    assert columns == ["x", "y", "z", "label"]  # z read only for the coordinates' dtype, as before
