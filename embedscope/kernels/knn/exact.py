"""Exact k-nearest-neighbour search on the CPU (the reference twin).

Exact search is blocked: a block of query rows against all data rows is one BLAS
matrix product (``Q @ D.T``), turned into distances and reduced to the k smallest per
row by a parallel numba selection. Memory stays at one block of ``block_rows x n``
floats whatever N is.

The metrics with no matrix-product form (``metrics.DIRECT_METRICS``: manhattan,
chebyshev, minkowski, hamming, jaccard) are measured coordinate by coordinate by one
parallel numba scan per query row (:func:`_direct_topk`); the selected pairs are then
measured again in float64 (:func:`_exact_direct`), as the euclidean ones are.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from embedscope.kernels._threads import for_rows
from embedscope.kernels.knn.metrics import (
    _METRIC_CODE,
    DIRECT_METRICS,
    check_metric,
    minkowski_p,
    prepare,
)

#: Bytes of one gram tile (query rows x data columns, float32). A tile that stays in
#: the last-level cache is written by BLAS and read by the selection without a trip
#: to DRAM: 100k x 100k (d=50, k=90) took 25 s as whole-row blocks of 128 MiB, allocated
#: afresh each time, and 11 s as reused 8 MiB tiles (2 cores, 32 MiB L3).
TILE_BYTES = 8 * 2**20
#: Columns of a tile (all of them when the data has fewer points).
TILE_COLS = 8192



@numba.njit(cache=True, inline="always")
def _gram_raw(qs, ds, g, metric_code):  # pragma: no cover - numba
    """Distance from a gram entry before clamping at 0 (one formula for scan and filter)."""
    if metric_code == 0:
        return (qs + ds) - np.float32(2.0) * g
    if metric_code == 1:
        return np.float32(1.0) - g
    return -g


#: Columns per pre-filter chunk of the selection.
_CHUNK = 64


@numba.njit(nogil=True, cache=True)
def _select_topk(gram, q_sq, d_sq, col0, metric_code, self_offset, best_idx, best_dist):  # pragma: no cover - numba
    """Merge one gram tile (query rows x columns ``col0...``) into the rows' sorted top-k.

    ``best_idx`` / ``best_dist`` carry each row's k best over the tiles seen so far
    (start: -1 / inf). Columns arrive in increasing order and only a strictly closer
    point displaces one, so ties stay ordered by index.

    Once a row's k-th distance has settled, most chunks of 64 columns hold nothing
    closer. A branch-free count of the chunk's candidates (which LLVM vectorises, as
    it does not a float minimum) skips those chunks: 0.06 ns per entry against 0.9
    for the scan. The count uses the unclamped distance, never above the clamped one,
    so it cannot skip a candidate.
    """
    n_rows, n_cols = gram.shape
    k = best_idx.shape[1]
    zero = np.float32(0.0)
    tile_sq = d_sq[col0:col0 + n_cols]
    for r in range(n_rows):
        skip = self_offset + r - col0 if self_offset >= 0 else -1
        worst = best_dist[r, k - 1]
        qs = q_sq[r]
        row = gram[r]
        for c0 in range(0, n_cols, _CHUNK):
            c1 = min(n_cols, c0 + _CHUNK)
            hits = 0
            if metric_code == 0:  # one loop per metric: a branch inside would not vectorise
                for c in range(c0, c1):
                    hits += np.int32((qs + tile_sq[c]) - np.float32(2.0) * row[c] < worst)
            elif metric_code == 1:
                for c in range(c0, c1):
                    hits += np.int32(np.float32(1.0) - row[c] < worst)
            else:
                for c in range(c0, c1):
                    hits += np.int32(-row[c] < worst)
            if hits == 0:
                continue
            for c in range(c0, c1):
                if c == skip:
                    continue
                dist = _gram_raw(qs, tile_sq[c], row[c], metric_code)
                if metric_code != 2 and dist < zero:
                    dist = zero
                if dist < worst:
                    pos = k - 1
                    while pos > 0 and best_dist[r, pos - 1] > dist:
                        best_dist[r, pos] = best_dist[r, pos - 1]
                        best_idx[r, pos] = best_idx[r, pos - 1]
                        pos -= 1
                    best_dist[r, pos] = dist
                    best_idx[r, pos] = col0 + c
                    worst = best_dist[r, k - 1]


def _exact_euclidean(queries: np.ndarray, data: np.ndarray, idx: np.ndarray, dist: np.ndarray) -> None:
    """Recompute selected euclidean distances directly (the gram trick loses digits)."""
    for_rows(_exact_euclidean_rows, idx.shape[0], queries, data, idx, dist)


@numba.njit(cache=True, nogil=True)
def _exact_euclidean_rows(start, stop, queries, data, idx, dist):  # pragma: no cover - numba
    k = idx.shape[1]
    d = data.shape[1]
    for r in range(start, stop):
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


# Rows are passed as (array, index), not as views ``a[i]``: a view made in a loop takes
# and drops a reference to its array, atomic operations on a counter every thread
# shares, and so does a call that receives an array unless it is compiled without
# numba's reference counting (``_nrt``; see knn.nndescent._push). Manhattan, 2 threads:
# exact search of 15k x 50 1.7-2.0 -> 1.0-1.1 s, NN-descent on 60k x 50 4.4-4.9 ->
# 1.8 s; hamming NN-descent 18.0 -> 7.2 s; the same neighbours.
@numba.njit(cache=True, fastmath=True, forceinline=True, _nrt=False)
def _direct_dist(A, i, B, j, metric_code, p):  # pragma: no cover - numba
    """A direct metric between rows ``A[i]`` and ``B[j]`` (float32), in float32;
    minkowski without the root.

    Codes (``metrics._METRIC_CODE``): 3 manhattan, 4 chebyshev, 5 minkowski (the sum of
    ``|a - b|^p``, monotone in the distance, rooted by the caller), 6 hamming (share of
    coordinates that differ), 7 jaccard (on 0/1 rows: differing / either nonzero, 0
    when both rows are zero). Compiled apart (inlined by LLVM, not numba) so the loops
    keep fastmath and vectorise.
    """
    a = A[i]
    b = B[j]
    d = a.shape[0]
    acc = np.float32(0.0)
    if metric_code == 3:
        for f in range(d):
            acc += abs(a[f] - b[f])
        return acc
    if metric_code == 4:
        for f in range(d):
            acc = max(acc, abs(a[f] - b[f]))
        return acc
    if metric_code == 5:
        whole = np.int64(p)
        if whole == p and whole <= 8:
            # Integer p by repeated products: a float power is ~10x dearer per coordinate.
            # p = 2, 3, 4 spelt out (the same products in the same order): with a loop
            # over the power the coordinates' loop does not vectorise (minkowski p = 3,
            # exact search of 15k x 50: 9.2 s, spelt out 1.4 s; NN-descent of 60k x 50:
            # 9.0 -> 2.1 s). Results are the same to the bit for 3; for 2 and 4 fastmath
            # now fuses or regroups the products, so near-ties can fall the other way.
            if whole == 2:
                for f in range(d):
                    x = abs(a[f] - b[f])
                    acc += x * x
                return acc
            if whole == 3:
                for f in range(d):
                    x = abs(a[f] - b[f])
                    acc += x * x * x
                return acc
            if whole == 4:
                for f in range(d):
                    x = abs(a[f] - b[f])
                    acc += x * x * x * x
                return acc
            for f in range(d):
                x = abs(a[f] - b[f])
                term = x
                for _ in range(whole - 1):
                    term *= x
                acc += term
            return acc
        for f in range(d):
            acc += abs(a[f] - b[f]) ** p
        return acc
    if metric_code == 6:
        for f in range(d):
            acc += np.float32(a[f] != b[f])
        return acc / np.float32(d)
    union = np.float32(0.0)
    for f in range(d):
        x = a[f] != 0
        y = b[f] != 0
        acc += np.float32(x != y)
        union += np.float32(x or y)
    return acc / union if union > 0 else np.float32(0.0)


@numba.njit(cache=True, forceinline=True, _nrt=False)
def _direct_dist64(A, i, B, j, metric_code, p):  # pragma: no cover - numba
    """:func:`_direct_dist` in float64, minkowski rooted: the distance reported."""
    a = A[i]
    b = B[j]
    d = a.shape[0]
    acc = 0.0
    if metric_code == 3:
        for f in range(d):
            acc += abs(np.float64(a[f]) - np.float64(b[f]))
    elif metric_code == 4:
        for f in range(d):
            acc = max(acc, abs(np.float64(a[f]) - np.float64(b[f])))
    elif metric_code == 5:
        for f in range(d):
            acc += abs(np.float64(a[f]) - np.float64(b[f])) ** p
        acc = acc ** (1.0 / p)
    elif metric_code == 6:
        for f in range(d):
            acc += 1.0 if a[f] != b[f] else 0.0
        acc /= d
    else:
        union = 0.0
        for f in range(d):
            x = a[f] != 0
            y = b[f] != 0
            acc += 1.0 if x != y else 0.0
            union += 1.0 if (x or y) else 0.0
        acc = acc / union if union > 0 else 0.0
    return acc


@numba.njit(parallel=True, cache=True)
def _direct_topk(queries, data, metric_code, p, self_offset, best_idx, best_dist):  # pragma: no cover - numba
    """Each query row's k nearest data rows under a direct metric (sorted, ties by index).

    One query row per thread, scanning every data row; ``self_offset >= 0`` marks a
    self-join (data row ``self_offset + r`` is skipped for query row ``r``).
    """
    m = queries.shape[0]
    n = data.shape[0]
    k = best_idx.shape[1]
    for r in numba.prange(m):
        skip = self_offset + r if self_offset >= 0 else -1
        worst = best_dist[r, k - 1]
        for c in range(n):
            if c == skip:
                continue
            dist = _direct_dist(queries, r, data, c, metric_code, p)
            if dist < worst:
                pos = k - 1
                while pos > 0 and best_dist[r, pos - 1] > dist:
                    best_dist[r, pos] = best_dist[r, pos - 1]
                    best_idx[r, pos] = best_idx[r, pos - 1]
                    pos -= 1
                best_dist[r, pos] = dist
                best_idx[r, pos] = c
                worst = best_dist[r, k - 1]


@numba.njit(parallel=True, cache=True)
def _exact_direct(queries, data, idx, dist, metric_code, p):  # pragma: no cover - numba
    """Selected pairs of a direct metric measured again in float64 (and rooted), rows re-sorted."""
    n, k = idx.shape
    for r in numba.prange(n):
        for j in range(k):
            c = idx[r, j]
            if c >= 0:
                dist[r, j] = np.float32(_direct_dist64(queries, r, data, c, metric_code, p))
        _sort_row(idx, dist, r)


@numba.njit(cache=True)
def _sort_row(idx, dist, r):  # pragma: no cover - numba
    """Insertion sort of row ``r`` by (distance, index); k is small."""
    k = idx.shape[1]
    for j in range(1, k):
        dj, ij = dist[r, j], idx[r, j]
        p = j
        while p > 0 and (dist[r, p - 1] > dj or (dist[r, p - 1] == dj and idx[r, p - 1] > ij)):
            dist[r, p] = dist[r, p - 1]
            idx[r, p] = idx[r, p - 1]
            p -= 1
        dist[r, p] = dj
        idx[r, p] = ij


@numba.njit(parallel=True, cache=True)
def _matrix_topk(matrix, best_idx, best_dist):  # pragma: no cover - numba
    """Each row's k smallest off-diagonal entries of a square distance matrix, ties by index."""
    n = matrix.shape[0]
    k = best_idx.shape[1]
    for r in numba.prange(n):
        worst = best_dist[r, k - 1]
        for c in range(n):
            if c == r:
                continue
            dist = np.float32(matrix[r, c])
            if dist < worst:
                pos = k - 1
                while pos > 0 and best_dist[r, pos - 1] > dist:
                    best_dist[r, pos] = best_dist[r, pos - 1]
                    best_idx[r, pos] = best_idx[r, pos - 1]
                    pos -= 1
                best_dist[r, pos] = dist
                best_idx[r, pos] = c
                worst = best_dist[r, k - 1]


def precomputed_knn(matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest neighbours read from the rows of a square distance matrix (self excluded).

    The kNN contract of :func:`exact_knn` (int32 indices, float32 distances, rows
    ascending, ties by index). ``matrix`` is taken as given: the reducers check it
    first (``engine.stages.check_distance_matrix``).

    Parameters
    ----------
    matrix : ndarray of shape (n, n)
        ``matrix[i, j]`` is the distance from point i to point j.
    k : int
        ``1 <= k <= n - 1``.

    Returns
    -------
    indices : ndarray of shape (n, k), int32
    distances : ndarray of shape (n, k), float32
    """
    n = matrix.shape[0]
    if matrix.ndim != 2 or matrix.shape[1] != n:
        raise ValueError(f"a precomputed distance matrix must be square; got shape {matrix.shape}")
    if not 1 <= k <= n - 1:
        raise ValueError(f"k={k} neighbours asked of {n} points; k must be between 1 and {n - 1}")
    indices = np.full((n, k), -1, dtype=np.int32)
    distances = np.full((n, k), np.inf, dtype=np.float32)
    _matrix_topk(np.asarray(matrix), indices, distances)
    return indices, distances


def pairwise_distances(A: np.ndarray, B: np.ndarray | None = None, metric: str = "euclidean",
                       metric_kwds: dict[str, Any] | None = None) -> np.ndarray:
    """Dense float64 distances between the rows of ``A`` and of ``B`` (default ``A``).

    The same definitions as the searches (see :mod:`.metrics`): for the quality
    measures on small samples, and a check of the searches.

    Returns
    -------
    ndarray of shape (len(A), len(B)), float64
    """
    metric = check_metric(metric)
    p = minkowski_p(metric, metric_kwds)
    PA, sa = prepare(A, metric)
    PB, sb = (PA, sa) if B is None else prepare(B, metric)
    if metric not in DIRECT_METRICS:
        gram = PA.astype(np.float64) @ PB.astype(np.float64).T
        if metric == "euclidean":
            sq = (sa.astype(np.float64)[:, None] + sb.astype(np.float64)[None, :]) - 2.0 * gram
            return np.sqrt(np.maximum(sq, 0.0))
        return np.maximum(1.0 - gram, 0.0) if metric in ("cosine", "correlation") else -gram
    out = np.empty((PA.shape[0], PB.shape[0]), dtype=np.float64)
    _pairwise_direct(PA, PB, _METRIC_CODE[metric], p, out)
    return out


@numba.njit(parallel=True, cache=True)
def _pairwise_direct(A, B, metric_code, p, out):  # pragma: no cover - numba
    for i in numba.prange(A.shape[0]):
        for j in range(B.shape[0]):
            out[i, j] = _direct_dist64(A, i, B, j, metric_code, p)


def exact_knn(
    data: np.ndarray,
    k: int,
    metric: str = "euclidean",
    queries: np.ndarray | None = None,
    *,
    block_rows: int | None = None,
    metric_kwds: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours by blocked matrix products (CPU twin).

    Parameters
    ----------
    data : ndarray of shape (n, d)
        Points to search.
    k : int
        Neighbours per query. For a self-join, ``k <= n - 1``; else ``k <= n``.
    metric : str, default="euclidean"
        One of ``metrics.METRICS`` or an alias (see :mod:`.metrics`).
    queries : ndarray of shape (m, d), optional
        Query points; None searches ``data`` against itself, excluding each point.
    block_rows : int, optional
        Query rows per tile; default fills a tile of ``TILE_BYTES``.
    metric_kwds : dict, optional
        The metric's parameters: ``{"p": p}`` for minkowski (default 2).

    Returns
    -------
    indices : ndarray of shape (m, k), int32
    distances : ndarray of shape (m, k), float32
    """
    metric = check_metric(metric)
    p = minkowski_p(metric, metric_kwds)
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
    if metric in DIRECT_METRICS:
        return _direct_knn(Q, D, k, metric, p, self_join)
    cols = min(n, TILE_COLS)
    rows = block_rows or int(np.clip(TILE_BYTES // (4 * cols), 32, 4096))
    indices = np.full((m, k), -1, dtype=np.int32)
    distances = np.full((m, k), np.inf, dtype=np.float32)
    code = _METRIC_CODE[metric]
    # A transposed copy of the data feeds BLAS contiguous tiles; for a few queries
    # against many rows (NN-descent's recall check: 256 rows against 1M) it would be
    # the largest allocation of the search (200 MB at 1M x 50), so they read the
    # rows' transposed view.
    DT = np.ascontiguousarray(D.T) if 8 * m >= n else None

    def row_block(start: int) -> None:
        stop = min(m, start + rows)
        tile = np.empty(rows * cols, dtype=np.float32)
        for col0 in range(0, n, cols):
            col1 = min(n, col0 + cols)
            gram = tile[: (stop - start) * (col1 - col0)].reshape(stop - start, col1 - col0)
            np.matmul(Q[start:stop], DT[:, col0:col1] if DT is not None else D[col0:col1].T, out=gram)
            _select_topk(gram, q_sq[start:stop], d_sq, col0, code, start if self_join else -1,
                         indices[start:stop], distances[start:stop])

    # One thread per core, each with single-threaded BLAS and a serial selection on
    # its own row blocks. Alternating multi-threaded BLAS calls with numba parallel
    # regions on small tiles made the two thread pools spin against each other
    # (2x slower than either alone).
    starts = range(0, m, rows)
    workers = min(numba.get_num_threads(), len(starts))
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(row_block, starts):
            pass
    if metric == "euclidean":
        _exact_euclidean(Q, D, indices, distances)
    return indices, distances


def _direct_knn(Q: np.ndarray, D: np.ndarray, k: int, metric: str, p: float,
                self_join: bool) -> tuple[np.ndarray, np.ndarray]:
    """Exact search under a direct metric on prepared rows (see :func:`_direct_topk`)."""
    code = _METRIC_CODE[metric]
    indices = np.full((Q.shape[0], k), -1, dtype=np.int32)
    distances = np.full((Q.shape[0], k), np.inf, dtype=np.float32)
    _direct_topk(Q, D, code, np.float32(p), 0 if self_join else -1, indices, distances)
    _exact_direct(Q, D, indices, distances, code, float(p))
    return indices, distances
