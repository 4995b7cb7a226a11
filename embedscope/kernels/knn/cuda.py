"""numba.cuda kernels of the kNN GPU twin. Import through :mod:`.gpu` only.

This module imports ``numba.cuda`` at the top, so that numba's CUDA simulator can
stand in for the device when ``NUMBA_ENABLE_CUDASIM=1`` (it replaces the module's
``cuda`` global); :func:`embedscope.kernels.knn.gpu._kernels` imports it on first use.
"""

from __future__ import annotations

import numpy as np
from numba import cuda, float32, int32

from embedscope.kernels.knn.consts import KMAX, MAX_THREADS

INF = np.float32(np.inf)


@cuda.jit(device=True, inline=True)
def _merge_emit(loc_d, loc_i, k, row, out_idx, out_dist):
    """Merge the threads' sorted top-k lists of one row into ``out_*[row]``, in order.

    k rounds of a shared-memory arg-min over the threads' list heads (ties by index).
    Every thread of the block must call it.
    """
    tid = cuda.threadIdx.x
    n_threads = cuda.blockDim.x
    sh_d = cuda.shared.array(MAX_THREADS, float32)
    sh_i = cuda.shared.array(MAX_THREADS, int32)
    sh_t = cuda.shared.array(MAX_THREADS, int32)
    head = 0
    for out in range(k):
        if head < k:
            sh_d[tid] = loc_d[head]
            sh_i[tid] = loc_i[head]
        else:
            sh_d[tid] = INF
            sh_i[tid] = -1
        sh_t[tid] = tid
        cuda.syncthreads()
        stride = n_threads // 2
        while stride > 0:
            if tid < stride:
                od = sh_d[tid + stride]
                oi = sh_i[tid + stride]
                md = sh_d[tid]
                mi = sh_i[tid]
                # (distance, index) order; an empty slot (-1) loses every tie
                if od < md or (od == md and oi >= 0 and (mi < 0 or oi < mi)):
                    sh_d[tid] = od
                    sh_i[tid] = oi
                    sh_t[tid] = sh_t[tid + stride]
            cuda.syncthreads()
            stride //= 2
        if tid == sh_t[0]:
            head += 1
        if tid == 0:
            out_dist[row, out] = sh_d[0]
            out_idx[row, out] = sh_i[0]
        cuda.syncthreads()


@cuda.jit
def select_topk(gram, q_sq, d_sq, k, metric_code, self_offset, col_offset, out_idx, out_dist):
    """Row ``blockIdx.x`` of a distance block: its k smallest entries, ties by index.

    Each thread keeps a sorted top-k of columns ``tid, tid + blockDim, ...``; then k
    rounds of a shared-memory arg-min over the threads' list heads emit the merged
    list in order (:func:`_merge_emit`). ``self_offset >= 0`` marks a self-join: global column
    ``self_offset + row`` is skipped. ``col_offset`` turns block columns into global
    data indices. Slots with no candidate come out as index -1, distance inf.
    """
    row = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    n_threads = cuda.blockDim.x
    n_cols = gram.shape[1]
    loc_d = cuda.local.array(KMAX, float32)
    loc_i = cuda.local.array(KMAX, int32)
    for j in range(k):
        loc_d[j] = INF
        loc_i[j] = -1
    worst = INF
    skip = self_offset + row if self_offset >= 0 else -1
    q = q_sq[row]  # the row's norm, read once rather than per column
    for c in range(tid, n_cols, n_threads):
        col = c + col_offset
        if col == skip:
            continue
        g = gram[row, c]
        if metric_code == 0:
            dist = q + d_sq[c] - float32(2.0) * g
            if dist < 0:
                dist = float32(0.0)
        elif metric_code == 1:
            dist = float32(1.0) - g
            if dist < 0:
                dist = float32(0.0)
        else:
            dist = -g
        if dist < worst:
            pos = k - 1
            while pos > 0 and loc_d[pos - 1] > dist:
                loc_d[pos] = loc_d[pos - 1]
                loc_i[pos] = loc_i[pos - 1]
                pos -= 1
            loc_d[pos] = dist
            loc_i[pos] = col
            worst = loc_d[k - 1]
    _merge_emit(loc_d, loc_i, k, row, out_idx, out_dist)


@cuda.jit(device=True, inline=True)
def _direct_dist(queries, row, data, c, metric_code, p):
    """A direct metric between ``queries[row]`` and ``data[c]`` in float32 (the CPU
    twin's ``exact._direct_dist``: 3 manhattan, 4 chebyshev, 5 minkowski unrooted,
    6 hamming, 7 jaccard)."""
    dim = queries.shape[1]
    acc = float32(0.0)
    if metric_code == 3:
        for f in range(dim):
            acc += abs(queries[row, f] - data[c, f])
    elif metric_code == 4:
        for f in range(dim):
            acc = max(acc, abs(queries[row, f] - data[c, f]))
    elif metric_code == 5:
        whole = int32(p)
        if whole == p and whole <= 8:
            for f in range(dim):
                x = abs(queries[row, f] - data[c, f])
                term = x
                for _ in range(whole - 1):
                    term *= x
                acc += term
        else:
            for f in range(dim):
                acc += abs(queries[row, f] - data[c, f]) ** p
    elif metric_code == 6:
        for f in range(dim):
            if queries[row, f] != data[c, f]:
                acc += float32(1.0)
        acc = acc / float32(dim)
    else:
        union = float32(0.0)
        for f in range(dim):
            x = queries[row, f] != 0
            y = data[c, f] != 0
            if x != y:
                acc += float32(1.0)
            if x or y:
                union += float32(1.0)
        acc = acc / union if union > 0 else float32(0.0)
    return acc


@cuda.jit
def direct_topk(queries, data, k, metric_code, p, self_offset, col_offset, out_idx, out_dist):
    """Row ``blockIdx.x`` of ``queries`` against a block of data rows under a direct metric.

    The brute-force twin of :func:`select_topk` for the metrics with no matrix-product
    form: each thread measures data rows ``tid, tid + blockDim, ...`` itself and keeps
    their sorted top-k; the lists are merged as there. Same conventions: global
    column ``self_offset + row`` skipped when ``self_offset >= 0``, ``col_offset`` the
    block's first data index, empty slots -1 / inf.
    """
    row = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    n_threads = cuda.blockDim.x
    n_cols = data.shape[0]
    loc_d = cuda.local.array(KMAX, float32)
    loc_i = cuda.local.array(KMAX, int32)
    for j in range(k):
        loc_d[j] = INF
        loc_i[j] = -1
    worst = INF
    skip = self_offset + row if self_offset >= 0 else -1
    for c in range(tid, n_cols, n_threads):
        col = c + col_offset
        if col == skip:
            continue
        dist = _direct_dist(queries, row, data, c, metric_code, p)
        if dist < worst:
            pos = k - 1
            while pos > 0 and loc_d[pos - 1] > dist:
                loc_d[pos] = loc_d[pos - 1]
                loc_i[pos] = loc_i[pos - 1]
                pos -= 1
            loc_d[pos] = dist
            loc_i[pos] = col
            worst = loc_d[k - 1]
    _merge_emit(loc_d, loc_i, k, row, out_idx, out_dist)


#: Argument types per kernel, for ahead-of-time compile checks (CI has no GPU).
SIGNATURES = {
    "select_topk": (float32[:, :], float32[:], float32[:], int32, int32, int32, int32, int32[:, :], float32[:, :]),
    "direct_topk": (float32[:, :], float32[:, :], int32, int32, float32, int32, int32, int32[:, :], float32[:, :]),
}
