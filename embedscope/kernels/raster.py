"""Point rasterisation: count points (optionally per category, or sum a value) per pixel.

Two twins with one contract:

``bin_points(x, y, x_range, y_range, width, height, categories=None, n_categories=1,
weights=None)`` returns a ``(n_categories, height, width)`` float64 (weights given) or
int64 grid. A point lands in pixel ``(int(x * sx + tx), int(y * sy + ty))`` with
``sx = width / (x1 - x0)`` and ``tx = -x0 * sx`` -- datashader's own arithmetic, in
float64 -- so both twins produce exactly the aggregate datashader's ``Canvas.points``
produces. Points outside the closed ranges are dropped; points on the upper edge fall
into the last pixel (datashader's rule).

* CPU twin: numba, ``parallel=True`` over row blocks with one private grid per block
  (no atomics), then a sum. Reference for the parity test; ``viz.raster`` itself uses
  datashader on the CPU.
* GPU twin: the same pixel index computed with CuPy element-wise arithmetic and one
  ``cupy.bincount`` over ``category * (height * width) + pixel``.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from embedscope._array import is_cupy

__all__ = ["bin_points", "bin_points_cpu", "bin_points_gpu", "scale_translate"]


def scale_translate(lo: float, hi: float, n: int) -> tuple[float, float]:
    """Datashader's linear map from data to pixel space: ``pixel = s * value + t``."""
    s = n / (float(hi) - float(lo))
    return s, -float(lo) * s


@numba.njit(cache=True, parallel=True)
def _bin_cpu(x, y, cats, weights, x0, x1, y0, y1, sx, tx, sy, ty, width, height, n_cat, n_blocks):
    n = x.shape[0]
    partial = np.zeros((n_blocks, n_cat * height * width), dtype=np.float64)
    step = (n + n_blocks - 1) // n_blocks
    use_cats = cats.shape[0] == n
    use_weights = weights.shape[0] == n
    for b in numba.prange(n_blocks):
        grid = partial[b]
        for i in range(b * step, min(n, (b + 1) * step)):
            xv = x[i]
            yv = y[i]
            if not (x0 <= xv <= x1 and y0 <= yv <= y1):
                continue  # NaN fails every comparison, so it is dropped too
            xi = int(xv * sx + tx)
            yi = int(yv * sy + ty)
            xi = width - 1 if xi >= width else xi
            yi = height - 1 if yi >= height else yi
            c = 0
            if use_cats:
                c = cats[i]
                if c < 0 or c >= n_cat:
                    continue
            grid[(c * height + yi) * width + xi] += weights[i] if use_weights else 1.0
    out = np.zeros(n_cat * height * width, dtype=np.float64)
    for b in range(n_blocks):
        out += partial[b]
    return out


def _check(width: int, height: int, n_categories: int, x_range: Any, y_range: Any) -> None:
    if int(width) < 1 or int(height) < 1:
        raise ValueError(f"width and height must be >= 1; got {width} x {height}")
    if int(n_categories) < 1:
        raise ValueError(f"n_categories must be >= 1; got {n_categories}")
    for name, (lo, hi) in (("x_range", x_range), ("y_range", y_range)):
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ValueError(f"{name} must be finite with low < high; got ({lo}, {hi})")


def float_coords(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous x and y of one float type (float32 kept; anything else float64)."""
    x = np.ascontiguousarray(x)
    y = np.ascontiguousarray(y)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if y.dtype != x.dtype:
        y = y.astype(x.dtype)
    return x, y


def bin_points_cpu(
    x: np.ndarray,
    y: np.ndarray,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int,
    height: int,
    categories: np.ndarray | None = None,
    n_categories: int = 1,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """CPU twin of :func:`bin_points` (numba)."""
    _check(width, height, n_categories, x_range, y_range)
    x, y = float_coords(x, y)
    cats = np.empty(0, np.int64) if categories is None else np.ascontiguousarray(categories, dtype=np.int64)
    w = np.empty(0, np.float64) if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
    sx, tx = scale_translate(*x_range, width)
    sy, ty = scale_translate(*y_range, height)
    # Private grids cost n_blocks * grid bytes; bound that to ~64 MiB.
    grid_bytes = 8 * n_categories * height * width
    n_blocks = int(max(1, min(numba.get_num_threads(), len(x) // 65536 + 1, (64 << 20) // max(grid_bytes, 1))))
    flat = _bin_cpu(x, y, cats, w, float(x_range[0]), float(x_range[1]), float(y_range[0]),
                    float(y_range[1]), sx, tx, sy, ty, int(width), int(height), int(n_categories), n_blocks)
    grid = flat.reshape(int(n_categories), int(height), int(width))
    return grid if weights is not None else grid.astype(np.int64)


def bin_points_gpu(
    x: Any,
    y: Any,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int,
    height: int,
    categories: Any = None,
    n_categories: int = 1,
    weights: Any = None,
) -> Any:
    """GPU twin of :func:`bin_points` (CuPy arrays in, a CuPy grid out)."""
    import cupy as cp

    _check(width, height, n_categories, x_range, y_range)
    sx, tx = scale_translate(*x_range, width)
    sy, ty = scale_translate(*y_range, height)
    x64 = x.astype(cp.float64, copy=False)
    y64 = y.astype(cp.float64, copy=False)
    keep = (x64 >= x_range[0]) & (x64 <= x_range[1]) & (y64 >= y_range[0]) & (y64 <= y_range[1])
    # Truncation toward zero equals int() in the CPU twin: kept points map to >= 0.
    xi = cp.minimum((x64 * sx + tx).astype(cp.int64), width - 1)
    yi = cp.minimum((y64 * sy + ty).astype(cp.int64), height - 1)
    index = yi * width + xi
    if categories is not None:
        cats = categories.astype(cp.int64, copy=False)
        keep &= (cats >= 0) & (cats < n_categories)
        index += cats * (height * width)
    size = int(n_categories) * int(height) * int(width)
    w = None if weights is None else weights.astype(cp.float64, copy=False)[keep]
    flat = cp.bincount(index[keep], weights=w, minlength=size)
    grid = flat.reshape(int(n_categories), int(height), int(width))
    return grid if weights is not None else grid.astype(cp.int64)


def bin_points(
    x: Any,
    y: Any,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int,
    height: int,
    categories: Any = None,
    n_categories: int = 1,
    weights: Any = None,
) -> Any:
    """Count points per pixel (per category), or sum ``weights`` per pixel.

    Parameters
    ----------
    x, y : array of shape (n,)
        Point coordinates, numpy or cupy (the twin is picked from the array type).
    x_range, y_range : (float, float)
        Closed data ranges covered by the grid.
    width, height : int
        Grid size in pixels.
    categories : int array of shape (n,), optional
        Category code per point in ``[0, n_categories)``; other codes are dropped.
    n_categories : int, default=1
    weights : array of shape (n,), optional
        Sum these per pixel instead of counting.

    Returns
    -------
    array of shape (n_categories, height, width)
        int64 counts, or float64 sums when ``weights`` is given; same array type as ``x``.
    """
    if is_cupy(x):
        return bin_points_gpu(x, y, x_range, y_range, width, height, categories, n_categories, weights)
    return bin_points_cpu(x, y, x_range, y_range, width, height, categories, n_categories, weights)
