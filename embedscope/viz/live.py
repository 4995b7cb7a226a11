"""The layout drawn while it optimises: ``embedscope serve --live`` and ``EmbeddingPlot.live``.

:class:`LiveFit` runs a reducer's ``fit`` in a background thread and keeps a host copy
of the layout from the reducer's epoch callback, at most one copy every ``every``
seconds (a copy of 100k x 2 floats costs ~0.1 ms, but a cupy layout crosses the bus,
and a copy every epoch would be wasted on a view that polls every 0.4 s). Its stop
flag is the callback's return value, which the UMAP, PaCMAP and t-SNE drivers read as
"stop after this step, keep the layout".

:class:`LiveView` is the page around it: a datashaded raster of the latest snapshot,
redrawn by a periodic callback when a newer one has arrived, a progress bar, the
current stage and a Stop button. When the fit ends (or is stopped) it calls
``on_done``, which the server uses to swap in the normal explorer and a notebook to
swap in an :class:`~embedscope.viz.figure.EmbeddingPlot` of the final layout.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from embedscope._array import to_host
from embedscope.viz._colours import hex_rgb

__all__ = ["LIVE_METHODS", "LiveFit", "LiveView", "Snapshot"]

#: Reducers whose epochs call back (PCA has no iterations to watch).
LIVE_METHODS = ("umap", "tsne", "pacmap")
#: Seconds between two polls of the view (the redraw period), and between two snapshots.
#: Snapshots come twice as often as polls, so each poll finds a new one: with both at
#: the same period their phases drift and a poll can find none.
POLL_S = 0.4
SNAPSHOT_S = 0.2
#: Opacity of the sparsest non-empty pixel (as the explorer's ``MIN_ALPHA``).
MIN_ALPHA = 100
#: t-SNE iterations between live callbacks. Each costs a KL pass over P's edges and a
#: host copy; an FFT iteration at 100k points takes ~0.1 s on 2 cores, so the default 50
#: gave a frame every ~5 s.
TSNE_EVERY_ITERS = 10


class Snapshot(NamedTuple):
    """One copy of the layout during a fit."""

    layout: np.ndarray
    """float32 host array (n, 2), owned by the snapshot."""
    step: int
    """Epochs (UMAP), iterations (t-SNE, PaCMAP) run when it was taken."""
    total: int
    """Steps the fit was asked for."""
    version: int
    """Counts up from 1 with each new snapshot."""


class _StageLog(logging.Handler):
    """Keeps the reducer's last progress line (its stage) for the view."""

    def __init__(self, fit: LiveFit) -> None:
        super().__init__(logging.INFO)
        self.fit = fit

    def emit(self, record: logging.LogRecord) -> None:
        self.fit.status = record.getMessage()


def _check_reducer(reducer: Any) -> str:
    """The reducer's name when it can be watched; a ValueError naming the problem otherwise.

    The backend is the registry's to judge: a reducer with a callback is never given to
    cuML by ``auto``, and an explicit ``backend="cuml"`` fails in ``fit`` with the reason
    (``LiveFit.error``).
    """
    name = getattr(reducer, "_reducer_name", None)
    if name not in LIVE_METHODS or not hasattr(reducer, "callback"):
        raise ValueError(f"a live fit takes an embedscope UMAP, TSNE or PaCMAP; got {type(reducer).__name__} "
                         "(PCA has no iterations to watch)")
    if reducer.n_components != 2:
        raise ValueError(f"a live fit draws a 2-D layout; the reducer has n_components={reducer.n_components!r}")
    return str(name)


class LiveFit:
    """A reducer fitting in a background thread, with the latest layout kept for a view.

    The reducer's ``callback`` (and, for t-SNE, ``callbacks_every_iters``) are set for
    the fit and restored afterwards; a callback the reducer already had is still
    called (at its own t-SNE cadence), and its true return value still stops the fit.

    Parameters
    ----------
    reducer : UMAP, TSNE or PaCMAP
        An embedscope reducer with ``n_components=2``; fitted in place.
    X : array of shape (n_samples, n_features)
        Vectors; checked here (a :class:`embedscope.errors.DataError` before any thread starts).
    y : array, optional
        Passed to ``fit`` (supervised UMAP).
    every : float, default=0.2
        Seconds between two snapshots; the first epoch always gives one.
    on_done : callable, optional
        Called in the fit's thread once it ends, with the fitted embedding (host
        array) or None when the fit failed (see ``error``).

    Attributes
    ----------
    method : str
        ``"umap"``, ``"tsne"`` or ``"pacmap"``.
    status : str
        The reducer's last progress line (its stage), or what the fit is doing.
    error : str or None
        Why the fit failed.
    embedding : ndarray or None
        The final layout (host, float32) once done.
    stopped : bool
        True when :meth:`stop` ended the fit early.
    copies : int
        Snapshots taken; ``copy_seconds`` is the time they cost the fit's thread.
    fit_seconds : float
        Wall time of ``fit``.
    """

    def __init__(self, reducer: Any, X: Any, y: Any = None, *, every: float = SNAPSHOT_S,
                 on_done: Callable[[np.ndarray | None], None] | None = None) -> None:
        from embedscope.io.validate import validate_vectors

        self.method = _check_reducer(reducer)
        if isinstance(every, bool) or not isinstance(every, int | float) or not 0 < every <= 60:
            raise ValueError(f"every={every!r} must be a number of seconds in (0, 60]")
        self.X = validate_vectors(X, min_rows=4)
        self.reducer, self.y, self.every, self.on_done = reducer, y, float(every), on_done
        self.status = f"starting {self.method} on {self.X.shape[0]:,} x {self.X.shape[1]:,}"
        self.error: str | None = None
        self.embedding: np.ndarray | None = None
        self.stopped = False
        self.copies, self.copy_seconds, self.fit_seconds = 0, 0.0, 0.0
        self._stop = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._last_copy = -np.inf
        self._step, self._total = 0, 0
        self._thread: threading.Thread | None = None
        self._chained = self._callbacks()

    # ---------------------------------------------------------------- control
    def start(self) -> LiveFit:
        """Start the fit in a daemon thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("this LiveFit has already started")
        self._thread = threading.Thread(target=self._run, name=f"embedscope-live-{self.method}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the fit to stop after its current step; the layout so far is kept."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the fit ends (or ``timeout`` seconds); True once it has."""
        return self._done.wait(timeout)

    @property
    def started(self) -> bool:
        """True once :meth:`start` was called."""
        return self._thread is not None

    @property
    def done(self) -> bool:
        """True once the fit has ended, stopped or failed."""
        return self._done.is_set()

    @property
    def progress(self) -> tuple[int, int]:
        """(steps run, steps asked for); (0, 0) before the first epoch."""
        return self._step, self._total

    def snapshot(self) -> Snapshot | None:
        """The latest layout copy, or None before the first epoch."""
        with self._lock:
            return self._snapshot

    # ---------------------------------------------------------------- the fit
    def _keep(self, step: int, total: int, layout: Any, *, owned: bool = False) -> None:
        start = time.perf_counter()
        host = to_host(layout)
        # t-SNE hands over a fresh host copy; other drivers their live array, written next epoch
        copy = np.ascontiguousarray(host, dtype=np.float32) if owned else np.array(host, dtype=np.float32)
        with self._lock:
            version = 1 if self._snapshot is None else self._snapshot.version + 1
            self._snapshot = Snapshot(copy, step, total, version)
        self.copies += 1
        self.copy_seconds += time.perf_counter() - start

    def _on_step(self, step: int, total: int, layout: Any, owned: bool = False) -> bool:
        self._step, self._total = step, total
        now = time.monotonic()
        if now - self._last_copy >= self.every:  # the final layout is kept after the fit
            self._last_copy = now
            self._keep(step, total, layout, owned=owned)
        return self._stop.is_set()

    def _callbacks(self) -> dict[str, Any]:
        """The reducer parameters set for the fit: our callback, chained to the user's."""
        user = self.reducer.callback
        if self.method != "tsne":
            def epoch(step: int, total: int, layout: Any) -> bool:
                asked = bool(user(step, total, layout)) if user is not None else False
                return self._on_step(step, total, layout) or asked

            return {"callback": epoch}
        from embedscope.engine.base import check_int

        # checked here, not first in the thread: a bad value is refused to the caller
        total = check_int(self.reducer.n_iter, "n_iter", 1)
        user_every = check_int(self.reducer.callbacks_every_iters, "callbacks_every_iters", 1)
        # every iteration the user's callback is due at is one of ours too
        every = math.gcd(TSNE_EVERY_ITERS, user_every) if user is not None else TSNE_EVERY_ITERS

        def iteration(it: int, kl: float, layout: np.ndarray) -> bool:
            asked = bool(user(it, kl, layout)) if user is not None and it % user_every == 0 else False
            return self._on_step(it, total, layout, owned=True) or asked

        return {"callback": iteration, "callbacks_every_iters": every}

    def _run(self) -> None:
        reducer, chained = self.reducer, self._chained
        saved = {name: getattr(reducer, name) for name in chained}
        handler = _StageLog(self)
        logger = logging.getLogger("embedscope")
        logger.addHandler(handler)
        result: np.ndarray | None = None
        start = time.perf_counter()
        try:
            reducer.set_params(**chained)
            reducer.fit(self.X) if self.y is None else reducer.fit(self.X, self.y)
            self.fit_seconds = time.perf_counter() - start
            result = np.ascontiguousarray(to_host(reducer.embedding_), dtype=np.float32)
            # a stop asked for after the last step ended nothing early
            self.stopped = self._stop.is_set() and self._step < self._total
            step = self._step if self.stopped else max(self._total, self._step)
            self._keep(step, self._total or step, result, owned=True)  # the final layout is the last frame
            self.embedding = result
            self.status = (f"stopped after {step:,} of {self._total:,} steps" if self.stopped
                           else f"done in {self.fit_seconds:.1f} s")
        except Exception as exc:  # shown on the page instead of a frozen frame
            self.fit_seconds = time.perf_counter() - start
            self.error = f"{self.method} failed: {exc}"
        finally:
            reducer.set_params(**saved)
            logger.removeHandler(handler)
            self._done.set()
        if self.on_done is not None:
            self.on_done(result)



def _inert(text: Any, limit: int) -> str:
    """``text`` cut to ``limit`` characters and escaped for an HTML pane (no markup survives)."""
    import html

    text = " ".join(str(text).split())
    return html.escape(text if len(text) <= limit else text[: limit - 1] + "\u2026")


def _padded(values: np.ndarray) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    if not hi > lo:  # one point, or all on a line: a unit-wide view around it
        lo, hi = lo - 0.5, hi + 0.5
    margin = 0.02 * (hi - lo)
    return lo - margin, hi + margin


class LiveView:
    """A page that redraws a :class:`LiveFit`'s layout while it optimises.

    Parameters
    ----------
    fit : LiveFit
        Started or not; the view only reads it (and stops it from its button).
    meta : DataFrame, optional
        One row per point; ``color`` names a column of it.
    color : str, optional
        A categorical column to colour the points by (others draw density).
    title : str, default=""
    width, height : int, default=800, 600
        Raster size in pixels.
    period_ms : int, default=400
        Milliseconds between two polls of the fit.
    on_done : callable, optional
        Called (in the session's thread) once ``is_done()`` is true; replaces the view.
    is_done : callable, optional
        When the page may hand over; default: the fit has ended.

    Attributes
    ----------
    layout : panel.Column
        The page: put it in a Panel template, ``.servable()`` it, or display it.
    frames : int
        Frames drawn; ``render_seconds`` is the time spent drawing them.
    plot : EmbeddingPlot or None
        The final plot, where ``on_done`` made one (:meth:`EmbeddingPlot.live`).
    """

    def __init__(self, fit: LiveFit, meta: Any = None, color: str | None = None, *, title: str = "",
                 width: int = 800, height: int = 600, period_ms: int = int(POLL_S * 1000),
                 on_done: Callable[[], None] | None = None, is_done: Callable[[], bool] | None = None) -> None:
        import panel as pn

        from embedscope.viz.aggregate import check_raster_size

        self.fit = fit
        self.width, self.height = check_raster_size(width, height)
        self.period_ms = int(period_ms)
        self.on_done, self.is_done = on_done, is_done or (lambda: fit.done)
        self._codes, self._palette = self._colours(meta, color, fit.X.shape[0])
        self._raster = (max(1, self.width // 2), max(1, self.height // 2))
        import colorcet as cc

        self._lut = np.array([hex_rgb(c) for c in cc.blues[110:]], dtype=np.float64)[
            np.linspace(0, len(cc.blues[110:]) - 1, 256).astype(np.int64)]
        self.frames, self.render_seconds = 0, 0.0
        self._drawn = 0
        self._finished = False
        self.plot: Any = None
        self._callback: Any = None
        # A plain Bokeh image glyph whose source is replaced per frame: through a
        # HoloViews DynamicMap each frame also cost ~0.1 s of HoloViews/param
        # bookkeeping (profiled at 100k points), CPU taken from the fit.
        from bokeh.models import ColumnDataSource, Range1d
        from bokeh.plotting import figure

        blank = self._pack(np.full((self._raster[1], self._raster[0], 4), 255, dtype=np.uint8))
        self.source = ColumnDataSource({"image": [blank], "x": [0.0], "y": [0.0], "dw": [1.0], "dh": [1.0]})
        self.figure = figure(width=self.width, height=self.height, title=title, x_range=Range1d(0, 1),
                             y_range=Range1d(0, 1), tools="", toolbar_location=None, x_axis_label="x",
                             y_axis_label="y", name="es-live-figure")
        self.figure.image_rgba(image="image", x="x", y="y", dw="dw", dh="dh", source=self.source)
        self.pane = pn.pane.Bokeh(self.figure, css_classes=["es-live-plot"])
        self.bar = pn.indicators.Progress(active=True, max=100, width=400, css_classes=["es-live-progress"])
        self.stop_button = pn.widgets.Button(label="Stop", width=120, css_classes=["es-live-stop"])
        self.stop_button.on_click(lambda _: self._stop())
        # HTML of escaped text: log lines and errors may quote the user's file names
        self.status = pn.pane.HTML("", css_classes=["es-live-status"])
        self.layout = pn.Column(pn.Row(self.bar, self.stop_button), self.status, self.pane)
        self.poll()

    @staticmethod
    def _colours(meta: Any, color: str | None, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        from embedscope.viz._input import color_kind
        from embedscope.viz.aggregate import limit_categorical

        if color is None or meta is None or color not in meta.columns or len(meta) != n:
            return None, None
        if color_kind(meta[color]) != "category":
            return None, None  # value colours need a span the live frames do not have yet
        grouped, plan = limit_categorical(meta[color], color)
        palette = np.array([hex_rgb(c) for c in plan.colors().values()], dtype=np.float32)
        return np.asarray(grouped.codes, dtype=np.int32), palette

    # ---------------------------------------------------------------- drawing
    def frame_rgba(self, data: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        """One frame as (RGBA rows bottom-up, (x0, y0, x1, y1)): the layout over its own extent.

        Plain numpy (bincount and a lookup table), not datashader: its first
        ``tf.spread`` compiled for ~17 s and each frame's ``eq_hist`` shading cost
        ~0.2 s on the loaded 2-core machine, time taken from the fit being watched.
        The raster has a quarter of the plot's pixels (each point ~2 x 2 screen pixels),
        which keeps a frame near 0.5 MB on the websocket.
        """
        width, height = self._raster
        finite = np.isfinite(data).all(axis=1)
        x, y = data[finite, 0].astype(np.float64), data[finite, 1].astype(np.float64)
        if x.size == 0:
            return np.full((height, width, 4), 255, dtype=np.uint8), (0.0, 0.0, 1.0, 1.0)
        (x0, x1), (y0, y1) = _padded(x), _padded(y)
        col = np.minimum(((x - x0) * (width / (x1 - x0))).astype(np.int64), width - 1)
        row = np.minimum(((y - y0) * (height / (y1 - y0))).astype(np.int64), height - 1)
        pixel = row * width + col  # Bokeh's image rows run bottom-up, as y does
        counts = np.bincount(pixel, minlength=width * height).astype(np.float64)
        filled = counts > 0
        # cube-root shading: dense cores stay distinguishable without eq_hist's sort
        level = np.cbrt(counts / max(counts.max(), 1.0))
        rgba = np.empty((width * height, 4), dtype=np.uint8)
        if self._codes is not None:
            codes = self._codes[finite]
            for channel in range(3):
                mix = np.bincount(pixel, weights=self._palette[codes, channel], minlength=width * height)
                rgba[:, channel] = np.where(filled, mix / np.where(filled, counts, 1.0), 255.0).astype(np.uint8)
        else:
            lut = self._lut[np.minimum((level * 255).astype(np.int64), 255)]
            rgba[:, :3] = np.where(filled[:, None], lut, 255)
        alpha = np.where(filled, MIN_ALPHA + (255 - MIN_ALPHA) * level, 0.0)
        # composited on white here: the browser then draws an opaque image
        for channel in range(3):
            rgba[:, channel] = (rgba[:, channel] * alpha + 255.0 * (255.0 - alpha)) / 255.0
        rgba[:, 3] = 255
        return rgba.reshape(height, width, 4), (x0, y0, x1, y1)

    @staticmethod
    def _pack(rgba: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(rgba).view(np.uint32).reshape(rgba.shape[:2])

    def draw(self, data: np.ndarray) -> None:
        """Show ``data`` (n x 2) as the current frame."""
        rgba, (x0, y0, x1, y1) = self.frame_rgba(data)
        self.source.data = {"image": [self._pack(rgba)], "x": [x0], "y": [y0], "dw": [x1 - x0], "dh": [y1 - y0]}
        self.figure.x_range.update(start=x0, end=x1)
        self.figure.y_range.update(start=y0, end=y1)

    # ---------------------------------------------------------------- polling
    def _stop(self) -> None:
        self.fit.stop()
        self.stop_button.disabled = True
        self.stop_button.label = "Stopping"

    def _status_text(self, step: int, total: int) -> str:
        if self.fit.error:
            return _inert(self.fit.error, 1000)
        if total:
            unit = "epoch" if self.fit.method == "umap" else "iteration"
            head = f"{self.fit.method}: {unit} {step:,} of {total:,}"
            return head + (" (stopping)" if self.fit._stop.is_set() and not self.fit.done else "")
        return f"{self.fit.method}: {_inert(self.fit.status, 300)}"

    def poll(self) -> bool:
        """Draw the newest snapshot if there is one; hand over once done. True while running."""
        if self._finished:
            return False
        snap = self.fit.snapshot()
        step, total = self.fit.progress
        drew = snap is not None and snap.version != self._drawn
        if drew:
            start = time.perf_counter()
            self.draw(snap.layout)
            self.render_seconds += time.perf_counter() - start
            self.frames += 1
            self._drawn = snap.version
            step, total = max(step, snap.step), max(total, snap.total)
        if total:
            self.bar.active = False
            self.bar.value = round(100 * min(step, total) / total)
        self.status.object = self._status_text(step, total)
        if self.fit.error:
            self.bar.active = False
            self.stop_button.disabled = True
            self._finish(hand_over=False)
            return False
        # Never in the poll that drew the final frame: the browser would get the frame and
        # its removal in one batch, and the layout the fit ended on would never be shown.
        if self.is_done() and not drew and (snap is None or snap.version == self._drawn):
            self.stop_button.disabled = True
            self._finish(hand_over=True)
            return False
        return True

    def _finish(self, hand_over: bool) -> None:
        self._finished = True
        if self._callback is not None:
            self._callback.stop()
            self._callback = None
        if hand_over and self.on_done is not None:
            self.on_done()

    def start(self) -> LiveView:
        """Poll every ``period_ms`` in the current Panel session (a server page or a notebook)."""
        import panel as pn

        if self._callback is None and not self._finished:
            self._callback = pn.state.add_periodic_callback(self.poll, period=self.period_ms)
        return self

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        self.start()
        return self.layout._repr_mimebundle_(include, exclude)
