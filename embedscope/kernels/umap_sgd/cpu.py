"""UMAP's layout optimisation: stochastic gradient descent over the fuzzy graph's edges.

One numba call runs one epoch; the epoch loop stays in Python (learning-rate decay,
progress, callbacks); the epoch kernels release the GIL, so another thread of the
process (a live view, :mod:`embedscope.viz.live`) runs while an epoch does, not only
between epochs. Each edge ``e`` is sampled every ``epochs_per_sample[e]`` epochs
(strong edges more often), pulling its head towards its tail, and each sample draws
``negative_sample_rate`` random points that push the head away.

Parallel and reproducible: the graph is stored by head (CSR) and the epoch is split
into blocks of heads, one per thread, so a thread only writes its own points. Tails and negative
samples are read from ``reference``, a snapshot of the layout at the start of the
epoch (fit) or the fixed fitted embedding (transform), and the random numbers are a
hash of ``(seed, epoch, edge, draw)``. The result is therefore the same for a seed
whatever the number of threads.

Within an epoch a head takes its attractive steps one edge after another, each from
where the previous one left it, while the negative samples of all its due edges push
from where the head stood when its turn began; their pushes are added after the last
attraction. The negatives then depend on nothing computed in the turn, so the 2-D
kernel gathers a head's negatives into one buffer and takes their powers in full
vector lanes. Before, each edge's negatives pushed at once from where its attraction
had left the head, so every sample waited on the previous one's step. The change:
an epoch on the 100,000-point mixture's graph (one thread) 85 -> 55 ms, on the 1M
mixture's (two threads) 594 -> 423 ms; trustworthiness@15 on the word vectors 0.773
-> 0.799 and 0.778 -> 0.797 (seeds 0, 1), on the 100k mixture 0.9911 -> 0.9914, on
a 50,000-point mixture of 20 clusters 0.9760 -> 0.9767. Those layouts looked alike;
the words' shows more small clumps, as umap-learn's does. densMAP's density phase
keeps the former order (:mod:`.densmap` says why).

The fuzzy graph is symmetric, so edges ``(i, j)`` and ``(j, i)`` are both present.
umap-learn moves both ends of each sampled edge, so a point gets two attractive steps
per edge pair and epoch; we move only the head, one step. Measured on the word
vectors from the same graph and init: two steps (umap-learn's balance) give
trustworthiness@15 0.748, one step 0.784 (umap-learn's own SGD there: 0.770), with fewer
over-shooting moves early on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numba
import numpy as np
import scipy.sparse as sp

from embedscope.kernels._fastpow import pow_positive
from embedscope.kernels._random import GOLDEN, mix64
from embedscope.kernels._threads import n_chunks, run_row_chunks
from embedscope.kernels.locality import locality_order, permute_lists_owned

_EDGE_MUL = np.uint64(0xD1B54A32D192ED03)
_EPOCH_MUL = np.uint64(0xAEF17502108EF2D9)


#: The row kernels' flags. They are serial (threads come from :mod:`.._threads`): with
#: ``parallel=True`` the 2-D epoch took 6.5 s of CPU to compile on a first fit, serial
#: 2.4 s. The helpers stay inlined by numba (``inline="always"``), so they take these
#: flags and the arithmetic is the same as in the prange kernels, to the bit; as plain
#: calls compiled apart they cost more (2.9 s) with serial kernels, less only with
#: parallel ones (4.4 s). A helper that takes arrays and returns early is the
#: exception (push_negatives): numba-inlined, it counts references in the loop.
_FLAGS = {"cache": True, "fastmath": True, "error_model": "numpy", "nogil": True}
_INLINE = {"cache": True, "inline": "always"}


@numba.njit(**_INLINE)
def _clip(value):  # pragma: no cover - numba
    if value > 4.0:
        return np.float32(4.0)
    if value < -4.0:
        return np.float32(-4.0)
    return value


@numba.njit(**_INLINE)
def _negative_state(seed, edge, epoch):  # pragma: no cover - numba
    return mix64(seed ^ (np.uint64(edge) * _EDGE_MUL) ^ (epoch * _EPOCH_MUL))


@numba.njit(**_INLINE)
def _negative_index(state, n_ref):  # pragma: no cover - numba
    # Lemire's multiply-shift maps 32 random bits onto [0, n_ref) without a division
    return np.int64(((mix64(state) >> np.uint64(32)) * n_ref) >> np.uint64(32))


#: The any-dimension kernels take an edge's negative samples in groups of this many:
#: their squared distances are gathered one by one, then their repulsion coefficients
#: computed in one pass that LLVM vectorises (8 float32 lanes in AVX2), with the power
#: from :mod:`._fastpow`.
LANES = 8
#: The 2-D kernel buffers up to this many negative samples of a head (all its due
#: edges' together) before their coefficients are computed in one vectorised pass; a
#: head of more settles the buffer and goes on.
NEGATIVE_BUFFER = 256
# Offsets in a thread's scratch row of the any-dimension kernels: squared distances,
# coefficients, the edge's push sum (dim), the head's starting position (dim) and its
# summed pushes (dim).
_DIST, _COEF, _PUSH = 0, LANES, 2 * LANES
# ... and of the 2-D kernel: squared distances, coefficients, x and y differences.
_B_DIST, _B_COEF, _B_DX, _B_DY = (n * NEGATIVE_BUFFER for n in range(4))
#: Highest negative sample rate :func:`sgd_epoch` gives the 2-D kernel: an edge draws
#: up to about twice the rate at once (its first sample), which then fits the buffer.
#: A kernel of its own for longer edges cost 0.5 s of compiling on every first fit.
MAX_RATE_2D = NEGATIVE_BUFFER // 4
#: Squared distance marking a draw that is skipped (the head itself).
_SKIP = -1.0
#: Fewest heads per thread: below it an epoch runs on one thread (waking the pool
#: costs more than a few hundred heads' work).
MIN_ROWS_PER_THREAD = 512


def scratch_width(dim: int) -> int:
    """Floats per thread row of ``sgd_epoch``'s scratch (rows padded against false sharing)."""
    return 16 * (1 + (max(4 * NEGATIVE_BUFFER, _PUSH + 3 * dim) + 15) // 16)


def sgd_buffers(n_threads: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-thread scratch of the epoch kernels: float32 rows and int64 rows, one of each per thread."""
    scratch = np.zeros((n_threads, scratch_width(dim)), dtype=np.float32)
    picks = np.zeros((n_threads, NEGATIVE_BUFFER + 16), dtype=np.int64)
    return scratch, picks


@numba.njit(**_INLINE)
def _float32_constants(a, b, alpha):  # pragma: no cover - numba
    """``a, b, alpha, 2ab, 2b`` in float32 (products taken in float64, rounded once).

    float32 arithmetic throughout: powf is about twice as fast as pow, and the layout
    is float32 anyway.
    """
    return np.float32(a), np.float32(b), np.float32(alpha), np.float32(2.0 * a * b), np.float32(2.0 * b)


@numba.njit(**_INLINE)
def _attraction(dist_sq, a32, b32, two_ab):  # pragma: no cover - numba
    """Gradient coefficient pulling a head towards its tail at squared distance ``dist_sq > 0``."""
    powered = dist_sq**b32  # d^(2b); d^(2(b-1)) = d^(2b) / d^2
    return -two_ab * (powered / dist_sq) / (a32 * powered + np.float32(1.0))


@numba.njit(**_INLINE)
def _repulsion(dist_sq, a32, b32, two_b):  # pragma: no cover - numba
    """Gradient coefficient pushing a head from a negative sample at squared distance ``dist_sq``."""
    return two_b / ((np.float32(0.001) + dist_sq) * (a32 * pow_positive(dist_sq, b32) + np.float32(1.0)))


@numba.njit(**_INLINE)
def _repulsions(row, source, target, count, a32, b32, two_b):  # pragma: no cover - numba
    """Coefficients of the ``count`` squared distances at ``row[source:]``, into ``row[target:]``."""
    for lane in range(count):
        row[target + lane] = _repulsion(row[source + lane], a32, b32, two_b)


@numba.njit(**_INLINE)
def _negatives_due(epochs_per_sample, next_negative, negative_rate, e, epoch):  # pragma: no cover - numba
    """How many negative samples edge ``e`` draws now, and its clock's step for them."""
    per_negative = epochs_per_sample[e] / negative_rate
    return int((epoch - next_negative[e]) / per_negative), per_negative


# Compiled apart with the kernels' flags and inlined by LLVM, without numba's
# reference counting: inlined by numba, it took and dropped references to its six
# arrays on each of its return paths, atomic operations in the per-edge loop (see
# knn.nndescent._push). 3-D UMAP, 30k x 50: optimise 5.1 -> 4.0 s, the same layout
# to the bit.
@numba.njit(**_FLAGS, forceinline=True, _nrt=False)
def push_negatives(head, reference, i, e, epochs_per_sample, next_negative, negative_rate, epoch, useed,
                   exclude_self, a32, b32, two_b, alpha32, row, picked, at_once):  # pragma: no cover - numba
    """Edge ``e``'s due negative samples push head ``i`` (any dim); advances its clock.

    Shared by :func:`sgd_rows` and densMAP's epoch. The samples' clipped steps are
    summed, the sum clipped again and scaled by ``alpha32``. Clipping the sum keeps a
    crowd of near negatives from throwing the point far: unclipped, trustworthiness on
    the word vectors fell from 0.759 to 0.742; clipped it is 0.765, and the mixture's
    is unchanged (measured with ``at_once``).

    ``at_once`` false (UMAP's epochs): the samples push from the head's starting
    position (``row[_PUSH + dim:]``, :func:`start_head`) and the step is added to its
    push sum, which :func:`finish_head` applies after its last edge (the module's
    notes). True (densMAP's density epochs): they push from where the head is now, and
    the step is taken at once.
    """
    if negative_rate <= 0:
        return
    n_negative, per_negative = _negatives_due(epochs_per_sample, next_negative, negative_rate, e, epoch)
    if n_negative <= 0:
        return
    dim = head.shape[1]
    origin = _PUSH + dim
    total = _PUSH + 2 * dim
    n_ref = np.uint64(reference.shape[0])
    state = _negative_state(useed, e, np.uint64(epoch))
    for d in range(dim):
        row[_PUSH + d] = np.float32(0.0)
        if at_once:
            row[origin + d] = head[i, d]
    for first in range(0, n_negative, LANES):
        group = min(LANES, n_negative - first)
        for lane in range(group):
            state += GOLDEN
            k = _negative_index(state, n_ref)
            picked[lane] = k
            dist_sq = np.float32(0.0)
            for d in range(dim):
                diff = row[origin + d] - reference[k, d]
                dist_sq += diff * diff
            row[_DIST + lane] = np.float32(_SKIP) if exclude_self and k == i else dist_sq
        _repulsions(row, _DIST, _COEF, LANES, a32, b32, two_b)
        for lane in range(group):
            dist_sq = row[_DIST + lane]
            k = picked[lane]
            if dist_sq > 0.0:
                coeff = row[_COEF + lane]
                for d in range(dim):
                    row[_PUSH + d] += _clip(coeff * (row[origin + d] - reference[k, d]))
            elif dist_sq == 0.0:
                # Coincident points: push apart by the clip bound.
                for d in range(dim):
                    row[_PUSH + d] += np.float32(4.0)
    for d in range(dim):
        step = _clip(row[_PUSH + d]) * alpha32
        if at_once:
            head[i, d] += step
        else:
            row[total + d] += step
    next_negative[e] += n_negative * per_negative


@numba.njit(**_INLINE)
def start_head(head, i, row):  # pragma: no cover - numba
    """Before head ``i``'s edges: its starting position into the scratch row, its push sum zeroed."""
    dim = head.shape[1]
    for d in range(dim):
        row[_PUSH + dim + d] = head[i, d]
        row[_PUSH + 2 * dim + d] = np.float32(0.0)


@numba.njit(**_INLINE)
def finish_head(head, i, row):  # pragma: no cover - numba
    """After head ``i``'s edges: its summed negative pushes applied."""
    dim = head.shape[1]
    for d in range(dim):
        head[i, d] += row[_PUSH + 2 * dim + d]


@numba.njit(**_FLAGS)
def sgd_rows(start, stop, head, reference, indptr, indices, epochs_per_sample, next_sample, next_negative,
             negative_rate, a, b, alpha, epoch, seed, exclude_self, row, picked):  # pragma: no cover
    """One epoch of UMAP's SGD for heads ``start ... stop - 1``, in place on ``head`` and the clocks.

    Any number of dimensions; :func:`sgd_rows_2d` is the same epoch for 2-D layouts
    with the head held in registers and its negatives buffered. :func:`sgd_epoch` runs
    it over all heads.

    Parameters
    ----------
    start, stop : int
        The heads (rows of ``head``) this call moves.
    head : float32 (n_heads, dim)
        Points being moved (row ``i`` owns CSR row ``i``).
    reference : float32 (n_ref, dim)
        Positions of tails and negative samples for this epoch.
    indptr, indices : int64 / int32 CSR of the graph by head (tails index ``reference``)
    epochs_per_sample, next_sample, next_negative : float32 (n_edges,)
    negative_rate : int, a, b : float, alpha : float (learning rate this epoch)
    epoch : int, seed : uint64
    exclude_self : bool
        Skip negative samples equal to the head (fit, where both index one layout).
    row : float32 (>= scratch_width(dim),)
        This call's scratch row.
    picked : int64 (>= NEGATIVE_BUFFER,)
        This call's integer scratch (:func:`sgd_buffers` makes both).

    Notes
    -----
    ``error_model="numpy"``: numba's default checks every division for a zero
    divisor, and that branch alone kept the repulsion pass from vectorising.
    """
    dim = head.shape[1]
    useed = np.uint64(seed)
    a32, b32, alpha32, two_ab, two_b = _float32_constants(a, b, alpha)
    for i in range(start, stop):
        start_head(head, i, row)
        for e in range(indptr[i], indptr[i + 1]):
            if next_sample[e] > epoch:
                continue
            j = indices[e]
            dist_sq = np.float32(0.0)
            for d in range(dim):
                diff = head[i, d] - reference[j, d]
                dist_sq += diff * diff
            if dist_sq > 0.0:
                coeff = _attraction(dist_sq, a32, b32, two_ab)
                for d in range(dim):
                    head[i, d] += _clip(coeff * (head[i, d] - reference[j, d])) * alpha32
            next_sample[e] += epochs_per_sample[e]
            push_negatives(head, reference, i, e, epochs_per_sample, next_negative, negative_rate, epoch,
                           useed, exclude_self, a32, b32, two_b, alpha32, row, picked, False)
        finish_head(head, i, row)


@numba.njit(**_INLINE)
def _sum_pushes_2d(row, first, stop):  # pragma: no cover - numba
    """The summed clipped steps of buffered negatives ``first ... stop - 1``."""
    sum_x = np.float32(0.0)
    sum_y = np.float32(0.0)
    for t in range(first, stop):
        dist_sq = row[_B_DIST + t]
        if dist_sq > 0.0:
            coeff = row[_B_COEF + t]
            sum_x += _clip(coeff * row[_B_DX + t])
            sum_y += _clip(coeff * row[_B_DY + t])
        elif dist_sq == 0.0:
            # Coincident points: push apart by the clip bound.
            sum_x += np.float32(4.0)
            sum_y += np.float32(4.0)
    return sum_x, sum_y


# Not inlined: copies of it in the epoch's inner loop cost registers there (the
# epoch with no negative samples at all took 26 ms against 19 ms, 100,000 heads).
@numba.njit(**_FLAGS)
def _settle_2d(row, ends, n_edges, a32, b32, two_b, alpha32):  # pragma: no cover - numba
    """The summed pushes of a 2-D head's buffered negatives, of ``n_edges`` edges.

    Edge ``g``'s samples end at ``ends[g]``; each edge's sum of clipped steps is
    clipped, scaled by ``alpha`` and added.
    """
    _repulsions(row, _B_DIST, _B_COEF, ends[n_edges - 1], a32, b32, two_b)
    push_x = np.float32(0.0)
    push_y = np.float32(0.0)
    first = 0
    for g in range(n_edges):
        sum_x, sum_y = _sum_pushes_2d(row, first, ends[g])
        push_x += _clip(sum_x) * alpha32
        push_y += _clip(sum_y) * alpha32
        first = ends[g]
    return push_x, push_y


@numba.njit(**_INLINE)
def _buffer_negatives(row, first, stop, state, reference, n_ref, origin_x, origin_y, i,
                      exclude_self):  # pragma: no cover - numba
    """Draw samples into buffer slots ``first ... stop - 1`` (offsets from the origin, squared distances)."""
    for t in range(first, stop):
        state += GOLDEN
        k = _negative_index(state, n_ref)
        dx = origin_x - reference[k, 0]
        dy = origin_y - reference[k, 1]
        row[_B_DX + t] = dx
        row[_B_DY + t] = dy
        row[_B_DIST + t] = np.float32(_SKIP) if exclude_self and k == i else dx * dx + dy * dy
    return state


@numba.njit(**_FLAGS)
def sgd_rows_2d(start, stop, head, reference, indptr, indices, epochs_per_sample, next_sample, next_negative,
                negative_rate, a, b, alpha, epoch, seed, exclude_self, row, ends):  # pragma: no cover
    """:func:`sgd_rows` for 2-D layouts: the same steps, the head in registers.

    A head's negative samples (all its due edges') are buffered in ``row`` and their
    coefficients computed together after its last edge (or when the buffer would
    overflow; ``negative_rate`` at most ``MAX_RATE_2D``); ``ends`` (int64) marks where each edge's samples end, as each edge's
    sum is clipped on its own. Holding the head in registers took the epochs to 0.75x
    the generic kernel's time (6.7 s to 5.1 s for 200 on a 100,000-point graph).
    """
    n_ref = np.uint64(reference.shape[0])
    useed = np.uint64(seed)
    uepoch = np.uint64(epoch)
    a32, b32, alpha32, two_ab, two_b = _float32_constants(a, b, alpha)
    for i in range(start, stop):
        x = head[i, 0]
        y = head[i, 1]
        origin_x = x
        origin_y = y
        push_x = np.float32(0.0)
        push_y = np.float32(0.0)
        count = 0
        # Not a bare 0: numba typed the reset's 0 as a literal at the first _settle_2d
        # call and compiled _settle_2d twice (0.5 s of a first fit).
        n_edges = np.int64(0)
        for e in range(indptr[i], indptr[i + 1]):
            if next_sample[e] > epoch:
                continue
            j = indices[e]
            dx = x - reference[j, 0]
            dy = y - reference[j, 1]
            dist_sq = dx * dx + dy * dy
            if dist_sq > 0.0:
                coeff = _attraction(dist_sq, a32, b32, two_ab)
                x += _clip(coeff * dx) * alpha32
                y += _clip(coeff * dy) * alpha32
            next_sample[e] += epochs_per_sample[e]
            if negative_rate <= 0:
                continue
            n_negative, per_negative = _negatives_due(epochs_per_sample, next_negative, negative_rate, e, epoch)
            if n_negative <= 0:
                continue
            next_negative[e] += n_negative * per_negative
            state = _negative_state(useed, e, uepoch)
            # An edge draws at most about twice the rate, and sgd_epoch sends rates
            # up to MAX_RATE_2D here, so this bound never binds; it keeps the
            # buffer's writes in bounds whatever a caller passes.
            n_negative = min(n_negative, NEGATIVE_BUFFER)
            if count + n_negative > NEGATIVE_BUFFER:  # rare: settle what the buffer holds
                settled_x, settled_y = _settle_2d(row, ends, n_edges, a32, b32, two_b, alpha32)
                push_x += settled_x
                push_y += settled_y
                count = 0
                n_edges = np.int64(0)
            _buffer_negatives(row, count, count + n_negative, state, reference, n_ref, origin_x, origin_y, i,
                              exclude_self)
            count += n_negative
            ends[n_edges] = count
            n_edges += 1
        if n_edges > 0:
            settled_x, settled_y = _settle_2d(row, ends, n_edges, a32, b32, two_b, alpha32)
            push_x += settled_x
            push_y += settled_y
        head[i, 0] = x + push_x
        head[i, 1] = y + push_y


def sgd_epoch(head: np.ndarray, reference: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
              epochs_per_sample: np.ndarray, next_sample: np.ndarray, next_negative: np.ndarray,
              negative_rate: int, a: float, b: float, alpha: float, epoch: int, seed: np.uint64,
              exclude_self: bool, scratch: np.ndarray, picks: np.ndarray) -> None:
    """One epoch over all heads: :func:`sgd_rows_2d` for 2-D layouts, else :func:`sgd_rows`.

    2-D layouts with ``negative_rate`` above ``MAX_RATE_2D`` take :func:`sgd_rows`
    (the same steps), as an edge's samples might then not fit the 2-D buffer.

    The heads are split into contiguous blocks, one per thread (numba's thread count,
    :mod:`embedscope.kernels._threads`); ``scratch`` and ``picks``
    (:func:`sgd_buffers`) give each block its own rows. A head's step depends only on
    its own row and on ``reference``, so the result is the same for any split.
    """
    args = (head, reference, indptr, indices, epochs_per_sample, next_sample, next_negative,
            negative_rate, a, b, alpha, epoch, seed, exclude_self)
    chunks = min(n_chunks(head.shape[0], MIN_ROWS_PER_THREAD), scratch.shape[0], picks.shape[0])
    kernel = sgd_rows_2d if head.shape[1] == 2 and negative_rate <= MAX_RATE_2D else sgd_rows
    run_row_chunks(kernel, head.shape[0], chunks, args, (scratch, picks))


@functools.lru_cache(maxsize=64)
def find_ab_params(spread: float, min_dist: float) -> tuple[float, float]:
    """``a, b`` of the low-dimensional kernel ``1 / (1 + a d^(2b))``.

    Fitted by least squares to the target curve: 1 below ``min_dist``, then
    ``exp(-(d - min_dist) / spread)`` (the UMAP paper's definition), on 300 points
    of ``[0, 3 spread]``, by Levenberg-Marquardt from ``a = b = 1``. Written out
    rather than with ``scipy.optimize.curve_fit``: importing ``scipy.optimize`` took
    0.2 s of every fit, 8% of one on the word vectors. The two agree to 1e-5
    (tests/test_umap.py).

    The curve depends on distance only through ``d / spread``, so the fit runs at
    spread 1 (where the start ``a = b = 1`` lies near the optimum; at spread 0.1 or
    10 it descended to negative ``a, b``) and ``a`` is rescaled: ``a' = a / spread^2b``.
    """
    if spread != 1.0:
        a, b = find_ab_params(1.0, min_dist / spread)
        return float(a * spread ** (-2.0 * b)), b
    x = np.linspace(0.0, spread * 3.0, 300)
    target = np.where(x < min_dist, 1.0, np.exp(-(x - min_dist) / spread))
    log_x = np.log(np.where(x > 0.0, x, 1.0))  # d^(2b) log d -> 0 at d = 0

    def residuals(a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
        powered = x ** (2.0 * b)
        curve = 1.0 / (1.0 + a * powered)
        jacobian = np.stack([-powered * curve**2, -2.0 * a * powered * log_x * curve**2], axis=1)
        return curve - target, jacobian

    params = np.array([1.0, 1.0])
    residual, jacobian = residuals(*params)
    cost = residual @ residual
    damping = 1e-3
    for _ in range(500):
        normal = jacobian.T @ jacobian
        step = np.linalg.solve(normal + damping * np.diag(np.diag(normal)), -jacobian.T @ residual)
        trial = params + step
        trial_residual, trial_jacobian = residuals(*trial)
        trial_cost = trial_residual @ trial_residual
        if np.isfinite(trial_cost) and trial_cost <= cost:
            converged = cost - trial_cost <= 1e-15 * max(cost, 1e-300) and np.all(np.abs(step) <= 1e-10 * (1.0 + np.abs(params)))
            params, residual, jacobian, cost = trial, trial_residual, trial_jacobian, trial_cost
            damping = max(damping / 10.0, 1e-12)
            if converged:
                break
        else:
            damping *= 10.0
            if damping > 1e12:
                break
    return float(params[0]), float(params[1])


def default_epochs(n_samples: int) -> int:
    """umap-learn's default: 500 epochs up to 10,000 points, 200 above."""
    return 500 if n_samples <= 10_000 else 200


def edge_schedule(graph: sp.csr_matrix, n_epochs: int) -> sp.csr_matrix:
    """Drop edges too weak to be sampled once in ``n_epochs`` epochs; keep CSR sorted.

    Only array methods are used, so a cupyx CSR graph (built on the GPU) is pruned
    on the device.
    """
    graph = graph.tocsr(copy=True)
    if graph.nnz:
        graph.data[graph.data < graph.data.max() / float(n_epochs)] = 0.0
        graph.eliminate_zeros()
    return graph


def sgd_schedule(graph: sp.csr_matrix, negative_sample_rate: int) -> tuple[np.ndarray, ...] | None:
    """The arrays the SGD kernels share: CSR by head and the per-edge sampling clocks.

    Returns ``(indptr, indices, epochs_per_sample, next_sample, next_negative)``, or
    None for a graph without edges. Strong edges are sampled every epoch, an edge of
    weight ``w`` every ``max(w) / w`` epochs. For a cupyx graph the arrays are cupy
    arrays, computed on the device (only array methods are used).
    """
    graph = graph.tocsr()
    weights = graph.data.astype(np.float32)
    if weights.size == 0:
        return None
    epochs_per_sample = (weights.max() / weights).astype(np.float32)
    next_negative = (epochs_per_sample / max(negative_sample_rate, 1)).astype(np.float32)
    return (graph.indptr.astype(np.int64), graph.indices.astype(np.int32), epochs_per_sample,
            epochs_per_sample.copy(), next_negative)


#: From this many heads up, a fit relabels its points by layout position
#: (:mod:`embedscope.kernels.locality`) before the epochs in REORDER_AT: a head's
#: edges then read rows near its own in memory (negative samples stay random).
#: At the start (the init) and once the layout has formed. Off (None): unlike
#: t-SNE's grid, UMAP's epochs did not get faster for it. A 1M x 50 fit on one saved
#: kNN graph, relabelled against not, two processes at once of one thread each:
#: optimise 270.1 vs 265.5 s, trustworthiness 0.99144 vs 0.99142, peak RSS 1.63 vs
#: 1.58 GB (2026-12-02; a 2-D layout of 1M points is 8 MB, which the caches hold in
#: either order). Set a size to try it on larger data.
REORDER_MIN: int | None = None
REORDER_AT = frozenset({0, 25})


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
        ``callback(epoch, n_epochs, head)`` after each epoch (epoch counts from 1); a
        true return value stops after that epoch, keeping the layout it left.
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
    # the edge arrays live in one list, which alone holds them: a relabelling replaces
    # them one at a time, each old one freed as its successor is built
    indptr, *rest = schedule
    lists: list[np.ndarray] = rest
    del schedule, rest
    fit_case = reference is None
    snapshot = np.empty_like(head) if fit_case else np.ascontiguousarray(reference, dtype=np.float32)
    report_every = max(1, n_epochs // 10)
    # One row per thread, each at least two cache lines long: rows of 2 floats shared
    # a line between the two threads, and the ping-pong made 2 threads slower than 1.
    n_threads = numba.get_num_threads()
    scratch, picks = sgd_buffers(n_threads, head.shape[1])
    # Large fits work on a copy relabelled by layout position now and then
    # (kernels.locality): a head's edges then point at rows near its own. ``labels[r]``
    # is the row of ``head`` that row r of ``work`` holds; ``head`` gets the result.
    relabel = fit_case and REORDER_MIN is not None and head.shape[0] >= REORDER_MIN
    work, labels = head, None
    for epoch in range(n_epochs):
        if relabel and epoch in REORDER_AT:
            order = locality_order(work)
            indptr = permute_lists_owned(indptr, lists, order)
            work = np.ascontiguousarray(work[order])
            labels = order if labels is None else labels[order]
        if fit_case:
            np.copyto(snapshot, work)
        alpha = learning_rate * (1.0 - epoch / n_epochs)
        # (indices, epochs_per_sample, next_sample, next_negative), unnamed: a name
        # would keep an old array alive through the next relabelling
        sgd_epoch(work, snapshot, indptr, *lists,
                  int(negative_sample_rate), float(a), float(b), float(alpha), epoch, np.uint64(seed), fit_case,
                  scratch, picks)
        if callback is not None:
            if labels is not None:
                head[labels] = work  # the caller's array, in its own row order
            if callback(epoch + 1, n_epochs, head):
                break  # the caller asked to stop: the layout stays as this epoch left it
        if log is not None and ((epoch + 1) % report_every == 0 or epoch + 1 == n_epochs):
            log(f"epoch {epoch + 1}/{n_epochs}")
    if labels is not None:
        head[labels] = work
    return head
