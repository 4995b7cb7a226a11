"""Approximate k-nearest-neighbour search on the CPU: RP-tree start, then NN-descent.

Approximate search for large N (Dong, Moses & Li 2011): start from the leaves of a few
random-projection trees, then sweep: every point j introduces its neighbours (forward
and reverse) to each other, a "local join", and each pair's distance is offered to
both ends, which keep their k nearest. The joins read a snapshot of the lists taken
at the start of the sweep and buffer their updates; each worker then applies those
for its own rows, so the sweep needs no locks. Rows keep the k smallest by
(distance, index), so the graph does not depend on the thread count. A pair is
measured only when one of its two links is new since the last sweep.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from embedscope.kernels._random import mix64
from embedscope.kernels._threads import for_rows
from embedscope.kernels.knn.exact import _direct_dist, _exact_direct, _exact_euclidean, exact_knn
from embedscope.kernels.knn.metrics import (
    _METRIC_CODE,
    DIRECT_METRICS,
    check_metric,
    minkowski_p,
    prepare,
)

#: The parallel kernels run over a range of rows (trees, leaves, points, join slots)
#: on ``_threads``' pool rather than ``prange``: numba's parfor passes cost seconds of
#: a first fit's compiling from 40k points up (benchmarks/cold_start.py). Each row
#: writes only its own rows of the lists, so results do not depend on the split.
_ROWS = {"cache": True, "nogil": True, "error_model": "numpy"}


@numba.njit(cache=True, inline="always")
def _reverse_start(sweep_seed, node, n_reverse, max_reverse):  # pragma: no cover - numba
    """Where a capped walk over ``node``'s reverse links starts: 0, or a hashed offset
    when there are more links than the cap (so each sweep sees a different window)."""
    if n_reverse <= max_reverse:
        return 0
    return np.int64(mix64(np.uint64(sweep_seed) ^ np.uint64(node)) % np.uint64(n_reverse))


# Not inline="always": numba inlines its own IR into the caller, which compiles it
# without this function's fastmath, so the sum stayed a serial chain of scalar adds
# (NN-descent on a 100k x 50 mixture: 4.24 s against 3.3 s compiled apart).
# ``forceinline`` marks the compiled function alwaysinline for LLVM instead: it keeps
# its own fastmath and vectorised loop, and LLVM no longer weighs the call against the
# sweep's size (it had left it a call there, 15 arguments a candidate). NN-descent on
# a 200k x 50 mixture, one thread: 20.3 -> 18.5 s, the same graph.
@numba.njit(cache=True, fastmath=True, forceinline=True)
def _pair_dist(data, i, j, metric_code, p):  # pragma: no cover - numba
    """Squared euclidean (code 0), 1 - dot / -dot on prepared rows, or a direct metric
    (codes 3-7, minkowski unrooted: ``exact._direct_dist``).

    ``p`` is None for the first three: numba prunes the ``is None`` branch when it
    compiles, so their specialisation (and every sweep kernel's) is the code they had
    before the direct metrics existed; a float ``p`` compiles the direct one.
    """
    if p is not None:
        return _direct_dist(data, i, data, j, metric_code, p)
    acc = np.float32(0.0)
    if metric_code == 0:
        for f in range(data.shape[1]):
            diff = data[i, f] - data[j, f]
            acc += diff * diff
        return acc
    for f in range(data.shape[1]):
        acc += data[i, f] * data[j, f]
    if metric_code == 1:
        return max(np.float32(1.0) - acc, np.float32(0.0))
    return -acc


# Compiled apart and inlined by LLVM, without numba's reference counting (``_nrt``):
# inlined by numba instead (``inline="always"``), each call took a reference to the
# three arrays and dropped it on every return path, atomic increments of counters all
# threads share, in the innermost loop of the leaf joins and the updates. That, and
# not aliasing, is why these two kernels ran at half speed as row kernels and had to
# be parfors, which cost 1.4 and 0.7 s of a first fit's compiling (parfors prune the
# counting). _push allocates nothing and its caller holds the arrays, so it needs no
# references. Now row kernels: leaf joins 0.19 s, updates 0.25 s per 100k x 50 search
# on 2 threads, as the parfors, and 2.5 s less CPU to compile the search
# (benchmarks/cold_start.py).
@numba.njit(cache=True, forceinline=True, _nrt=False)
def _push(heap_idx, heap_dist, heap_new, i, cand, dist):  # pragma: no cover - numba
    """Insert ``cand`` in row ``i`` unless it is there or too far; 1 if kept.

    Rows are kept sorted by (distance, index), and a candidate is compared on both:
    a row then ends as the k smallest of everything pushed to it, whatever the order
    of the pushes, ties included. That is what lets the join sweeps apply their
    updates in any order, on any number of threads, to the same graph.
    """
    k = heap_idx.shape[1]
    last = heap_dist[i, k - 1]
    if dist > last or (dist == last and cand >= heap_idx[i, k - 1]):
        return 0
    for s in range(k):
        if heap_idx[i, s] == cand:
            return 0
    pos = k - 1
    while pos > 0 and (heap_dist[i, pos - 1] > dist or (heap_dist[i, pos - 1] == dist and heap_idx[i, pos - 1] > cand)):
        heap_dist[i, pos] = heap_dist[i, pos - 1]
        heap_idx[i, pos] = heap_idx[i, pos - 1]
        heap_new[i, pos] = heap_new[i, pos - 1]
        pos -= 1
    heap_dist[i, pos] = dist
    heap_idx[i, pos] = cand
    heap_new[i, pos] = 1
    return 1


@numba.njit(cache=True, fastmath=True, forceinline=True)
def _row_dot(vector, data, row):  # pragma: no cover - numba
    """``vector . data[row]``, compiled apart to keep fastmath (see _pair_dist)."""
    acc = np.float32(0.0)
    for f in range(data.shape[1]):
        acc += vector[f] * data[row, f]
    return acc


@numba.njit(cache=True)
def _rp_tree(data, seed, leaf_size, perm, leaf_lo, leaf_hi):  # pragma: no cover - numba
    """One random-projection tree; fills ``perm`` and the leaf ranges, returns #leaves."""
    n, dim = data.shape
    for p in range(n):
        perm[p] = p
    stack_lo = np.empty(n + 1, dtype=np.int64)
    stack_hi = np.empty(n + 1, dtype=np.int64)
    normal = np.empty(dim, dtype=np.float32)
    side = np.empty(n, dtype=np.uint8)
    buf = np.empty(n, dtype=np.int64)  # partition scratch, one for all nodes
    state = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(1)
    top = 0
    stack_lo[0], stack_hi[0] = 0, n
    n_leaves = 0
    while top >= 0:
        lo, hi = stack_lo[top], stack_hi[top]
        top -= 1
        size = hi - lo
        if size <= leaf_size:
            leaf_lo[n_leaves], leaf_hi[n_leaves] = lo, hi
            n_leaves += 1
            continue
        state += np.uint64(0x9E3779B97F4A7C15)
        a = perm[lo + np.int64(mix64(state) % np.uint64(size))]
        state += np.uint64(0x9E3779B97F4A7C15)
        b = perm[lo + np.int64(mix64(state) % np.uint64(size))]
        offset = np.float32(0.0)
        for f in range(dim):
            normal[f] = data[a, f] - data[b, f]
            offset += normal[f] * (data[a, f] + data[b, f]) * np.float32(0.5)
        n_left = 0
        for t in range(lo, hi):
            p = perm[t]
            margin = _row_dot(normal, data, p) - offset
            if margin == 0.0:  # duplicates and a == b: split at random
                state += np.uint64(0x9E3779B97F4A7C15)
                left = (mix64(state) & np.uint64(1)) == 0
            else:
                left = margin < 0.0
            side[t - lo] = 1 if left else 0
            n_left += 1 if left else 0
        if n_left == 0 or n_left == size:  # no split: cut in half
            for t in range(size):
                side[t] = 1 if t < size // 2 else 0
            n_left = size // 2
        # stable partition through the scratch: two passes
        write = lo
        r = 0
        for t in range(size):
            if side[t] == 1:
                buf[r] = perm[lo + t]
                r += 1
        for t in range(size):
            if side[t] == 0:
                buf[r] = perm[lo + t]
                r += 1
        for t in range(size):
            perm[write + t] = buf[t]
        top += 1
        stack_lo[top], stack_hi[top] = lo, lo + n_left
        top += 1
        stack_lo[top], stack_hi[top] = lo + n_left, hi
    return n_leaves


@numba.njit(**_ROWS)
def _rp_forest(start, stop, data, seeds, leaf_size, perms, leaf_los, leaf_his, n_leaves):  # pragma: no cover - numba
    """Trees ``start <= t < stop`` of ``seeds``, tree ``t`` into ``perms[t]``, ``leaf_los[t]``..."""
    for t in range(start, stop):
        n_leaves[t] = _rp_tree(data, seeds[t], leaf_size, perms[t], leaf_los[t], leaf_his[t])


@numba.njit(**_ROWS)
def _leaf_join(start, stop, data, perm, leaf_lo, leaf_hi, metric_code, p, heap_idx, heap_dist, heap_new):  # pragma: no cover
    """All pairs inside leaves ``start <= leaf < stop`` of one tree (a point is in one
    leaf per tree: no write conflicts between leaves)."""
    for leaf in range(start, stop):
        lo, hi = leaf_lo[leaf], leaf_hi[leaf]
        for s in range(lo, hi):
            a = perm[s]
            for t in range(s + 1, hi):
                b = perm[t]
                dist = _pair_dist(data, a, b, metric_code, p)
                _push(heap_idx, heap_dist, heap_new, a, b, dist)
                _push(heap_idx, heap_dist, heap_new, b, a, dist)


@numba.njit(**_ROWS)
def _random_fill(start, stop, data, seed, metric_code, p, heap_idx, heap_dist, heap_new):  # pragma: no cover - numba
    """Fill rows ``[start, stop)`` the trees left short with random points (never the point itself)."""
    n, k = heap_idx.shape
    for i in range(start, stop):
        state = mix64(np.uint64(seed) ^ (np.uint64(i) * np.uint64(0xD1B54A32D192ED03)))
        tries = 0
        while heap_idx[i, k - 1] < 0 and tries < 8 * k + 64:
            state += np.uint64(0x9E3779B97F4A7C15)
            cand = np.int64(mix64(state) % np.uint64(n))
            tries += 1
            if cand != i:
                _push(heap_idx, heap_dist, heap_new, i, cand, _pair_dist(data, i, cand, metric_code, p))
        if heap_idx[i, k - 1] < 0:  # tiny n: take everyone in order
            for cand in range(n):
                if cand != i:
                    _push(heap_idx, heap_dist, heap_new, i, cand, _pair_dist(data, i, cand, metric_code, p))


@numba.njit(cache=True)
def _reverse_windows(heap_idx, heap_new, max_reverse, sweep_seed):  # pragma: no cover - numba
    """CSR of the reverse links that join at each point this sweep: who lists j, and
    whether that link is new.

    All of them when at most ``max_reverse`` do; else a window of ``max_reverse``
    consecutive ones (in source order, wrapping) from a start hashed from the sweep's
    seed, so a hub sees a different window each sweep. Only the windows are stored
    (t-SNE's lists of 120 at 1M points: 60M links instead of 120M).
    """
    n, k = heap_idx.shape
    counts = np.zeros(n, dtype=np.int64)
    for p in range(n):
        for s in range(k):
            j = heap_idx[p, s]
            if j >= 0:
                counts[j] += 1
    ptr = np.zeros(n + 1, dtype=np.int64)
    start = np.empty(n, dtype=np.int64)
    for j in range(n):
        ptr[j + 1] = ptr[j] + min(counts[j], max_reverse)
        start[j] = _reverse_start(sweep_seed, j, counts[j], max_reverse)
    sources = np.empty(ptr[n], dtype=np.int32)
    flags = np.empty(ptr[n], dtype=np.uint8)
    rank = np.zeros(n, dtype=np.int64)  # sources of j seen so far
    for p in range(n):
        for s in range(k):
            j = heap_idx[p, s]
            if j >= 0:
                place = (rank[j] - start[j]) % counts[j]
                if place < ptr[j + 1] - ptr[j]:
                    sources[ptr[j] + place] = p
                    flags[ptr[j] + place] = heap_new[p, s]
                rank[j] += 1
    return ptr, sources, flags


@numba.njit(**_ROWS)
def _join_emit(start, stop, data, metric_code, p, snap_idx, snap_new, rev_ptr, rev_src, rev_new, max_forward,
               n_rev_max, heap_dist, next_j, stop_j, out_dest, out_src, out_dist, out_count):  # pragma: no cover
    """Local joins: every pair of j's general neighbours with a new link, for the
    points ``next_j[t] <= j < stop_j[t]`` of slots ``start <= t < stop``, as far as the slot's
    update buffer holds; returns nothing, advances ``next_j``.

    j's general neighbours are its ``max_forward`` nearest listed points and the
    points in its reverse window (see _reverse_windows). A pair's
    distance is measured once and offered to both ends (``out_*[t]``: destination,
    candidate, distance) where it is within the destination's current k-th distance,
    and the rows ``j`` reads are a few dozen, which stay in L1 for the whole join. The
    pull sweep this replaced, where each point measured its neighbours' neighbours
    itself (each pair twice, rows from all over), took ~30 s a sweep on the 1M x 50
    mixture against ~9 s for these.
    """
    k = heap_dist.shape[1]
    kf = min(snap_idx.shape[1], max_forward)
    cap = out_dest.shape[1]
    for t in range(start, stop):
        members = np.empty(kf + n_rev_max, dtype=np.int32)
        fresh = np.empty(members.size, dtype=np.uint8)
        limit = np.empty(members.size, dtype=np.float32)
        count = 0
        j = next_j[t]
        while j < stop_j[t]:
            m = 0
            for c in range(kf):
                x = snap_idx[j, c]
                if x >= 0:
                    members[m] = x
                    fresh[m] = snap_new[j, c]
                    m += 1
            n_forward = m
            for pos in range(rev_ptr[j], rev_ptr[j + 1]):
                x = rev_src[pos]
                mutual = False
                for q in range(n_forward):  # j and x list each other: one member
                    if members[q] == x:
                        fresh[q] |= rev_new[pos]
                        mutual = True
                        break
                if not mutual:
                    members[m] = x
                    fresh[m] = rev_new[pos]
                    m += 1
            if count + m * (m - 1) > cap:
                break  # the buffer is applied and this slot resumes at j
            # New members first: a pair joins when one end is new, so the pairs of
            # old members are never visited (they were a branch per pair). Each
            # member's k-th distance is read once; the lists change only between joins.
            n_fresh = 0
            for x in range(m):
                if fresh[x] != 0:
                    members[n_fresh], members[x] = members[x], members[n_fresh]
                    fresh[n_fresh], fresh[x] = fresh[x], fresh[n_fresh]
                    n_fresh += 1
            for x in range(m):
                limit[x] = heap_dist[members[x], k - 1]
            for x in range(n_fresh):
                a = members[x]
                limit_a = limit[x]
                for y in range(x + 1, m):
                    b = members[y]
                    # int64 indices, as the other callers pass them: one _pair_dist to compile, not two.
                    dist = _pair_dist(data, np.int64(a), np.int64(b), metric_code, p)
                    if dist <= limit_a:
                        out_dest[t, count] = a
                        out_src[t, count] = b
                        out_dist[t, count] = dist
                        count += 1
                    if dist <= limit[y]:
                        out_dest[t, count] = b
                        out_src[t, count] = a
                        out_dist[t, count] = dist
                        count += 1
            j += 1
        next_j[t] = j
        out_count[t] = count


@numba.njit(**_ROWS)
def _bucket_counts(start, stop, out_dest, out_count, shift, counts):  # pragma: no cover - numba
    """``counts[t, b]``: slot ``t``'s buffered updates whose destination is in bucket
    ``b`` (rows ``b << shift`` up to the next bucket's), for slots ``start <= t < stop``."""
    for t in range(start, stop):
        for b in range(counts.shape[1]):
            counts[t, b] = 0
        for e in range(out_count[t]):
            counts[t, out_dest[t, e] >> shift] += 1


@numba.njit(**_ROWS)
def _bucket_scatter(start, stop, out_dest, out_src, out_dist, out_count, shift, offsets, dest, src,
                    dist):  # pragma: no cover - numba
    """Copy slot ``t``'s updates to ``dest``, ``src``, ``dist`` from ``offsets[t, b]`` on for
    bucket ``b`` (slots ``start <= t < stop`` write disjoint ranges)."""
    for t in range(start, stop):
        for e in range(out_count[t]):
            b = out_dest[t, e] >> shift
            pos = offsets[t, b]
            dest[pos] = out_dest[t, e]
            src[pos] = out_src[t, e]
            dist[pos] = out_dist[t, e]
            offsets[t, b] = pos + 1


@numba.njit(**_ROWS)
def _bucket_apply(start, stop, bucket_ptr, dest, src, dist, heap_idx, heap_dist, heap_new):  # pragma: no cover - numba
    """Push the updates of buckets ``start <= b < stop`` (``bucket_ptr[b]`` up to
    ``bucket_ptr[b + 1]``) into their rows: no two buckets share a row."""
    for e in range(bucket_ptr[start], bucket_ptr[stop]):
        _push(heap_idx, heap_dist, heap_new, dest[e], src[e], dist[e])


#: Rows per bucket when the buffered updates are sorted by destination, as a power of
#: two: a bucket's rows of the three lists (2,048 rows x 32 columns: 576 KB) stay in
#: the core's L2 while its updates are pushed.
_BUCKET_SHIFT = 11


def _apply_updates(out_dest: np.ndarray, out_src: np.ndarray, out_dist: np.ndarray, out_count: np.ndarray,
                   heap_idx: np.ndarray, heap_dist: np.ndarray, heap_new: np.ndarray,
                   sorted_buffers: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Push the join slots' buffered updates into the lists, sorted by destination first.

    Pushed in the order emitted, nearly every update read a row of the lists from
    anywhere in memory: on the 1M x 50 mixture of 20 clusters (lists of 32), the 340M
    updates of a search took 13.0 s of 71.6. Sorted first (a counting sort by buckets
    of rows: a count and a copy of the buffer), the pushes walk the rows in order:
    9.0 s, of which the pushes 7.7 s. A row still receives its updates in the order
    the slots emitted them (slot 0's, then slot 1's), and rows end the same whatever
    the order of their pushes anyway (see _push): the graph is unchanged.
    """
    slots = out_count.size
    n_buckets = ((heap_idx.shape[0] - 1) >> _BUCKET_SHIFT) + 1
    counts = np.empty((slots, n_buckets), dtype=np.int64)
    for_rows(_bucket_counts, slots, out_dest, out_count, _BUCKET_SHIFT, counts, min_rows=1)
    # bucket-major: bucket b holds slot 0's updates for it, then slot 1's, ...
    starts = np.cumsum(counts.T.ravel()) - counts.T.ravel()
    offsets = np.ascontiguousarray(starts.reshape(n_buckets, slots).T)
    bucket_ptr = np.zeros(n_buckets + 1, dtype=np.int64)
    np.cumsum(counts.sum(axis=0), out=bucket_ptr[1:])
    dest, src, dist = sorted_buffers
    for_rows(_bucket_scatter, slots, out_dest, out_src, out_dist, out_count, _BUCKET_SHIFT, offsets, dest, src,
             dist, min_rows=1)
    for_rows(_bucket_apply, n_buckets, bucket_ptr, dest, src, dist, heap_idx, heap_dist, heap_new, min_rows=1)


#: Updates each join slot buffers before they are applied (12 bytes each, and as much
#: again for their sorted copy: 24 MB a slot).
_UPDATE_BUFFER = 1 << 20


def _join_sweep(data: np.ndarray, metric_code: int, p: Any, heap_idx: np.ndarray, heap_dist: np.ndarray,
                heap_new: np.ndarray, max_forward: int, max_reverse: int, sweep_seed: int) -> int:
    """One NN-descent sweep by local joins; returns the links that are new in the rows.

    Every row ends as the k smallest, by (distance, index), of its links before the
    sweep and the candidates the joins offer it, so the graph does not depend on the
    thread count or on when the buffered updates were applied. The joins read the
    lists as they were at the start of the sweep.
    """
    n = heap_idx.shape[0]
    kf = min(heap_idx.shape[1], max_forward)
    rev_ptr, rev_src, rev_new = _reverse_windows(heap_idx, heap_new, max_reverse, sweep_seed)
    # a join's forward members are a point's kf nearest links: only those columns are
    # kept (t-SNE's lists of 120 at 1M points: 300 MB less)
    snap_idx, snap_new = heap_idx[:, :kf].copy(), heap_new[:, :kf].copy()
    heap_new[:] = 0
    n_rev_max = int(np.diff(rev_ptr).max())
    slots = max(1, numba.get_num_threads())
    bounds = np.linspace(0, n, slots + 1).astype(np.int64)
    next_j, stop_j = bounds[:-1].copy(), bounds[1:].copy()
    width = kf + n_rev_max
    cap = max(_UPDATE_BUFFER, width * (width - 1))
    out_dest = np.empty((slots, cap), dtype=np.int32)
    out_src = np.empty((slots, cap), dtype=np.int32)
    out_dist = np.empty((slots, cap), dtype=np.float32)
    out_count = np.zeros(slots, dtype=np.int64)
    sorted_buffers = (np.empty(slots * cap, dtype=np.int32), np.empty(slots * cap, dtype=np.int32),
                      np.empty(slots * cap, dtype=np.float32))
    while (next_j < stop_j).any():
        for_rows(_join_emit, slots, data, metric_code, p, snap_idx, snap_new, rev_ptr, rev_src, rev_new,
                 max_forward, n_rev_max, heap_dist, next_j, stop_j, out_dest, out_src, out_dist, out_count,
                 min_rows=1)
        _apply_updates(out_dest, out_src, out_dist, out_count, heap_idx, heap_dist, heap_new, sorted_buffers)
    return int(np.count_nonzero(heap_new))


#: NN-descent checks its sampled recall after every sweep and stops when it is
#: ``_EARLY_STOP_MARGIN`` above the target. The sample's exact neighbours are searched
#: once (256 rows against all: ~50 ms at 100k x 50), each check after that is a
#: comparison. On the 100k x 50 mixture the last two of five sweeps (0.39 s of 2.6 s)
#: lifted recall from 0.9846 to 0.9865. Wide lists reach the target in fewer sweeps than
#: their changes settle: PaCMAP's k = 60 (lists of 80) at 100k had recall 0.997 after
#: the first sweep with 62% of its links changed; the check there (it waited for fewer
#: than 5% changed) saves the second sweep, 10.7 -> 6.5 s.
_EARLY_STOP_MARGIN = 0.03

#: It also stops when the sampled recall is ``_TAIL_MARGIN`` above the target and the
#: sweep changed fewer than ``_TAIL_CHANGES`` of the links: the sweeps that follow only
#: settle the last few. On the 1M x 50 mixture of 20 clusters (lists of 32), recall on
#: 2,000 rows after sweeps 4-7 was 0.9626, 0.9684, 0.9697, 0.9698, the sweeps
#: changing 4.9%, 0.84%, 0.16%, 0.03% of the links; sweeps 6 and 7 took 4.3 s of 69.
_TAIL_MARGIN = 0.01
_TAIL_CHANGES = 0.01

#: From this many points NN-descent starts with widened lists (see nndescent_knn),
#: for k up to _WIDE_UP_TO_K.
_WIDE_FROM_POINTS = 500_000
_WIDE_UP_TO_K = 30

#: Forward links of a point that join per sweep (its nearest ones), and the most
#: reverse links (see nndescent_knn).
_MAX_CANDIDATES = 60
_MAX_REVERSE = 240
_REVERSE_BUDGET = 7200


def _self_knn_of_rows(data: np.ndarray, rows: np.ndarray, k: int, metric: str,
                      metric_kwds: dict[str, Any] | None = None) -> np.ndarray:
    """Exact k nearest neighbours of some rows of ``data`` within it, themselves excluded."""
    idx, _ = exact_knn(data, min(k + 1, data.shape[0]), metric, queries=data[rows], metric_kwds=metric_kwds)
    out = np.full((rows.size, k), -1, dtype=np.int32)
    for r, row in enumerate(rows):
        others = idx[r][idx[r] != row][:k]
        out[r, : others.size] = others
    return out


def _rows_recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each true neighbour row found (duplicates at distance 0 count)."""
    hits = [np.intersect1d(f, t[t >= 0]).size / max(1, (t >= 0).sum()) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits))


def _widen(heap_idx: np.ndarray, heap_dist: np.ndarray, width: int) -> tuple[np.ndarray, ...]:
    """Neighbour lists of ``width`` columns holding the current ones (rest empty)."""
    n, k = heap_idx.shape
    idx = np.full((n, width), -1, dtype=np.int32)
    dist = np.full((n, width), np.inf, dtype=np.float32)
    idx[:, :k], dist[:, :k] = heap_idx, heap_dist
    return idx, dist, np.ones((n, width), dtype=np.uint8)


def nndescent_knn(
    data: np.ndarray,
    k: int,
    metric: str = "euclidean",
    *,
    random_state: int | None = None,
    n_trees: int | None = None,
    max_iters: int = 12,
    delta: float = 0.001,
    max_reverse: int | None = None,
    target_recall: float | None = 0.95,
    log: Callable[[str], None] | None = None,
    metric_kwds: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate k nearest neighbours by RP-tree init and NN-descent (self excluded).

    Same contract as :func:`exact_knn` for a self-join. Reproducible for a seed
    whatever the thread count.

    Parameters
    ----------
    data : ndarray of shape (n, d)
    k : int
        Neighbours per point, ``1 <= k <= n - 1``.
    metric : str, default="euclidean"
        One of ``metrics.METRICS`` or an alias (see :mod:`.metrics`).
    random_state : int, optional
        Seed of the trees and the reverse-link sampling.
    n_trees : int, optional
        Random-projection trees for the starting graph; default 8.
    max_iters : int, default=12
        Sweeps at most.
    delta : float, default=0.001
        Stop when a sweep changes fewer than ``delta * n * k`` links.
    max_reverse : int, optional
        Reverse links that join at a point per sweep; default ``8 x`` the search
        width, at most ``7200 / width`` and 240 (with the nearest 60 forward links).
    target_recall : float or None, default=0.95
        After the sweeps converge, the recall of the graph is estimated against an
        exact search from 256 seeded rows; below this target the search lists are
        widened by half, once, and the sweeps resume from the graph found. The
        estimate is also taken after each sweep, and the search stops as soon as it
        clears the target by 0.03, or by 0.01 after a sweep that changed fewer than 1%
        of the links. None skips both checks.
    log : callable, optional
        Receives a line per recall check.
    metric_kwds : dict, optional
        The metric's parameters: ``{"p": p}`` for minkowski (default 2).

    Returns
    -------
    indices : ndarray of shape (n, k), int32
    distances : ndarray of shape (n, k), float32
    """
    metric = check_metric(metric)
    p = minkowski_p(metric, metric_kwds)
    n = data.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"k={k} neighbours asked of {n} points; k must be between 1 and {n - 1}")
    prepared, _ = prepare(data, metric)
    code = _METRIC_CODE[metric]
    # None selects the product metrics' specialisation of the kernels (see _pair_dist).
    p32 = np.float32(p) if metric in DIRECT_METRICS else None
    seed = int(np.random.default_rng(random_state).integers(0, 2**62))
    trees = n_trees or 8
    # Searching a few more than k neighbours and keeping the best k lifts recall at
    # k=14 from ~0.95 to ~0.98 on 50-D mixtures (NN-descent stalls less).
    k_search = min(n - 1, k + max(4, k // 3))
    if n >= _WIDE_FROM_POINTS and k <= _WIDE_UP_TO_K:
        # Large sets start with the widened lists the recall check below would ask
        # for: converging narrow first and then widening costs ~2x one narrow run,
        # starting wide ~1.7x (on 50-D mixtures, recall 0.885 at 1M points with
        # lists of 18). Re-measured with the local joins, k = 14 at 1M: lists of 18
        # converge to 0.895 (50 clusters) and 0.819 (20), widened 50.7 s / 61.6 s for
        # recall 0.959 / 0.920; lists of 30 from the start 46 s / 58 s for 0.983 /
        # 0.957 (k = 15). Wide searches (t-SNE's k = 90, PaCMAP's k + 50) are left to
        # the recall check, which widens them only where the sample falls short: a
        # sweep explores at most the nearest _MAX_CANDIDATES links of a list whatever
        # its width, and each entry holds 19 bytes over a sweep (lists of 180 at 1M
        # points: 3.4 GB, lists of 120: 2.3 GB). At least 2k + 2: UMAP's k = 14 got
        # lists of 27, converged to ~0.943 on the 20-cluster mixture and was widened
        # (87.9 s); lists of 30 reach 0.962 in 57.8 s.
        k_search = min(n - 1, max(k_search + max(4, k_search // 2), 2 * k + 2))
    leaf_size = max(k_search + 1, 32)
    heap_idx = np.full((n, k_search), -1, dtype=np.int32)
    heap_dist = np.full((n, k_search), np.inf, dtype=np.float32)
    heap_new = np.zeros((n, k_search), dtype=np.uint8)
    # Trees are built a group at a time, one per thread (a tree is a serial split
    # loop: 0.5 s each at 1M x 50), then joined leaf by leaf; at most 4 at once, as
    # each holds 24 bytes a point.
    group = max(1, min(trees, numba.get_num_threads(), 4))
    perms = np.empty((group, n), dtype=np.int64)
    leaf_los = np.empty((group, n), dtype=np.int64)
    leaf_his = np.empty((group, n), dtype=np.int64)
    n_leaves = np.empty(group, dtype=np.int64)
    # Work in the leaf order of one tree: neighbours then sit close in memory, which
    # keeps the sweeps' random row reads in cache (about 2x faster at 100k points).
    _rp_tree(prepared, seed + trees, leaf_size, perms[0], leaf_los[0], leaf_his[0])
    order = perms[0].copy()
    if metric in DIRECT_METRICS or prepared.shape[1] % 16 == 0:
        prepared = np.ascontiguousarray(prepared[order])
    else:
        # Rows padded with zeros to a multiple of 16 floats (64 bytes), which leaves
        # every distance and dot product as it was: the distance loop runs whole
        # vector steps with no remainder, and a row spans the fewest cache lines
        # (200k x 50 mixture, one thread: 18.5 -> 16.5 s; 28% more copy, 56 MB at 1M).
        padded = np.zeros((n, -(-prepared.shape[1] // 16) * 16), dtype=np.float32)
        padded[:, : prepared.shape[1]] = prepared[order]
        prepared = padded
    for first in range(0, trees, group):
        seeds = np.arange(seed + first, seed + min(trees, first + group), dtype=np.int64)
        for_rows(_rp_forest, seeds.size, prepared, seeds, leaf_size, perms, leaf_los, leaf_his, n_leaves,
                 min_rows=1)
        for t in range(seeds.size):
            for_rows(_leaf_join, int(n_leaves[t]), prepared, perms[t], leaf_los[t], leaf_his[t], code, p32, heap_idx,
                     heap_dist, heap_new, min_rows=1)
    del perms, leaf_los, leaf_his
    for_rows(_random_fill, n, prepared, seed, code, p32, heap_idx, heap_dist, heap_new)
    # The recall NN-descent converges to falls with the number of points as much as
    # with the data's intrinsic dimension: with lists of k + 4 for k = 14, a 50-D
    # mixture reached 0.986 at 100k points but 0.885 at 1M. Measuring it on a sample
    # costs a fraction of a sweep, so widen the lists only where it falls short. On a
    # 200k mixture of 20k-point clusters (recall 0.88 with lists of 18): lists of 26
    # from the start reached 0.963 in 1.7x the time, widening 18 -> 27 after
    # convergence ~0.95 in 2x; a second widening (40) 0.99 in 4.6x, too dear.
    check_rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, 256), replace=False))
    truth = None

    def sampled_recall() -> float:
        nonlocal truth
        if truth is None:
            truth = _self_knn_of_rows(prepared, check_rows, k, metric, metric_kwds)
        return _rows_recall(heap_idx[check_rows, :k], truth)

    for widening in range(2):
        heap_new[:] = 1
        cleared = False
        # Reverse links are the other half of each point's neighbourhood, and in high
        # dimensions some points (hubs) are listed by hundreds: a hub joins a window
        # of them per sweep, and a new link outside the window turns old unexplored.
        # On the 1M x 50 mixture of 20 clusters (lists of 30) a cap of 200 gave recall
        # 0.953 in 56 s, 300 0.965 in 62 s, none 0.979 in 75 s; 4 x k_search, as the
        # pull sweeps had (they reached past a hub from the other side), 0.958 on the
        # 50-cluster one where 200 gave 0.983. A join costs (forward + reverse)^2 / 2
        # distances, so the cap narrows as the lists widen: t-SNE's k = 90 (lists of
        # 120) on a 200k mixture took 46.7 s with 240 reverse links, 30.5 s with 90,
        # 23.5 s with 45 (recall 0.9999, 0.9998, 0.995; the pull sweeps 36.3 s).
        reverse_cap = max_reverse or min(8 * k_search, _REVERSE_BUDGET // k_search, _MAX_REVERSE)
        for sweep in range(max_iters):
            sweep_seed = (seed + 7919 * (sweep + 1) + 104729 * widening) % 2**62
            changes = _join_sweep(prepared, code, p32, heap_idx, heap_dist, heap_new, _MAX_CANDIDATES, reverse_cap,
                                  sweep_seed)
            if changes < delta * n * k_search:
                break
            if target_recall is not None:
                # Stop as soon as the sampled recall clears the target with room to
                # spare, instead of sweeping on for the last few links.
                recall = sampled_recall()
                settling = changes < _TAIL_CHANGES * n * k_search and recall >= target_recall + _TAIL_MARGIN
                cleared = settling or recall >= target_recall + _EARLY_STOP_MARGIN
                if cleared:
                    if log is not None:
                        log(f"NN-descent recall@{k} ~{recall:.3f} on {check_rows.size} rows after sweep "
                            f"{sweep + 1}, lists of {k_search}: stopping early"
                            + (f" ({changes / (n * k_search):.2%} of links changed)" if settling else ""))
                    break
        if cleared or target_recall is None or widening == 1 or k_search >= n - 1:
            break
        recall = sampled_recall()
        if log is not None:
            log(f"NN-descent recall@{k} ~{recall:.3f} on {check_rows.size} rows, lists of {k_search}")
        if recall >= target_recall:
            break
        wider = min(n - 1, k_search + max(4, k_search // 2))
        heap_idx, heap_dist, heap_new = _widen(heap_idx, heap_dist, wider)
        k_search = wider
    heap_idx = np.ascontiguousarray(heap_idx[:, :k])
    heap_dist = np.ascontiguousarray(heap_dist[:, :k])
    if metric == "euclidean":
        np.sqrt(heap_dist, out=heap_dist)
        _exact_euclidean(prepared, prepared, heap_idx, heap_dist)
    elif metric in DIRECT_METRICS:
        _exact_direct(prepared, prepared, heap_idx, heap_dist, code, float(p))
    indices = np.empty_like(heap_idx)
    distances = np.empty_like(heap_dist)
    indices[order] = order[heap_idx].astype(np.int32)
    distances[order] = heap_dist
    return indices, distances
