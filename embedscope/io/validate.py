"""Validation of vector sets: every later stage can assume 2-D, numeric, finite data.

:func:`validate_vectors` runs once on every input, in chunks, so a memory-mapped file
is checked without being loaded whole; its messages name the problem in the user's
terms and give the first offending rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embedscope._array import array_module, is_cupy, to_host
from embedscope.errors import DataError
from embedscope.io.stream import iter_row_chunks

__all__ = ["FLOAT32_MAX", "overflow_error", "validate_vectors"]

#: Largest float32: wider values become inf when the reducers convert to float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _rows_shown(count: int, first: list[int]) -> str:
    return ", ".join(map(str, first)) + (", ..." if count > len(first) else "")


def overflow_error(name: str, count: int, first: list[int]) -> DataError:
    """The error for ``count`` rows beyond the float32 range, naming the ``first`` few.

    The readers raise it too, for text files whose finite numbers would become inf.
    """
    return DataError(
        f"{name} has {count} row(s) with values beyond the float32 range (|x| > 3.4e38, rows "
        f"{_rows_shown(count, first)}); they would overflow to inf when converted to float32: rescale them"
    )


def _first_overflow_rows(X: Any, limit: int = 5) -> tuple[int, list[int]]:
    """Count rows of a wide float array (float64 or longer) whose values overflow float32."""
    count = 0
    first: list[int] = []
    for start, chunk in iter_row_chunks(X, dtype=None):
        xp = array_module(chunk)
        # NaN compares False and rows with inf were refused before this scan.
        big = xp.nonzero(xp.abs(chunk).max(axis=1) > FLOAT32_MAX)[0]
        if big.size:
            count += int(big.size)
            if len(first) < limit:
                idx = big[: limit - len(first)]
                first.extend(int(i) + start for i in to_host(idx))
    return count, first


def _first_bad_rows(X: Any, limit: int = 5) -> tuple[int, list[int]]:
    """Count rows holding NaN or inf, and return the first few indices."""
    count = 0
    first: list[int] = []
    for start, chunk in iter_row_chunks(X, dtype=None):
        xp = array_module(chunk)
        # NaN and inf survive a row sum, so one BLAS product screens every row; only
        # rows whose sum is not finite (bad values, or a sum that overflowed) are
        # checked element by element.
        with np.errstate(over="ignore", invalid="ignore"):
            sums = chunk @ xp.ones(chunk.shape[1], dtype=chunk.dtype) if chunk.dtype.kind == "f" else None
        suspect = xp.nonzero(~xp.isfinite(sums))[0] if sums is not None else xp.arange(chunk.shape[0])
        if suspect.size == 0:
            continue
        bad = xp.zeros(chunk.shape[0], dtype=bool)
        bad[suspect] = ~xp.isfinite(chunk[suspect]).all(axis=1)
        n_bad = int(bad.sum())
        if n_bad:
            count += n_bad
            if len(first) < limit:
                idx = xp.nonzero(bad)[0][: limit - len(first)]
                first.extend(int(i) + start for i in to_host(idx))
    return count, first


def validate_vectors(X: Any, *, name: str = "X", min_rows: int = 2, check_finite: bool = True) -> Any:
    """Check that ``X`` is a usable 2-D numeric array and return it as an array.

    Parameters
    ----------
    X : array-like
        numpy / cupy array or anything ``numpy.asarray`` accepts.
    name : str, default="X"
        What to call the input in error messages.
    min_rows : int, default=2
        Fewer rows than this is an error.
    check_finite : bool, default=True
        Scan for NaN and inf (in chunks, so a memory-mapped file is not loaded whole).

    Returns
    -------
    array
        ``X`` itself where it is already a numeric numpy/cupy array (memory maps stay
        memory maps), else a new numpy array.

    Raises
    ------
    DataError
        Not 2-D, empty, too few rows, object / string / complex dtype, NaN / inf
        values, or float64 values that overflow float32 (the message gives the number
        of rows and the first indices).
    """
    if not (isinstance(X, np.ndarray) or is_cupy(X)):
        if hasattr(X, "tocsr") and hasattr(X, "nnz"):  # scipy.sparse: asarray makes an object scalar
            raise DataError(f"{name} is a sparse matrix; sparse input is not supported, "
                            "pass a dense array (X.toarray())")
        try:
            X = np.asarray(X)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{name} could not be read as an array: {exc}") from None
    if X.dtype == object:
        raise DataError(f"{name} is an object array; embedscope needs a numeric array (object arrays are never unpickled)")
    if X.dtype.kind not in "biuf":
        raise DataError(f"{name} has dtype {X.dtype}; embedscope needs real numbers (float or int)")
    if X.ndim != 2:
        raise DataError(f"{name} must be 2-D (n_samples, n_features); got shape {tuple(X.shape)}")
    n, d = X.shape
    if n == 0 or d == 0:
        raise DataError(f"{name} is empty: shape {tuple(X.shape)}")
    if n < min_rows:
        raise DataError(f"{name} has {n} row(s); at least {min_rows} are needed")
    if check_finite and X.dtype.kind == "f":
        count, first = _first_bad_rows(X)
        if count:
            raise DataError(
                f"{name} has {count} row(s) with NaN or inf values (rows {_rows_shown(count, first)}); "
                "drop or impute them before reducing"
            )
        if X.dtype.itemsize > 4:
            count, first = _first_overflow_rows(X)
            if count:
                raise overflow_error(name, count, first)
    return X
