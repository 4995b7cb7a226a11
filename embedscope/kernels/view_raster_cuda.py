"""numba.cuda kernels of the live view's GPU twin. Import through :mod:`.view_raster` only.

:func:`aggregate` is the CPU twin's ``_view_cpu`` with one thread per point (a
grid-stride loop) and atomics into one shared grid instead of private grids merged
after: the count (uint32), the category colour sums (float32, 3 per pixel), the value
sums (float64) and the least distance to the pixel centre (float32). :func:`pick`
then takes, per pixel, the lowest row id among the points at that least distance:
the CPU twin's choice (its blocks keep the first point of a tie, and the merge keeps
the earlier block), so the hover shows the same point whatever order the threads run.
"""

from __future__ import annotations

import math

from numba import cuda, float32, float64, int32, int64, uint32


@cuda.jit(device=True, inline=True)
def _pixel(xv, yv, x0, x1, y0, y1, sx, tx, sy, ty, width, height):
    """(pixel, fx, fy, xi, yi) of a point, pixel -1 outside the view (or NaN).

    float64 as the CPU twin (datashader's arithmetic): the same edges, so the same counts.
    """
    xd = float64(xv)
    yd = float64(yv)
    if not (x0 <= xd <= x1 and y0 <= yd <= y1):
        return int64(-1), 0.0, 0.0, int64(0), int64(0)
    fx = xd * sx + tx
    fy = yd * sy + ty
    xi = min(int64(fx), width - 1)
    yi = min(int64(fy), height - 1)
    return yi * width + xi, fx, fy, xi, yi


@cuda.jit
def aggregate(x, y, codes, palette, values, x0, x1, y0, y1, sx, tx, sy, ty, width, height, pick,
              count, rgb, vsum, best):
    """Counts, colour and value sums and the least centre distance per pixel (atomics)."""
    n = x.shape[0]
    use_codes = codes.shape[0] == n
    use_values = values.shape[0] == n
    n_colours = palette.shape[0]
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        p, fx, fy, xi, yi = _pixel(x[i], y[i], x0, x1, y0, y1, sx, tx, sy, ty, width, height)
        if p < 0:
            continue
        c = int64(0)
        if use_codes:
            c = int64(codes[i])
            if c < 0 or c >= n_colours:
                continue
        v = 0.0
        if use_values:
            v = float64(values[i])
            if math.isnan(v):
                continue
        cuda.atomic.add(count, p, uint32(1))
        if use_codes:
            cuda.atomic.add(rgb, 3 * p, palette[c, 0])
            cuda.atomic.add(rgb, 3 * p + 1, palette[c, 1])
            cuda.atomic.add(rgb, 3 * p + 2, palette[c, 2])
        if use_values:
            cuda.atomic.add(vsum, p, v)
        if pick:
            dx = fx - xi - 0.5
            dy = fy - yi - 0.5
            d = float32(dx * dx + dy * dy)
            # Read first: once a pixel holds a close point, most others skip the atomic.
            if d < best[p]:
                cuda.atomic.min(best, p, d)


@cuda.jit
def pick(x, y, codes, n_colours, values, x0, x1, y0, y1, sx, tx, sy, ty, width, height, best, index):
    """Per pixel, the lowest row id of the points at the least distance ``best``."""
    n = x.shape[0]
    use_codes = codes.shape[0] == n
    use_values = values.shape[0] == n
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        p, fx, fy, xi, yi = _pixel(x[i], y[i], x0, x1, y0, y1, sx, tx, sy, ty, width, height)
        if p < 0:
            continue
        if use_codes and not (0 <= codes[i] < n_colours):
            continue
        if use_values and math.isnan(float64(values[i])):
            continue
        dx = fx - xi - 0.5
        dy = fy - yi - 0.5
        if float32(dx * dx + dy * dy) == best[p] and i < index[p]:
            cuda.atomic.min(index, p, int64(i))


_COMMON = (float64, float64, float64, float64, float64, float64, float64, float64, int64, int64)


def _signatures(xy, code, value):
    agg = (xy[:], xy[:], code[:], float32[:, :], value[:], *_COMMON, int64,
           uint32[:], float32[:], float64[:], float32[:])
    chosen = (xy[:], xy[:], code[:], int64, value[:], *_COMMON, float32[:], int64[:])
    return agg, chosen


#: Argument types (as the driver passes them), for ahead-of-time compile checks: float32
#: coordinates (the app's for all but float64 input; float64 ones type the same code).
_AGGREGATE, _PICK = _signatures(float32, int32, float64)
SIGNATURES = {"aggregate": _AGGREGATE, "pick": _PICK}
