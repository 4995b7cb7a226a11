"""Turn whatever a user hands to ``plot`` into one validated pandas frame."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from embedscope._array import to_host
from embedscope.errors import DataError
from embedscope.io.write import coords_frame

#: Integer columns with at most this many distinct values are coloured as categories.
MAX_INT_CATEGORIES = 256


def coordinates_of(data: Any) -> tuple[Any, pd.DataFrame | None]:
    """(coordinates, metadata-from-the-input) of an array, a frame or a fitted reducer."""
    if hasattr(data, "get_params") and hasattr(data, "fit"):  # an estimator
        coords = getattr(data, "embedding_", None)
        if coords is None:
            raise ValueError(f"{type(data).__name__} is not fitted: call fit(X) before plotting it")
        return coords, None
    if isinstance(data, pd.DataFrame):
        if not {"x", "y"} <= set(data.columns):
            raise DataError(f"a DataFrame to plot needs columns 'x' and 'y'; it has {list(data.columns)[:12]}")
        rest = [c for c in data.columns if c not in ("x", "y", "z")]
        return data[["x", "y"]].to_numpy(), (data[rest].reset_index(drop=True) if rest else None)
    return data, None


def note_dropped_z(data: Any) -> None:
    """Log a warning when ``data`` holds 3-D coordinates: a 2-D map draws only x and y.

    Called by the 2-D map builders that users reach directly (``save_png``, ``save_html``,
    ``EmbeddingPlot``, ``write_tile_site``), so z is never dropped without a word.
    """
    if isinstance(data, pd.DataFrame):
        three = "z" in data.columns
    else:
        coords = coordinates_of(data)[0]
        three = getattr(coords, "ndim", 0) == 2 and coords.shape[1] == 3
    if three:
        from embedscope._progress import logger

        logger.warning("3-D coordinates: this 2-D map draws x and y only (z is not shown); "
                       "embedscope.viz.view3d.figure_3d draws them in 3-D")


def plot_frame(data: Any, meta: Any = None) -> pd.DataFrame:
    """A DataFrame with float ``x``, ``y`` (finite) and the metadata columns.

    Raises
    ------
    DataError
        Not N x 2 (or 3) numbers, NaN / inf coordinates, or metadata of another length.
    """
    coords, own_meta = coordinates_of(data)
    coords = to_host(coords)
    if not isinstance(coords, np.ndarray):
        coords = np.asarray(coords)
    if coords.ndim != 2 or coords.shape[1] not in (2, 3):
        raise DataError(f"coordinates to plot must have shape (n, 2) or (n, 3); got {tuple(coords.shape)}")
    extra = checked_points(coords, own_meta, meta, drawn=2)
    # Only x and y are drawn; float64 coordinates keep their precision, others become float32.
    xy = np.asarray(coords[:, :2], dtype=np.float64 if coords.dtype == np.float64 else np.float32)
    out = coords_frame(xy, extra)
    # A column both the input frame and ``meta`` hold is kept once, the input's.
    return out.loc[:, ~out.columns.duplicated()]


def color_kind(series: pd.Series) -> str:
    """'category' or 'value': how a column is coloured."""
    if isinstance(series.dtype, pd.CategoricalDtype) or series.dtype.kind in "OSUb" or str(series.dtype) in ("string", "str"):
        return "category"
    if series.dtype.kind in "iu":
        return "category" if series.nunique() <= MAX_INT_CATEGORIES else "value"
    if series.dtype.kind == "f":
        return "value"
    return "category"


def with_color(frame: pd.DataFrame, color: str | None) -> tuple[pd.DataFrame, str | None]:
    """Check ``color`` names a column; make a category column categorical.

    Returns the frame (possibly with that column converted) and the kind.
    """
    if color is None:
        return frame, None
    if color not in frame.columns:
        raise DataError(f"no column {color!r} to colour by; columns are {[c for c in frame.columns if c not in ('x', 'y')]}")
    kind = color_kind(frame[color])
    if kind == "category":
        column = frame[color]
        cats = column.array if isinstance(column.dtype, pd.CategoricalDtype) else pd.Categorical(
            column.astype(str) if column.dtype.kind == "O" else column)
        # String category names, kept in their sorted order: HoloViews' hover marks empty
        # pixels with "-", which an integer category array cannot hold.
        frame = frame.assign(**{color: pd.Categorical.from_codes(cats.codes, [str(c) for c in cats.categories])})
    if kind == "value" and not np.isfinite(frame[color].to_numpy(dtype=np.float64)).all():
        values = frame[color].to_numpy(dtype=np.float64)
        # datashader's mean skips NaN already; inf would poison a pixel, so refuse it
        if np.isinf(values).any():
            raise DataError(f"column {color!r} holds inf values; cannot colour by it")
        note_missing_values(color, int(np.isnan(values).sum()), len(values))
    return frame, kind


def note_missing_values(color: str, n_missing: int, n: int) -> None:
    """Say how many points a value colour leaves out (NaN has no colour); refuse when all.

    Raises
    ------
    DataError
        Every value is NaN: the plot would be empty.
    """
    if not n_missing:
        return
    if n_missing == n:
        raise DataError(f"column {color!r} holds no numbers (all {n:,} values are NaN); cannot colour by it")
    from embedscope._progress import logger

    logger.warning(f"column {color!r} has no value (NaN) for {n_missing:,} of {n:,} points; they are not drawn")


#: The parameters a title names, per method (what changes a layout's look the most).
MAIN_PARAMS = {"umap": ("n_neighbors", "min_dist", "metric"), "tsne": ("perplexity", "metric"),
               "pacmap": ("n_neighbors", "MN_ratio", "FP_ratio", "metric"), "pca": ("svd_solver",)}
METHOD_NAMES = {"umap": "UMAP", "tsne": "t-SNE", "pacmap": "PaCMAP", "pca": "PCA"}


def layout_title(info: dict[str, Any] | None, name: str = "") -> str:
    """A plot title: the method and its main parameters (from ``info``, as
    :func:`embedscope.io.write.layout_info` records them), then ``name``.

    >>> layout_title({"method": "umap", "params": {"n_neighbors": 15, "min_dist": 0.1,
    ...                                             "metric": "cosine", "random_state": 0}}, "a.parquet")
    'UMAP n_neighbors=15, min_dist=0.1, metric=cosine, random_state=0 · a.parquet'
    """
    if not info or not isinstance(info.get("method"), str):
        return name
    method = info["method"].lower()
    params = info.get("params") if isinstance(info.get("params"), dict) else {}
    names = [*MAIN_PARAMS.get(method, ()), "random_state"]
    shown = ", ".join(f"{k}={params[k]}" for k in names if params.get(k) is not None)
    head = f"{METHOD_NAMES.get(method, info['method'])} {shown}".strip()
    return f"{head} · {name}" if name else head


def checked_points(coords: np.ndarray, own_meta: Any, meta: Any, *, drawn: int) -> pd.DataFrame | None:
    """Refuse coordinates a map cannot draw and join the metadata: the input's own, then ``meta``.

    ``drawn`` is how many leading columns must be finite (2 for a 2-D map of x, y; 3
    for the 3-D view). Returns the joined metadata (string column names, a fresh
    index) or None.

    Raises
    ------
    DataError
        Not numbers, no points, NaN / inf in a drawn column, or metadata of another length.
    """
    if coords.dtype.kind not in "iuf":
        raise DataError(f"coordinates must be numbers; got dtype {coords.dtype}")
    if coords.shape[0] == 0:
        raise DataError("there are no points to plot")
    finite = np.isfinite(coords[:, :drawn]).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise DataError(f"{bad.size} point(s) have NaN or inf coordinates (rows {', '.join(map(str, bad[:5]))}"
                        f"{', ...' if bad.size > 5 else ''}); drop them before plotting")
    extras = []
    for extra in (own_meta, meta):
        if extra is None:
            continue
        if not isinstance(extra, pd.DataFrame):
            extra = pd.DataFrame({"label": np.asarray(extra)}) if np.ndim(extra) == 1 else pd.DataFrame(extra)
        if len(extra) != len(coords):
            raise DataError(f"metadata has {len(extra)} rows but there are {len(coords)} points")
        extra = extra.reset_index(drop=True)
        extra.columns = [str(c) for c in extra.columns]
        extras.append(extra)
    return pd.concat(extras, axis=1) if extras else None
