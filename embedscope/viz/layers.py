"""Per-point measures drawn as colour layers: ``quality`` and ``moved``.

Both hold values in [0, 1] that mean the same everywhere (a share of neighbours kept;
a Jaccard distance), so they are shaded linearly on the fixed span [0, 1] with a
perceptually uniform sequential colorcet map, never equalised per view: a colour
reads as the same value in every zoom, panel and file.

- ``quality`` (``embedscope reduce --quality``): colorcet ``kryw`` (CET_L3) without its
  white end: black/dark red where a point kept few of its neighbours, orange to
  yellow where it kept most. The summary is the mean and the share below 0.5.
- ``moved`` (two layouts compared): colorcet ``bmy``, blue where the two maps agree on
  a point's neighbours, yellow where they share none.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["LAYERS", "MOVED", "QUALITY", "default_color", "layer_style", "quality_summary", "quality_text",
           "value_legend"]

QUALITY = "quality"
MOVED = "moved"
#: Below this a point kept fewer than half of its neighbours: the share is reported.
QUALITY_THRESHOLD = 0.5
SPAN = (0.0, 1.0)
LEGEND_WIDTH = 180


def _cmap(name: str) -> list[str]:
    import colorcet as cc

    if name == QUALITY:
        return list(cc.CET_L3[:224])  # kryw without the near-white end, which vanishes on white
    return list(cc.bmy)


LAYERS = (QUALITY, MOVED)


def layer_style(column: str | None) -> dict[str, Any]:
    """Shading options of a known layer (``cmap``, ``how``, ``span``); {} for any other column."""
    if column not in LAYERS:
        return {}
    return {"cmap": _cmap(str(column)), "how": "linear", "span": SPAN}


def default_color(meta: Any, color: str | None = None) -> str | None:
    """``color`` when given, else ``quality`` where the metadata has that column, else None."""
    if color is not None:
        return color
    if meta is not None and QUALITY in getattr(meta, "columns", ()):
        return QUALITY
    return None


def quality_summary(values: Any) -> dict[str, float]:
    """``mean``, ``share_below`` (share of points below 0.5) and ``n`` of finite quality values."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return {"mean": float("nan"), "share_below": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "share_below": float((v < QUALITY_THRESHOLD).mean()), "n": int(v.size)}


def quality_text(frame: Any, name: str = "") -> str:
    """One line of the overall quality figures of ``frame``'s ``quality`` column; "" without one."""
    if frame is None or QUALITY not in getattr(frame, "columns", ()):
        return ""
    s = quality_summary(frame[QUALITY].to_numpy())
    if not s["n"]:
        return ""
    where = f" ({name})" if name else ""
    return (f"Quality{where}: mean {s['mean']:.3f}, {s['share_below']:.1%} of points below "
            f"{QUALITY_THRESHOLD} (share of each point's neighbours kept)")


def value_legend(pil: Any, column: str, values: Any) -> Any:
    """``pil`` with a colour bar of layer ``column`` on the right, and its figures."""
    from PIL import Image, ImageDraw

    cmap = _cmap(column)
    canvas = Image.new("RGBA", (pil.width + LEGEND_WIDTH, pil.height), "white")
    canvas.paste(pil, (0, 0))
    draw = ImageDraw.Draw(canvas)
    left, top, bar_h = pil.width + 10, 28, min(200, max(pil.height - 120, 40))
    draw.text((left, 8), column, fill="black")
    for i in range(bar_h):  # 1 at the top, 0 at the bottom
        colour = cmap[round((1 - i / max(bar_h - 1, 1)) * (len(cmap) - 1))]
        draw.line([(left, top + i), (left + 14, top + i)], fill=colour)
    draw.text((left + 20, top - 4), "1", fill="black")
    draw.text((left + 20, top + bar_h - 10), "0", fill="black")
    if column == QUALITY:
        s = quality_summary(values)
        lines = [f"mean {s['mean']:.3f}", f"{s['share_below']:.1%} below {QUALITY_THRESHOLD}"]
    else:
        v = np.asarray(values, dtype=np.float64)
        lines = [f"median {np.nanmedian(v):.3f}", f"{np.nanmean(v > 0.5):.1%} above 0.5"]
    for j, line in enumerate(lines):
        draw.text((left, top + bar_h + 10 + 16 * j), line, fill="black")
    return canvas
