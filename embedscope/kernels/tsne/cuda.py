"""numba.cuda kernels of the t-SNE GPU twin. Import through :mod:`.gpu` only.

Each kernel is the body of its CPU twin with one thread per row of the sparse P:
:func:`attractive_forces` and :func:`gradient_step` are their namesakes in
:mod:`embedscope.kernels.tsne.gradient` (the step fuses attraction with the momentum
and gains update), :func:`kl_terms` is ``kernels.tsne.exact._kl_terms``. A row reads the
positions of its neighbours and writes only its own outputs, so the rows need no
synchronisation and the order the threads run in does not matter.

Positions, forces, updates and gains are float32 on the device (the CPU twin keeps
float64); the KL report is accumulated in float64.
"""

from __future__ import annotations

import math

from numba import cuda, float32, float64, int32, int64


@cuda.jit(device=True, inline=True)
def _attraction(indptr, indices, values, Y, reference, i, inv_dof):
    """``sum_j p_ij w_ij^(1/dof) (Y[i] - reference[j])`` over row ``i``, as a 3-tuple.

    Unrolled for 2 and 3 dimensions (the only embedding sizes), as the CPU step is:
    the third component is 0 in 2-D.
    """
    three = Y.shape[1] == 3
    y0 = Y[i, 0]
    y1 = Y[i, 1]
    y2 = Y[i, 2] if three else float32(0.0)
    a0 = float32(0.0)
    a1 = float32(0.0)
    a2 = float32(0.0)
    for jj in range(indptr[i], indptr[i + 1]):
        j = indices[jj]
        d0 = y0 - reference[j, 0]
        d1 = y1 - reference[j, 1]
        d2 = y2 - reference[j, 2] if three else float32(0.0)
        f = values[jj] / (float32(1.0) + (d0 * d0 + d1 * d1 + d2 * d2) * inv_dof)
        a0 += f * d0
        a1 += f * d1
        a2 += f * d2
    return a0, a1, a2


@cuda.jit(fastmath=True)
def attractive_forces(indptr, indices, values, Y, reference, dof, out):
    """``out[i] = sum_j p_ij w_ij^(1/dof) (Y[i] - reference[j])``, one thread per row."""
    i = cuda.grid(1)
    if i >= Y.shape[0]:
        return
    a0, a1, a2 = _attraction(indptr, indices, values, Y, reference, i, float32(1.0 / dof))
    out[i, 0] = a0
    out[i, 1] = a1
    if Y.shape[1] == 3:
        out[i, 2] = a2


@cuda.jit(fastmath=True)
def gradient_step(indptr, indices, values, Y, reference, dof, rep, inv_z, exaggeration, scale,
                  learning_rate, momentum, update, gains):
    """Attraction and one momentum step with delta-bar-delta gains (``gradient.gradient_step``).

    Writes ``update`` and ``gains`` only; the driver adds ``update`` to ``Y`` after the
    launch, so every row sees the old positions of its neighbours. ``inv_z`` holds
    1/Z once (a fit, read on the device so the host never waits for Z) or per row.
    """
    i = cuda.grid(1)
    if i >= Y.shape[0]:
        return
    a0, a1, a2 = _attraction(indptr, indices, values, Y, reference, i, float32(1.0 / dof))
    norm = float32(inv_z[0] if inv_z.shape[0] == 1 else inv_z[i])
    exag = float32(exaggeration)
    factor = float32(scale)
    rate = float32(learning_rate)
    mom = float32(momentum)
    for c in range(Y.shape[1]):
        attr = a0 if c == 0 else (a1 if c == 1 else a2)
        grad = factor * (exag * attr - rep[i, c] * norm)
        gain = gains[i, c]
        # Gains grow while the gradient keeps pointing the way we are moving.
        if (grad > float32(0.0)) != (update[i, c] > float32(0.0)):
            gain += float32(0.2)
        else:
            gain *= float32(0.8)
        if gain < float32(0.01):
            gain = float32(0.01)
        gains[i, c] = gain
        update[i, c] = mom * update[i, c] - rate * gain * grad


@cuda.jit
def kl_terms(indptr, indices, values, Y, dof, out):
    """``out[i] = sum_j p_ij (log p_ij - log w_ij)`` over row ``i``, in float64."""
    i = cuda.grid(1)
    if i >= Y.shape[0]:
        return
    acc = float64(0.0)
    for jj in range(indptr[i], indptr[i + 1]):
        p = float64(values[jj])
        if p <= 0.0:
            continue
        j = indices[jj]
        d2 = float64(0.0)
        for c in range(Y.shape[1]):
            diff = float64(Y[i, c]) - float64(Y[j, c])
            d2 += diff * diff
        # log w = -dof log(1 + d2 / dof)
        acc += p * (math.log(p) + dof * math.log1p(d2 / dof))
    out[i] = acc


#: Argument types (as the driver passes them), for ahead-of-time compile checks.
SIGNATURES = {
    "attractive_forces": (int64[:], int32[:], float32[:], float32[:, :], float32[:, :], float64,
                          float32[:, :]),
    "gradient_step": (int64[:], int32[:], float32[:], float32[:, :], float32[:, :], float64,
                      float32[:, :], float64[:], float64, float64, float64, float64,
                      float32[:, :], float32[:, :]),
    "kl_terms": (int64[:], int32[:], float32[:], float32[:, :], float64, float64[:]),
}
