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

from embedscope.kernels._threads import for_rows

#: Smallest bandwidth, as a fraction of the mean neighbour distance (keeps tight
#: clusters and duplicate rows from producing sigma = 0 and infinite weights).
MIN_SIGMA_SCALE = 1e-3
_BISECT_STEPS = 64
_TOLERANCE = 1e-5


@numba.njit(cache=True)
def _mean_abs(distances):  # pragma: no cover - numba
    n, k = distances.shape
    mean_all = 0.0
    for i in range(n):
        for j in range(k):
            mean_all += abs(distances[i, j])
    return mean_all / max(n * k, 1)


def smooth_knn_dist(distances: np.ndarray, target: float,
                    rho_from_nearest: bool) -> tuple[np.ndarray, np.ndarray]:
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
    n = distances.shape[0]
    sigmas = np.empty(n, dtype=np.float32)
    rhos = np.empty(n, dtype=np.float32)
    for_rows(_smooth_rows, n, distances, target, rho_from_nearest, _mean_abs(distances), sigmas, rhos)
    return sigmas, rhos


@numba.njit(cache=True, nogil=True)
def _smooth_rows(start, stop, distances, target, rho_from_nearest, mean_all, sigmas, rhos):  # pragma: no cover
    """Rows ``start ... stop - 1`` of :func:`smooth_knn_dist`."""
    k = distances.shape[1]
    for i in range(start, stop):
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


@numba.njit(cache=True, nogil=True)
def _membership_rows(start, stop, distances, sigmas, rhos, weights):  # pragma: no cover - numba
    k = distances.shape[1]
    for i in range(start, stop):
        for j in range(k):
            gap = distances[i, j] - rhos[i]
            weights[i, j] = 1.0 if gap <= 0.0 else np.exp(-gap / sigmas[i])


def membership_strengths(distances: np.ndarray, sigmas: np.ndarray, rhos: np.ndarray) -> np.ndarray:
    """Directed memberships ``exp(-max(0, d - rho) / sigma)`` as float32 (n, k)."""
    weights = np.empty(distances.shape, dtype=np.float32)
    for_rows(_membership_rows, distances.shape[0], distances, sigmas, rhos, weights)
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


# ----------------------------------------------------------------------------- supervised UMAP
#
# umap-learn's supervised and semi-supervised UMAP: the data graph is intersected with
# a graph of the target ``y``, then each point's local connectivity is reset (its
# strongest edge back to 1) and the result symmetrised again. These are host (scipy)
# steps on the fuzzy graph, so every backend with a kernel table runs them.

#: Penalty distance of an edge with an unlabelled end (label -1): its weight is scaled
#: by ``exp(-UNKNOWN_DIST)`` (about 0.37), so unlabelled points keep their neighbours.
UNKNOWN_DIST = 1.0


def far_distance(target_weight: float) -> float:
    """Penalty distance of an edge between two different labels for ``target_weight``.

    ``2.5 / (1 - target_weight)``: 5 at umap-learn's default 0.5 (edges scaled by
    ``exp(-5)``, 0.0067), and so large at 1.0 that such edges vanish.
    """
    return 1.0e12 if target_weight >= 1.0 else 2.5 / (1.0 - target_weight)


def categorical_intersection(graph: sp.csr_matrix, codes: np.ndarray, far_dist: float,
                             unknown_dist: float = UNKNOWN_DIST) -> sp.csr_matrix:
    """The fuzzy graph intersected with the categorical target graph of ``codes``.

    Parameters
    ----------
    graph : csr_matrix (n, n)
        The symmetric fuzzy graph of the data.
    codes : int array (n,)
        A label code per point, -1 for unlabelled.
    far_dist : float
        Edges between two different labels are scaled by ``exp(-far_dist)``
        (:func:`far_distance`).
    unknown_dist : float, default=UNKNOWN_DIST
        Edges with an unlabelled end are scaled by ``exp(-unknown_dist)``.

    Returns
    -------
    csr_matrix (n, n), float32
        Same sparsity as ``graph`` (edges scaled to 0 dropped), before the local
        connectivity is reset (:func:`reset_local_connectivity`).
    """
    graph = graph.tocsr().astype(np.float32)
    rows = np.repeat(np.arange(graph.shape[0]), np.diff(graph.indptr))
    head, tail = codes[rows], codes[graph.indices]
    unknown = (head < 0) | (tail < 0)
    factor = np.where(unknown, np.exp(-unknown_dist), np.where(head == tail, 1.0, np.exp(-far_dist)))
    out = sp.csr_matrix(((graph.data * factor).astype(np.float32), graph.indices.copy(), graph.indptr.copy()),
                        shape=graph.shape)
    out.eliminate_zeros()
    return out


def general_intersection(data_graph: sp.csr_matrix, target_graph: sp.csr_matrix,
                         target_weight: float) -> sp.csr_matrix:
    """Fuzzy intersection of the data graph with a target graph (continuous ``y``).

    Every edge of either graph is kept; where one graph lacks it, that graph's
    weight counts as half its smallest weight (a missing edge is weak, not
    impossible). The two weights are multiplied with the lesser-weighted graph's
    raised to ``w / (1 - w)`` (or ``(1 - w) / w``), ``w = target_weight``: at 0.5 a
    plain product, at 0 the data graph alone, at 1 the target graph alone.
    """
    left = data_graph.tocsr().astype(np.float64)
    right = target_graph.tocsr().astype(np.float64)
    left_floor = max(float(left.data.min()) / 2.0, 1e-8) if left.nnz else 1e-8
    right_floor = max(float(right.data.min()) / 2.0, 1e-8) if right.nnz else 1e-8
    # the union pattern, with each graph's weight or its floor
    pattern = (left + right).tocsr()
    pattern.sort_indices()
    coo = pattern.tocoo()
    lvals = np.asarray(left[coo.row, coo.col]).ravel()
    rvals = np.asarray(right[coo.row, coo.col]).ravel()
    lvals = np.where(lvals > 0.0, lvals, left_floor)
    rvals = np.where(rvals > 0.0, rvals, right_floor)
    w = float(target_weight)
    if w <= 0.0:
        vals = lvals
    elif w >= 1.0:
        vals = rvals
    elif w < 0.5:
        vals = lvals * rvals ** (w / (1.0 - w))
    else:
        vals = lvals ** ((1.0 - w) / w) * rvals
    out = sp.csr_matrix((vals.astype(np.float32), (coo.row, coo.col)), shape=left.shape)
    out.eliminate_zeros()
    return out


def reset_local_connectivity(graph: sp.csr_matrix) -> sp.csr_matrix:
    """Each row scaled so its strongest edge is 1, then the fuzzy union with the transpose.

    After an intersection a point's edges may all be weak (every neighbour has
    another label); UMAP's graph assumes each point is fully connected to its
    nearest neighbour, so that is restored, and the graph made symmetric again.
    """
    graph = graph.tocsr().astype(np.float32)
    graph.eliminate_zeros()
    counts = np.diff(graph.indptr)
    row_max = np.zeros(graph.shape[0], dtype=np.float32)
    filled = counts > 0
    if graph.nnz:
        row_max[filled] = np.maximum.reduceat(graph.data, graph.indptr[:-1][filled])
    scale = np.where(row_max > 0.0, 1.0 / np.where(row_max > 0.0, row_max, 1.0), 0.0).astype(np.float32)
    directed = sp.csr_matrix((graph.data * np.repeat(scale, counts), graph.indices, graph.indptr),
                             shape=graph.shape)
    transpose = directed.T.tocsr()
    out = (directed + transpose - directed.multiply(transpose)).tocsr()
    out.eliminate_zeros()
    out.sort_indices()
    return out.astype(np.float32)
