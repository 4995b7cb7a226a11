"""GPU twin of :mod:`embedscope.kernels.knn.exact`: exact blocked search on a CUDA device.

Same contract as the CPU twin (see :mod:`embedscope.kernels.knn`): int32 indices and
float32 distances ``(n_queries, k)``, rows sorted by distance, self excluded on a
self-join, every metric of :mod:`.metrics`.

The distance block of a query block against the data is one cuBLAS matrix product
(through cupy); a numba.cuda kernel with one thread block per query row then keeps
the k smallest entries: each thread keeps a sorted top-k of a strided share of the
row in registers/local memory, and the block merges the thread lists with k rounds of
a shared-memory arg-min. Data larger than the device streams through in row blocks
(:func:`embedscope._memory.plan_knn`), their partial top-k lists merged.

The metrics with no matrix-product form (``metrics.DIRECT_METRICS``) skip the product:
a brute-force kernel (``cuda.direct_topk``) measures each pair coordinate by
coordinate with the same selection, and the selected pairs are measured again in
float64 on the device, as the CPU twin does.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from embedscope import _memory
from embedscope._array import to_host
from embedscope._memory import KnnPlan, plan_knn
from embedscope.kernels._cuda import THREADS, cuda, device_array_module, simulated
from embedscope.kernels.knn.consts import KMAX, MAX_THREADS
from embedscope.kernels.knn.metrics import (
    _METRIC_CODE,
    DIRECT_METRICS,
    check_metric,
    minkowski_p,
    non_binary_reason,
)


@lru_cache(maxsize=1)
def _kernels() -> Any:
    """The compiled-on-first-use kernel module (nothing CUDA happens at import)."""
    cuda()  # restores what numba-cuda needs from numpy before it loads
    from embedscope.kernels.knn import cuda as knn_cuda

    return knn_cuda


#: Rows per block of the float64 norm sums: bounds their temporaries to
#: ``NORM_BLOCK_ROWS x d`` doubles instead of two float64 copies of the whole input.
NORM_BLOCK_ROWS = 1 << 16
#: Pair rows per block of the float64 re-ranking of euclidean candidates.
EXACT_BLOCK_ELEMENTS = 1 << 24


def _squared_norms(X: Any, xp: Any) -> Any:
    """Row sums of squares of float32 ``X``, accumulated in float64 a block of rows at a time."""
    sq = xp.empty(X.shape[0], dtype=xp.float32)
    for r0 in range(0, X.shape[0], NORM_BLOCK_ROWS):
        block = X[r0:r0 + NORM_BLOCK_ROWS].astype(xp.float64)
        sq[r0:r0 + NORM_BLOCK_ROWS] = (block * block).sum(axis=1)
    return sq


def _prepare(X: Any, metric: str, xp: Any) -> tuple[Any, Any]:
    """float32 rows (unit rows for cosine, centred unit rows for correlation) and
    squared norms, on ``xp``'s device.

    Temporaries beyond the float32 rows (one copy for cosine and correlation, none for
    float32 device input) are bounded by :data:`NORM_BLOCK_ROWS` rows: ``plan_knn``
    counts the data once.
    """
    X = xp.ascontiguousarray(xp.asarray(X, dtype=xp.float32))
    if metric == "correlation":
        X = X - X.mean(axis=1, dtype=xp.float64, keepdims=True).astype(xp.float32)
    if metric in ("cosine", "correlation"):
        norms = xp.sqrt(_squared_norms(X, xp))
        X = X / xp.where(norms > 0, norms, xp.float32(1.0))[:, None]
    return X, _squared_norms(X, xp)


def _merge(best_i: Any, best_d: Any, part_i: Any, part_d: Any, k: int, xp: Any) -> tuple[Any, Any]:
    """k smallest of two sorted candidate lists per row (stable: earlier list wins ties)."""
    cand_d = xp.concatenate([best_d, part_d], axis=1)
    cand_i = xp.concatenate([best_i, part_i], axis=1)
    order = xp.argsort(cand_d, axis=1, kind="stable")[:, :k]
    return xp.take_along_axis(cand_i, order, axis=1), xp.take_along_axis(cand_d, order, axis=1)


def _exact_distances(Q: Any, D_rows: Any, idx: Any, dist: Any, xp: Any) -> tuple[Any, Any]:
    """Direct euclidean distances of the selected pairs (the gram trick loses digits)."""
    valid = idx >= 0
    exact = xp.empty(idx.shape, dtype=xp.float32)
    step = max(1, EXACT_BLOCK_ELEMENTS // max(1, idx.shape[1] * Q.shape[1]))
    for r0 in range(0, Q.shape[0], step):
        diff = Q[r0:r0 + step, None, :].astype(xp.float64) - D_rows[r0:r0 + step].astype(xp.float64)
        exact[r0:r0 + step] = xp.sqrt((diff * diff).sum(axis=2))
        del diff
    exact = xp.where(valid, exact, xp.float32(np.inf))
    order = xp.argsort(exact, axis=1, kind="stable")
    return xp.take_along_axis(idx, order, axis=1), xp.take_along_axis(exact, order, axis=1)


def _exact_direct_distances(Q: Any, D_rows: Any, idx: Any, metric: str, p: float, xp: Any) -> tuple[Any, Any]:
    """Direct-metric distances of the selected pairs in float64 (minkowski rooted), re-sorted."""
    valid = idx >= 0
    a, b = Q[:, None, :].astype(xp.float64), D_rows.astype(xp.float64)
    if metric == "manhattan":
        exact = xp.abs(a - b).sum(axis=2)
    elif metric == "chebyshev":
        exact = xp.abs(a - b).max(axis=2)
    elif metric == "minkowski":
        exact = (xp.abs(a - b) ** p).sum(axis=2) ** (1.0 / p)
    elif metric == "hamming":
        exact = (a != b).sum(axis=2) / a.shape[2]
    else:
        on_a, on_b = a != 0, b != 0
        union = (on_a | on_b).sum(axis=2)
        exact = xp.where(union > 0, (on_a != on_b).sum(axis=2) / xp.maximum(union, 1), 0.0)
    exact = xp.where(valid, exact.astype(xp.float32), xp.float32(np.inf))
    # (distance, index) order, as the CPU twin's insertion sort: stable on index-sorted input
    by_index = xp.argsort(xp.where(valid, idx, np.iinfo(np.int32).max), axis=1, kind="stable")
    idx, exact = xp.take_along_axis(idx, by_index, axis=1), xp.take_along_axis(exact, by_index, axis=1)
    order = xp.argsort(exact, axis=1, kind="stable")
    return xp.take_along_axis(idx, order, axis=1), xp.take_along_axis(exact, order, axis=1)


def _gather_rows(idx: Any, D_all: Any, host_data: Any, xp: Any) -> Any:
    """Data rows ``idx`` (shape (m, k)) as an (m, k, d) device array."""
    if D_all is not None:
        return D_all[idx]
    host_idx = to_host(idx)
    return xp.asarray(np.asarray(host_data[host_idx.reshape(-1)], dtype=np.float32)).reshape(*idx.shape, -1)


def exact_knn_gpu(
    data: Any,
    k: int,
    metric: str = "euclidean",
    queries: Any = None,
    *,
    plan: KnnPlan | None = None,
    threads: int = THREADS,
    metric_kwds: dict[str, Any] | None = None,
) -> tuple[Any, Any]:
    """Exact k nearest neighbours on the GPU (the CPU twin's contract).

    Parameters
    ----------
    data : array of shape (n, d)
        cupy or numpy (numpy data larger than the device is streamed in blocks).
    k : int
        Neighbours per query, at most 128.
    metric : str, default="euclidean"
        One of ``metrics.METRICS`` or an alias (see :mod:`.metrics`).
    queries : array of shape (m, d), optional
        None for a self-join (self excluded).
    plan : KnnPlan, optional
        Block sizes; by default planned from the free device memory.
    threads : int, default=128
        Threads per query row; a power of two, at most 512.
    metric_kwds : dict, optional
        The metric's parameters: ``{"p": p}`` for minkowski (default 2).

    Returns
    -------
    indices : cupy array (m, k), int32
    distances : cupy array (m, k), float32
        numpy arrays instead when running in numba's CUDA simulator.
    """
    metric = check_metric(metric)
    p = minkowski_p(metric, metric_kwds)
    if metric == "jaccard":
        for part in (data, queries):
            if part is not None and (reason := non_binary_reason(part)) is not None:
                raise ValueError(reason)
    direct = metric in DIRECT_METRICS
    xp = device_array_module()
    n, dim = data.shape
    self_join = queries is None
    limit = n - 1 if self_join else n
    if not 1 <= k <= min(limit, KMAX):
        raise ValueError(f"k={k} neighbours asked of {n} points; k must be between 1 and {min(limit, KMAX)}")
    if threads > MAX_THREADS or threads & (threads - 1):
        raise ValueError(f"threads={threads} must be a power of two <= {MAX_THREADS}")
    m = n if self_join else queries.shape[0]
    if plan is None:
        free = 8 * 2**30 if simulated() else _memory.device_free_bytes()
        plan = plan_knn(n, m, dim, k, free)
    kernels = _kernels()
    select, direct_select = kernels.select_topk, kernels.direct_topk
    code = _METRIC_CODE[metric]
    host_data = data if not plan.resident and isinstance(data, np.ndarray) else None
    D_all, d_sq_all = (None, None) if host_data is not None else _prepare(data, metric, xp)
    out_i = xp.empty((m, k), dtype=xp.int32)
    out_d = xp.empty((m, k), dtype=xp.float32)
    for q0 in range(0, m, plan.query_rows):
        q1 = min(m, q0 + plan.query_rows)
        source = data if self_join else queries
        Q, q_sq = _prepare(source[q0:q1], metric, xp)
        best_i = best_d = None
        for d0 in range(0, n, plan.data_rows):
            d1 = min(n, d0 + plan.data_rows)
            if D_all is not None:
                D, d_sq = D_all[d0:d1], d_sq_all[d0:d1]
            else:
                D, d_sq = _prepare(host_data[d0:d1], metric, xp)
            part_i = xp.empty((q1 - q0, k), dtype=xp.int32)
            part_d = xp.empty((q1 - q0, k), dtype=xp.float32)
            if direct:
                direct_select[q1 - q0, threads](Q, D, k, code, np.float32(p), q0 if self_join else -1, d0,
                                                part_i, part_d)
            else:
                gram = Q @ D.T
                select[q1 - q0, threads](gram, q_sq, d_sq, k, code, q0 if self_join else -1, d0, part_i, part_d)
            if best_i is None:
                best_i, best_d = part_i, part_d
            else:
                best_i, best_d = _merge(best_i, best_d, part_i, part_d, k, xp)
        if metric == "euclidean":
            rows = _gather_rows(xp.maximum(best_i, 0), D_all, host_data, xp)
            best_i, best_d = _exact_distances(Q, rows, best_i, best_d, xp)
        elif direct:
            rows = _gather_rows(xp.maximum(best_i, 0), D_all, host_data, xp)
            best_i, best_d = _exact_direct_distances(Q, rows, best_i, metric, p, xp)
        out_i[q0:q1] = best_i
        out_d[q0:q1] = best_d
    if host_data is not None:
        _memory.free_pinned(xp)  # the streamed blocks were staged through pinned buffers
    return out_i, out_d
