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
from embedscope.engine import cuml_adapter, dispatch


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


@pytest.fixture
def fake_cuml(monkeypatch):
    """Installs a fake ``cuml`` package and makes the cuml backend resolvable on numpy."""
    pytest.importorskip("sklearn")
    cuml = types.ModuleType("cuml")
    cuml.__version__ = "0.0-fake"
    decomposition = types.ModuleType("cuml.decomposition")
    decomposition.PCA = _FakePCA
    cuml.decomposition = decomposition
    monkeypatch.setitem(sys.modules, "cuml", cuml)
    monkeypatch.setitem(sys.modules, "cuml.decomposition", decomposition)
    monkeypatch.setattr(dispatch, "probe_cuml", lambda: dispatch._Probe(True, "fake cuml"))
    monkeypatch.setattr(dispatch, "_cupy_backend", lambda name, detail, reason: dispatch.Backend(name, np, detail, reason))
    _FakePCA.calls.clear()
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
