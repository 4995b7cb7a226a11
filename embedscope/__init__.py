"""embedscope: dimensionality reduction and plots for millions of embedding vectors.

>>> import embedscope
>>> X, meta = embedscope.load_vectors("builtin:mixture:2000x20")
>>> Y = embedscope.PCA(n_components=2).fit_transform(X)
"""

from __future__ import annotations

from typing import Any

from embedscope.engine.data import DataError, load_builtin, load_vectors, make_mixture
from embedscope.engine.dispatch import Backend, BackendUnavailable, Unsupported, resolve_backend
from embedscope.engine.metrics import knn_accuracy, knn_recall, trustworthiness
from embedscope.engine.pca import PCA
from embedscope.engine.reduce import reduce

__version__ = "0.1.0"

__all__ = [
    "PCA",
    "TSNE",
    "UMAP",
    "Backend",
    "BackendUnavailable",
    "DataError",
    "Unsupported",
    "__version__",
    "knn_accuracy",
    "knn_recall",
    "load_builtin",
    "load_vectors",
    "make_mixture",
    "reduce",
    "resolve_backend",
    "trustworthiness",
]

_LAZY = {"UMAP": "embedscope.engine.umap", "TSNE": "embedscope.engine.tsne"}


def __getattr__(name: str) -> Any:
    # UMAP and t-SNE pull in their numba kernels; import them only when asked for.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'embedscope' has no attribute {name!r}")
