"""cuML adapters: every parameter reaches cuML unchanged; what cuML cannot do is refused.

Without cuML the classes are stand-ins that record their arguments (the mapping is
what is under test); with cuML installed and a GPU, the real classes take the same
arguments (``gpu``-marked test).
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import types
from typing import ClassVar

import numpy as np
import pytest

from embedscope import PCA, Unsupported
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


class _FakeUMAP(_Recorder):
    """Stands in for cuml.manifold.UMAP: the first columns are the "embedding"."""

    calls: ClassVar[list[dict]] = []

    def fit_transform(self, X):
        self.graph_ = "fake graph"
        return np.asarray(X)[:, : self.kwargs["n_components"]].astype(np.float64)

    def transform(self, X):
        return np.asarray(X)[:, : self.kwargs["n_components"]] + 1.0


class _FakeTSNE(_Recorder):
    """Stands in for cuml.manifold.TSNE (whose constructor takes ``max_iter``)."""

    calls: ClassVar[list[dict]] = []

    def __init__(self, *, max_iter: int = 1000, **kwargs):
        super().__init__(max_iter=max_iter, **kwargs)

    def fit_transform(self, X):
        self.kl_divergence_ = 1.25
        return np.asarray(X)[:, :2].astype(np.float64)


@pytest.fixture
def fake_cuml(monkeypatch):
    """Installs a fake ``cuml`` package and makes the cuml backend resolvable on numpy."""
    pytest.importorskip("sklearn")
    cuml = types.ModuleType("cuml")
    cuml.__version__ = "0.0-fake"
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
    _FakePCA.calls.clear()
    _FakeUMAP.calls.clear()
    _FakeTSNE.calls.clear()
    return cuml


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


def _umap(**params):
    module = pytest.importorskip("embedscope.engine.umap")
    return module.UMAP(**params)


def test_umap_estimator_fits_through_cuml(fake_cuml):
    X = np.random.default_rng(0).standard_normal((200, 6))
    est = _umap(n_neighbors=12, min_dist=0.2, n_epochs=40, init="random", random_state=5, backend="cuml")
    Y = est.fit_transform(X)
    assert len(_FakeUMAP.calls) == 1
    call = _FakeUMAP.calls[0]
    assert call["output_type"] == "cupy" and call["n_neighbors"] == 12 and call["min_dist"] == 0.2
    assert call["n_epochs"] == 40 and call["init"] == "random" and call["random_state"] == 5
    assert est.backend_ == "cuml" and set(est.timings_) == {"cuml-umap"}
    assert est.embedding_.dtype == np.float32 and est.embedding_.shape == (200, 2)
    np.testing.assert_allclose(Y, X[:, :2], rtol=1e-6)
    assert est.graph_ == "fake graph" and est.n_epochs_ == 40 and est.init_used_ == "random"
    np.testing.assert_allclose(est.transform(X[:5]), X[:5, :2] + 1.0)  # cuML's transform ran
    with pytest.raises(ValueError, match="features"):
        est.transform(X[:, :3])


def test_umap_estimator_refusal_names_the_alternative(fake_cuml):
    X = np.random.default_rng(0).standard_normal((100, 4))
    with pytest.raises(Unsupported, match=r"init='spectral' or 'random'.*backend='cuda'"):
        _umap(init="pca", backend="cuml").fit(X)
    assert _FakeUMAP.calls == []


def test_umap_auto_passes_over_cuml_that_would_refuse(fake_cuml):
    X = np.random.default_rng(0).standard_normal((100, 4))
    est = _umap(init="pca", n_neighbors=5, n_epochs=5, random_state=0).fit(X)
    assert est.backend_ in ("cpu", "cuda") and _FakeUMAP.calls == []
    assert "cuml: cannot run these settings (cuML's UMAP supports init='spectral'" in est.backend_reason_
    est = _umap(n_neighbors=5, n_epochs=5, random_state=0).fit(X)
    assert est.backend_ == "cuml" and len(_FakeUMAP.calls) == 1


def _tsne(**params):
    module = pytest.importorskip("embedscope.engine.tsne")
    return module.TSNE(**params)


def test_umap_parameters_map_one_to_one():
    est = _umap(n_neighbors=30, n_components=3, min_dist=0.25, spread=2.0, metric="cosine", n_epochs=300,
                learning_rate=0.5, init="random", negative_sample_rate=7, random_state=11, verbose=True)
    params = cuml_adapter.cuml_umap_params(est)
    for name in ("n_neighbors", "n_components", "min_dist", "spread", "metric", "n_epochs", "learning_rate",
                 "init", "negative_sample_rate", "random_state"):
        assert params[name] == getattr(est, name), name
    assert params["verbose"] is True


@pytest.mark.parametrize(("params", "message"), [
    ({"init": "pca"}, "init='spectral' or 'random'"),
    ({"metric": "inner_product"}, "metric='inner_product'"),
    ({"callback": print}, "callbacks"),
])
def test_umap_refusals(params, message):
    with pytest.raises(Unsupported, match=message):
        cuml_adapter.cuml_umap_params(_umap(**params))


def test_tsne_parameters_map_and_auto_rate():
    est = _tsne(perplexity=40.0, early_exaggeration=10.0, n_iter=750, metric="cosine", init="random",
                random_state=3)
    params = cuml_adapter.cuml_tsne_params(est, 10_000, accepted={"max_iter"})
    assert params["perplexity"] == 40.0 and params["early_exaggeration"] == 10.0
    assert params["max_iter"] == 750 and params["metric"] == "cosine" and params["init"] == "random"
    assert params["random_state"] == 3 and params["n_neighbors"] == 120
    assert params["learning_rate"] == max(10_000 / 10.0 / 4.0, 50.0)
    assert params["learning_rate_method"] == "none"
    assert "n_iter" in cuml_adapter.cuml_tsne_params(est, 10_000, accepted={"n_iter"})


@pytest.mark.parametrize(("params", "message"), [
    ({"n_components": 3}, "2-D only"),
    ({"dof": 0.5}, "dof"),
    ({"metric": "inner_product"}, "metric"),
])
def test_tsne_refusals(params, message):
    with pytest.raises(Unsupported, match=message + r".*backend='cuda'"):
        cuml_adapter.cuml_tsne_params(_tsne(**params), 1000)


def test_tsne_estimator_fits_through_cuml(fake_cuml):
    X = np.random.default_rng(0).standard_normal((200, 6))
    est = _tsne(perplexity=20.0, n_iter=500, init="random", random_state=5, backend="cuml")
    Y = est.fit_transform(X)
    assert len(_FakeTSNE.calls) == 1
    call = _FakeTSNE.calls[0]
    assert call["output_type"] == "cupy" and call["perplexity"] == 20.0 and call["max_iter"] == 500
    assert call["init"] == "random" and call["random_state"] == 5 and call["n_neighbors"] == 60
    assert call["method"] == "fft" and call["learning_rate"] == 50.0
    assert est.backend_ == "cuml" and set(est.timings_) == {"cuml-tsne"}
    assert est.embedding_.dtype == np.float32 and est.embedding_.shape == (200, 2)
    np.testing.assert_allclose(Y, X[:, :2], rtol=1e-6)
    assert est.kl_divergence_ == 1.25 and est.n_iter_ == 500 and est.learning_rate_ == 50.0
    assert est.perplexity_ == 20.0
    with pytest.raises(Unsupported, match=r"no transform.*backend='cuda'"):
        est.transform(X[:5])


def test_tsne_estimator_clamps_perplexity_for_cuml(fake_cuml):
    X = np.random.default_rng(0).standard_normal((100, 4))
    est = _tsne(perplexity=50.0, n_iter=300, backend="cuml")
    with pytest.warns(UserWarning, match="too large for 100 points"):
        est.fit(X)
    call = _FakeTSNE.calls[0]
    assert call["perplexity"] == pytest.approx(33.0) and call["n_neighbors"] == 99
    assert est.perplexity_ == pytest.approx(33.0)


@pytest.mark.parametrize(("params", "message"), [
    ({"n_components": 3}, "2-D only"),
    ({"callback": print}, "callbacks"),
    ({"init": np.zeros((100, 2))}, "init='pca' or 'random'"),
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


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("cuml") is None, reason="cuml is not installed")
def test_real_cuml_classes_accept_the_mapped_parameters():
    from cuml.decomposition import PCA as CumlPCA
    from cuml.manifold import TSNE as CumlTSNE
    from cuml.manifold import UMAP as CumlUMAP

    accepted = set(inspect.signature(CumlTSNE).parameters)
    CumlPCA(**cuml_adapter.cuml_pca_params(PCA(5)))
    CumlUMAP(**cuml_adapter.cuml_umap_params(_umap()))
    CumlTSNE(**cuml_adapter.cuml_tsne_params(_tsne(), 1000, accepted))


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("cuml") is None, reason="cuml is not installed")
def test_real_cuml_umap_through_the_estimator():
    from embedscope import make_mixture, trustworthiness

    X, _ = make_mixture(2000, 20, 5, random_state=0)
    est = _umap(backend="cuml", random_state=0)
    Y = est.fit_transform(X)
    assert est.backend_ == "cuml" and isinstance(Y, np.ndarray) and Y.shape == (2000, 2)
    assert trustworthiness(X, Y, 15) > 0.9
    assert est.transform(X[:50]).shape == (50, 2)


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("cuml") is None, reason="cuml is not installed")
def test_real_cuml_tsne_through_the_estimator():
    from embedscope import make_mixture, trustworthiness

    X, _ = make_mixture(2000, 20, 5, random_state=0)
    est = _tsne(backend="cuml", random_state=0)
    Y = est.fit_transform(X)
    assert est.backend_ == "cuml" and isinstance(Y, np.ndarray) and Y.shape == (2000, 2)
    assert trustworthiness(X, Y, 15) > 0.9 and np.isfinite(est.kl_divergence_)
