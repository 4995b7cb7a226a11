"""Quality metrics: agreement with scikit-learn and sanity on known layouts."""

from __future__ import annotations

import numpy as np
import pytest

import embedscope
from embedscope import (
    knn_accuracy,
    knn_recall,
    make_mixture,
    random_triplet_accuracy,
    trustworthiness,
)
from embedscope.engine.metrics import _triplets


@pytest.fixture(scope="module")
def clusters():
    X, labels = make_mixture(1200, 30, 8, random_state=5)
    noise = np.random.default_rng(1).standard_normal((1200, 2))
    return X, labels, X[:, :2] + noise


@pytest.mark.parametrize("k", [5, 15])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_trustworthiness_matches_sklearn(clusters, k, metric):
    manifold = pytest.importorskip("sklearn.manifold")
    X, _, Y = clusters
    ours = trustworthiness(X, Y, k, metric=metric)
    ref = manifold.trustworthiness(X, Y, n_neighbors=k, metric=metric)
    assert ours == pytest.approx(ref, abs=1e-4)


def test_trustworthiness_bounds(clusters):
    X, _, Y = clusters
    assert trustworthiness(X, X, 10) == pytest.approx(1.0)
    shuffled = np.random.default_rng(0).permutation(Y)
    assert trustworthiness(X, shuffled, 10) < 0.6 < trustworthiness(X, Y, 10)


def test_recall_identity_and_random(clusters):
    X, _, _Y = clusters
    assert knn_recall(X, X, 10) == 1.0
    random_layout = np.random.default_rng(0).standard_normal((len(X), 2))
    assert knn_recall(X, random_layout, 10) < 0.05


def test_knn_accuracy_good_and_negative_control(clusters):
    X, labels, _ = clusters
    assert knn_accuracy(X, labels, 15) > 0.99
    random_layout = np.random.default_rng(0).standard_normal((len(X), 2))
    assert knn_accuracy(random_layout, labels, 15) < 0.4
    assert knn_accuracy(X, labels.astype(str), 15) == knn_accuracy(X, labels, 15)


def test_subsample_is_seeded_and_close_to_full():
    X, _labels = make_mixture(4000, 20, 10, random_state=2)
    Y = X[:, :2].copy()
    full = trustworthiness(X, Y, 10, sample_size=None)
    a = trustworthiness(X, Y, 10, sample_size=1500, random_state=7)
    assert a == trustworthiness(X, Y, 10, sample_size=1500, random_state=7)
    assert abs(a - full) < 0.05
    assert 0 <= knn_recall(X, Y, 10, sample_size=1500) <= 1


def test_metric_errors(clusters):
    X, labels, Y = clusters
    with pytest.raises(ValueError, match="rows"):
        trustworthiness(X, Y[:-1], 5)
    with pytest.raises(ValueError, match="n_neighbors"):
        trustworthiness(X, Y, 0)
    with pytest.raises(ValueError, match="unknown metric 'haming'"):
        knn_recall(X, Y, 5, metric="haming")
    with pytest.raises(ValueError, match="labels has"):
        knn_accuracy(Y, labels[:5], 5)


# ----------------------------------------------------------------------------- random triplet accuracy


def _brute_triplet_accuracy(DX: np.ndarray, DY: np.ndarray, triplets: np.ndarray) -> float:
    """The definition on full distance matrices: ties in X left out, ties in Y half kept."""
    i, j, k = triplets
    sx, sy = np.sign(DX[i, j] - DX[i, k]), np.sign(DY[i, j] - DY[i, k])
    ordered = sx != 0
    return float((((sx == sy) & ordered).sum() + 0.5 * ((sy == 0) & ordered).sum()) / ordered.sum())


def test_triplet_accuracy_is_exported_lazily():
    assert "random_triplet_accuracy" in embedscope.__all__ and "random_triplet_accuracy" in dir(embedscope)
    assert embedscope.random_triplet_accuracy is random_triplet_accuracy


def test_triplets_are_distinct_uniform_and_seeded():
    n, m = 5, 60_000
    t = _triplets(n, m, 3)
    assert t.shape == (3, m) and t.dtype == np.int64
    assert ((t[0] != t[1]) & (t[0] != t[2]) & (t[1] != t[2])).all()
    # All 5 * 4 * 3 = 60 ordered triplets, each about m / 60 = 1000 times (sd ~31).
    counts = np.unique(t[0] * n * n + t[1] * n + t[2], return_counts=True)[1]
    assert counts.size == 60 and np.abs(counts - m / 60).max() < 200
    np.testing.assert_array_equal(t, _triplets(n, m, 3))
    assert (t != _triplets(n, m, 4)).any()


def test_triplet_accuracy_is_one_for_isometries_and_scaling():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((800, 12))
    rotation, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    assert random_triplet_accuracy(X, X) == 1.0
    assert random_triplet_accuracy(X, 3.7 * X @ rotation + 5.0) == 1.0
    # PCA to full rank is a rotation of the centred data.
    Xc = X - X.mean(axis=0)
    _, _, vt = np.linalg.svd(Xc, full_matrices=False)
    assert random_triplet_accuracy(X, Xc @ vt.T) == 1.0
    # float32 rows of a million points, twice the size: exact, and only the triplets' rows are read.
    big = rng.standard_normal((1_000_000, 3), dtype=np.float32)
    assert random_triplet_accuracy(big, 2 * big, n_triplets=10_000) == 1.0


def test_triplet_accuracy_random_layout_is_chance():
    """Negative control: a layout independent of X keeps each order with probability 1/2."""
    X, _ = make_mixture(2000, 20, 8, random_state=1)
    m = 20_000
    # Six standard deviations: m triplets add 0.25 / m to the variance (fair coins), the one
    # random layout of n points about 0.01 / n (sd 0.0043 measured over 40 layouts here).
    tolerance = 6 * np.sqrt(0.25 / m + 0.01 / len(X))
    random_layout = np.random.default_rng(2).standard_normal((len(X), 2))
    assert abs(random_triplet_accuracy(X, random_layout, n_triplets=m) - 0.5) < tolerance
    # A collapsed layout ties every pair: half credit each, exactly chance.
    assert random_triplet_accuracy(X, np.zeros((len(X), 2)), n_triplets=m) == 0.5


def test_triplet_accuracy_pca_keeps_global_structure():
    """Points along a line in 10-D: PCA-2 keeps the order of distances along it."""
    rng = np.random.default_rng(3)
    direction = rng.standard_normal(10)
    direction /= np.linalg.norm(direction)
    t = rng.uniform(-10, 10, size=3000)
    X = t[:, None] * direction + 0.3 * rng.standard_normal((3000, 10))
    Y = embedscope.PCA(n_components=2, random_state=0).fit_transform(X)
    good = random_triplet_accuracy(X, Y)
    assert good > 0.9
    # Swapping the two halves of the line keeps local neighbourhoods and breaks the global order.
    torn = Y.copy()
    torn[:, 0] = np.where(Y[:, 0] > 0, Y[:, 0] - 20, Y[:, 0] + 20)
    assert random_triplet_accuracy(X, torn) < good - 0.1


def test_triplet_accuracy_is_seeded():
    X, _ = make_mixture(1500, 10, 6, random_state=4)
    Y = X[:, :2] + np.random.default_rng(5).standard_normal((1500, 2))
    a = random_triplet_accuracy(X, Y, n_triplets=5000, random_state=11)
    assert isinstance(a, float) and 0.5 < a < 1.0
    assert a == random_triplet_accuracy(X, Y, n_triplets=5000, random_state=11)
    assert a != random_triplet_accuracy(X, Y, n_triplets=5000, random_state=12)


def _pairwise(A: np.ndarray, metric: str) -> np.ndarray:
    """Full distance matrix, one pair at a time by broadcasting (no BLAS blocking), so
    identical rows give bit-identical distances and the ties below are exact."""
    if metric == "euclidean":
        return np.sqrt(((A[:, None, :] - A[None, :, :]) ** 2).sum(axis=2))
    if metric == "inner_product":
        return -(A[:, None, :] * A[None, :, :]).sum(axis=2)
    norms = np.linalg.norm(A, axis=1, keepdims=True)
    U = A / np.where(norms > 0, norms, 1.0)
    return 1.0 - (U[:, None, :] * U[None, :, :]).sum(axis=2)


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "inner_product"])
def test_triplet_accuracy_matches_brute_force(metric):
    rng = np.random.default_rng(6)
    X = rng.standard_normal((60, 8))
    X[1] = 2.0 * X[0]  # the same direction (scaled exactly): cosine ties, left out
    X[2] = X[3]  # duplicate rows: ties in every metric
    X[4] = 0.0  # cosine: at distance 1 from everything, so every triplet it anchors is tied
    Y = rng.standard_normal((60, 2))
    Y[5] = Y[6]  # ties in the layout: half kept
    DX = _pairwise(X, metric)
    if metric != "inner_product":  # the brute force is the metric scikit-learn means
        pairwise = pytest.importorskip("sklearn.metrics.pairwise")
        off_diagonal = ~np.eye(60, dtype=bool)  # triplets never pair a point with itself
        np.testing.assert_allclose(DX[off_diagonal], pairwise.pairwise_distances(X, metric=metric)[off_diagonal],
                                   atol=1e-7)
    triplets = _triplets(60, 20_000, 7)
    assert (DX[triplets[0], triplets[1]] == DX[triplets[0], triplets[2]]).any()  # ties in X were drawn
    expected = _brute_triplet_accuracy(DX, _pairwise(Y, "euclidean"), triplets)
    ours = random_triplet_accuracy(X, Y, n_triplets=20_000, metric=metric, random_state=7)
    assert ours == pytest.approx(expected, abs=1e-12)


def test_triplet_accuracy_refuses_bad_input():
    X, _ = make_mixture(100, 5, 3, random_state=0)
    Y = X[:, :2].copy()
    with pytest.raises(ValueError, match="100 rows but the embedding has 99"):
        random_triplet_accuracy(X, Y[:-1])
    with pytest.raises(ValueError, match="at least 3"):
        random_triplet_accuracy(X[:2], Y[:2])
    for bad in (0, -5, 2.5, True, "10"):
        with pytest.raises(ValueError, match="n_triplets must be a positive integer"):
            random_triplet_accuracy(X, Y, n_triplets=bad)
    with pytest.raises(ValueError, match="unknown metric 'haming'"):
        random_triplet_accuracy(X, Y, metric="haming")
    with pytest.raises(ValueError, match="2-D"):
        random_triplet_accuracy(X[:, 0], Y)
    Xn = X.copy()
    Xn[7, 1] = np.nan
    with pytest.raises(ValueError, match=r"X has 1 row\(s\) with NaN or inf values \(rows 7\)"):
        random_triplet_accuracy(Xn, Y)
    Yi = Y.copy()
    Yi[3, 0] = np.inf
    with pytest.raises(ValueError, match="embedding has 1 row"):
        random_triplet_accuracy(X, Yi)
    with pytest.raises(ValueError, match="tied in X"):
        random_triplet_accuracy(np.ones((50, 4)), Y[:50])


@pytest.mark.gpu
def test_triplet_accuracy_on_the_device_matches_the_host():
    cupy = pytest.importorskip("cupy")
    X, _ = make_mixture(5000, 30, 8, random_state=8)
    Y = X[:, :2] + np.random.default_rng(9).standard_normal((5000, 2)).astype(X.dtype)
    for metric in ("euclidean", "cosine", "inner_product"):
        host = random_triplet_accuracy(X, Y, metric=metric, random_state=3)
        device = random_triplet_accuracy(cupy.asarray(X), cupy.asarray(Y), metric=metric, random_state=3)
        # The same triplets on both; only a float64 rounding at an exact near-tie could differ.
        assert type(device) is float and device == pytest.approx(host, abs=1e-4)
        mixed = random_triplet_accuracy(X, cupy.asarray(Y), metric=metric, random_state=3)
        assert mixed == pytest.approx(host, abs=1e-4)
