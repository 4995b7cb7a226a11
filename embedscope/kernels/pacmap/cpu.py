"""PaCMAP's optimiser: Adam on the three pair losses (numba, parallel over points); CPU twin.

Losses (Wang et al. 2021, eq. 5-7), with ``d = 1 + ||y_i - y_j||^2``:
near pairs ``w_NB d / (10 + d)``, mid-near pairs ``w_MN d / (10000 + d)``, further pairs
``w_FP / (1 + d)``. Their gradients on ``y_i`` are ``c (y_i - y_j)`` with

    c_NB = 20 w_NB / (10 + d)^2,  c_MN = 20000 w_MN / (10000 + d)^2,  c_FP = -2 w_FP / (1 + d)^2

and the same with the opposite sign on ``y_j``. Each point's lists (:func:`.pairs.symmetric_lists`)
hold both ends of its pairs, so one pass computes every point's whole gradient from its own
rows: no shared sums, no atomics, and a seeded layout is the same whatever the thread count.

One call of :func:`adam_step` reads the layout ``y`` and writes the next one into ``out``
(two buffers, swapped by the driver): every gradient of an iteration sees the same layout,
as in the paper's full-batch Adam.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from embedscope.kernels._threads import n_chunks, run_row_chunks
from embedscope.kernels.locality import in_input_order, locality_order, permute_lists_owned

#: Adam's constants (Kingma & Ba 2015; the paper keeps them).
BETA1, BETA2, EPS = 0.9, 0.999, 1e-7
#: The paper's phase weights: (w_NB, w_MN start, w_MN end, w_FP) per phase.
PHASES = ((2.0, 1000.0, 3.0, 1.0), (3.0, 3.0, 3.0, 1.0), (1.0, 0.0, 0.0, 1.0))


def weights(iteration: int, n_iters: tuple[int, int, int]) -> tuple[float, float, float]:
    """``(w_NB, w_MN, w_FP)`` at ``iteration`` (0-based) of the three-phase schedule.

    Phase 1 lowers w_MN linearly from 1000 to 3 (global structure first), phase 2 holds
    it at 3, phase 3 drops it to 0 and relaxes w_NB to 1 (local detail last).
    """
    p1, p2, _ = n_iters
    if iteration < p1:
        share = iteration / p1
        return PHASES[0][0], (1.0 - share) * PHASES[0][1] + share * PHASES[0][2], PHASES[0][3]
    if iteration < p1 + p2:
        return PHASES[1][0], PHASES[1][1], PHASES[1][3]
    return PHASES[2][0], PHASES[2][1], PHASES[2][3]


def adam_rate(learning_rate: float, step: int) -> float:
    """Adam's bias-corrected step size at ``step`` (1-based)."""
    return learning_rate * np.sqrt(1.0 - BETA2**step) / (1.0 - BETA1**step)


@numba.njit(cache=True, inline="always")
def _add_pair_forces(y, reference, i, ptr, idx, weight, offset, out):  # pragma: no cover - numba
    """``out[i] += weight / (offset + d)^2 (y_i - y_j)`` over point ``i``'s pairs, ``d = 1 + |y_i - y_j|^2``.

    The three pair sets' terms of the any-dimension step (inlined: the caller's flags).
    """
    dim = y.shape[1]
    for e in range(ptr[i], ptr[i + 1]):
        j = idx[e]
        d = np.float32(1.0)
        for c in range(dim):
            diff = y[i, c] - reference[j, c]
            d += diff * diff
        coef = weight / ((offset + d) * (offset + d))
        for c in range(dim):
            out[i, c] += coef * (y[i, c] - reference[j, c])


def adam_step(y: np.ndarray, reference: np.ndarray, nb_ptr: np.ndarray, nb_idx: np.ndarray, mn_ptr: np.ndarray,
              mn_idx: np.ndarray, fp_ptr: np.ndarray, fp_idx: np.ndarray, w_nb: float, w_mn: float, w_fp: float,
              rate: float, m: np.ndarray, v: np.ndarray, out: np.ndarray, *, chunks: int | None = None) -> None:
    """One Adam step: ``out`` = ``y`` moved along the pair losses' gradient.

    Parameters
    ----------
    y : float32 (n, dim)
        The points being moved.
    reference : float32 (n_ref, dim)
        Their partners' positions: ``y`` itself in a fit, the fixed fitted layout in
        ``transform``.
    nb_ptr, nb_idx, mn_ptr, mn_idx, fp_ptr, fp_idx : int64 / int32 CSR by point
        Partners (rows of ``reference``) of each pair set.
    w_nb, w_mn, w_fp : float
        The phase weights; a zero weight skips its pairs.
    rate : float
        The bias-corrected step size (:func:`adam_rate`).
    m, v : float32 (n, dim)
        Adam's moments, updated in place.
    out : float32 (n, dim)
        The moved points (must not be ``y``).
    chunks : int or None
        Blocks of rows run in parallel; None: one per thread. Each row's arithmetic is
        the same however many.
    """
    n = y.shape[0]
    run_row_chunks(_adam_rows, n, n_chunks(n) if chunks is None else max(1, min(chunks, n)),
                   (y, reference, nb_ptr, nb_idx, mn_ptr, mn_idx, fp_ptr, fp_idx, float(w_nb), float(w_mn),
                    float(w_fp), float(rate), m, v, out))


# A row kernel on ``_threads``' pool, not ``prange``: one compiled body serves the serial
# and the parallel step (numba's parfor passes and a second, serial copy made PaCMAP's
# first-fit compile the longest of the three reducers). nogil: a live view's thread
# (embedscope.viz.live) draws while an iteration runs.
@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _adam_rows(start, stop, y, reference, nb_ptr, nb_idx, mn_ptr, mn_idx, fp_ptr, fp_idx,
               w_nb, w_mn, w_fp, rate, m, v, out):  # pragma: no cover - numba
    dim = y.shape[1]
    wnb = np.float32(20.0 * w_nb)
    wmn = np.float32(20000.0 * w_mn)
    wfp = np.float32(2.0 * w_fp)
    rate32 = np.float32(rate)
    b1 = np.float32(BETA1)
    b2 = np.float32(BETA2)
    eps = np.float32(EPS)
    one = np.float32(1.0)
    for i in range(start, stop):
        if dim == 2:
            # the same sums with the point and its gradient in registers (the compiler cannot
            # rule out that out aliases y, so it would store and reload the sums every pair)
            y0 = y[i, 0]
            y1 = y[i, 1]
            g0 = np.float32(0.0)
            g1 = np.float32(0.0)
            for e in range(nb_ptr[i], nb_ptr[i + 1]):
                j = nb_idx[e]
                d0 = y0 - reference[j, 0]
                d1 = y1 - reference[j, 1]
                d = one + d0 * d0 + d1 * d1
                coef = wnb / ((np.float32(10.0) + d) * (np.float32(10.0) + d))
                g0 += coef * d0
                g1 += coef * d1
            if wmn != np.float32(0.0):
                for e in range(mn_ptr[i], mn_ptr[i + 1]):
                    j = mn_idx[e]
                    d0 = y0 - reference[j, 0]
                    d1 = y1 - reference[j, 1]
                    d = one + d0 * d0 + d1 * d1
                    coef = wmn / ((np.float32(10000.0) + d) * (np.float32(10000.0) + d))
                    g0 += coef * d0
                    g1 += coef * d1
            for e in range(fp_ptr[i], fp_ptr[i + 1]):
                j = fp_idx[e]
                d0 = y0 - reference[j, 0]
                d1 = y1 - reference[j, 1]
                d = one + d0 * d0 + d1 * d1
                coef = wfp / ((one + d) * (one + d))
                g0 -= coef * d0
                g1 -= coef * d1
            m[i, 0] = b1 * m[i, 0] + (one - b1) * g0
            v[i, 0] = b2 * v[i, 0] + (one - b2) * g0 * g0
            m[i, 1] = b1 * m[i, 1] + (one - b1) * g1
            v[i, 1] = b2 * v[i, 1] + (one - b2) * g1 * g1
            out[i, 0] = y0 - rate32 * m[i, 0] / (np.sqrt(v[i, 0]) + eps)
            out[i, 1] = y1 - rate32 * m[i, 1] / (np.sqrt(v[i, 1]) + eps)
            continue
        # out's row i is this point's own: it holds the gradient until the update
        for c in range(dim):
            out[i, c] = np.float32(0.0)
        if wnb != 0:
            _add_pair_forces(y, reference, i, nb_ptr, nb_idx, wnb, np.float32(10.0), out)
        if wmn != 0:
            _add_pair_forces(y, reference, i, mn_ptr, mn_idx, wmn, np.float32(10000.0), out)
        if wfp != 0:
            # -w: further pairs repel (negation is exact, so the sum is the same as subtracting)
            _add_pair_forces(y, reference, i, fp_ptr, fp_idx, -wfp, one, out)
        for c in range(dim):
            g = out[i, c]
            m[i, c] = b1 * m[i, c] + (one - b1) * g
            v[i, c] = b2 * v[i, c] + (one - b2) * g * g
            out[i, c] = y[i, c] - rate32 * m[i, c] / (np.sqrt(v[i, c]) + eps)


#: Below this many list entries an iteration runs on one thread: it takes well under a
#: millisecond, less than waking the thread pool 450 times (3,000 points: 0.2 s serial
#: against 1.7 s parallel for 100 iterations on a busy 2-core machine). The arithmetic
#: is the same body, so the choice depends only on the data, never on the thread count.
SERIAL_BELOW = 1_000_000
#: From this many points up, a fit relabels its points by their place in the layout
#: (:mod:`embedscope.kernels.locality`) before the iterations in REORDER_AT: the near
#: and mid-near partners' reads then stay in cache (the further pairs are random
#: whatever the labels). At the start (the PCA init) and twice as the layout forms.
REORDER_MIN = 100_000
REORDER_AT = frozenset({0, 50, 150})


def relabels_points(n: int) -> bool:
    """Whether a fit of ``n`` points relabels them by layout position (``REORDER_MIN``).

    The first fit's precompiled kernels (``backends/cpu.py``) follow it too.
    """
    return n >= REORDER_MIN


def optimize_layout(
    layout: np.ndarray,
    lists: tuple[np.ndarray, ...] | list[np.ndarray],
    n_iters: tuple[int, int, int],
    *,
    learning_rate: float = 1.0,
    reference: np.ndarray | None = None,
    phase_weights: Callable[[int, tuple[int, int, int]], tuple[float, float, float]] = weights,
    callback: Callable[[int, int, Any], object] | None = None,
    log: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Run PaCMAP's Adam iterations; returns the final layout, float32 (n, dim).

    Parameters
    ----------
    layout : float32 (n, dim)
        Starting positions (not modified).
    lists : tuple or list of six arrays
        ``(nb_ptr, nb_idx, mn_ptr, mn_idx, fp_ptr, fp_idx)``, the pair sets by point. A
        fit that relabels its points (``REORDER_MIN``) replaces a list's arrays with the
        relabelled ones, so that the old ones can be freed; a tuple is left as it is.
    n_iters : (int, int, int)
        Iterations of the three phases.
    learning_rate : float
    reference : float32 (n_ref, dim) or None
        Fixed partner positions (``transform``); None for a fit.
    phase_weights : callable
        ``(iteration, n_iters) -> (w_NB, w_MN, w_FP)``; :func:`weights` by default.
    callback : callable or None
        ``callback(iteration, total, layout)`` after every iteration (the live array);
        a true return value stops after that iteration, keeping its layout.
    log : callable or None
        Receives a progress line every 10% of the iterations.
    """
    y = np.ascontiguousarray(layout, dtype=np.float32).copy()
    out = np.empty_like(y)
    m, v = np.zeros_like(y), np.zeros_like(y)
    fixed = None if reference is None else np.ascontiguousarray(reference, dtype=np.float32)
    total = int(sum(n_iters))
    report = max(1, total // 10)
    # A list is relabelled in place (its arrays replaced one at a time, each old one freed
    # when the list held the only reference: ~0.3 GB at 1M points); a tuple is copied.
    owned: list[Any] = lists if isinstance(lists, list) else list(lists)
    del lists
    chunks = 1 if sum(int(a.size) for a in owned[1::2]) < SERIAL_BELOW else None
    relabel = fixed is None and relabels_points(y.shape[0])
    labels = None  # labels[r]: the input row that row r of y holds, once relabelled
    for it in range(total):
        if relabel and it in REORDER_AT:
            order = locality_order(y)
            for k in range(0, len(owned), 2):  # each array replaced as its successor is built
                held = [owned[k + 1]]
                owned[k + 1] = None  # only `held` refers to the index array now
                owned[k] = permute_lists_owned(owned[k], held, order)
                owned[k + 1] = held[0]
                del held
            y, m, v = y[order], m[order], v[order]
            out = np.empty_like(y)
            labels = order if labels is None else labels[order]
        w_nb, w_mn, w_fp = phase_weights(it, n_iters)
        adam_step(y, y if fixed is None else fixed, *owned, w_nb, w_mn, w_fp,
                  adam_rate(learning_rate, it + 1), m, v, out, chunks=chunks)
        y, out = out, y
        if callback is not None and callback(it + 1, total, y if labels is None else in_input_order(y, labels)):
            break  # the caller asked to stop: the layout stays as this iteration left it
        if log is not None and ((it + 1) % report == 0 or it + 1 == total):
            log(f"iteration {it + 1}/{total}")
    return y if labels is None else in_input_order(y, labels)

