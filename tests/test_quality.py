"""Per-point quality: neighbourhood preservation against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

import embedscope as es
from embedscope.engine.metrics import shared_neighbors


def _brute_knn(A: np.ndarray, k: int) -> np.ndarray:
    d = ((A[:, None, :].astype(np.float64) - A[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def _reference(X: np.ndarray, Y: np.ndarray, k: int) -> np.ndarray:
    high, low = _brute_knn(X, k), _brute_knn(Y, k)
    return np.array([len(set(h) & set(lo)) / k for h, lo in zip(high, low, strict=True)])


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 10, size=(600, 2))
    X = np.hstack([base, 0.05 * rng.normal(size=(600, 10))]).astype(np.float32)
    # A layout right on the left half of the sheet and scrambled on the right half.
    shake = np.where(base[:, :1] > 5, 2.0, 0.0)
    Y = (base + shake * rng.normal(size=(600, 2))).astype(np.float32)
    return X, Y


def test_matches_brute_force_and_knn_recall(pair):
    X, Y = pair
    q = es.neighborhood_preservation(X, Y, 10)
    assert q.shape == (600,) and q.dtype == np.float32
    np.testing.assert_allclose(q, _reference(X, Y, 10), atol=1e-6)
    assert float(q.astype(np.float64).mean()) == pytest.approx(es.knn_recall(X, Y, 10), abs=1e-6)
    # It says where: the kept half scores high, the scrambled half low.
    right = X[:, 0] > 5
    assert q[~right].mean() > 0.8 and q[right].mean() < 0.4


def test_identity_and_random_layouts_bound_it():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 2))
    assert (es.neighborhood_preservation(X, X * 3.0 + 1.0, 8) == 1).all()  # same geometry
    noise = rng.normal(size=(500, 2))
    random = es.neighborhood_preservation(X, noise, 8)
    # A random layout shares k / (n - 1) of the neighbours on average.
    assert random.mean() < 0.05


def test_a_given_graph_gives_the_same_answer_without_a_search(pair):
    X, Y = pair
    indices = _brute_knn(X, 12)
    distances = np.sort(np.sqrt(((X[:, None] - X[indices]) ** 2).sum(-1)), axis=1)
    given = es.neighborhood_preservation(None, Y, 10, knn=(indices, distances))
    np.testing.assert_allclose(given, es.neighborhood_preservation(X, Y, 10), atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        es.neighborhood_preservation(None, Y, 10, knn=(indices[:5], distances[:5]))
    with pytest.raises(ValueError, match="give X"):
        es.neighborhood_preservation(None, Y, 10)


def test_duplicate_layout_points_exclude_the_point_itself():
    # Ten copies of each of 30 points: the k-d tree may list a copy before the point.
    base = np.random.default_rng(2).normal(size=(30, 2))
    Y = np.repeat(base, 10, axis=0)
    q = es.neighborhood_preservation(Y, Y, 9)
    assert (q == 1).all()


def test_bad_input_is_one_line():
    X = np.zeros((10, 3))
    X[:, 0] = np.arange(10)
    with pytest.raises(ValueError, match="rows"):
        es.neighborhood_preservation(X, np.zeros((9, 2)), 3)
    with pytest.raises(ValueError, match="between 1 and 9"):
        es.neighborhood_preservation(X, X[:, :2], 10)
    with pytest.raises(ValueError, match="metric"):
        es.neighborhood_preservation(X, X[:, :2], 3, metric="nope")
    Y = X[:, :2].copy()
    Y[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN|finite"):
        es.neighborhood_preservation(X, Y, 3)


def test_shared_neighbors_ignores_missing_entries():
    a = np.array([[1, 2, 3], [4, -1, -1]])
    b = np.array([[3, 2, 9], [-1, 4, 7]])
    assert shared_neighbors(a, b).tolist() == [2, 1]


def test_cli_reduce_writes_a_quality_column(tmp_path, capsys):
    import pandas as pd

    from embedscope.cli import main

    out = tmp_path / "umap.parquet"
    assert main(["reduce", "builtin:mixture:600x10", "--method", "umap", "--param", "n_epochs=30",
                 "--random-state", "0", "--out", str(out), "--quality"]) == 0
    err = capsys.readouterr().err
    assert "quality@14 (from the fit's kNN graph)" in err  # no second search
    frame = pd.read_parquet(out)
    assert {"x", "y", "label", "quality"} <= set(frame.columns)
    assert frame["quality"].between(0, 1).all() and frame["quality"].std() > 0
    out = tmp_path / "pca.parquet"
    assert main(["reduce", "builtin:mixture:600x10", "--method", "pca", "--out", str(out),
                 "--quality", "--quality-k", "5", "--quiet"]) == 0
    assert (pd.read_parquet(out)["quality"] * 5).round(6).isin(range(6)).all()
    assert main(["reduce", "builtin:mixture:600x10", "--method", "pca", "--out", str(tmp_path / "c.npy"),
                 "--quality"]) == 2
    assert "--quality writes a column" in capsys.readouterr().err


def test_neighborhood_change_on_a_hand_made_pair():
    rng = np.random.default_rng(3)
    A = rng.uniform(0, 10, size=(400, 2))
    # B: A rotated, scaled and mirrored (same neighbourhoods), except 40 points swapped
    # around at random (their neighbourhoods change, and those of their old neighbours).
    theta = 0.7
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    B = (A @ rot.T) * np.array([-3.0, 3.0])
    moved = rng.choice(400, 40, replace=False)
    B[moved] = B[rng.permutation(moved)]
    change = es.neighborhood_change(A, B, 10)
    assert change.shape == (400,) and change.dtype == np.float32
    assert change.min() >= 0 and change.max() <= 1
    # Reference by sets.
    ha, hb = _brute_knn(A, 10), _brute_knn(B, 10)
    ref = [1 - len(set(a) & set(b)) / len(set(a) | set(b)) for a, b in zip(ha, hb, strict=True)]
    np.testing.assert_allclose(change, ref, atol=1e-6)
    assert change[moved].mean() > 0.8  # the swapped points moved most
    stayed = np.setdiff1d(np.arange(400), np.unique(np.concatenate([moved, ha[moved].ravel()])))
    assert np.median(change[stayed]) == 0.0
    assert (es.neighborhood_change(A, A * 2 + 1, 10) == 0).all()
    with pytest.raises(ValueError, match="same items"):
        es.neighborhood_change(A, B[:10], 5)


def test_other_metrics_and_a_distance_matrix(pair):
    from scipy.spatial.distance import cdist

    X, Y = pair
    manhattan = es.neighborhood_preservation(X, Y, 10, metric="manhattan")
    D = cdist(X, X, "cityblock")
    np.testing.assert_array_equal(manhattan, es.neighborhood_preservation(D, Y, 10, metric="precomputed"))
    minkowski = es.neighborhood_preservation(X, Y, 10, metric="minkowski", metric_kwds={"p": 1})
    np.testing.assert_array_equal(minkowski, manhattan)
    with pytest.raises(ValueError, match="square"):
        es.neighborhood_preservation(X, Y, 10, metric="precomputed")
