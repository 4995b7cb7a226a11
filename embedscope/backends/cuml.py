"""Adapters onto RAPIDS cuML, imported only when the cuml backend is chosen.

Each adapter maps our parameters onto cuML's, refuses clearly (``Unsupported``) what
cuML cannot do, pointing to ``backend='cuda'``, and copies the fitted state back onto
our estimator so its attributes look the same on every backend. The ``*_params``
functions are pure (no cuML import), so the mapping is tested on any machine.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any

import numpy as np

from embedscope.backends import _registry
from embedscope.backends._registry import (
    Backend,
    BackendSpec,
    Capabilities,
    Request,
    Unsupported,
    register,
)

# cuML's "full" solver is an eigendecomposition of the covariance matrix.
_PCA_SOLVERS = {"auto": "auto", "full": "full", "covariance": "full"}
_UMAP_METRICS = {"euclidean", "cosine"}
_TSNE_METRICS = {"euclidean", "cosine"}
_USE_CUDA = "use backend='cuda' (our kernels) or backend='cpu'"


def cuml_pca_params(est: Any) -> dict[str, Any]:
    """cuML ``PCA`` keyword arguments for our PCA's parameters, or ``Unsupported``."""
    if est.svd_solver not in _PCA_SOLVERS:
        raise Unsupported(f"cuML's PCA has no svd_solver={est.svd_solver!r}; {_USE_CUDA}")
    if est.n_components is not None and not isinstance(est.n_components, numbers.Integral):
        raise Unsupported(f"cuML's PCA needs an integer n_components; {_USE_CUDA}")
    params = {"whiten": bool(est.whiten), "svd_solver": _PCA_SOLVERS[est.svd_solver]}
    if est.n_components is not None:
        params["n_components"] = int(est.n_components)
    return params


def fit_cuml_pca(est: Any, X: Any, backend: Backend) -> None:
    """Fit ``cuml.decomposition.PCA`` and copy its state onto ``est``."""
    from cuml.decomposition import PCA as CumlPCA

    xp = backend.xp
    model = CumlPCA(output_type="cupy", **cuml_pca_params(est))
    with est._progress.stage("pca", f"cuml, {X.shape[0]:,} x {X.shape[1]:,}"):
        model.fit(xp.asarray(X))
    est._cuml_model = model
    est.svd_solver_ = f"cuml:{model.svd_solver}"
    est.n_samples_, est.n_features_in_ = X.shape
    for name in ("components_", "explained_variance_", "explained_variance_ratio_", "singular_values_", "mean_"):
        setattr(est, name, xp.asarray(getattr(model, name)))
    est.n_components_ = int(est.components_.shape[0])
    est.noise_variance_ = float(getattr(model, "noise_variance_", 0.0))


def _seed(random_state: Any) -> int | None:
    if random_state is None or isinstance(random_state, numbers.Integral):
        return None if random_state is None else int(random_state)
    raise Unsupported(f"cuML takes an integer random_state, not {type(random_state).__name__}; {_USE_CUDA}")


def cuml_umap_params(est: Any) -> dict[str, Any]:
    """cuML ``UMAP`` keyword arguments for our UMAP's parameters, or ``Unsupported``.

    cuML's UMAP takes init 'spectral' or 'random' only, euclidean or cosine for the
    metrics we offer, and a callback of its own kind; those are refused.
    """
    if est.metric not in _UMAP_METRICS:
        raise Unsupported(f"cuML's UMAP is not used with metric={est.metric!r} here; {_USE_CUDA}")
    if not (isinstance(est.init, str) and est.init in ("spectral", "random")):
        raise Unsupported(f"cuML's UMAP supports init='spectral' or 'random' only; {_USE_CUDA}")
    if est.callback is not None:
        raise Unsupported(f"cuML's UMAP does not call Python epoch callbacks; {_USE_CUDA}")
    params: dict[str, Any] = {
        "n_neighbors": est.n_neighbors,
        "n_components": est.n_components,
        "min_dist": est.min_dist,
        "spread": est.spread,
        "metric": est.metric,
        "n_epochs": est.n_epochs,
        "learning_rate": est.learning_rate,
        "init": est.init,
        "negative_sample_rate": est.negative_sample_rate,
        "random_state": _seed(est.random_state),
        "verbose": bool(est.verbose),
    }
    if est.precomputed_knn is not None:
        indices, distances = est.precomputed_knn
        params["precomputed_knn"] = (indices, distances)
    return params


def cuml_tsne_params(est: Any, n_samples: int, accepted: set[str] | None = None) -> dict[str, Any]:
    """cuML ``TSNE`` keyword arguments for our TSNE's parameters, or ``Unsupported``.

    ``learning_rate='auto'`` is resolved here (``max(N / early_exaggeration / 4,
    50)``) and cuML's own adaptive rate switched off, so both backends use the same
    schedule. A perplexity above ``(n_samples - 1) / 3`` is clamped to that, as the
    other backends do. ``accepted`` (the cuML constructor's parameter names) picks
    ``max_iter`` or the older ``n_iter``.
    """
    if est.n_components != 2:
        raise Unsupported(f"cuML's t-SNE is 2-D only (n_components={est.n_components}); {_USE_CUDA}")
    if est.metric not in _TSNE_METRICS:
        raise Unsupported(f"cuML's t-SNE is not used with metric={est.metric!r} here; {_USE_CUDA}")
    if est.dof != 1.0:
        raise Unsupported(f"cuML's t-SNE has no heavy-tail dof parameter (dof={est.dof}); {_USE_CUDA}")
    if not (isinstance(est.init, str) and est.init in ("pca", "random")):
        raise Unsupported(f"cuML's t-SNE supports init='pca' or 'random' only; {_USE_CUDA}")
    if est.callback is not None:
        raise Unsupported(f"cuML's t-SNE does not call Python callbacks; {_USE_CUDA}")
    rate = est.learning_rate
    if rate == "auto":
        rate = max(n_samples / est.early_exaggeration / 4.0, 50.0)
    iterations = "max_iter" if accepted is None or "max_iter" in accepted else "n_iter"
    perplexity = min(float(est.perplexity), (n_samples - 1) / 3.0)
    params: dict[str, Any] = {
        "n_components": 2,
        "perplexity": perplexity,
        "early_exaggeration": est.early_exaggeration,
        "learning_rate": float(rate),
        "learning_rate_method": "none",
        iterations: est.n_iter,
        "metric": est.metric,
        "init": est.init,
        "random_state": _seed(est.random_state),
        "method": "fft",
        "n_neighbors": int(min(n_samples - 1, 3 * perplexity)),
        "verbose": bool(est.verbose),
    }
    if est.precomputed_knn is not None:
        indices, distances = est.precomputed_knn
        params["precomputed_knn"] = (indices, distances)
    return params


def fit_cuml_umap(est: Any, X: Any, backend: Backend) -> Any:
    """Fit ``cuml.manifold.UMAP``; returns the embedding (cupy) and keeps the model.

    The parameters are mapped (and refused, if need be) before cuML is imported, so
    a refusal reads the same whether or not cuML loads.
    """
    params = cuml_umap_params(est)
    from cuml.manifold import UMAP as CumlUMAP

    model = CumlUMAP(output_type="cupy", **params)
    with est._progress.stage("cuml-umap", f"{X.shape[0]:,} x {X.shape[1]:,}"):
        embedding = model.fit_transform(backend.xp.asarray(X))
    est._cuml_model = model
    est.graph_ = getattr(model, "graph_", None)
    return embedding


def fit_cuml_tsne(est: Any, X: Any, backend: Backend) -> Any:
    """Fit ``cuml.manifold.TSNE``; returns the embedding (cupy) and keeps the model.

    The parameters are checked (and refused, if need be) before cuML is imported, so
    a refusal reads the same whether or not cuML loads.
    """
    cuml_tsne_params(est, X.shape[0])
    from cuml.manifold import TSNE as CumlTSNE

    accepted = set(inspect.signature(CumlTSNE).parameters)
    model = CumlTSNE(output_type="cupy", **cuml_tsne_params(est, X.shape[0], accepted))
    with est._progress.stage("cuml-tsne", f"{X.shape[0]:,} x {X.shape[1]:,}"):
        embedding = model.fit_transform(backend.xp.asarray(X))
    est._cuml_model = model
    est.kl_divergence_ = float(np.asarray(getattr(model, "kl_divergence_", np.nan)))
    return embedding


def refusal(request: Request) -> str | None:
    """Why cuML cannot fit ``request`` (its estimator's parameters), or None.

    The parameter mapping is pure, so this runs (and is tested) without cuML.
    """
    est = request.estimator
    if est is None:
        return None
    try:
        if request.reducer == "pca":
            cuml_pca_params(est)
        elif request.reducer == "umap":
            cuml_umap_params(est)
        elif request.reducer == "tsne":
            cuml_tsne_params(est, request.n_samples)
    except Unsupported as exc:
        return str(exc)
    return None


def fit_pca(est: Any, X: Any, backend: Backend) -> None:
    """The delegate entry for PCA (see :class:`embedscope.backends.BackendSpec`)."""
    fit_cuml_pca(est, X, backend)


def fit_umap(est: Any, X: Any, backend: Backend) -> Any:
    """The delegate entry for UMAP."""
    return fit_cuml_umap(est, X, backend)


def fit_tsne(est: Any, X: Any, backend: Backend) -> Any:
    """The delegate entry for t-SNE."""
    return fit_cuml_tsne(est, X, backend)


INSTALL_HINT = "conda install -c rapidsai -c conda-forge cuml  (or: pip install 'embedscope[cuml]')"

CAPABILITIES = Capabilities(
    reducers=frozenset({"pca", "umap", "tsne"}),
    metrics=frozenset(_UMAP_METRICS | _TSNE_METRICS),
    knn_methods=frozenset({"auto"}),
    # cuML's t-SNE has no transform.
    transform=frozenset({"pca", "umap"}),
    callback=False,
    hints={"transform=tsne": "cuML's t-SNE cannot place new points (it has no transform); fit with "
                             "backend='cuda' or backend='cpu' to use transform",
           "reducer=pacmap": "cuML has no PaCMAP (rapidsai/cuml#4726); use backend='cuda' (our kernels) "
                             "or backend='cpu'"},
)


def _self() -> Any:
    import sys

    return sys.modules[__name__]


register(BackendSpec(name="cuml", priority=30, probe=lambda: _registry.probe_cuml(),
                     capabilities=CAPABILITIES, array_module=lambda: _registry.device_xp(),
                     delegate=_self, install_hint=INSTALL_HINT, gpu=True))
