"""Approximate kNN by an inverted-file index (IVF-flat), written once for cupy and numpy.

Exact search costs ``N^2 d``: 11-16 s for 1M x 50 on an H200, so ~25 min at 10M.
An IVF index cuts each query's work to a few inverted lists:

1. **Coarse quantiser**: seeded k-means (Lloyd iterations on a sample of
   ``64 x n_lists`` points, assignments by matrix products) splits the space into
   ``n_lists`` cells, ~sqrt(N) by default.
2. **Inverted lists**: every point goes to its nearest centroid; the data is stored
   sorted by list (a permutation plus CSR offsets), so a list is a contiguous block
   of rows, and within a list rows keep their original order.
3. **Search**: each query visits its ``n_probe`` nearest lists. The loop runs over
   lists, not queries: all queries of a batch that probe list ``l`` are gathered
   and measured against the list's rows in one matrix product, whose rows are
   reduced to their k smallest entries (the numba.cuda selection kernel of
   :mod:`.gpu` on cupy; partition of packed (distance, index) keys with numpy).
   The per-list results of a query (one slot per probe) are merged at the end.

Same contract as :func:`embedscope.kernels.knn.exact_knn` (see
:mod:`embedscope.kernels.knn`): int32 indices and float32 distances ``(m, k)``, rows
ascending, ties by index, self excluded on a self-join (duplicates kept, at distance
0), euclidean distances recomputed exactly for the final k. Only the neighbours are approximate; a row whose
probed lists hold fewer than k candidates is searched again with twice the probes
(at worst all lists, which is exact), so every row is full.

Inner products are searched through the usual reduction to euclidean search: a data
point ``x`` is clustered as ``[x, sqrt(M^2 - |x|^2)]`` (``M`` the largest norm) and a
query as ``[q, 0]``, whose squared distance is ``|q|^2 + M^2 - 2 <q, x>``: the
nearest augmented points are those of the largest products, so cells and probes
work in that space as they do for euclidean search (self-join queries, which are
not augmented, are still made to visit their own list).

Ties: candidates are compared as 64-bit keys, the float32 distance's bits made
order-preserving in the high word and the index in the low one, so sorting a key
sorts by (distance, index) with no second pass and no tie left to chance.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from embedscope._array import array_module, to_host
from embedscope.kernels.knn.consts import KMAX
from embedscope.kernels.knn.metrics import _METRIC_CODE, check_metric

#: The metrics the index clusters and searches (all of them by matrix products).
IVF_METRICS = ("euclidean", "cosine", "inner_product")

#: Temporaries a numpy search may hold at once (its batches are sized to this).
HOST_BUDGET_BYTES = 256 * 2**20
#: Share of the free device memory the cupy search sizes its batches to, once the
#: index (sorted data, norms, permutation) is resident.
DEVICE_BUDGET_FRACTION = 0.5
#: k-means sample per list: enough points per centroid for Lloyd's steps to settle,
#: few enough that training costs less than assigning all N points once.
SAMPLE_PER_LIST = 64
#: Default probes as a share of the lists, and the least used.
PROBE_FRACTION = 0.08
MIN_PROBES = 8

_MASK32 = 0xFFFFFFFF


# ----------------------------------------------------------------------------- helpers

def _prepare(X: Any, metric: str, xp: Any, chunk: int) -> tuple[Any, Any]:
    """float32 rows (unit rows for cosine) and squared norms, in row chunks.

    Norms are summed in float64 a chunk at a time, so the float64 temporaries stay
    within the batch budget however large X is.
    """
    X = xp.ascontiguousarray(xp.asarray(X, dtype=xp.float32))
    n = X.shape[0]
    sq = xp.empty(n, dtype=xp.float32)
    out = X if metric != "cosine" else xp.empty_like(X)
    for r0 in range(0, n, chunk):
        block = X[r0:r0 + chunk]
        block_sq = (block.astype(xp.float64) ** 2).sum(axis=1)
        if metric == "cosine":
            norms = xp.sqrt(block_sq)
            # Zero rows stay zero: cosine similarity 0, distance 1, never NaN.
            out[r0:r0 + chunk] = block / xp.where(norms > 0, norms, 1.0).astype(xp.float32)[:, None]
            block_sq = (out[r0:r0 + chunk].astype(xp.float64) ** 2).sum(axis=1)
        sq[r0:r0 + chunk] = block_sq.astype(xp.float32)
    return out, sq


def _keys(dist: Any, idx: Any, xp: Any) -> Any:
    """uint64 keys that sort by (distance, index); index -1 (no candidate) sorts last."""
    bits = (dist.astype(xp.float32) + xp.float32(0.0)).view(xp.uint32)  # + 0: -0.0 -> +0.0
    # Negative floats reverse their order when read as integers: flip all their bits;
    # non-negative ones only need the sign bit set to sit above them.
    high = xp.where(bits >= xp.uint32(0x80000000), ~bits, bits | xp.uint32(0x80000000))
    low = (idx.astype(xp.int64) & _MASK32).astype(xp.uint64)
    return (high.astype(xp.uint64) << xp.uint64(32)) | low


def _unkey(keys: Any, xp: Any) -> tuple[Any, Any]:
    """(int32 index, float32 distance) of keys; index -1 comes back with distance inf."""
    low = (keys & xp.uint64(_MASK32)).astype(xp.int64)
    idx = xp.where(low == _MASK32, -1, low).astype(xp.int32)
    high = (keys >> xp.uint64(32)).astype(xp.uint32)
    bits = xp.where(high >= xp.uint32(0x80000000), high ^ xp.uint32(0x80000000), ~high)
    dist = xp.where(idx < 0, xp.float32(np.inf), bits.view(xp.float32))
    return idx, dist.astype(xp.float32)


def _smallest(keys: Any, k: int, xp: Any) -> Any:
    """Each row's k smallest keys, ascending (padded with the empty key)."""
    rows, cols = keys.shape
    if k < cols:
        keys = xp.partition(keys, k - 1, axis=1)[:, :k]
    keys = xp.sort(keys, axis=1)
    if k > cols:
        pad = xp.full((rows, k - cols), np.uint64(np.iinfo(np.uint64).max), dtype=xp.uint64)
        keys = xp.concatenate([keys, pad], axis=1)
    return keys


def _select_xp(gram: Any, q_sq: Any, d_sq: Any, k: int, code: int, col_offset: int, xp: Any) -> tuple[Any, Any]:
    """The selection kernel's contract with array ops: each row's k smallest distances.

    Distances use the kernel's formulas (clamped at 0 except inner products);
    indices are ``col_offset + column``, ties by index, empty slots -1 / inf.
    """
    if code == 0:
        dist = q_sq[:, None] + d_sq[None, :]
        dist -= xp.float32(2.0) * gram
        xp.maximum(dist, xp.float32(0.0), out=dist)
    elif code == 1:
        dist = xp.maximum(xp.float32(1.0) - gram, xp.float32(0.0))
    else:
        dist = -gram
    cols = xp.arange(col_offset, col_offset + gram.shape[1], dtype=xp.int64)
    return _unkey(_smallest(_keys(dist, cols[None, :], xp), k, xp), xp)


def _threads_for(n_cols: int, simulated: bool) -> int:
    """Threads per row of the selection kernel for a block of ``n_cols`` columns.

    Lists are ~sqrt(N) long, far narrower than the exact search's rows: a few dozen
    columns per thread keep the k-round merge from dominating. The simulator runs
    every thread as a Python thread, so it gets four.
    """
    if simulated:
        return 4
    return int(min(128, max(32, 1 << max(0, (n_cols // 32).bit_length() - 1))))


class _Selector:
    """Per-row top-k of a distance block: the numba.cuda kernel where it applies."""

    def __init__(self, xp: Any, use_kernel: bool | None) -> None:
        from embedscope.kernels._cuda import simulated

        self.xp = xp
        self.kernel = None
        self.simulated = simulated()
        if use_kernel or (use_kernel is None and xp is not np):
            from embedscope.kernels.knn.gpu import _kernels

            self.kernel = _kernels().select_topk

    def __call__(self, gram: Any, q_sq: Any, d_sq: Any, k: int, code: int, col_offset: int) -> tuple[Any, Any]:
        xp = self.xp
        if self.kernel is None or k > KMAX:
            return _select_xp(gram, q_sq, d_sq, k, code, col_offset, xp)
        rows = gram.shape[0]
        out_i = xp.empty((rows, k), dtype=xp.int32)
        out_d = xp.empty((rows, k), dtype=xp.float32)
        if rows:
            threads = _threads_for(gram.shape[1], self.simulated)
            self.kernel[rows, threads](xp.ascontiguousarray(gram), xp.ascontiguousarray(q_sq),
                                       xp.ascontiguousarray(d_sq), k, code, -1, col_offset, out_i, out_d)
        return out_i, out_d


def _drop_self(idx: Any, dist: Any, self_idx: Any, k: int, xp: Any) -> tuple[Any, Any]:
    """k of each row's k + 1 neighbours, without the row's own index where it is there."""
    is_self = (idx == self_idx[:, None]).astype(xp.int8)
    keep = xp.argsort(is_self, axis=1, kind="stable")[:, :k]
    return xp.take_along_axis(idx, keep, axis=1), xp.take_along_axis(dist, keep, axis=1)


# ----------------------------------------------------------------------------- the index

class _Index:
    """Centroids, data sorted by list, and what maps it back (all arrays of ``xp``)."""

    def __init__(self, data: Any, metric: str, n_lists: int, rng: np.random.Generator,
                 kmeans_iters: int, budget: int, xp: Any, selector: _Selector) -> None:
        self.xp = xp
        self.metric = metric
        self.code = _METRIC_CODE[metric]
        n, dim = data.shape
        X, x_sq = _prepare(data, metric, xp, max(1, budget // (24 * dim)))
        # Inner products: the extra coordinate sqrt(M^2 - |x|^2) of every data point.
        extra = None
        if metric == "inner_product":
            extra = xp.sqrt(xp.maximum(x_sq.max() - x_sq, xp.float32(0.0))).astype(xp.float32)
        self.n_lists = n_lists
        self.centroids, self.centroid_extra, self.centroid_sq = self._train(X, x_sq, extra, rng, kmeans_iters, budget)
        labels = self._assign(X, x_sq, extra, budget)[0]
        self.perm = xp.argsort(labels, kind="stable")  # stable: rows of a list keep their order
        self.inv_perm = xp.empty_like(self.perm)
        self.inv_perm[self.perm] = xp.arange(n, dtype=self.perm.dtype)
        counts = xp.bincount(labels, minlength=n_lists)
        self.offsets = np.concatenate([[0], np.cumsum(to_host(counts))]).astype(np.int64)
        self.home = labels[self.perm]  # the list of each sorted row
        self.data = X[self.perm]
        self.sq = x_sq[self.perm]
        self.selector = selector

    def _assign(self, X: Any, x_sq: Any, extra: Any, budget: int,
                centroids: Any = None, centroid_sq: Any = None, centroid_extra: Any = None) -> tuple[Any, Any]:
        """Nearest centroid of each row (and its squared distance), by row chunks."""
        xp = self.xp
        C = self.centroids if centroids is None else centroids
        c_sq = self.centroid_sq if centroid_sq is None else centroid_sq
        c_extra = self.centroid_extra if centroids is None else centroid_extra
        n = X.shape[0]
        labels = xp.empty(n, dtype=xp.int64)
        d2 = xp.empty(n, dtype=xp.float32)
        chunk = max(1, budget // (12 * C.shape[0] + 8 * X.shape[1]))
        for r0 in range(0, n, chunk):
            r1 = min(n, r0 + chunk)
            gram = X[r0:r1] @ C.T
            if extra is not None:
                gram += extra[r0:r1, None] * c_extra[None, :]
            part = c_sq[None, :] - xp.float32(2.0) * gram
            labels[r0:r1] = xp.argmin(part, axis=1)
            best = xp.take_along_axis(part, labels[r0:r1, None], axis=1)[:, 0]
            x_full = x_sq[r0:r1] if extra is None else x_sq[r0:r1] + extra[r0:r1] ** 2
            d2[r0:r1] = best + x_full
        return labels, d2

    def _train(self, X: Any, x_sq: Any, extra: Any, rng: np.random.Generator, iters: int,
               budget: int) -> tuple[Any, Any, Any]:
        """Seeded Lloyd's k-means on a sample; returns centroids, their extra coordinate, |c|^2."""
        xp = self.xp
        n = X.shape[0]
        n_lists = self.n_lists
        take = xp.asarray(np.sort(rng.choice(n, size=min(n, SAMPLE_PER_LIST * n_lists), replace=False)))
        S, s_sq = X[take], x_sq[take]
        s_extra = extra[take] if extra is not None else None
        # k-means runs on the augmented rows for inner products, plain ones otherwise.
        full = S if s_extra is None else xp.concatenate([S, s_extra[:, None]], axis=1)
        full_sq = s_sq if s_extra is None else s_sq + s_extra ** 2
        C = full[xp.asarray(rng.choice(S.shape[0], size=n_lists, replace=False))]
        for _ in range(iters):
            c_sq = (C.astype(xp.float64) ** 2).sum(axis=1).astype(xp.float32)
            labels, d2 = self._assign(full, full_sq, None, budget, C, c_sq, None)
            counts = xp.bincount(labels, minlength=n_lists)
            order = xp.argsort(labels, kind="stable")
            # Segment sums of the rows sorted by label, in float64 so that long
            # prefix sums keep their digits.
            csum = xp.concatenate([xp.zeros((1, C.shape[1]), dtype=xp.float64),
                                   xp.cumsum(full[order].astype(xp.float64), axis=0)])
            ends = xp.cumsum(counts)
            sums = csum[ends] - csum[ends - counts]
            means = (sums / xp.maximum(counts, 1)[:, None]).astype(xp.float32)
            C = xp.where((counts > 0)[:, None], means, C)
            empty = xp.nonzero(counts == 0)[0]
            n_empty = int(empty.shape[0])
            if n_empty:
                # An empty cell restarts at the sample points worst served so far,
                # which splits the widest cells instead of wasting a list.
                far = xp.argsort(-d2, kind="stable")[:n_empty]
                C[empty] = full[far]
        c_sq = (C.astype(xp.float64) ** 2).sum(axis=1).astype(xp.float32)
        if s_extra is None:
            return xp.ascontiguousarray(C), None, c_sq
        return xp.ascontiguousarray(C[:, :-1]), xp.ascontiguousarray(C[:, -1]), c_sq

    def probes(self, Q: Any, q_sq: Any, n_probe: int, budget: int) -> Any:
        """The ``n_probe`` nearest lists of each query row, nearest first (int64)."""
        xp = self.xp
        m = Q.shape[0]
        out = xp.empty((m, n_probe), dtype=xp.int64)
        # A query's extra coordinate is 0, so |q'|^2 = |q|^2 and the gram needs no term.
        chunk = max(1, budget // (44 * self.n_lists + 8 * Q.shape[1]))
        for r0 in range(0, m, chunk):
            r1 = min(m, r0 + chunk)
            idx, _ = self.selector(Q[r0:r1] @ self.centroids.T, q_sq[r0:r1], self.centroid_sq, n_probe, 0, 0)
            out[r0:r1] = idx
        return out


def _force_home(P: Any, home: Any, xp: Any) -> Any:
    """Probes with each row's own list first (replacing the farthest probe if absent).

    A self-join query visits its own list because its nearest neighbours are most
    likely there (for inner products they need not be), and because the search
    reduces each list's own rows apart, to leave every row out of its own result.
    """
    hit = P == home[:, None]
    missing = ~hit.any(axis=1)
    P[:, -1] = xp.where(missing, home, P[:, -1])
    at = xp.argmax(P == home[:, None], axis=1)
    first = P[:, 0].copy()
    P[xp.arange(P.shape[0]), at] = first
    P[:, 0] = home
    return P


def _search_rows(index: _Index, Q: Any, q_sq: Any, self_rows: Any, k: int, n_probe: int,
                 budget: int) -> tuple[Any, Any]:
    """Sorted-row indices and distances ``(m, n_probe * k)`` of the probed lists' best.

    ``self_rows`` (sorted-row index of each query, for a self-join) makes every query
    visit its own list first and leave itself out there.
    """
    xp = index.xp
    m = Q.shape[0]
    P = index.probes(Q, q_sq, n_probe, budget)
    home = None
    if self_rows is not None:
        home = index.home[self_rows]
        P = _force_home(P, home, xp)
    flat = P.reshape(-1)
    slot = xp.arange(m * n_probe, dtype=xp.int64) % n_probe
    # Group (query, probe) pairs by list; within a list the queries it is home to
    # come first, so one slice of the group needs the self-dropping selection.
    sort_key = flat * 2 + (slot != 0) if home is not None else flat
    order = xp.argsort(sort_key, kind="stable")
    q_of, slot_of = order // n_probe, order % n_probe
    group = to_host(xp.bincount(flat, minlength=index.n_lists))
    starts = np.concatenate([[0], np.cumsum(group)])
    members = to_host(xp.bincount(home, minlength=index.n_lists)) if home is not None else np.zeros_like(group)
    cand_i = xp.full((m, n_probe, k), -1, dtype=xp.int32)
    cand_d = xp.full((m, n_probe, k), np.inf, dtype=xp.float32)
    entry = 4 if index.selector.kernel is not None and k < KMAX else 48
    for lst in np.nonzero(group)[0]:
        lo, hi = int(index.offsets[lst]), int(index.offsets[lst + 1])
        if hi == lo:
            continue
        D, d_sq = index.data[lo:hi], index.sq[lo:hi]
        g0, g1 = int(starts[lst]), int(starts[lst + 1])
        member_end = g0 + int(members[lst])
        chunk = max(1, (budget // 2) // (entry * (hi - lo) + 8 * Q.shape[1] + 64))
        for r0 in range(g0, g1, chunk):
            r1 = min(g1, r0 + chunk)
            rows, slots = q_of[r0:r1], slot_of[r0:r1]
            gram = Q[rows] @ D.T
            rows_sq = q_sq[rows]
            split = min(max(member_end - r0, 0), r1 - r0)
            if split:
                idx, dist = index.selector(gram[:split], rows_sq[:split], d_sq, k + 1, index.code, lo)
                idx, dist = _drop_self(idx, dist, self_rows[rows[:split]], k, xp)
                cand_i[rows[:split], slots[:split]] = idx
                cand_d[rows[:split], slots[:split]] = dist
            if split < r1 - r0:
                idx, dist = index.selector(gram[split:], rows_sq[split:], d_sq, k, index.code, lo)
                cand_i[rows[split:], slots[split:]] = idx
                cand_d[rows[split:], slots[split:]] = dist
    return cand_i.reshape(m, -1), cand_d.reshape(m, -1)


def _exact_euclidean(Q: Any, data: Any, rows: Any, budget: int, xp: Any) -> Any:
    """Direct euclidean distances from each query to its ``rows`` (the gram trick loses digits)."""
    m, k = rows.shape
    out = xp.empty((m, k), dtype=xp.float32)
    chunk = max(1, budget // (24 * k * data.shape[1] + 1))
    for r0 in range(0, m, chunk):
        r1 = min(m, r0 + chunk)
        diff = data[xp.maximum(rows[r0:r1], 0)].astype(xp.float64) - Q[r0:r1, None, :].astype(xp.float64)
        out[r0:r1] = xp.sqrt((diff * diff).sum(axis=2)).astype(xp.float32)
    return xp.where(rows >= 0, out, xp.float32(np.inf))


def _finish(index: _Index, Q: Any, cand_i: Any, cand_d: Any, k: int, budget: int) -> tuple[Any, Any]:
    """Merge the candidates of each query: (original index, distance) rows of k, sorted."""
    xp = index.xp
    original = xp.where(cand_i >= 0, index.perm[xp.maximum(cand_i, 0)], -1)
    idx, dist = _unkey(_smallest(_keys(cand_d, original, xp), k, xp), xp)
    if index.metric == "euclidean":
        rows = xp.where(idx >= 0, index.inv_perm[xp.maximum(idx, 0)], -1)
        dist = _exact_euclidean(Q, index.data, rows, budget, xp)
        idx, dist = _unkey(_smallest(_keys(dist, idx, xp), k, xp), xp)
    return idx, dist


def default_n_lists(n: int) -> int:
    """Lists of the coarse quantiser for ``n`` points.

    Parameters
    ----------
    n : int
        Number of data points.

    Returns
    -------
    int
        ``round(sqrt(n))``, between 1 and ``n``: lists of ~sqrt(n) points balance
        the probe step (queries x lists) against the scan (probes x list length).
    """
    return max(1, min(n, round(math.sqrt(n))))


def default_n_probe(n_lists: int) -> int:
    """Lists each query visits by default (see :func:`ivf_knn` for the recall measured).

    Parameters
    ----------
    n_lists : int
        Lists of the index.

    Returns
    -------
    int
        8% of the lists rounded up, at least 8, at most ``n_lists``.
    """
    return min(n_lists, max(MIN_PROBES, math.ceil(PROBE_FRACTION * n_lists)))


def ivf_knn(
    data: Any,
    k: int,
    metric: str = "euclidean",
    *,
    queries: Any = None,
    n_lists: int | None = None,
    n_probe: int | None = None,
    random_state: int | np.random.Generator | None = None,
    xp: Any = None,
    kmeans_iters: int = 10,
    budget_bytes: int | None = None,
    use_kernel: bool | None = None,
) -> tuple[Any, Any]:
    """Approximate k nearest neighbours by an IVF-flat index (GPU or CPU arrays).

    Same contract as :func:`embedscope.kernels.knn.exact_knn`; only which neighbours
    are found is approximate (distances are those of the points returned).

    Default probes, as measured (numpy, 2 busy cores, ``make_mixture(N, 50, 20,
    random_state=0)``, recall@15 against :func:`~embedscope.kernels.knn.exact_knn`,
    ``random_state=0``): recall is set by the share of lists probed, since a query
    must reach the cells of its own 50-D Gaussian blob, and those have no
    lower-dimensional structure for the cells to follow:

    ======  =======  ==========================================================
    N       lists    recall at n_probe (share of lists)
    ======  =======  ==========================================================
    20,000  141      0.680 @ 3, 0.859 @ 5, 0.952 @ 7 (5%), 0.995 @ 10, 1.000 @ 12
    50,000  224      0.898 @ 8, 0.952 @ 11 (5%), 0.984 @ 16, 0.990 @ 18, 0.996 @ 23
    ======  =======  ==========================================================

    hence 8% by default (12 and 18 probes there, recall 1.000 and 0.990; at 20k
    also 1.000 for cosine and inner products). That costs about 8% of the exact
    search's distances; data with lower intrinsic dimension (embeddings after PCA)
    usually needs fewer probes, so measure and pass ``n_probe`` at scale. On the
    CPU this numpy run is slower than the numba exact search at these sizes (20k:
    ~2-4 s vs ~2 s; 50k: ~15 s vs ~7 s): it is the cupy run's logic, tested
    here, not a CPU method (use NN-descent there).

    Parameters
    ----------
    data : array of shape (n, d)
        numpy or cupy; copied to ``xp``'s device when it is not there.
    k : int
        Neighbours per query: ``1 <= k <= n - 1`` for a self-join, ``<= n`` otherwise.
    metric : {"euclidean", "cosine", "inner_product"}, default="euclidean"
    queries : array of shape (m, d), optional
        Query points; None searches ``data`` against itself, excluding each point.
    n_lists : int, optional
        Cells of the coarse quantiser; default ``round(sqrt(n))``.
    n_probe : int, optional
        Lists each query visits (clipped to ``n_lists``); default
        :func:`default_n_probe`. ``n_probe = n_lists`` is an exact search.
    random_state : int, Generator or None
        Seed of the k-means sample and initial centroids: one seed, one result.
    xp : module, optional
        ``numpy`` or ``cupy``; default the module of ``data``.
    kmeans_iters : int, default=10
        Lloyd iterations of the coarse quantiser.
    budget_bytes : int, optional
        Bytes of temporaries a batch may use; default 256 MiB with numpy, half the
        free device memory (after the index is built) with cupy.
    use_kernel : bool, optional
        Reduce distance blocks with the numba.cuda selection kernel of
        :mod:`embedscope.kernels.knn.gpu` (k up to 128); default on cupy only. True
        with numpy needs numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).

    Returns
    -------
    indices : array of ``xp``, shape (m, k), int32
    distances : array of ``xp``, shape (m, k), float32

    Raises
    ------
    ValueError
        Unknown metric, ``k`` out of range, bad ``n_lists``/``n_probe`` or query shape.
    DeviceMemoryError
        With cupy, when the index does not fit in the free device memory.
    """
    metric = check_metric(metric)
    if metric not in IVF_METRICS:
        raise ValueError(f"the IVF search has no metric={metric!r}; it supports {', '.join(IVF_METRICS)} "
                         "(use knn_method='exact' or 'auto' for the others)")
    xp = array_module(data) if xp is None else xp
    if getattr(data, "ndim", None) != 2:
        raise ValueError(f"data must be a 2-D array (n, d); got shape {getattr(data, 'shape', None)}")
    n, dim = data.shape
    self_join = queries is None
    limit = n - 1 if self_join else n
    if not 1 <= k <= limit:
        raise ValueError(f"k={k} neighbours asked of {n} points; k must be between 1 and {limit}")
    if not self_join and (getattr(queries, "ndim", None) != 2 or queries.shape[1] != dim):
        raise ValueError(f"queries have shape {getattr(queries, 'shape', None)}; expected (m, {dim})")
    n_lists = default_n_lists(n) if n_lists is None else int(n_lists)
    if not 1 <= n_lists <= n:
        raise ValueError(f"n_lists={n_lists} must be between 1 and the number of points ({n})")
    n_probe = default_n_probe(n_lists) if n_probe is None else int(n_probe)
    if n_probe < 1:
        raise ValueError(f"n_probe={n_probe} must be at least 1")
    n_probe = min(n_probe, n_lists)
    if kmeans_iters < 0:
        raise ValueError(f"kmeans_iters={kmeans_iters} must be >= 0")

    on_device = xp is not np
    if on_device:
        from embedscope._memory import check_fits, device_free_bytes

        # data, its sorted copy, norms and both permutations, during the build
        check_fits(n * (8 * dim + 32), device_free_bytes(), f"the IVF kNN index of {n:,} x {dim} points",
                   "Free GPU memory, or use backend='cpu'.")
    budget = HOST_BUDGET_BYTES if budget_bytes is None and not on_device else budget_bytes
    build_budget = budget if budget is not None else HOST_BUDGET_BYTES
    rng = np.random.default_rng(random_state)
    selector = _Selector(xp, use_kernel)
    index = _Index(data, metric, n_lists, rng, kmeans_iters, build_budget, xp, selector)
    if budget is None:
        from embedscope._memory import device_free_bytes

        budget = int(DEVICE_BUDGET_FRACTION * device_free_bytes())

    if self_join:
        Q, q_sq = index.data, index.sq
        m = n
    else:
        Q, q_sq = _prepare(queries, metric, xp, max(1, budget // (24 * dim)))
        m = Q.shape[0]
    res_i = xp.empty((m, k), dtype=xp.int32)
    res_d = xp.empty((m, k), dtype=xp.float32)

    def search(rows: Any, probes: int) -> None:
        # Per query row: probe lists and their sort (~56 B a probe), k candidates a
        # probe (8 B each) and their merge keys (~32 B each); the per-list distance
        # blocks are sized apart, to the other half of the budget.
        per_row = probes * (56 + 40 * k) + 8 * dim + 64
        batch = max(1, (budget // 2) // per_row)
        for b0 in range(0, rows.shape[0], batch):
            part = rows[b0:b0 + batch]
            Qb, qb_sq = Q[part], q_sq[part]
            cand_i, cand_d = _search_rows(index, Qb, qb_sq, part if self_join else None, k, probes, budget)
            res_i[part], res_d[part] = _finish(index, Qb, cand_i, cand_d, k, budget)

    search(xp.arange(m, dtype=xp.int64), n_probe)
    # Rows whose probed lists held fewer than k candidates: twice the probes, until
    # all lists (an exact search, which always fills a row).
    while n_probe < n_lists:
        short = xp.nonzero(res_i[:, k - 1] < 0)[0]
        if int(short.shape[0]) == 0:
            break
        n_probe = min(n_lists, 2 * n_probe)
        search(short, n_probe)

    if not self_join:
        return res_i, res_d
    # Query row r of a self-join is sorted row r: put it back at the point's place.
    out_i = xp.empty_like(res_i)
    out_d = xp.empty_like(res_d)
    out_i[index.perm] = res_i
    out_d[index.perm] = res_d
    return out_i, out_d
