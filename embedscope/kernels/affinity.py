"""UMAP's fuzzy simplicial set: per-point smooth kNN distances and their union.

Each point ``i`` gets a local connectivity ``rho_i`` (the distance to its nearest
neighbour at non-zero distance, so duplicates do not collapse the scale) and a
bandwidth ``sigma_i`` found by bisection so that

    sum_j exp(-max(0, d_ij - rho_i) / sigma_i) = log2(n_neighbors)

The directed memberships ``w_ij`` are symmetrised by the fuzzy union
``A + A.T - A * A.T``. Contract: distances come in sorted ascending per row with the
point itself excluded (``kernels.knn``); ``n_neighbors`` counts the point itself, as in
umap-learn, so a row holds ``n_neighbors - 1`` neighbours.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

#: Smallest bandwidth, as a fraction of the mean neighbour distance (keeps tight
#: clusters and duplicate rows from producing sigma = 0 and infinite weights).
MIN_SIGMA_SCALE = 1e-3
_BISECT_STEPS = 64
_TOLERANCE = 1e-5


@numba.njit(parallel=True, cache=True)
def smooth_knn_dist(distances, target, rho_from_nearest):  # pragma: no cover - numba
    """Per-row ``(sigma, rho)`` of sorted kNN distances (self excluded).

    Parameters
    ----------
    distances : float32 array (n, k), each row ascending
    target : float
        ``log2(n_neighbors)``: the sum of memberships each row is tuned to.
    rho_from_nearest : bool
        True takes ``rho`` as the nearest distance whatever its sign (metrics whose
        distances may be negative: inner product); False as the nearest non-zero one.

    Returns
    -------
    sigmas, rhos : float32 arrays (n,)
    """
    n, k = distances.shape
    mean_all = 0.0
    for i in range(n):
        for j in range(k):
            mean_all += abs(distances[i, j])
    mean_all /= max(n * k, 1)
    sigmas = np.empty(n, dtype=np.float32)
    rhos = np.empty(n, dtype=np.float32)
    for i in numba.prange(n):
        rho = 0.0
        if rho_from_nearest:
            rho = distances[i, 0]
        else:
            for j in range(k):
                if distances[i, j] > 0.0:
                    rho = distances[i, j]
                    break
        lo, hi, mid = 0.0, np.inf, 1.0
        for _ in range(_BISECT_STEPS):
            total = 0.0
            for j in range(k):
                gap = distances[i, j] - rho
                total += np.exp(-gap / mid) if gap > 0.0 else 1.0
            if abs(total - target) < _TOLERANCE:
                break
            if total > target:
                hi = mid
                mid = (lo + hi) / 2.0
            else:
                lo = mid
                mid = mid * 2.0 if hi == np.inf else (lo + hi) / 2.0
        row_mean = 0.0
        for j in range(k):
            row_mean += abs(distances[i, j] - (rho if rho_from_nearest else 0.0))
        row_mean /= k
        floor = MIN_SIGMA_SCALE * (row_mean if (rho > 0.0 or rho_from_nearest) else mean_all)
        if mid < floor:
            mid = floor
        if mid <= 0.0:
            mid = 1e-12
        sigmas[i] = mid
        rhos[i] = rho
    return sigmas, rhos


@numba.njit(parallel=True, cache=True)
def membership_strengths(distances, sigmas, rhos):  # pragma: no cover - numba
    """Directed memberships ``exp(-max(0, d - rho) / sigma)`` as float32 (n, k)."""
    n, k = distances.shape
    weights = np.empty((n, k), dtype=np.float32)
    for i in numba.prange(n):
        for j in range(k):
            gap = distances[i, j] - rhos[i]
            weights[i, j] = 1.0 if gap <= 0.0 else np.exp(-gap / sigmas[i])
    return weights


def fuzzy_simplicial_set(
    knn_indices: np.ndarray,
    knn_distances: np.ndarray,
    n_neighbors: int,
    *,
    rho_from_nearest: bool = False,
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """The symmetric fuzzy graph of a kNN graph (CPU twin).

    Parameters
    ----------
    knn_indices : int array of shape (n, k)
        Neighbours, self excluded; negative entries are missing neighbours.
    knn_distances : float array of shape (n, k)
        Matching distances, ascending per row.
    n_neighbors : int
        UMAP's neighbourhood size, counting the point itself (``k + 1`` usually).
    rho_from_nearest : bool, default=False
        See :func:`smooth_knn_dist`.

    Returns
    -------
    graph : scipy.sparse.csr_matrix of shape (n, n), float32
        Symmetric, zero diagonal, weights in (0, 1].
    sigmas, rhos : ndarray of shape (n,), float32
    """
    n, k = knn_indices.shape
    distances = np.ascontiguousarray(knn_distances, dtype=np.float32)
    sigmas, rhos = smooth_knn_dist(distances, float(np.log2(n_neighbors)), rho_from_nearest)
    weights = membership_strengths(distances, sigmas, rhos)
    rows = np.repeat(np.arange(n, dtype=np.int32), k)
    cols = knn_indices.ravel().astype(np.int32, copy=False)
    vals = weights.ravel()
    keep = (cols >= 0) & (cols != rows)
    directed = sp.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=(n, n), dtype=np.float32)
    transpose = directed.T.tocsr()
    product = directed.multiply(transpose)
    graph = (directed + transpose - product).tocsr()
    graph.eliminate_zeros()
    graph.sort_indices()
    return graph.astype(np.float32), sigmas, rhos


def transform_memberships(knn_distances: np.ndarray, n_neighbors: int,
                          *, rho_from_nearest: bool = False) -> np.ndarray:
    """Directed memberships of new points to their fitted neighbours, float32 (m, k).

    ``UMAP.transform`` weights its attractive edges with them and starts each new
    point at their weighted mean of its neighbours' coordinates.
    """
    distances = np.ascontiguousarray(knn_distances, dtype=np.float32)
    sigmas, rhos = smooth_knn_dist(distances, float(np.log2(n_neighbors)), rho_from_nearest)
    return membership_strengths(distances, sigmas, rhos)
