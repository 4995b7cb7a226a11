"""Every kNN metric against scipy / scikit-learn, on every CPU search path and reducer.

Distances and neighbour sets of the exact search and NN-descent are checked against
``scipy.spatial.distance.cdist`` (scikit-learn's ``pairwise_distances`` for the dense
helper); ``metric="precomputed"`` against the vector metric it was computed with.
Each check has a negative control: the same check against a different metric fails.
The GPU twin is checked in the CUDA simulator (tests/cudasim/knn_check.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from embedscope import TSNE, UMAP
from embedscope.backends import _registry
from embedscope.datasets import make_mixture
from embedscope.engine import stages
from embedscope.engine.metrics import knn_recall, random_triplet_accuracy, trustworthiness
from embedscope.errors import DataError
from embedscope.kernels.knn import (
    METRICS,
    check_metric,
    exact_knn,
    nearest_neighbors,
    nndescent_knn,
)
from embedscope.kernels.knn.exact import pairwise_distances, precomputed_knn
from embedscope.kernels.knn.ivf import ivf_knn

#: (our name, metric_kwds, scipy's name, scipy's keywords, binary data)
CASES = [
    ("manhattan", None, "cityblock", {}, False),
    ("chebyshev", None, "chebyshev", {}, False),
    ("minkowski", {"p": 3}, "minkowski", {"p": 3}, False),
    ("minkowski", {"p": 1.5}, "minkowski", {"p": 1.5}, False),
    ("correlation", None, "correlation", {}, False),
    ("hamming", None, "hamming", {}, True),
    ("jaccard", None, "jaccard", {}, True),
]
IDS = [f"{c[0]}-{c[1]['p']}" if c[1] else c[0] for c in CASES]


def _data(binary: bool, n: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if binary:
        B = rng.random((n, 24)) < 0.3
        B[7] = B[8]  # a duplicate pair (distance 0)
        return B
    return rng.normal(size=(n, 12)).astype(np.float32)


def _reference(data: np.ndarray, scipy_name: str, scipy_kwds: dict, queries=None) -> np.ndarray:
    A = data if data.dtype == bool else data.astype(np.float64)
    Q = A if queries is None else (queries if queries.dtype == bool else queries.astype(np.float64))
    D = cdist(Q, A, scipy_name, **scipy_kwds)
    if queries is None:
        np.fill_diagonal(D, np.inf)
    return D


def _check_knn(idx, dist, D, k, *, atol=1e-5):
    """Distances sorted and equal to the true k smallest; each found neighbour really
    at the reported distance; every point strictly closer than the k-th is found
    (tie-aware: binary metrics have many equal distances)."""
    truth = np.sort(D, axis=1)[:, :k]
    np.testing.assert_allclose(dist, truth, rtol=1e-5, atol=atol)
    np.testing.assert_allclose(np.take_along_axis(D, idx.astype(np.int64), axis=1), dist, rtol=1e-5, atol=atol)
    for r in range(D.shape[0]):
        closer = set(np.flatnonzero(D[r] < truth[r, -1] - atol))
        assert closer <= set(idx[r].tolist()), r


@pytest.mark.parametrize("name, kwds, scipy_name, scipy_kwds, binary", CASES, ids=IDS)
def test_exact_knn_matches_scipy(name, kwds, scipy_name, scipy_kwds, binary):
    X = _data(binary)
    idx, dist = exact_knn(X, 7, name, metric_kwds=kwds)
    assert idx.dtype == np.int32 and dist.dtype == np.float32
    assert np.all(np.diff(dist, axis=1) >= 0) and not np.any(idx == np.arange(len(X))[:, None])
    _check_knn(idx, dist, _reference(X, scipy_name, scipy_kwds), 7)
    # queries against the data (transform's search)
    Q = _data(binary, 20, seed=1)
    qi, qd = exact_knn(X, 5, name, queries=Q, metric_kwds=kwds)
    _check_knn(qi, qd, _reference(X, scipy_name, scipy_kwds, Q), 5)
    # dense helper (trustworthiness' blocks) against scikit-learn
    from sklearn.metrics import pairwise_distances as sk_pairwise

    ref = sk_pairwise(X if binary else X.astype(np.float64), metric=scipy_name, **scipy_kwds)
    np.testing.assert_allclose(pairwise_distances(X, None, name, kwds), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, kwds, other", [("manhattan", None, "euclidean"),
                                               ("minkowski", {"p": 3}, "minkowski"),
                                               ("correlation", None, "cosine")])
def test_exact_knn_negative_control(name, kwds, other):
    """The check above fails against a different metric (or another p)."""
    X = _data(False)
    X[:, 0] += 3.0  # uncentred rows: correlation and cosine differ
    idx, dist = exact_knn(X, 7, name, metric_kwds=kwds)
    wrong = cdist(X.astype(np.float64), X.astype(np.float64), other, **({"p": 2} if other == "minkowski" else {}))
    np.fill_diagonal(wrong, np.inf)
    with pytest.raises(AssertionError):
        _check_knn(idx, dist, wrong, 7)


@pytest.mark.parametrize("name, kwds, scipy_name, scipy_kwds, binary", CASES[:1] + CASES[2:3] + CASES[4:], ids=[
    IDS[0], IDS[2], *IDS[4:]])
def test_nndescent_matches_exact(name, kwds, scipy_name, scipy_kwds, binary):
    if binary:
        base = _data(True, 150)
        rng = np.random.default_rng(3)
        X = np.vstack([base ^ (rng.random(base.shape) < 0.05) for _ in range(10)])  # 10 noisy copies: clusters
    else:
        X, _ = make_mixture(1500, 16, 10, random_state=1)
    k = 10
    _, truth_d = exact_knn(X, k, name, metric_kwds=kwds)
    idx, dist = nndescent_knn(X, k, name, random_state=0, metric_kwds=kwds)
    assert idx.shape == (len(X), k) and not np.any(idx == np.arange(len(X))[:, None])
    # tie-aware recall: rows whose k-th distance is the true k-th one
    rows_ok = np.mean(dist[:, -1] <= truth_d[:, -1] + 1e-6)
    assert rows_ok >= 0.9, rows_ok
    # the distances reported are the true ones
    A = X if binary else X.astype(np.float64)
    sub = cdist(A[:50], A, scipy_name, **scipy_kwds)
    np.testing.assert_allclose(dist[:50], np.take_along_axis(sub, idx[:50].astype(np.int64), axis=1),
                               rtol=1e-5, atol=1e-6)
    # the router's "auto" gives the same as exact below its threshold
    _, auto_d = nearest_neighbors(X, k, name, metric_kwds=kwds)
    np.testing.assert_allclose(auto_d, truth_d)


def test_registry_names_aliases_and_kwds():
    assert set(METRICS) == set(_registry.ALL_METRICS)
    for alias, name in [("l1", "manhattan"), ("cityblock", "manhattan"), ("taxicab", "manhattan"),
                        ("linf", "chebyshev"), ("L1", "manhattan"), ("l2", "euclidean")]:
        assert check_metric(alias) == name
    with pytest.raises(ValueError, match="precomputed"):
        check_metric("precomputed")
    assert stages.resolve_metric("precomputed") == ("precomputed", {})
    assert stages.resolve_metric("minkowski") == ("minkowski", {"p": 2.0})
    assert stages.resolve_metric("minkowski", {"p": 3}) == ("minkowski", {"p": 3.0})
    for metric, kwds, match in [("minkowski", {"p": 0.5}, "p"), ("minkowski", {"p": True}, "p"),
                                ("minkowski", {"p": float("inf")}, "chebyshev"),
                                ("minkowski", {"q": 2}, "takes only 'p'"),
                                ("manhattan", {"p": 2}, "takes no parameters"),
                                ("euclidean", [("p", 2)], "dict"), ("manhatan", None, "unknown metric")]:
        with pytest.raises(ValueError, match=match):
            stages.resolve_metric(metric, kwds)
    with pytest.raises(ValueError, match="custom metric"):
        stages.resolve_metric(lambda a, b: 0.0)


def test_jaccard_needs_binary_data_and_takes_booleans():
    X = _data(True)
    a = exact_knn(X, 5, "jaccard")
    b = exact_knn(X.astype(np.float32), 5, "jaccard")
    np.testing.assert_array_equal(a[0], b[0])
    with pytest.raises(ValueError, match="binary"):
        exact_knn(_data(False), 5, "jaccard")
    with pytest.raises(DataError, match="binary"):
        UMAP(metric="jaccard").fit(_data(False))
    hamming_on_floats = exact_knn(_data(False), 3, "hamming")[1]  # hamming takes any values
    assert np.all(hamming_on_floats == 1.0)  # continuous rows differ everywhere


def test_unsupported_metric_is_refused_with_the_supported_list():
    spec = _registry.BackendSpec(name="tiny", priority=0, probe=_registry.probe_cpu,
                                 capabilities=_registry.Capabilities(reducers=frozenset({"umap"}),
                                                                     metrics=frozenset({"euclidean", "cosine"})),
                                 array_module=lambda: np)
    why = spec.refusal(_registry.Request("umap", metric="manhattan"))
    assert why is not None and "no metric='manhattan'" in why and "supports cosine, euclidean" in why
    assert spec.refusal(_registry.Request("umap", metric="cosine")) is None  # control
    with pytest.raises(ValueError, match=r"IVF search has no metric='manhattan'.*euclidean"):
        ivf_knn(_data(False), 5, "manhattan")


def test_precomputed_matrix_matches_the_vector_metric():
    X, _ = make_mixture(400, 10, 4, random_state=0)
    D = cdist(X.astype(np.float64), X.astype(np.float64), "cityblock")
    pi, pd_ = precomputed_knn(D, 9)
    vi, vd = exact_knn(X, 9, "manhattan")
    np.testing.assert_allclose(pd_, vd, rtol=1e-5)
    assert np.mean([len(set(a) & set(b)) for a, b in zip(pi, vi, strict=True)]) > 8.9
    kwargs = dict(n_neighbors=10, n_epochs=30, random_state=0, backend="cpu")
    given = UMAP(metric="precomputed", **kwargs).fit(D)
    searched = UMAP(metric="l1", **kwargs).fit(X)
    np.testing.assert_allclose(given.knn_distances_, searched.knn_distances_, rtol=1e-5)
    assert given.pca_ is None and given.embedding_.shape == (400, 2)
    with pytest.raises(ValueError, match=r"precomputed.*cannot place new points"):
        given.transform(D[:3])
    with pytest.raises(ValueError, match="n x n"):
        UMAP(metric="precomputed", **kwargs).fit(X)  # vectors are not a distance matrix
    t = TSNE(metric="precomputed", n_iter=250, random_state=0, backend="cpu").fit(D)
    assert np.isfinite(t.kl_divergence_)
    with pytest.raises(ValueError, match="cannot place new points"):
        t.transform(D[:3])
    # the quality measures read the matrix as they would compute it
    Y = searched.embedding_
    assert trustworthiness(D, Y, 10, metric="precomputed") == pytest.approx(
        trustworthiness(X, Y, 10, metric="manhattan"), abs=1e-12)
    assert knn_recall(D, Y, 10, metric="precomputed") == knn_recall(X, Y, 10, metric="cityblock")
    assert random_triplet_accuracy(D, Y, metric="precomputed", n_triplets=3000) == pytest.approx(
        random_triplet_accuracy(X, Y, metric="manhattan", n_triplets=3000))
    # negative control: the euclidean view of the same points is a different measure
    assert trustworthiness(X, Y, 10, metric="euclidean") != trustworthiness(D, Y, 10, metric="precomputed")


@pytest.mark.parametrize("change, match", [
    (lambda D: D[:, :-1], "square"),
    (lambda D: D - 1.0, ">= 0"),
    (lambda D: D + np.eye(len(D)), "diagonal"),
    (lambda D: D + np.triu(np.ones_like(D), 1), "symmetric"),
])
def test_bad_distance_matrices_are_refused(change, match):
    X = np.random.default_rng(0).normal(size=(30, 3))
    D = cdist(X, X)
    with pytest.raises(DataError, match=match):
        stages.check_distance_matrix(change(D))
    assert stages.check_distance_matrix(D) is None  # control
    assert "are 0" in stages.check_distance_matrix(np.zeros((5, 5)))


def test_trustworthiness_matches_sklearn_for_the_new_metrics():
    from sklearn.manifold import trustworthiness as sk_trust

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 8))
    Y = X[:, :2] + 0.3 * rng.normal(size=(200, 2))
    for name, kwds, scipy_name, scipy_kwds, _ in CASES[:5]:
        ref = sk_trust(cdist(X, X, scipy_name, **scipy_kwds), Y, n_neighbors=7, metric="precomputed")
        assert trustworthiness(X, Y, 7, metric=name, metric_kwds=kwds) == pytest.approx(ref, abs=1e-9), name
    assert trustworthiness(X, Y, 7, metric="chebyshev") != pytest.approx(
        trustworthiness(X, Y, 7, metric="manhattan"), abs=1e-6)  # control: the metric matters


def test_pca_is_skipped_for_metrics_it_distorts_and_kept_for_the_others():
    X = np.random.default_rng(0).normal(size=(300, 120)).astype(np.float32)
    lines: list[str] = []
    kept = stages.Preparation("manhattan", 50, seed=0, backend="cpu", log=lines.append)
    assert kept.fit_transform(X).shape == (300, 120) and kept.pca is None
    assert any("PCA would change manhattan distances" in line for line in lines)
    for metric in ("euclidean", "cosine", "correlation"):
        prep = stages.Preparation(metric, 50, seed=0, backend="cpu")
        assert prep.fit_transform(X).shape == (300, 50) and prep.pca is not None
    assert prep.search_metric == "cosine"  # correlation rows are centred, then searched as cosine
    assert stages.Preparation("correlation", None, seed=0, backend="cpu").search_metric == "correlation"
    umap = UMAP(metric="chebyshev", n_epochs=10, random_state=0, backend="cpu").fit(X)
    assert umap.pca_ is None and umap.transform(X[:4]).shape == (4, 2)


def test_reducers_take_metric_kwds_and_refuse_bad_ones():
    X, _ = make_mixture(300, 8, 3, random_state=0)
    u3 = UMAP(metric="minkowski", metric_kwds={"p": 3}, n_epochs=10, random_state=0, backend="cpu").fit(X)
    _check_knn(u3.knn_indices_, u3.knn_distances_, _reference(X, "minkowski", {"p": 3}), 14, atol=1e-4)
    assert "metric_kwds" in UMAP().get_params() and "metric_kwds" in TSNE().get_params()
    with pytest.raises(ValueError, match="takes no parameters"):
        UMAP(metric="euclidean", metric_kwds={"p": 3}).fit(X)
    with pytest.raises(ValueError, match=">= 1"):
        TSNE(metric="minkowski", metric_kwds={"p": 0.5}).fit(X)
    Y = TSNE(metric="taxicab", n_iter=250, random_state=0, backend="cpu").fit_transform(X)
    assert Y.shape == (300, 2) and np.isfinite(Y).all()


def test_correlation_degenerate_rows_are_refused():
    X = np.tile(np.arange(6.0), (10, 1)) * np.arange(1, 11)[:, None]  # every row a multiple of one
    with pytest.raises(DataError, match="correlation"):
        UMAP(metric="correlation", n_neighbors=5).fit(X + 5.0)  # shifts too: correlation ignores both
    UMAP(metric="euclidean", n_neighbors=5, n_epochs=5, backend="cpu").fit(X)  # control
