"""Kernel splitting for the grid repulsion: a smooth far part on the grid, the rest summed near.

A grid whose nodes are coarser than the kernel's unit scale cannot interpolate its peak
(3-D on the CPU: ~50-100 nodes over a layout 50-100 units wide; the force error was
25-65% on a grown 20k layout). So the kernel ``f(s) = (1 + s / dof) ** -dof`` of the
squared distance ``s`` is split at a radius ``rc`` (particle-particle / particle-mesh,
as in molecular dynamics):

- far: ``f`` itself beyond ``rc``; inside, its Taylor polynomial of degree
  :data:`ORDER` in ``s`` about ``rc^2``. That is a polynomial in ``r^2`` (smooth
  through 0) that joins ``f`` with ``ORDER`` continuous derivatives, so it varies on
  the scale ``rc`` and the grid interpolates it when ``rc`` spans a few nodes;
- near: ``f - far``, zero beyond ``rc``, summed exactly over the pairs closer than
  ``rc`` (a cell list of cells ``rc`` wide; 27 cells per point).

The vector kernel follows from the scalar one: ``w^(1+1/dof) δ = -f'(s) δ``, so the
far vector kernel is ``-far'(s) δ`` and the split is exact for forces and ``Z`` alike.
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: Degree in ``s`` of the far kernel inside ``rc`` (its forces join with ORDER - 1
#: continuous derivatives; the grid's cubic interpolation needs three).
ORDER = 4


def split_coefficients(dof: float, rc: float) -> np.ndarray:
    """Taylor coefficients ``a_j = f^(j)(rc^2) / j!``, j = 0..ORDER, of the kernel about ``rc^2``."""
    sc = rc * rc
    coeffs = np.empty(ORDER + 1)
    factor = 1.0
    for j in range(ORDER + 1):
        coeffs[j] = factor * (1.0 + sc / dof) ** (-dof - j) / math.factorial(j)
        factor *= -(dof + j) / dof
    return coeffs


def far_kernels(d2: np.ndarray, dof: float, rc: float) -> tuple[np.ndarray, np.ndarray]:
    """``(far(s), -far'(s))`` at squared distances ``d2``: the scalar kernel and the factor on δ.

    ``rc = 0`` is no split: ``(f(s), -f'(s))``.
    """
    base = 1.0 + d2 / dof
    value, slope = base ** -dof, base ** (-dof - 1.0)
    if rc <= 0.0:
        return value, slope
    coeffs = split_coefficients(dof, rc)
    t = d2 - rc * rc
    inner = d2 < rc * rc
    poly = np.zeros_like(d2)
    dpoly = np.zeros_like(d2)
    for j in range(ORDER, -1, -1):  # Horner, value and derivative together
        dpoly = dpoly * t + poly
        poly = poly * t + coeffs[j]
    return np.where(inner, poly, value), np.where(inner, -dpoly, slope)


@numba.njit(cache=True)
def bucket_order(keys, n_bins):  # pragma: no cover - numba
    """Counting sort of rows by ``keys`` in ``[0, n_bins)``: (rows in key order, first index of each key).

    Rows of one key keep their order, so the result is the same on every run.
    """
    first = np.zeros(n_bins + 1, dtype=np.int64)
    for i in range(keys.shape[0]):
        first[keys[i] + 1] += 1
    for b in range(n_bins):
        first[b + 1] += first[b]
    fill = first[:-1].copy()
    order = np.empty(keys.shape[0], dtype=np.int64)
    for i in range(keys.shape[0]):
        order[fill[keys[i]]] = i
        fill[keys[i]] += 1
    return order, first


@numba.njit(cache=True)
def _cells(points, lo, rc, n_cells):  # pragma: no cover - numba
    """Counting sort of ``points`` by cell: (order, first index of each cell)."""
    n, d = points.shape
    cell = np.empty(n, dtype=np.int64)
    for i in range(n):
        key = 0
        for c in range(d):
            q = int((points[i, c] - lo[c]) / rc)
            key = key * n_cells + min(max(q, 0), n_cells - 1)
        cell[i] = key
    return bucket_order(cell, n_cells ** d)


@numba.njit(parallel=True, cache=True, fastmath=True)
def _near_3d(targets, sources, self_join, lo, cell, n_cells, order, first, coeffs, rc, dof,
             rep, z_rows):  # pragma: no cover - numba
    """Adds the near part over source pairs closer than ``rc`` to ``rep`` and ``z_rows``."""
    sc = rc * rc
    for i in numba.prange(targets.shape[0]):
        t0, t1, t2 = targets[i, 0], targets[i, 1], targets[i, 2]
        q0 = min(max(int((t0 - lo[0]) / cell), 0), n_cells - 1)
        q1 = min(max(int((t1 - lo[1]) / cell), 0), n_cells - 1)
        q2 = min(max(int((t2 - lo[2]) / cell), 0), n_cells - 1)
        r0 = r1 = r2 = z = 0.0
        for a in range(max(q0 - 1, 0), min(q0 + 2, n_cells)):
            for b in range(max(q1 - 1, 0), min(q1 + 2, n_cells)):
                for e in range(max(q2 - 1, 0), min(q2 + 2, n_cells)):
                    key = (a * n_cells + b) * n_cells + e
                    for k in range(first[key], first[key + 1]):
                        j = order[k]
                        if self_join and j == i:
                            continue
                        d0 = t0 - sources[j, 0]
                        d1 = t1 - sources[j, 1]
                        d2_ = t2 - sources[j, 2]
                        s = d0 * d0 + d1 * d1 + d2_ * d2_
                        if s >= sc:
                            continue
                        base = 1.0 + s / dof
                        # pow is exp(log) per pair: most of the cost when dof == 1
                        w = 1.0 / base if dof == 1.0 else base ** -dof
                        t = s - sc
                        poly = 0.0
                        dpoly = 0.0
                        for m in range(coeffs.shape[0] - 1, -1, -1):
                            dpoly = dpoly * t + poly
                            poly = poly * t + coeffs[m]
                        z += w - poly
                        # near vector factor: -f'(s) - (-far'(s)) = w / base + far'(s)
                        g = w / base + dpoly
                        r0 += g * d0
                        r1 += g * d1
                        r2 += g * d2_
        rep[i, 0] += r0
        rep[i, 1] += r1
        rep[i, 2] += r2
        z_rows[i] += z


def add_near_field(sources: np.ndarray, targets: np.ndarray | None, dof: float, rc: float,
                   rep: np.ndarray, z_rows: np.ndarray) -> None:
    """Add the near part of the split kernel (pairs closer than ``rc``) to ``rep`` and ``z_rows``.

    3-D only. ``targets=None`` is a self-join (``i == j`` skipped). ``rep`` (m, 3)
    float64 and ``z_rows`` (m,) float64 are updated in place.
    """
    self_join = targets is None
    T = sources if self_join else targets
    lo = sources.min(axis=0)
    width = float((sources.max(axis=0) - lo).max())
    # Cells at least rc wide, and at most ~2M of them (memory): a target sees every
    # source within rc in its own and the 26 adjacent cells.
    n_cells = max(1, min(int(width / rc) + 1, 128))
    cell = max(rc, width / n_cells * (1 + 1e-9))
    order, first = _cells(sources, lo, cell, n_cells)
    _near_3d(T, sources, self_join, lo, cell, n_cells, order, first, split_coefficients(dof, rc),
             float(rc), float(dof), rep, z_rows)
