"""Interactive HoloViews plots of millions of points.

The plot is a HoloViews ``DynamicMap`` over the view's x/y range, so a live session
(Bokeh server, Panel, Jupyter) re-aggregates every point at full resolution whenever
the view changes. Each render is one pass of
:func:`embedscope.kernels.view_raster.view_grid` (counts, category colour mix or value
mean, and per pixel the row id of the point nearest its centre), shaded by datashader
(``eq_hist`` by default) and spread by ``dynspread``'s rule. The row ids and their
metadata ride along in the image, so HoloViews' server-side hover shows the real
point's metadata without sending the points to the browser.

This replaces HoloViews' own ``rasterize -> dynspread -> shade`` chain with a
``count_cat`` aggregate and a ``first`` selector, which took ~2 s per zoom on 10M points
in 50 categories on two cores (``benchmarks/viz.py``): most of it filling and collapsing
a (height, width, categories) grid.

Selections (box, lasso, or ids given in code) are row ids of the full data; selected
points are drawn on top in a highlight colour and the rest is muted, not hidden.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np
import pandas as pd

from embedscope._array import array_module, is_cupy
from embedscope.viz._colours import hex_rgb
from embedscope.viz._input import coordinates_of, note_dropped_z, plot_frame, with_color
from embedscope.viz.select import MAX_POLYGON_VERTICES, rows_in_box, rows_in_polygon

__all__ = ["EmbeddingPlot", "plot"]

HIGHLIGHT = "#e4002b"
MIN_ALPHA = 100  # a lone point must stay visible against white
MAX_HOVER_COLUMNS = 6
MAX_HOVER_COLUMNS_GIVEN = 32
#: Per hover column and view; past it, names are gathered as objects (8 bytes a pixel).
MAX_HOVER_BYTES = 64 << 20



# Server-side hover (HoloViews): the browser sends the cursor's position, the server
# answers with the metadata of the pixel there, and the tooltip shows what the server last
# answered. Bokeh renders the tooltip when the mouse moves, before that answer arrives,
# so it showed the point under the *previous* position (once one 176 px away), and fields
# "undefined" before any answer. The filter below shows the tooltip only when the answer
# is for the very pixel under the cursor (its pixel centre is the one the server read),
# and the callback redraws the tooltip when an answer arrives. Both read BokehJS internals
# (3.9: the image glyph view's _lrtb and image_width/height, HoverToolView's
# _current_sxy, ttmodels and _update); where those are missing, the filter falls back to
# HoloViews' own test (a point was found) and the redraw waits for the next mouse move.
_FRESH_HOVER_FILTER = """
export default ({hover_model}, _tool, {vars}) => {
  const d = hover_model.data
  if (d == null || d.__index__ == null || d.__index__ < 0) return false
  const ii = vars.image_index, g = vars.glyph_view
  if (ii == null || g == null || typeof g._lrtb !== "function" || g.image_width == null) return true
  const [l, r, t, b] = g._lrtb(ii.index)
  const nx = g.image_width[ii.index], ny = g.image_height[ii.index]
  const px = (r - l) / nx, py = (t - b) / ny
  const cx = l + (ii.i + 0.5) * px, cy = b + (ii.j + 0.5) * py
  return Math.abs(cx - d.x) <= 0.25 * Math.abs(px) && Math.abs(cy - d.y) <= 0.25 * Math.abs(py)
}
"""
_REDRAW_HOVER = """
export default ({hover}) => {
  // after the tooltip's fields (rendered asynchronously) have taken the new answer
  setTimeout(() => {
    const view = Bokeh.index.find_one(hover)
    if (view == null || view._current_sxy == null || view.ttmodels == null || view._update == null) return
    const [sx, sy] = view._current_sxy
    for (const [renderer, tooltip] of view.ttmodels) {
      if (renderer.get_selection_manager().inspectors.get(renderer) != null)
        view._update(renderer, {type: "point", sx, sy}, tooltip)
    }
  }, 0)
}
"""


def _fresh_hover(plot: Any, element: Any) -> None:
    """HoloViews hook: the hover tooltip shows the point under the cursor or nothing."""
    from bokeh.models import CustomJS

    hover = plot.handles.get("hover")
    callback = getattr(hover, "callback", None)
    model = getattr(callback, "args", {}).get("position") if callback is not None else None
    if model is None or "embedscope_fresh" in hover.tags:
        return  # no server hover on this plot, or already set up
    hover.tags = [*hover.tags, "embedscope_fresh"]
    hover.filters = {"": CustomJS(args={"hover_model": model}, code=_FRESH_HOVER_FILTER)}
    model.js_on_change("data", CustomJS(args={"hover": hover}, code=_REDRAW_HOVER))


def _label_background(plot: Any, element: Any) -> None:
    """HoloViews hook: region names on a light box, readable over dark and light points."""
    glyph = plot.handles.get("glyph")
    if glyph is not None and hasattr(glyph, "background_fill_color"):
        glyph.background_fill_color = "white"
        glyph.background_fill_alpha = 0.7


#: Milliseconds Bokeh waits after the last zoom or pan step before it reports the new
#: ranges (its ``lod_timeout``, 500 by default): the re-render could not start sooner.
RANGES_DELAY_MS = 50
#: Pixels left of the plot's frame kept for the y axis (see EmbeddingPlot._build).
Y_AXIS_ROOM = 80
_LOD = {"factor": 10, "interval": 300, "threshold": 2000, "timeout": RANGES_DELAY_MS}


# After a wheel step, end Bokeh's interactive (LOD) phase at once: that sends the new
# ranges (its finalize) before the browser paints the rescaled old frame (~30-50 ms
# in a software-rendered 1500 x 1100 window), not RANGES_DELAY_MS after that paint.
# A microtask runs once the wheel tool, which starts the phase after changing the
# ranges, has returned, and before any paint.
_RANGES_NOW = """
queueMicrotask(() => { const doc = fig.document; if (doc != null) doc.interactive_stop() })
"""


def _prompt_ranges(plot: Any, element: Any) -> None:
    """HoloViews hook: the re-render starts as soon as the browser reports the new ranges.

    HoloViews' range callback waits until no range event came for its ``debounce``
    (100 ms, polled every 50 ms: 100 to 150 ms) before it renders. The browser reports
    a zoom's ranges once, ``RANGES_DELAY_MS`` after its last step (Bokeh's lod_timeout),
    so that wait only delayed every zoom and pan. ``debounce`` is read from the callback
    instance, so this plot's callbacks alone change; 0, not None, which still sleeps
    10 ms before each render.

    A wheel step reports its ranges at once (``_RANGES_NOW``): wheel to ranges sent fell
    from ~55-60 ms to ~2 ms (benchmarks/viz_latency.py, 1500 x 1100 window). Steps that
    come while the server renders are merged by HoloViews' queue (the newest ranges win),
    so a fast spin renders at most one stale view before the last.
    """
    from bokeh.events import MouseWheel
    from bokeh.models import CustomJS
    from holoviews.plotting.bokeh.callbacks import RangeXYCallback

    for callback in getattr(plot, "callbacks", ()):
        if isinstance(callback, RangeXYCallback):
            callback.debounce = 0
    fig = plot.state
    if "embedscope_prompt_ranges" not in fig.tags:
        fig.tags = [*fig.tags, "embedscope_prompt_ranges"]
        fig.js_on_event(MouseWheel, CustomJS(args={"fig": fig}, code=_RANGES_NOW))


def _hv() -> Any:
    try:
        import holoviews as hv
        from holoviews.operation import datashader  # noqa: F401
    except ImportError:
        raise ImportError("embedscope.viz needs HoloViews and Bokeh: pip install holoviews bokeh datashader colorcet") from None
    if not hv.Store.current_backend or "bokeh" not in hv.Store.renderers:
        hv.extension("bokeh", logo=False)
    if _VIEW_IMAGE[0] is None:
        _VIEW_IMAGE[0] = _register_view_image(hv)
    return hv


#: The element type of a rendered view, registered with its Bokeh plot on first use.
_VIEW_IMAGE: list[Any] = [None]
#: Set while ``render`` constructs its ViewImage (per thread: sessions render concurrently).
_RENDERING = threading.local()


def _register_view_image(hv: Any) -> Any:
    """``ViewImage``: an ``hv.RGB`` that carries its packed RGBA image to Bokeh as it is.

    HoloViews' RGB plot rebuilds the image Bokeh sends from the element's four bands on
    every frame: four band copies, a stack, a NaN mask, min and max over the pixels,
    ~8 ms per 700 x 800 view (20 ms on a loaded machine). The view was a packed uint32
    image before it was split into bands for the hover's dataset, so its plot sends that
    (the same array: a test compares it with HoloViews' own result). An element without
    it (a clone HoloViews made) takes HoloViews' way.
    """
    from holoviews.plotting.bokeh.raster import RGBPlot

    class ViewImage(hv.RGB):
        _packed: np.ndarray | None = None

        def _validate(self, data_bounds: Any, supplied_bounds: Any) -> None:
            # render lays the pixel centres out evenly inside the bounds it passes; the
            # check of that (regular sampling, bounds against the centres) cost ~5-15 ms
            if not getattr(_RENDERING, "on", False):  # any other construction (a clone) is checked
                super()._validate(data_bounds, supplied_bounds)

    class ViewImagePlot(RGBPlot):
        def get_data(self, element: Any, ranges: Any, style: Any) -> Any:
            packed = getattr(element, "_packed", None)
            if packed is None or self.static_source or self.invert_axes or packed.shape != element.interface.shape(
                    element, gridded=True)[:2]:
                return super().get_data(element, ranges, style)
            if "alpha" in style:
                style["global_alpha"] = style["alpha"]
            left, bottom, right, top = element.bounds.lbrt()
            data = {"image": [packed], "x": [left], "y": [bottom], "dw": [right - left], "dh": [top - bottom]}
            return data, {"image": "image", "x": "x", "y": "y", "dw": "dw", "dh": "dh"}, style

    hv.Store.register({ViewImage: ViewImagePlot}, "bokeh")
    return ViewImage


def device_coordinates(data: Any) -> tuple[Any, Any] | None:
    """Contiguous device ``(x, y)`` of cupy coordinates (as ``plot_frame`` types them), else None."""
    coords = coordinates_of(data)[0]
    if not is_cupy(coords) or getattr(coords, "ndim", 0) != 2:
        return None
    xp = array_module(coords)
    dtype = xp.float64 if coords.dtype == xp.float64 else xp.float32
    return xp.ascontiguousarray(coords[:, 0], dtype=dtype), xp.ascontiguousarray(coords[:, 1], dtype=dtype)


class _SortedPoints:
    """A frame's points in :func:`~embedscope.kernels.view_raster.spatial_index` order, for the CPU pass.

    One per frame, shared by every plot of it (the app's sessions and colours): the
    order, where each cell's points start (a view reads only the cells it shows), x and
    y, and each colour column's codes or values once they are asked for.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        from embedscope.kernels.view_raster import spatial_index

        self.index = spatial_index(x, y)
        self.order = self.index.order
        self.x, self.y = x[self.order], y[self.order]
        self._columns: dict[Any, np.ndarray] = {}
        self._lock = threading.Lock()

    def column(self, key: Any, values: np.ndarray) -> np.ndarray:
        """``values`` (one per row) in the points' order, kept under ``key``."""
        with self._lock:
            if key not in self._columns:
                self._columns[key] = values[self.order]
            return self._columns[key]

    def rows(self, index: np.ndarray) -> np.ndarray:
        """Row ids of the frame for positions in the order (-1 stays -1)."""
        return np.where(index >= 0, self.order[np.maximum(index, 0)], -1)


# By id (a DataFrame is not hashable), dropped with the frame.
_SORTED: dict[int, tuple[Any, _SortedPoints]] = {}
_SORTED_LOCK = threading.Lock()


def sorted_points(frame: pd.DataFrame) -> _SortedPoints:
    """The shared :class:`_SortedPoints` of ``frame`` (``x``, ``y`` columns), made on first use."""
    with _SORTED_LOCK:
        ref, points = _SORTED.get(id(frame), (None, None))
        if ref is None or ref() is not frame or points is None:
            points = _SortedPoints(frame["x"].to_numpy(), frame["y"].to_numpy())
            _SORTED[id(frame)] = (weakref.ref(frame), points)
            weakref.finalize(frame, _SORTED.pop, id(frame), None)
        return points


def _bands() -> list[Any]:
    """R, G, B, A value dimensions with their range declared: HoloViews then does not scan
    each band of every frame for its minimum and maximum (four passes over the pixels)."""
    hv = _hv()
    return [hv.Dimension(band, range=(0, 255)) for band in "RGBA"]


def _shade_row(values: np.ndarray, **options: Any) -> np.ndarray:
    """``datashader.transfer_functions.shade`` of 1-D pixel values: packed RGBA (uint32) per value."""
    import datashader.transfer_functions as tf
    import xarray as xr

    image = tf.shade(xr.DataArray(values.reshape(1, -1), dims=("y", "x")), **options)
    return np.asarray(image.data, dtype=np.uint32).reshape(-1)


#: A read of more than this many pixels of the row ids (``.values``, an export) runs the
#: view pass's own pick over every pixel rather than one lookup per pixel.
_PICK_ALL_ABOVE = 4096


class _PixelRows:
    """Row id of the point each pixel of a view shows (-1: none), worked out for the pixels read.

    The hover reads one pixel per cursor move; picking every pixel's point in the view
    pass cost half of that pass (10M points: ~35 of ~70 ms a zoom), for pixels nobody
    hovers. ``lookup(pixels)`` finds the rows of a few flat pixel ids (bottom-up rows,
    as the view pass); ``everything()`` gives the whole (height, width) grid, once.
    """

    def __init__(self, shape: tuple[int, int], lookup: Any = None, everything: Any = None,
                 rows: np.ndarray | None = None) -> None:
        self.shape = shape
        self._lookup, self._everything, self._rows = lookup, everything, rows
        self._lock = threading.Lock()

    def all(self) -> np.ndarray:
        """Every pixel's row id."""
        with self._lock:
            if self._rows is None:
                self._rows = self._everything()
            return self._rows

    def __getitem__(self, key: Any) -> np.ndarray:
        if self._rows is not None or self._lookup is None:
            return self.all()[key]
        height, width = self.shape
        if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, (int, np.integer)) for k in key):
            # one pixel (a hover): its flat id, rows bottom-up as the view pass counts them
            row, col = int(key[0]), int(key[1])
            if not (-height <= row < height and -width <= col < width):
                raise IndexError(f"pixel {key} is outside a {height} x {width} view")
            pixels = np.asarray((row % height) * width + col % width, dtype=np.int64)
        else:
            pixels = np.arange(height * width, dtype=np.int64).reshape(self.shape)[key]
        if pixels.size > _PICK_ALL_ABOVE:
            return self.all()[key]
        return self._lookup(pixels)


def _pixel_column(plot: EmbeddingPlot, column: str | None, index: _PixelRows) -> Any:
    """Hover column ``column`` of a view as a lazy xarray variable: read per pixel on demand.

    ``column=None`` gives the row ids themselves (the ``__index__`` band).

    HoloViews' server hover reads one pixel per cursor move (``Dataset.sel``), but a
    gather of every column for every pixel on each render cost ~10 ms a column on 560k
    pixels (25 ms on a loaded machine), most of it for values nobody hovers. xarray's
    lazy indexing (as its file backends do) runs the gather only for what is read: one
    pixel for a hover, every pixel for ``.values``.
    """
    import xarray as xr
    from xarray.backends import BackendArray
    from xarray.core import indexing

    class PixelColumn(BackendArray):
        def __init__(self) -> None:
            self.shape = index.shape
            self.dtype = np.dtype(np.int64) if column is None else \
                np.asarray(plot._hover_values(column, np.array([-1]))).dtype

        def __getitem__(self, key: Any) -> Any:
            return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.BASIC, self._read)

        def _read(self, key: Any) -> np.ndarray:
            rows = index[key]
            return np.asarray(rows) if column is None else np.asarray(plot._hover_values(column, rows))

    return xr.Variable(("y", "x"), indexing.LazilyIndexedArray(PixelColumn()))


class EmbeddingPlot:
    """A zoomable, hoverable, selectable plot of 2-D coordinates.

    Parameters
    ----------
    data : array of shape (n, 2 or 3), DataFrame with ``x`` / ``y``, or fitted reducer
        The points. A cupy array also stays on the GPU: each view is re-aggregated
        there (:func:`embedscope.kernels.view_raster.view_grid_gpu`) and only the
        pixels come back; the host copy serves hover, selections and the frame.
    meta : DataFrame or array of shape (n,), optional
        Per-point metadata, shown in hover tooltips and usable as ``color``.
    color : str, optional
        Column to colour by: categories (glasbey colours, legend) or numbers (mean per
        pixel, colour bar-less ``bmy`` map). None: point density. Past
        ``MAX_CATEGORIES`` categories, the most frequent keep their colour and the rest
        are drawn grey as ``"other"`` (logged); hover still shows each point's own value.
    width, height : int, default=800, 600
        Plot size in screen pixels; the raster follows it. Bounded as in
        :func:`embedscope.viz.aggregate.check_raster_size`.
    how : str, default="eq_hist"
        Datashader colour normalisation.
    cmap : list of str, optional
        Colour map for density or values.
    span : (float, float), optional
        Values mapped to the two ends of ``cmap`` (with ``how="linear"``) in every view,
        so a colour means the same value after a zoom; default: each view's own range.
    hover_columns : list of str, optional
        Metadata columns in the tooltip (default: the first six; at most 32).
    spread : int, default=3
        ``dynspread`` maximum radius (at most ``MAX_SPREAD``), so sparse points stay
        visible when zoomed in.
    title : str, optional
    responsive : bool, default=False
        Fill the space the plot is given and follow it when the window is resized (the
        raster follows the plot's size on screen, within the bounds of
        :func:`~embedscope.viz.aggregate.check_raster_size`); ``width`` and ``height``
        are then the size of the first render.
    x_range, y_range : (float, float), optional
        The view to open on (e.g. the view of a previous plot of the same points); the
        data's extent when None.
    labels : embedscope.viz.labels.LabelSet, optional
        Region names drawn over the map, the level of the zoom in view
        (:meth:`~embedscope.viz.labels.LabelSet.for_view`): one per cluster that fits
        at full view, more zoomed in. :meth:`show_labels` switches them on and off.
    show_labels : bool, default=True
        Whether ``labels`` are drawn at first.
    legend : bool, default=True
        For categories, a Bokeh legend on the plot's right. An app that lists the
        colours itself (``embedscope serve``) turns it off.
    hover : bool, default=True
        Server-side hover with the metadata of the point nearest each pixel centre.
        It costs a distance test per point and a gather of the hover columns per
        render (~0.1 of the ~0.15 s per zoom on 10M points; ``benchmarks/viz.py``).

    Attributes
    ----------
    frame : pandas.DataFrame
        ``x``, ``y`` and the metadata columns; row ``i`` is point ``i``.
    view : holoviews.DynamicMap
        An overlay that re-renders on zoom and selection. The plot: display it, ``hv.save`` it or put it in a Panel layout.
    selected : ndarray of int64
        Row ids of the current selection (empty when nothing is selected).
    note : str or None
        What was grouped into ``"other"`` when the colour column has too many categories.
    extent : ((float, float), (float, float))
        The data's x and y ranges: the view before any zoom.
    """

    def __init__(
        self,
        data: Any,
        meta: Any = None,
        color: str | None = None,
        *,
        width: int = 800,
        height: int = 600,
        how: str = "eq_hist",
        cmap: Any = None,
        span: Any = None,
        hover_columns: list[str] | None = None,
        spread: int = 3,
        title: str | None = None,
        hover: bool = True,
        responsive: bool = False,
        x_range: Any = None,
        y_range: Any = None,
        labels: Any = None,
        show_labels: bool = True,
        legend: bool = True,
        _prepared: bool = False,
        _device_xy: tuple[Any, Any] | None = None,
    ) -> None:
        from embedscope.viz.aggregate import check_raster_size, check_spread

        # Bounds before the frame is copied or anything is allocated.
        width, height = check_raster_size(width, height)
        spread = check_spread(spread)
        # _prepared: the app hands over a frame already checked by plot_frame, so each
        # browser session shares it instead of copying millions of rows.
        if not _prepared:
            note_dropped_z(data)
        frame = data if _prepared else plot_frame(data, meta)
        self._points_frame = frame  # the key of the points' shared spatial order
        # _device_xy: the app's coordinates on the GPU, shared by its sessions as the frame is.
        self._device_xy = _device_xy if _prepared else device_coordinates(data)
        self.frame, self.color_kind = with_color(frame, color)
        self.color = color
        self.width, self.height, self.how, self.cmap, self.spread = int(width), int(height), how, cmap, int(spread)
        self.title = title or ""
        self.span = None if span is None else (float(span[0]), float(span[1]))
        self.hover = bool(hover)
        self.responsive = bool(responsive)
        self.labels = labels
        self._show_labels = bool(show_labels)
        self.legend = bool(legend)
        self._initial_view = (None if x_range is None else tuple(map(float, x_range)),
                              None if y_range is None else tuple(map(float, y_range)))
        meta_cols = [c for c in self.frame.columns if c not in ("x", "y")]
        if hover_columns is None:
            hover_columns = meta_cols[:MAX_HOVER_COLUMNS]
        unknown = [c for c in hover_columns if c not in meta_cols]
        if unknown:
            raise ValueError(f"hover_columns {unknown} are not metadata columns; known: {meta_cols}")
        if len(hover_columns) > MAX_HOVER_COLUMNS_GIVEN:
            # each is gathered per pixel on every render
            raise ValueError(f"{len(hover_columns)} hover_columns is over the bound of {MAX_HOVER_COLUMNS_GIVEN}")
        self.hover_columns = list(hover_columns)
        self.selected = np.empty(0, dtype=np.int64)
        self._selection_xy: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._listeners: list[Any] = []
        self._build()

    # ------------------------------------------------------------------ building
    def _prepare_colour(self) -> None:
        """The colour arrays the renderer reads on every view, extracted once per colour."""
        from embedscope.viz.aggregate import limit_categorical

        self._codes = self._palette = self._values = None
        self._category_colors: dict[str, str] = {}
        self.note: str | None = None
        if self.color_kind == "category":
            # Only the colours are grouped; the frame keeps every value for hover and
            # selections. The view's cost per category is one palette entry, but a
            # legend of thousands of entries, in 256 cycling colours, shows nothing.
            grouped, plan = limit_categorical(self.frame[self.color], self.color)
            self._codes = np.asarray(grouped.codes)
            self._category_colors = plan.colors()
            self.note = plan.note
            self._palette = np.array([hex_rgb(c) for c in self._category_colors.values()], dtype=np.float32)
        elif self.color_kind == "value":
            self._values = self.frame[self.color].to_numpy(dtype=np.float64)
        self._device_columns: tuple[Any, Any] = (None, None)
        self._sorted: tuple[Any, ...] | None = None
        if self._device_xy is None:
            # The CPU pass reads the points in spatial order (shared by the frame's plots).
            points = sorted_points(self._points_frame)
            self._sorted = (points, points.x, points.y,
                            None if self._codes is None else points.column(("codes", self.color), self._codes),
                            None if self._values is None else points.column(("values", self.color), self._values))
        if self._device_xy is not None:
            # Once per colour choice, not per view: the codes or values join x and y there.
            xp = array_module(self._device_xy[0])
            self._device_columns = (None if self._codes is None else xp.asarray(self._codes, dtype=xp.int32),
                                    None if self._values is None else xp.asarray(self._values))

    def _build(self) -> None:
        from embedscope.viz.aggregate import data_range

        hv = _hv()

        # the coordinates and their extent, once: a new colour (set_color) keeps them
        self._x = self.frame["x"].to_numpy()
        self._y = self.frame["y"].to_numpy()
        self.extent = (data_range(self._x), data_range(self._y))
        self._prepare_colour()
        Muted = hv.streams.Stream.define("Muted", muted=False)
        self._muted = Muted()
        x0, y0 = self._initial_view
        self.range = hv.streams.RangeXY(x_range=x0, y_range=y0)
        # the plot's size on screen: the raster has one pixel per screen pixel
        self.size = hv.streams.PlotSize()
        self._last_render: tuple[Any, Any] | None = None
        tools = ["hover", "box_select", "lasso_select", "tap"] if self.hover else ["box_select", "lasso_select", "tap"]
        size = {"responsive": True} if self.responsive else {"width": self.width, "height": self.height}
        # a new colour column re-renders the same plot (set_color): no new figure to send
        Colour = hv.streams.Stream.define("Colour", colour_version=0)
        self._colour = Colour()
        self.base = hv.DynamicMap(self._base_image, streams=[self.range, self.size, self._muted, self._colour]).opts(
            tools=tools, active_tools=["wheel_zoom"], hooks=[_fresh_hover, _prompt_ranges], lod=_LOD,
            title=self.title, xlabel="x", ylabel="y", **size)
        Chosen = hv.streams.Stream.define("Chosen", version=0)
        self._chosen = Chosen()
        # tools=[] once here, not on each frame: HoloViews' options cost ~5 ms a call
        self.highlight = hv.DynamicMap(self._highlight_image, streams=[self.range, self.size, self._chosen]
                                       ).opts(tools=[])
        layers = [self.base, self.highlight]
        if self.labels is not None:
            Shown = hv.streams.Stream.define("LabelsShown", show=True)
            self._labels_shown = Shown(show=self._show_labels)
            self.label_layer = hv.DynamicMap(self._label_items, streams=[self.range, self._labels_shown])
            layers.append(self.label_layer)
        if self._category_colors and self.legend:
            layers.append(self._legend())
        # Room for the y axis's widest tick labels: otherwise a zoom that changes them
        # ("-10" -> "-12.5") moves the frame's left edge, HoloViews' PlotSize stream fires,
        # and the server renders the whole view a second time (10M points: half the
        # zooms). Set on the overlay, whose plot owns the figure: an element's hook ran
        # before the overlay set its own borders, so a new plot (a recolour) first
        # showed HoloViews' 10 px, then 80, and rendered twice more.
        self.view = hv.Overlay(layers).collate().opts(
            lod=_LOD, backend_opts={"plot.min_border_left": Y_AXIS_ROOM, "plot.output_backend": "canvas"}, **size)
        self.bounds = hv.streams.BoundsXY(source=self.base)
        self.lasso = hv.streams.Lasso(source=self.base)
        self.bounds.add_subscriber(self._on_bounds)
        self.lasso.add_subscriber(self._on_lasso)

    def _legend(self) -> Any:
        """One point per category, at NaN so nothing is drawn, giving the colour legend."""
        hv = _hv()

        rows = [(np.nan, np.nan, str(cat)) for cat in self._category_colors]
        cmap = {str(cat): colour for cat, colour in self._category_colors.items()}
        return hv.Points(rows, kdims=["x", "y"], vdims=[self.color]).opts(
            color=self.color, cmap=cmap, show_legend=True, legend_position="right", size=8, tools=[])

    def _label_items(self, x_range: Any = None, y_range: Any = None, show: bool = True, **_: Any) -> Any:
        """The region names of the view's zoom level inside the view (none when switched off)."""
        hv = _hv()
        x_range = tuple(x_range) if x_range is not None else self.extent[0]
        y_range = tuple(y_range) if y_range is not None else self.extent[1]
        found = self.labels.for_view(x_range, y_range) if show and self.labels is not None else []
        rows = [(lab.x, lab.y, lab.text) for lab in found]
        return hv.Labels(rows, kdims=["x", "y"], vdims=["text"]).opts(
            text_color="black", text_font_size="13px", tools=[], hooks=[_label_background])

    def show_labels(self, show: bool = True) -> None:
        """Draw the region labels (``labels``) or hide them; the view is kept."""
        self._show_labels = bool(show)
        if self.labels is not None:
            self._labels_shown.event(show=self._show_labels)

    def set_color(self, color: str | None, *, how: str = "eq_hist", cmap: Any = None, span: Any = None) -> None:
        """Colour by another metadata column (None: point density) in place.

        The view, the selection and the plot stay; only the image is rendered again,
        so a server sends one new image rather than a new figure (the browser took
        ~0.2 s to build one at 10M points). ``how``, ``cmap`` and ``span`` as for the
        constructor (its defaults when not given).

        Raises
        ------
        DataError
            ``color`` is not a column, or holds inf.
        ValueError
            The plot draws its own legend (``legend=True``) and a category column is
            involved: its legend is a layer of its own; build a new plot instead.
        """
        frame, kind = with_color(self._points_frame, color)
        if self.legend and (kind == "category" or self._category_colors):
            raise ValueError("this plot draws its legend as a layer; build a new EmbeddingPlot for another "
                             "category colour (or pass legend=False)")
        self.frame, self.color_kind, self.color = frame, kind, color
        self.how, self.cmap = how, cmap
        self.span = None if span is None else (float(span[0]), float(span[1]))
        self._prepare_colour()
        self._last_render = None
        self._colour.event(colour_version=self._colour.colour_version + 1)

    # ------------------------------------------------------------------ rendering
    def _raster_size(self, width: Any, height: Any) -> tuple[int, int]:
        """The raster for a plot of ``width`` x ``height`` screen pixels (None: not yet known)."""
        from embedscope.viz.aggregate import check_raster_size

        if not width or not height:
            return self.width, self.height
        try:
            return check_raster_size(width, height)
        except ValueError:  # the browser's size is past a bound: the size given at start
            return self.width, self.height

    def _base_image(self, x_range: Any = None, y_range: Any = None, muted: bool = False,
                    width: Any = None, height: Any = None, colour_version: int = 0, **_: Any) -> Any:
        """The view, aggregated and shaded; muted (faded) while a selection is shown."""
        size = self._raster_size(width, height)
        key = (None if x_range is None else tuple(x_range), None if y_range is None else tuple(y_range), size,
               colour_version)
        if self._last_render is None or self._last_render[0] != key:
            # A selection change re-asks for the same view: reuse it, only the fade differs.
            # alpha is set in place once (a later frame without it would keep the faded
            # glyph's alpha); only a faded view is a clone: ~20 ms of HoloViews per copy.
            self._last_render = (key, self.render(key[0], key[1], size=size).opts(alpha=1.0))
        if not muted:
            return self._last_render[1]
        faded = self._last_render[1].opts(alpha=0.25, clone=True)
        faded._packed = self._last_render[1]._packed
        return faded

    def render(self, x_range: Any = None, y_range: Any = None, size: tuple[int, int] | None = None) -> Any:
        """One view as an ``hv.RGB``: every point in range aggregated, shaded and spread.

        One pass of :func:`embedscope.kernels.view_raster.view_grid` gives per pixel the
        count, the colour mix or value sum, and the point nearest the pixel centre;
        datashader shades it, and sparse pixels are spread (``dynspread``'s rule for the radius). With
        ``hover``, the image carries that point's row id and metadata for HoloViews'
        server-side hover.

        Parameters
        ----------
        x_range, y_range : (float, float), optional
            The view; the data's extent when None.
        size : (int, int), optional
            Raster width and height in pixels; default ``(width, height)``.

        Returns
        -------
        holoviews.RGB
        """
        _hv()  # loads HoloViews and registers ViewImage
        import xarray as xr

        from embedscope.kernels.view_raster import aggregate_view, choose_spread, spread_fill

        x_range = tuple(map(float, x_range)) if x_range is not None else self.extent[0]
        y_range = tuple(map(float, y_range)) if y_range is not None else self.extent[1]
        if not (x_range[1] > x_range[0] and y_range[1] > y_range[0]):
            x_range, y_range = self.extent
        width, height = size or (self.width, self.height)
        options: dict[str, Any] = {}
        if self._device_xy is not None:  # the GPU twin; only the pixels cross to the host
            (x, y), (codes, values) = self._device_xy, self._device_columns
        else:
            assert self._sorted is not None
            points, x, y, codes, values = self._sorted
            # only the cells the view shows are read: a zoom to a tenth reads ~a tenth
            options["spans"] = points.index.spans(x_range, y_range)
        # On the CPU the hover's point is looked up for the pixels read (_PixelRows), not
        # picked for every pixel in the pass; the GPU twin picks them all at little cost.
        eager_pick = self.hover and self._device_xy is not None
        grid = aggregate_view(x, y, x_range, y_range, width, height, codes=codes, palette=self._palette,
                              values=values, pick=eager_pick, **options)
        xs = x_range[0] + (np.arange(width) + 0.5) * ((x_range[1] - x_range[0]) / width)
        ys = y_range[0] + (np.arange(height) + 0.5) * ((y_range[1] - y_range[0]) / height)
        coords = {"x": xs, "y": ys}
        # Only the pixels that show a point are shaded (a zoom shows ~10% of them filled):
        # datashader's normalisations (eq_hist's histogram, linear's span) read only the
        # unmasked pixels, so shading those alone, as one row, gives the same colours,
        # and the empty rest stays transparent. Shading every pixel cost 20-60 ms per view
        # of 700 x 800 (90-200 ms on a loaded machine).
        filled = np.flatnonzero(grid.count.reshape(-1))
        packed = np.zeros(height * width, dtype=np.uint32)
        if filled.size:
            count = grid.count.reshape(-1)[filled]
            if grid.rgb_sum is not None:
                # count-weighted mix of the category colours; opacity from the counts
                alpha = _shade_row(count, cmap="black", how=self.how, min_alpha=MIN_ALPHA) >> 24
                mix = (grid.rgb_sum.reshape(-1, 3)[filled] / count[:, None]).astype(np.uint32)
                packed[filled] = mix[:, 0] | (mix[:, 1] << 8) | (mix[:, 2] << 16) | (alpha << 24)
            elif grid.value_sum is not None:
                mean = grid.value_sum.reshape(-1)[filled] / count
                packed[filled] = _shade_row(mean, cmap=self._shade_cmap(), how=self.how, min_alpha=MIN_ALPHA,
                                            span=self.span)
            else:
                packed[filled] = _shade_row(count, cmap=self._shade_cmap(), how=self.how, min_alpha=MIN_ALPHA)
        img = packed.reshape(height, width)
        px = choose_spread(grid.count > 0, threshold=0.5, max_px=self.spread) if self.spread else 0
        bands: dict[str, Any] = {}
        if not self.hover:
            packed, _ = spread_fill(img, None, px)
        elif eager_pick:
            packed, index = spread_fill(img, grid.index, px)
            rows = _PixelRows((height, width), rows=index)
        else:
            # which drawn pixel each pixel shows (itself, or the one a spread copied)
            drawn = np.where(grid.count.reshape(-1) > 0, np.arange(height * width, dtype=np.int64), -1)
            packed, source = spread_fill(img, drawn.reshape(height, width), px)
            assert source is not None
            rows = self._lazy_rows(points, x, y, codes, values, x_range, y_range, width, height,
                                   source.reshape(-1), options["spans"])
        packed = np.ascontiguousarray(packed, dtype=np.uint32)  # the bands below are views of it
        rgba = packed.view(np.uint8).reshape(height, width, 4)
        bands.update({band: (("y", "x"), rgba[..., i]) for i, band in enumerate("RGBA")})
        if self.hover:
            bands["__index__"] = _pixel_column(self, None, rows)
            bands.update((column, _pixel_column(self, column, rows)) for column in self.hover_columns)
        # one Dataset of every variable: each one added later was a merge of its own (~2 ms)
        data = xr.Dataset(bands, coords=coords)
        if self.hover:
            data.attrs["selector_columns"] = ["__index__", *self.hover_columns]
            data.attrs["selector"] = "point nearest the pixel centre"
        bounds = (x_range[0], y_range[0], x_range[1], y_range[1])
        _RENDERING.on = True
        try:
            image = _VIEW_IMAGE[0](data, kdims=["x", "y"], vdims=_bands(), bounds=bounds)
        finally:
            _RENDERING.on = False
        image._packed = packed.reshape(height, width)
        return image

    def _lazy_rows(self, points: _SortedPoints, x: np.ndarray, y: np.ndarray, codes: Any, values: Any,
                   x_range: Any, y_range: Any, width: int, height: int, source: np.ndarray,
                   spans: np.ndarray) -> _PixelRows:
        """The row ids of a CPU view's pixels, looked up as they are read (see _PixelRows)."""
        from embedscope.kernels.view_raster import pick_pixels, view_grid

        n_colours = 0 if self._palette is None else len(self._palette)

        def lookup(pixels: np.ndarray) -> np.ndarray:
            at = pick_pixels(x, y, points.index, x_range, y_range, width, height, source[pixels.reshape(-1)],
                             codes=codes, n_colours=n_colours, values=values)
            return points.rows(at).astype(np.int64, copy=False).reshape(pixels.shape)

        def everything() -> np.ndarray:
            grid = view_grid(x, y, x_range, y_range, width, height, codes=codes, palette=self._palette,
                             values=values, spans=spans)
            assert grid.index is not None
            picked = grid.index.reshape(-1)
            rows = points.rows(np.where(source >= 0, picked[np.maximum(source, 0)], -1))
            return rows.astype(np.int64, copy=False).reshape(height, width)

        return _PixelRows((height, width), lookup=lookup, everything=everything)

    def _shade_cmap(self) -> Any:
        import colorcet as cc

        return self.cmap or (cc.bmy if self.color_kind == "value" else cc.blues[110:])

    def _hover_values(self, column: str, index: np.ndarray) -> np.ndarray:
        """``column`` of each pixel's point; "-" / NaN where a pixel shows none."""
        series = self.frame[column]
        index = np.asarray(index)
        if index.ndim == 0:  # one pixel (a hover): a gather with a 0-d index gives a scalar
            return self._hover_values(column, index.reshape(1))[0]
        empty = index < 0
        rows = np.where(empty, 0, index)
        if isinstance(series.dtype, pd.CategoricalDtype):
            # a fixed-width str array: xarray converts object arrays item by item (~40 ms);
            # but its width is the longest name's, per pixel, so long names stay objects
            labels = [*map(str, series.cat.categories), "-"]
            wide = 4 * max(map(len, labels)) * max(index.size, len(labels)) > MAX_HOVER_BYTES
            names = np.array(labels, dtype=object if wide else None)
            codes = series.cat.codes.to_numpy()[rows].astype(np.int64)
            codes[empty | (codes < 0)] = len(names) - 1
            return names[codes]
        values = series.to_numpy()
        kind = values.dtype.kind
        if kind == "M":
            out = values[rows].astype("datetime64[ns]")
            out[empty] = np.datetime64("NaT", "ns")
        elif kind in "fiub":
            out = values[rows].astype(np.float64)
            out[empty] = np.nan
        else:
            out = np.asarray(values, dtype=object)[rows]
            out[empty] = "-"
        return out

    def _highlight_image(self, x_range: Any = None, y_range: Any = None, version: int = 0,
                         width: Any = None, height: Any = None, **_: Any) -> Any:
        """The selected points, shaded in the highlight colour over the current view."""
        from embedscope.kernels.view_raster import choose_spread, spread_fill, view_grid

        hv = _hv()
        x_range = tuple(x_range) if x_range is not None else self.extent[0]
        y_range = tuple(y_range) if y_range is not None else self.extent[1]
        bounds = (x_range[0], y_range[0], x_range[1], y_range[1])
        if not self.selected.size:
            # Nothing to draw: one transparent pixel, not a full-size image. The browser
            # got both layers after every zoom; a 1500 x 1100 plot's is 6.6 MB.
            return hv.RGB(np.zeros((1, 1, 4), np.uint8), bounds=bounds, kdims=["x", "y"], vdims=_bands())
        width, height = self._raster_size(width, height)
        # The selection's coordinates are gathered once per selection, not per view (the
        # rows of all columns were copied on every zoom), and counted by the view's own
        # pass. Every pixel with a selected point is the highlight colour, opaque: what
        # datashader's linear shade of the counts with a one-colour map gave, without
        # a pass over every pixel of the view.
        if self._selection_xy is None or self._selection_xy[0] is not self.selected:
            self._selection_xy = (self.selected, self._x[self.selected], self._y[self.selected])
        grid = view_grid(self._selection_xy[1], self._selection_xy[2], x_range, y_range, width, height, pick=False)
        red, green, blue = (int(c) for c in hex_rgb(HIGHLIGHT))
        packed = np.where(grid.count > 0, np.uint32(red | green << 8 | blue << 16 | 255 << 24), np.uint32(0))
        if self.spread:
            px = choose_spread(packed >> 24 > 0, threshold=0.5, max_px=self.spread)
            packed, _ = spread_fill(packed, None, px)
        rgba = np.ascontiguousarray(packed).view(np.uint8).reshape(height, width, 4)
        # datashader rows run bottom-up; HoloViews RGB rows run top-down
        return hv.RGB(rgba[::-1], bounds=bounds, kdims=["x", "y"], vdims=_bands())

    # ----------------------------------------------------------------- live
    @classmethod
    def live(cls, reducer: Any, X: Any, meta: Any = None, color: str | None = None, *, y: Any = None,
             width: int = 800, height: int = 600, every: float = 0.2, **options: Any) -> Any:
        """Fit ``reducer`` on ``X`` in the background and draw its layout while it optimises.

        The view redraws every 0.4 s from snapshots the reducer's epoch callback
        takes (every ``every`` seconds), with a progress bar and a Stop button that keeps the current layout;
        when the fit ends (or is stopped) the view becomes an ``EmbeddingPlot`` of the
        final layout (``view.plot``), and ``reducer`` is fitted as after ``fit``.

        Parameters
        ----------
        reducer : UMAP, TSNE or PaCMAP
            An embedscope reducer with ``n_components=2`` (any backend but cuml).
        X : array of shape (n_samples, n_features)
        meta : DataFrame, optional
            Per-point metadata; ``color`` names a column (categories colour the live frames).
        color : str, optional
        y : array, optional
            Labels for a supervised UMAP fit.
        width, height : int, default=800, 600
        every : float, default=0.2
            Seconds between two snapshots of the layout (the view redraws every 0.4 s).
        **options
            Passed to the final ``EmbeddingPlot`` (``how``, ``cmap``, ``title``, ...).

        Returns
        -------
        embedscope.viz.live.LiveView
            Display it in a notebook (or put ``view.layout`` in a Panel app and call
            ``view.start()``); ``view.fit`` is the running :class:`~embedscope.viz.live.LiveFit`.

        Raises
        ------
        ValueError
            A reducer that cannot be watched (PCA, 3-D, cuml) or a bad ``every``;
            :class:`embedscope.errors.DataError` for bad ``X``. Both before any thread starts.
        """
        from embedscope.viz.live import LiveFit, LiveView

        fit = LiveFit(reducer, X, y, every=every)
        if meta is not None and len(meta) != fit.X.shape[0]:
            from embedscope.errors import DataError

            raise DataError(f"meta has {len(meta):,} rows but X has {fit.X.shape[0]:,}")

        def explorer() -> None:
            import panel as pn

            final = cls(fit.embedding, meta, color, width=width, height=height, **options)
            view.plot = final
            view.layout[:] = [view.status, pn.pane.HoloViews(final.view)]

        view = LiveView(fit, meta, color, width=width, height=height,
                        on_done=explorer, title=options.get("title") or "")
        fit.start()
        return view

    # ----------------------------------------------------------------- selection
    def on_select(self, callback: Any) -> None:
        """Call ``callback(row_ids)`` after every selection change."""
        self._listeners.append(callback)

    def select(self, rows: Any) -> np.ndarray:
        """Select rows by id (an empty list clears); returns the sorted unique ids."""
        ids = np.array(rows, dtype=np.int64).ravel()  # a copy: the caller may reuse its array
        if ids.size > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            # a search or a box gives sorted unique ids already; np.unique of 500k of
            # them cost ~0.2 s (it sorts anyway)
            ids = np.unique(ids)
        if ids.size and (ids[0] < 0 or ids[-1] >= len(self.frame)):
            raise IndexError(f"row ids must be in [0, {len(self.frame)}); got {ids[0]}..{ids[-1]}")
        self.selected = ids
        self._chosen.event(version=self._chosen.version + 1)
        self._muted.event(muted=bool(ids.size))
        for callback in self._listeners:
            callback(ids)
        return ids

    def clear_selection(self) -> None:
        """Select nothing: all points at full colour."""
        self.select([])

    def _on_bounds(self, bounds: Any = None, **_: Any) -> None:
        if bounds is None:
            return
        self.select(rows_in_box(self.frame["x"].to_numpy(), self.frame["y"].to_numpy(), *bounds))

    def _on_lasso(self, geometry: Any = None, **_: Any) -> None:
        if geometry is None or len(geometry) < 3:
            return
        geometry = np.asarray(geometry)
        if len(geometry) > MAX_POLYGON_VERTICES:
            # A hand-drawn stroke that long is dense: every k-th vertex draws the same shape.
            geometry = geometry[:: -(-len(geometry) // MAX_POLYGON_VERTICES)]
        self.select(rows_in_polygon(self.frame["x"].to_numpy(), self.frame["y"].to_numpy(), geometry))

    def selection_frame(self) -> pd.DataFrame:
        """The selected rows with a ``row`` id column, coordinates and metadata."""
        out = self.frame.iloc[self.selected].copy()
        out.insert(0, "row", self.selected)
        return out.reset_index(drop=True)


def plot(
    coords_or_reducer: Any,
    meta: Any = None,
    color: str | None = None,
    **options: Any,
) -> Any:
    """A HoloViews plot of an embedding that re-aggregates on zoom.

    Parameters
    ----------
    coords_or_reducer : array of shape (n, 2 or 3), DataFrame or fitted reducer
        numpy / cupy coordinates, a DataFrame with ``x`` / ``y`` (other columns become
        metadata), or a fitted UMAP / TSNE / PCA (its ``embedding_``).
    meta : DataFrame or array of shape (n,), optional
        Per-point metadata for hover and colouring.
    color : str, optional
        Metadata column to colour by (categories or numbers); density if None.
    **options
        Passed to :class:`EmbeddingPlot` (``width``, ``height``, ``how``, ``cmap``,
        ``hover_columns``, ``spread``, ``title``).

    Returns
    -------
    holoviews.DynamicMap
        Overlay of the shaded raster (hover, box / lasso select, tap), selection highlight and, for
        categories, a legend. Use :class:`EmbeddingPlot` to read selected row ids.

    Examples
    --------
    >>> import embedscope
    >>> from embedscope.viz import plot
    >>> X, meta = embedscope.load_vectors("builtin:mixture:2000x20")
    >>> view = plot(embedscope.PCA(2).fit(X), meta, color="label")
    """
    return EmbeddingPlot(coords_or_reducer, meta, color, **options).view
