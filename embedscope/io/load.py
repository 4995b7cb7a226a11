"""The load router: any supported source in, validated vectors and metadata out.

:func:`load_vectors` turns a file, a folder or glob of shards, an in-memory array or
table, or ``builtin:NAME`` into a 2-D float array plus an optional metadata table with
one row per vector. It only picks the reader (:mod:`embedscope.io.readers`, the shard
reader :mod:`embedscope.io.shards`, the generators of :mod:`embedscope.datasets`) and
validates the result once (:mod:`embedscope.io.validate`), so every later stage can
assume 2-D, numeric, finite data with at least two rows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from embedscope.datasets import make_builtin
from embedscope.errors import DataError
from embedscope.io.readers import (
    check_regular_file,
    is_shard_source,
    read_delimited,
    read_meta,
    read_npy,
    read_npz,
    read_parquet,
    table_to_vectors,
)
from embedscope.io.validate import validate_vectors

__all__ = ["Vectors", "load_builtin", "load_vectors"]


class Vectors(NamedTuple):
    """What :func:`load_vectors` returns: unpack as ``X, meta = load_vectors(...)``."""

    vectors: Any
    """2-D float array (numpy, memory-mapped numpy, cupy or dask), one row per point."""
    meta: Any
    """One row per vector (a pandas DataFrame, or a dask DataFrame for shards), or None."""


def load_builtin(name: str, *, random_state: int = 0) -> Vectors:
    """A built-in dataset with a ``label`` metadata column, as :class:`Vectors`.

    Parameters
    ----------
    name : str
        A built-in name, e.g. ``"mixture"``, ``"mixture:100kx50"``, ``"swissroll"``,
        ``"digits"``: :func:`embedscope.datasets.make_builtin` lists them all.
    random_state : int, default=0

    Returns
    -------
    Vectors

    Raises
    ------
    DataError
        An unknown name, an unreadable size, or data too large for the memory left.

    See Also
    --------
    embedscope.datasets.make_builtin : the generators behind it (plain arrays).
    """
    return Vectors(*make_builtin(name, random_state=random_state))


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
    X: Any
    frame_meta = None
    if isinstance(source, str | os.PathLike) and str(source).startswith("builtin:"):
        X, frame_meta = make_builtin(str(source)[len("builtin:") :])
    elif isinstance(source, str | os.PathLike) and is_shard_source(source):
        # Dask is optional: only a shard source loads it.
        from embedscope.io.shards import load_sharded

        X, frame_meta = load_sharded(source, columns=columns, check_finite=check_finite)
        if meta is not None:
            raise DataError("a separate metadata file is not supported for sharded input; "
                            "put the metadata columns in the parquet shards")
        return Vectors(X, frame_meta)
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        check_regular_file(path)
        suffixes = [s.lower() for s in path.suffixes]
        # An option that cannot apply is refused rather than silently ignored.
        if key is not None and path.suffix.lower() != ".npz":
            raise DataError(f"key={key!r} (--key) names an array inside an .npz file; {path} is not one")
        if columns is not None and not (".parquet" in suffixes or ".pq" in suffixes):
            raise DataError(f"columns={columns!r} (--columns) selects vector columns of a parquet table; "
                            f"{path} is not one")
        if path.suffix.lower() == ".npy":
            X = read_npy(path)
        elif path.suffix.lower() == ".npz":
            X = read_npz(path, key)
        elif ".parquet" in suffixes or ".pq" in suffixes:
            X, frame_meta = read_parquet(path, columns)
        elif ".csv" in suffixes or ".tsv" in suffixes or ".tab" in suffixes or ".txt" in suffixes:
            X = read_delimited(path)
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
        X, frame_meta = table_to_vectors(table, columns, "DataFrame")
    elif hasattr(source, "column_names") and hasattr(source, "schema"):
        X, frame_meta = table_to_vectors(source, columns, "Table")
    else:
        X = source
    X = validate_vectors(X, name=str(source) if isinstance(source, str | os.PathLike) else "input", check_finite=check_finite)
    if meta is not None:
        extra = read_meta(meta, X.shape[0])
        frame_meta = extra if frame_meta is None else pd.concat([frame_meta, extra], axis=1)
    return Vectors(X, frame_meta)
