"""cuML adapters: each parameter reaches cuML with our meaning; what cuML cannot do is refused.

Without cuML the classes are stand-ins that record the exact call (keyword arguments,
the arrays passed, ``fit_transform``'s arguments) and behave as the cuML release they
stand for does where the adapter depends on it (read in cuML's source: the self column
of a precomputed graph, ``graph_`` as COO, ``n_iter_``, 24.x's post-exaggeration rate
attribute). tests/test_cuml_gpu.py runs the same adapters against real cuML.
"""

from __future__ import annotations

import contextlib
import sys
import types
from typing import ClassVar

import numpy as np
import pytest
import scipy.sparse as sp

from embedscope import PCA, Unsupported
from embedscope.backends import Request, get_spec
from embedscope.backends import _registry as dispatch
from embedscope.backends import cuml as cuml_adapter


class _Recorder:
    """A cuML estimator stand-in: records its keyword arguments."""

    calls: ClassVar[list[dict]] = []

    def __init__(self, **kwargs):
        type(self).calls.append(kwargs)
        self.kwargs = kwargs


class _FakePCA(_Recorder):
    calls: ClassVar[list[dict]] = []

    def fit(self, X):
        from sklearn.decomposition import PCA as SkPCA

        ref = SkPCA(self.kwargs.get("n_components"), whiten=self.kwargs["whiten"]).fit(X)
        for name in ("components_", "explained_variance_", "explained_variance_ratio_",
                     "singular_values_", "mean_", "noise_variance_", "n_components_"):
            setattr(self, name, getattr(ref, name))
        self.svd_solver = self.kwargs["svd_solver"]
        return self

    def transform(self, X):
        return (X - self.mean_) @ self.components_.T


#: The fuzzy graph the UMAP stand-in "builds": COO with a duplicate entry (cuML's host
#: COO may hold them), so the adapter's CSR must sum it.
_COO = sp.coo_matrix((np.array([0.5, 0.25, 0.25, 1.0], dtype=np.float32),
                      (np.array([0, 1, 1, 2]), np.array([1, 0, 0, 2]))), shape=(3, 3))


class _FakeUMAP(_Recorder):
    """Stands in for cuml.manifold.UMAP (26.08+): the first columns are the "embedding".

    Like 26.08+, a precomputed graph without the point itself in column 0 raises.
    """

    calls: ClassVar[list[dict]] = []
    fits: ClassVar[list[tuple]] = []
    legacy_graph = False

    def fit_transform(self, X, y=None):
        type(self).fits.append((X, y))
        knn = self.kwargs.get("precomputed_knn")
        if knn is not None and not np.array_equal(knn[0][:, 0], np.arange(len(X))):
            raise ValueError("Expected indices and distances to include self references")
        self.graph_ = _CupyxLike(_COO) if self.legacy_graph else _COO.copy()
        return np.asarray(X)[:, : self.kwargs["n_components"]].astype(np.float64)

    def transform(self, X):
        return np.asarray(X)[:, : self.kwargs["n_components"]] + 1.0


class _CupyxLike:
    """A device sparse matrix as older cuML releases returned ``graph_``: ``.get()`` copies it."""

    def __init__(self, host):
        self._host = host

    def get(self):
        return self._host


class _FakeTSNE(_Recorder):
    """Stands in for cuml.manifold.TSNE 26.02+ (``max_iter``; ``n_iter_`` counts what ran)."""

    calls: ClassVar[list[dict]] = []
    stopped_early_by = 3  # a count of its own, so the test sees which number is recorded

    def __init__(self, *, max_iter: int = 1000, **kwargs):
        super().__init__(max_iter=max_iter, **kwargs)

    def fit_transform(self, X):
        self.kl_divergence_ = 1.25
        self.n_iter_ = self.kwargs["max_iter"] - self.stopped_early_by
        return np.asarray(X)[:, :2].astype(np.float64)


class _FakeTSNE24(_Recorder):
    """cuml.manifold.TSNE as in 24.x: ``n_iter``, rates kept as attributes, ``n_iter_`` = request."""

    calls: ClassVar[list[dict]] = []
    at_fit: ClassVar[list[float]] = []

    def __init__(self, *, n_iter: int = 1000, learning_rate: float = 200.0, **kwargs):
        super().__init__(n_iter=n_iter, learning_rate=learning_rate, **kwargs)
        self.pre_learning_rate = learning_rate
        self.post_learning_rate = learning_rate * 2

    @property
    def n_iter_(self):
        return self.kwargs["n_iter"]

    def fit_transform(self, X):
        type(self).at_fit.append(self.post_learning_rate)
        self.kl_divergence_ = 1.5
        return np.asarray(X)[:, :2].astype(np.float64)


@pytest.fixture
def fake_cuml(monkeypatch):
    """Installs a fake ``cuml`` 26.08 package and makes the cuml backend resolvable on numpy."""
    pytest.importorskip("sklearn")
    cuml = types.ModuleType("cuml")
    cuml.__version__ = "26.08.00"
    decomposition = types.ModuleType("cuml.decomposition")
    decomposition.PCA = _FakePCA
    cuml.decomposition = decomposition
    manifold = types.ModuleType("cuml.manifold")
    manifold.UMAP = _FakeUMAP
    manifold.TSNE = _FakeTSNE
    cuml.manifold = manifold
    monkeypatch.setitem(sys.modules, "cuml", cuml)
    monkeypatch.setitem(sys.modules, "cuml.decomposition", decomposition)
    monkeypatch.setitem(sys.modules, "cuml.manifold", manifold)
    monkeypatch.setattr(dispatch, "probe_cuml", lambda: dispatch._Probe(True, "fake cuml"))
    monkeypatch.setattr(dispatch, "device_xp", lambda: np)
    monkeypatch.setattr(_FakeUMAP, "legacy_graph", False)
    for fake in (_FakePCA, _FakeUMAP, _FakeTSNE, _FakeTSNE24):
        fake.calls.clear()
    _FakeUMAP.fits.clear()
    _FakeTSNE24.at_fit.clear()
    return cuml


class _Log:
    """The estimator's progress as the adapter uses it: lines and stages, recorded."""

    def __init__(self):
        self.lines: list[str] = []

    def log(self, message):
        self.lines.append(message)

    @contextlib.contextmanager
    def stage(self, name, detail=""):
        self.lines.append(f"{name} ... {detail}")
        yield


def _umap(**params):
    module = pytest.importorskip("embedscope.engine.umap")
    return module.UMAP(**params)


def _tsne(**params):
    module = pytest.importorskip("embedscope.engine.tsne")
    return module.TSNE(**params)


def _graph(n, k, seed=0, with_self=False):
    """An exact kNN graph of random points (self excluded unless ``with_self``)."""
    from sklearn.neighbors import NearestNeighbors

    X = np.random.default_rng(seed).standard_normal((n, 5))
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)
    if not with_self:
        idx, dist = idx[:, 1:], dist[:, 1:]
    return X, idx, dist.astype(np.float32)


# ----------------------------------------------------------------------------- PCA


def test_pca_parameters_reach_cuml(fake_cuml):
    X = np.random.default_rng(0).standard_normal((300, 12))
    est = PCA(n_components=4, whiten=True, svd_solver="covariance", backend="cuml").fit(X)
    assert _FakePCA.calls == [{"output_type": "cupy", "n_components": 4, "whiten": True, "svd_solver": "full"}]
    assert est.backend_ == "cuml" and est.svd_solver_ == "cuml:full"
    assert est.components_.shape == (4, 12) and est.transform(X).shape == (300, 4)


@pytest.mark.parametrize(("params", "message"), [
    ({"svd_solver": "randomized"}, "no svd_solver='randomized'"),
    ({"n_components": 0.9}, "integer n_components"),
])
def test_pca_refusals_point_to_cuda(fake_cuml, params, message):
    X = np.random.default_rng(0).standard_normal((100, 5))
    with pytest.raises(Unsupported, match=message + r".*backend='cuda'"):
        PCA(backend="cuml", **{"n_components": 2, **params}).fit(X)


# ----------------------------------------------------------------------------- UMAP


def test_umap_estimator_fits_through_cuml_with_the_exact_call(fake_cuml):
    X = np.random.default_rng(0).standard_normal((200, 6))
    est = _umap(n_neighbors=12, min_dist=0.2, n_epochs=40, init="random", random_state=5, backend="cuml")
    Y = est.fit_transform(X)
    assert _FakeUMAP.calls == [{
        "output_type": "cupy", "n_neighbors": 12, "n_components": 2, "min_dist": 0.2, "spread": 1.0,
        "metric": "euclidean", "n_epochs": 40, "learning_rate": 1.0, "init": "random",
        "negative_sample_rate": 5, "random_state": 5, "build_algo": "brute_force_knn", "verbose": False}]
    (X_seen, y_seen), = _FakeUMAP.fits
    assert y_seen is None and np.array_equal(X_seen, X)
    assert est.backend_ == "cuml" and set(est.timings_) == {"cuml-umap"}
    assert est.embedding_.dtype == np.float32 and est.embedding_.shape == (200, 2)
    np.testing.assert_allclose(Y, X[:, :2], rtol=1e-6)
    assert est.n_epochs_ == 40 and est.init_used_ == "random"
    np.testing.assert_allclose(est.transform(X[:5]), X[:5, :2] + 1.0)  # cuML's transform ran
    with pytest.raises(ValueError, match="features"):
        est.transform(X[:, :3])


@pytest.mark.parametrize("legacy", [False, True])
def test_umap_graph_is_host_csr(fake_cuml, monkeypatch, legacy):
    monkeypatch.setattr(_FakeUMAP, "legacy_graph", legacy)
    X = np.random.default_rng(0).standard_normal((50, 4))
    est = _umap(n_neighbors=5, n_epochs=10, backend="cuml").fit(X)
    assert isinstance(est.graph_, sp.csr_matrix) and est.graph_.dtype == np.float32
    # The duplicate (1, 0) entries are summed; the fake's own graph_ is COO (negative control).
    expected = np.array([[0, 0.5, 0], [0.5, 0, 0], [0, 0, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(est.graph_.toarray(), expected)
    assert not isinstance(est._cuml_model.graph_, sp.csr_matrix)


def test_umap_default_epochs_are_resolved_by_our_rule(fake_cuml):
    X = np.random.default_rng(0).standard_normal((60, 4))
    est = _umap(n_neighbors=5, backend="cuml").fit(X)
    assert _FakeUMAP.calls[0]["n_epochs"] == 500 == est.n_epochs_


@pytest.mark.parametrize("with_self", [False, True])
def test_umap_precomputed_knn_gets_the_self_column(fake_cuml, with_self):
    """cuML reads column 0 as the point itself; ours excludes it (either layout is accepted)."""
    X, idx, dist = _graph(80, 12, with_self=with_self)
    est = _umap(n_neighbors=6, n_epochs=10, precomputed_knn=(idx, dist), backend="cuml").fit(X)
    indices, distances = _FakeUMAP.calls[0]["precomputed_knn"]
    _, own_idx, own_dist = _graph(80, 5)
    assert indices.dtype == np.int64 and distances.dtype == np.float32
    assert indices.shape == distances.shape == (80, 6)  # exactly n_neighbors columns
    np.testing.assert_array_equal(indices, np.hstack([np.arange(80)[:, None], own_idx]))
    np.testing.assert_allclose(distances, np.hstack([np.zeros((80, 1), np.float32), own_dist]), rtol=1e-6)
    assert est.backend_ == "cuml"
    # Negative control: the graph as given (no self column) is what cuML 26.08+ rejects.
    _, bare_idx, bare_dist = _graph(80, 6)
    with pytest.raises(ValueError, match="self references"):
        _FakeUMAP(n_components=2, precomputed_knn=(bare_idx, bare_dist)).fit_transform(X)


def test_precomputed_knn_with_missing_neighbours_is_refused(fake_cuml):
    X, full, dist = _graph(60, 8)
    idx = full.copy()
    idx[3, 5:] = -1
    dist[3, 5:] = dist[3, 4]
    with pytest.raises(Unsupported, match=r"no marker for a missing neighbour.*backend='cuda'"):
        _umap(n_neighbors=8, n_epochs=5, precomputed_knn=(idx, dist), backend="cuml").fit(X)
    with pytest.raises(Unsupported, match="missing neighbour"):
        _tsne(perplexity=2.0, n_iter=50, precomputed_knn=(idx, dist), backend="cuml").fit(X)
    assert _FakeUMAP.calls == [] and _FakeTSNE.calls == []
    _, _, dist = _graph(60, 8)  # the complete graph: accepted (negative control)
    _umap(n_neighbors=8, n_epochs=5, precomputed_knn=(full, dist), backend="cuml").fit(X)
    assert len(_FakeUMAP.calls) == 1


def test_umap_init_array_passes_through_from_cuml_26_02(fake_cuml):
    X = np.random.default_rng(0).standard_normal((40, 4))
    init = np.random.default_rng(1).uniform(0, 10, (40, 2))
    est = _umap(n_neighbors=5, n_epochs=10, init=init, backend="cuml").fit(X)
    passed = _FakeUMAP.calls[0]["init"]
    assert passed.dtype == np.float32 and passed.flags.c_contiguous
    np.testing.assert_array_equal(passed, init.astype(np.float32))
    assert est.init_used_ == "array"
    fake_cuml.__version__ = "25.12.00"  # before cuml#7651: refused, naming the release
    with pytest.raises(Unsupported, match=r"cuML 25.12's UMAP.*needs cuML >= 26.02.*backend='cuda'"):
        _umap(n_neighbors=5, n_epochs=10, init=init, backend="cuml").fit(X)
    with pytest.raises(ValueError, match="init array has shape"):  # checked as on every backend
        _umap(n_neighbors=5, init=init[:10], backend="cuml").fit(X)
    assert len(_FakeUMAP.calls) == 1


def test_umap_build_algo_rule():
    est = _umap(n_neighbors=20)
    assert cuml_adapter.cuml_umap_params(est, 2_000_000)["build_algo"] == "brute_force_knn"
    big = cuml_adapter.cuml_umap_params(est, 2_000_001)
    assert big["build_algo"] == "nn_descent"
    assert big["build_kwds"] == {"nnd_graph_degree": 64, "nnd_intermediate_graph_degree": 128}
    wide = cuml_adapter.cuml_umap_params(_umap(n_neighbors=100, metric="cosine"), 5_000_000)
    assert wide["build_kwds"]["nnd_graph_degree"] == 100
    # cuML's NN-descent has no other metric: exact at every size.
    manhattan = cuml_adapter.cuml_umap_params(_umap(metric="manhattan"), 5_000_000)
    assert manhattan["build_algo"] == "brute_force_knn" and "build_kwds" not in manhattan


def test_umap_logs_what_random_state_does(fake_cuml):
    X = np.random.default_rng(0).standard_normal((40, 4))
    backend = dispatch.fitted_backend("cuml")
    for seed, expected in [(3, "random_state=3: cuML runs deterministic"), (None, "parallel epochs")]:
        est = _umap(n_neighbors=5, n_epochs=10, random_state=seed)
        est._progress = _Log()
        cuml_adapter.fit_cuml_umap(est, X, backend)
        assert any(expected in line for line in est._progress.lines), est._progress.lines
        assert any("build_algo=brute_force_knn (exact up to 2,000,000 points)" in line
                   for line in est._progress.lines)


def test_supervised_umap_passes_y_to_cuml(fake_cuml):
    """The hook ``fit_umap(est, X, backend, y)``: labels as codes, -1 (unlabelled) kept."""
    X = np.random.default_rng(0).standard_normal((6, 3))
    backend = dispatch.fitted_backend("cuml")
    est = _umap(n_neighbors=3, n_epochs=10)
    est._progress = _Log()
    est.target_metric, est.target_weight, est.target_n_neighbors = "categorical", 0.7, -1
    cuml_adapter.fit_umap(est, X, backend, y=np.array(["b", "a", "b", "c", "a", "a"]))
    call, (_, y_seen) = _FakeUMAP.calls[-1], _FakeUMAP.fits[-1]
    assert call["target_metric"] == "categorical" and call["target_weight"] == 0.7
    assert call["target_n_neighbors"] == -1
    np.testing.assert_array_equal(y_seen, np.array([1, 0, 1, 2, 0, 0], dtype=np.float32))
    cuml_adapter.fit_umap(est, X, backend, y=np.array([7, -1, 7, 9, -1, 9]))
    np.testing.assert_array_equal(_FakeUMAP.fits[-1][1], [0, -1, 0, 1, -1, 1])
    est.target_metric = "l2"
    cuml_adapter.fit_umap(est, X, backend, y=np.arange(6.0))
    assert _FakeUMAP.calls[-1]["target_metric"] == "euclidean"
    with pytest.raises(Unsupported, match="1-D numeric target"):
        cuml_adapter.fit_umap(est, X, backend, y=np.ones((6, 2)))


def test_umap_estimator_refusal_names_the_alternative(fake_cuml):
    X = np.random.default_rng(0).standard_normal((100, 4))
    with pytest.raises(Unsupported, match=r"init='spectral', 'random' or an array.*backend='cuda'"):
        _umap(init="pca", backend="cuml").fit(X)
    assert _FakeUMAP.calls == []


def test_umap_auto_passes_over_cuml_that_would_refuse(fake_cuml):
    X = np.random.default_rng(0).standard_normal((100, 4))
    est = _umap(init="pca", n_neighbors=5, n_epochs=5, random_state=0).fit(X)
    assert est.backend_ in ("cpu", "cuda") and _FakeUMAP.calls == []
    assert "cuml: cannot run these settings (cuML's UMAP supports init='spectral'" in est.backend_reason_
    est = _umap(n_neighbors=5, n_epochs=5, random_state=0).fit(X)
    assert est.backend_ == "cuml" and len(_FakeUMAP.calls) == 1


def test_umap_parameters_map_one_to_one():
    est = _umap(n_neighbors=30, n_components=3, min_dist=0.25, spread=2.0, metric="cosine", n_epochs=300,
                learning_rate=0.5, init="random", negative_sample_rate=7, random_state=11, verbose=True)
    params = cuml_adapter.cuml_umap_params(est, 1000)
    for name in ("n_neighbors", "n_components", "min_dist", "spread", "metric", "n_epochs", "learning_rate",
                 "init", "negative_sample_rate", "random_state"):
        assert params[name] == getattr(est, name), name
    assert params["verbose"] is True


@pytest.mark.parametrize(("params", "message"), [
    ({"init": "pca"}, "init='spectral', 'random' or an array"),
    ({"metric": "inner_product"}, "metric='inner_product' .cuML has no inner-product"),
    ({"callback": print}, "callbacks"),
    ({"n_epochs": 0}, "n_epochs=0"),
])
def test_umap_refusals(params, message):
    with pytest.raises(Unsupported, match=message):
        cuml_adapter.cuml_umap_params(_umap(**params), 500)


def test_umap_densmap_is_refused():
    est = _umap()
    est.densmap = True  # the attribute the densMAP change adds
    with pytest.raises(Unsupported, match="no densMAP"):
        cuml_adapter.cuml_umap_params(est, 500)


# ----------------------------------------------------------------------------- metrics


@pytest.mark.parametrize(("ours", "theirs"), [
    ("euclidean", "euclidean"), ("l2", "euclidean"), ("cosine", "cosine"), ("manhattan", "manhattan"),
    ("l1", "manhattan"), ("chebyshev", "chebyshev"), ("linf", "chebyshev"), ("minkowski", "minkowski"),
    ("correlation", "correlation"), ("hamming", "hamming"),
])
def test_umap_metric_table(ours, theirs):
    est = _minkowski(_umap) if ours == "minkowski" else _umap(metric=ours)
    assert cuml_adapter.cuml_umap_params(est, 500)["metric"] == theirs
    if ours in cuml_adapter.TSNE_METRICS:
        est = _minkowski(_tsne) if ours == "minkowski" else _tsne(metric=ours)
        assert cuml_adapter.cuml_tsne_params(est, 500)["metric"] == theirs


@pytest.mark.parametrize(("reducer", "metric", "why"), [
    ("umap", "jaccard", "sparse input only"), ("umap", "inner_product", "no inner-product"),
    ("umap", "precomputed", "distance matrix"), ("tsne", "hamming", "no hamming"),
    ("tsne", "jaccard", "sparse input only"), ("tsne", "inner_product", "no inner-product"),
])
def test_unsupported_metrics_are_refused_naming_the_supported_list(reducer, metric, why):
    make, params = (_umap, cuml_adapter.cuml_umap_params) if reducer == "umap" else \
        (_tsne, cuml_adapter.cuml_tsne_params)
    supported = cuml_adapter.UMAP_METRICS if reducer == "umap" else cuml_adapter.TSNE_METRICS
    with pytest.raises(Unsupported) as info:
        params(make(metric=metric), 500)
    assert ", ".join(sorted(supported)) in str(info.value) and why in str(info.value)


def _minkowski(make, **params):
    est = make(metric="minkowski", **params)
    est.metric_kwds = {"p": 3.0}  # the parameter the metrics change adds (umap-learn's name)
    return est


def test_minkowski_exponent_reaches_cuml():
    assert cuml_adapter.cuml_umap_params(_minkowski(_umap), 500)["metric_kwds"] == {"p": 3.0}
    tsne = cuml_adapter.cuml_tsne_params(_minkowski(_tsne), 500)
    assert tsne["metric_params"] == {"p": 3.0} and tsne["square_distances"] is False


def test_pacmap_refusal_names_the_cuml_issue():
    spec = get_spec("cuml")
    why = spec.refusal(Request("pacmap", n_samples=100))
    assert why == "cuML has no PaCMAP (rapidsai/cuml#4726); use backend='cuda' or 'cpu'"
    assert cuml_adapter.refusal(Request("pacmap")) == why
    assert spec.refusal(Request("isomap")) == "not implemented for this reducer"  # negative control


# ----------------------------------------------------------------------------- t-SNE


def test_tsne_schedule_maps_onto_cuml():
    """The exaggeration phase maps exactly: cuML's step lacks the gradient's factor 4."""
    est = _tsne(perplexity=40.0, early_exaggeration=10.0, n_iter=750, metric="cosine", init="random",
                random_state=3)
    params = cuml_adapter.cuml_tsne_params(est, 10_000, accepted={"max_iter"})
    lr_ee = max(10_000 / 10.0 / 4.0, 50.0)
    assert params == {
        "n_components": 2, "perplexity": 40.0, "n_neighbors": 121, "early_exaggeration": 10.0,
        "late_exaggeration": 1.0, "exaggeration_iter": 187, "pre_momentum": 0.5, "post_momentum": 0.8,
        "learning_rate": 4 * lr_ee, "learning_rate_method": "none", "max_iter": 750, "min_grad_norm": 0.0,
        "metric": "cosine", "square_distances": False, "init": "random", "random_state": 3, "method": "fft",
        "verbose": False}
    assert "n_iter" in cuml_adapter.cuml_tsne_params(est, 10_000, accepted={"n_iter"})
    euclidean = cuml_adapter.cuml_tsne_params(_tsne(learning_rate=300.0), 5000)
    assert euclidean["square_distances"] is True and euclidean["learning_rate"] == 1200.0
    assert euclidean["exaggeration_iter"] == 250
    # No exaggeration phase (n_iter < 4): cuML's doubled rate from iteration 0 is our rate.
    short = cuml_adapter.cuml_tsne_params(_tsne(n_iter=3), 5000)
    assert short["exaggeration_iter"] == 0 and short["learning_rate"] == 2 * max(5000 / 4, 50)


def test_tsne_rate_mapping_gives_the_same_step():
    """One exaggerated step of our kernel equals cuML's update (its IntegrationKernel, from
    cuML's fft_kernels.cuh) at the mapped rate; the old mapping (no factor 4) does not."""
    from embedscope.kernels.tsne import gradient_step

    rng = np.random.default_rng(0)
    n = 30
    P = sp.random(n, n, density=0.3, random_state=0, format="csr")
    P = ((P + P.T) / (P + P.T).sum()).tocsr().astype(np.float64)
    Y = rng.normal(0, 1, (n, 2))
    rep, z, ex = rng.normal(0, 1, (n, 2)), 37.0, 12.0
    update0 = rng.normal(0, 0.1, (n, 2))
    ours_rate = 50.0

    def cuml_step(eta):
        diff = Y[:, None, :] - Y[None, :, :]
        q = 1.0 / (1.0 + (diff ** 2).sum(-1))
        attr = ((P.toarray() * q)[:, :, None] * diff).sum(1)
        d = ex * attr - rep / z
        gains = np.where(np.signbit(d) != np.signbit(update0), 1.2, 0.8)
        return 0.5 * update0 - eta * gains * d

    update, gains = update0.copy(), np.ones_like(Y)
    gradient_step(P.indptr, P.indices, P.data, Y, Y, 1.0, rep, np.full(n, 1.0 / z), ex, 4.0, ours_rate,
                  0.5, update, gains)
    mapped = cuml_adapter.cuml_tsne_params(_tsne(learning_rate=ours_rate), 2000)["learning_rate"]
    np.testing.assert_allclose(update, cuml_step(mapped), rtol=1e-7, atol=1e-10)
    assert not np.allclose(update, cuml_step(ours_rate), rtol=1e-3)


def test_tsne_estimator_fits_through_cuml(fake_cuml):
    X = np.random.default_rng(0).standard_normal((200, 6))
    est = _tsne(perplexity=20.0, n_iter=500, init="random", random_state=5, backend="cuml", verbose=True)
    Y = est.fit_transform(X)
    lr_ee = max(200 / 12.0 / 4.0, 50.0)
    assert _FakeTSNE.calls == [{
        "output_type": "cupy", "n_components": 2, "perplexity": 20.0, "n_neighbors": 61,
        "early_exaggeration": 12.0, "late_exaggeration": 1.0, "exaggeration_iter": 125, "pre_momentum": 0.5,
        "post_momentum": 0.8, "learning_rate": 4 * lr_ee, "learning_rate_method": "none", "max_iter": 500,
        "min_grad_norm": 0.0, "metric": "euclidean", "square_distances": True, "init": "random",
        "random_state": 5, "method": "fft", "verbose": True}]
    assert est.backend_ == "cuml" and set(est.timings_) == {"cuml-tsne"}
    assert est.embedding_.dtype == np.float32 and est.embedding_.shape == (200, 2)
    np.testing.assert_allclose(Y, X[:, :2], rtol=1e-6)
    # n_iter_ is cuML's own count (the stand-in stops 3 early), not the request.
    assert est.kl_divergence_ == 1.25 and est.n_iter_ == 497
    # 26.x runs the normal phase at twice its exaggeration rate: recorded in our units.
    assert est.learning_rate_ == 2 * lr_ee and est.perplexity_ == 20.0 and est.repulsion_ == "fft"
    with pytest.raises(Unsupported, match=r"no transform.*backend='cuda'"):
        est.transform(X[:5])


def test_tsne_on_cuml_24_sets_the_normal_phase_rate_exactly(fake_cuml, monkeypatch):
    monkeypatch.setattr(fake_cuml.manifold, "TSNE", _FakeTSNE24)
    fake_cuml.__version__ = "24.12.00"
    X = np.random.default_rng(0).standard_normal((400, 6))
    est = _tsne(perplexity=20.0, n_iter=300, random_state=1, backend="cuml").fit(X)
    call = _FakeTSNE24.calls[0]
    lr_ee, lr_normal = max(400 / 48, 50.0), max(400 / 4, 50.0)
    assert "n_iter" in call and "max_iter" not in call and call["learning_rate"] == 4 * lr_ee
    assert _FakeTSNE24.at_fit == [4 * lr_normal]  # cuML's own would be 2 x 4 x lr_ee
    assert est.learning_rate_ == lr_normal and est.n_iter_ == 300 and est.kl_divergence_ == 1.5


def test_tsne_precomputed_knn_gets_the_self_column(fake_cuml):
    X, idx, dist = _graph(100, 20)
    est = _tsne(perplexity=5.0, n_iter=300, precomputed_knn=(idx, dist), backend="cuml").fit(X)
    call = _FakeTSNE.calls[0]
    indices, distances = call["precomputed_knn"]
    assert call["n_neighbors"] == 16 and indices.shape == (100, 16)  # self + 3 x perplexity
    np.testing.assert_array_equal(indices, np.hstack([np.arange(100)[:, None], idx[:, :15]]))
    np.testing.assert_array_equal(distances[:, 0], 0.0)
    np.testing.assert_array_equal(distances[:, 1:], dist[:, :15])
    assert est.backend_ == "cuml"
    # Fewer columns than 3 x perplexity: all of them, n_neighbors follows.
    _tsne(perplexity=10.0, n_iter=300, precomputed_knn=(idx[:, :8], dist[:, :8]), backend="cuml").fit(X)
    assert _FakeTSNE.calls[1]["n_neighbors"] == 9 == _FakeTSNE.calls[1]["precomputed_knn"][0].shape[1]


@pytest.mark.parametrize(("params", "message"), [
    ({"n_components": 3}, "2-D only"),
    ({"dof": 0.5}, "dof"),
    ({"metric": "inner_product"}, "metric"),
    ({"perplexity": 400.0}, "at most 1023 neighbours"),
])
def test_tsne_refusals(params, message):
    with pytest.raises(Unsupported, match=message + r".*backend='cuda'"):
        cuml_adapter.cuml_tsne_params(_tsne(**params), 10_000)


def test_tsne_estimator_clamps_perplexity_for_cuml(fake_cuml):
    X = np.random.default_rng(0).standard_normal((100, 4))
    est = _tsne(perplexity=50.0, n_iter=300, backend="cuml")
    with pytest.warns(UserWarning, match="too large for 100 points"):
        est.fit(X)
    call = _FakeTSNE.calls[0]
    assert call["perplexity"] == pytest.approx(33.0) and call["n_neighbors"] == 100  # 99 + self
    assert est.perplexity_ == pytest.approx(33.0)


@pytest.mark.parametrize(("params", "message"), [
    ({"n_components": 3}, "2-D only"),
    ({"callback": print}, "callbacks"),
    ({"init": np.zeros((100, 2))}, "init='pca' or 'random' only .no init arrays"),
])
def test_tsne_estimator_refusal_names_the_alternative(fake_cuml, params, message):
    X = np.random.default_rng(0).standard_normal((100, 4))
    with pytest.raises(Unsupported, match=message + r".*backend='cuda'"):
        _tsne(backend="cuml", **params).fit(X)
    assert _FakeTSNE.calls == []


def test_tsne_auto_passes_over_cuml_that_would_refuse(fake_cuml):
    X = np.random.default_rng(0).standard_normal((100, 4))
    est = _tsne(n_components=3, n_iter=60, random_state=0).fit(X)
    assert est.backend_ in ("cpu", "cuda") and _FakeTSNE.calls == []
    assert "cuml: cannot run these settings (cuML's t-SNE is 2-D only" in est.backend_reason_
    est = _tsne(n_iter=60, random_state=0).fit(X)
    assert est.backend_ == "cuml" and len(_FakeTSNE.calls) == 1


def test_iteration_parameter_name_without_a_signature(fake_cuml, monkeypatch):
    """A compiled constructor may have no signature: the release picks max_iter or n_iter."""
    def no_signature(cls):
        raise ValueError("no signature found for builtin")

    assert "max_iter" in cuml_adapter._constructor_parameters(_FakeTSNE)
    monkeypatch.setattr(cuml_adapter, "inspect", types.SimpleNamespace(signature=no_signature))
    assert cuml_adapter._constructor_parameters(_FakeTSNE) is None  # 26.08: max_iter
    fake_cuml.__version__ = "25.10.00"
    assert cuml_adapter._constructor_parameters(_FakeTSNE) == {"n_iter"}
