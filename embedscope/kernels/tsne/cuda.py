"""numba.cuda kernels of the t-SNE GPU twin. Import through :mod:`.gpu` only.

Each kernel is the body of its CPU twin with one thread per row of the sparse P:
:func:`attractive_forces` and :func:`gradient_step` are their namesakes in
:mod:`embedscope.kernels.tsne.gradient` (the step fuses attraction with the momentum
and gains update), :func:`kl_terms` is ``kernels.tsne.exact._kl_terms``. A row reads the
positions of its neighbours and writes only its own outputs, so the rows need no
synchronisation and the order the threads run in does not matter.

Positions, forces, updates and gains are float32 on the device (the CPU twin keeps
float64); the KL report is accumulated in float64.

The grid repulsion's two point passes are kernels too, one thread per point:
:func:`spread` adds each point's charge onto the ``p^d`` nodes of its box (float32
atomics into a float32 grid), :func:`gather` interpolates the node potentials back.
Both compute the Lagrange weights of ``kernels.tsne.fft._lagrange`` on the fly, in
registers: no (n, p^d) index and weight arrays are written, where the array version
stored and re-read ~100 bytes a point per pass.
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


@cuda.jit(device=True, inline=True)
def _lagrange(u, k, p):
    """Weight of node ``k`` of ``p`` (nodes at (j + 0.5) / p) at box coordinate ``u``."""
    xk = (float32(k) + float32(0.5)) / float32(p)
    w = float32(1.0)
    for j in range(p):
        if j != k:
            xj = (float32(j) + float32(0.5)) / float32(p)
            w *= (u - xj) / (xk - xj)
    return w


@cuda.jit(device=True, inline=True)
def _locate(coord, lo, inv_width, n_boxes):
    """(box, coordinate in the box) of ``coord``, as ``fft._locate``.

    A point beyond the grid is taken to its edge (as the CPU twin does): Lagrange
    weights extrapolated far out grow as u^(p-1) and would wreck the sums. The
    division runs in float64: a float32 ``rel`` of a point 300 boxes out would carry
    ~2e-5 of rounding into its weights, more than the FFT's own error.
    """
    rel = (float64(coord) - lo) * inv_width
    rel = min(max(rel, 0.0), float64(n_boxes))
    b = int32(math.floor(rel))
    if b >= n_boxes:
        b = int32(n_boxes - 1)
    return b, float32(rel - b)


@cuda.jit(device=True, inline=True)
def _outside(coord, lo, inv_width, n_boxes):
    rel = (float64(coord) - lo) * inv_width
    return not (0.0 <= rel <= n_boxes)


@cuda.jit
def spread(points, lo0, lo1, lo2, inv_width, n_boxes, p, grid, outside):
    """Charge 1 per point onto the nodes of its box: ``grid`` (flat, m^d nodes, m = n_boxes p).

    ``outside[0]`` counts points beyond the grid (the driver lays the grid out from
    bounds it reads only now and then; a count above 0 tells it to read them sooner).
    Such points are clamped into the edge box, as the CPU twin does.
    """
    i = cuda.grid(1)
    if i >= points.shape[0]:
        return
    three = points.shape[1] == 3
    m = n_boxes * p
    bx, ux = _locate(points[i, 0], lo0, inv_width, n_boxes)
    by, uy = _locate(points[i, 1], lo1, inv_width, n_boxes)
    bz, uz = _locate(points[i, 2], lo2, inv_width, n_boxes) if three else (int32(0), float32(0.5))
    off = (_outside(points[i, 0], lo0, inv_width, n_boxes) or _outside(points[i, 1], lo1, inv_width, n_boxes)
           or (three and _outside(points[i, 2], lo2, inv_width, n_boxes)))
    if off:
        cuda.atomic.add(outside, 0, 1)
    pz = p if three else 1
    for a in range(p):
        wa = _lagrange(ux, a, p)
        row = (bx * p + a) * m
        for b in range(p):
            wab = wa * _lagrange(uy, b, p)
            cell = row + by * p + b
            for e in range(pz):
                if three:
                    cuda.atomic.add(grid, cell * m + bz * p + e, wab * _lagrange(uz, e, p))
                else:
                    cuda.atomic.add(grid, cell, wab)


@cuda.jit
def gather(points, lo0, lo1, lo2, inv_width, n_boxes, p, potentials, out):
    """``out[i, c] = sum over the nodes of i's box of weight * potentials[c, node]``."""
    i = cuda.grid(1)
    if i >= points.shape[0]:
        return
    three = points.shape[1] == 3
    m = n_boxes * p
    bx, ux = _locate(points[i, 0], lo0, inv_width, n_boxes)
    by, uy = _locate(points[i, 1], lo1, inv_width, n_boxes)
    bz, uz = _locate(points[i, 2], lo2, inv_width, n_boxes) if three else (int32(0), float32(0.5))
    pz = p if three else 1
    for c in range(potentials.shape[0]):
        acc = float32(0.0)
        for a in range(p):
            wa = _lagrange(ux, a, p)
            row = (bx * p + a) * m
            for b in range(p):
                wab = wa * _lagrange(uy, b, p)
                cell = row + by * p + b
                if three:
                    for e in range(pz):
                        acc += wab * _lagrange(uz, e, p) * potentials[c, cell * m + bz * p + e]
                else:
                    acc += wab * potentials[c, cell]
        out[i, c] = acc


#: Argument types (as the driver passes them), for ahead-of-time compile checks.
SIGNATURES = {
    "attractive_forces": (int64[:], int32[:], float32[:], float32[:, :], float32[:, :], float64,
                          float32[:, :]),
    "gradient_step": (int64[:], int32[:], float32[:], float32[:, :], float32[:, :], float64,
                      float32[:, :], float64[:], float64, float64, float64, float64,
                      float32[:, :], float32[:, :]),
    "kl_terms": (int64[:], int32[:], float32[:], float32[:, :], float64, float64[:]),
    "spread": (float32[:, :], float64, float64, float64, float64, int64, int64, float32[:], int32[:]),
    "gather": (float32[:, :], float64, float64, float64, float64, int64, int64, float32[:, :],
               float32[:, :]),
}
