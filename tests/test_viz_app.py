"""The serve app without a browser: data loading, neighbours, search, export, errors."""

from __future__ import annotations

import io
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from embedscope.errors import DataError
from embedscope.viz.app import AppData, Explorer, default_method, load_input, make_session


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 600)
    vectors = (np.eye(3, 12)[labels] * 20 + rng.normal(size=(600, 12))).astype(np.float32)
    root = tmp_path_factory.mktemp("appdata")
    np.save(root / "vectors.npy", vectors)
    meta = pd.DataFrame({"label": labels, "word": [f"word{i}" for i in range(600)]})
    meta.to_csv(root / "meta.csv", index=False)
    coords = pd.DataFrame({"x": vectors[:, 0], "y": vectors[:, 1], "label": labels, "word": meta["word"]})
    coords.to_parquet(root / "coords.parquet", index=False)
    return root, vectors, meta


def test_load_input_tells_coordinates_from_vectors(files):
    root, vectors, _ = files
    array, meta, is_coords = load_input(str(root / "coords.parquet"))
    assert is_coords and array.shape == (600, 2) and list(meta.columns) == ["label", "word"]
    array, meta, is_coords = load_input(str(root / "vectors.npy"), str(root / "meta.csv"))
    assert not is_coords and array.shape == vectors.shape and len(meta) == 600
    with pytest.raises(DataError, match="no such file"):
        load_input(str(root / "missing.parquet"))


def test_appdata_vectors_reduce_and_neighbours_in_original_space(files):
    root, vectors, meta = files
    data = AppData(str(root / "vectors.npy"), str(root / "meta.csv"), method="pca", verbose=False)
    assert data.wait(60) and data.error is None
    assert data.frame.shape[0] == 600 and "reduced with pca" in data.note
    assert data.text_column == "word"
    ids, dist, space = data.neighbours(5, k=10)
    assert "original" in space and len(ids) == 10 and 5 not in ids
    assert np.all(np.diff(dist) >= -1e-6)
    exact = np.argsort(((vectors - vectors[5]) ** 2).sum(1))[1:11]
    assert len(set(ids) & set(exact)) >= 9
    assert (meta["label"].to_numpy()[ids] == meta["label"][5]).all()
    row = data.nearest_row(float(data.frame["x"][7]), float(data.frame["y"][7]))
    assert row == 7


def test_appdata_coordinates_and_bad_arguments(files):
    root, _, _ = files
    data = AppData(str(root / "coords.parquet"), method="umap", verbose=False)
    assert data.ready and data.vectors is None and "ignored" in data.note
    assert "2-D layout" in data.neighbours(0)[2]
    with pytest.raises(DataError, match="colour"):
        AppData(str(root / "coords.parquet"), color="nope")
    with pytest.raises(DataError, match="search"):
        AppData(str(root / "coords.parquet"), text_column="nope")
    assert default_method() in ("umap", "pca")


def test_explorer_search_select_export(files):
    root, _, meta = files
    data = AppData(str(root / "coords.parquet"), color="label", verbose=False)
    explorer = Explorer(data)
    explorer._search("WORD12")  # case-insensitive substring
    expected = [i for i, w in enumerate(meta["word"]) if "word12" in w]
    np.testing.assert_array_equal(explorer.plot.selected, expected)
    assert f"{len(expected)} match" in explorer.selection_info.object
    for fmt, reader in (("csv", pd.read_csv), ("parquet", pd.read_parquet)):
        explorer.fmt.value = fmt
        assert explorer.download.filename == f"selection.{fmt}"
        exported = reader(io.BytesIO(explorer._export().getvalue()))
        assert list(exported["row"]) == expected
        assert list(exported["word"]) == [meta["word"][i] for i in expected]
    explorer._on_tap(x=float(data.frame["x"][3]), y=float(data.frame["y"][3]))
    assert "row 3" in explorer.neighbour_title.object and len(explorer.neighbour_table.object) == 10
    assert 3 in explorer.plot.selected
    before = explorer.plot
    explorer.color.value = "(density)"  # recolours the same plot (one new image) and keeps the selection
    assert explorer.plot is before and explorer.plot.color is None and 3 in explorer.plot.selected
    explorer._search("")
    assert explorer.plot.selected.size == 0


def test_session_page_waits_then_shows_explorer(files):
    import panel as pn

    root, _, _ = files
    data = AppData(str(root / "vectors.npy"), method="pca", verbose=False)
    assert data.wait(60)
    data._ready.clear()  # pretend the reduction is still running
    data.status = "pca ... covariance solver"
    waiting = make_session(data)
    assert isinstance(waiting, pn.Column) and any(isinstance(o, pn.indicators.Progress) for o in waiting)
    data._ready.set()
    assert isinstance(make_session(data), pn.Row)
    data.error = "pca failed: boom"
    assert "boom" in str(make_session(data)[2].object)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_bad_file_is_a_clear_message(tmp_path):
    bad = tmp_path / "broken.npy"
    bad.write_bytes(b"not a numpy file")
    result = subprocess.run([sys.executable, "-m", "embedscope.viz.cli", "serve", str(bad), "--port", str(_free_port())],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "broken.npy" in result.stderr and "Traceback" not in result.stderr
