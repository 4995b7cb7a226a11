"""k-nearest-neighbour search.

Exact search is blocked: a block of query rows against all data rows is one BLAS
matrix product (``Q @ D.T``), turned into distances and reduced to the k smallest per
row by a parallel numba selection. Memory stays at one block of ``block_rows x n``
floats whatever N is.

Contract (shared by every twin of this module):

- ``indices``: int32 array ``(n_queries, k)``, ``distances``: float32 array
  ``(n_queries, k)``, each row sorted by increasing distance, ties by index.
- Without ``queries`` the search is a self-join and a point is never its own
  neighbour (exact duplicates of it are, at distance 0).
- Metrics: ``"euclidean"`` (true, not squared, distance), ``"cosine"``
  (``1 - cos``; an all-zero row is at distance 1 from everything) and
  ``"inner_product"`` (``-<q, x>``, so larger products are nearer; distances may be
  negative).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

METRICS = ("euclidean", "cosine", "inner_product")
_ALIASES = {"l2": "euclidean", "ip": "inner_product", "dot": "inner_product", "angular": "cosine"}
_METRIC_CODE = {"euclidean": 0, "cosine": 1, "inner_product": 2}

#: Bytes of one distance block (block_rows x n float32).
BLOCK_BYTES = 128 * 2**20


def check_metric(metric: Any) -> str:
    """Canonical metric name, or a ``ValueError`` naming the choices."""
    if isinstance(metric, str):
        name = _ALIASES.get(metric.lower(), metric.lower())
        if name in METRICS:
            return name
    raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")


def prepare(X: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """float32 rows ready for the metric (unit rows for cosine) and squared norms."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    if metric == "cosine":
        norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64)).astype(np.float32)
        # Zero rows stay zero: their cosine similarity is 0, distance 1, never NaN.
        X = X / np.where(norms > 0, norms, 1.0)[:, None]
    sq = np.einsum("ij,ij->i", X, X, dtype=np.float64).astype(np.float32)
    return X, sq


@numba.njit(parallel=True, cache=True, fastmath=False)
def _select_topk(gram, q_sq, d_sq, k, metric_code, self_offset, out_idx, out_dist):  # pragma: no cover - numba
    """Per row of a gram block, keep the k smallest distances (sorted insertion)."""
    n_rows, n_cols = gram.shape
    for r in numba.prange(n_rows):
        best_d = np.full(k, np.inf, dtype=np.float32)
        best_i = np.full(k, -1, dtype=np.int32)
        skip = self_offset + r if self_offset >= 0 else -1
        worst = np.inf
        for c in range(n_cols):
            if c == skip:
                continue
            g = gram[r, c]
            if metric_code == 0:
                dist = q_sq[r] + d_sq[c] - 2.0 * g
                if dist < 0.0:
                    dist = 0.0
            elif metric_code == 1:
                dist = 1.0 - g
                if dist < 0.0:
                    dist = 0.0
            else:
                dist = -g
            if dist < worst:
                pos = k - 1
                while pos > 0 and best_d[pos - 1] > dist:
                    best_d[pos] = best_d[pos - 1]
                    best_i[pos] = best_i[pos - 1]
                    pos -= 1
                best_d[pos] = dist
                best_i[pos] = c
                worst = best_d[k - 1]
        for j in range(k):
            out_idx[r, j] = best_i[j]
            out_dist[r, j] = best_d[j]


@numba.njit(parallel=True, cache=True)
def _exact_euclidean(queries, data, idx, dist):  # pragma: no cover - numba
    """Recompute selected euclidean distances directly (the gram trick loses digits)."""
    n, k = idx.shape
    d = data.shape[1]
    for r in numba.prange(n):
        for j in range(k):
            c = idx[r, j]
            if c < 0:
                continue
            acc = 0.0
            for f in range(d):
                diff = np.float64(queries[r, f]) - np.float64(data[c, f])
                acc += diff * diff
            dist[r, j] = np.float32(np.sqrt(acc))
        # keep rows sorted after the exact recomputation (insertion sort, k is small)
        for j in range(1, k):
            dj, ij = dist[r, j], idx[r, j]
            p = j
            while p > 0 and (dist[r, p - 1] > dj or (dist[r, p - 1] == dj and idx[r, p - 1] > ij)):
                dist[r, p] = dist[r, p - 1]
                idx[r, p] = idx[r, p - 1]
                p -= 1
            dist[r, p] = dj
            idx[r, p] = ij


def exact_knn(
    data: np.ndarray,
    k: int,
    metric: str = "euclidean",
    queries: np.ndarray | None = None,
    *,
    block_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours by blocked matrix products (CPU twin).

    Parameters
    ----------
    data : ndarray of shape (n, d)
        Points to search.
    k : int
        Neighbours per query. For a self-join, ``k <= n - 1``; else ``k <= n``.
    metric : {"euclidean", "cosine", "inner_product"}, default="euclidean"
    queries : ndarray of shape (m, d), optional
        Query points; None searches ``data`` against itself, excluding each point.
    block_rows : int, optional
        Query rows per matrix product; default keeps a block near 128 MiB.

    Returns
    -------
    indices : ndarray of shape (m, k), int32
    distances : ndarray of shape (m, k), float32
    """
    metric = check_metric(metric)
    n = data.shape[0]
    self_join = queries is None
    limit = n - 1 if self_join else n
    if not 1 <= k <= limit:
        raise ValueError(f"k={k} neighbours asked of {n} points; k must be between 1 and {limit}")
    D, d_sq = prepare(data, metric)
    if self_join:
        Q, q_sq = D, d_sq
    else:
        if queries.ndim != 2 or queries.shape[1] != data.shape[1]:
            raise ValueError(f"queries have shape {queries.shape}; expected (m, {data.shape[1]})")
        Q, q_sq = prepare(queries, metric)
    m = Q.shape[0]
    rows = block_rows or int(np.clip(BLOCK_BYTES // (4 * max(n, 1)), 32, 4096))
    indices = np.empty((m, k), dtype=np.int32)
    distances = np.empty((m, k), dtype=np.float32)
    code = _METRIC_CODE[metric]
    for start in range(0, m, rows):
        stop = min(m, start + rows)
        gram = Q[start:stop] @ D.T
        _select_topk(gram, q_sq[start:stop], d_sq, k, code, start if self_join else -1,
                     indices[start:stop], distances[start:stop])
    if metric == "euclidean":
        _exact_euclidean(Q, D, indices, distances)
    return indices, distances


def nearest_neighbors(
    X: np.ndarray,
    n_neighbors: int,
    metric: str = "euclidean",
    *,
    method: str = "auto",
    random_state: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The kNN graph of ``X`` (self excluded): the stage UMAP and t-SNE share.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    n_neighbors : int
        Neighbours per point, not counting the point itself.
    metric : {"euclidean", "cosine", "inner_product"}, default="euclidean"
    method : {"auto", "exact"}, default="auto"
        ``"exact"`` is the blocked search.
    random_state : int, optional
        Seed for approximate methods.

    Returns
    -------
    indices : ndarray of shape (n, n_neighbors), int32
    distances : ndarray of shape (n, n_neighbors), float32
    """
    metric = check_metric(metric)
    if method not in ("auto", "exact"):
        raise ValueError(f"unknown kNN method {method!r}; choose 'auto' or 'exact'")
    return exact_knn(X, n_neighbors, metric)
