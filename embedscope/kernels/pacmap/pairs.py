"""PaCMAP's three pair sets, chosen once per fit (numba, parallel, seeded); CPU twin.

Wang, Huang, Rudin & Shaposhnik (JMLR 2021), section 5:

- **near pairs** (NB): from each point's enlarged kNN list (``n_neighbors`` + 50, by the
  input metric), the ``n_neighbors`` with the smallest *scaled* distance
  ``d_ij^2 / (sigma_i sigma_j)``, ``sigma_i`` the mean distance of ``i`` to its 4th-6th
  neighbours (so a point in a sparse region keeps neighbours a dense one would not);
- **mid-near pairs** (MN): per pair, 6 random points are drawn and the 2nd nearest kept;
- **further pairs** (FP): random points that are not the point nor one of its near pairs.

Random draws are a hash of ``(seed, point, slot, draw)`` (:mod:`embedscope.kernels._random`),
so the pairs are the same whatever the thread count and the GPU twin
(:mod:`.cuda`) draws the very same ones.

:func:`symmetric_lists` then stores each pair set by point, both directions (a pair
``(i, j)`` moves ``i`` and ``j``), in a fixed order, so the optimiser can compute each
point's gradient from its own lists without racing on shared sums.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from embedscope.kernels._random import GOLDEN, mix64
from embedscope.kernels._threads import for_rows
from embedscope.kernels.knn.nndescent import _pair_dist

#: Multipliers that spread a point index and a slot index over 64 bits before hashing.
ROW_MUL = np.uint64(0xD6E8FEB86659FD93)
SLOT_MUL = np.uint64(0xA0761D6478BD642F)
#: Tags that keep the MN and FP streams of one point apart.
MN_TAG = np.uint64(0x4D4E)
FP_TAG = np.uint64(0x4650)
#: Points drawn per mid-near pair (the paper's 6; the 2nd nearest is kept).
MN_DRAWS = 6
#: Draws of a further pair before accepting a neighbour (only tiny data gets there).
FP_TRIES = 64
#: Extra neighbours searched beyond ``n_neighbors`` for the scaled-distance choice.
EXTRA_NEIGHBORS = 50
# Row kernels on ``_threads``' pool rather than ``prange`` (numba's parfor passes cost
# seconds of a first fit's compiling); every row writes only its own output row.
_ROWS = {"cache": True, "nogil": True, "error_model": "numpy"}


@numba.njit(cache=True, inline="always")
def _stream(seed, point, slot, tag):  # pragma: no cover - numba
    return mix64(np.uint64(seed) ^ (np.uint64(point) * ROW_MUL) ^ ((np.uint64(slot) | (tag << np.uint64(32))) * SLOT_MUL))


@numba.njit(cache=True, inline="always")
def _draw(state, n):  # pragma: no cover - numba
    # Lemire's multiply-shift: 32 random bits onto [0, n)
    return np.int64(((mix64(state) >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))


def scale_sigmas(distances: np.ndarray) -> np.ndarray:
    """``sigma_i``: mean of the 4th-6th neighbour distances (fewer where the list is short), >= 1e-10."""
    out = np.empty(distances.shape[0], dtype=np.float32)
    for_rows(_sigma_rows, distances.shape[0], distances, out)
    return out


@numba.njit(**_ROWS)
def _sigma_rows(start, stop, distances, out):  # pragma: no cover - numba
    k = distances.shape[1]
    hi = min(6, k)
    lo = min(3, hi - 1)
    for i in range(start, stop):
        acc = np.float32(0.0)
        count = 0
        for c in range(lo, hi):
            value = distances[i, c]
            if np.isfinite(value):
                acc += value
                count += 1
        out[i] = max(acc / max(count, 1), np.float32(1e-10))


def neighbor_pairs(indices: np.ndarray, distances: np.ndarray, sigmas: np.ndarray, n_pairs: int,
                   scaled_order: bool, out: np.ndarray) -> np.ndarray:
    """Each point's ``n_pairs`` near pairs from its kNN list, into ``out`` (n, n_pairs) int32; returns ``out``.

    ``scaled_order``: rank by ``d^2 / (sigma_i sigma_j)`` (the paper); else keep the kNN
    order (metrics whose distances may be negative). A candidate's rank is the number of
    candidates before it (smaller score, or equal and earlier in the list), the rule the
    GPU twin uses too. Slots no valid neighbour fills are -1.
    """
    for_rows(_neighbor_rows, indices.shape[0], indices, distances, sigmas, int(n_pairs), bool(scaled_order), out)
    return out


@numba.njit(**_ROWS)
def _neighbor_rows(start, stop, indices, distances, sigmas, n_pairs, scaled_order, out):  # pragma: no cover - numba
    k = indices.shape[1]
    for i in range(start, stop):
        for c in range(n_pairs):
            out[i, c] = -1
        for a in range(k):
            j = indices[i, a]
            if j < 0 or j == i:
                continue
            if scaled_order:
                score_a = distances[i, a] * distances[i, a] / (sigmas[i] * sigmas[j])
            else:
                score_a = np.float32(a)
            rank = 0
            for b in range(k):
                jb = indices[i, b]
                if b == a or jb < 0 or jb == i:
                    continue
                if scaled_order:
                    score_b = distances[i, b] * distances[i, b] / (sigmas[i] * sigmas[jb])
                else:
                    score_b = np.float32(b)
                if score_b < score_a or (score_b == score_a and b < a):
                    rank += 1
                    if rank >= n_pairs:
                        break
            if rank < n_pairs:
                out[i, rank] = j


def mid_near_pairs(data: np.ndarray, metric_code: int, n_pairs: int, seed: Any, out: np.ndarray,
                   power: Any = None) -> np.ndarray:
    """Mid-near pairs into ``out`` (n, n_pairs): per pair the 2nd nearest of 6 random points; returns ``out``.

    ``data`` are the prepared rows the kNN search used (unit rows for cosine), compared
    with the search's own pair distance (``metric_code``; ``power`` is the direct
    metrics' exponent, None for the product metrics). Needs n >= 2.
    """
    for_rows(_mid_near_rows, data.shape[0], data, metric_code, n_pairs, seed, out, power)
    return out


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _mid_near_rows(start, stop, data, metric_code, n_pairs, seed, out, power):  # pragma: no cover - numba
    n = data.shape[0]
    for i in range(start, stop):
        for p in range(n_pairs):
            state = _stream(seed, i, p, MN_TAG)
            best, second = np.int64(-1), np.int64(-1)
            best_d, second_d = np.inf, np.inf
            for _ in range(MN_DRAWS):
                j = np.int64(i)
                while j == i:
                    state += GOLDEN
                    j = _draw(state, n)
                d = _pair_dist(data, i, j, metric_code, power)
                if d < best_d:
                    second, second_d = best, best_d
                    best, best_d = j, d
                elif d < second_d:
                    second, second_d = j, d
            out[i, p] = second


def further_pairs(near: np.ndarray, n_ref: int, n_pairs: int, seed: Any, exclude_self: bool,
                  out: np.ndarray) -> np.ndarray:
    """Further pairs into ``out`` (m, n_pairs): random rows of ``[0, n_ref)`` not near ``i``; returns ``out``.

    A draw equal to one of ``near[i]`` (or to ``i`` when ``exclude_self``, a fit) is drawn
    again, up to :data:`FP_TRIES` times; after that the last draw is kept (only when
    nearly every point is a near pair, i.e. tiny data).
    """
    for_rows(_further_rows, near.shape[0], near, n_ref, n_pairs, seed, exclude_self, out)
    return out


@numba.njit(**_ROWS)
def _further_rows(start, stop, near, n_ref, n_pairs, seed, exclude_self, out):  # pragma: no cover - numba
    n_near = near.shape[1]
    for i in range(start, stop):
        for p in range(n_pairs):
            state = _stream(seed, i, p, FP_TAG)
            j = np.int64(-1)
            for _ in range(FP_TRIES):
                state += GOLDEN
                j = _draw(state, n_ref)
                clash = exclude_self and j == i
                for c in range(n_near):
                    if near[i, c] == j:
                        clash = True
                        break
                if not clash:
                    break
            out[i, p] = j


@numba.njit(cache=True)
def _count(pairs, n_ref, both, counts):  # pragma: no cover - numba
    m, width = pairs.shape
    for i in range(m):
        for c in range(width):
            j = pairs[i, c]
            if j < 0:
                continue
            counts[i] += 1
            if both:
                counts[j] += 1


@numba.njit(cache=True)
def _fill(pairs, both, indptr, cursor, out):  # pragma: no cover - numba
    # Row i holds its own pairs in column order, then (fit) the pairs (s, i) by source
    # s ascending: the order the GPU twin's sort key reproduces.
    m, width = pairs.shape
    for i in range(m):
        for c in range(width):
            j = pairs[i, c]
            if j >= 0:
                out[cursor[i]] = j
                cursor[i] += 1
    if both:
        for s in range(m):
            for c in range(width):
                j = pairs[s, c]
                if j >= 0:
                    out[cursor[j]] = s
                    cursor[j] += 1


def symmetric_lists(pairs: np.ndarray, *, both: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """CSR ``(indptr int64, partners int32)`` of a pair set, by point.

    ``both`` (a fit): row ``i`` lists ``i``'s own partners, then every ``s`` that chose
    ``i``, since the loss of a pair moves both ends. Without it (``transform``) a row is
    just its own partners in the fixed fitted layout. -1 entries are dropped.
    """
    pairs = np.ascontiguousarray(pairs, dtype=np.int32)
    m = pairs.shape[0]
    counts = np.zeros(m, dtype=np.int64)
    _count(pairs, m, both, counts)
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    partners = np.empty(int(indptr[-1]), dtype=np.int32)
    _fill(pairs, both, indptr, indptr[:-1].copy(), partners)
    return indptr, partners


def has_scale(distances: np.ndarray) -> bool:
    """Whether kNN distances are all >= 0 (missing ones, inf, aside), so the scaled
    distance means something; not under ``inner_product``. No copy of ``distances``."""
    return bool(np.min(distances, where=np.isfinite(distances), initial=np.inf) >= 0)


def sample_pairs(data: np.ndarray, indices: np.ndarray, distances: np.ndarray, metric_code: int,
                 n_neighbors: int, n_mid_near: int, n_further: int,
                 seed: int, p: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three pair sets of a fit, each int32 (n, count) with -1 for an empty slot.

    Parameters
    ----------
    data : float32 (n, d)
        The rows the kNN search ran on, prepared for the metric
        (:func:`embedscope.kernels.knn.prepare`: unit rows for cosine).
    indices, distances : int32 / float32 (n, k_ext)
        The enlarged kNN list (self excluded, ascending).
    metric_code : int
        The kNN search's metric code (mid-near draws are compared with it).
    n_neighbors, n_mid_near, n_further : int
        Pairs per point of each kind.
    seed : int
        Seeds the mid-near and further draws.
    p : float or None, default=None
        The direct metrics' exponent (minkowski's ``p``; any float for the other
        coordinate-by-coordinate metrics), None for the matrix-product metrics (codes 0-2),
        as the kNN kernels take it.

    Notes
    -----
    Distances that may be negative (``inner_product``) have no scale: near pairs then
    keep the kNN order.
    """
    n = data.shape[0]
    seed64 = np.uint64(seed % 2**64)
    scaled = has_scale(distances)
    sigmas = scale_sigmas(distances) if scaled else np.ones(n, dtype=np.float32)
    nb = neighbor_pairs(indices, distances, sigmas, n_neighbors, scaled,
                        np.empty((n, n_neighbors), dtype=np.int32))
    p32 = None if p is None else np.float32(p)
    mn = mid_near_pairs(data, metric_code, n_mid_near, seed64, np.empty((n, n_mid_near), dtype=np.int32), p32)
    fp = further_pairs(nb, n, n_further, seed64, True, np.empty((n, n_further), dtype=np.int32))
    return nb, mn, fp


def pair_lists(data: np.ndarray, indices: np.ndarray, distances: np.ndarray, metric: str, n_neighbors: int,
               n_mid_near: int, n_further: int, seed: int,
               metric_kwds: dict[str, Any] | None = None) -> tuple[np.ndarray, ...]:
    """The six by-point pair lists of a fit, chosen on the host for any kNN metric.

    ``data`` are the rows the search ran on (prepared here for the metric);
    ``metric_kwds`` carries minkowski's ``p``.
    """
    from embedscope.kernels.knn import prepare
    from embedscope.kernels.knn.metrics import _METRIC_CODE, DIRECT_METRICS, minkowski_p
    prepared, _ = prepare(data, metric)
    p = minkowski_p(metric, metric_kwds) if metric in DIRECT_METRICS else None
    pairs = sample_pairs(prepared, indices, distances, _METRIC_CODE[metric], n_neighbors, n_mid_near,
                         n_further, seed, p)
    return tuple(array for kind in pairs for array in symmetric_lists(kind))
