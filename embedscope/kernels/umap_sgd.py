"""UMAP's layout optimisation: stochastic gradient descent over the fuzzy graph's edges.

One numba call runs one epoch; the epoch loop stays in Python (learning-rate decay,
progress, callbacks). Each edge ``e`` is sampled every ``epochs_per_sample[e]`` epochs
(strong edges more often), pulling its head towards its tail, and each sample draws
``negative_sample_rate`` random points that push the head away.

Parallel and reproducible: the graph is stored by head (CSR) and the epoch is a
``prange`` over heads, so a thread only writes its own points. Tails and negative
samples are read from ``reference``, a snapshot of the layout at the start of the
epoch (fit) or the fixed fitted embedding (transform), and the random numbers are a
hash of ``(seed, epoch, edge, draw)``. The result is therefore the same for a seed
whatever the number of threads.

The fuzzy graph is symmetric, so edges ``(i, j)`` and ``(j, i)`` are both present.
umap-learn moves both ends of each sampled edge, so a point gets two attractive steps
per edge pair and epoch; we move only the head, one step. Measured on the word
vectors from the same graph and init: two steps (umap-learn's balance) give
trustworthiness@15 0.748, one step 0.784 (umap-learn's own SGD there: 0.770), with fewer
over-shooting moves early on; ``attraction`` keeps the choice open.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
import scipy.sparse as sp

from embedscope.kernels._prefetch import prefetch_row
from embedscope.kernels._random import GOLDEN, mix64

_EDGE_MUL = np.uint64(0xD1B54A32D192ED03)
_EPOCH_MUL = np.uint64(0xAEF17502108EF2D9)


@numba.njit(cache=True, inline="always")
def _clip(value):  # pragma: no cover - numba
    if value > 4.0:
        return np.float32(4.0)
    if value < -4.0:
        return np.float32(-4.0)
    return value


@numba.njit(cache=True, inline="always")
def _negative_state(seed, edge, epoch):  # pragma: no cover - numba
    return mix64(seed ^ (np.uint64(edge) * _EDGE_MUL) ^ (epoch * _EPOCH_MUL))


@numba.njit(cache=True, inline="always")
def _negative_index(state, n_ref):  # pragma: no cover - numba
    # Lemire's multiply-shift maps 32 random bits onto [0, n_ref) without a division
    return np.int64(((mix64(state) >> np.uint64(32)) * n_ref) >> np.uint64(32))


@numba.njit(cache=True, inline="always")
def _prefetch_edge(reference, indices, epochs_per_sample, next_sample, next_negative, negative_rate,
                   e, epoch, useed, uepoch, n_ref):  # pragma: no cover - numba
    """Start loading the rows edge ``e`` will read: its tail and its negative samples."""
    if e >= indices.shape[0] or next_sample[e] > epoch:
        return
    prefetch_row(reference, indices[e])
    if negative_rate <= 0:
        return
    per_negative = epochs_per_sample[e] / negative_rate
    state = _negative_state(useed, e, uepoch)
    for _ in range(int((epoch - next_negative[e]) / per_negative)):
        state += GOLDEN
        prefetch_row(reference, _negative_index(state, n_ref))


@numba.njit(parallel=True, cache=True, fastmath=True)
def sgd_epoch(head, reference, indptr, indices, epochs_per_sample, next_sample, next_negative,
              negative_rate, a, b, alpha, attraction, epoch, seed, exclude_self, scratch,
              lookahead=0):  # pragma: no cover
    """One epoch of UMAP's SGD, in place on ``head`` and the two schedule arrays.

    Parameters
    ----------
    head : float32 (n_heads, dim)
        Points being moved (row ``i`` owns CSR row ``i``).
    reference : float32 (n_ref, dim)
        Positions of tails and negative samples for this epoch.
    indptr, indices : int64 / int32 CSR of the graph by head (tails index ``reference``)
    epochs_per_sample, next_sample, next_negative : float32 (n_edges,)
    negative_rate : int, a, b : float, alpha : float (learning rate this epoch)
    attraction : int
        Attractive steps per sample (1 by default, see the module docstring).
    epoch : int, seed : uint64
    exclude_self : bool
        Skip negative samples equal to the head (fit, where both index one layout).
    scratch : float32 (n_threads, >= dim)
        Per-thread sum of an edge's repulsive steps (rows padded against false sharing).
    lookahead : int, default=0
        Prefetch the rows that the edge this many places ahead will read (0: off).
        Pays where ``reference`` outgrows the per-core L2 cache (see optimize_layout).
    """
    n_heads, dim = head.shape
    n_ref = np.uint64(reference.shape[0])
    useed = np.uint64(seed)
    uepoch = np.uint64(epoch)
    # float32 arithmetic throughout: powf is about twice as fast as pow, and the
    # layout is float32 anyway.
    a32 = np.float32(a)
    b32 = np.float32(b)
    alpha32 = np.float32(alpha)
    two_ab = np.float32(2.0 * a * b)
    two_b = np.float32(2.0 * b)
    four = np.float32(4.0)
    for i in numba.prange(n_heads):
        push = scratch[numba.get_thread_id()]  # this thread's row, for every edge of i
        for e in range(indptr[i], indptr[i + 1]):
            if lookahead > 0:
                _prefetch_edge(reference, indices, epochs_per_sample, next_sample, next_negative, negative_rate,
                               e + lookahead, epoch, useed, uepoch, n_ref)
            if next_sample[e] > epoch:
                continue
            j = indices[e]
            for _ in range(attraction):
                dist_sq = np.float32(0.0)
                for d in range(dim):
                    diff = head[i, d] - reference[j, d]
                    dist_sq += diff * diff
                if dist_sq > 0.0:
                    powered = dist_sq**b32  # d^(2b); d^(2(b-1)) = d^(2b) / d^2
                    coeff = -two_ab * (powered / dist_sq) / (a32 * powered + np.float32(1.0))
                    for d in range(dim):
                        head[i, d] += _clip(coeff * (head[i, d] - reference[j, d])) * alpha32
            next_sample[e] += epochs_per_sample[e]
            if negative_rate <= 0:
                continue
            per_negative = epochs_per_sample[e] / negative_rate
            n_negative = int((epoch - next_negative[e]) / per_negative)
            if n_negative <= 0:
                continue
            state = _negative_state(useed, e, uepoch)
            # The edge's negative samples all push from the head's position before the
            # first of them, and their clipped steps are summed and the sum clipped
            # again: the samples are then independent and overlap in the pipeline,
            # where each one waiting for the previous one's update (pow, divide,
            # clip) made the loop latency-bound. Clipping the sum keeps a crowd of
            # near negatives from throwing the point far: unclipped, trustworthiness
            # on the word vectors fell from 0.759 (one by one) to 0.742; clipped it
            # is 0.765, and the mixture's is unchanged.
            for d in range(dim):
                push[d] = np.float32(0.0)
            for _ in range(n_negative):
                state += GOLDEN
                k = _negative_index(state, n_ref)
                if exclude_self and k == i:
                    continue
                dist_sq = np.float32(0.0)
                for d in range(dim):
                    diff = head[i, d] - reference[k, d]
                    dist_sq += diff * diff
                if dist_sq > 0.0:
                    coeff = two_b / ((np.float32(0.001) + dist_sq) * (a32 * dist_sq**b32 + np.float32(1.0)))
                    for d in range(dim):
                        push[d] += _clip(coeff * (head[i, d] - reference[k, d]))
                else:
                    # Coincident points: push apart by the clip bound.
                    for d in range(dim):
                        push[d] += four
            for d in range(dim):
                head[i, d] += _clip(push[d]) * alpha32
            next_negative[e] += n_negative * per_negative


#: Prefetch the rows an edge this many places ahead will read (its tail and negative
#: samples, both at random in the layout) once the layout outgrows the caches that
#: hide those reads. Measured on two cores, 50-D mixtures' graphs, epochs timed with
#: and without in one process (ratio of medians of 3): 1M points (8 MB of 2-D float32
#: rows) 0.88-0.92, lookahead 2 and 4 alike; 300k (2.4 MB) 1.01; 100k ~1.05, where
#: the extra hashing is not repaid.
PREFETCH_LOOKAHEAD = 2
PREFETCH_FROM_BYTES = 4 << 20


def find_ab_params(spread: float, min_dist: float) -> tuple[float, float]:
    """``a, b`` of the low-dimensional kernel ``1 / (1 + a d^(2b))``.

    Fitted by least squares to the target curve: 1 below ``min_dist``, then
    ``exp(-(d - min_dist) / spread)`` (the UMAP paper's definition).
    """
    from scipy.optimize import curve_fit

    x = np.linspace(0.0, spread * 3.0, 300)
    target = np.where(x < min_dist, 1.0, np.exp(-(x - min_dist) / spread))

    def curve(d: np.ndarray, a: float, b: float) -> np.ndarray:
        return 1.0 / (1.0 + a * d ** (2.0 * b))

    (a, b), _ = curve_fit(curve, x, target, p0=(1.0, 1.0), maxfev=10_000)
    return float(a), float(b)


def default_epochs(n_samples: int) -> int:
    """umap-learn's default: 500 epochs up to 10,000 points, 200 above."""
    return 500 if n_samples <= 10_000 else 200


def edge_schedule(graph: sp.csr_matrix, n_epochs: int) -> sp.csr_matrix:
    """Drop edges too weak to be sampled once in ``n_epochs`` epochs; keep CSR sorted."""
    graph = graph.tocsr(copy=True)
    if graph.nnz:
        graph.data[graph.data < graph.data.max() / float(n_epochs)] = 0.0
        graph.eliminate_zeros()
    return graph


def sgd_schedule(graph: sp.csr_matrix, negative_sample_rate: int) -> tuple[np.ndarray, ...] | None:
    """The arrays the SGD kernels share: CSR by head and the per-edge sampling clocks.

    Returns ``(indptr, indices, epochs_per_sample, next_sample, next_negative)``, or
    None for a graph without edges. Strong edges are sampled every epoch, an edge of
    weight ``w`` every ``max(w) / w`` epochs.
    """
    graph = graph.tocsr()
    weights = graph.data.astype(np.float32)
    if weights.size == 0:
        return None
    epochs_per_sample = (weights.max() / weights).astype(np.float32)
    next_negative = (epochs_per_sample / max(negative_sample_rate, 1)).astype(np.float32)
    return (graph.indptr.astype(np.int64), graph.indices.astype(np.int32), epochs_per_sample,
            epochs_per_sample.copy(), next_negative)


def optimize_layout(
    head: np.ndarray,
    graph: sp.csr_matrix,
    n_epochs: int,
    *,
    a: float,
    b: float,
    learning_rate: float = 1.0,
    negative_sample_rate: int = 5,
    seed: int = 0,
    reference: np.ndarray | None = None,
    callback: Callable[[int, int, np.ndarray], object] | None = None,
    log: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Run ``n_epochs`` epochs of SGD on ``head`` (float32, modified in place).

    Parameters
    ----------
    head : float32 array (n_heads, dim)
        Starting layout; row ``i`` owns row ``i`` of ``graph``.
    graph : csr_matrix (n_heads, n_ref)
        Edge weights (already pruned with :func:`edge_schedule`).
    reference : float32 array (n_ref, dim), optional
        Fixed tails and negative samples (``transform``). None: the fit case, where
        ``head`` is its own reference, snapshotted each epoch.
    callback : callable, optional
        ``callback(epoch, n_epochs, head)`` after each epoch (epoch counts from 1).
    log : callable, optional
        Receives a line every 10% of the epochs.

    Returns
    -------
    head : the same array, optimised
    """
    head = np.ascontiguousarray(head, dtype=np.float32)
    schedule = sgd_schedule(graph, negative_sample_rate)
    if schedule is None or n_epochs <= 0:
        return head
    indptr, indices, epochs_per_sample, next_sample, next_negative = schedule
    fit_case = reference is None
    snapshot = np.empty_like(head) if fit_case else np.ascontiguousarray(reference, dtype=np.float32)
    report_every = max(1, n_epochs // 10)
    # One row per thread, each at least two cache lines long: rows of 2 floats shared
    # a line between the two threads, and the ping-pong made 2 threads slower than 1.
    width = 16 * (1 + (head.shape[1] + 15) // 16)
    scratch = np.zeros((numba.get_num_threads(), width), dtype=np.float32)
    lookahead = PREFETCH_LOOKAHEAD if snapshot.nbytes >= PREFETCH_FROM_BYTES else 0
    for epoch in range(n_epochs):
        if fit_case:
            np.copyto(snapshot, head)
        alpha = learning_rate * (1.0 - epoch / n_epochs)
        sgd_epoch(head, snapshot, indptr, indices, epochs_per_sample, next_sample, next_negative,
                  int(negative_sample_rate), float(a), float(b), float(alpha), 1,
                  epoch, np.uint64(seed), fit_case, scratch, lookahead)
        if callback is not None:
            callback(epoch + 1, n_epochs, head)
        if log is not None and ((epoch + 1) % report_every == 0 or epoch + 1 == n_epochs):
            log(f"epoch {epoch + 1}/{n_epochs}")
    return head
