"""``embedscope serve a.parquet b.parquet``: two layouts of the same items in linked panels.

:class:`CompareData` reads both files once for every session: rows are paired by an id
column or by row order (:func:`embedscope.viz.compare.pair_order`, which refuses
mismatches with a named error), and the "moved" layer is computed once, each point's
Jaccard distance between its k nearest neighbours in the two layouts
(:func:`embedscope.engine.metrics.neighborhood_change`).

Each browser session (:class:`CompareExplorer`) shows the two layouts side by side.
Both panels hold the same rows in the same order, so a row id of one is the row id of
the other: a box or lasso selection in either is applied to the other; hovering or
clicking a point marks it (a ring) in both; the export holds the selected items with
both layouts' coordinates. The colour (the moved layer, a metadata column, per-panel
``quality``) applies to both, and a slider keeps only the points that moved most.
"""

from __future__ import annotations

import io
import logging
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embedscope.errors import DataError
from embedscope.viz.layers import MOVED, layer_style, quality_text

__all__ = ["CompareData", "CompareExplorer", "make_compare_session", "serve_compare", "side_frames", "top_moved"]

log = logging.getLogger(__name__)

#: A hover marks the nearest point only when it lies within this many screen pixels.
MARK_RADIUS_PX = 12
MARK_COLOUR = "#111111"
PANELS = ("a", "b")


def top_moved(moved: np.ndarray, share: float) -> tuple[np.ndarray | None, float]:
    """The rows among the ``share`` of points that moved most: ``(rows, cutoff)``.

    Every point whose moved value is at least the value ranked ``ceil(share * n)``-th
    from the top is kept, so tied points are kept or dropped together and the kept
    share can pass ``share``. ``rows`` is None (every point) when ``share >= 1``.

    Raises
    ------
    ValueError
        ``share`` not in (0, 1], or no points.
    """
    moved = np.asarray(moved)
    n = moved.shape[0]
    if not n:
        raise ValueError("there are no points")
    if not (isinstance(share, (int, float, np.floating)) and 0 < share <= 1):
        raise ValueError(f"share={share!r} must be in (0, 1]")
    if share >= 1:
        return None, float(np.min(moved))
    m = max(1, math.ceil(share * n))
    cutoff = float(np.partition(moved, n - m)[n - m])  # the m-th largest value
    return np.flatnonzero(moved >= cutoff), cutoff


def side_frames(a_meta: pd.DataFrame | None, b_meta: pd.DataFrame | None, order: np.ndarray,
                ) -> tuple[pd.DataFrame | None, pd.DataFrame | None, list[str]]:
    """Metadata of each panel, row i the same item: ``(meta_a, meta_b, differing)``.

    Each panel keeps its own file's columns (a per-layout ``quality`` stays with its
    layout) plus the columns only the other file has; both list the columns in the
    same order. ``differing`` names the columns both files hold with different values.
    """
    b_meta = None if b_meta is None else b_meta.iloc[order].reset_index(drop=True)
    a_meta = None if a_meta is None else a_meta.reset_index(drop=True)
    if a_meta is None and b_meta is None:
        return None, None, []
    if a_meta is None or b_meta is None:
        only = a_meta if a_meta is not None else b_meta
        return only, only, []
    columns = [*a_meta.columns, *[c for c in b_meta.columns if c not in a_meta.columns]]
    side_a = pd.concat([a_meta, b_meta[[c for c in b_meta.columns if c not in a_meta.columns]]], axis=1)[columns]
    side_b = pd.concat([b_meta, a_meta[[c for c in a_meta.columns if c not in b_meta.columns]]], axis=1)[columns]
    differing = [c for c in a_meta.columns if c in b_meta.columns and not a_meta[c].equals(b_meta[c])]
    return side_a, side_b, differing


def _text_arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Python str objects of each text column, made once and shared by every session's hover."""
    return {str(c): frame[c].to_numpy(dtype=object) for c in frame.columns
            if c not in ("x", "y") and (frame[c].dtype.kind in "OSU" or isinstance(frame[c].dtype, pd.StringDtype))}


class CompareData:
    """What every session of the comparison shares: both layouts paired, and the moved layer.

    Parameters
    ----------
    first, second : str
        Coordinate files (parquet with ``x``, ``y`` from ``embedscope reduce``, ``.npy`` n x 2).
    on : str, optional
        Id column present in both to pair rows by; default: row order.
    k : int, default=15
        Neighbours of the moved layer.
    color : str, optional
        Colour at start: ``"moved"`` (default), a metadata column, or None (density).
    verbose : bool, default=False
        Log the stages.

    Raises
    ------
    DataError
        Vectors rather than coordinates, rows that do not pair up (counts, ids), a
        metadata column named ``moved``, an unknown colour column.
    """

    def __init__(self, first: str, second: str, on: str | None = None, k: int = 15,
                 color: str | None = MOVED, verbose: bool = False) -> None:
        from embedscope.engine.metrics import neighborhood_change
        from embedscope.viz._input import color_kind, plot_frame
        from embedscope.viz.app import _in_memory, load_input
        from embedscope.viz.compare import pair_order

        self.paths = (str(first), str(second))
        self.names = (Path(first).name, Path(second).name)
        if self.names[0] == self.names[1]:
            self.names = (f"a: {self.names[0]}", f"b: {self.names[1]}")
        arrays, metas = [], []
        for source in self.paths:
            array, meta, is_coords = load_input(source)
            if not is_coords:
                raise DataError(f"{source} holds {array.shape[1]}-dimensional vectors, not coordinates; "
                                f"run 'embedscope reduce {source} --out coords.parquet' first")
            if array.shape[1] == 3:
                # side by side 2-D panels (and 'moved' measured on them) would hide z
                raise DataError(f"{source} holds 3-D coordinates; comparing draws 2-D maps: give 2-D layouts "
                                "(reduce with --n-components 2), or serve each 3-D layout on its own")
            if meta is not None and MOVED in meta.columns:
                raise DataError(f"{source} already has a {MOVED!r} column; rename it to compare the layouts")
            arrays.append(np.asarray(_in_memory(array, source))[:, :2])
            metas.append(meta)
        order = pair_order(arrays[0], metas[0], arrays[1], metas[1], on=on, names=self.names)
        A, B = arrays[0], arrays[1][order]
        meta_a, meta_b, self.differing = side_frames(metas[0], metas[1], order)
        n = A.shape[0]
        if not isinstance(k, int) or not 1 <= k < n:
            raise DataError(f"--k {k}: the moved layer needs 1 <= k < {n} (the number of paired rows)")
        self.k = int(k)
        if verbose:
            log.info("moved layer: %d nearest neighbours of %s points in each layout", k, f"{n:,}")
        self.moved = neighborhood_change(A, B, self.k)
        self.frames = tuple(plot_frame(xy, pd.DataFrame({MOVED: self.moved}) if m is None else m.assign(**{MOVED: self.moved}))
                            for xy, m in ((A, meta_a), (B, meta_b)))
        self.meta_columns = [str(c) for c in self.frames[0].columns if c not in ("x", "y")]
        if color is not None and color not in self.meta_columns:
            raise DataError(f"no column {color!r} to colour by; columns: {self.meta_columns}")
        self.color = color
        texts = [c for c in self.meta_columns if c != MOVED and color_kind(self.frames[0][c]) == "category"
                 and self.frames[0][c].dtype.kind != "i"]
        self.text_column = texts[0] if texts else None
        shared = _text_arrays(self.frames[0])
        own_b = _text_arrays(self.frames[1])
        # a column equal in both files is one array for both panels' hover
        self.hover_text = (shared, {c: (own_b[c] if c in self.differing else shared[c]) for c in own_b})
        from embedscope.viz.app import _upload_coordinates

        self.device_xy = tuple(_upload_coordinates(f) for f in self.frames)
        from embedscope.viz.figure import sorted_points

        for frame, device in zip(self.frames, self.device_xy, strict=True):
            if device is None:  # the CPU pass's spatial order, once for every session
                sorted_points(frame)
        self._trees: list[Any] = [None, None]
        self._lock = threading.Lock()
        self.note = (f"{n:,} items in two layouts, paired by "
                     + (f"the {on!r} column" if on else "row order"))

    def __len__(self) -> int:
        return len(self.frames[0])

    def tree(self, panel: int) -> Any:
        """A k-d tree of the panel's full layout, built on first use and shared."""
        with self._lock:
            if self._trees[panel] is None:
                from scipy.spatial import cKDTree

                f = self.frames[panel]
                self._trees[panel] = cKDTree(np.column_stack([f["x"].to_numpy(), f["y"].to_numpy()]))
            return self._trees[panel]

    def export_frame(self, rows: np.ndarray) -> pd.DataFrame:
        """The items ``rows`` with both layouts' coordinates, the moved layer and the metadata.

        Columns: ``row``, ``x_a``, ``y_a``, ``x_b``, ``y_b``, ``moved``, the first
        layout's metadata, then ``COLUMN_b`` for each column whose values differ.
        """
        rows = np.asarray(rows, dtype=np.int64)
        fa, fb = self.frames
        out = pd.DataFrame({"row": rows})
        for side, frame in zip(PANELS, (fa, fb), strict=True):
            out[f"x_{side}"] = frame["x"].to_numpy()[rows]
            out[f"y_{side}"] = frame["y"].to_numpy()[rows]
        out[MOVED] = self.moved[rows]
        for c in self.meta_columns:
            if c != MOVED:
                out[c] = fa[c].iloc[rows].to_numpy()
        for c in self.differing:
            out[f"{c}_b"] = fb[c].iloc[rows].to_numpy()
        return out

    def summary(self, markup: bool = True) -> str:
        """The moved layer's and each layout's quality figures: Markdown lines, file names escaped
        (``markup=False``: plain text for a terminal)."""
        from embedscope.viz.app import safe_text

        if not markup:
            return "; ".join([f"moved (k={self.k}): median {np.median(self.moved):.3f}, "
                              f"{(self.moved > 0.5).mean():.1%} above 0.5",
                              *filter(None, (quality_text(f, n) for f, n in zip(self.frames, self.names, strict=True)))])
        lines = [f"Moved (k={self.k}): median {np.median(self.moved):.3f}, "
                 f"{(self.moved > 0.5).mean():.1%} of points above 0.5 (share of neighbours not shared)"]
        for frame, name in zip(self.frames, self.names, strict=True):
            text = quality_text(frame, name)
            if text:
                lines.append(safe_text(text, 300))
        return "\n\n".join(lines)


class CompareExplorer:
    """One browser session: the two layouts in linked panels, with their widgets."""

    def __init__(self, data: CompareData) -> None:
        import panel as pn

        from embedscope.viz.app import LEGEND_PX, _served_plot_class, safe_text
        from embedscope.viz.figure import EmbeddingPlot, _hv

        _hv()
        self.data = data
        self._plot_cls = _served_plot_class(EmbeddingPlot)
        self.rows: np.ndarray | None = None  # the items shown (None: all), as the slider keeps them
        self.cutoff = float(np.min(data.moved))
        self._frames = data.frames
        self._hover_text: tuple[dict[str, Any], ...] = data.hover_text
        self._trees: list[Any] = [None, None]
        self._syncing = False
        self.plots: list[Any] = [None, None]
        self.marked = -1  # the panel row ringed in both panels (-1: none)
        self._rings: list[Any] = [None, None]
        self.color = pn.widgets.Select(label="Colour by (both panels)", options=[MOVED, "(density)",
                                       *[c for c in data.meta_columns if c != MOVED]],
                                       value=data.color or "(density)", width=220)
        self.share = pn.widgets.FloatSlider(label="Show the top % that moved most", start=1, end=100, step=1,
                                            value=100, width=220)
        self.clear = pn.widgets.Button(label="Clear selection", width=220)
        self.fmt = pn.widgets.RadioButtonGroup(options=["csv", "parquet"], value="csv", width=220)
        self.download = pn.widgets.FileDownload(callback=self._export, filename="selection.csv",
                                                label="Export selection", width=220)
        self.selection_info = pn.pane.Markdown("Nothing selected.", css_classes=["es-selection"], width=240)
        self.filter_info = pn.pane.Markdown("", css_classes=["es-filter"], width=240)
        self.mark_info = pn.pane.Markdown("Hover or click a point to mark it in both panels.",
                                          css_classes=["es-mark"])
        # linked_axes=False: Panel links the axes of HoloViews panes of one page by default, which
        # made both panels show one range (two layouts' scales differ) and re-render both per zoom.
        self.panes = [pn.pane.HoloViews(sizing_mode="stretch_both", min_height=300, min_width=300, linked_axes=False)
                      for _ in PANELS]
        # One colour legend for both panels (they colour the same rows by the same column),
        # a list in the sidebar as in the explorer: a legend drawn on a panel is a layer of
        # its own, and with it a new colour needed both panels built again.
        self.legend = pn.pane.HTML("", width=LEGEND_PX, css_classes=["es-legend"])
        self._make_plots(data.color)
        self._show_filter()
        self.color.param.watch(lambda e: self.recolour(None if e.new == "(density)" else e.new), "value")
        self.share.param.watch(lambda e: self.set_share(e.new / 100), "value_throttled")
        self.clear.on_click(lambda _: self.plots[0].clear_selection())
        self.fmt.param.watch(lambda e: setattr(self.download, "filename", f"selection.{e.new}"), "value")
        sidebar = pn.Column(
            pn.pane.Markdown(f"### embedscope compare\n{safe_text(data.note, 400)}"),
            pn.pane.Markdown(data.summary(), css_classes=["es-summary"]),
            self.color, self.legend, self.share, self.filter_info, self.clear, self.fmt, self.download,
            self.selection_info, width=260)
        self.layout = pn.Row(sidebar, pn.Column(pn.Row(*self.panes, sizing_mode="stretch_both"), self.mark_info,
                                                sizing_mode="stretch_both"), sizing_mode="stretch_both")

    # ----------------------------------------------------------------- plots
    def _make_plots(self, color: str | None) -> None:
        """Both panels coloured by ``color``, keeping each one's view, the selection and the mark."""
        import holoviews as hv
        from bokeh.models import ColumnDataSource

        selected = self.plots[0].selected if self.plots[0] is not None else np.empty(0, np.int64)
        for i, name in enumerate(self.data.names):
            old = self.plots[i]
            view = (old.range.x_range, old.range.y_range) if old is not None else (None, None)
            device = self.data.device_xy[i] if self.rows is None else None
            plot = self._plot_cls(self._frames[i], color=color, _prepared=True, _device_xy=device, responsive=True,
                                  title=name, x_range=view[0], y_range=view[1], legend=False, **layer_style(color))
            plot.shared_text = self._hover_text[i]
            plot.on_select(lambda ids, i=i: self._on_select(i, ids))
            pointer = hv.streams.PointerXY(source=plot.base)
            pointer.add_subscriber(lambda x=None, y=None, i=i, **_: self.mark_at(i, x, y, clicked=False))
            tap = hv.streams.Tap(source=plot.base)
            tap.add_subscriber(lambda x=None, y=None, i=i, **_: self.mark_at(i, x, y, clicked=True))
            self._rings[i] = ColumnDataSource(self._ring_data(i, self.marked))
            self.plots[i] = plot
            self.panes[i].object = plot.view.opts(hooks=[lambda p, _e, i=i: self._add_ring(p, i)])
        if selected.size:
            self.plots[0].select(selected)
        self._show_legend()

    def recolour(self, color: str | None) -> None:
        """Colour both panels by ``color`` (None: density) in place: each sends one new image;
        the views, the selection and the mark stay."""
        for plot in self.plots:
            plot.set_color(color, **layer_style(color))
        self._show_legend()

    def _show_legend(self) -> None:
        from embedscope.viz.app import legend_html

        self.legend.object = legend_html(self.plots[0])

    @staticmethod
    def _set_ring(source: Any, data: dict[str, list[float]]) -> None:
        """Give the ring's source new data; on a server, in the document's next tick.

        HoloViews runs stream callbacks without the document's lock, and Bokeh refuses a
        model change made without it; a next-tick callback runs under the lock.
        """
        doc = source.document
        if doc is None:
            source.data = data
            return

        def apply() -> None:
            source.data = data

        doc.add_next_tick_callback(apply)

    def _ring_data(self, panel: int, row: int) -> dict[str, list[float]]:
        frame = self._frames[panel]
        if row < 0 or row >= len(frame):
            return {"x": [], "y": []}
        return {"x": [float(frame["x"].iat[row])], "y": [float(frame["y"].iat[row])]}

    def _add_ring(self, plot: Any, panel: int) -> None:
        """HoloViews hook: the ring is a Bokeh glyph of its own, fed by a source this session owns.

        A hover then changes two points of data, sent as a small patch. As a HoloViews
        layer, each mark refreshed the whole overlay of both panels (ranges of the
        images, every layer's frame): ~0.2 s a panel on two busy cores, per mouse move.
        """
        figure = plot.state
        if any("embedscope_ring" in r.tags for r in figure.renderers):
            return
        ring = figure.scatter("x", "y", source=self._rings[panel], size=20, fill_alpha=0, line_color=MARK_COLOUR,
                              line_width=3)
        ring.tags = ["embedscope_ring"]

    # ----------------------------------------------------------------- links
    def _on_select(self, panel: int, ids: np.ndarray) -> None:
        """A selection in one panel is made in the other: both hold the same rows in the same order."""
        if self._syncing:
            return
        self._syncing = True
        try:
            self.plots[1 - panel].select(ids)
        finally:
            self._syncing = False
        original = self.original_rows(ids)
        shown = ", ".join(map(str, original[:8])) + (", ..." if original.size > 8 else "")
        self.selection_info.object = (f"Selected {ids.size:,} point(s) in both panels"
                                      + (f": rows {shown}" if ids.size else "."))

    def original_rows(self, ids: Any) -> np.ndarray:
        """Row ids of the files for row ids of the panels (which hold only the kept rows)."""
        ids = np.asarray(ids, dtype=np.int64)
        return ids if self.rows is None else self.rows[ids]

    def _tree(self, panel: int) -> Any:
        if self.rows is None:
            return self.data.tree(panel)
        if self._trees[panel] is None:
            from scipy.spatial import cKDTree

            f = self._frames[panel]
            self._trees[panel] = cKDTree(np.column_stack([f["x"].to_numpy(), f["y"].to_numpy()]))
        return self._trees[panel]

    def mark_at(self, panel: int, x: float | None, y: float | None, clicked: bool = False) -> int:
        """Mark, in both panels, the point of ``panel`` nearest ``(x, y)``; returns its panel row or -1.

        A hover marks a point only within ``MARK_RADIUS_PX`` screen pixels of it (the
        mark stays where it was otherwise); a click marks the nearest point and says so.
        """
        if x is None or y is None or not (np.isfinite(x) and np.isfinite(y)):
            return -1  # browser input: a NaN would index past the last row
        plot = self.plots[panel]
        _, row = self._tree(panel).query([x, y])
        row = int(row)
        if not clicked:
            (x0, x1), (y0, y1) = plot.range.x_range or plot.extent[0], plot.range.y_range or plot.extent[1]
            width, height = plot.size.width or plot.width, plot.size.height or plot.height
            frame = self._frames[panel]
            dx = (float(frame["x"].iat[row]) - x) / (x1 - x0) * width
            dy = (float(frame["y"].iat[row]) - y) / (y1 - y0) * height
            if math.hypot(dx, dy) > MARK_RADIUS_PX:
                return -1
        if row != self.marked:
            self.marked = row
            for i, source in enumerate(self._rings):
                self._set_ring(source, self._ring_data(i, row))
            self.mark_info.object = self._describe(row, "Clicked" if clicked else "Hovered", panel)
        return row

    def _describe(self, row: int, how: str, panel: int) -> str:
        from embedscope.viz.app import safe_text

        item = int(self.original_rows([row])[0])
        fa, fb = self._frames
        label = ""
        if self.data.text_column:
            label = f" ({safe_text(fa[self.data.text_column].iat[row])})"
        return (f"{how} in {safe_text(self.data.names[panel])}: row {item}{label}, moved "
                f"{fa[MOVED].iat[row]:.3f}; marked in both panels at "
                f"({fa['x'].iat[row]:.4g}, {fa['y'].iat[row]:.4g}) and ({fb['x'].iat[row]:.4g}, {fb['y'].iat[row]:.4g})")

    # ---------------------------------------------------------------- filter
    def set_share(self, share: float) -> None:
        """Show only the ``share`` (0, 1] of points that moved most, in both panels.

        The selection keeps the selected items that are still shown.
        """
        keep, self.cutoff = top_moved(self.data.moved, float(share))
        if (keep is None and self.rows is None) or (keep is not None and self.rows is not None
                                                      and np.array_equal(keep, self.rows)):
            return
        chosen = self.original_rows(self.plots[0].selected)
        self.rows = keep
        if keep is None:
            self._frames, self._hover_text = self.data.frames, self.data.hover_text
        else:
            self._frames = tuple(f.iloc[keep].reset_index(drop=True) for f in self.data.frames)
            self._hover_text = tuple({c: v[keep] for c, v in t.items()} for t in self.data.hover_text)
        self._trees = [None, None]
        self.plots[0].selected = np.empty(0, np.int64)  # its ids index the old rows
        self.marked = -1
        self._make_plots(self.plots[0].color)
        if chosen.size:
            local = chosen if keep is None else np.flatnonzero(np.isin(keep, chosen))
            self.plots[0].select(local)
        else:
            self._on_select(0, np.empty(0, np.int64))
        self._show_filter()

    def _show_filter(self) -> None:
        n = len(self.data)
        if self.rows is None:
            self.filter_info.object = f"Showing all {n:,} points."
        else:
            self.filter_info.object = (f"Showing {self.rows.size:,} of {n:,} points ({self.rows.size / n:.1%}): "
                                       f"moved >= {self.cutoff:.3f}.")

    # ---------------------------------------------------------------- export
    def selection_frame(self) -> pd.DataFrame:
        """The selected items, with both layouts' coordinates (see :meth:`CompareData.export_frame`)."""
        return self.data.export_frame(self.original_rows(self.plots[0].selected))

    def _export(self) -> io.BytesIO:
        from embedscope.viz.app import _table_bytes

        return _table_bytes(self.selection_frame(), self.fmt.value)


def make_compare_session(data: CompareData, gate: Any = None) -> Any:
    """The page of one browser session (a short notice when ``gate`` is full)."""
    import panel as pn

    if gate is not None:
        if not gate.acquire():
            return pn.pane.Markdown(f"### embedscope\n{gate.limit} sessions are open, the most this server allows "
                                    "(`--max-sessions`). Close a tab and reload in a minute.")
        pn.state.on_session_destroyed(lambda _context: gate.release())
    return CompareExplorer(data).layout


def serve_compare(args: Any) -> int:
    """``embedscope serve FIRST SECOND [--on ID]``: run the comparison until interrupted."""
    import sys

    from embedscope._progress import Progress
    from embedscope.viz.figure import _hv
    from embedscope.viz.server import SessionGate, check_listen, is_loopback, page_urls, run_server

    for flag, value in (("--meta", args.meta), ("--method", args.method), ("--text-column", args.text_column)):
        if value:
            raise ValueError(f"{flag} applies to one input; two layouts are compared from their own columns "
                             "(coordinates with their metadata, as 'embedscope reduce' writes them)")
    gate = SessionGate(args.max_sessions)
    check_listen(args.host, args.port)
    if not is_loopback(args.host):
        print(f"embedscope serve: warning: --host {args.host} makes the app reachable from the network, "
              "without a login, by anyone who can reach this machine", file=sys.stderr)
    progress = Progress(not args.quiet, "serve")
    k = 15 if args.k is None else args.k
    progress.log(f"loading {args.input} and {args.second}; the moved layer compares each point's "
                 f"{k} nearest neighbours in both")
    data = CompareData(args.input, args.second, on=args.on, k=k,
                       color=MOVED if args.color is None else args.color)
    progress.log(data.summary(markup=False))
    _hv()  # the hover's DataModel types, before the first page (see app.serve)

    def ready(port: int) -> None:
        if not args.quiet:
            urls = "\n       ".join(page_urls(args.host, port))
            print(f"embedscope serve: {data.note}\n  open {urls}\n  (Ctrl-C stops)", file=sys.stderr, flush=True)

    run_server(lambda: make_compare_session(data, gate), host=args.host, port=args.port, allow=list(args.allow_host),
               gate=gate, show=args.show, on_ready=ready)
    return 0

