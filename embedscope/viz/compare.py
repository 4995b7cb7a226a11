"""Two embeddings of the same items side by side, and which points moved between them.

:func:`align_layouts` joins two coordinate tables row by row (by an id column, or by
row order when both hold the same rows) and refuses anything that does not pair up.
:func:`save_compare_png` draws both layouts in one figure, coloured alike: by a
metadata column, or by the "moved" layer, each point's Jaccard distance between its
k nearest neighbours in the two layouts (:func:`embedscope.engine.metrics.neighborhood_change`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from embedscope.errors import DataError
from embedscope.io.write import atomic_output

__all__ = ["MOVED", "align_layouts", "pair_order", "save_compare_png"]

#: The colour choice that means "the moved layer" rather than a metadata column.
MOVED = "moved"
CAPTION = 40  # pixels of the caption strip above each panel


def _ids(meta: Any, on: str, name: str) -> Any:
    import pandas as pd

    if meta is None or on not in meta.columns:
        known = [] if meta is None else list(meta.columns)
        raise DataError(f"{name} has no column {on!r} to join on; its columns: {known}")
    ids = pd.Series(meta[on].to_numpy())
    if ids.isna().any():
        raise DataError(f"{name}: {int(ids.isna().sum())} rows have no {on!r}; every row needs an id to be paired")
    dupes = ids[ids.duplicated()]
    if len(dupes):
        raise DataError(f"{name}: {on!r} is not unique ({len(dupes)} repeated ids, e.g. {dupes.iloc[0]!r}); "
                        "rows cannot be paired")
    return ids


def pair_order(a: np.ndarray, a_meta: Any, b: np.ndarray, b_meta: Any, *, on: str | None = None,
               names: tuple[str, str] = ("the first layout", "the second layout")) -> np.ndarray:
    """The rows of ``b`` in ``a``'s order: ``b[order][i]`` is the item of ``a[i]``.

    Parameters and errors as in :func:`align_layouts`, which applies it.

    Returns
    -------
    int64 ndarray of shape (n,)
    """
    if on is None:
        if a.shape[0] != b.shape[0]:
            raise DataError(f"{names[0]} has {a.shape[0]:,} rows and {names[1]} {b.shape[0]:,}; pair them by an "
                            "id column (--on ID) or give layouts of the same rows")
        order = np.arange(b.shape[0])
    else:
        ids_a, ids_b = _ids(a_meta, on, names[0]), _ids(b_meta, on, names[1])
        position = {value: i for i, value in enumerate(ids_b.tolist())}
        missing_b = [v for v in ids_a.tolist() if v not in position]
        extra_b = len(ids_b) - (len(ids_a) - len(missing_b))
        if missing_b or extra_b:
            example = (f"e.g. {missing_b[0]!r} is only in {names[0]}" if missing_b
                       else f"e.g. {next(v for v in ids_b.tolist() if v not in set(ids_a.tolist()))!r} "
                            f"is only in {names[1]}")
            raise DataError(f"the {on!r} ids differ: {len(missing_b):,} only in {names[0]}, {extra_b:,} only in "
                            f"{names[1]} ({example}); compare layouts of the same items")
        order = np.array([position[v] for v in ids_a.tolist()], dtype=np.int64)
    return order


def align_layouts(a: np.ndarray, a_meta: Any, b: np.ndarray, b_meta: Any, *, on: str | None = None,
                  names: tuple[str, str] = ("the first layout", "the second layout")
                  ) -> tuple[np.ndarray, np.ndarray, Any]:
    """Pair the rows of two layouts: ``(A, B, meta)`` with row i the same item in both.

    Parameters
    ----------
    a, b : arrays of shape (n, 2 or 3) and (m, 2 or 3)
    a_meta, b_meta : DataFrame or None
        Their metadata (one row per point).
    on : str, optional
        An id column present in both, unique in each, holding the same ids: rows are
        paired by it (B is reordered to A's order). Without it both must hold the same
        number of rows, paired by position.
    names : tuple of str
        How the two inputs are named in errors.

    Returns
    -------
    A, B : float arrays of shape (n, c)
    meta : DataFrame or None
        The first layout's metadata (the second's columns it lacks are added).

    Raises
    ------
    DataError
        Row counts differ without ``on``; the id column is missing, has gaps or
        repeats, or the two id sets differ (the message counts and shows an example).
    """
    order = pair_order(a, a_meta, b, b_meta, on=on, names=names)
    B = np.asarray(b)[order]
    meta = a_meta
    if b_meta is not None:
        extra = b_meta.iloc[order].reset_index(drop=True)
        extra = extra[[c for c in extra.columns if meta is None or c not in meta.columns]]
        if len(extra.columns):
            import pandas as pd

            meta = extra if meta is None else pd.concat([meta.reset_index(drop=True), extra], axis=1)
    return np.asarray(a), B, meta


def save_compare_png(
    A: np.ndarray,
    B: np.ndarray,
    path: str | os.PathLike,
    meta: Any = None,
    color: str | None = MOVED,
    *,
    names: tuple[str, str] = ("a", "b"),
    k: int = 15,
    width: int = 700,
    height: int = 600,
    labels: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Write one PNG with the two layouts side by side, coloured alike.

    Parameters
    ----------
    A, B : arrays of shape (n, 2 or 3)
        Paired layouts (see :func:`align_layouts`); x and y are drawn.
    path : path
        Destination ``.png``.
    meta : DataFrame, optional
    color : str or None, default="moved"
        A metadata column (the same colours in both panels), ``"moved"`` (each point's
        neighbourhood change between the layouts, 0 = same neighbours, 1 = none
        shared; colorcet ``bmy``, linear), or None (density).
    names : tuple of str
        Captions of the two panels.
    k : int, default=15
        Neighbours of the moved layer.
    width, height : int
        Pixels of each panel.
    labels : str, optional
        Metadata column whose region names are written on each panel
        (:func:`embedscope.viz.labels.find_labels`, the full-view level).
    force : bool, default=False

    Returns
    -------
    dict
        ``moved`` (the per-point layer, when drawn), ``moved_median`` and
        ``moved_share_over_half``.
    """
    import pandas as pd
    from PIL import Image, ImageDraw

    from embedscope.engine.metrics import neighborhood_change
    from embedscope.viz._input import plot_frame
    from embedscope.viz.export import _labelled_image, _legend_image, render_image

    info: dict[str, Any] = {}
    how = "eq_hist"
    if color == MOVED:
        if meta is not None and MOVED in meta.columns:
            raise DataError(f"the metadata already has a {MOVED!r} column; rename it to draw the moved layer")
        moved = neighborhood_change(A[:, :2], B[:, :2], k)
        info.update(moved=moved, moved_median=float(np.median(moved)),
                    moved_share_over_half=float((moved > 0.5).mean()))
        meta = pd.DataFrame({MOVED: moved}) if meta is None else meta.assign(**{MOVED: moved})
        how = "linear"  # the layer's values mean the same in both panels: no equalisation
    elif color is not None and (meta is None or color not in meta.columns):
        known = [] if meta is None else list(meta.columns)
        raise DataError(f"no column {color!r} to colour by; metadata columns: {known}")
    panels = []
    drawn: dict[str, Any] = {}
    for layout, name in zip((A, B), names, strict=True):
        image, drawn = render_image(layout[:, :2], meta, color, width=width, height=height, how=how, spread=1)
        pil = image.to_pil()
        if labels is not None:
            pil = _labelled_image(pil, plot_frame(layout[:, :2], meta), labels, drawn)
        panel = Image.new("RGB", (width, height + CAPTION), "white")
        panel.paste(pil.convert("RGB"), (0, CAPTION))
        ImageDraw.Draw(panel).text((8, 6), str(name), fill="black")
        panels.append(panel)
    figure = Image.new("RGB", (2 * width + 8, height + CAPTION), "white")
    figure.paste(panels[0], (0, 0))
    figure.paste(panels[1], (width + 8, 0))
    draw = ImageDraw.Draw(figure)
    if color == MOVED:
        draw.text((8, 22), f"colour: neighbourhood change of each point (k={k}; blue 0 = same neighbours, "
                           f"yellow 1 = none shared); median {info['moved_median']:.2f}, "
                           f"{info['moved_share_over_half']:.1%} of points above 0.5", fill=(60, 60, 60))
    figure = _legend_image(figure, drawn)
    with atomic_output(path, force=force) as tmp:
        figure.save(tmp, format="PNG")
    info["path"] = Path(path)
    return info
