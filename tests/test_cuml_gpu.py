"""The cuML adapters against real cuML on a GPU (``gpu`` mark; skipped without cuML).

tests/test_cuml_adapter.py checks the exact call against a stand-in; these check that
real cuML reads that call the way the adapter assumes (docs/gpu.md says how to carry
cuML onto the device machine). Small data: about a minute in all on one GPU.
"""

from __future__ import annotations

import importlib.util
import inspect

import numpy as np
import pytest
import scipy.sparse as sp

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(importlib.util.find_spec("cuml") is None, reason="cuml is not installed"),
]


def _cuml():
    from embedscope.backends import cuml as adapter
    from embedscope.backends import probe_cuml

    if not probe_cuml().ok:
        pytest.skip(probe_cuml().detail)
    return adapter


def _umap(**params):
    from embedscope.engine.umap import UMAP

    return UMAP(**params)


def _tsne(**params):
    from embedscope.engine.tsne import TSNE

    return TSNE(**params)


def _data(n=600, d=10, seed=0):
    from embedscope import make_mixture

    X, labels = make_mixture(n, d, 4, random_state=seed)
    return np.asarray(X, dtype=np.float32), labels


def _exact_knn(X, k):
    """Our convention: the k nearest other points (self excluded), ascending."""
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)
    return idx[:, 1:], dist[:, 1:].astype(np.float32)


def test_real_cuml_accepts_every_mapped_parameter():
    adapter = _cuml()
    from cuml.decomposition import PCA as CumlPCA
    from cuml.manifold import TSNE as CumlTSNE
    from cuml.manifold import UMAP as CumlUMAP

    from embedscope import PCA

    X, _ = _data(300, 5)
    accepted = set(inspect.signature(CumlTSNE).parameters)
    CumlPCA(**adapter.cuml_pca_params(PCA(3))).fit(X)
    CumlUMAP(**adapter.cuml_umap_params(_umap(n_epochs=20), len(X))).fit(X)
    CumlTSNE(**adapter.cuml_tsne_params(_tsne(n_iter=250), len(X), accepted)).fit(X)


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "manhattan", "chebyshev", "minkowski",
                                    "correlation", "hamming"])
def test_umap_metric_table_holds(metric):
    """Every metric the table maps runs in cuML's UMAP (brute force, dense)."""
    adapter = _cuml()
    from cuml.manifold import UMAP as CumlUMAP

    X, _ = _data(300, 5)
    if metric == "hamming":
        X = np.round(X).astype(np.float32)
    est = _umap(metric=metric, n_epochs=20)
    if metric == "minkowski":
        est.metric_kwds = {"p": 3.0}
    Y = CumlUMAP(output_type="numpy", **adapter.cuml_umap_params(est, len(X))).fit_transform(X)
    assert np.isfinite(Y).all()


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "manhattan", "chebyshev", "minkowski",
                                    "correlation"])
def test_tsne_metric_table_holds(metric):
    adapter = _cuml()
    from cuml.manifold import TSNE as CumlTSNE

    X, _ = _data(300, 5)
    est = _tsne(metric=metric, n_iter=250)
    if metric == "minkowski":
        est.metric_kwds = {"p": 3.0}
    accepted = set(inspect.signature(CumlTSNE).parameters)
    Y = CumlTSNE(output_type="numpy", **adapter.cuml_tsne_params(est, len(X), accepted)).fit_transform(X)
    assert np.isfinite(Y).all()


def test_refused_metrics_are_refused_by_cuml_too():
    """Negative control of the tables: dense jaccard (UMAP) and hamming (t-SNE) fail in cuML."""
    _cuml()
    from cuml.manifold import TSNE as CumlTSNE
    from cuml.manifold import UMAP as CumlUMAP

    X = (np.random.default_rng(0).random((200, 8)) > 0.5).astype(np.float32)
    with pytest.raises(Exception):  # noqa: B017 - NotImplementedError or ValueError by release
        CumlUMAP(metric="jaccard", build_algo="brute_force_knn", n_epochs=10).fit(X)
    with pytest.raises(Exception):  # noqa: B017
        CumlTSNE(metric="hamming", learning_rate_method="none").fit(X)


def test_precomputed_knn_with_the_self_column_is_cuml_s_own_graph():
    """Our graph (self excluded) passed through the adapter gives the fuzzy graph cuML
    builds from its own exact search; passed as it is, it does not (or 26.08+ raises)."""
    _cuml()
    from cuml.manifold import UMAP as CumlUMAP

    X, _ = _data(500, 8)
    k = 14
    idx, dist = _exact_knn(X, k)
    est = _umap(n_neighbors=k + 1, n_epochs=20, random_state=0, precomputed_knn=(idx, dist), backend="cuml")
    est.fit(X)
    own = CumlUMAP(n_neighbors=k + 1, n_epochs=20, random_state=0, build_algo="brute_force_knn").fit(X)
    ours, theirs = est.graph_, sp.csr_matrix(own.graph_)
    assert isinstance(ours, sp.csr_matrix)
    # cuML's search gives float32 "expanded" distances (self at ~1e-3, not 0), hence
    # the tolerance; a graph without its nearest neighbour is off by far more.
    assert np.abs(ours.toarray() - theirs.toarray()).max() < 0.02
    try:
        bare = CumlUMAP(n_neighbors=k + 1, n_epochs=20, random_state=0,
                        precomputed_knn=_exact_knn(X, k + 1)).fit(X)
    except ValueError:
        return  # 26.08+: a graph without self is an error
    assert np.abs(sp.csr_matrix(bare.graph_).toarray() - theirs.toarray()).max() > 0.1


def test_tsne_through_cuml_records_what_ran():
    adapter = _cuml()
    from embedscope import trustworthiness

    X, _ = _data(2000, 20)
    est = _tsne(n_iter=500, random_state=0, metric="cosine", backend="cuml")
    Y = est.fit_transform(X)
    model = est._cuml_model
    ee_iter, lr_ee, _, cuml_normal = adapter.tsne_rates(est, len(X))
    assert est.backend_ == "cuml" and est.n_iter_ == 500  # min_grad_norm=0: no early stop
    assert model.square_distances is False and model.learning_rate == pytest.approx(4 * lr_ee)
    # cuML's own learning_rate_ is its exaggeration-phase rate (24.x: the parameter).
    assert float(model.learning_rate_) == pytest.approx(4 * lr_ee)
    assert est.learning_rate_ == pytest.approx(cuml_normal) and ee_iter == 125
    assert trustworthiness(X, Y, 15, metric="cosine") > 0.9 and np.isfinite(est.kl_divergence_)


def test_umap_through_cuml_with_an_init_array():
    adapter = _cuml()
    version = adapter._cuml_version()
    if version is not None and version < adapter.UMAP_ARRAY_INIT:
        pytest.skip(f"cuML {version} has no UMAP init arrays")
    X, _ = _data(800, 10)
    init = np.random.default_rng(3).uniform(0, 10, (len(X), 2)).astype(np.float32)
    est = _umap(init=init, n_epochs=1, learning_rate=0.01, random_state=0, backend="cuml").fit(X)
    moved = np.corrcoef(est.embedding_[:, 0], init[:, 0])[0, 1]
    assert est.init_used_ == "array" and moved > 0.99
    control = _umap(init="random", n_epochs=1, learning_rate=0.01, random_state=0, backend="cuml").fit(X)
    assert abs(np.corrcoef(control.embedding_[:, 0], init[:, 0])[0, 1]) < 0.2


def test_supervised_umap_through_the_hook():
    adapter = _cuml()
    from sklearn.neighbors import KNeighborsClassifier

    from embedscope._progress import Progress
    from embedscope.backends import fitted_backend

    X = np.random.default_rng(0).standard_normal((900, 8)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 3, len(X))  # labels with no structure in X

    def label_accuracy(target):
        est = _umap(n_epochs=200, random_state=0)
        est._progress = Progress(False)
        est.target_metric, est.target_weight, est.target_n_neighbors = "categorical", 0.5, -1
        Y = np.asarray(adapter.fit_umap(est, X, fitted_backend("cuml"), y=target).get())
        return KNeighborsClassifier(10).fit(Y[::2], y[::2]).score(Y[1::2], y[1::2])

    assert label_accuracy(y) > 0.9 and label_accuracy(None) < 0.5
