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

from typing import Any

import numpy as np
import pandas as pd

from embedscope.engine.dispatch import is_cupy

__all__ = ["PointFrame", "data_range", "points_frame", "raster", "shade", "to_pil"]

DEFAULT_WIDTH, DEFAULT_HEIGHT = 800, 600


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
        from embedscope.engine.dispatch import to_host

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
    if isinstance(points, pd.DataFrame) or type(points).__module__.startswith("dask"):
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
    x_range, y_range : (float, float), optional
        Data ranges of the grid; the data's extent by default.
    x, y : str, default="x", "y"
        Coordinate column names of DataFrame input.

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
    if int(width) < 1 or int(height) < 1:
        raise ValueError(f"width and height must be positive; got {width} x {height}")
    frame = points_frame(points, x=x, y=y)
    if isinstance(frame, PointFrame) and is_cupy(frame.x):
        return _raster_gpu(frame, by, value, int(width), int(height), x_range, y_range)
    ds = _import_datashader()
    if isinstance(frame, PointFrame):
        n = len(frame)
        columns = {}
        if by is not None:
            name, values = _column(frame, by, n, "by")
            columns[name] = _as_categorical(values)
            by = name
        if value is not None:
            name, values = _column(frame, value, n, "value")
            columns[name] = np.asarray(values)
            value = name
        data = pd.DataFrame({"x": frame.x, "y": frame.y, **columns}, copy=False)
        x, y = "x", "y"
    else:
        data = frame
        n = None if type(frame).__module__.startswith("dask") else len(frame)
        if by is not None:
            name, values = _column(frame, by, n or 0, "by") if isinstance(by, str) else (None, None)
            if name is None:
                raise ValueError("for DataFrame input give by= as a column name")
            if not isinstance(data[by].dtype, pd.CategoricalDtype):
                if n is None:
                    data = data.categorize(columns=[by])
                else:
                    data = data.assign(**{by: pd.Categorical(data[by])})
        if value is not None and not isinstance(value, str):
            raise ValueError("for DataFrame input give value= as a column name")
        if value is not None:
            _column(frame, value, n or 0, "value")
    if x_range is None:
        x_range = data_range(np.asarray(data[x]) if n is not None else data[x].compute().to_numpy())
    if y_range is None:
        y_range = data_range(np.asarray(data[y]) if n is not None else data[y].compute().to_numpy())
    canvas = ds.Canvas(plot_width=int(width), plot_height=int(height), x_range=tuple(x_range), y_range=tuple(y_range))
    agg = ds.count_cat(by) if by is not None else ds.mean(value) if value is not None else ds.count()
    return canvas.points(data, x, y, agg=agg)


def _raster_gpu(frame: PointFrame, by: Any, value: Any, width: int, height: int,
                x_range: Any, y_range: Any) -> Any:
    """The same aggregate as datashader's, filled by the CuPy twin."""
    import cupy as cp
    import xarray as xr

    from embedscope.kernels.raster import bin_points_gpu, scale_translate

    n = len(frame)
    x_range = tuple(x_range) if x_range is not None else data_range(frame.x)
    y_range = tuple(y_range) if y_range is not None else data_range(frame.y)
    xs = (np.arange(width) + 0.5 - scale_translate(*x_range, width)[1]) / scale_translate(*x_range, width)[0]
    ys = (np.arange(height) + 0.5 - scale_translate(*y_range, height)[1]) / scale_translate(*y_range, height)[0]
    coords: dict[str, Any] = {"y": ys, "x": xs}
    attrs = {"x_range": x_range, "y_range": y_range}
    if by is not None:
        name, values = _column(frame, by, n, "by")
        cats = _as_categorical(values.get() if is_cupy(values) else values)
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
        Maximum ``dynspread`` radius in pixels (0 = none), so lone points stay visible.
    alpha, min_alpha : int
        Opacity of the densest and of the sparsest non-empty pixel.
    background : str or None, default="white"
        Composited behind the image; None keeps transparency.

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
        img = tf.shade(agg, cmap=cmap or default, how=how, alpha=alpha, min_alpha=min_alpha)
    if spread:
        img = tf.dynspread(img, threshold=0.5, max_px=int(spread))
    if background is not None:
        img = tf.set_background(img, background)
    return img


def to_pil(img: Any) -> Any:
    """A PIL image from a datashader ``Image`` (host memory)."""
    return img.to_pil()
