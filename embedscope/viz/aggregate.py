"""Aggregate points to a pixel grid and shade it: the datashader stage of every plot.

:func:`raster` returns datashader's own ``xarray.DataArray`` aggregate (dims ``y, x`` and,
for counts by category, a third dim named after the category), so
``datashader.transfer_functions`` and HoloViews consume it unchanged. On the CPU the
work is datashader's ``Canvas.points``; for CuPy coordinates the GPU twin in
:mod:`embedscope.kernels.raster` fills the same aggregate on the device.

NaN coordinates are not drawn (datashader's rule); :func:`embedscope.viz.plot` and the CLI
reject them up front with a clear error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from embedscope._array import is_cupy, is_dask, to_host
from embedscope._memory import host_memory_budget

__all__ = ["MAX_CATEGORIES", "MAX_PIXELS", "MAX_SIDE", "MAX_SPREAD", "CategoryPlan", "PointFrame",
           "check_raster_size", "check_spread", "data_range", "limit_categorical",
           "plan_categories", "points_frame", "raster", "shade", "to_pil"]

DEFAULT_WIDTH, DEFAULT_HEIGHT = 800, 600

#: Most colours a category plot draws: past it, the most frequent categories keep their
#: own colour and the rest are drawn as one "other". 64: a map of 45-60 categories (a
#: topic or class column) keeps every one; glasbey's first 64 colours stay apart, and
#: the legends (PNG columns, the app's scrolling list) show them all.
MAX_CATEGORIES = 64
#: Largest raster side and area in pixels (an 8K image, 7680 x 4320, fits).
MAX_SIDE = 16_384
MAX_PIXELS = 36_000_000
#: Largest ``dynspread`` radius: each step of its search passes over the whole image.
MAX_SPREAD = 32
#: Peak bytes per pixel of a plot without categories (count or mean grid, eq_hist,
#: RGBA image, spread, PNG): 34 measured for counts and 39 for means at 5000 x 5000.
PIXEL_BYTES = 40
#: Peak bytes per pixel per category of datashader's ``count_cat`` and its shading
#: (uint32 counts, a copy, float32 casts and masks): 17.8 measured at 1200 x 900.
CATEGORY_PIXEL_BYTES = 18
#: The bucket the less frequent categories are drawn as.
OTHER = "other"
OTHER_COLOR = "#a0a0a0"


def _import_datashader() -> Any:
    try:
        import datashader
    except ImportError:  # pragma: no cover - datashader is a core dependency
        raise ImportError("embedscope.viz needs datashader: pip install datashader colorcet") from None
    return datashader


class PointFrame:
    """Coordinates plus per-point columns, without copying the coordinates.

    Parameters
    ----------
    x, y : array of shape (n,)
        numpy or cupy coordinates.
    columns : dict of str -> array, optional
        Per-point columns (categories, values, metadata), host arrays.
    """

    def __init__(self, x: Any, y: Any, columns: dict[str, Any] | None = None) -> None:
        self.x, self.y = x, y
        self.columns = dict(columns or {})

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to_pandas(self, names: list[str] | None = None) -> pd.DataFrame:
        """A DataFrame with ``x``, ``y`` and the requested columns (views, not copies)."""
        from embedscope._array import to_host

        data = {"x": to_host(self.x), "y": to_host(self.y)}
        for name in names if names is not None else list(self.columns):
            data[name] = self.columns[name]
        return pd.DataFrame(data, copy=False)


def points_frame(points: Any, *, x: str = "x", y: str = "y") -> Any:
    """Normalise plot input to a pandas / dask DataFrame or a :class:`PointFrame`.

    numpy and cupy arrays of shape (n, >= 2) use their first two columns; DataFrames
    (pandas or dask) must hold columns ``x`` and ``y`` (names configurable).
    """
    if isinstance(points, PointFrame):
        return points
    if isinstance(points, pd.DataFrame) or is_dask(points):
        missing = [c for c in (x, y) if c not in points.columns]
        if missing:
            raise ValueError(f"points have no column(s) {missing}; they have {list(points.columns)[:12]}")
        return points
    if not (isinstance(points, np.ndarray) or is_cupy(points)):
        points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] < 2:
        raise ValueError(f"coordinates must have shape (n, 2) or (n, 3); got {tuple(points.shape)}")
    if points.dtype.kind not in "iuf":
        raise ValueError(f"coordinates must be numbers; got dtype {points.dtype}")
    return PointFrame(points[:, 0], points[:, 1])


def data_range(values: Any) -> tuple[float, float]:
    """(min, max) of finite values, widened like datashader when empty or flat."""
    lo, hi = float(np.nanmin(values)) if len(values) else np.nan, float(np.nanmax(values)) if len(values) else np.nan
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return -1.0, 1.0
    if lo == hi:
        return lo - 1.0, lo + 1.0
    return lo, hi


def _column(frame: Any, spec: Any, n: int, what: str) -> tuple[str, Any]:
    """(name, array) for a ``by`` / ``value`` given as a column name or an array."""
    if isinstance(spec, str):
        if isinstance(frame, PointFrame):
            if spec not in frame.columns:
                raise ValueError(f"{what} column {spec!r} not found; known: {list(frame.columns)}")
            return spec, frame.columns[spec]
        if spec not in frame.columns:
            raise ValueError(f"{what} column {spec!r} not found; columns are {list(frame.columns)[:12]}")
        return spec, None
    values = spec if is_cupy(spec) else np.asarray(spec)
    if values.shape != (n,):
        raise ValueError(f"{what} must have one value per point ({n}); got shape {tuple(values.shape)}")
    return ("category" if what == "by" else "value"), values


def _as_categorical(values: Any) -> pd.Categorical:
    if isinstance(values, pd.Categorical):
        return values
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        return values.array
    return pd.Categorical(np.asarray(values))


def check_raster_size(width: Any, height: Any, n_categories: int = 0, *, budget: int | None = -1) -> tuple[int, int]:
    """Refuse a raster that is too large before anything is allocated.

    Parameters
    ----------
    width, height : int
        Raster size in pixels; each in ``[1, MAX_SIDE]`` and their product at most
        ``MAX_PIXELS``.
    n_categories : int, default=0
        Categories aggregated per pixel (``count_cat``); 0 for counts or means.
    budget : int or None, default=-1
        Bytes the plot may use: -1 asks :func:`~embedscope._memory.host_memory_budget`, None skips the check.

    Returns
    -------
    (int, int)
        ``width, height`` as ints.

    Raises
    ------
    ValueError
        One line naming the bound that was passed and what to change.
    """
    try:
        w, h = int(width), int(height)
    except (TypeError, ValueError):
        raise ValueError(f"width and height must be whole numbers of pixels; got {width!r} x {height!r}") from None
    if w < 1 or h < 1:
        raise ValueError(f"width and height must be positive; got {w} x {h}")
    for name, side in (("width", w), ("height", h)):
        if side > MAX_SIDE:
            raise ValueError(f"{name} {side:,} is over the bound of {MAX_SIDE:,} pixels a side; give a smaller {name}")
    if w * h > MAX_PIXELS:
        raise ValueError(f"{w:,} x {h:,} = {w * h:,} pixels is over the bound of {MAX_PIXELS:,} "
                         f"(6000 x 6000); give a smaller width or height")
    if budget == -1:
        budget = host_memory_budget()
    need = w * h * (PIXEL_BYTES + int(n_categories) * CATEGORY_PIXEL_BYTES)
    if budget is not None and need > budget:
        what = f"{w:,} x {h:,} pixels" + (f" x {n_categories} colour categories" if n_categories else "")
        fix = "a smaller width or height" + (" or a colour column with fewer categories" if n_categories else "")
        raise ValueError(f"{what} needs about {need / 2**30:.1f} GiB but only {budget / 2**30:.1f} GiB "
                         f"of memory is free; give {fix}")
    return w, h


def check_spread(spread: Any) -> int:
    """``spread`` as an int in ``[0, MAX_SPREAD]``; ValueError naming the bound otherwise."""
    try:
        px = int(spread)
    except (TypeError, ValueError):
        raise ValueError(f"spread must be a whole number of pixels; got {spread!r}") from None
    if not 0 <= px <= MAX_SPREAD:
        raise ValueError(f"spread must be in [0, {MAX_SPREAD}] pixels; got {px}")
    return px


@dataclass(frozen=True)
class CategoryPlan:
    """Which categories a plot draws in their own colour; see :func:`plan_categories`.

    Attributes
    ----------
    names : list
        The categories drawn, in their original order, then ``other`` when grouped.
    mapping : ndarray of int64
        New position of each original category (-1: not drawn, it had no points).
    other : str or None
        The name of the grouped bucket (the last of ``names``), None when nothing is grouped.
    note : str or None
        What was grouped, in words (also logged), None when nothing is.
    """

    names: list[Any]
    mapping: np.ndarray
    other: str | None = None
    note: str | None = None

    def recode(self, codes: np.ndarray) -> np.ndarray:
        """Codes over the original categories -> codes over ``names`` (-1 stays -1)."""
        codes = np.asarray(codes)
        out = np.full(codes.shape, -1, dtype=np.int32)
        valid = codes >= 0
        out[valid] = self.mapping[codes[valid]]
        return out

    def colors(self) -> dict[Any, str]:
        """Colour per drawn category: glasbey by position, grey for ``other``."""
        key = category_colors(self.names)
        if self.other is not None:
            key[self.other] = OTHER_COLOR
        return key


def plan_categories(categories: Sequence[Any], counts: Any, column: str | None = None, *,
                    max_categories: int = MAX_CATEGORIES) -> CategoryPlan:
    """Keep at most ``max_categories`` colours: the most frequent categories and ``other``.

    Every category plot goes through this, so the aggregate, which costs a grid of
    pixels per category, stays bounded whatever the column holds.

    Parameters
    ----------
    categories : sequence
        The categories, in the order they are drawn and listed.
    counts : array of int, shape (len(categories),)
        Points per category.
    column : str, optional
        The column's name, for the note.
    max_categories : int, default=MAX_CATEGORIES
        Past this many categories, the ``max_categories - 1`` most frequent keep their
        own colour (ties go to the earlier category, so the choice is deterministic)
        and the rest become one category, ``"other"``. Categories without points are
        dropped then.

    Returns
    -------
    CategoryPlan
    """
    n = len(categories)
    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape != (n,):
        raise ValueError(f"counts must have one entry per category ({n}); got shape {counts.shape}")
    if max_categories < 2:
        raise ValueError(f"max_categories must be at least 2; got {max_categories}")
    if n <= max_categories:
        return CategoryPlan(list(categories), np.arange(n, dtype=np.int64))
    order = np.argsort(-counts, kind="stable")
    top = order[:max_categories - 1]
    top = np.sort(top[counts[top] > 0])
    rest = np.ones(n, dtype=bool)
    rest[top] = False
    rest_points = int(counts[rest].sum())
    mapping = np.full(n, -1, dtype=np.int64)
    mapping[top] = np.arange(top.size)
    names = [categories[i] for i in top]
    if rest_points == 0:  # only categories without points were left out
        return CategoryPlan(names, mapping)
    other = OTHER
    kept = {str(c) for c in names}
    while other in kept:
        other = f"({other})"
    mapping[rest & (counts > 0)] = top.size
    rest_used = int((rest & (counts > 0)).sum())
    what = f"colour column {column!r}" if column else "the colour categories"
    note = (f"{what} has {int((counts > 0).sum()):,} distinct values; drawing the {top.size} most frequent in their own colours "
            f"and the other {rest_used:,} ({rest_points:,} points) as {other!r}")
    from embedscope._progress import logger

    logger.warning(note)
    return CategoryPlan([*names, other], mapping, other, note)


def limit_categorical(values: Any, column: str | None = None, *,
                      max_categories: int = MAX_CATEGORIES) -> tuple[pd.Categorical, CategoryPlan]:
    """``values`` as a categorical of at most ``max_categories`` categories (see :func:`plan_categories`).

    Returns the (possibly regrouped) categorical and the plan.
    """
    cats = _as_categorical(values)
    codes = np.asarray(cats.codes)
    n = len(cats.categories)
    counts = np.bincount(codes[codes >= 0], minlength=n) if n > max_categories else np.zeros(n, dtype=np.int64)
    plan = plan_categories(list(cats.categories), counts, column, max_categories=max_categories)
    if plan.note is None and len(plan.names) == n:
        return cats, plan
    return pd.Categorical.from_codes(plan.recode(codes), plan.names), plan


def raster(
    points: Any,
    *,
    by: Any = None,
    value: Any = None,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    x: str = "x",
    y: str = "y",
    max_categories: int = MAX_CATEGORIES,
) -> Any:
    """Aggregate points into a ``height x width`` grid.

    Parameters
    ----------
    points : array of shape (n, 2 or 3), pandas or dask DataFrame, or PointFrame
        numpy (CPU, datashader), cupy (GPU twin), or a frame with ``x`` / ``y`` columns.
    by : str or array of shape (n,), optional
        Count per category of this column (datashader ``count_cat``); the result gets
        a third dimension named after it.
    value : str or array of shape (n,), optional
        Mean of this numeric column per pixel (NaN where no point falls).
    width, height : int, default=800, 600
        At most ``MAX_SIDE`` each and ``MAX_PIXELS`` together; with the categories,
        the estimated memory must fit what is free (:func:`check_raster_size`).
    x_range, y_range : (float, float), optional
        Data ranges of the grid; the data's extent by default.
    x, y : str, default="x", "y"
        Coordinate column names of DataFrame input.
    max_categories : int, default=MAX_CATEGORIES
        With ``by``, past this many categories the most frequent keep their own
        layer and the rest are counted as one ``"other"`` (:func:`plan_categories`).

    Returns
    -------
    xarray.DataArray
        Datashader's aggregate: uint32 counts (dims ``y, x`` or ``y, x, <by>``) or
        float64 means; coordinates are pixel centres; ``attrs`` hold the ranges.

    Examples
    --------
    >>> import numpy as np
    >>> agg = raster(np.random.default_rng(0).normal(size=(1000, 2)), width=50, height=40)
    >>> agg.shape, int(agg.sum())
    ((40, 50), 1000)
    """
    if by is not None and value is not None:
        raise ValueError("give either by= (count per category) or value= (mean), not both")
    # Bounds first, with no categories: the points may not even be read yet.
    width, height = check_raster_size(width, height, budget=None)
    frame = points_frame(points, x=x, y=y)
    if isinstance(frame, PointFrame) and is_cupy(frame.x):
        return _raster_gpu(frame, by, value, width, height, x_range, y_range, max_categories)
    ds = _import_datashader()
    n_categories = 0
    if isinstance(frame, PointFrame):
        n = len(frame)
        columns = {}
        if by is not None:
            name, values = _column(frame, by, n, "by")
            columns[name], _ = limit_categorical(values, name, max_categories=max_categories)
            n_categories = len(columns[name].categories)
            by = name
        if value is not None:
            name, values = _column(frame, value, n, "value")
            columns[name] = np.asarray(values)
            value = name
        data = pd.DataFrame({"x": frame.x, "y": frame.y, **columns}, copy=False)
        x, y = "x", "y"
    else:
        data = frame
        n = None if is_dask(frame) else len(frame)
        if by is not None:
            name, values = _column(frame, by, n or 0, "by") if isinstance(by, str) else (None, None)
            if name is None:
                raise ValueError("for DataFrame input give by= as a column name")
            if n is None:
                data = _limit_dask_categories(data, by, max_categories)
            else:
                data = data.assign(**{by: limit_categorical(data[by], by, max_categories=max_categories)[0]})
            n_categories = len(data[by].cat.categories)
        if value is not None and not isinstance(value, str):
            raise ValueError("for DataFrame input give value= as a column name")
        if value is not None:
            _column(frame, value, n or 0, "value")
    if x_range is None:
        x_range = data_range(np.asarray(data[x]) if n is not None else data[x].compute().to_numpy())
    if y_range is None:
        y_range = data_range(np.asarray(data[y]) if n is not None else data[y].compute().to_numpy())
    check_raster_size(width, height, n_categories)
    canvas = ds.Canvas(plot_width=width, plot_height=height, x_range=tuple(x_range), y_range=tuple(y_range))
    agg = ds.count_cat(by) if by is not None else ds.mean(value) if value is not None else ds.count()
    return canvas.points(data, x, y, agg=agg)


def _limit_dask_categories(data: Any, by: str, max_categories: int) -> Any:
    """A dask frame whose ``by`` column is categorical, within ``max_categories``.

    Known categories within the limit are used as they are; otherwise the counts per
    value are reduced on the workers (one pass, a row per distinct value comes back).
    """
    column = data[by]
    if isinstance(column.dtype, pd.CategoricalDtype) and column.cat.known:
        if len(column.cat.categories) <= max_categories:
            return data
        categories = list(column.cat.categories)
        counts = column.value_counts(dropna=True).compute().reindex(categories, fill_value=0).to_numpy()
    else:
        found = column.value_counts(dropna=True).compute()
        categories = list(pd.Categorical(found.index.to_numpy()).categories)
        counts = found.reindex(categories, fill_value=0).to_numpy()
    plan = plan_categories(categories, counts, by, max_categories=max_categories)
    meta = pd.Series(pd.Categorical([], categories=plan.names), name=by)

    def recode(part: pd.Series) -> pd.Series:
        codes = pd.Categorical(part.to_numpy(), categories=categories).codes
        return pd.Series(pd.Categorical.from_codes(plan.recode(codes), plan.names), index=part.index, name=by)

    return data.assign(**{by: column.map_partitions(recode, meta=meta)})


def _raster_gpu(frame: PointFrame, by: Any, value: Any, width: int, height: int,
                x_range: Any, y_range: Any, max_categories: int = MAX_CATEGORIES) -> Any:
    """The same aggregate as datashader's, filled by the CuPy twin."""
    import cupy as cp
    import xarray as xr

    from embedscope.kernels.raster import bin_points_gpu, scale_translate

    check_raster_size(width, height)
    n = len(frame)
    x_range = tuple(x_range) if x_range is not None else data_range(frame.x)
    y_range = tuple(y_range) if y_range is not None else data_range(frame.y)
    xs = (np.arange(width) + 0.5 - scale_translate(*x_range, width)[1]) / scale_translate(*x_range, width)[0]
    ys = (np.arange(height) + 0.5 - scale_translate(*y_range, height)[1]) / scale_translate(*y_range, height)[0]
    coords: dict[str, Any] = {"y": ys, "x": xs}
    attrs = {"x_range": x_range, "y_range": y_range}
    if by is not None:
        name, values = _column(frame, by, n, "by")
        cats, _ = limit_categorical(to_host(values), name, max_categories=max_categories)
        # On the device the cost is a grid per category; the host check is the bound we have.
        check_raster_size(width, height, len(cats.categories))
        codes = cp.asarray(cats.codes.astype(np.int32))
        grid = bin_points_gpu(frame.x, frame.y, x_range, y_range, width, height, codes, len(cats.categories))
        data = cp.ascontiguousarray(grid.transpose(1, 2, 0)).astype(cp.uint32)
        coords[name] = np.asarray(cats.categories)
        return xr.DataArray(data, coords=coords, dims=["y", "x", name], attrs=attrs)
    if value is not None:
        _, values = _column(frame, value, n, "value")
        weights = cp.asarray(values)
        sums = bin_points_gpu(frame.x, frame.y, x_range, y_range, width, height, weights=weights)[0]
        counts = bin_points_gpu(frame.x, frame.y, x_range, y_range, width, height)[0]
        with np.errstate(invalid="ignore", divide="ignore"):
            data = cp.where(counts > 0, sums / cp.maximum(counts, 1), cp.nan)
        return xr.DataArray(data, coords=coords, dims=["y", "x"], attrs=attrs)
    grid = bin_points_gpu(frame.x, frame.y, x_range, y_range, width, height)[0].astype(cp.uint32)
    return xr.DataArray(grid, coords=coords, dims=["y", "x"], attrs=attrs)


def category_colors(categories: Any) -> dict[Any, str]:
    """Glasbey colours (colorcet) for each category, cycling past 256."""
    import colorcet as cc

    palette = cc.glasbey_dark
    return {cat: palette[i % len(palette)] for i, cat in enumerate(categories)}


def shade(
    agg: Any,
    *,
    how: str = "eq_hist",
    cmap: Any = None,
    color_key: dict[Any, str] | None = None,
    spread: int = 0,
    alpha: int = 255,
    min_alpha: int = 100,
    background: str | None = "white",
    span: Any = None,
) -> Any:
    """Colour an aggregate from :func:`raster` into a datashader ``Image``.

    Parameters
    ----------
    agg : xarray.DataArray
    how : str, default="eq_hist"
        Datashader's colour normalisation ("eq_hist", "log", "cbrt", "linear").
    cmap : list of colours, optional
        Counts: colorcet ``blues``; means: colorcet ``bmy``.
    color_key : dict, optional
        Category -> colour for counts by category; glasbey by default.
    spread : int, default=0
        Maximum ``dynspread`` radius in pixels (0 = none, at most ``MAX_SPREAD``), so
        lone points stay visible.
    alpha, min_alpha : int
        Opacity of the densest and of the sparsest non-empty pixel.
    background : str or None, default="white"
        Composited behind the image; None keeps transparency.
    span : (float, float), optional
        Values at the two ends of ``cmap`` (counts or means; ``how="linear"``).

    Returns
    -------
    datashader.transfer_functions.Image
    """
    _import_datashader()
    import colorcet as cc
    import datashader.transfer_functions as tf

    if agg.ndim == 3:
        color_key = color_key or category_colors(agg.coords[agg.dims[2]].values)
        img = tf.shade(agg, color_key=color_key, how=how, alpha=alpha, min_alpha=min_alpha)
    else:
        default = cc.bmy if agg.dtype.kind == "f" else cc.blues[110:]
        img = tf.shade(agg, cmap=cmap or default, how=how, alpha=alpha, min_alpha=min_alpha, span=span)
    if check_spread(spread):
        img = tf.dynspread(img, threshold=0.5, max_px=int(spread))
    if background is not None:
        img = tf.set_background(img, background)
    return img


def to_pil(img: Any) -> Any:
    """A PIL image from a datashader ``Image`` (host memory)."""
    return img.to_pil()
