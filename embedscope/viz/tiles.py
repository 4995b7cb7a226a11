"""A static, zoomable map: a tile pyramid and one HTML page that needs no server.

``write_tile_site(coords, "site/")`` writes ``site/index.html`` (Bokeh, resources
inlined), ``site/tiles/{z}/{x}/{y}.png`` and ``site/embedscope-site.json``. The page
pans and zooms the tiles from ``file://`` or any static host, shows the legend, the
region labels of the zoom level in view (:mod:`embedscope.viz.labels`) and, on hover,
the metadata of a bounded random sample of the points (the tiles carry no rows).

The layout's square extent is mapped onto the web-mercator square that tile viewers
(Bokeh's ``WMTSTileSource`` here) address as ``z/x/y``, so level ``z`` is a
``2^z x 2^z`` grid of 256-pixel tiles. Each level is binned in one pass: points are
sorted by tile, and each non-empty tile's counts (per category, or the mean of a
numeric column) are one ``bincount``, shaded by datashader with the same span on
every tile of the level, so tiles join without seams. Empty tiles are not written.

datashader has ``datashader.tiles.render_tiles``; it is not used because it scans the
whole data once per super-tile (O(n) per 1024 x 1024 pixels at every level), needs
Dask, and prints to stdout.
"""

from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from embedscope.io.write import atomic_output_dir
from embedscope.viz._input import note_dropped_z, plot_frame, with_color
from embedscope.viz.aggregate import limit_categorical

__all__ = ["MAX_ZOOM", "write_tile_site"]

TILE = 256
#: Deepest level accepted: 2^10 tiles per side is 262,144 pixels across.
MAX_ZOOM = 10
#: Half the side of the web-mercator square, in its metres (what tile viewers expect).
MERCATOR = 20037508.342789244
MARKER = "embedscope-site.json"
#: Rows whose metadata the page carries for hover.
HOVER_SAMPLE = 20_000
#: Metadata columns shown on hover (the first ones).
HOVER_COLUMNS = 8


def _square_extent(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(x0, y1, side): the top-left corner and side of a square holding every point."""
    lo_x, hi_x, lo_y, hi_y = float(x.min()), float(x.max()), float(y.min()), float(y.max())
    side = max(hi_x - lo_x, hi_y - lo_y) * 1.04 or 1.0
    cx, cy = (lo_x + hi_x) / 2, (lo_y + hi_y) / 2
    return cx - side / 2, cy + side / 2, side


def _shade(counts: np.ndarray, *, kind: str | None, categories: list[Any], colors: dict[Any, str],
           span: tuple[float, float], means: np.ndarray | None = None) -> Any:
    """A datashader Image of one tile from its (256, 256[, K]) aggregate (row 0 = bottom)."""
    import colorcet as cc
    import datashader.transfer_functions as tf
    import xarray as xr

    coords = {"y": np.arange(TILE, dtype=np.float64), "x": np.arange(TILE, dtype=np.float64)}
    if kind == "category":
        # Only the categories present in this tile: the colour mix of a pixel is the same,
        # and datashader's cost grows with the number of category planes.
        present = np.flatnonzero(counts.sum(axis=(0, 1)))
        names = [categories[i] for i in present]
        planes = counts[:, :, present].astype(np.float32)
        # Empty pixels must be transparent: datashader masks a pixel whose total is NaN,
        # not one whose total is 0 (that one would get min_alpha and a mean colour).
        planes[counts.sum(axis=2) == 0] = np.nan
        agg = xr.DataArray(planes, dims=("y", "x", "cat"), coords={**coords, "cat": names})
        return tf.shade(agg, color_key=[colors[c] for c in names], how="log", span=span, min_alpha=90)
    if kind == "value":
        agg = xr.DataArray(means, dims=("y", "x"), coords=coords)
        return tf.shade(agg, cmap=cc.bmy, how="linear", span=span)
    agg = xr.DataArray(counts, dims=("y", "x"), coords=coords)
    return tf.shade(agg.where(agg > 0), cmap=cc.blues[40:], how="log", span=span)


def _level(z: int, gx: np.ndarray, gy: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Points of level ``z`` grouped by tile: (tile ids, per-tile start, pixel index per point)."""
    scale = 2.0**z * TILE
    px = np.clip((gx * scale).astype(np.int64), 0, int(scale) - 1)
    py = np.clip((gy * scale).astype(np.int64), 0, int(scale) - 1)
    n = 2**z
    tile = (py // TILE) * n + (px // TILE)
    order = np.argsort(tile, kind="stable")
    tile_sorted = tile[order]
    ids, starts = np.unique(tile_sorted, return_index=True)
    # Row 0 of an aggregate is the bottom of its tile (datashader's y order).
    pixel = ((TILE - 1 - (py % TILE)) * TILE + (px % TILE))[order]
    return ids, np.append(starts, order.size), [order, pixel]


def write_tile_site(
    data: Any,
    out_dir: str | os.PathLike,
    meta: Any = None,
    color: str | None = None,
    *,
    max_zoom: int = 5,
    labels: str | None = None,
    title: str | None = None,
    hover_sample: int = HOVER_SAMPLE,
    random_state: int | None = 0,
    force: bool = False,
    log: Any = None,
) -> dict[str, Any]:
    """Write a tile pyramid and a page that pans and zooms it, with no server.

    Parameters
    ----------
    data : array of shape (n, 2 or 3), DataFrame with ``x`` / ``y``, or fitted reducer
    out_dir : path
        The site folder (created; an earlier site there is replaced only with ``force``).
    meta : DataFrame, optional
    color : str, optional
        Column to colour by: categories (glasbey, a legend) or numbers (colorcet bmy).
    max_zoom : int, default=5
        Deepest level (0 is one tile for the whole map), at most 10.
    labels : str, optional
        Column whose region names are drawn (coarse at full view, finer zoomed in).
    title : str, optional
    hover_sample : int, default=20000
        Rows whose metadata the page carries for hover (seeded sample).
    random_state : int or None, default=0
    force : bool, default=False
    log : callable, optional
        ``log(text)`` per level.

    Returns
    -------
    dict
        ``tiles`` (files written), ``bytes`` (on disk), ``seconds``, ``levels``.
    """
    start = time.perf_counter()
    if isinstance(max_zoom, bool) or not isinstance(max_zoom, (int, np.integer)) or not 0 <= max_zoom <= MAX_ZOOM:
        raise ValueError(f"max_zoom must be an integer in [0, {MAX_ZOOM}]; got {max_zoom!r}")
    if isinstance(hover_sample, bool) or not isinstance(hover_sample, (int, np.integer)) or hover_sample < 0:
        raise ValueError(f"hover_sample must be a non-negative integer; got {hover_sample!r}")
    note_dropped_z(data)
    frame, kind = with_color(plot_frame(data, meta), color)
    if labels is not None and labels not in frame.columns:
        known = [c for c in frame.columns if c not in ("x", "y", "z")]
        raise ValueError(f"no column {labels!r} to label the map from; metadata columns: {known}")
    x, y = frame["x"].to_numpy(np.float64), frame["y"].to_numpy(np.float64)
    x0, y1, side = _square_extent(x, y)
    gx, gy = (x - x0) / side, (y1 - y) / side  # in [0, 1), y from the top as tiles count rows
    categories: list[Any] = []
    colors: dict[Any, str] = {}
    codes = values = None
    note = None
    if kind == "category":
        grouped, plan = limit_categorical(frame[color], color)
        categories, colors, note = list(grouped.categories), plan.colors(), plan.note
        codes = np.asarray(grouped.codes, dtype=np.int64)
    elif kind == "value":
        values = frame[color].to_numpy(np.float64)
    n_cats = len(categories)
    written, total_bytes = 0, 0
    with atomic_output_dir(out_dir, force=force, marker=MARKER) as tmp:
        for z in range(int(max_zoom) + 1):
            ids, bounds, (order, pixel) = _level(z, gx, gy)
            cells = TILE * TILE
            # Pass 1: the level's span (the same on every tile, so tiles join seamlessly).
            peak, lo, hi = 1.0, np.inf, -np.inf
            for i in range(ids.size):
                part = pixel[bounds[i]:bounds[i + 1]]
                peak = max(peak, float(np.bincount(part, minlength=cells).max()))
            if values is not None:
                lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
                hi = hi if hi > lo else lo + 1.0
            n_tiles = 2**z
            for i, tile_id in enumerate(ids.tolist()):
                rows, part = order[bounds[i]:bounds[i + 1]], pixel[bounds[i]:bounds[i + 1]]
                counts = np.bincount(part, minlength=cells)
                means = None
                if codes is not None:
                    ok = codes[rows] >= 0
                    per_cat = np.bincount(codes[rows][ok] * cells + part[ok], minlength=n_cats * cells)
                    agg = per_cat.reshape(n_cats, TILE, TILE).transpose(1, 2, 0)
                    image = _shade(agg, kind=kind, categories=categories, colors=colors, span=(0, peak))
                elif values is not None:
                    sums = np.bincount(part, weights=values[rows], minlength=cells)
                    with np.errstate(invalid="ignore", divide="ignore"):
                        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).reshape(TILE, TILE)
                    image = _shade(counts, kind=kind, categories=[], colors={}, span=(lo, hi), means=means)
                else:
                    image = _shade(counts.reshape(TILE, TILE).astype(np.float64), kind=None, categories=[],
                                   colors={}, span=(1, peak))
                ty, tx = divmod(tile_id, n_tiles)
                path = tmp / "tiles" / str(z) / str(tx) / f"{ty}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                image.to_pil().save(path, format="PNG", optimize=False)
                written += 1
                total_bytes += path.stat().st_size
            if log is not None:
                log(f"level {z}: {ids.size:,} tiles of {n_tiles * n_tiles:,}")
        found = None
        if labels is not None:
            from embedscope.viz.labels import find_labels

            found = find_labels(x, y, frame[labels].to_numpy(), column=labels, levels=min(int(max_zoom) + 1, 6),
                                width=900, x_range=(x0, x0 + side), y_range=(y1 - side, y1))
        page = _page(frame, kind, color, categories, colors, note, found, x0=x0, y1=y1, side=side,
                     max_zoom=int(max_zoom), title=title, hover_sample=int(hover_sample),
                     random_state=random_state)
        (tmp / "index.html").write_text(page, encoding="utf-8")
        manifest = {"writer": "embedscope", "points": len(frame), "max_zoom": int(max_zoom),
                    "tiles": written, "extent": {"x0": x0, "y1": y1, "side": side}, "color": color,
                    "labels": labels}
        (tmp / MARKER).write_text(json.dumps(manifest, indent=1) + "\n")
    return {"tiles": written, "bytes": total_bytes, "seconds": time.perf_counter() - start,
            "levels": int(max_zoom) + 1, "path": Path(out_dir)}


def _page(frame: Any, kind: str | None, color: str | None, categories: list[Any], colors: dict[Any, str],
          note: str | None, found: Any, *, x0: float, y1: float, side: float, max_zoom: int,
          title: str | None, hover_sample: int, random_state: int | None) -> str:
    """The standalone page: Bokeh with inline resources, a tile source and the extras."""
    from bokeh.embed import file_html
    from bokeh.layouts import column, row
    from bokeh.models import (
        ColumnDataSource,
        Div,
        HoverTool,
        Range1d,
        WMTSTileSource,
    )
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    def merc(px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (px - x0) / side * 2 * MERCATOR - MERCATOR, (py - (y1 - side)) / side * 2 * MERCATOR - MERCATOR

    # Zooming stops where the deepest level's pixels are about screen pixels.
    min_span = 2 * MERCATOR / 2**max_zoom * 3
    fig = figure(x_range=Range1d(-MERCATOR, MERCATOR, bounds=(-MERCATOR, MERCATOR), min_interval=min_span),
                 y_range=Range1d(-MERCATOR, MERCATOR, bounds=(-MERCATOR, MERCATOR), min_interval=min_span),
                 match_aspect=True, sizing_mode="stretch_both", min_width=300, min_height=300,
                 tools="pan,wheel_zoom,reset", active_scroll="wheel_zoom", toolbar_location="above")
    fig.axis.visible = False
    fig.grid.visible = False
    fig.background_fill_color = "white"
    fig.add_tile(WMTSTileSource(url="tiles/{Z}/{X}/{Y}.png", min_zoom=0, max_zoom=max_zoom,
                                attribution="embedscope"))
    rng = np.random.default_rng(random_state)
    n = len(frame)
    rows = np.sort(rng.choice(n, size=min(hover_sample, n), replace=False)) if hover_sample else np.array([], int)
    extra = [c for c in frame.columns if c not in ("x", "y", "z")][:HOVER_COLUMNS]
    hx, hy = merc(frame["x"].to_numpy()[rows], frame["y"].to_numpy()[rows])
    hover_data: dict[str, Any] = {"mx": hx, "my": hy}
    for i, name in enumerate(extra):
        hover_data[f"c{i}"] = frame[name].iloc[rows].astype(str).str.slice(0, 200).tolist()
    source = ColumnDataSource(hover_data)
    points = fig.scatter("mx", "my", source=source, size=6, fill_alpha=0, line_alpha=0,
                         hover_fill_alpha=0.9, hover_fill_color="black", hover_line_alpha=0)
    if extra:
        # Labels and values are data: the values go through Bokeh's escaped @fields, the
        # labels (column names) are escaped here.
        fig.add_tools(HoverTool(renderers=[points], tooltips=[(html.escape(str(name)), f"@c{i}")
                                                               for i, name in enumerate(extra)]))
    if found is not None:
        from embedscope.viz.labels import add_bokeh_labels

        add_bokeh_labels(fig, found, transform=merc)
    heading = html.escape(title or "embedscope map")
    side_parts = [f"<h3 style='margin:4px 0'>{heading}</h3>",
                  f"<p style='margin:2px 0;color:#555'>{n:,} points; static tiles (zoom levels 0-{max_zoom}); "
                  f"hover shows a sample of {rows.size:,} points</p>"]
    if kind == "category":
        items = "".join(f"<div><span style='display:inline-block;width:12px;height:12px;margin-right:6px;"
                        f"background:{html.escape(colors[c])}'></span>{html.escape(str(c))}</div>"
                        for c in categories)
        side_parts.append(f"<p style='margin:6px 0 2px'><b>{html.escape(str(color))}</b></p>"
                          f"<div style='max-height:70vh;overflow-y:auto;font-size:12px'>{items}</div>")
        if note:
            side_parts.append(f"<p style='font-size:11px;color:#555'>{html.escape(note)}</p>")
    elif kind == "value":
        side_parts.append(f"<p><b>{html.escape(str(color))}</b>: colorcet bmy, low blue to high yellow</p>")
    legend = Div(text="".join(side_parts), width=230, sizing_mode="stretch_height")
    layout = row(fig, column(legend, sizing_mode="stretch_height", width=240), sizing_mode="stretch_both")
    return file_html(layout, INLINE, title=title or "embedscope map")
