"""Row ids of the points inside a box or a lasso polygon (the full data, not the raster)."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["MAX_POLYGON_VERTICES", "rows_in_box", "rows_in_polygon"]

#: Most lasso vertices: the test walks every edge for each point in the polygon's box,
#: and the polygon comes from the browser.
MAX_POLYGON_VERTICES = 10_000


def rows_in_box(x: np.ndarray, y: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Sorted row ids with ``x0 <= x <= x1`` and ``y0 <= y <= y1`` (corners in any order)."""
    lo_x, hi_x = sorted((float(x0), float(x1)))
    lo_y, hi_y = sorted((float(y0), float(y1)))
    return np.flatnonzero((x >= lo_x) & (x <= hi_x) & (y >= lo_y) & (y <= hi_y)).astype(np.int64)


@numba.njit(cache=True, parallel=True)
def _inside(x, y, px, py, lo_x, hi_x, lo_y, hi_y):
    n = x.shape[0]
    m = px.shape[0]
    out = np.zeros(n, dtype=np.bool_)
    for i in numba.prange(n):
        xi = x[i]
        yi = y[i]
        if xi < lo_x or xi > hi_x or yi < lo_y or yi > hi_y:
            continue  # outside the bounding box: skip the edge walk
        inside = False
        j = m - 1
        for k in range(m):
            # even-odd rule: count edges crossed by a ray to the right of the point
            if (py[k] > yi) != (py[j] > yi):
                cross = px[k] + (yi - py[k]) * (px[j] - px[k]) / (py[j] - py[k])
                if xi < cross:
                    inside = not inside
            j = k
        out[i] = inside
    return out


def rows_in_polygon(x: np.ndarray, y: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Sorted row ids of points inside ``polygon`` (even-odd rule).

    Parameters
    ----------
    x, y : array of shape (n,)
    polygon : array of shape (m, 2)
        Vertices in order; the last connects back to the first. ``3 <= m <= MAX_POLYGON_VERTICES``.

    Returns
    -------
    ndarray of int64
    """
    poly = np.asarray(polygon, dtype=np.float64)
    if poly.ndim != 2 or poly.shape[1] != 2 or poly.shape[0] < 3:
        raise ValueError(f"polygon must have shape (m >= 3, 2); got {poly.shape}")
    if poly.shape[0] > MAX_POLYGON_VERTICES:
        raise ValueError(f"polygon has {poly.shape[0]:,} vertices, over the bound of {MAX_POLYGON_VERTICES:,}")
    if not np.isfinite(poly).all():
        raise ValueError("polygon vertices must be finite")
    px, py = np.ascontiguousarray(poly[:, 0]), np.ascontiguousarray(poly[:, 1])
    mask = _inside(np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(y, dtype=np.float64),
                   px, py, px.min(), px.max(), py.min(), py.max())
    return np.flatnonzero(mask).astype(np.int64)
