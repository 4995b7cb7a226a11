"""What each benchmark run fits: our reducers on a backend, or a peer library.

Every implementation is a function ``fit(X, params, seed) -> (embedding, extra)``
where ``extra`` may hold ``stages`` (stage -> seconds), ``kl_divergence`` (as the
library itself reports it) and ``backend``. The peers are called with the settings
that match ours (see :data:`PEER_NOTES`), never with anything that makes them slower
than their own defaults.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["DEFAULT_PARAMS", "PEERS", "PEER_NOTES", "get_fit", "peer_missing"]

#: Settings shared by every implementation of a method (umap-learn / openTSNE names).
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "pca": {"n_components": 2},
    "umap": {"n_components": 2, "n_neighbors": 15, "min_dist": 0.1},
    "tsne": {"n_components": 2, "perplexity": 30.0, "n_iter": 1000},
    "pacmap": {"n_components": 2, "n_neighbors": 10, "MN_ratio": 0.5, "FP_ratio": 2.0},
}

#: Peer name -> (importable module, pip name, methods it implements).
PEERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "umap-learn": ("umap", "umap-learn", ("umap",)),
    "opentsne": ("openTSNE", "openTSNE", ("tsne",)),
    "sklearn": ("sklearn", "scikit-learn", ("pca", "tsne")),
    "cuml": ("cuml", "cuml-cu12", ("pca", "umap", "tsne")),
    "pacmap": ("pacmap", "pacmap", ("pacmap",)),
}

def _cuml_ready() -> tuple[bool, str]:
    from embedscope.backends import probe_cuml

    probe = probe_cuml()
    return probe.ok, probe.detail


#: Peers that need a GPU -> whether they can run here (ok, detail); their runs are
#: labelled ``gpu`` and their GPU memory is sampled. Every other peer runs on the host.
PEER_GPU_CHECKS: dict[str, Callable[[], tuple[bool, str]]] = {"cuml": _cuml_ready}

#: How each peer is configured, recorded in the manifest.
PEER_NOTES: dict[str, str] = {
    "umap-learn": "umap.UMAP(n_neighbors, min_dist, n_components, n_jobs=-1); no random_state, "
                  "because a seed makes umap-learn single-threaded",
    "opentsne": "openTSNE.TSNE(perplexity, n_iter=n_iter-250, early_exaggeration_iter=250, "
                "negative_gradient_method='fft', n_jobs=-1, random_state=seed): the same 1,000 "
                "iterations in total",
    "sklearn": "sklearn.decomposition.PCA(n_components, random_state=seed); sklearn.manifold.TSNE("
               "perplexity, max_iter=n_iter, init='pca', learning_rate='auto', n_jobs=-1, random_state=seed)",
    "cuml": "cuml.PCA / cuml.manifold.UMAP / cuml.manifold.TSNE with the same parameters and seed",
    "pacmap": "pacmap.PaCMAP(n_components, n_neighbors, MN_ratio, FP_ratio).fit_transform(X, init='pca'), "
              "its default kNN backend and 450 iterations; no random_state, as umap-learn",
}


def peer_missing(peer: str) -> str | None:
    """Why ``peer`` cannot run here (not installed), or None."""
    module, pip_name, _ = PEERS[peer]
    if importlib.util.find_spec(module) is None:
        return f"{pip_name} is not installed (pip install {pip_name})"
    return None


def _accepted(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    names = set(inspect.signature(cls.__init__).parameters)
    return {k: v for k, v in params.items() if k in names}


def _ours(method: str, backend: str) -> Callable[..., tuple[Any, dict[str, Any]]]:
    from embedscope.engine.reduce import reducer_class

    def fit(X: np.ndarray, params: dict[str, Any], seed: int) -> tuple[Any, dict[str, Any]]:
        if ":" in method:  # "module:Class", a user's own reducer
            module_name, _, class_name = method.partition(":")
            cls = getattr(importlib.import_module(module_name), class_name)
            est = cls(**_accepted(cls, {**params, "random_state": seed, "backend": backend}))
        else:
            cls = reducer_class(method)
            est = cls(**params, random_state=seed, backend=backend)
        Y = est.fit_transform(X)
        extra: dict[str, Any] = {"stages": dict(getattr(est, "timings_", {}) or {}),
                                 "backend": getattr(est, "backend_", backend)}
        if getattr(est, "kl_divergence_", None) is not None:
            extra["kl_divergence"] = float(est.kl_divergence_)
        return Y, extra

    return fit


def _umap_learn(X: np.ndarray, params: dict[str, Any], seed: int) -> tuple[Any, dict[str, Any]]:
    import umap

    est = umap.UMAP(n_neighbors=params["n_neighbors"], min_dist=params["min_dist"],
                    n_components=params["n_components"], n_jobs=-1)
    return est.fit_transform(X), {}


def _opentsne(X: np.ndarray, params: dict[str, Any], seed: int) -> tuple[Any, dict[str, Any]]:
    from openTSNE import TSNE

    est = TSNE(n_components=params["n_components"], perplexity=params["perplexity"],
               n_iter=max(params["n_iter"] - 250, 0), early_exaggeration_iter=250,
               negative_gradient_method="fft", n_jobs=-1, random_state=seed)
    emb = est.fit(X)
    return np.asarray(emb), {"kl_divergence": float(emb.kl_divergence)}


def _pacmap(X: np.ndarray, params: dict[str, Any], seed: int) -> tuple[Any, dict[str, Any]]:
    import pacmap

    est = pacmap.PaCMAP(n_components=params["n_components"], n_neighbors=params["n_neighbors"],
                        MN_ratio=params["MN_ratio"], FP_ratio=params["FP_ratio"], verbose=False)
    return est.fit_transform(np.ascontiguousarray(X, dtype=np.float32), init="pca"), {}


def _sklearn(method: str) -> Callable[..., tuple[Any, dict[str, Any]]]:
    def fit(X: np.ndarray, params: dict[str, Any], seed: int) -> tuple[Any, dict[str, Any]]:
        if method == "pca":
            from sklearn.decomposition import PCA

            return PCA(n_components=params["n_components"], random_state=seed).fit_transform(X), {}
        from sklearn.manifold import TSNE

        est = TSNE(n_components=params["n_components"], perplexity=params["perplexity"],
                   max_iter=params["n_iter"], init="pca", learning_rate="auto", n_jobs=-1,
                   random_state=seed)
        Y = est.fit_transform(X)
        return Y, {"kl_divergence": float(est.kl_divergence_)}

    return fit


def _cuml(method: str) -> Callable[..., tuple[Any, dict[str, Any]]]:  # pragma: no cover - GPU
    def fit(X: np.ndarray, params: dict[str, Any], seed: int) -> tuple[Any, dict[str, Any]]:
        import cuml

        if method == "pca":
            est = cuml.PCA(n_components=params["n_components"], random_state=seed, output_type="numpy")
        elif method == "umap":
            est = cuml.manifold.UMAP(n_neighbors=params["n_neighbors"], min_dist=params["min_dist"],
                                     n_components=params["n_components"], random_state=seed,
                                     output_type="numpy")
        else:
            est = cuml.manifold.TSNE(n_components=params["n_components"], perplexity=params["perplexity"],
                                     n_iter=params["n_iter"], random_state=seed, output_type="numpy")
        Y = est.fit_transform(X)
        extra = {"backend": "cuml"}
        if method == "tsne" and getattr(est, "kl_divergence_", None) is not None:
            extra["kl_divergence"] = float(est.kl_divergence_)
        return Y, extra

    return fit


def get_fit(method: str, impl: str, backend: str) -> Callable[..., tuple[Any, dict[str, Any]]]:
    """The fit function of ``method`` run by ``impl`` ("embedscope" or a peer name)."""
    if impl == "embedscope":
        return _ours(method, backend)
    peers: dict[str, Callable[[str], Callable[..., tuple[Any, dict[str, Any]]]]] = {
        "umap-learn": lambda _: _umap_learn, "opentsne": lambda _: _opentsne,
        "sklearn": _sklearn, "cuml": _cuml, "pacmap": lambda _: _pacmap}
    if impl in peers:
        return peers[impl](method)
    raise ValueError(f"unknown implementation {impl!r}; choose embedscope or one of {', '.join(PEERS)}")
