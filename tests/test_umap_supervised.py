"""Supervised and semi-supervised UMAP (issue #17): ``fit(X, y)`` uses ``y``.

The data: a 5-D standard Gaussian whose label is the quadrant of its first two
coordinates. Neighbours in the data mostly share a label (10-NN accuracy 0.86), but
an unsupervised 2-D layout of a round 5-D blob does not keep those two axes apart,
so kNN accuracy in it is far lower; a supervised layout separates the labels, and
held-out points placed by ``transform`` land in their label's region. Measured
(1,500 train / 500 held out, 100 epochs, seed 0): unsupervised 0.716, supervised 0.864,
half the labels -1 0.806, shuffled labels 0.624.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from embedscope import UMAP, DataError
from embedscope.kernels import affinity

N_TRAIN, N_TEST = 1000, 400


@pytest.fixture(scope="module")
def quadrants():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N_TRAIN + N_TEST, 5)).astype(np.float32)
    labels = (X[:, 0] > 0).astype(np.int64) + 2 * (X[:, 1] > 0).astype(np.int64)
    return X, labels


def _knn_accuracy(train_layout, train_labels, test_layout, test_labels, k=10):
    """Majority vote of the k nearest training points in the layout (no sklearn needed)."""
    d2 = ((test_layout[:, None, :] - train_layout[None, :, :]) ** 2).sum(-1)
    nearest = np.argsort(d2, axis=1)[:, :k]
    votes = np.apply_along_axis(np.bincount, 1, train_labels[nearest], minlength=4)
    return float((votes.argmax(axis=1) == test_labels).mean())


@pytest.fixture(scope="module")
def accuracies(quadrants):
    X, labels = quadrants
    Xtr, Xte, ytr, yte = X[:N_TRAIN], X[N_TRAIN:], labels[:N_TRAIN], labels[N_TRAIN:]
    rng = np.random.default_rng(1)
    targets = {
        "unsupervised": None,
        "supervised": ytr,
        "semi": np.where(rng.random(N_TRAIN) < 0.5, -1, ytr),
        "shuffled": rng.permutation(ytr),
    }
    out = {}
    for name, y in targets.items():
        model = UMAP(random_state=0, backend="cpu", n_epochs=60, init="pca").fit(Xtr, y)
        out[name] = _knn_accuracy(model.embedding_, ytr, model.transform(Xte), yte)
    return out


def test_supervised_raises_held_out_accuracy(accuracies):
    assert accuracies["supervised"] >= accuracies["unsupervised"] + 0.06, accuracies


def test_semi_supervised_sits_above_unsupervised(accuracies):
    assert accuracies["semi"] >= accuracies["unsupervised"] + 0.02, accuracies


def test_shuffled_labels_do_not_help(accuracies):
    # negative control: labels unrelated to the data must not raise the accuracy
    assert accuracies["shuffled"] <= accuracies["unsupervised"] + 0.02, accuracies


def test_categorical_intersection_scales_edges():
    graph = sp.csr_matrix(np.array([[0, 1, 1, 0.5], [1, 0, 0.5, 1], [1, 0.5, 0, 1], [0.5, 1, 1, 0]],
                                   dtype=np.float32))
    codes = np.array([0, 0, 1, -1])
    sparse_mixed = affinity.categorical_intersection(graph, codes, affinity.far_distance(0.5))
    mixed = sparse_mixed.toarray()
    assert mixed[0, 1] == pytest.approx(1.0)  # same label: unchanged
    assert mixed[0, 2] == pytest.approx(np.exp(-5.0))  # different labels: exp(-far_dist)
    assert mixed[1, 3] == pytest.approx(np.exp(-1.0))  # unlabelled end: exp(-1)
    reset = affinity.reset_local_connectivity(sparse_mixed).toarray()
    assert np.allclose(reset, reset.T)
    assert np.allclose(reset.max(axis=1), 1.0)


def test_target_weight_one_cuts_edges_between_labels(quadrants):
    X, labels = quadrants
    X, labels = X[:300], labels[:300]
    graph = UMAP(n_epochs=0, init="pca", random_state=0, backend="cpu", target_weight=1.0).fit(X, labels).graph_.tocoo()
    assert graph.nnz > 0
    assert np.all(labels[graph.row] == labels[graph.col])
    plain = UMAP(n_epochs=0, init="pca", random_state=0, backend="cpu").fit(X).graph_.tocoo()
    assert np.any(labels[plain.row] != labels[plain.col])  # control: the data graph has such edges


def test_string_labels_and_euclidean_targets(quadrants):
    X, labels = quadrants
    X, labels = X[:300], labels[:300]
    by_code = UMAP(n_epochs=0, init="pca", random_state=0, backend="cpu").fit(X, labels).graph_
    by_name = UMAP(n_epochs=0, init="pca", random_state=0, backend="cpu").fit(X, np.array(["a", "b", "c", "d"])[labels]).graph_
    assert abs(by_code - by_name).max() == 0
    cont = UMAP(n_epochs=0, init="pca", random_state=0, backend="cpu", target_metric="euclidean").fit(X, X[:, 0]).graph_
    plain = UMAP(n_epochs=0, init="pca", random_state=0, backend="cpu").fit(X).graph_
    assert abs(cont - cont.T).max() < 1e-6
    assert abs(cont - plain).max() > 0.1  # the target graph changed the weights


@pytest.mark.parametrize("y, match", [
    (np.zeros(5), "y has 5 rows, but X has 300"),
    (np.r_[np.nan, np.zeros(299)], "NaN"),
    (np.zeros((300, 2)), "1-D"),
])
def test_bad_y_is_refused_with_a_named_error(quadrants, y, match):
    X = quadrants[0][:300]
    with pytest.raises(DataError, match=match):
        UMAP(n_epochs=0, backend="cpu").fit(X, y)


@pytest.mark.parametrize("kwargs, match", [
    ({"target_weight": 1.5}, "target_weight"),
    ({"target_metric": "hamming"}, "target_metric"),
    ({"target_n_neighbors": 1}, "target_n_neighbors"),
])
def test_bad_target_parameters(quadrants, kwargs, match):
    X, labels = quadrants
    with pytest.raises(ValueError, match=match):
        UMAP(n_epochs=0, backend="cpu", **kwargs).fit(X[:300], labels[:300])


def test_a_backend_without_the_option_refuses_y():
    from embedscope.backends._registry import BackendSpec, Capabilities, Request

    spec = BackendSpec("fake", 0, lambda: None, Capabilities(reducers=frozenset({"umap"})), lambda: np)
    assert "supervised" in spec.refusal(Request("umap", umap_options=frozenset({"supervised"})))
    assert spec.refusal(Request("umap")) is None  # control
