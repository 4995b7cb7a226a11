"""One pass over the points for an interactive view: counts, colour mix, picked point.

The live plot re-aggregates every point on each zoom. Doing that as datashader's
``count_cat`` + ``first`` selector and HoloViews' shade/dynspread costs ~2 s for 10M
points and 50 categories on two cores, mostly in a (height, width, n_categories) grid
that the shading then collapses to one colour per pixel. :func:`view_grid` collapses
it while aggregating instead: per pixel it keeps the point count, the sum of the
points' category colours (the mean of which is datashader's count-weighted colour mix)
or the sum of a value column, and the id of the point nearest the pixel centre (the
point the hover tooltip describes).

Contract (CPU twin :func:`view_grid`; GPU twin :func:`view_grid_gpu`, numba.cuda
kernels in :mod:`.view_raster_cuda`, for coordinates that live on the device):

``view_grid(x, y, x_range, y_range, width, height, codes=None, palette=None,
values=None, pick=True)`` -> :class:`ViewGrid` with ``count`` (uint32, (height, width),
rows bottom-up like datashader), ``rgb_sum`` (float32, (height, width, 3)) when codes
are given, ``value_sum`` (float64) when values are given, ``index`` (int64, -1 where
empty) when ``pick``. Pixels are computed as in :mod:`embedscope.kernels.raster`
(datashader's arithmetic), so counts equal ``bin_points``' counts. Points whose code is
negative or whose value is NaN are not drawn. The GPU twin takes device arrays (cupy;
numpy in numba's CUDA simulator) and returns the same host :class:`ViewGrid`: only the
pixels cross to the host, never the points. :func:`aggregate_view` picks the twin
from the array type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from embedscope._array import array_module, is_cupy, to_host
from embedscope.kernels.raster import _check, float_coords, scale_translate

__all__ = ["SpatialIndex", "ViewGrid", "aggregate_view", "choose_spread", "pick_pixels", "spatial_index",
           "spatial_order", "spread_fill", "view_grid", "view_grid_gpu"]

#: Cells per side of the grid :func:`spatial_order` sorts by: 256 x 256 keys fit uint16,
#: which numpy's stable sort orders by radix, in linear time.
ORDER_CELLS = 256

#: Threads per block of the GPU twin, and at most this many blocks (a grid-stride loop).
GPU_THREADS = 256
GPU_MAX_BLOCKS = 8192

# Private per-thread grids are merged at the end; bound their total size.
_MAX_PRIVATE_BYTES = 256 << 20


@dataclass
class ViewGrid:
    """Per-pixel aggregates of one view (see the module docstring)."""

    count: np.ndarray
    rgb_sum: np.ndarray | None
    value_sum: np.ndarray | None
    index: np.ndarray | None


@numba.njit(cache=True, inline="always")
def _pixel_of(xv, yv, x0, x1, y0, y1, sx, tx, sy, ty, width, height):  # pragma: no cover - numba
    # The view pass and pick_pixels place a point with this one piece of arithmetic, so
    # a pixel's looked-up point is the one the pass would pick. Returns the flat pixel
    # (-1 outside the view: NaN fails every comparison too), its column and row, and
    # the point's position in pixel units.
    if not (x0 <= xv <= x1 and y0 <= yv <= y1):
        return -1, 0, 0, 0.0, 0.0
    fx = xv * sx + tx
    fy = yv * sy + ty
    xi = min(int(fx), width - 1)
    yi = min(int(fy), height - 1)
    return yi * width + xi, xi, yi, fx, fy


@numba.njit(cache=True, inline="always")
def _centre_distance(fx, fy, xi, yi):  # pragma: no cover - numba
    dx = fx - xi - 0.5
    dy = fy - yi - 0.5
    return np.float32(dx * dx + dy * dy)


@numba.njit(cache=True, parallel=True)
def _view_cpu(x, y, span_start, span_cum, codes, palette, values, x0, x1, y0, y1, sx, tx, sy, ty, width, height,
              n_blocks, pick):
    # Two parallel regions only (one pass, one merge). np.zeros / np.full in a parallel
    # function each become a region of their own, with a barrier; on two cores shared
    # with other work a barrier waits for a descheduled thread, and ten of them made
    # the pass ~3x slower than one thread (1M points: 150 vs 45 ms, load average 3).
    # So each thread clears its own grids inside the pass.
    # The points read are the spans' positions: the k-th of them, for k in
    # [span_cum[g], span_cum[g + 1]), is span_start[g] + (k - span_cum[g]); block b reads
    # one slice of k, so blocks stay in position order (the tie rule below).
    n = x.shape[0]
    n_read = span_cum[span_cum.shape[0] - 1]
    n_px = width * height
    use_codes = codes.shape[0] == n
    use_values = values.shape[0] == n
    n_colours = palette.shape[0]
    counts = np.empty((n_blocks, n_px), dtype=np.uint32)
    rgb = np.empty((n_blocks if use_codes else 0, n_px, 3), dtype=np.float32)
    vsum = np.empty((n_blocks if use_values else 0, n_px), dtype=np.float64)
    best = np.empty((n_blocks if pick else 0, n_px), dtype=np.float32)
    index = np.empty((n_blocks if pick else 0, n_px), dtype=np.int64)
    step = (n_read + n_blocks - 1) // n_blocks
    for b in numba.prange(n_blocks):
        for p in range(n_px):
            counts[b, p] = 0
        if use_codes:
            for p in range(n_px):
                rgb[b, p, 0] = 0.0
                rgb[b, p, 1] = 0.0
                rgb[b, p, 2] = 0.0
        if use_values:
            for p in range(n_px):
                vsum[b, p] = 0.0
        if pick:
            for p in range(n_px):
                best[b, p] = np.inf
                index[b, p] = -1
        pos = b * step
        pos_end = min(n_read, (b + 1) * step)
        seg = np.searchsorted(span_cum, pos, side="right") - 1
        while pos < pos_end:
            seg_end = min(pos_end, span_cum[seg + 1])
            first = span_start[seg] + (pos - span_cum[seg])
            for i in range(first, first + (seg_end - pos)):
                p, xi, yi, fx, fy = _pixel_of(x[i], y[i], x0, x1, y0, y1, sx, tx, sy, ty, width, height)
                if p < 0:
                    continue
                c = 0
                if use_codes:
                    c = codes[i]
                    if c < 0 or c >= n_colours:
                        continue
                v = 0.0
                if use_values:
                    v = values[i]
                    if np.isnan(v):
                        continue
                counts[b, p] += 1
                if use_codes:
                    rgb[b, p, 0] += palette[c, 0]
                    rgb[b, p, 1] += palette[c, 1]
                    rgb[b, p, 2] += palette[c, 2]
                if use_values:
                    vsum[b, p] += v
                if pick:
                    d = _centre_distance(fx, fy, xi, yi)
                    if d < best[b, p]:
                        best[b, p] = d
                        index[b, p] = i
            pos = seg_end
            seg += 1
    # Merge the private grids pixel by pixel; on a distance tie the earlier block
    # (lower row ids) keeps the pixel, so the pick does not depend on thread timing.
    out_count = np.empty(n_px, dtype=np.uint32)
    out_rgb = np.empty((n_px if use_codes else 0, 3), dtype=np.float32)
    out_vsum = np.empty(n_px if use_values else 0, dtype=np.float64)
    out_index = np.empty(n_px if pick else 0, dtype=np.int64)
    for p in numba.prange(n_px):
        total = np.uint32(0)
        for b in range(n_blocks):
            total += counts[b, p]
        out_count[p] = total
        if use_codes:
            for k in range(3):
                s = np.float32(0.0)
                for b in range(n_blocks):
                    s += rgb[b, p, k]
                out_rgb[p, k] = s
        if use_values:
            s64 = 0.0
            for b in range(n_blocks):
                s64 += vsum[b, p]
            out_vsum[p] = s64
        if pick:
            out_index[p] = -1
            d_best = np.float32(np.inf)
            for b in range(n_blocks):
                if index[b, p] >= 0 and best[b, p] < d_best:
                    d_best = best[b, p]
                    out_index[p] = index[b, p]
    return out_count, out_rgb, out_vsum, out_index


def view_grid(
    x: np.ndarray,
    y: np.ndarray,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int,
    height: int,
    codes: np.ndarray | None = None,
    palette: np.ndarray | None = None,
    values: np.ndarray | None = None,
    pick: bool = True,
    spans: np.ndarray | None = None,
) -> ViewGrid:
    """Aggregate one view of the points in a single pass.

    Parameters
    ----------
    x, y : ndarray of shape (n,)
        Coordinates (float32 or float64; other types are converted).
    x_range, y_range : (float, float)
        Closed data ranges of the view.
    width, height : int
        Raster size in pixels.
    codes : int ndarray of shape (n,), optional
        Category code per point, indexing ``palette``; negative codes are not drawn.
    palette : ndarray of shape (n_categories, 3), optional
        RGB colour (0-255) per category; needed with ``codes``.
    values : ndarray of shape (n,), optional
        Numbers to sum per pixel (the mean is ``value_sum / count``); NaN is not drawn.
    pick : bool, default=True
        Also return, per pixel, the row id of the point nearest the pixel centre.
    spans : int ndarray of shape (m, 2), optional
        Only the rows ``start <= i < stop`` of these ascending, disjoint ranges are read
        (:meth:`SpatialIndex.spans` gives the ones a view can show in a spatial order);
        default every row. Rows outside the view are dropped either way.

    Returns
    -------
    ViewGrid
    """
    _check(width, height, 1, x_range, y_range)
    x, y = float_coords(x, y)
    codes = None if codes is None else np.asarray(codes)
    n = _check_inputs(x, y, codes, palette, values)
    c = np.empty(0, np.int32) if codes is None else np.ascontiguousarray(codes)
    pal = np.zeros((0, 3), np.float32) if palette is None else np.ascontiguousarray(palette, dtype=np.float32)
    v = np.empty(0, np.float64) if values is None else np.ascontiguousarray(values, dtype=np.float64)
    width, height = int(width), int(height)
    sx, tx = scale_translate(*x_range, width)
    sy, ty = scale_translate(*y_range, height)
    span_start, span_cum = _span_table(spans, n)
    n_read = int(span_cum[-1])
    per_block = width * height * (4 + (12 if codes is not None else 0) + (8 if values is not None else 0)
                                  + (12 if pick else 0))
    n_blocks = int(max(1, min(numba.get_num_threads(), n_read // 65536 + 1, _MAX_PRIVATE_BYTES // per_block)))
    count, rgb, vsum, index = _view_cpu(x, y, span_start, span_cum, c, pal, v, float(x_range[0]), float(x_range[1]), float(y_range[0]),
                                        float(y_range[1]), sx, tx, sy, ty, width, height, n_blocks, bool(pick))
    shape = (height, width)
    return ViewGrid(
        count=count.reshape(shape),
        rgb_sum=rgb.reshape(*shape, 3) if codes is not None else None,
        value_sum=vsum.reshape(shape) if values is not None else None,
        index=index.reshape(shape) if pick else None,
    )


@numba.njit(cache=True)
def _cell_keys(x, y, x0, sx, y0, sy, cells):
    keys = np.empty(x.shape[0], dtype=np.uint16)
    for i in range(x.shape[0]):
        cx = (x[i] - x0) * sx
        cy = (y[i] - y0) * sy
        # NaN fails both comparisons and lands in cell 0; the view pass drops it anyway
        ix = min(max(int(cx), 0), cells - 1) if cx == cx else 0
        iy = min(max(int(cy), 0), cells - 1) if cy == cy else 0
        keys[i] = iy * cells + ix
    return keys


def _span_table(spans: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Starts and cumulative lengths of ``spans`` (every row when None), checked."""
    if spans is None:
        return np.zeros(1, dtype=np.int64), np.array([0, n], dtype=np.int64)
    spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    start, stop = spans[:, 0], spans[:, 1]
    if spans.size and (start.min() < 0 or stop.max() > n or np.any(stop < start) or np.any(start[1:] < stop[:-1])):
        raise ValueError(f"spans must be ascending, disjoint [start, stop) ranges of rows within [0, {n}]")
    return np.ascontiguousarray(start), np.concatenate([[0], np.cumsum(stop - start)]).astype(np.int64)


@dataclass(frozen=True)
class SpatialIndex:
    """Points sorted cell by cell (:func:`spatial_index`), and where each cell's run starts.

    ``order`` is the row order; the points of cell ``k = iy * cells + ix`` sit at
    positions ``starts[k]:starts[k + 1]`` of it. Cell ``(ix, iy)`` covers
    ``floor((x - x0) * sx) == ix`` (clamped to the grid) and the same in y.
    """

    order: np.ndarray
    starts: np.ndarray
    x0: float
    sx: float
    y0: float
    sy: float
    cells: int

    def _cell_range(self, lo: float, hi: float, origin: float, scale: float) -> tuple[int, int]:
        # The same float64 arithmetic as _cell_keys, which is monotone in the coordinate:
        # a point inside [lo, hi] falls in a cell between those of lo and hi.
        a, b = (float(lo) - origin) * scale, (float(hi) - origin) * scale
        last = self.cells - 1
        if not (np.isfinite(a) and np.isfinite(b)):
            return 0, last
        return int(min(max(np.floor(a), 0), last)), int(min(max(np.floor(b), 0), last))

    def spans(self, x_range: tuple[float, float], y_range: tuple[float, float]) -> np.ndarray:
        """Position ranges ``[start, stop)`` that hold every point inside the view (and
        others of its border cells), ascending and disjoint, as ``view_grid(spans=...)`` takes."""
        ix0, ix1 = self._cell_range(*x_range, self.x0, self.sx)
        iy0, iy1 = self._cell_range(*y_range, self.y0, self.sy)
        rows = np.arange(iy0, iy1 + 1, dtype=np.int64) * self.cells
        start, stop = self.starts[rows + ix0], self.starts[rows + ix1 + 1]
        keep = start < stop
        start, stop = start[keep], stop[keep]
        if not start.size:
            return np.zeros((0, 2), dtype=np.int64)
        # rows of cells that meet end to end (a view as wide as the data) read as one run
        breaks = np.flatnonzero(start[1:] != stop[:-1])
        return np.stack([start[np.concatenate([[0], breaks + 1])], stop[np.concatenate([breaks, [start.size - 1]])]],
                        axis=1)


def spatial_index(x: np.ndarray, y: np.ndarray, cells: int = ORDER_CELLS) -> SpatialIndex:
    """:func:`spatial_order` with each cell's start, so a view can skip the cells it does not show.

    A zoom into a tenth of the map then reads about a tenth of the points.
    """
    if not 1 <= cells <= 256:
        raise ValueError(f"cells={cells} must be in [1, 256]")
    x, y = float_coords(x, y)
    n = x.shape[0]
    finite_x, finite_y = x[np.isfinite(x)], y[np.isfinite(y)]
    if not finite_x.size or not finite_y.size:  # nothing drawable: one cell of everything
        starts = np.full(cells * cells + 1, n, dtype=np.int64)
        starts[0] = 0
        return SpatialIndex(np.arange(n, dtype=np.int64), starts, 0.0, 0.0, 0.0, 0.0, cells)
    x0, x1 = float(finite_x.min()), float(finite_x.max())
    y0, y1 = float(finite_y.min()), float(finite_y.max())
    sx = cells / (x1 - x0) if x1 > x0 else 0.0
    sy = cells / (y1 - y0) if y1 > y0 else 0.0
    keys = _cell_keys(x, y, x0, sx, y0, sy, cells)
    order = np.argsort(keys, kind="stable")
    starts = np.zeros(cells * cells + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=cells * cells), out=starts[1:])
    return SpatialIndex(order.astype(np.int32) if n < 2**31 else order, starts, x0, sx, y0, sy, cells)


@numba.njit(cache=True)
def _pick_pixels(x, y, starts, cells, cx0, csx, cy0, csy, codes, n_colours, values, x0, x1, y0, y1, sx, tx, sy,
                 ty, width, height, pixels, out):  # pragma: no cover - numba
    n = x.shape[0]
    use_codes = codes.shape[0] == n
    use_values = values.shape[0] == n
    last = cells - 1
    for q in range(pixels.shape[0]):
        out[q] = -1
        p = pixels[q]
        if p < 0:
            continue
        xi, yi = p % width, p // width
        # The pixel's data rectangle, one cell wider on each side than the cells its
        # edges fall in (the division below need not invert the view's mapping exactly).
        lo_x, hi_x = (xi - tx) / sx, (xi + 1 - tx) / sx
        lo_y, hi_y = (yi - ty) / sy, (yi + 1 - ty) / sy
        ix0 = min(max(int(np.floor((lo_x - cx0) * csx)) - 1, 0), last) if csx > 0 else 0
        ix1 = min(max(int(np.floor((hi_x - cx0) * csx)) + 1, 0), last) if csx > 0 else 0
        iy0 = min(max(int(np.floor((lo_y - cy0) * csy)) - 1, 0), last) if csy > 0 else 0
        iy1 = min(max(int(np.floor((hi_y - cy0) * csy)) + 1, 0), last) if csy > 0 else 0
        if xi == width - 1:
            ix1 = last  # the last column also takes points on the view's right edge
        if yi == height - 1:
            iy1 = last
        best = np.float32(np.inf)
        for iy in range(iy0, iy1 + 1):
            for i in range(starts[iy * cells + ix0], starts[iy * cells + ix1 + 1]):
                # the view pass's own tests and arithmetic, so the same point wins
                at = _pixel_of(x[i], y[i], x0, x1, y0, y1, sx, tx, sy, ty, width, height)
                if at[0] != p:
                    continue
                if use_codes:
                    c = codes[i]
                    if c < 0 or c >= n_colours:
                        continue
                if use_values and np.isnan(values[i]):
                    continue
                d = _centre_distance(at[3], at[4], xi, yi)
                # rows are visited in position order, so a tie keeps the lowest position
                if d < best:
                    best = d
                    out[q] = i


def pick_pixels(
    x: np.ndarray,
    y: np.ndarray,
    index: SpatialIndex,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int,
    height: int,
    pixels: np.ndarray,
    codes: np.ndarray | None = None,
    n_colours: int = 0,
    values: np.ndarray | None = None,
) -> np.ndarray:
    """``view_grid(...).index`` at the given pixels only, reading only the cells around each.

    A hover asks for one pixel of a view: finding its point among the few cells under
    it costs microseconds, where picking every pixel's point in the view pass cost half
    of that pass (10M points: ~35 of ~70 ms). ``x``, ``y`` (and ``codes``, ``values``)
    are in ``index``'s order (``x[index.order]``), as the view pass reads them.

    Parameters
    ----------
    x, y : ndarray of shape (n,)
        Coordinates in the spatial order.
    index : SpatialIndex
    x_range, y_range, width, height
        The view, as given to :func:`view_grid`.
    pixels : int ndarray
        Flat pixel ids ``row * width + column`` (rows bottom-up); negative ids give -1.
    codes, n_colours, values
        As for :func:`view_grid` (``n_colours``: the palette's length).

    Returns
    -------
    int64 ndarray shaped like ``pixels``
        The position (in the spatial order) of the point nearest each pixel's centre,
        the lowest on a tie, as the view pass picks it; -1 where the pixel shows none.
    """
    x, y = float_coords(x, y)
    c = np.empty(0, np.int32) if codes is None else np.ascontiguousarray(codes)
    v = np.empty(0, np.float64) if values is None else np.ascontiguousarray(values, dtype=np.float64)
    pixels = np.asarray(pixels, dtype=np.int64)
    width, height = int(width), int(height)
    sx, tx = scale_translate(*x_range, width)
    sy, ty = scale_translate(*y_range, height)
    out = np.empty(pixels.size, dtype=np.int64)
    _pick_pixels(x, y, index.starts, index.cells, index.x0, index.sx, index.y0, index.sy, c, int(n_colours), v,
                 float(x_range[0]), float(x_range[1]), float(y_range[0]), float(y_range[1]), sx, tx, sy, ty,
                 width, height, pixels.reshape(-1), out)
    return out.reshape(pixels.shape)


def spatial_order(x: np.ndarray, y: np.ndarray, cells: int = ORDER_CELLS) -> np.ndarray:
    """Row order that visits the points cell by cell of a grid over their extent.

    :func:`view_grid` adds each point to its pixel's sums; in row order those writes
    land anywhere in a grid of several MB, a cache miss each. Visited cell by cell, the
    points of one cell write to a few nearby pixels: the pass took half the time on
    1M points (700 x 800 view; ``benchmarks/compare_app.py``). Rows of one cell keep
    their order (a stable sort).

    Parameters
    ----------
    x, y : ndarray of shape (n,)
    cells : int, default=256
        Cells per side, at most 256.

    Returns
    -------
    ndarray of shape (n,), int32 (int64 past 2**31 - 1 points)
        ``x[order]`` is sorted by cell.
    """
    return spatial_index(x, y, cells).order


def _check_inputs(x: Any, y: Any, codes: Any, palette: Any, values: Any) -> int:
    """The twins' shared argument checks; returns the number of points."""
    if codes is not None and palette is None:
        raise ValueError("codes need a palette of RGB colours per category")
    n = len(x)
    if len(y) != n:
        raise ValueError(f"x and y differ in length: {n} and {len(y)}")
    if codes is not None and codes.dtype.kind not in "iu":
        raise ValueError(f"codes must be integers; got {codes.dtype}")
    for name, arr in (("codes", codes), ("values", values)):
        if arr is not None and len(arr) != n:
            raise ValueError(f"{name} has {len(arr)} entries for {n} points")
    return n


def view_grid_gpu(
    x: Any,
    y: Any,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int,
    height: int,
    codes: Any = None,
    palette: Any = None,
    values: Any = None,
    pick: bool = True,
    *,
    threads: int = GPU_THREADS,
) -> ViewGrid:
    """GPU twin of :func:`view_grid`: device points in, the host grid of the view out.

    Parameters are :func:`view_grid`'s; ``x``, ``y``, ``codes`` and ``values`` are
    device arrays (cupy; numpy under ``NUMBA_ENABLE_CUDASIM=1``) and stay there. The
    palette is small and may be either. ``threads`` sets the threads per block.

    Returns
    -------
    ViewGrid
        Host (numpy) arrays, as :func:`view_grid`'s. Counts and picks equal the CPU
        twin's (to one float64 rounding at a pixel edge: the GPU may fuse the
        multiply-add); the colour sums are float32 sums in another order.
    """
    _check(width, height, 1, x_range, y_range)
    n = _check_inputs(x, y, codes, palette, values)
    xp = array_module(x)
    from embedscope.kernels._cuda import cuda

    cuda()  # restores what numba-cuda needs from numpy before it loads
    from embedscope.kernels import view_raster_cuda as kernels

    if x.dtype not in (np.float32, np.float64):
        x = x.astype(xp.float64)
    if y.dtype != x.dtype:
        y = y.astype(x.dtype)
    c = xp.empty(0, xp.int32) if codes is None else xp.ascontiguousarray(codes, dtype=xp.int32)
    pal = xp.zeros((0, 3), xp.float32) if palette is None else xp.asarray(palette, dtype=xp.float32)
    v = xp.empty(0, xp.float64) if values is None else xp.ascontiguousarray(values, dtype=xp.float64)
    width, height = int(width), int(height)
    n_px = width * height
    sx, tx = scale_translate(*x_range, width)
    sy, ty = scale_translate(*y_range, height)
    view = (float(x_range[0]), float(x_range[1]), float(y_range[0]), float(y_range[1]), sx, tx, sy, ty,
            width, height)
    count = xp.zeros(n_px, dtype=xp.uint32)
    rgb = xp.zeros(3 * n_px if codes is not None else 0, dtype=xp.float32)
    vsum = xp.zeros(n_px if values is not None else 0, dtype=xp.float64)
    best = xp.full(n_px if pick else 0, np.inf, dtype=xp.float32)
    blocks = max(1, min(GPU_MAX_BLOCKS, -(-n // threads)))
    kernels.aggregate[blocks, threads](x, y, c, pal, v, *view, int(bool(pick)), count, rgb, vsum, best)
    index = None
    if pick:
        none = np.iinfo(np.int64).max
        rows = xp.full(n_px, none, dtype=xp.int64)
        kernels.pick[blocks, threads](x, y, c, int(pal.shape[0]), v, *view, best, rows)
        index = to_host(xp.where(rows == none, -1, rows)).reshape(height, width)
    shape = (height, width)
    return ViewGrid(
        count=to_host(count).reshape(shape),
        rgb_sum=to_host(rgb).reshape(*shape, 3) if codes is not None else None,
        value_sum=to_host(vsum).reshape(shape) if values is not None else None,
        index=index,
    )


def aggregate_view(x: Any, y: Any, *args: Any, **kwargs: Any) -> ViewGrid:
    """:func:`view_grid_gpu` for cupy coordinates, else :func:`view_grid` (same arguments)."""
    if is_cupy(x):
        return view_grid_gpu(x, y, *args, **kwargs)
    return view_grid(x, y, *args, **kwargs)


@numba.njit(cache=True)
def _share_with_neighbours(filled, radius):
    # Datashader's dynspread heuristic: the share of non-empty pixels with at least one
    # non-empty pixel within `radius` (a square), written for a boolean mask.
    rows, cols = filled.shape
    n_filled = 0
    n_close = 0
    for i in range(rows):
        for j in range(cols):
            if not filled[i, j]:
                continue
            n_filled += 1
            found = False
            for a in range(max(0, i - radius), min(rows, i + radius + 1)):
                for b in range(max(0, j - radius), min(cols, j + radius + 1)):
                    if filled[a, b] and (a != i or b != j):
                        found = True
                        break
                if found:
                    break
            if found:
                n_close += 1
    return n_close / n_filled if n_filled else np.inf


def choose_spread(filled: np.ndarray, threshold: float = 0.5, max_px: int = 3) -> int:
    """How many pixels to spread each point by, as datashader's ``dynspread`` decides.

    Grows the radius from 1 until more than ``threshold`` of the non-empty pixels would
    touch another one; returns the last radius below that (0: the view is dense).
    """
    chosen = 0
    for px in range(1, int(max_px) + 1):
        if _share_with_neighbours(np.ascontiguousarray(filled), 2 * px) > threshold:
            break
        chosen = px
    return chosen


@numba.njit(cache=True, parallel=True)
def _spread_fill(image, index, px):
    rows, cols = image.shape
    out_image = image.copy()
    use_index = index.shape[0] == rows
    out_index = index.copy()
    # datashader's circle: offsets with sqrt(d2) <= px + 0.5, i.e. d2 <= px * px + px
    reach = px * px + px
    for i in numba.prange(rows):
        for j in range(cols):
            if image[i, j] >> 24:
                continue
            best = reach + 1
            for a in range(max(0, i - px), min(rows, i + px + 1)):
                for b in range(max(0, j - px), min(cols, j + px + 1)):
                    d = (a - i) * (a - i) + (b - j) * (b - j)
                    if d < best and image[a, b] >> 24:
                        best = d
                        out_image[i, j] = image[a, b]
                        if use_index:
                            out_index[i, j] = index[a, b]
    return out_image, out_index


def spread_fill(image: np.ndarray, index: np.ndarray | None, px: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Spread each drawn pixel over a disc of radius ``px``; the nearest one wins.

    Parameters
    ----------
    image : uint32 ndarray of shape (height, width)
        Packed RGBA (datashader's ``Image`` data); alpha 0 is empty.
    index : int64 ndarray of shape (height, width), optional
        Row id per pixel; spread with the colour, so a pixel coloured by a spread point
        also reports that point on hover.
    px : int
        Radius in pixels (0 returns the inputs).

    Returns
    -------
    (image, index)
        Spread copies. Unlike datashader's ``spread``, overlapping discs do not
        composite: each empty pixel takes the nearest drawn pixel's colour, so a lone
        point keeps its own opacity. Compiled once and cached on disk, where
        ``datashader.transfer_functions.spread`` compiles for ~2.6 s in every process.
    """
    if px <= 0:
        return image, index
    image = np.ascontiguousarray(image, dtype=np.uint32)
    idx = np.empty((0, 0), np.int64) if index is None else np.ascontiguousarray(index, dtype=np.int64)
    out_image, out_index = _spread_fill(image, idx, int(px))
    return out_image, (out_index if index is not None else None)
