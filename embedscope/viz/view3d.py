"""Rotatable 3-D views of 3-D layouts: Plotly ``Scatter3d`` (WebGL) with colour and hover.

A 2-D map of 3-D coordinates hides z, so 3-D layouts get their own view instead of a
silent x, y projection: ``embedscope plot coords3d.parquet --out view.html`` writes it
as one self-contained page (plotly.js inlined, nothing fetched at run time) and
``embedscope serve`` shows it in the app.

Every point drawn travels to the browser (WebGL draws points, not a server-side
raster), so a view draws at most ``max_points`` of them: above that, a seeded uniform
sample, said in the title. Colours, legend and colour bar describe the points drawn.

Metadata comes from the user's files and Plotly reads its hover text and names as a
small HTML subset (``<b>``, ``<a href>``, ...): every value, column name, category and
title is HTML-escaped (and ``%{`` made inert in hover templates) before Plotly sees it.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embedscope._array import to_host
from embedscope.errors import DataError
from embedscope.io.write import atomic_output, coords_frame
from embedscope.viz._input import checked_points, coordinates_of, with_color

__all__ = ["DEFAULT_MAX_POINTS", "MAX_POINTS_BOUND", "View3D", "figure_3d", "frame_3d", "save_html_3d"]

#: Points a view draws by default ("a few hundred thousand"): a 15 MB page at 200k. The
#: browser's GPU draws them; without one (software WebGL, SwiftShader) a frame of 50k
#: points took seconds on a loaded 2-core machine: benchmarks/view3d.py, --max-points.
DEFAULT_MAX_POINTS = 200_000
#: Most points a view may be asked to draw: each one is serialised into the page.
MAX_POINTS_BOUND = 2_000_000
#: Metadata columns in the hover (as the 2-D maps' default) and characters per value.
MAX_HOVER_COLUMNS = 6
MAX_HOVER_CHARS = 120
#: Colour of the points when nothing colours them (the dark end of the 2-D density map).
DENSITY_COLOUR = "#1f5fa8"
NAN_COLOUR = "#b0b0b0"
#: plotly.js options of every 3-D page. plotly.js 3 shows a "Share chart..." button by
#: default that posts the figure (the user's data) to a Chart Studio server: never here.
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "showSendToCloud": False}


def _inert(text: Any, limit: int = MAX_HOVER_CHARS) -> str:
    """``text`` as one escaped line Plotly shows literally: no tag and no ``%{...}`` template survives.

    Plotly decodes character references for display after it has split the text into
    tags, so ``&lt;img&gt;`` reads as ``<img>`` and is never an element. ``%``, ``{`` and
    ``}`` become references too, so a column name cannot open a hover-template field.
    """
    value = " ".join(str(text).split())
    if len(value) > limit:
        value = value[: limit - 1] + "\u2026"
    return html.escape(value, quote=True).replace("%", "&#37;").replace("{", "&#123;").replace("}", "&#125;")


def _escape_column(values: np.ndarray) -> np.ndarray:
    """Escaped hover text of one column's values (object array); cut to ``MAX_HOVER_CHARS``."""
    if values.dtype.kind == "f":  # 6 significant digits: a float32's repr as float64 runs to 17
        return np.array([f"{v:.6g}" for v in values.tolist()], dtype=object)
    return np.array([_inert(v) for v in values.tolist()], dtype=object)


def frame_3d(data: Any, meta: Any = None) -> pd.DataFrame:
    """A DataFrame of finite ``x``, ``y``, ``z`` and the metadata columns.

    Parameters
    ----------
    data : array of shape (n, 3), DataFrame with ``x``, ``y``, ``z``, or fitted reducer
        numpy or cupy (copied to the host).
    meta : DataFrame or array of shape (n,), optional
        One row per point (an array becomes the column ``label``).

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    DataError
        Not n x 3 numbers, no points, NaN or inf coordinates, or metadata of another length.
    """
    own_meta = None
    if isinstance(data, pd.DataFrame):
        if not {"x", "y", "z"} <= set(data.columns):
            raise DataError(f"a DataFrame for a 3-D view needs columns 'x', 'y' and 'z'; it has {list(data.columns)[:12]}")
        rest = [c for c in data.columns if c not in ("x", "y", "z")]
        coords = data[["x", "y", "z"]].to_numpy()
        own_meta = data[rest].reset_index(drop=True) if rest else None
    else:
        coords = np.asarray(to_host(coordinates_of(data)[0]))
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise DataError(f"a 3-D view needs coordinates of shape (n, 3); got {tuple(coords.shape)} "
                        "(2-D coordinates: use plot / save_png / save_html)")
    extra = checked_points(coords, own_meta, meta, drawn=3)
    # float32 is ample for a screen and halves the page; float64 stays as given.
    xyz = np.asarray(coords, dtype=np.float64 if coords.dtype == np.float64 else np.float32)
    out = coords_frame(xyz, extra)
    return out.loc[:, ~out.columns.duplicated()]


def sample_rows(n: int, max_points: int, random_state: int = 0) -> np.ndarray:
    """Sorted row ids of a seeded uniform sample of ``max_points`` of ``n`` (all rows when ``n`` fits)."""
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n, size=max_points, replace=False)).astype(np.int64)


def _check_max_points(max_points: Any) -> int:
    try:
        value = int(max_points)
    except (TypeError, ValueError):
        raise ValueError(f"max_points must be a whole number; got {max_points!r}") from None
    if value != max_points or not 1 <= value <= MAX_POINTS_BOUND:
        raise ValueError(f"max_points must be a whole number in [1, {MAX_POINTS_BOUND:,}]; got {max_points!r}")
    return value


class View3D:
    """The points of a 3-D layout, sampled once, drawn as Plotly figures coloured by any column.

    Parameters
    ----------
    data : array of shape (n, 3), DataFrame with ``x``, ``y``, ``z``, or fitted reducer
    meta : DataFrame or array of shape (n,), optional
        Per-point metadata: hover text and colour columns.
    max_points : int, default=DEFAULT_MAX_POINTS
        Most points drawn; above it a seeded uniform sample (the title says so). At most
        ``MAX_POINTS_BOUND``.
    random_state : int, default=0
        Seed of that sample.
    title : str, optional
        The figure's title (escaped; the sample note is added under it).
    hover_columns : list of str, optional
        Metadata columns in the hover, after the row id (default: the first six).

    Attributes
    ----------
    frame : pandas.DataFrame
        ``x``, ``y``, ``z`` and the metadata of every point.
    rows : ndarray of int64
        Row ids of the points drawn (sorted).
    note : str or None
        The sample, in words, when not every point is drawn.
    """

    def __init__(self, data: Any, meta: Any = None, *, max_points: int = DEFAULT_MAX_POINTS,
                 random_state: int = 0, title: str | None = None, hover_columns: list[str] | None = None,
                 _prepared: bool = False) -> None:
        max_points = _check_max_points(max_points)
        # _prepared: the app hands over a frame already checked by frame_3d, shared by its sessions.
        self.frame = data if _prepared else frame_3d(data, meta)
        self.title = "" if title is None else str(title)
        n = len(self.frame)
        self.rows = sample_rows(n, max_points, random_state)
        self.note = (None if self.rows.size == n else
                     f"{self.rows.size:,} of {n:,} points drawn (a uniform sample, seed {random_state})")
        meta_cols = [c for c in self.frame.columns if c not in ("x", "y", "z")]
        if hover_columns is None:
            hover_columns = meta_cols[:MAX_HOVER_COLUMNS]
        unknown = [c for c in hover_columns if c not in meta_cols]
        if unknown:
            raise ValueError(f"hover_columns {unknown} are not metadata columns; known: {meta_cols}")
        self.hover_columns = list(hover_columns)
        drawn = self.frame.iloc[self.rows]
        self._xyz = [drawn[c].to_numpy() for c in ("x", "y", "z")]
        # Escaped once for every colour: the row id, then the hover columns' text.
        self._hover = np.column_stack([self.rows.astype(str).astype(object),
                                       *[_escape_column(drawn[c].to_numpy()) for c in self.hover_columns]])
        lines = [f"{_inert(c, 60)}: %{{customdata[{i + 1}]}}" for i, c in enumerate(self.hover_columns)]
        self._template = "<br>".join(["<b>row %{customdata[0]}</b>", *lines]) + "<extra></extra>"

    @property
    def n_points(self) -> int:
        """Points in the layout (drawn or not)."""
        return len(self.frame)

    def _trace(self, go: Any, index: Any, **marker: Any) -> Any:
        """One Scatter3d of the drawn points at positions ``index`` (a mask or slice)."""
        size = 2 if self.rows.size > 50_000 else 3 if self.rows.size > 5_000 else 4
        x, y, z = (a[index] for a in self._xyz)
        return go.Scatter3d(x=x, y=y, z=z, mode="markers", customdata=self._hover[index],
                            hovertemplate=self._template, marker={"size": size, "line": {"width": 0}, **marker})

    def figure(self, color: str | None = None, *, legend: bool = True, width: int | None = None,
               height: int | None = None) -> Any:
        """A Plotly figure of the drawn points coloured by ``color``.

        Parameters
        ----------
        color : str, optional
            Metadata column: categories (glasbey colours, one legend entry and trace
            each; past ``MAX_CATEGORIES`` the most frequent and ``"other"``) or numbers
            (a sequential colour map with a colour bar; ``quality`` and ``moved`` on
            their fixed [0, 1] span). None: one colour.
        legend : bool, default=True
            The category legend or the colour bar.
        width, height : int, optional
            Figure size in pixels; None fills the page (or the app's pane).

        Returns
        -------
        plotly.graph_objects.Figure

        Raises
        ------
        DataError
            ``color`` is no metadata column, holds inf, or only NaN among the points drawn.
        """
        go = _plotly()
        from embedscope.viz.aggregate import limit_categorical
        from embedscope.viz.layers import layer_style

        if color is not None and (color not in self.frame.columns or color in ("x", "y", "z")):
            known = [c for c in self.frame.columns if c not in ("x", "y", "z")]
            raise DataError(f"no column {color!r} to colour by; metadata columns: {known}")
        notes = [self.note] if self.note else []
        traces = []
        drawn, kind = (None, None) if color is None else with_color(self.frame[[color]].iloc[self.rows], color)
        if kind == "category" and drawn is not None:
            grouped, plan = limit_categorical(drawn[color], color)
            codes = np.asarray(grouped.codes)
            for code, (name, colour) in enumerate(plan.colors().items()):
                keep = codes == code
                if keep.any():
                    traces.append(self._trace(go, keep, color=colour).update(name=_inert(name), showlegend=legend))
            if (codes < 0).any():  # missing values: no category
                traces.append(self._trace(go, codes < 0, color=NAN_COLOUR).update(name="(missing)", showlegend=legend))
            if plan.note:
                notes.append(plan.note)
        elif kind == "value" and drawn is not None:
            values = drawn[color].to_numpy(dtype=np.float64)
            style = layer_style(color)
            cmap = style.get("cmap") or _default_cmap()
            finite = np.isfinite(values)
            lo, hi = style.get("span") or (float(values[finite].min()), float(values[finite].max()))
            scale = [[i / (len(cmap) - 1), c] for i, c in enumerate(cmap)]
            bar = {"title": {"text": _inert(color, 60)}, "thickness": 14} if legend else None
            traces.append(self._trace(go, finite, color=values[finite], colorscale=scale, cmin=lo, cmax=hi,
                                      showscale=legend, colorbar=bar).update(name=_inert(color, 60),
                                                                             showlegend=False))
            if not finite.all():
                traces.append(self._trace(go, ~finite, color=NAN_COLOUR).update(
                    name=f"no value ({int((~finite).sum()):,})", showlegend=legend))
        else:
            traces.append(self._trace(go, slice(None), color=DENSITY_COLOUR).update(name="points", showlegend=False))
        title = _inert(self.title, 300)
        if notes:
            title += "<br><sup>" + "; ".join(_inert(n, 300) for n in notes) + "</sup>"
        axis = {"showspikes": False}
        fig = go.Figure(traces)
        fig.update_layout(
            title={"text": title, "x": 0.01, "xanchor": "left"},
            scene={"xaxis": {"title": {"text": "x"}, **axis}, "yaxis": {"title": {"text": "y"}, **axis},
                   "zaxis": {"title": {"text": "z"}, **axis}, "aspectmode": "data"},
            # the legend's swatches at a readable size whatever the points' size
            legend={"title": {"text": _inert(color or "", 60)}, "itemsizing": "constant"},
            margin={"l": 0, "r": 0, "t": 60 if notes else 40, "b": 0},
            # the same revision on every figure: a new colour keeps the user's rotation
            uirevision="embedscope-3d", hoverlabel={"namelength": -1},
            template="plotly_white", width=width, height=height, autosize=width is None)
        return fig


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError:  # pragma: no cover - plotly is a core dependency
        raise ImportError("3-D views need plotly: pip install 'plotly>=5.20'") from None
    return go


def _default_cmap() -> list[str]:
    """The 2-D maps' colour map for values (colorcet ``bmy``), subsampled: 32 stops read the same."""
    import colorcet as cc

    palette = list(cc.bmy)
    return [palette[round(i * (len(palette) - 1) / 31)] for i in range(32)]


def figure_3d(data: Any, meta: Any = None, color: str | None = None, *, max_points: int = DEFAULT_MAX_POINTS,
              random_state: int = 0, title: str | None = None, hover_columns: list[str] | None = None,
              legend: bool = True, width: int | None = None, height: int | None = None) -> Any:
    """A rotatable 3-D Plotly figure (WebGL ``Scatter3d``) of a 3-D layout.

    Parameters
    ----------
    data, meta, max_points, random_state, title, hover_columns
        As in :class:`View3D`.
    color, legend, width, height
        As in :meth:`View3D.figure`.

    Returns
    -------
    plotly.graph_objects.Figure

    Examples
    --------
    >>> import numpy as np
    >>> fig = figure_3d(np.random.default_rng(0).normal(size=(500, 3)), {"label": ["a", "b"] * 250}, "label")
    >>> [trace.name for trace in fig.data]
    ['a', 'b']
    """
    if isinstance(meta, dict):
        meta = pd.DataFrame(meta)
    view = View3D(data, meta, max_points=max_points, random_state=random_state, title=title,
                  hover_columns=hover_columns)
    return view.figure(color, legend=legend, width=width, height=height)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title></head>
<body style="margin:0; font-family:sans-serif">
<p class="embedscope-note" style="margin:6px 12px; font-size:13px">{note}</p>
{figure}
</body>
</html>
"""


def save_html_3d(data: Any, path: str | os.PathLike, meta: Any = None, color: str | None = None, *,
                 max_points: int = DEFAULT_MAX_POINTS, random_state: int = 0, title: str | None = None,
                 legend: bool = True, force: bool = False) -> dict[str, Any]:
    """Write a self-contained HTML page with the rotatable 3-D view of a 3-D layout.

    plotly.js is inlined (the page works offline and from ``file://``); the page is
    written to a temporary file renamed into place.

    Parameters
    ----------
    data, meta, color, max_points, random_state, title, legend
        As in :func:`figure_3d`.
    path : str or path
        Destination ``.html``.
    force : bool, default=False
        Replace an existing file.

    Returns
    -------
    dict
        ``n_points`` (in the layout), ``n_drawn``, ``note`` (the sample, or None) and ``bytes``.
    """
    import plotly.io as pio

    view = View3D(data, meta, max_points=max_points, random_state=random_state, title=title)
    fig = view.figure(color, legend=legend)
    div = pio.to_html(fig, include_plotlyjs=True, full_html=False, default_width="100%",
                      default_height="calc(100vh - 40px)", config=dict(PLOTLY_CONFIG))
    note = (f"<b>3-D view</b> of {view.rows.size:,} points"
            + (f" (a seeded uniform sample of {view.n_points:,})" if view.note else "")
            + ": drag to rotate, scroll to zoom, hover a point for its metadata"
            + ("; click a legend entry to hide its category, double-click to show it alone." if color else "."))
    page = _PAGE.format(title=html.escape(title or "embedscope 3-D view"), note=note, figure=div)
    with atomic_output(path, force=force) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return {"n_points": view.n_points, "n_drawn": int(view.rows.size), "note": view.note,
            "bytes": Path(path).stat().st_size}
