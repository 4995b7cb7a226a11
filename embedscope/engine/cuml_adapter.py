"""Adapters onto RAPIDS cuML, imported only when the cuml backend is chosen.

Each adapter maps our parameters onto cuML's, refuses clearly what cuML cannot do,
and copies the fitted state back onto our estimator so its attributes look the same
on every backend.
"""

from __future__ import annotations

import numbers
from typing import Any

from embedscope.engine.dispatch import Backend, Unsupported

# cuML's "full" solver is an eigendecomposition of the covariance matrix.
_PCA_SOLVERS = {"auto": "auto", "full": "full", "covariance": "full"}


def cuml_pca_params(est: Any) -> dict[str, Any]:
    """cuML ``PCA`` keyword arguments for our PCA's parameters, or ``Unsupported``."""
    if est.svd_solver not in _PCA_SOLVERS:
        raise Unsupported(f"cuML's PCA has no svd_solver={est.svd_solver!r}; use backend='cuda' or 'cpu'")
    if est.n_components is not None and not isinstance(est.n_components, numbers.Integral):
        raise Unsupported("cuML's PCA needs an integer n_components; use backend='cuda' or 'cpu'")
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
    est.n_components_ = int(model.n_components_ if hasattr(model, "n_components_") else model.n_components)
    for name in ("components_", "explained_variance_", "explained_variance_ratio_", "singular_values_", "mean_"):
        setattr(est, name, xp.asarray(getattr(model, name)))
    est.noise_variance_ = float(getattr(model, "noise_variance_", 0.0))
