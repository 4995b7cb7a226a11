"""Readers: one function per file format, each refusing a bad file with one clear line.

Every reader returns plain arrays (and a metadata frame where the format carries one);
:func:`embedscope.io.load.load_vectors` picks the reader and validates what it returns.
Only regular files are opened (:func:`check_regular_file`): a FIFO would block a
reader forever and a device would never end. Pickles are never loaded.
"""

from __future__ import annotations

import errno
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embedscope._progress import logger
from embedscope.errors import DataError
from embedscope.io.validate import FLOAT32_MAX, overflow_error

__all__ = [
    "check_regular_file",
    "is_shard_source",
    "read_delimited",
    "read_meta",
    "read_npy",
    "read_npz",
    "read_parquet",
    "table_to_vectors",
]


def is_shard_source(source: str | os.PathLike) -> bool:
    """Whether ``source`` is a directory or a glob pattern, read lazily as Dask collections.

    Parameters
    ----------
    source : str or path

    Returns
    -------
    bool
    """
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


def _one_line(text: str, limit: int = 200) -> str:
    """``text`` on one printable line, cut to ``limit`` characters (headers can hold junk)."""
    flat = " ".join("".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def read_npy(path: Path) -> np.ndarray:
    """A ``.npy`` file, memory-mapped (never copied whole).

    Parameters
    ----------
    path : Path
        A regular file (see :func:`check_regular_file`).

    Returns
    -------
    numpy.memmap

    Raises
    ------
    DataError
        No NPY header (numpy would take the file for a pickle), an object array, a
        truncated file, or a corrupt header.
    """
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



def read_npz(path: Path, key: str | None) -> np.ndarray:
    """One array of an ``.npz`` archive.

    Parameters
    ----------
    path : Path
    key : str or None
        The array to read; by default the only one, else the first of ``vectors``,
        ``embeddings``, ``X``, ``x``, ``data``.

    Returns
    -------
    ndarray

    Raises
    ------
    DataError
        Several arrays and no key, a missing key, an object array, or a truncated or
        corrupt archive.
    """
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


def table_to_vectors(table: Any, columns: list[str] | None, origin: str) -> tuple[np.ndarray | None, pd.DataFrame | None]:
    """Split a pyarrow Table into vectors and metadata.

    Parameters
    ----------
    table : pyarrow.Table
    columns : list of str or None
        The vector columns: one list column, or numeric columns. By default the only
        list column, else every column.
    origin : str
        How to name the table in messages.

    Returns
    -------
    X : ndarray or None
    meta : DataFrame or None
        The columns that are not vectors.

    Raises
    ------
    DataError
        No columns, missing or non-numeric vector columns, several list columns and
        no choice, null values, or list rows of different lengths.
    """
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
    X: np.ndarray | None
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
    return X, meta


def _is_list_type(t: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _is_numeric_type(t: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(t) or pa.types.is_floating(t)


def read_parquet(path: Path, columns: list[str] | None) -> tuple[np.ndarray | None, pd.DataFrame | None]:
    """A parquet file as (vectors, metadata), split by :func:`table_to_vectors`.

    Raises
    ------
    DataError
        An unreadable (truncated, corrupt) file, or the refusals of :func:`table_to_vectors`.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path} is not a readable parquet file (truncated or corrupt?): {_one_line(str(exc))}") from None
    return table_to_vectors(table, columns, str(path))


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


def read_delimited(path: Path) -> np.ndarray:
    """A headerless (or single-header-row) numeric CSV/TSV, as in the TF Projector.

    Parameters
    ----------
    path : Path
        ``.csv``, ``.tsv`` / ``.tab`` (tabs) or ``.txt``, optionally gzipped.

    Returns
    -------
    ndarray of float32

    Raises
    ------
    DataError
        Empty or unparsable, a cell that is not a number (row and column named), a
        first row mixing numbers and text, or finite values beyond the float32 range.
    """
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
        raise overflow_error(str(path), len(rows), [int(r) for r in rows[:5]])
    return np.ascontiguousarray(array, dtype=np.float32)  # pandas hands back column-major blocks


def read_meta(meta: Any, n_rows: int) -> pd.DataFrame | None:
    """Metadata with one row per vector, from a file, a DataFrame or a pyarrow Table.

    Parameters
    ----------
    meta : str, path, DataFrame, Table or None
        A parquet, CSV or TSV file (one column has no header, several do, as in the
        TensorFlow Projector's ``metadata.tsv``).
    n_rows : int
        The number of vectors; the metadata must have as many rows.

    Returns
    -------
    DataFrame or None
        With string column names; None where ``meta`` is None.

    Raises
    ------
    DataError
        An unreadable file, or another row count than ``n_rows``.
    """
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


