"""Spectral layout of a CSR graph with the eigensolver of the graph's own library.

The GPU twin of ``engine.stages.spectral_layout``: the same problem (the leading
eigenvectors of the normalised adjacency ``D^-1/2 A D^-1/2``, the first one trivial),
the same start vector and solver settings, solved by ``scipy.sparse.linalg.eigsh``
(ARPACK) for a scipy graph and by ``cupyx.scipy.sparse.linalg.eigsh`` (thick-restart
Lanczos on the GPU) for a cupyx graph, so a graph built on the device is never
copied back for its init. cupyx's solver does not report non-convergence, so every
result is checked by its residuals ``||A v - lambda v||`` here, on both libraries.

Only the connectivity test leaves the device: the graph's structure (int32 columns,
4 bytes per edge) goes to scipy's ``connected_components``, since cupyx's needs
pylibcugraph.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embedscope.kernels.graph.union import is_device_csr

#: Up to this many points the problem is solved densely (the CPU twin's threshold).
DENSE_MAX = 2000
#: Krylov basis of the sparse solver (memory ~ KRYLOV x N floats).
KRYLOV = 32
#: Largest residual ``||A v - lambda v||`` (unit v) accepted from the solver.
MAX_RESIDUAL = 1e-2
#: Restarts of the device solver: bounds the init's time (about a second per 100
#: restarts at 1M points, estimated, not yet measured); past it the residual check
#: sends the init to the PCA fallback.
DEVICE_MAX_RESTARTS = 300


class SpectralFailed(Exception):
    """The spectral layout cannot be computed; ``str(exc)`` says why."""


def _modules(graph: Any) -> tuple[Any, Any]:
    """(array module, sparse linalg module) of ``graph``'s library."""
    if is_device_csr(graph):  # pragma: no cover - needs a GPU
        import cupy
        import cupyx.scipy.sparse.linalg as linalg

        return cupy, linalg
    import scipy.sparse.linalg as linalg

    return np, linalg


def _components(graph: Any) -> int:
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    if is_device_csr(graph):  # pragma: no cover - needs a GPU
        indptr, indices = graph.indptr.get(), graph.indices.get()
        structure = sp.csr_matrix((np.ones(indices.size, np.int8), indices, indptr), shape=graph.shape)
    else:
        structure = graph
    return int(connected_components(structure, directed=False)[0])


def spectral_layout_xp(graph: Any, n_components: int, *, seed: int = 0) -> Any:
    """Leading non-trivial eigenvectors of the normalised graph, float32 (n, c), on the graph's device.

    Parameters
    ----------
    graph : scipy or cupyx CSR matrix (n, n)
        Symmetric, non-negative weights.
    n_components : int
    seed : int, default=0
        Seeds the start vector.

    Returns
    -------
    layout : numpy or cupy array (n, n_components), float32

    Raises
    ------
    SpectralFailed
        Too few points, a disconnected graph, isolated points, an eigensolver error,
        residuals above ``MAX_RESIDUAL`` or degenerate eigenvectors.
    """
    xp, linalg = _modules(graph)
    n = graph.shape[0]
    k = n_components + 1
    if n <= k + 1:
        raise SpectralFailed(f"{n} points are too few for a {n_components}-D spectral layout")
    n_parts = _components(graph)
    if n_parts > 1:
        raise SpectralFailed(f"the kNN graph has {n_parts} disconnected components")
    degrees = xp.asarray(graph.sum(axis=1), dtype=xp.float64).ravel()
    if not bool((degrees > 0).all()):
        raise SpectralFailed("some points have no graph edges")
    inv_sqrt = 1.0 / xp.sqrt(degrees)
    rows = xp.repeat(xp.arange(n, dtype=xp.int64), xp.diff(graph.indptr).astype(xp.int64))
    data = graph.data.astype(xp.float64) * inv_sqrt[rows] * inv_sqrt[graph.indices]
    del rows
    normalised = type(graph)((data, graph.indices, graph.indptr), shape=graph.shape)
    try:
        if n <= DENSE_MAX:
            values, vectors = xp.linalg.eigh(normalised.toarray())
            order = xp.argsort(values)[::-1][:k]
        else:
            # the host twin's bound (ARPACK raises past it); the device's is a fixed cap
            restarts = DEVICE_MAX_RESTARTS if xp is not np else max(200, n // 100)
            rng = np.random.default_rng(seed)
            start = xp.asarray(np.sqrt(_host(degrees)) + 1e-3 * rng.standard_normal(n))
            values, vectors = linalg.eigsh(normalised, k=k, which="LA", ncv=min(n - 1, max(2 * k + 1, KRYLOV)),
                                           tol=1e-4, v0=start, maxiter=restarts)
            order = xp.argsort(values)[::-1]
    except Exception as exc:  # ArpackNoConvergence, LinAlgError, CUDA solver errors
        raise SpectralFailed(f"the spectral eigensolver failed ({type(exc).__name__})") from exc
    values, vectors = values[order], vectors[:, order]
    residual = normalised @ vectors - vectors * values[None, :]
    worst = float(xp.sqrt((residual * residual).sum(axis=0)).max())
    if not np.isfinite(worst) or worst > MAX_RESIDUAL:
        raise SpectralFailed(f"the spectral eigensolver did not converge (residual {worst:.2g})")
    layout = vectors[:, 1:k]
    spread = layout.std(axis=0)
    if not bool(xp.isfinite(layout).all()) or bool((spread < 1e-12).any()):
        raise SpectralFailed("the spectral problem is ill-conditioned (degenerate eigenvectors)")
    return layout.astype(xp.float32)


def _host(x: Any) -> np.ndarray:
    return x.get() if hasattr(x, "get") else np.asarray(x)
