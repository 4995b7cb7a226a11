"""embedscope: dimensionality reduction and plots for millions of embedding vectors.

>>> import embedscope
>>> X, meta = embedscope.load_vectors("builtin:mixture:2000x20")
>>> Y = embedscope.PCA(n_components=2).fit_transform(X)
"""

from __future__ import annotations

from typing import Any

# embedscope.kernels first: it gives numba a cache directory before any module
# (viz and engine ones too) compiles with cache=True.
import embedscope.kernels  # noqa: F401
from embedscope.backends import Backend, BackendUnavailable, Unsupported, resolve_backend
from embedscope.errors import DataError

__version__ = "0.1.0"

__all__ = [
    "PCA",
    "TSNE",
    "UMAP",
    "Backend",
    "BackendUnavailable",
    "DataError",
    "PaCMAP",
    "Unsupported",
    "__version__",
    "knn_accuracy",
    "knn_recall",
    "load_builtin",
    "load_vectors",
    "make_mixture",
    "neighborhood_change",
    "neighborhood_preservation",
    "random_triplet_accuracy",
    "reduce",
    "resolve_backend",
    "trustworthiness",
]

# The reducers and metrics import scikit-learn (their base classes, ~1.7 s) and the
# numba kernels, the loaders pandas; every `embedscope plot`/`serve`/`info` and each
# `import embedscope` would pay for them, so they load when first asked for.
_LAZY = {
    "load_builtin": "embedscope.io.load",
    "load_vectors": "embedscope.io.load",
    "make_mixture": "embedscope.datasets",
    "PCA": "embedscope.engine.pca",
    "UMAP": "embedscope.engine.umap",
    "TSNE": "embedscope.engine.tsne",
    "PaCMAP": "embedscope.engine.pacmap",
    "reduce": "embedscope.engine.reduce",
    "knn_accuracy": "embedscope.engine.metrics",
    "knn_recall": "embedscope.engine.metrics",
    "neighborhood_change": "embedscope.engine.metrics",
    "neighborhood_preservation": "embedscope.engine.metrics",
    "random_triplet_accuracy": "embedscope.engine.metrics",
    "trustworthiness": "embedscope.engine.metrics",
}


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'embedscope' has no attribute {name!r}")
