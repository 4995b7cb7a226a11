"""``embedscope serve``: a Panel app on a Bokeh server to explore an embedding.

The server opens only the files it was started with: :class:`AppData` reads them (and
fails with a clear :class:`DataError` before any server starts), and nothing a browser
sends is ever used as a path. Exports are built in memory and downloaded.

Given vectors rather than coordinates, the app reduces them in a background thread;
pages opened meanwhile show the stage being run, then switch to the plot. With
``live=True`` (``serve --live``) they draw the layout while it optimises instead
(:mod:`embedscope.viz.live`), with a Stop button that keeps it.
"""

from __future__ import annotations

import io
import logging
import mmap
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embedscope.errors import DataError
from embedscope.io.load import load_vectors
from embedscope.io.readers import check_regular_file
from embedscope.viz._input import plot_frame
from embedscope.viz._text import MAX_LABEL_CHARS, safe_text
from embedscope.viz.figure import device_coordinates, sorted_points
from embedscope.viz.layers import default_color, layer_style, quality_text
from embedscope.viz.search import MAX_SEARCH_CHARS, MODES, default_color_column, default_text_column

__all__ = ["AppData", "default_method", "load_input", "make_session", "safe_text", "serve"]

log = logging.getLogger(__name__)

N_NEIGHBORS = 10
#: Most neighbours a click may list (the k box's bound).
MAX_K = 100
#: Metrics a click's neighbours may be found by (kNN kernel names).
METRICS = ("euclidean", "cosine", "manhattan", "chebyshev", "correlation", "inner_product")
#: Width of the legend column beside the plot: with the 260 px sidebar, a 1366 px
#: screen leaves the plot ~900 px.
LEGEND_PX = 200
NEIGHBOURS_HINT = "Click a point to list its nearest neighbours."
#: Zoom levels of the region labels: full view, then each halving of the view's width.
LABEL_LEVELS = 4
#: Name (a prefix) of the thread that reduces a vectors file behind an opening explorer.
REDUCE_THREAD = "embedscope-reduce"


def _check_regular(source: str, what: str) -> None:
    """Refuse a FIFO, socket or device as input: reading one blocks forever or never ends.

    Missing files and ``builtin:`` specs are left to the loader to report, and folders
    (shard sources) pass; every other path gets the readers' own check.
    """
    if os.path.exists(source) and not os.path.isdir(source):
        check_regular_file(source, what)


def _in_memory(array: np.ndarray, source: str) -> np.ndarray:
    """``array`` copied out of any file mapping, read with ``pread``.

    The server lives for hours; if the file under a mapping is truncated meanwhile, the
    next access to a lost page is SIGBUS, which kills the whole server. A copy cannot
    shrink, and reading (not touching a mapping) turns a file that is short now into a
    DataError rather than a signal.
    """
    base, mapped = array, False
    while base is not None:
        if isinstance(base, mmap.mmap):
            mapped = True
            break
        base = getattr(base, "base", None)
    if not mapped:
        return array
    if isinstance(array, np.memmap) and array.flags.c_contiguous and array.filename and array.base is not None \
            and isinstance(array.base, mmap.mmap):
        out = np.empty(array.shape, dtype=array.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        fd = os.open(array.filename, os.O_RDONLY)
        try:
            got = 0
            while got < len(view):
                n = os.preadv(fd, [view[got:]], array.offset + got)
                if n == 0:
                    raise DataError(f"{source} is shorter than its header says: it was truncated while loading")
                got += n
        finally:
            os.close(fd)
        return out
    return np.array(array)  # a strided view of a mapping: copied at start, while the file is whole


def default_method() -> str:
    """'umap' where the UMAP module imports, else 'pca'."""
    try:
        import embedscope.engine.umap  # noqa: F401
    except ImportError:
        return "pca"
    return "umap"


def load_input(path: str, meta: str | None = None) -> tuple[np.ndarray, pd.DataFrame | None, bool]:
    """Read a coordinates or vectors file: ``(array, metadata, is_coordinates)``.

    Parquet with ``x`` and ``y`` columns (what ``embedscope reduce`` writes) is read as
    coordinates, its other columns as metadata; any other input with 2 or 3 columns
    is coordinates too, wider input is vectors.
    """
    source = str(path)
    _check_regular(source, "input")
    if meta is not None:
        _check_regular(str(meta), "--meta")
    columns = None
    suffixes = [s.lower() for s in Path(source).suffixes]
    if (".parquet" in suffixes or ".pq" in suffixes) and Path(source).exists():
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(source).names
        except Exception as exc:
            raise DataError(f"{source} is not a readable parquet file: {exc}") from None
        if "x" in names and "y" in names:
            columns = ["x", "y", *(["z"] if "z" in names else [])]
    array, frame_meta = load_vectors(source, meta, columns=columns)
    return array, frame_meta, columns is not None or array.shape[1] <= 3


class _StageLog(logging.Handler):
    """Keeps the last progress line of the reducer for the waiting pages."""

    def __init__(self, data: AppData) -> None:
        super().__init__(logging.INFO)
        self.data = data

    def emit(self, record: logging.LogRecord) -> None:
        self.data.status = record.getMessage()


class AppData:
    """What every browser session shares: the points, metadata and original vectors.

    Parameters
    ----------
    path : str
        Coordinates (parquet from ``embedscope reduce``, ``.npy`` n x 2) or vectors.
    meta : str, optional
        Metadata file, one row per point.
    method : str, optional
        Reducer for vectors input ("umap", "tsne", "pca"); default UMAP if available.
        Given with coordinates input it is ignored (the message says so).
    color : str, optional
        Column to colour by at start.
    text_column : str, optional
        Column the search box matches (default: the first text column).
    labels_from : str, optional
        Category or text column whose names are written on the map's regions, at
        several zoom levels (:func:`embedscope.viz.labels.find_labels`, found once).
    verbose : bool, default=True
        Log the reducer's stages to stderr as well.
    live : bool, default=False
        Draw the layout while it optimises (``serve --live``): UMAP, t-SNE or PaCMAP
        of vectors input; coordinates and PCA are refused.
    n_components : int, default=2
        Dimensions vectors input is reduced to: 2 (the explorer) or 3 (the 3-D view).
        3-D coordinates always get the 3-D view (:mod:`embedscope.viz.app3d`).
    """

    def __init__(self, path: str, meta: str | None = None, method: str | None = None,
                 color: str | None = None, text_column: str | None = None, labels_from: str | None = None,
                 vectors: str | None = None, reducer_params: dict[str, Any] | None = None,
                 verbose: bool = True, live: bool = False, n_components: int = 2) -> None:
        from embedscope.viz.live import LIVE_METHODS

        if n_components not in (2, 3):
            raise ValueError(f"n_components must be 2 or 3 (a map or a 3-D view); got {n_components!r}")
        if live and n_components == 3:
            raise ValueError("--live draws a 2-D map while the reducer optimises; give --n-components 2")

        if live and method is not None and method not in LIVE_METHODS:
            raise ValueError(f"--live draws a layout while it optimises; --method {method} has no "
                             f"iterations to watch (use {', '.join(LIVE_METHODS)})")
        array, self.meta, is_coords = load_input(path, meta)
        if live and is_coords:
            raise DataError(f"--live draws a reducer's layout while it optimises, but {path} already holds "
                            f"{array.shape[1]}-D coordinates; give the vectors instead")
        array = _in_memory(array, str(path))
        if vectors is not None and not is_coords:
            raise DataError(f"--vectors goes with coordinates; {Path(path).name} holds {array.shape[1]}-dimensional "
                            "vectors already (their neighbours are in that space)")
        if reducer_params and is_coords:
            given = ", ".join(sorted(reducer_params))
            raise DataError(f"reducer parameters ({given}) apply to vectors reduced at start; "
                            f"{Path(path).name} holds coordinates")
        self.path = str(path)
        self.status = ""
        self.error: str | None = None
        self.vectors = None if is_coords else array
        self.vectors_source = str(path) if not is_coords else None
        if vectors is not None:
            self.vectors = self._load_vectors(vectors, array.shape[0])
            self.vectors_source = str(vectors)
        if is_coords and n_components != 2:
            raise DataError(f"--n-components applies to vectors reduced at start; {Path(path).name} holds "
                            f"{array.shape[1]}-D coordinates")
        self.is_3d = (array.shape[1] == 3) if is_coords else n_components == 3
        if self.is_3d:
            # The 3-D page has none of the 2-D explorer's tools that these feed.
            for flag, value in (("--labels-from", labels_from), ("--vectors", vectors)):
                if value is not None:
                    raise ValueError(f"{flag} feeds the 2-D explorer (region labels, a click's neighbours); "
                                     "the 3-D view has neither: reduce to 2-D coordinates for them")
        #: the shared 3-D view (:class:`embedscope.viz.view3d.View3D`), once ready
        self.view3d: Any = None
        from embedscope.io.write import read_layout_info

        #: how the layout was made (method and parameters), for the plot's title
        self.layout_info: dict[str, Any] | None = read_layout_info(path) if is_coords else None
        self.method = None if is_coords else (method or default_method())
        self.note = (f"coordinates from {Path(path).name}" if is_coords else
                     f"{array.shape[0]:,} vectors of {array.shape[1]} dims from {Path(path).name}, reduced with {self.method}"
                     + ("" if method else " (default; UMAP when installed, else PCA)"))
        if is_coords and method:
            self.note += f" (--method {method} ignored: the input is already coordinates)"
        if vectors is not None:
            self.note += f"; neighbours from the {self.vectors.shape[1]}-dimensional vectors of {Path(vectors).name}"
        if self.is_3d:
            self.note += "; 3-D coordinates, shown in a rotatable 3-D view"
        if color is not None and (self.meta is None or color not in self.meta.columns):
            raise DataError(f"no metadata column {color!r} to colour by; columns: {self.meta_columns}")
        if text_column is not None and text_column not in self.meta_columns:
            raise DataError(f"no metadata column {text_column!r} to search; columns: {self.meta_columns}")
        self.text_column = text_column or default_text_column(self.meta)
        # a 'quality' column colours the map unless told otherwise, else the first
        # column of a few categories (density when there is none)
        self.color = default_color(self.meta, color) or default_color_column(self.meta)
        self._search_values: Any = None
        self._search_lock = threading.Lock()
        if labels_from is not None and labels_from not in self.meta_columns:
            raise DataError(f"no metadata column {labels_from!r} to label the map from; columns: {self.meta_columns}")
        self.labels_from = labels_from
        self.labels: Any = None
        self.frame: pd.DataFrame | None = None
        self.device_xy: tuple[Any, Any] | None = None
        self._tree = None
        self._ready = threading.Event()
        self.live: Any = None
        if is_coords:
            self._finish(array)
        else:
            from embedscope.engine.reduce import make_reducer

            if live and self.method not in LIVE_METHODS:
                raise ValueError(f"--live needs UMAP, t-SNE or PaCMAP; {self.method} was chosen "
                                 "(install umap's dependencies or pass --method)")
            self.reducer = make_reducer(self.method, n_components=n_components, verbose=True,
                                        **(reducer_params or {}))
            if live:
                from embedscope.viz.live import LiveFit

                self.note += " (drawn live)"
                # started by serve() once the page's imports are done: they ran ~3x slower
                # against a fit holding the GIL, and the page took 40 s to open
                self.live = LiveFit(self.reducer, array, on_done=self._live_done)
            else:
                threading.Thread(target=self._reduce, args=(verbose,), daemon=True,
                                 name=f"{REDUCE_THREAD}-{self.method}").start()

    def _load_vectors(self, source: str, rows: int) -> np.ndarray:
        """The original vectors beside coordinates (``--vectors``), one row per point."""
        _check_regular(str(source), "--vectors")
        array, _ = load_vectors(str(source))
        if array.shape[0] != rows:
            raise DataError(f"--vectors {Path(source).name} has {array.shape[0]:,} rows but there are {rows:,} points")
        return _in_memory(array, str(source))

    def search(self, needle: str, mode: str = "substring") -> np.ndarray:
        """Rows whose search column matches (:func:`embedscope.viz.search.search_rows`)."""
        from embedscope.viz.search import search_rows, text_array

        if self.text_column is None:
            raise DataError("there is no text column to search (give --text-column)")
        with self._search_lock:  # made once, on the first search, and shared by every session
            if self._search_values is None:
                self._search_values = text_array(self.frame[self.text_column])
        return search_rows(self._search_values, needle, mode)

    @property
    def title(self) -> str:
        """The plot's title: method and main parameters where known, and the file's name."""
        from embedscope.viz._input import layout_title

        return layout_title(self.layout_info, Path(self.path).name)

    @property
    def meta_columns(self) -> list[str]:
        return [] if self.meta is None else [str(c) for c in self.meta.columns]

    @property
    def ready(self) -> bool:
        """True once the points can be drawn (or the reduction failed: see ``error``)."""
        return self._ready.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until ready; returns ``ready``."""
        return self._ready.wait(timeout)

    def _reduce(self, verbose: bool) -> None:
        handler = _StageLog(self)
        log = logging.getLogger("embedscope")
        log.addHandler(handler)
        self.status = f"starting {self.method} on {self.vectors.shape[0]:,} x {self.vectors.shape[1]}"
        try:
            coords = self.reducer.fit_transform(self.vectors)
            from embedscope.io.write import layout_info

            self.layout_info = layout_info(str(self.method), self.reducer)
            self._finish(coords)
        except Exception as exc:  # shown on the page instead of a blank plot
            self.error = f"{self.method} failed: {exc}"
            self._ready.set()
        finally:
            log.removeHandler(handler)

    def _live_done(self, coords: np.ndarray | None) -> None:
        """The live fit ended (its thread): the explorer's data, or the fit's error."""
        if coords is None:
            self.error = self.live.error
            self._ready.set()
            return
        if self.live.stopped:
            self.note += f"; {self.live.status}"
        try:
            self._finish(coords)
        except Exception as exc:
            self.error = f"{self.method} failed: {exc}"
            self._ready.set()

    def _finish(self, coords: Any) -> None:
        if self.is_3d:
            self._finish_3d(coords)
            return
        frame = plot_frame(coords, self.meta)
        # On a GPU the coordinates stay there too, once for every session: each zoom and
        # pan re-aggregates them on the device and only the pixels come back.
        self.device_xy = device_coordinates(coords) or _upload_coordinates(frame)
        if self.device_xy is None:
            # the CPU pass's spatial order, once here rather than in the first page's render
            sorted_points(frame)
        # Python str objects of each text column, made once and shared by every session's
        # hover. Without them each render turned the pixels' rows into new str objects
        # (pandas' Arrow strings hold none), ~30 MB per session at 200k points.
        self.hover_text = {str(c): frame[c].to_numpy(dtype=object) for c in frame.columns
                           if c not in ("x", "y")
                           and (frame[c].dtype.kind in "OSU" or isinstance(frame[c].dtype, pd.StringDtype))}
        if self.labels_from is not None:
            from embedscope.viz.labels import find_labels

            self.status = f"finding the regions to label from {self.labels_from!r}"
            self.labels = find_labels(frame["x"].to_numpy(), frame["y"].to_numpy(), frame[self.labels_from].to_numpy(),
                                      column=self.labels_from, levels=LABEL_LEVELS, width=900)
        self.frame = frame
        self._ready.set()

    def _finish_3d(self, coords: Any) -> None:
        """The frame (x, y, z and metadata) and the 3-D view every session draws from."""
        from embedscope.viz.view3d import View3D, frame_3d

        self.frame = frame_3d(coords, self.meta)
        self.status = "sampling and escaping the points of the 3-D view"
        self.view3d = View3D(self.frame, _prepared=True, title=self.title)
        self._ready.set()

    def nearest_row(self, x: float, y: float) -> int:
        """Row id of the point closest to ``(x, y)`` in the layout."""
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(np.column_stack([self.frame["x"].to_numpy(), self.frame["y"].to_numpy()]))
        return int(self._tree.query([x, y])[1])

    def neighbours(self, row: int, k: int = N_NEIGHBORS,
                   metric: str = "euclidean") -> tuple[np.ndarray, np.ndarray, str]:
        """(row ids, distances, space) of the ``k`` nearest neighbours of ``row``.

        In the original vector space when vectors were given (the input, or
        ``--vectors`` beside coordinates), else in the layout; by ``metric``.
        """
        from embedscope.kernels.knn import exact_knn

        if not 1 <= int(k) <= MAX_K:
            raise ValueError(f"k must be in [1, {MAX_K}]; got {k}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {list(METRICS)}; got {metric!r}")
        if self.vectors is not None:
            data = np.ascontiguousarray(self.vectors, dtype=np.float32)
            space = f"original vector space ({data.shape[1]} dimensions, {metric})"
        else:
            data = np.column_stack([self.frame["x"].to_numpy(), self.frame["y"].to_numpy()]).astype(np.float32)
            space = f"2-D layout ({metric}; no vectors were given)"
        k = min(int(k) + 1, data.shape[0])
        idx, dist = exact_knn(data, k, metric, queries=data[row : row + 1])
        keep = idx[0] != row  # the query point finds itself at distance 0
        return idx[0][keep][: k - 1].astype(np.int64), dist[0][keep][: k - 1], space


def _upload_coordinates(frame: pd.DataFrame) -> tuple[Any, Any] | None:
    """x and y on the GPU when one is usable (cupy, a device; not EMBEDSCOPE_DISABLE_GPU), else None."""
    from embedscope.backends import probe_cuda

    if not probe_cuda().ok:
        return None
    import cupy

    return cupy.asarray(frame["x"].to_numpy()), cupy.asarray(frame["y"].to_numpy())


def _table_bytes(frame: pd.DataFrame, fmt: str) -> io.BytesIO:
    buffer = io.BytesIO()
    if fmt == "parquet":
        frame.to_parquet(buffer, index=False)
    else:
        buffer.write(frame.to_csv(index=False).encode("utf-8"))
    buffer.seek(0)
    return buffer


def _served_plot_class(base: type) -> type:
    """``base`` (EmbeddingPlot) whose hover reads the server's shared text arrays."""

    class ServedPlot(base):  # type: ignore[misc, valid-type]
        shared_text: dict[str, np.ndarray] | None = None

        def _hover_values(self, column: str, index: np.ndarray) -> Any:
            shared = (self.shared_text or {}).get(column)
            if shared is None:
                return super()._hover_values(column, index)
            index = np.asarray(index)
            flat = index.reshape(-1)  # a 0-d index (one hovered pixel) too
            empty = flat < 0
            out = shared[np.where(empty, 0, flat)]  # pointers to the shared strings, no new str
            out[empty] = "-"
            # The figure hands this to xarray as a lazily read variable, which keeps the
            # array as it is; xarray re-inferred an object array given directly through
            # pandas, which in pandas 3 rebuilt every element as a new str (~30 MB).
            return out.reshape(index.shape)

    return ServedPlot


def legend_html(plot: Any) -> str:
    """The colour legend of ``plot`` (an :class:`EmbeddingPlot`) as an HTML list.

    Category names come from the user's data: each is escaped. The list scrolls within
    the window's height, so every category stays reachable however many there are.
    """
    import html

    from embedscope.viz.layers import LAYERS

    column = html.escape(str(plot.color)) if plot.color is not None else ""
    if plot.color_kind == "category":
        items = "".join(
            f"<li style='margin:1px 0;white-space:nowrap;overflow:hidden;text-overflow:ellipsis' "
            f"title='{html.escape(str(cat), quote=True)}'><span style='display:inline-block;width:11px;height:11px;"
            f"margin-right:6px;vertical-align:middle;background:{html.escape(colour)}'></span>"
            f"{html.escape(str(cat)[:MAX_LABEL_CHARS])}</li>"
            for cat, colour in plot._category_colors.items())
        note = f"<p style='font-size:11px;color:#555'>{html.escape(plot.note)}</p>" if plot.note else ""
        return (f"<div class='es-legend-list' style='font-size:12px'><b>{column}</b> "
                f"({len(plot._category_colors)})<ul style='list-style:none;padding:0;margin:4px 0;"
                f"max-height:calc(100vh - 90px);overflow-y:auto'>{items}</ul>{note}</div>")
    if plot.color_kind == "value":
        scale = "fixed 0 to 1" if plot.color in LAYERS else "mean per pixel, the view's range"
        return (f"<div style='font-size:12px'><b>{column}</b><br>{scale}: dark/blue is low, "
                f"yellow is high</div>")
    return "<div style='font-size:12px'><b>density</b><br>points per pixel (light: few, dark: many)</div>"


class Explorer:
    """One browser session's widgets around an :class:`EmbeddingPlot`."""

    def __init__(self, data: AppData) -> None:
        import panel as pn

        from embedscope.viz.figure import EmbeddingPlot

        self.data = data
        self._plot_cls = _served_plot_class(EmbeddingPlot)
        options = ["(density)", *data.meta_columns]
        self.color = pn.widgets.Select(label="Colour by", options=options,
                                       value=data.color or "(density)", width=220)
        self.search = pn.widgets.TextInput(label=f"Search {data.text_column or '(no text column)'}",
                                           placeholder="text to find", disabled=data.text_column is None, width=220,
                                           max_length=MAX_SEARCH_CHARS)
        self.search_mode = pn.widgets.RadioButtonGroup(options=list(MODES), value="substring", width=220,
                                                       disabled=data.text_column is None)
        self.metric = pn.widgets.Select(label="Neighbours by", options=list(METRICS), value="euclidean", width=130)
        self.k = pn.widgets.IntInput(label="k", value=N_NEIGHBORS, start=1, end=MAX_K, width=80)
        self.clear = pn.widgets.Button(label="Clear selection", width=220)
        self.show_labels = pn.widgets.Checkbox(
            label=f"Show labels ({data.labels_from})" if data.labels is not None else "Labels (serve --labels-from)",
            value=data.labels is not None, disabled=data.labels is None, width=220)
        self.fmt = pn.widgets.RadioButtonGroup(options=["csv", "parquet"], value="csv", width=220)
        self.download = pn.widgets.FileDownload(callback=self._export, filename="selection.csv",
                                                label="Export selection", width=220)
        self.selection_info = pn.pane.Markdown("Nothing selected.", css_classes=["es-selection"], width=240)
        self.view_info = pn.pane.Markdown("", css_classes=["es-view"])
        self.neighbour_title = pn.pane.Markdown(NEIGHBOURS_HINT,
                                                css_classes=["es-neighbours-title"])
        # escape=True: pandas writes every cell and column name as text, never as markup
        # a wide table scrolls inside its pane; the page never scrolls sideways
        self.neighbour_table = pn.pane.DataFrame(pd.DataFrame(), index=False, css_classes=["es-neighbours"],
                                                 max_rows=MAX_K + 1, escape=True, sizing_mode="stretch_width",
                                                 styles={"overflow-x": "auto"})
        # the plot fills the window beside the sidebar and follows its size
        self.pane = pn.pane.HoloViews(sizing_mode="stretch_both", min_height=300, min_width=300)
        # The colour legend is a list beside the plot, never on it: Bokeh's legend covered
        # the plot's right side and, with 45 categories, was cut off at the top.
        self.legend = pn.pane.HTML("", width=LEGEND_PX, sizing_mode="stretch_height", css_classes=["es-legend"],
                                   styles={"overflow-y": "auto"})
        self._make_plot(data.color)
        self.color.param.watch(lambda event: self._recolour(None if event.new == "(density)" else event.new), "value")
        self.search.param.watch(lambda event: self._search(event.new), "value")
        self.search_mode.param.watch(lambda _: self._search(self.search.value), "value")
        self.clear.on_click(lambda _: self._clear())
        self.show_labels.param.watch(lambda event: self.plot.show_labels(event.new), "value")
        self.fmt.param.watch(lambda event: setattr(self.download, "filename", f"selection.{event.new}"), "value")
        sidebar = pn.Column(
            pn.pane.Markdown(f"### embedscope\n{safe_text(data.note, 400)}\n\n{len(data.frame):,} points"),
            self.color, self.show_labels, self.search, self.search_mode, pn.Row(self.metric, self.k),
            self.clear, self.fmt, self.download, self.selection_info, width=260)
        if quality_text(data.frame):  # the overall figures of the per-point quality layer
            sidebar.insert(1, pn.pane.Markdown(quality_text(data.frame), css_classes=["es-quality"]))
        self.layout = pn.Row(sidebar, pn.Column(self.pane, self.view_info, self.neighbour_title, self.neighbour_table,
                                                sizing_mode="stretch_both", min_width=300),
                             self.legend, sizing_mode="stretch_both")

    # ----------------------------------------------------------------- plot
    def _make_plot(self, color: str | None) -> None:
        """The session's plot; later colours recolour it in place (_recolour)."""
        self.plot = self._plot_cls(self.data.frame, color=color, _prepared=True, _device_xy=self.data.device_xy,
                                   responsive=True, title=self.data.title, legend=False,
                                   labels=self.data.labels, show_labels=self.show_labels.value,
                                   **layer_style(color))
        self.plot.shared_text = self.data.hover_text
        self.plot.on_select(self._on_select)
        self.plot.range.add_subscriber(self._on_range)
        import holoviews as hv

        self.tap = hv.streams.Tap(source=self.plot.base)
        self.tap.add_subscriber(self._on_tap)
        self.pane.object = self.plot.view
        self.legend.object = legend_html(self.plot)
        self._on_range()

    def _recolour(self, color: str | None) -> None:
        """Colour the plot by ``color`` in place: the browser gets one new image, not a new
        figure (at 10M points, building the new figure's views took the page ~0.2 s)."""
        self.plot.set_color(color, **layer_style(color))
        self.legend.object = legend_html(self.plot)

    def _on_range(self, x_range: Any = None, y_range: Any = None, **_: Any) -> None:
        # the plot measured the data's extent once; min/max of 10M rows per zoom cost ~20 ms
        x_range = x_range or self.plot.extent[0]
        y_range = y_range or self.plot.extent[1]
        self.view_info.object = (f"View x [{x_range[0]:.4g}, {x_range[1]:.4g}], "
                                 f"y [{y_range[0]:.4g}, {y_range[1]:.4g}]")

    # ------------------------------------------------------------ selection
    def _clear(self) -> None:
        """Nothing selected and no neighbour list (it listed part of the selection)."""
        self.plot.clear_selection()
        self.neighbour_title.object = NEIGHBOURS_HINT
        self.neighbour_table.object = pd.DataFrame()

    def _on_select(self, ids: np.ndarray) -> None:
        shown = ", ".join(map(str, ids[:8])) + (", ..." if ids.size > 8 else "")
        self.selection_info.object = f"Selected {ids.size:,} point(s)" + (f": rows {shown}" if ids.size else ".")

    def _search(self, text: str) -> None:
        if self.data.text_column is None:
            return
        needle = text.strip()
        if not needle:
            self.plot.clear_selection()
            return
        mode = self.search_mode.value
        try:
            # the browser's maxlength stops typing past the bound; a hand-made message is refused here
            matches = self.data.search(needle, mode)
        except ValueError as exc:
            self.selection_info.object = f"{safe_text(exc, 300)}. Nothing searched."
            return
        self.plot.select(matches)
        self.selection_info.object = (f"Search \"{safe_text(needle)}\" ({mode}): "
                                      f"{matches.size:,} match(es) highlighted.")

    def _on_tap(self, x: float | None = None, y: float | None = None, **_: Any) -> None:
        if x is None or y is None or not (np.isfinite(x) and np.isfinite(y)):
            return  # a tap event is browser input: a NaN would index past the last row
        row = self.data.nearest_row(x, y)
        try:
            ids, dist, space = self.data.neighbours(row, k=int(self.k.value or N_NEIGHBORS),
                                                    metric=self.metric.value)
        except Exception as exc:  # one failed click, not a dead session
            log.warning("neighbours of row %d failed: %s", row, exc)
            self.neighbour_title.object = f"Could not list the neighbours of row {row}: {safe_text(exc, 300)}"
            return
        table = self.data.frame.iloc[ids].reset_index(drop=True)
        table.insert(0, "distance", dist)
        table.insert(0, "row", ids)
        label = ""
        if self.data.text_column:
            label = f" ({safe_text(self.data.frame[self.data.text_column].iloc[row])})"
        self.neighbour_title.object = f"Nearest neighbours of row {row}{label} in the {space}:"
        self.neighbour_table.object = table
        self.plot.select(np.concatenate([[row], ids]))

    def _export(self) -> io.BytesIO:
        return _table_bytes(self.plot.selection_frame(), self.fmt.value)


def _explorer(data: AppData) -> Any:
    """The page of ready data: the 2-D explorer, or the 3-D view of 3-D coordinates."""
    if data.is_3d:
        from embedscope.viz.app3d import Explorer3D

        return Explorer3D(data).layout
    return Explorer(data).layout


def make_session(data: AppData, gate: Any = None) -> Any:
    """The page of one browser session: progress while reducing, then the explorer.

    With ``gate`` (a :class:`embedscope.viz.server.SessionGate`), a session past its
    limit gets a short notice instead of the widgets, and a session's slot is given
    back when Bokeh discards it.
    """
    import panel as pn

    if gate is not None:
        if not gate.acquire():
            return pn.pane.Markdown(f"### embedscope\n{gate.limit} sessions are open, the most this server allows "
                                    "(`--max-sessions`). Close a tab and reload in a minute.")
        pn.state.on_session_destroyed(lambda _context: gate.release())
    if data.ready and data.error is None:
        return _explorer(data)
    if data.live is not None:
        return _live_session(data)
    holder = pn.Column()
    indicator = pn.indicators.Progress(active=True, width=400)
    status = pn.pane.Markdown(css_classes=["es-status"])
    holder[:] = [pn.pane.Markdown(f"### embedscope\n{safe_text(data.note, 400)}"), indicator, status]

    def poll() -> None:
        status.object = safe_text(data.error, 1000) if data.error else f"Reducing: {safe_text(data.status, 300)}"
        if data.error:
            indicator.active = False
            callback.stop()
        elif data.ready:
            callback.stop()
            holder[:] = [_explorer(data)]

    callback = pn.state.add_periodic_callback(poll, period=500)
    poll()
    return holder


def _live_session(data: AppData) -> Any:
    """A page that draws the layout while it optimises, then becomes the explorer."""
    import panel as pn

    from embedscope.viz.live import LiveView

    holder = pn.Column(sizing_mode="stretch_width")

    def explorer() -> None:
        if data.error is None:
            holder[:] = [Explorer(data).layout]
        else:
            holder.append(pn.pane.Markdown(safe_text(data.error, 1000), css_classes=["es-status"]))

    view = LiveView(data.live, data.meta, data.color, title=Path(data.path).name, on_done=explorer,
                    is_done=lambda: data.ready)
    holder[:] = [pn.pane.Markdown(f"### embedscope\n{safe_text(data.note, 400)}"), view.layout]
    view.start()
    return holder


def serve(data: AppData, *, port: int = 5006, host: str = "127.0.0.1", show: bool = False,
          allow_hosts: Any = (), max_sessions: int | None = None, on_ready: Any = None) -> None:
    """Run the app until interrupted.

    Only requests addressed to this server's names (``host``, plus ``localhost`` for a
    loopback bind, plus ``allow_hosts``) are answered; see :mod:`embedscope.viz.server`.

    Parameters
    ----------
    data : AppData
        What every session shows; built once, shared by all sessions.
    port, host : int, str
        Where to listen (port 0: a free one).
    show : bool
        Open a browser tab.
    allow_hosts : sequence of str
        Extra host names requests may use (a reverse proxy's or DNS name).
    max_sessions : int, optional
        Live sessions at most; default :data:`embedscope.viz.server.DEFAULT_MAX_SESSIONS`.
    on_ready : callable, optional
        Called with the bound port once the server listens.
    """
    from embedscope.viz.figure import _hv
    from embedscope.viz.server import DEFAULT_MAX_SESSIONS, SessionGate, run_server

    # HoloViews' Bokeh plotting defines DataModel types (its hover's HoverModel). Bokeh
    # sends a page the definitions of the DataModels known when the page's document is
    # first serialised, never later: a page opened while vectors are being reduced (its
    # document has only the progress widgets) could not resolve the plot's hover model
    # when the plot arrived, and stayed on "Reducing" until reloaded. Importing them
    # before the first page is served puts them in every page's definitions.
    _hv()
    if data.live is not None and not data.live.started:
        import panel  # noqa: F401  (the sessions' imports, before the fit takes the GIL)

        data.live.start()
    gate = SessionGate(DEFAULT_MAX_SESSIONS if max_sessions is None else max_sessions)
    run_server(lambda: make_session(data, gate), host=host, port=port, allow=list(allow_hosts), gate=gate,
               show=show, on_ready=on_ready)
