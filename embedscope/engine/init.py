"""Starting layouts for graph embeddings: spectral, PCA, random or given.

Spectral init takes the leading non-trivial eigenvectors of the normalised adjacency
``D^-1/2 A D^-1/2`` (the smallest of the normalised Laplacian). It needs a connected,
well-conditioned graph; otherwise we fall back to PCA of the data and say why,
never silently to random. The eigensolver is ARPACK with a small Krylov basis
(``ncv`` <= 32 vectors, so memory stays at ~32 x N floats whatever N is) and a bounded
number of restarts; dense ``eigh`` below 2,000 points.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

INIT_CHOICES = ("spectral", "pca", "random")
#: Up to this many points the spectral problem is solved densely (exact, quick).
DENSE_SPECTRAL_MAX = 2000
#: Above this many points spectral init is replaced by PCA init (documented switch):
#: ARPACK on a million-node graph costs minutes for a layout SGD mostly rewrites.
SPECTRAL_MAX_POINTS = 500_000
_KRYLOV_MAX = 32


class InitFallback(Exception):
    """Spectral init is not possible; ``str(exc)`` says why."""


def spectral_layout(graph: sp.spmatrix, n_components: int, *, seed: int = 0) -> np.ndarray:
    """Leading non-trivial eigenvectors of the normalised graph, float32 (n, c).

    Parameters
    ----------
    graph : sparse matrix of shape (n, n)
        Symmetric non-negative weights.
    n_components : int
    seed : int, default=0
        Seeds ARPACK's start vector.

    Raises
    ------
    InitFallback
        Disconnected graph, too few points, or an eigensolver failure.
    """
    from scipy.sparse.csgraph import connected_components

    n = graph.shape[0]
    k = n_components + 1
    if n <= k + 1:
        raise InitFallback(f"{n} points are too few for a {n_components}-D spectral layout")
    n_parts, _ = connected_components(graph, directed=False)
    if n_parts > 1:
        raise InitFallback(f"the kNN graph has {n_parts} disconnected components")
    degrees = np.asarray(graph.sum(axis=1)).ravel()
    if not np.all(degrees > 0):
        raise InitFallback("some points have no graph edges")
    scale = sp.diags(1.0 / np.sqrt(degrees))
    normalised = (scale @ graph @ scale).tocsr().astype(np.float64)
    try:
        if n <= DENSE_SPECTRAL_MAX:
            values, vectors = np.linalg.eigh(normalised.toarray())
            order = np.argsort(values)[::-1][:k]
        else:
            from scipy.sparse.linalg import eigsh

            rng = np.random.default_rng(seed)
            start = np.sqrt(degrees) + 1e-3 * rng.standard_normal(n)
            values, vectors = eigsh(normalised, k=k, which="LA", ncv=min(n - 1, max(2 * k + 1, _KRYLOV_MAX)),
                                    tol=1e-4, v0=start, maxiter=max(200, n // 100))
            order = np.argsort(values)[::-1]
    except Exception as exc:  # ArpackNoConvergence, LinAlgError
        raise InitFallback(f"the spectral eigensolver failed ({type(exc).__name__})") from exc
    layout = vectors[:, order[1:k]]
    spread = layout.std(axis=0)
    if not np.all(np.isfinite(layout)) or np.any(spread < 1e-12):
        raise InitFallback("the spectral problem is ill-conditioned (degenerate eigenvectors)")
    return layout.astype(np.float32)


def pca_layout(data: np.ndarray, n_components: int, *, seed: int = 0) -> np.ndarray:
    """Projection of ``data`` on its first principal axes, float32 (n, c).

    Columns beyond the data's rank are filled with tiny seeded noise so the layout
    never has a constant axis.
    """
    from embedscope.engine.pca import PCA

    n, d = data.shape
    usable = min(n_components, d, n)
    rng = np.random.default_rng(seed)
    layout = np.zeros((n, n_components), dtype=np.float32)
    if usable >= 1:
        projected = PCA(n_components=usable, random_state=seed).fit_transform(np.asarray(data))
        layout[:, :usable] = np.asarray(projected, dtype=np.float32)
    flat = layout.std(axis=0) < 1e-12
    if np.any(flat):
        layout[:, flat] = rng.normal(scale=1e-4, size=(n, int(flat.sum()))).astype(np.float32)
    return layout


def random_layout(n: int, n_components: int, *, seed: int = 0) -> np.ndarray:
    """Uniform points in ``[-10, 10]^c``, float32 (n, c)."""
    return np.random.default_rng(seed).uniform(-10.0, 10.0, size=(n, n_components)).astype(np.float32)


def rescale(layout: np.ndarray, *, seed: int = 0, box: float = 10.0) -> np.ndarray:
    """Each axis mapped to ``[0, box]`` (UMAP's starting scale), float32 C-contiguous.

    A constant axis gets tiny noise instead of a division by zero.
    """
    layout = np.asarray(layout, dtype=np.float64)
    low, high = layout.min(axis=0), layout.max(axis=0)
    width = high - low
    flat = width <= 1e-12 * np.maximum(1.0, np.abs(high))
    out = box * (layout - low) / np.where(flat, 1.0, width)
    if np.any(flat):
        rng = np.random.default_rng(seed)
        out[:, flat] = box / 2 + rng.normal(scale=1e-3, size=(layout.shape[0], int(flat.sum())))
    return np.ascontiguousarray(out, dtype=np.float32)


def initial_layout(
    init: Any,
    n_components: int,
    *,
    graph: sp.spmatrix,
    data: np.ndarray,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, str]:
    """The starting layout for ``init`` and what was actually used.

    Parameters
    ----------
    init : {"spectral", "pca", "random"} or array of shape (n, n_components)
    n_components : int
    graph : sparse matrix (n, n)
        The symmetric fuzzy graph (for spectral).
    data : ndarray (n, d)
        The (preprocessed) vectors (for PCA and the spectral fallback).
    seed : int
    log : callable, optional
        Receives the fallback reason, if any.

    Returns
    -------
    layout : float32 array (n, n_components), rescaled to ``[0, 10]`` per axis
    used : str
        ``"spectral"``, ``"pca"``, ``"random"``, ``"array"``, or
        ``"pca (spectral fallback: <reason>)"``.
    """
    n = graph.shape[0]
    if isinstance(init, str):
        name = init.lower()
        if name not in INIT_CHOICES:
            raise ValueError(f"init={init!r} must be one of {', '.join(INIT_CHOICES)} or an array")
        if name == "random":
            return rescale(random_layout(n, n_components, seed=seed), seed=seed), "random"
        if name == "spectral":
            try:
                if n > SPECTRAL_MAX_POINTS:
                    raise InitFallback(f"{n:,} points exceed the spectral limit of {SPECTRAL_MAX_POINTS:,}")
                layout = spectral_layout(graph, n_components, seed=seed)
                return rescale(layout, seed=seed), "spectral"
            except InitFallback as reason:
                used = f"pca (spectral fallback: {reason})"
                if log is not None:
                    log(f"spectral init not used: {reason}; using PCA init")
                return rescale(pca_layout(data, n_components, seed=seed), seed=seed), used
        return rescale(pca_layout(data, n_components, seed=seed), seed=seed), "pca"
    layout = np.asarray(init)
    if layout.shape != (n, n_components):
        raise ValueError(f"init array has shape {layout.shape}; expected ({n}, {n_components})")
    if not np.issubdtype(layout.dtype, np.number) or not np.all(np.isfinite(layout)):
        raise ValueError("init array must be numeric and finite")
    return np.ascontiguousarray(layout, dtype=np.float32), "array"
