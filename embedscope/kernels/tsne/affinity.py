"""t-SNE input affinities: per-point perplexity calibration and the symmetric joint P.

Distances come in as the kNN search returns them ((n, k) float32, self excluded); P goes
out as a float32 CSR matrix with int32 indices that sums to 1, the form every gradient
kernel (CPU and GPU) reads.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from embedscope.kernels._threads import for_rows


def _calibrate(dist: np.ndarray, indices: np.ndarray | None, squared: bool, target_entropy: float, tol: float,
               max_iter: int, out: np.ndarray) -> int:
    """Row-wise binary search on the Gaussian precision to hit the target entropy; rows missed.

    ``indices`` (or None) marks missing entries (-1 or the row itself): they get
    probability 0 and take no part in the search.
    """
    marks = np.empty((0, 0), dtype=np.int32) if indices is None else indices
    return int(sum(for_rows(_calibrate_rows, dist.shape[0], dist, marks, indices is not None, squared,
                            target_entropy, tol, max_iter, out)))


@numba.njit(cache=True, nogil=True)
def _calibrate_rows(start, stop, dist, marks, has_marks, squared, target_entropy, tol, max_iter,
                    out):  # pragma: no cover - numba
    # Distances are read in their own dtype and squared here in float64 (exact for
    # float32 input), so no float64 copy of the (n, k) array is ever made: at 1M
    # points and k = 90 those copies were 2.2 GB of the affinity stage's peak.
    k = dist.shape[1]
    n_missed = 0
    sq = np.empty(k, dtype=np.float64)
    for i in range(start, stop):
        dmin = np.inf
        for j in range(k):
            # A missing entry is searched at a huge finite distance (weight 0, never
            # 0 * inf), as the GPU twin does, and written as 0 below.
            missing = has_marks and (marks[i, j] < 0 or marks[i, j] == i)
            v = 1e18 if missing else np.float64(dist[i, j])
            sq[j] = v * v if squared else v
            if sq[j] < dmin:
                dmin = sq[j]
        mean = 0.0
        for j in range(k):
            mean += sq[j] - dmin
        mean /= k
        # Start at the scale of the distances: the search then takes a few halvings.
        beta = 1.0 / mean if mean > 0.0 else 1.0
        lo = 0.0
        hi = np.inf
        hit = False
        for _ in range(max_iter):
            total = 0.0
            weighted = 0.0
            for j in range(k):
                shifted = sq[j] - dmin
                e = np.exp(-beta * shifted)
                total += e
                weighted += shifted * e
            # total >= 1: the nearest neighbour contributes exp(0).
            entropy = np.log(total) + beta * weighted / total
            if abs(entropy - target_entropy) <= tol:
                hit = True
                break
            if entropy > target_entropy:
                lo = beta
                beta = beta * 2.0 if hi == np.inf else 0.5 * (beta + hi)
            else:
                hi = beta
                beta = 0.5 * (beta + lo)
        if not hit:
            n_missed += 1
        total = 0.0
        for j in range(k):
            total += np.exp(-beta * (sq[j] - dmin))
        for j in range(k):
            missing = has_marks and (marks[i, j] < 0 or marks[i, j] == i)
            out[i, j] = 0.0 if missing else np.exp(-beta * (sq[j] - dmin)) / total
    return n_missed


def conditional_affinities(
    distances: np.ndarray, perplexity: float, *, squared: bool = True,
    tol: float = 1e-5, max_iter: int = 200,
) -> tuple[np.ndarray, int]:
    """Gaussian conditional probabilities ``p_j|i`` over each row's neighbours.

    Parameters
    ----------
    distances : ndarray of shape (n, k)
        Distances to each point's k neighbours (self excluded).
    perplexity : float
        Target perplexity, ``0 < perplexity < k`` for the search to be meaningful.
    squared : bool, default=True
        Square the distances first (the Gaussian of t-SNE is on squared euclidean
        distances; cosine and inner-product distances are used as they are).
    tol : float, default=1e-5
        Tolerance on the entropy (nats).
    max_iter : int, default=200
        Binary-search steps per row.

    Returns
    -------
    P : ndarray of shape (n, k), float32
        Each row sums to 1. Rows whose neighbours are all at the same distance
        (duplicates) come out uniform, never NaN.
    n_missed : int
        Rows where the search did not reach ``tol``.
    """
    d = np.ascontiguousarray(distances)
    if d.dtype != np.float32 and d.dtype != np.float64:
        d = d.astype(np.float64)
    out = np.empty(d.shape, dtype=np.float32)
    missed = _calibrate(d, None, squared, float(np.log(perplexity)), tol, max_iter, out)
    return out, int(missed)


def joint_probabilities(indices: np.ndarray, conditional: np.ndarray, n: int) -> sp.csr_matrix:
    """Symmetric joint P = (P_cond + P_cond^T) / sum, as a CSR matrix (float32, sums to 1).

    Entries with a negative index, the row itself or a zero probability are left out,
    and a neighbour listed twice in a row counts once with the two probabilities
    summed. Rows come out with sorted indices (int32, int64 above 2**31 - 1 entries).

    Built without a sparse-matrix sum: scipy's ``cond + cond.T`` made int64 and float64
    copies of every edge, 4.7 GB above its input at 1M points and k = 90 (random
    graph, benchmarks/tsne_memory.py); this holds the (n, k) rows and room for the
    result, 2.0 GB there, in about the same time.
    """
    idx = np.array(indices, dtype=np.int32, order="C")
    val = np.array(conditional, dtype=np.float32, order="C")
    if idx.shape != val.shape or idx.ndim != 2 or idx.shape[0] != n:
        raise ValueError(f"indices {idx.shape} and conditional {val.shape} must both be (n={n}, k)")
    return _joint_in_place(idx, val, n)


#: Up to this many points the joint P is built by scipy's sparse sum (:func:`_joint_scipy`),
#: the same matrix bit for bit: its nine kernels were ~2 s of a first small fit's
#: compiling, and at this size scipy's int64 / float64 copies of the edges are ~100 MB.
SCIPY_JOINT_MAX = 20_000
#: Entries summed per block for P's total, then the block sums in order: the same total
#: for any thread count (and in both builders).
_SUM_BLOCK = 1 << 16


def joint_builder(n: int) -> str:
    """Which builder makes the joint P of ``n`` points: ``"scipy"`` or ``"kernels"``.

    The first fit's precompiled kernels (``backends/cpu.py``) follow it too.
    """
    return "scipy" if n <= SCIPY_JOINT_MAX else "kernels"


def _joint_in_place(idx: np.ndarray, val: np.ndarray, n: int) -> sp.csr_matrix:
    """:func:`joint_probabilities` on (n, k) int32 / float32 rows it may reorder and overwrite."""
    if joint_builder(n) == "scipy":
        return _joint_scipy(idx, val, n)
    return _joint_kernels(idx, val, n)


def _joint_scipy(idx: np.ndarray, val: np.ndarray, n: int) -> sp.csr_matrix:
    """The joint P by scipy: ``cond + cond.T`` in float32 (each sum correctly rounded, as
    the kernels' float64 sum stored as float32), sorted rows, the same blocked total."""
    rows = np.repeat(np.arange(n, dtype=np.int32), idx.shape[1])
    cols, vals = idx.ravel(), val.ravel()
    keep = (cols >= 0) & (cols != rows) & (vals != 0.0)
    cond = sp.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=(n, n), dtype=np.float32)
    joint = (cond + cond.T).tocsr()
    joint.sort_indices()
    data = joint.data
    # sequential float64 sums per block (cumsum adds in order), as _block_sums does
    sums = np.array([np.cumsum(data[b:b + _SUM_BLOCK], dtype=np.float64)[-1]
                     for b in range(0, data.size, _SUM_BLOCK)], dtype=np.float64)
    total = float(np.sum(sums))
    if total > 0.0:
        joint.data = (data.astype(np.float64) / total).astype(np.float32)
    indptr = joint.indptr.astype(np.int32, copy=False)
    return sp.csr_matrix((joint.data, joint.indices.astype(np.int32, copy=False), indptr), shape=(n, n), copy=False)


def _joint_kernels(idx: np.ndarray, val: np.ndarray, n: int) -> sp.csr_matrix:
    """:func:`_joint_in_place` by the numba kernels, in about the memory of its input.

    Each row of ``P_cond^T`` lands straight in the output (room for ``k`` + its
    in-degree entries per row), already sorted as the rows are read in order; each
    row's own sorted entries are merged with it, a mutual pair's two values summed,
    and the rows are then packed together.
    """
    count = np.empty(n, dtype=np.int64)
    for_rows(_tidy_rows, n, idx, val, count)
    room = np.zeros(n + 1, dtype=np.int64)
    _in_degrees(idx, count, room[1:])
    room[1:] += count
    np.cumsum(room, out=room)
    out_idx = np.empty(int(room[-1]), dtype=np.int32)
    out_val = np.empty(int(room[-1]), dtype=np.float32)
    for_rows(_place_rows, n, idx, val, count, room, out_idx, out_val)
    _place_transpose(idx, val, count, room, out_idx, out_val)
    del idx, val
    length = np.empty(n, dtype=np.int64)
    for_rows(_merge_rows, n, count, room, out_idx, out_val, length)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(length, out=indptr[1:])
    _pack_rows(room, indptr, out_idx, out_val)
    nnz = int(indptr[-1])
    # Shrinks in place (realloc): no second copy of the largest arrays.
    out_idx.resize(nnz, refcheck=False)
    out_val.resize(nnz, refcheck=False)
    # Summed in fixed blocks, then the block sums in order: the same total for any thread count.
    block = _SUM_BLOCK
    sums = np.zeros(-(-nnz // block), dtype=np.float64)
    for_rows(_block_sums, sums.size, out_val, block, sums, min_rows=1)
    total = float(np.sum(sums))
    if total > 0.0:
        for_rows(_divide, nnz, out_val, total)
    if nnz > np.iinfo(np.int32).max:
        return sp.csr_matrix((out_val, out_idx.astype(np.int64), indptr), shape=(n, n), copy=False)
    return sp.csr_matrix((out_val, out_idx, indptr.astype(np.int32)), shape=(n, n), copy=False)


@numba.njit(cache=True, nogil=True)
def _sort_keys(keys, stack):  # pragma: no cover - numba
    """Sort ``keys`` ascending in place: quicksort (median of three), insertion sort
    below 16 keys, the larger part pushed on ``stack`` (int64, >= 2 * 64 entries).

    In place of ``keys[:m].sort()``, whose generic quicksort and its five helpers took
    1.0 s of a first t-SNE fit to compile.
    """
    top = 0
    lo, hi = 0, keys.shape[0] - 1
    while True:
        while hi - lo >= 16:
            mid = (lo + hi) >> 1
            # order lo, mid, hi; the median goes to hi - 1 as the pivot
            if keys[mid] < keys[lo]:
                keys[mid], keys[lo] = keys[lo], keys[mid]
            if keys[hi] < keys[lo]:
                keys[hi], keys[lo] = keys[lo], keys[hi]
            if keys[hi] < keys[mid]:
                keys[hi], keys[mid] = keys[mid], keys[hi]
            pivot = keys[mid]
            keys[mid], keys[hi - 1] = keys[hi - 1], keys[mid]
            a = lo
            b = hi - 1
            while True:
                a += 1
                while keys[a] < pivot:
                    a += 1
                b -= 1
                while pivot < keys[b]:
                    b -= 1
                if a >= b:
                    break
                keys[a], keys[b] = keys[b], keys[a]
            keys[a], keys[hi - 1] = keys[hi - 1], keys[a]
            # the smaller side next, the larger one kept: the stack stays under 2 log2(m)
            if a - lo < hi - a:
                stack[top], stack[top + 1] = a + 1, hi
                hi = a - 1
            else:
                stack[top], stack[top + 1] = lo, a - 1
                lo = a + 1
            top += 2
        for t in range(lo + 1, hi + 1):
            item = keys[t]
            u = t
            while u > lo and keys[u - 1] > item:
                keys[u] = keys[u - 1]
                u -= 1
            keys[u] = item
        if top == 0:
            return
        top -= 2
        lo, hi = stack[top], stack[top + 1]


@numba.njit(cache=True, nogil=True)
def _tidy_rows(start, stop, idx, val, count):  # pragma: no cover - numba
    """Sort each row by neighbour, drop the missing and zero entries and fold repeats;
    the row's ``count[i]`` valid entries come first, the rest is -1 / 0."""
    k = idx.shape[1]
    # (neighbour << 32 | slot) sorted in place: no per-row allocation, ties impossible
    keys = np.empty(k, dtype=np.int64)
    vals = np.empty(k, dtype=np.float32)
    stack = np.empty(128, dtype=np.int64)
    for i in range(start, stop):
        m = 0
        for a in range(k):
            j = idx[i, a]
            vals[a] = val[i, a]
            if j >= 0 and j != i and val[i, a] != 0.0:
                keys[m] = (np.int64(j) << 32) | a
                m += 1
        _sort_keys(keys[:m], stack)
        c = 0
        for t in range(m):
            j = np.int32(keys[t] >> 32)
            v = vals[keys[t] & 0xFFFFFFFF]
            if c > 0 and idx[i, c - 1] == j:
                val[i, c - 1] += v
            else:
                idx[i, c] = j
                val[i, c] = v
                c += 1
        for a in range(c, k):
            idx[i, a] = -1
            val[i, a] = 0.0
        count[i] = c


@numba.njit(cache=True)
def _in_degrees(idx, count, degree):  # pragma: no cover - numba
    """How many rows list each point (serial: the increments land on other rows)."""
    for i in range(idx.shape[0]):
        for a in range(count[i]):
            degree[idx[i, a]] += 1


@numba.njit(cache=True, nogil=True)
def _place_rows(start, stop, idx, val, count, room, out_idx, out_val):  # pragma: no cover - numba
    for i in range(start, stop):
        base = room[i]
        for a in range(count[i]):
            out_idx[base + a] = idx[i, a]
            out_val[base + a] = val[i, a]


@numba.njit(cache=True)
def _place_transpose(idx, val, count, room, out_idx, out_val):  # pragma: no cover - numba
    """Every link i -> j also written in row j, after j's own entries. Serial and in
    increasing i, so each row's transposed run is sorted and the result does not
    depend on the thread count."""
    n = idx.shape[0]
    fill = room[:-1] + count
    for i in range(n):
        for a in range(count[i]):
            j = idx[i, a]
            out_idx[fill[j]] = i
            out_val[fill[j]] = val[i, a]
            fill[j] += 1


@numba.njit(cache=True, nogil=True)
def _merge_rows(start, stop, count, room, out_idx, out_val, length):  # pragma: no cover - numba
    """Merge each row's two sorted runs at the head of its room, summing equal neighbours
    (a mutual pair's two conditional probabilities); ``length[i]`` entries remain."""
    # One scratch pair for the rows of this call, not a copy per row: allocations in
    # the loop were a malloc and reference counting per row.
    width = 0
    for i in range(start, stop):
        width = max(width, count[i])
    head_idx = np.empty(width, dtype=out_idx.dtype)
    head_val = np.empty(width, dtype=out_val.dtype)
    for i in range(start, stop):
        lo, mid, hi = room[i], room[i] + count[i], room[i + 1]
        n_head = mid - lo
        for t in range(n_head):
            head_idx[t] = out_idx[lo + t]
            head_val[t] = out_val[lo + t]
        a, b, w = 0, mid, lo
        while a < n_head or b < hi:
            if b >= hi or (a < n_head and head_idx[a] < out_idx[b]):
                j, v = head_idx[a], np.float64(head_val[a])
                a += 1
            elif a >= n_head or out_idx[b] < head_idx[a]:
                j, v = out_idx[b], np.float64(out_val[b])
                b += 1
            else:
                j, v = head_idx[a], np.float64(head_val[a]) + np.float64(out_val[b])
                a += 1
                b += 1
            out_idx[w] = j
            out_val[w] = v
            w += 1
        length[i] = w - lo


@numba.njit(cache=True)
def _pack_rows(room, indptr, out_idx, out_val):  # pragma: no cover - numba
    """Move each row from the start of its room to its place in the packed arrays
    (leftwards, in row order, so no row is overwritten before it moves)."""
    for i in range(indptr.size - 1):
        src, dst = room[i], indptr[i]
        if src != dst:
            for t in range(indptr[i + 1] - dst):
                out_idx[dst + t] = out_idx[src + t]
                out_val[dst + t] = out_val[src + t]


@numba.njit(cache=True, nogil=True)
def _block_sums(start, stop, values, block, sums):  # pragma: no cover - numba
    for b in range(start, stop):
        acc = 0.0
        for t in range(b * block, min((b + 1) * block, values.size)):
            acc += values[t]
        sums[b] = acc


@numba.njit(cache=True, nogil=True)
def _divide(start, stop, values, total):  # pragma: no cover - numba
    for t in range(start, stop):
        values[t] = np.float64(values[t]) / total


def knn_joint_probabilities(indices: np.ndarray, distances: np.ndarray, n: int, perplexity: float, *,
                            squared: bool = True, overwrite: bool = False) -> tuple[sp.csr_matrix, int]:
    """The joint P of a kNN graph (host), and the rows whose perplexity search missed.

    Missing neighbours (``-1``, or the point itself) get no weight. With
    ``overwrite=True`` the (n, k) arrays are used as scratch where their types allow
    (int32 indices, float32 distances, C order): the conditional probabilities replace
    the distances and the rows are sorted in place, so the stage holds nothing
    (n, k)-sized beyond them (720 MB less at 1M points and k = 90). The GPU twin is
    :func:`embedscope.kernels.tsne.affinity_gpu.joint_probabilities_gpu`.
    """
    d = np.ascontiguousarray(distances)
    if d.dtype != np.float32 and d.dtype != np.float64:
        d = d.astype(np.float64)
    marks = np.ascontiguousarray(indices)
    in_place = overwrite and d.dtype == np.float32 and d.flags.writeable
    # Missing entries take no part in the perplexity search and get probability 0;
    # the joint then leaves them out. A row is read whole before it is written, so
    # the search may write over the distances it reads.
    cond = d if in_place else np.empty(d.shape, dtype=np.float32)
    missed = _calibrate(d, marks, squared, float(np.log(perplexity)), 1e-5, 200, cond)
    del d
    reuse = overwrite and marks.dtype == np.int32 and marks.flags.writeable
    rows = marks if reuse else np.array(marks, dtype=np.int32, order="C")
    del marks
    return _joint_in_place(rows, cond, n), int(missed)
