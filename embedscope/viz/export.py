"""Static exports: a PNG drawn by datashader (no browser) and a standalone HTML page.

Both aggregate the full data once, at the export's pixel size. The HTML page says so
in words: zooming it magnifies the image; only ``embedscope serve`` (or a live
HoloViews session) re-aggregates.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np

from embedscope.io.write import atomic_output
from embedscope.viz._input import note_dropped_z, plot_frame, with_color
from embedscope.viz.aggregate import (
    MAX_CATEGORIES,
    check_raster_size,
    check_spread,
    data_range,
    limit_categorical,
    raster,
    shade,
)

__all__ = ["render_image", "save_html", "save_png"]

LEGEND_WIDTH = 180
LEGEND_ROW = 16
TITLE_PX = 26
# Every colour a plot can draw has its legend entry (see MAX_CATEGORIES).
MAX_LEGEND = MAX_CATEGORIES
#: Zoom levels of the labels on pages that zoom (full view, then 2x, 4x, 8x finer).
LABEL_LEVELS = 4


def render_image(
    data: Any,
    meta: Any = None,
    color: str | None = None,
    *,
    width: int = 1200,
    height: int = 900,
    how: str = "eq_hist",
    spread: int = 2,
    cmap: Any = None,
    span: Any = None,
) -> tuple[Any, dict[str, Any]]:
    """Shade the full data once; return the datashader Image and what was drawn.

    A colour column of more than ``MAX_CATEGORIES`` categories is drawn as its most
    frequent categories plus ``"other"`` (logged, and noted in ``info``). Sizes past
    the bounds of :func:`embedscope.viz.aggregate.check_raster_size` are refused before
    the points are prepared; the memory estimate is checked before the aggregate.

    ``cmap`` and ``span`` (values at its two ends) shade a value column; a known layer
    (``quality``, ``moved``: :mod:`embedscope.viz.layers`) brings its own.

    Returns
    -------
    image : datashader.transfer_functions.Image
    info : dict
        ``n_points``, ``x_range``, ``y_range``, ``color``, ``kind`` and, for
        categories, ``colors`` (category -> colour) and ``note`` (what was grouped
        into ``"other"``, or None).
    """
    check_raster_size(width, height, budget=None)
    check_spread(spread)
    note_dropped_z(data)
    frame, kind = with_color(plot_frame(data, meta), color)
    plan = None
    if kind == "category":
        grouped, plan = limit_categorical(frame[color], color)
        frame = frame.assign(**{color: grouped})
    by = color if kind == "category" else None
    value = color if kind == "value" else None
    agg = raster(frame, by=by, value=value, width=width, height=height,
                 x_range=_padded(frame["x"].to_numpy()), y_range=_padded(frame["y"].to_numpy()))
    info: dict[str, Any] = {"n_points": len(frame), "x_range": agg.attrs["x_range"],
                            "y_range": agg.attrs["y_range"], "color": color, "kind": kind}
    color_key = None
    if plan is not None:
        color_key = plan.colors()
        info["colors"] = color_key
        info["note"] = plan.note
    return shade(agg, how=how, color_key=color_key, spread=spread, cmap=cmap, span=span), info


def _padded(values: np.ndarray, pad: float = 0.02) -> tuple[float, float]:
    """The data range widened by ``pad`` on each side, so edge points are not clipped visually."""
    lo, hi = data_range(values)
    margin = (hi - lo) * pad
    return lo - margin, hi + margin


def _legend_image(pil: Any, info: dict[str, Any]) -> Any:
    """The image with a legend on the right (categories only), in as many columns as fit.

    Beside the image, never on it: a legend drawn over the map hides its points.
    """
    from PIL import Image, ImageDraw

    colors = info.get("colors")
    if not colors:
        return pil
    items = list(colors.items())[:MAX_LEGEND]
    per_column = max(1, (pil.height - 28) // LEGEND_ROW)
    columns = -(-len(items) // per_column)
    canvas = Image.new("RGBA", (pil.width + LEGEND_WIDTH * columns, pil.height), "white")
    canvas.paste(pil, (0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((pil.width + 10, 8), str(info["color"]), fill="black")
    for i, (cat, col) in enumerate(items):
        left, top = pil.width + 10 + LEGEND_WIDTH * (i // per_column), 28 + LEGEND_ROW * (i % per_column)
        draw.rectangle([left, top, left + 12, top + 12], fill=col)
        draw.text((left + 18, top), str(cat)[:24], fill="black")
    return canvas


def _titled_image(pil: Any, title: str) -> Any:
    """The image under a white band holding ``title`` (one line, cut to the image's width)."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font: Any = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        font = ImageFont.load_default()
    canvas = Image.new("RGBA", (pil.width, pil.height + TITLE_PX), "white")
    canvas.paste(pil, (0, TITLE_PX))
    text = " ".join(str(title).split())
    limit = max(pil.width // 8, 8)
    ImageDraw.Draw(canvas).text((8, 5), text if len(text) <= limit else text[: limit - 1] + "\u2026",
                                fill="black", font=font)
    return canvas


def _find_labels(frame: Any, column: str, info: dict[str, Any], width: int, levels: int = 1) -> Any:
    """The region labels of ``column`` over the image's view (its boxes are the boxes drawn)."""
    from embedscope.viz.labels import find_labels

    if column not in frame.columns:
        known = [c for c in frame.columns if c not in ("x", "y", "z")]
        raise ValueError(f"no column {column!r} to label the map from; metadata columns: {known}")
    return find_labels(frame["x"].to_numpy(), frame["y"].to_numpy(), frame[column].to_numpy(),
                       column=column, levels=levels, width=width,
                       x_range=info["x_range"], y_range=info["y_range"])


def _labelled_image(pil: Any, frame: Any, column: str, info: dict[str, Any]) -> Any:
    """The image with the names of the map's regions written on it (full-view level)."""
    from PIL import Image, ImageDraw, ImageFont

    found = _find_labels(frame, column, info, pil.width)
    canvas = pil.convert("RGBA") if pil.mode != "RGBA" else pil.copy()
    # Labels sit on an opaque background so the halo reads on dark and light points alike.
    base = Image.new("RGBA", canvas.size, "white")
    base.alpha_composite(canvas)
    draw = ImageDraw.Draw(base)
    try:
        font: Any = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        font = ImageFont.load_default()
    (x0, x1), (y0, y1) = info["x_range"], info["y_range"]
    for label in found.at_level(0):
        px = (label.x - x0) / (x1 - x0) * pil.width
        py = (1 - (label.y - y0) / (y1 - y0)) * pil.height  # image rows grow downwards
        draw.text((px, py), label.text, fill="black", font=font, anchor="mm",
                  stroke_width=2, stroke_fill="white")
    return base


def save_png(
    data: Any,
    path: str | os.PathLike,
    meta: Any = None,
    color: str | None = None,
    *,
    width: int = 1200,
    height: int = 900,
    how: str = "eq_hist",
    spread: int = 2,
    legend: bool = True,
    labels: str | None = None,
    title: str | None = None,
    force: bool = False,
) -> Path:
    """Write a PNG of the embedding, drawn by datashader (no browser needed).

    Parameters
    ----------
    data : array of shape (n, 2 or 3), DataFrame with ``x`` / ``y``, or fitted reducer
    path : str or path
        Destination ``.png``.
    meta : DataFrame or array, optional
    color : str, optional
        Column to colour by (categories get glasbey colours and a legend). ``quality``
        and ``moved`` are drawn linearly on [0, 1] with their own colour map, whatever
        ``how`` says, and the legend gives their colour bar and overall figures.
    width, height : int, default=1200, 900
        Size of the raster in pixels (the legend adds a column on the right).
    how : str, default="eq_hist"
    spread : int, default=2
        ``dynspread`` radius for sparse points.
    legend : bool, default=True
    labels : str, optional
        Metadata column (categories or text) whose names are written on the map's
        regions (:func:`embedscope.viz.labels.find_labels`, the full-view level).
    title : str, optional
        Written in a band above the image.
    force : bool, default=False
        Replace an existing file.

    Returns
    -------
    Path
    """
    from embedscope.viz.layers import layer_style, value_legend

    options = {"how": how, **layer_style(color)}
    image, info = render_image(data, meta, color, width=width, height=height, spread=spread, **options)
    pil = image.to_pil()
    if labels is not None:
        pil = _labelled_image(pil, plot_frame(data, meta), labels, info)
    if legend:
        pil = _legend_image(pil, info)
        if options.get("span") is not None and info["kind"] == "value":
            pil = value_legend(pil, str(color), plot_frame(data, meta)[color].to_numpy())
    if title:
        pil = _titled_image(pil, title)
    with atomic_output(path, force=force) as tmp:
        pil.save(tmp, format="PNG")
    return Path(path)


def save_html(
    data: Any,
    path: str | os.PathLike,
    meta: Any = None,
    color: str | None = None,
    *,
    width: int = 1200,
    height: int = 900,
    how: str = "eq_hist",
    spread: int = 2,
    title: str | None = None,
    serve_hint: str | None = None,
    legend: bool = True,
    labels: str | None = None,
    force: bool = False,
) -> Path:
    """Write a standalone HTML page (Bokeh, resources inlined) with the shaded image.

    The page can pan and zoom, but it holds one image aggregated at ``width x height``;
    a note on the page says that it does not re-aggregate and how to get a live view.

    Parameters
    ----------
    data, meta, color, width, height, how, spread
        As in :func:`save_png`.
    path : str or path
        Destination ``.html``.
    title : str, optional
    serve_hint : str, optional
        The command that opens the live view (shown on the page).
    legend : bool, default=True
        For categories, the colour legend beside the plot.
    labels : str, optional
        Metadata column (categories or text) whose region names are written on the
        map (:func:`embedscope.viz.labels.find_labels`); the page shows the level of
        the zoom in view, coarse at full view and finer zoomed in.
    force : bool, default=False

    Returns
    -------
    Path
    """
    from bokeh.embed import file_html
    from bokeh.models import Range1d
    from bokeh.plotting import figure
    from bokeh.resources import INLINE
    from markupsafe import Markup

    from embedscope.viz.layers import layer_style

    options = {"how": how, **layer_style(color)}
    image, info = render_image(data, meta, color, width=width, height=height, spread=spread, **options)
    (x0, x1), (y0, y1) = info["x_range"], info["y_range"]
    rgba = np.ascontiguousarray(np.asarray(image.data, dtype=np.uint32))
    fig = figure(width=min(width, 1000), height=int(min(width, 1000) * height / width), title=title or "",
                 x_range=Range1d(x0, x1), y_range=Range1d(y0, y1),
                 tools="pan,wheel_zoom,box_zoom,reset,save", active_scroll="wheel_zoom")
    fig.image_rgba(image=[rgba], x=x0, y=y0, dw=x1 - x0, dh=y1 - y0)
    if labels is not None:
        from embedscope.viz.labels import add_bokeh_labels

        add_bokeh_labels(fig, _find_labels(plot_frame(data, meta), labels, info, fig.width, levels=LABEL_LEVELS))
    if legend and info.get("colors"):
        for cat, col in list(info["colors"].items())[:MAX_LEGEND]:
            fig.scatter(x=[np.nan], y=[np.nan], color=col, size=8, legend_label=str(cat))
        fig.legend.title = str(color)
        # Outside the frame, in as many columns as the plot's height needs: a legend on
        # the frame hides points, and one taller than the plot is cut off.
        per_column = max(1, (fig.height - 40) // 20)
        fig.legend.ncols = -(-min(len(info["colors"]), MAX_LEGEND) // per_column)
        fig.add_layout(fig.legend[0], "right")
    hint = f" For a live view that re-aggregates on zoom, run <code>{html.escape(serve_hint)}</code>." if serve_hint else ""
    # The note is plain HTML in the page body (not a Bokeh model), so it reads the same
    # without JavaScript and can be found by text search.
    note = (f'<p class="embedscope-note" style="font-family: sans-serif; max-width: 60em">'
            f"<b>Static export.</b> {info['n_points']:,} points aggregated once into {width} x {height} pixels. "
            f"Zooming this page magnifies that image; it does <b>not re-aggregate</b>.{hint}</p>")
    # Through Bokeh's page template: the inlined BokehJS contains "<body>" itself, so a
    # text replace put the note inside a script, where no browser showed it.
    template = "{% block inner_body %}{{ embedscope_note }}{{ super() }}{% endblock %}"
    page = file_html(fig, resources=INLINE, title=title or "embedscope plot", template=template,
                     template_variables={"embedscope_note": Markup(note)})
    with atomic_output(path, force=force) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(path)
