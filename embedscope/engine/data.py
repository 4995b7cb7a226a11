"""Reading and validating vector sets.

:func:`load_vectors` turns any supported source into a 2-D float array plus an optional
metadata table with one row per vector. Validation happens here, once, so that every
later stage can assume 2-D, numeric, finite data with at least two rows, and every
error names the problem in the user's terms.

``.npy`` files are memory-mapped and never copied whole; :func:`iter_row_chunks`
streams them through a small reusable buffer so that a pass over a file larger than
RAM keeps the resident set small.
"""

from __future__ import annotations

import errno
import os
import stat
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from embedscope._array import array_module, is_cupy
from embedscope._progress import logger
from embedscope.datasets import make_builtin, make_mixture
from embedscope.errors import DataError
from embedscope.io.stream import iter_row_chunks

__all__ = [
    "DataError",
    "Vectors",
    "iter_row_chunks",
    "load_builtin",
    "load_vectors",
    "make_mixture",
    "validate_vectors",
]

#: Largest float32: wider values become inf when the reducers convert to float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)


class Vectors(NamedTuple):
    """What :func:`load_vectors` returns: unpack as ``X, meta = load_vectors(...)``."""

    vectors: Any
    """2-D float array (numpy, memory-mapped numpy or cupy), one row per point."""
    meta: pd.DataFrame | None
    """One row per vector, or None."""


# ----------------------------------------------------------------------------- validation


def _rows_shown(count: int, first: list[int]) -> str:
    return ", ".join(map(str, first)) + (", ..." if count > len(first) else "")


def _overflow_error(name: str, count: int, first: list[int]) -> DataError:
    return DataError(
        f"{name} has {count} row(s) with values beyond the float32 range (|x| > 3.4e38, rows "
        f"{_rows_shown(count, first)}); they would overflow to inf when converted to float32: rescale them"
    )


def _first_overflow_rows(X: Any, limit: int = 5) -> tuple[int, list[int]]:
    """Count rows of a wide float array (float64 or longer) whose values overflow float32."""
    count, first = 0, []
    for start, chunk in iter_row_chunks(X, dtype=None):
        xp = array_module(chunk)
        # NaN compares False and rows with inf were refused before this scan.
        big = xp.nonzero(xp.abs(chunk).max(axis=1) > FLOAT32_MAX)[0]
        if big.size:
            count += int(big.size)
            if len(first) < limit:
                idx = big[: limit - len(first)]
                first.extend(int(i) + start for i in (idx.get() if is_cupy(idx) else idx))
    return count, first


def _first_bad_rows(X: Any, limit: int = 5) -> tuple[int, list[int]]:
    """Count rows holding NaN or inf, and return the first few indices."""
    count, first = 0, []
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
                first.extend(int(i) + start for i in (idx.get() if is_cupy(idx) else idx))
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
                raise _overflow_error(name, count, first)
    return X


# ----------------------------------------------------------------------------- readers


def is_shard_source(source: str | os.PathLike) -> bool:
    """A directory or a glob pattern: read lazily as Dask collections."""
    text = str(source)
    return Path(text).is_dir() or (any(ch in text for ch in "*?[") and not Path(text).exists())


_SPECIAL_KINDS = {stat.S_IFIFO: "FIFO (named pipe)", stat.S_IFCHR: "character device",
                  stat.S_IFBLK: "block device", stat.S_IFSOCK: "socket"}


def check_regular_file(path: str | os.PathLike, what: str = "") -> None:
    """Refuse anything but a readable regular file (symlinks are followed first).

    A FIFO or a socket blocks a reader forever and a device such as ``/dev/zero``
    never ends, so they are refused before anything opens them.

    Parameters
    ----------
    path : str or path
    what : str, default=""
        How to name the file in messages (``"metadata file"``); by default its path.

    Raises
    ------
    DataError
        Missing, a symlink loop or a dangling symlink, a directory, a FIFO, socket or
        device, or not readable.
    """
    path = Path(path)
    label = f"{what} {path}".strip()
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataError(f"{label}: symlink loop (a link points back to itself)") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            if os.path.islink(path):
                raise DataError(f"{label} is a dangling symlink to {os.readlink(path)} (no such file)") from None
            raise DataError(f"{label}: no such file") from None
        if exc.errno == errno.EACCES:
            raise DataError(f"{label}: permission denied") from None
        raise DataError(f"{label} cannot be read: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise DataError(f"{label} is a directory; give a file (.npy, .npz, .parquet, .csv, .tsv)")
    if not stat.S_ISREG(info.st_mode):
        kind = _SPECIAL_KINDS.get(stat.S_IFMT(info.st_mode), "special file")
        target = os.path.realpath(path)
        shown = f"{label} (-> {target})" if target != str(path.absolute()) else label
        raise DataError(f"{shown} is a {kind}, not a regular file; embedscope reads only regular files")
    if not os.access(path, os.R_OK):
        raise DataError(f"{label}: permission denied")


def _path_error(path: Path) -> None:
    check_regular_file(path)


def _one_line(text: str, limit: int = 200) -> str:
    """``text`` on one printable line, cut to ``limit`` characters (headers can hold junk)."""
    flat = " ".join("".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _read_npy(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY":
        # numpy would take a file without the header for a pickle; we never load those.
        raise DataError(f"{path} is not a readable .npy file (no NPY header)")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        msg = str(exc)
        if "allow_pickle" in msg or "Object arrays" in msg or "Python objects" in msg:
            raise DataError(f"{path} holds an object array; only numeric arrays are read (pickles never are)") from None
        if "mmap length" in msg or "cannot reshape" in msg or "larger than" in msg:
            raise DataError(f"{path} is truncated: its header promises more data than the file holds") from None
        raise DataError(f"{path} is not a readable .npy file: {_one_line(msg)}") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path} could not be read as .npy: {_one_line(str(exc))}") from None
    except Exception as exc:
        # numpy parses the header with Python's tokenizer and ast, whose errors
        # (TokenError, SyntaxError, ...) pass through np.load for a corrupt header.
        raise DataError(f"{path} is not a readable .npy file: corrupt header "
                        f"({type(exc).__name__}: {_one_line(str(exc), 80)})") from None



def _read_npz(path: Path, key: str | None) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.files)
            if key is None:
                preferred = [k for k in ("vectors", "embeddings", "X", "x", "data") if k in keys]
                if len(keys) == 1:
                    key = keys[0]
                elif preferred:
                    key = preferred[0]
                else:
                    raise DataError(f"{path} holds arrays {keys}; say which with key=... (--key)")
            if key not in keys:
                raise DataError(f"{path} has no array {key!r}; it holds {keys}")
            return archive[key]
    except DataError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise DataError(f"{path} holds an object array; only numeric arrays are read") from None
        raise DataError(f"{path} is not a readable .npz file: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a readable .npz file (truncated or corrupt): {_one_line(str(exc))}") from None
    except Exception as exc:
        # A corrupt member header (TokenError, SyntaxError) or compressed data (zlib.error).
        raise DataError(f"{path} is not a readable .npz file (corrupt member): "
                        f"{type(exc).__name__}: {_one_line(str(exc), 80)}") from None


def _list_column_to_array(table: Any, name: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    column = table.column(name).combine_chunks()
    if column.null_count:
        raise DataError(f"vector column {name!r} has {column.null_count} missing (null) rows")
    n = len(column)
    if pa.types.is_fixed_size_list(column.type):
        width = column.type.list_size
    else:
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        if n and (lengths.min() != lengths.max()):
            bad = int(np.argmax(lengths != lengths[0]))
            raise DataError(
                f"vector column {name!r} has rows of different lengths "
                f"(row 0 has {lengths[0]}, row {bad} has {lengths[bad]})"
            )
        width = int(lengths[0]) if n else 0
    values = column.flatten()
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
        raise DataError(f"vector column {name!r} holds {values.type}, not numbers")
    if values.null_count:
        raise DataError(f"vector column {name!r} has missing (null) elements")
    return values.to_numpy(zero_copy_only=False).reshape(n, width)


def _table_to_vectors(table: Any, columns: list[str] | None, origin: str) -> Vectors:
    """Split a pyarrow Table into vectors and metadata."""
    import pyarrow as pa

    names = table.column_names
    if not names:
        raise DataError(f"{origin} has no columns")
    if columns is not None:
        missing = [c for c in columns if c not in names]
        if missing:
            raise DataError(f"{origin} has no column(s) {missing}; it has {names}")
    else:
        list_cols = [c for c in names if pa.types.is_list(table.schema.field(c).type)
                     or pa.types.is_large_list(table.schema.field(c).type)
                     or pa.types.is_fixed_size_list(table.schema.field(c).type)]
        if len(list_cols) > 1:
            raise DataError(f"{origin} has several list columns {list_cols}; say which holds the vectors (columns=[...], --columns)")
        columns = list_cols or names
    if len(columns) == 1 and _is_list_type(table.schema.field(columns[0]).type):
        X = _list_column_to_array(table, columns[0])
    else:
        bad = [c for c in columns if not _is_numeric_type(table.schema.field(c).type)]
        if bad:
            raise DataError(
                f"{origin}: column(s) {bad} are not numeric; give a list column of vectors, "
                "or name the numeric vector columns with columns=[...] (--columns); "
                "the other columns then become metadata"
            )
        X = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in columns]) if columns else None
        if X is not None and X.dtype == object:
            raise DataError(f"{origin}: vector columns have missing values")
    rest = [c for c in names if c not in columns]
    meta = table.select(rest).to_pandas() if rest else None
    return Vectors(X, meta)


def _is_list_type(t: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _is_numeric_type(t: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _read_parquet(path: Path, columns: list[str] | None) -> Vectors:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path} is not a readable parquet file (truncated or corrupt?): {_one_line(str(exc))}") from None
    return _table_to_vectors(table, columns, str(path))


def _sep_for(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    return "\t" if ".tsv" in suffixes or ".tab" in suffixes else ","


#: Words pandas reads as NaN / inf that count as numbers in a vector file (they are then
#: refused by the NaN / inf check, with the row numbers).
_NON_FINITE_WORDS = ["nan", "inf", "-inf", "+inf", "infinity", "-infinity", "+infinity"]


def _header_decision(path: Path, frame: pd.DataFrame, values: pd.DataFrame, numeric: pd.DataFrame) -> bool:
    """Whether the first row of a delimited file is a header; logs the decision.

    A header is a row of names (no cell a number) or the column positions ``0..d-1``
    / ``1..d`` that ``pandas.to_csv(index=False)`` writes for unnamed columns. A row of
    numbers is data, and a row mixing numbers and text is refused: dropping it or
    reading it would both guess.
    """
    first = numeric.iloc[0].to_numpy()
    d = frame.shape[1]
    if not first.any():
        logger.info("%s: first row read as a header (column names), not data", path)
        return True
    if not first.all():
        c = int(np.argmin(first))
        raise DataError(
            f"{path}: row 1 mixes numbers and text (column {c + 1} is {frame.iat[0, c]!r}); "
            "a header row must be all names, a data row all numbers"
        )
    row = values.iloc[0].to_numpy(dtype=np.float64)
    # Also for one column: pandas writes its header "0", and a file whose first value
    # happens to be 0 or 1 is told apart only by the logged decision.
    if np.array_equal(row, np.arange(d)) or np.array_equal(row, np.arange(1, d + 1)):
        logger.info("%s: first row read as a header (the column numbers %d..%d, as pandas writes them), not data",
                    path, int(row[0]), int(row[-1]))
        return True
    logger.info("%s: no header row; the first row is data", path)
    return False


def _read_delimited(path: Path) -> np.ndarray:
    """A headerless (or single-header-row) numeric CSV/TSV, as in the TF Projector."""
    sep = _sep_for(path)
    kind = "TSV" if sep == "\t" else "CSV"
    try:
        frame = pd.read_csv(path, sep=sep, header=None, dtype=str, keep_default_na=False, skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataError(f"{path} could not be parsed as {kind}: {_one_line(str(exc))}") from None
    text = frame.apply(lambda c: c.fillna("").str.strip())
    values = text.apply(pd.to_numeric, errors="coerce")
    words = text.apply(lambda c: c.str.lower().isin(_NON_FINITE_WORDS))
    numeric = values.notna() | words
    if _header_decision(path, frame, values, numeric):
        frame, text, values, numeric, words = (t.iloc[1:] for t in (frame, text, values, numeric, words))
        offset = 2
    else:
        offset = 1
    if not numeric.to_numpy().all():
        r, c = np.argwhere(~numeric.to_numpy())[0]
        cell = text.iat[r, c]
        what = "is empty (a short row?)" if cell == "" else f"is not a number ({cell!r})"
        raise DataError(
            f"{path}: row {r + offset}, column {c + 1} {what}; "
            "vector files must be all numeric — put labels in a metadata file"
        )
    array = values.to_numpy(dtype=np.float64)
    # Finite text such as 1e300 (or 1e400, which pandas already reads as inf) would
    # become inf as float32 and be reported as an inf the file does not hold.
    with np.errstate(invalid="ignore"):
        over = ((np.abs(array) > FLOAT32_MAX) & ~words.to_numpy()).any(axis=1)
    if over.any():
        rows = np.flatnonzero(over)
        raise _overflow_error(str(path), len(rows), [int(r) for r in rows[:5]])
    return np.ascontiguousarray(array, dtype=np.float32)  # pandas hands back column-major blocks


def _read_meta(meta: Any, n_rows: int) -> pd.DataFrame | None:
    if meta is None:
        return None
    if isinstance(meta, pd.DataFrame):
        frame = meta.reset_index(drop=True)
    elif hasattr(meta, "to_pandas") and hasattr(meta, "column_names"):
        frame = meta.to_pandas()
    else:
        path = Path(meta)
        check_regular_file(path, "metadata file")
        suffixes = [s.lower() for s in path.suffixes]
        try:
            if ".parquet" in suffixes or ".pq" in suffixes:
                frame = pd.read_parquet(path)
            else:
                sep = _sep_for(path)
                # TF Projector convention: one column has no header, several do.
                probe = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
                header = 0 if probe.shape[1] > 1 else None
                frame = pd.read_csv(path, sep=sep, header=header, keep_default_na=False)
                if header is None:
                    frame.columns = ["label"]
                    if len(frame) == n_rows + 1:
                        # One column with one line more than there are vectors: its
                        # first line names the column (pandas' to_csv writes one), so
                        # reading it as a label would shift every label by one row.
                        name = str(frame.iat[0, 0]).strip() or "label"
                        frame = pd.read_csv(path, sep=sep, header=0, keep_default_na=False)
                        frame.columns = [name]
                        logger.info("%s: one column and %d lines for %d vectors: first line read as "
                                    "the column name %r", path, n_rows + 1, n_rows, name)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"metadata file {path} could not be read: {exc}") from None
    if len(frame) != n_rows:
        raise DataError(f"metadata has {len(frame)} rows but there are {n_rows} vectors; they must match row for row")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def load_vectors(
    source: Any,
    meta: Any = None,
    *,
    columns: list[str] | None = None,
    key: str | None = None,
    check_finite: bool = True,
) -> Vectors:
    """Load a vector set and its optional metadata, validated.

    Parameters
    ----------
    source : str, path, array or table
        ``.npy`` (memory-mapped, never copied whole), ``.npz``, ``.parquet``,
        ``.csv`` / ``.tsv`` (optionally gzipped; headerless numeric rows as in the
        TensorFlow Projector's ``vectors.tsv``; a first row is a header only when no
        cell is a number or it holds the column positions ``0..d-1`` / ``1..d`` that
        ``pandas.to_csv`` writes, and the decision is logged), a numpy or cupy array, a pandas
        DataFrame or a pyarrow Table, or ``"builtin:NAME"`` (see :func:`load_builtin`).
        A directory or glob of ``.npy`` / parquet shards is read lazily as a
        ``dask.array`` plus a ``dask.dataframe`` of metadata (needs dask).
    meta : str, path, DataFrame or Table, optional
        Metadata with one row per vector. For ``vectors.tsv`` a ``metadata.tsv``
        beside it is picked up automatically.
    columns : list of str, optional
        Table inputs: the columns holding the vectors (one list column, or numeric
        columns). By default a single list column, else all columns.
    key : str, optional
        ``.npz``: which array to read.
    check_finite : bool, default=True
        Scan for NaN / inf rows.

    Returns
    -------
    Vectors
        ``(vectors, meta)``.

    Raises
    ------
    DataError
        Missing, unreadable, truncated or unsupported files; FIFOs, devices, sockets
        and symlink loops (only regular files are read); non-numeric values; wrong
        shape; too few rows; NaN / inf rows; float64 values beyond the float32 range;
        metadata with another row count.

    Examples
    --------
    >>> X, meta = load_vectors("builtin:mixture:2000x20")
    >>> X.shape, list(meta.columns)
    ((2000, 20), ['label'])
    """
    frame_meta = None
    if isinstance(source, str | os.PathLike) and str(source).startswith("builtin:"):
        X, frame_meta = load_builtin(str(source)[len("builtin:") :])
    elif isinstance(source, str | os.PathLike) and is_shard_source(source):
        from embedscope.engine.distributed import load_sharded

        X, frame_meta = load_sharded(source, columns=columns, check_finite=check_finite)
        if meta is not None:
            raise DataError("a separate metadata file is not supported for sharded input; "
                            "put the metadata columns in the parquet shards")
        return Vectors(X, frame_meta)
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        _path_error(path)
        suffixes = [s.lower() for s in path.suffixes]
        # An option that cannot apply is refused rather than silently ignored.
        if key is not None and path.suffix.lower() != ".npz":
            raise DataError(f"key={key!r} (--key) names an array inside an .npz file; {path} is not one")
        if columns is not None and not (".parquet" in suffixes or ".pq" in suffixes):
            raise DataError(f"columns={columns!r} (--columns) selects vector columns of a parquet table; "
                            f"{path} is not one")
        if path.suffix.lower() == ".npy":
            X = _read_npy(path)
        elif path.suffix.lower() == ".npz":
            X = _read_npz(path, key)
        elif ".parquet" in suffixes or ".pq" in suffixes:
            X, frame_meta = _read_parquet(path, columns)
        elif ".csv" in suffixes or ".tsv" in suffixes or ".tab" in suffixes or ".txt" in suffixes:
            X = _read_delimited(path)
            if meta is None and path.name.lower().startswith("vectors.tsv"):
                sibling = path.with_name("metadata.tsv")
                if sibling.exists():
                    meta = sibling
        else:
            raise DataError(f"{path}: unknown file type {path.suffix!r}; use .npy, .npz, .parquet, .csv or .tsv")
    elif isinstance(source, pd.DataFrame):
        import pyarrow as pa

        try:
            table = pa.Table.from_pandas(source, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(f"DataFrame could not be converted: {exc}") from None
        X, frame_meta = _table_to_vectors(table, columns, "DataFrame")
    elif hasattr(source, "column_names") and hasattr(source, "schema"):
        X, frame_meta = _table_to_vectors(source, columns, "Table")
    else:
        X = source
    X = validate_vectors(X, name=str(source) if isinstance(source, str | os.PathLike) else "input", check_finite=check_finite)
    if meta is not None:
        extra = _read_meta(meta, X.shape[0])
        frame_meta = extra if frame_meta is None else pd.concat([frame_meta, extra], axis=1)
    return Vectors(X, frame_meta)


# ----------------------------------------------------------------------------- built-ins


def load_builtin(name: str, *, random_state: int = 0) -> Vectors:
    """A built-in dataset with a ``label`` metadata column (see :func:`embedscope.datasets.make_builtin`)."""
    return Vectors(*make_builtin(name, random_state=random_state))
