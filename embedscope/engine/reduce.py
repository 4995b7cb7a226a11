"""``reduce(...)``: one call for any reducer, and the registry the CLI reads."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embedscope.engine.base import BaseReducer

#: Method name -> "module:Class". Reducers register here; nothing is imported until used.
METHODS: dict[str, str] = {
    "pca": "embedscope.engine.pca:PCA",
    "umap": "embedscope.engine.umap:UMAP",
    "tsne": "embedscope.engine.tsne:TSNE",
    "pacmap": "embedscope.engine.pacmap:PaCMAP",
}


def reducer_class(method: str) -> type[BaseReducer]:
    """The estimator class registered for ``method``."""
    key = method.lower() if isinstance(method, str) else method
    if key not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    module_name, _, class_name = METHODS[key].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def make_reducer(method: str, **params: Any) -> Any:
    """Construct the reducer for ``method``; unknown parameters are a ``ValueError``."""
    cls = reducer_class(method)
    valid = set(cls._param_names())
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ValueError(f"{cls.__name__} has no parameter(s) {unknown}; valid: {sorted(valid)}")
    return cls(**params)


def reduce(X: Any, method: str = "umap", *, n_components: int = 2, backend: str = "auto",
           sample_size: int | None = None, **params: Any) -> Any:
    """Reduce ``X`` to ``n_components`` dimensions with one call.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Anything :func:`embedscope.load_vectors` accepts as an in-memory source.
    method : {"pca", "umap", "tsne", "pacmap"}, default="umap"
    n_components : int, default=2
    backend : {"auto", "cpu", "cuda", "cuml"}, default="auto"
    sample_size : int, optional
        Dask input only: UMAP and t-SNE are fitted on a seeded sample of this many
        rows (default 100,000) and every partition is placed by ``transform`` on the
        workers; see :class:`embedscope.engine.distributed.SampledReducer`.
    **params
        Further parameters of the reducer (``n_neighbors``, ``perplexity``, ...).

    Returns
    -------
    array of shape (n_samples, n_components)
        In the input's array type (cupy in, cupy out, dask in, lazy dask out).

    Examples
    --------
    >>> from embedscope import make_mixture, reduce
    >>> X, _ = make_mixture(500, 10)
    >>> reduce(X, "pca").shape
    (500, 2)
    """
    from embedscope._array import is_dask
    from embedscope.io.load import load_vectors

    vectors = load_vectors(X).vectors if not hasattr(X, "shape") or hasattr(X, "columns") else X
    reducer = make_reducer(method, n_components=n_components, backend=backend, **params)
    if is_dask(vectors) and method.lower() != "pca":
        from embedscope.engine.distributed import DEFAULT_SAMPLE, SampledReducer

        sampled = SampledReducer(reducer, sample_size=sample_size or DEFAULT_SAMPLE,
                                 verbose=params.get("verbose", False))
        return sampled.fit_transform(vectors)
    out = reducer.fit_transform(vectors)
    # UMAP(output_dens=True) returns (embedding, r_orig, r_emb); the radii stay on the reducer
    return out[0] if isinstance(out, tuple) else out
