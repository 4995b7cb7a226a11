"""t-SNE gradient kernels (CPU): attraction over the sparse P and the optimiser step.

The gradient with a heavy-tailed kernel of ``dof`` degrees of freedom
(``w_ij = (1 + |y_i - y_j|^2 / dof) ** -dof``, ``q_ij = w_ij / Z``) is

    dC/dy_i = 4 * (sum_j p_ij w_ij^(1/dof) (y_i - y_j)
                   - (1 / Z) sum_j w_ij^(1 + 1/dof) (y_i - y_j))

The first sum runs over the sparse P only (:func:`attractive_forces`, and fused into
:func:`gradient_step`); the second, the repulsion, comes in precomputed (``rep``,
``Z``) from :mod:`.exact`, :mod:`.fft` or :mod:`.bh`. The engine's optimiser loop calls
:func:`gradient_step` then :func:`advance` once per iteration; the split lets every row
of the parallel step read the same, old, positions.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True, fastmath=True, nogil=True)
def attractive_forces(indptr, indices, values, Y, reference, dof, out):  # pragma: no cover - numba
    """``out[i] = sum_j p_ij w_ij^(1/dof) (Y[i] - reference[j])`` over the CSR rows of P.

    For a fit ``reference`` is ``Y`` itself; for ``transform`` it is the fixed
    embedding and ``Y`` the points being placed.
    """
    n, d = Y.shape
    for i in numba.prange(n):
        for c in range(d):
            out[i, c] = 0.0
        for jj in range(indptr[i], indptr[i + 1]):
            j = indices[jj]
            d2 = 0.0
            for c in range(d):
                diff = Y[i, c] - reference[j, c]
                d2 += diff * diff
            f = values[jj] / (1.0 + d2 / dof)
            for c in range(d):
                out[i, c] += f * (Y[i, c] - reference[j, c])


@numba.njit(parallel=True, cache=True, fastmath=True, nogil=True)
def gradient_step(indptr, indices, values, Y, reference, dof, rep, inv_z, exaggeration, scale,
                  learning_rate, momentum, update, gains):  # pragma: no cover - numba
    """Attractive forces and one momentum step with delta-bar-delta gains, fused.

    Writes ``update`` and ``gains`` only; the caller adds ``update`` to ``Y`` after
    the parallel loop, so every row sees the same (old) positions of its neighbours.
    ``scale`` is the gradient's constant factor (4 for a fit, 2 for placing points);
    ``inv_z`` holds 1/Z per row (all equal for a fit).
    """
    n, d = Y.shape
    inv_dof = 1.0 / dof
    for i in numba.prange(n):
        # Unrolled for d <= 3 (the only embedding sizes): no per-row allocation.
        a0 = a1 = a2 = 0.0
        y0 = Y[i, 0]
        y1 = Y[i, 1]
        y2 = Y[i, 2] if d == 3 else 0.0
        for jj in range(indptr[i], indptr[i + 1]):
            j = indices[jj]
            d0 = y0 - reference[j, 0]
            d1 = y1 - reference[j, 1]
            d2_ = y2 - reference[j, 2] if d == 3 else 0.0
            f = values[jj] / (1.0 + (d0 * d0 + d1 * d1 + d2_ * d2_) * inv_dof)
            a0 += f * d0
            a1 += f * d1
            a2 += f * d2_
        for c in range(d):
            attr = a0 if c == 0 else (a1 if c == 1 else a2)
            grad = scale * (exaggeration * attr - rep[i, c] * inv_z[i])
            # Gains grow while the gradient keeps pointing the way we are moving.
            if (grad > 0.0) != (update[i, c] > 0.0):
                gains[i, c] += 0.2
            else:
                gains[i, c] *= 0.8
            if gains[i, c] < 0.01:
                gains[i, c] = 0.01
            update[i, c] = momentum * update[i, c] - learning_rate * gains[i, c] * grad


@numba.njit(cache=True)
def advance(Y, update):  # pragma: no cover - numba
    """``Y += update`` then recentre (a serial pass; numpy's axis-0 mean is strided)."""
    n, d = Y.shape
    mean = np.zeros(d)
    for i in range(n):
        for c in range(d):
            Y[i, c] += update[i, c]
            mean[c] += Y[i, c]
    for i in range(n):
        for c in range(d):
            Y[i, c] -= mean[c] / n
