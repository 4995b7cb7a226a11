"""Quality metrics: agreement with scikit-learn and sanity on known layouts."""

from __future__ import annotations

import numpy as np
import pytest

from embedscope import knn_accuracy, knn_recall, make_mixture, trustworthiness


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
    with pytest.raises(ValueError, match="unknown metric 'hamming'"):
        knn_recall(X, Y, 5, metric="hamming")
    with pytest.raises(ValueError, match="labels has"):
        knn_accuracy(Y, labels[:5], 5)
