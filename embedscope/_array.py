"""Array types, once: which library owns an array, host copies, the caller's type back.

Every layer asks here instead of testing ``type(x).__module__`` itself. Nothing GPU or
Dask is imported: an array can only be a cupy (or dask) array if its library is
already loaded, so the checks read the type's module name.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["array_module", "as_float", "dask_modules", "is_cupy", "is_dask", "to_host", "to_output"]


def _library(x: Any) -> str:
    return type(x).__module__.split(".")[0]


def is_cupy(x: Any) -> bool:
    """True where ``x`` is a cupy array."""
    return _library(x) == "cupy"


def is_dask(x: Any) -> bool:
    """True for dask arrays and dataframes (dask-cudf's GPU dataframes too)."""
    return _library(x) in ("dask", "dask_cudf")


def dask_modules() -> tuple[ModuleType, ModuleType, ModuleType]:
    """``(dask, dask.array, dask.dataframe)``, imported on first use.

    Dask is optional; the shard reader, the coordinate writer and the distributed
    reducers all ask here, so a missing install reads the same everywhere.

    Returns
    -------
    tuple of module

    Raises
    ------
    ImportError
        Dask (with its array and dataframe parts) is not installed; the message says
        how to install it.
    """
    try:
        import dask
        import dask.array as da
        import dask.dataframe as dd
    except ImportError:
        raise ImportError("the Dask path needs dask: pip install 'embedscope[dask]'") from None
    return dask, da, dd


def array_module(x: Any) -> ModuleType:
    """numpy or cupy, whichever owns ``x`` (without importing cupy if it is not loaded)."""
    if is_cupy(x):
        return importlib.import_module("cupy")
    return np


def to_host(x: Any) -> np.ndarray:
    """A numpy array of ``x`` (copies a cupy array to host memory)."""
    if is_cupy(x):
        return x.get()
    return np.asarray(x)


def to_output(result: Any, like: Any) -> Any:
    """Return ``result`` in the array type of the user's input ``like``.

    cupy input gives cupy output, everything else (numpy, pandas, pyarrow, memmap)
    gives numpy.
    """
    if is_cupy(like):
        if is_cupy(result):
            return result
        return importlib.import_module("cupy").asarray(result)
    return to_host(result)


def as_float(X: Any, xp: Any = None) -> Any:
    """A C-contiguous float32 (or float64, where the input is float64) array in memory."""
    xp = xp or array_module(X)
    dtype = np.float64 if X.dtype == np.float64 else np.float32
    return xp.ascontiguousarray(xp.asarray(X, dtype=dtype))
