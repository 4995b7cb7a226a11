"""Exact t-SNE sums: all-pairs repulsion and the KL divergence over the sparse P.

:func:`exact_repulsion` is the reference the grid (:mod:`.fft`) and tree (:mod:`.bh`)
approximations are tested against, and the repulsion used below a few thousand points.
Every repulsion routine returns the same pair: ``rep`` (the un-normalised second sum of
the gradient, one row per target) and ``Z`` (total over all ordered pairs i != j for a
self-join).
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from embedscope.kernels._fastpow import log_normal
from embedscope.kernels._threads import for_rows

#: Row kernels, serial over ``[start, stop)`` on :mod:`.._threads`' pool rather than
#: ``prange``: numba's parfor passes and gufunc wrappers made these two 1.6 s of a
#: first t-SNE fit's compiling, serial 0.6 s. With numpy's error model (what a parfor
#: body gets: no zero-divisor branch in the loop) they run as fast (KL at 100k x 130,
#: two threads: 29.3 ms with prange, 28.7 ms; without that error model 55 ms).
_ROWS = {"cache": True, "fastmath": True, "nogil": True, "error_model": "numpy"}


@numba.njit(**_ROWS)
def _exact_repulsion(start, stop, targets, sources, dof, self_join, rep, z_rows):  # pragma: no cover - numba
    d = targets.shape[1]
    n = sources.shape[0]
    # dof = 1 (standard t-SNE) is a reciprocal, not a power: 11 ns a pair with pow,
    # the cost of the grid's exact sums over thrown-out points (fft.FFTRepulsion).
    unit = dof == 1.0
    for i in range(start, stop):
        # Unrolled for d <= 3 (t-SNE's embeddings): the sums stay in registers.
        t0 = targets[i, 0]
        t1 = targets[i, 1] if d > 1 else 0.0
        t2 = targets[i, 2] if d > 2 else 0.0
        a0 = a1 = a2 = 0.0
        z = 0.0
        for j in range(n):
            if self_join and j == i:
                continue
            e0 = t0 - sources[j, 0]
            e1 = t1 - sources[j, 1] if d > 1 else 0.0
            e2 = t2 - sources[j, 2] if d > 2 else 0.0
            d2 = e0 * e0 + e1 * e1 + e2 * e2
            for c in range(3, d):
                diff = targets[i, c] - sources[j, c]
                d2 += diff * diff
            base = 1.0 + d2 / dof
            w = 1.0 / base if unit else base ** -dof
            z += w
            f = w / base
            a0 += f * e0
            a1 += f * e1
            a2 += f * e2
            for c in range(3, d):
                rep[i, c] += f * (targets[i, c] - sources[j, c])
        rep[i, 0] = a0
        if d > 1:
            rep[i, 1] = a1
        if d > 2:
            rep[i, 2] = a2
        z_rows[i] = z


def exact_repulsion(
    sources: np.ndarray, dof: float = 1.0, targets: np.ndarray | None = None,
) -> tuple[np.ndarray, float | np.ndarray]:
    """Exact O(N^2) repulsion: the reference every approximation is tested against.

    Parameters
    ----------
    sources : ndarray of shape (n, d)
        The embedding whose points repel.
    dof : float, default=1.0
        Degrees of freedom of the heavy-tailed kernel.
    targets : ndarray of shape (m, d), optional
        Points to evaluate at; None is a self-join (``i == j`` skipped).

    Returns
    -------
    rep : ndarray of shape (m, d), float64
        ``sum_j w_ij^(1 + 1/dof) (t_i - s_j)``.
    Z : float or ndarray of shape (m,)
        Self-join: ``sum_{i != j} w_ij``. Otherwise each target's ``sum_j w_ij``.
    """
    self_join = targets is None
    S = np.ascontiguousarray(sources, dtype=np.float64)
    T = S if self_join else np.ascontiguousarray(targets, dtype=np.float64)
    rep = np.zeros(T.shape, dtype=np.float64)
    z_rows = np.empty(T.shape[0], dtype=np.float64)
    # a row costs n pairs: a few rows are worth a thread
    for_rows(_exact_repulsion, T.shape[0], T, S, float(dof), self_join, rep, z_rows,
             min_rows=max(1, 2**20 // max(S.shape[0], 1)))
    return rep, (float(z_rows.sum()) if self_join else z_rows)


@numba.njit(**_ROWS)
def _kl_rows(start, stop, indptr, indices, values, Y, dof, out):  # pragma: no cover - numba
    # sum_j p_ij (-log w_ij) = sum_j p_ij dof log(1 + d2_ij / dof); the p log p half of
    # KL does not depend on Y and is summed once per P (_entropy_term). Per-row terms
    # summed by numpy afterwards: the total does not depend on the thread count.
    d = Y.shape[1]
    inv_dof = 1.0 / dof
    for i in range(start, stop):
        acc = 0.0
        if d == 2:  # t-SNE's usual case, with no inner loop left in the sum
            y0 = Y[i, 0]
            y1 = Y[i, 1]
            for jj in range(indptr[i], indptr[i + 1]):
                j = indices[jj]
                e0 = y0 - Y[j, 0]
                e1 = y1 - Y[j, 1]
                # p = 0 entries (none in a joint P) add 0 * log(...) = 0
                acc += values[jj] * log_normal(1.0 + (e0 * e0 + e1 * e1) * inv_dof)
        else:
            for jj in range(indptr[i], indptr[i + 1]):
                j = indices[jj]
                d2 = 0.0
                for c in range(d):
                    e = Y[i, c] - Y[j, c]
                    d2 += e * e
                acc += values[jj] * log_normal(1.0 + d2 * inv_dof)
        out[i] = dof * acc


@numba.njit(cache=True, fastmath=True, nogil=True)
def _entropy_rows(start, stop, indptr, values, out):  # pragma: no cover - numba
    for i in range(start, stop):
        acc = 0.0
        for jj in range(indptr[i], indptr[i + 1]):
            p = np.float64(values[jj])  # a float32 P's log in float32 was off by ~1e-8 of KL
            if p > 0.0:
                acc += p * np.log(p)
        out[i] = acc


def _entropy_term(P: sp.csr_matrix) -> float:
    """``sum p log p`` over P, kept on the matrix: the optimiser asks for the KL every
    few iterations of one P (a relabelling permutes its entries, which leaves the sum)."""
    key = (P.data.ctypes.data, P.nnz, P.shape)
    cached = getattr(P, "_embedscope_entropy", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    terms = np.empty(P.shape[0], dtype=np.float64)
    for_rows(_entropy_rows, P.shape[0], P.indptr, P.data, terms)
    value = float(terms.sum())
    P._embedscope_entropy = (key, value)
    return value


def kl_divergence(P: sp.csr_matrix, Y: np.ndarray, Z: float, dof: float = 1.0) -> float:
    """KL(P || Q) for the joint P (summing to 1) and the embedding's normaliser ``Z``.

    ``sum p log p - sum p log w + log Z`` with ``w = (1 + d^2 / dof)^-dof``: the first
    sum is computed once per P; the second takes one log per entry of P, in the series
    of :func:`~embedscope.kernels._fastpow.log_normal` (a libm ``log`` per entry, and
    ``log p`` recomputed each time, made one KL cost four t-SNE iterations at 100k).
    """
    terms = np.empty(Y.shape[0], dtype=np.float64)
    # a block of rows per thread once there are 2**18 entries of P a thread
    for_rows(_kl_rows, Y.shape[0], P.indptr, P.indices, P.data, np.ascontiguousarray(Y, dtype=np.float64),
             float(dof), terms, min_rows=max(1024, 2**18 * Y.shape[0] // max(P.nnz, 1)))
    return float(_entropy_term(P) + terms.sum() + np.log(Z))
