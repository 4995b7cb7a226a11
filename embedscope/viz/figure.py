"""Interactive HoloViews plots of millions of points.

The pipeline is HoloViews' ``rasterize -> dynspread -> shade`` over an ``hv.Points`` of
the full data, so a live session (Bokeh server, Panel, Jupyter) re-aggregates at full
resolution whenever the view changes. A datashader ``first`` selector keeps, for every
pixel, the row id of one real point; HoloViews' server-side hover then shows that
point's metadata without sending the points to the browser.

Selections (box, lasso, or ids given in code) are row ids of the full data; selected
points are drawn on top in a highlight colour and the rest is muted, not hidden.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from embedscope.viz._input import plot_frame, with_color
from embedscope.viz.select import rows_in_box, rows_in_polygon

__all__ = ["EmbeddingPlot", "plot"]

HIGHLIGHT = "#e4002b"
MIN_ALPHA = 100  # a lone point must stay visible against white
MAX_HOVER_COLUMNS = 6


def _hv() -> Any:
    try:
        import holoviews as hv
        from holoviews.operation import datashader  # noqa: F401
    except ImportError:
        raise ImportError("embedscope.viz needs HoloViews and Bokeh: pip install holoviews bokeh datashader colorcet") from None
    if not hv.Store.current_backend or "bokeh" not in hv.Store.renderers:
        hv.extension("bokeh", logo=False)
    return hv


class EmbeddingPlot:
    """A zoomable, hoverable, selectable plot of 2-D coordinates.

    Parameters
    ----------
    data : array of shape (n, 2 or 3), DataFrame with ``x`` / ``y``, or fitted reducer
        The points (cupy arrays are copied to the host; the plot lives on the CPU).
    meta : DataFrame or array of shape (n,), optional
        Per-point metadata, shown in hover tooltips and usable as ``color``.
    color : str, optional
        Column to colour by: categories (glasbey colours, legend) or numbers (mean per
        pixel, colour bar-less ``bmy`` map). None: point density.
    width, height : int, default=800, 600
        Plot size in screen pixels; the raster follows it.
    how : str, default="eq_hist"
        Datashader colour normalisation.
    cmap : list of str, optional
        Colour map for density or values.
    hover_columns : list of str, optional
        Metadata columns in the tooltip (default: the first six).
    spread : int, default=3
        ``dynspread`` maximum radius, so sparse points stay visible when zoomed in.
    title : str, optional
    hover : bool, default=True
        Server-side hover with the metadata of one real point per pixel. It costs a
        datashader ``first`` selector per render (the dominant cost on millions of
        points; see ``benchmarks/viz.py``); False keeps only the pixel counts.

    Attributes
    ----------
    frame : pandas.DataFrame
        ``x``, ``y`` and the metadata columns; row ``i`` is point ``i``.
    view : holoviews.DynamicMap
        An overlay that re-renders on zoom and selection. The plot: display it, ``hv.save`` it or put it in a Panel layout.
    selected : ndarray of int64
        Row ids of the current selection (empty when nothing is selected).
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
        hover_columns: list[str] | None = None,
        spread: int = 3,
        title: str | None = None,
        hover: bool = True,
        _prepared: bool = False,
    ) -> None:
        # _prepared: the app hands over a frame already checked by plot_frame, so each
        # browser session shares it instead of copying millions of rows.
        frame = data if _prepared else plot_frame(data, meta)
        self.frame, self.color_kind = with_color(frame, color)
        self.color = color
        self.width, self.height, self.how, self.cmap, self.spread = int(width), int(height), how, cmap, int(spread)
        self.title = title or ""
        self.hover = bool(hover)
        meta_cols = [c for c in self.frame.columns if c not in ("x", "y")]
        if hover_columns is None:
            hover_columns = meta_cols[:MAX_HOVER_COLUMNS]
        unknown = [c for c in hover_columns if c not in meta_cols]
        if unknown:
            raise ValueError(f"hover_columns {unknown} are not metadata columns; known: {meta_cols}")
        self.hover_columns = list(hover_columns)
        self.selected = np.empty(0, dtype=np.int64)
        self._listeners: list[Any] = []
        self._build()

    # ------------------------------------------------------------------ building
    def _aggregator(self) -> Any:
        import datashader as ds

        if self.color_kind == "category":
            return ds.count_cat(self.color)
        if self.color_kind == "value":
            return ds.mean(self.color)
        return ds.count()

    def _shade_options(self) -> dict[str, Any]:
        import colorcet as cc

        from embedscope.viz.aggregate import category_colors

        if self.color_kind == "category":
            return {"color_key": category_colors(self.frame[self.color].cat.categories)}
        return {"cmap": self.cmap or (cc.bmy if self.color_kind == "value" else cc.blues[110:])}

    def _build(self) -> None:
        hv = _hv()
        import datashader as ds
        from holoviews.operation.datashader import dynspread, rasterize, shade

        vdims = [c for c in dict.fromkeys([*([self.color] if self.color else []), *self.hover_columns])]
        self.points = hv.Points(self.frame, kdims=["x", "y"], vdims=vdims)
        Muted = hv.streams.Stream.define("Muted", muted=False)
        self._muted = Muted()
        selector = {"selector": ds.first("x")} if self.hover else {}
        raster = rasterize(self.points, aggregator=self._aggregator(), width=self.width, height=self.height,
                           **selector)
        if self.spread:
            raster = dynspread(raster, threshold=0.5, max_px=self.spread)
        base = shade(raster, cnorm=self.how, min_alpha=MIN_ALPHA, **self._shade_options())

        def fade(rgb: Any, muted: bool) -> Any:
            return rgb.opts(alpha=0.25 if muted else 1.0)

        self.base = base.apply(fade, streams=[self._muted]).opts(
            tools=["hover", "box_select", "lasso_select", "tap"], active_tools=["wheel_zoom"],
            width=self.width, height=self.height, title=self.title, xlabel="x", ylabel="y")
        Chosen = hv.streams.Stream.define("Chosen", version=0)
        self._chosen = Chosen()
        self.range = hv.streams.RangeXY(source=self.base)
        self.highlight = hv.DynamicMap(self._highlight_image, streams=[self.range, self._chosen])
        # HoloViews' shade adds the category legend itself (glasbey swatches).
        self.view = hv.Overlay([self.base, self.highlight]).collate().opts(width=self.width, height=self.height)
        self.bounds = hv.streams.BoundsXY(source=self.base)
        self.lasso = hv.streams.Lasso(source=self.base)
        self.bounds.add_subscriber(self._on_bounds)
        self.lasso.add_subscriber(self._on_lasso)

    def _highlight_image(self, x_range: Any = None, y_range: Any = None, version: int = 0) -> Any:
        """The selected points, shaded in the highlight colour over the current view."""
        from embedscope.viz.aggregate import data_range, raster

        hv = _hv()
        import datashader.transfer_functions as tf

        x_range = tuple(x_range) if x_range is not None else data_range(self.frame["x"].to_numpy())
        y_range = tuple(y_range) if y_range is not None else data_range(self.frame["y"].to_numpy())
        chosen = self.frame.iloc[self.selected] if self.selected.size else self.frame.iloc[:0]
        agg = raster(chosen[["x", "y"]], width=self.width, height=self.height, x_range=x_range, y_range=y_range)
        img = tf.shade(agg, cmap=[HIGHLIGHT, HIGHLIGHT], how="linear", min_alpha=255)
        if self.spread:
            img = tf.dynspread(img, threshold=0.5, max_px=self.spread)
        rgba = np.asarray(img.data, dtype=np.uint32).view(np.uint8).reshape(self.height, self.width, 4)
        bounds = (x_range[0], y_range[0], x_range[1], y_range[1])
        # datashader rows run bottom-up; HoloViews RGB rows run top-down
        return hv.RGB(rgba[::-1], bounds=bounds, kdims=["x", "y"]).opts(tools=[])

    # ----------------------------------------------------------------- selection
    def on_select(self, callback: Any) -> None:
        """Call ``callback(row_ids)`` after every selection change."""
        self._listeners.append(callback)

    def select(self, rows: Any) -> np.ndarray:
        """Select rows by id (an empty list clears); returns the sorted unique ids."""
        ids = np.unique(np.asarray(rows, dtype=np.int64).ravel())
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
        self.select(rows_in_polygon(self.frame["x"].to_numpy(), self.frame["y"].to_numpy(), np.asarray(geometry)))

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
