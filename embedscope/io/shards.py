"""Folders and globs of shards, read lazily as Dask collections.

:func:`load_sharded` turns a directory or glob of ``.npy`` or parquet shards into a
``dask.array`` of vectors (plus a ``dask.dataframe`` of metadata for parquet) without
reading the data here: ``.npy`` shards are sized from their headers, parquet shards
from one pass over their partitions. Every shard is checked like a single file (only
regular files, no pickles), and the NaN / inf and float32-overflow checks run as one
distributed pass. Dask is optional (``pip install 'embedscope[dask]'``); nothing here
imports it before a shard source is read.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embedscope._array import dask_modules
from embedscope.errors import DataError
from embedscope.io.readers import check_regular_file, read_npy
from embedscope.io.validate import FLOAT32_MAX

__all__ = ["load_sharded", "shard_files"]


def shard_files(source: str | os.PathLike) -> list[Path]:
    """The shard files of a directory (``*.npy`` or ``*.parquet``) or a glob, sorted.

    Parameters
    ----------
    source : str or path
        A directory, a glob pattern such as ``"emb/part-*.parquet"``, or one file
        (a single shard).

    Returns
    -------
    list of Path

    Raises
    ------
    DataError
        No shards; a folder or glob mixing ``.npy`` and parquet (reading one kind would
        silently drop the other); a shard that is not a regular file (a FIFO would
        block, a device never end, a broken link lose rows).
    """
    text = str(source)
    if Path(text).is_file() and Path(text).suffix.lower() in (".npy", ".parquet"):
        files = [Path(text)]
    elif any(ch in text for ch in "*?[") and not Path(text).is_dir():
        files = sorted(Path(p) for p in glob.glob(text) if not os.path.isdir(p))
    else:
        npy, parquet = sorted(Path(text).glob("*.npy")), sorted(Path(text).glob("*.parquet"))
        if npy and parquet:
            raise DataError(f"{text} mixes {len(npy)} .npy and {len(parquet)} .parquet shard(s) "
                            f"(e.g. {npy[0].name} and {parquet[0].name}); keep one kind per folder")
        files = npy or parquet
    if not files:
        raise DataError(f"{text}: no .npy or .parquet shards found")
    kinds = {f.suffix.lower() for f in files}
    if len(kinds) > 1 or not kinds <= {".npy", ".parquet"}:
        raise DataError(f"{text}: shards must all be .npy or all .parquet; found {sorted(kinds)}")
    for f in files:
        check_regular_file(f, "shard")
    return files


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a shard (a memory map reads only the header)."""
    mapped = read_npy(path)
    if mapped.dtype.kind not in "biuf" or mapped.ndim != 2 or not mapped.flags.c_contiguous:
        raise DataError(f"{path}: shards must be 2-D C-ordered numeric arrays; "
                        f"got shape {mapped.shape}, dtype {mapped.dtype}")
    return mapped.shape, mapped.dtype


def _load_npy_shard(path: str) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)[:]


def _vector_block(frame: pd.DataFrame, columns: list[str], width: int) -> np.ndarray:
    if len(columns) == 1 and frame[columns[0]].dtype == object:
        rows = frame[columns[0]].to_numpy()
        lengths = {len(r) for r in rows}
        if lengths - {width}:  # load_sharded checked the widths; a shard changed since
            raise DataError(f"vector column {columns[0]!r} has rows of {sorted(lengths)} values; expected {width}")
        block = np.stack(rows) if len(rows) else np.empty((0, width))
        return block.astype(np.float32)
    return frame[columns].to_numpy(dtype=np.float32)


def _partition_widths(frame: pd.DataFrame, column: str) -> tuple[int, int, int]:
    """(rows, shortest vector, longest vector) of one partition's list column."""
    lengths = frame[column].map(len).to_numpy() if len(frame) else np.zeros(1, dtype=int)
    return len(frame), int(lengths.min()), int(lengths.max())


def _shard_width_error(source: Any, files: list[Path], column: str) -> DataError:
    """Name the first parquet shard whose vectors differ in width from the first shard's."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    expected = None
    for f in files:
        lengths = pc.list_value_length(pq.read_table(f, columns=[column]).column(column))
        lo, hi = pc.min(lengths).as_py(), pc.max(lengths).as_py()
        if lo is None:
            continue
        if lo != hi:
            return DataError(f"shard {f} has vectors of different widths ({lo} and {hi}) in column {column!r}")
        if expected is None:
            expected = (f, lo)
        elif lo != expected[1]:
            return DataError(f"shards have different widths in column {column!r}: {f} has {lo}, "
                             f"{expected[0]} has {expected[1]}")
    return DataError(f"{source}: vectors in column {column!r} have different widths")


def load_sharded(source: str | os.PathLike, *, columns: list[str] | None = None,
                 check_finite: bool = True) -> tuple[Any, Any]:
    """A directory or glob of shards as lazy Dask collections.

    Parameters
    ----------
    source : str or path
        A directory of ``.npy`` (or ``.parquet``) files, or a glob such as
        ``"emb/part-*.parquet"``. Shards are read in name order.
    columns : list of str, optional
        Parquet: the vector column (a list column) or numeric columns; by default the
        only list column. The other columns become metadata.
    check_finite : bool, default=True
        One distributed pass counting rows with NaN / inf.

    Returns
    -------
    X : dask.array.Array of shape (n, d)
        float32, or float64 where the shards are float64.
    meta : dask.dataframe.DataFrame or None
        The parquet columns that are not vectors.

    Raises
    ------
    DataError
        The refusals of :func:`shard_files`; shards of different widths or not 2-D
        numeric arrays; no vector column, or several list columns and no choice; fewer
        than 2 rows; rows with NaN / inf or beyond the float32 range (counted).
    ImportError
        Dask is not installed.
    """
    dask, da, dd = dask_modules()
    files = shard_files(source)
    meta = None
    if files[0].suffix.lower() == ".npy":
        headers = [_npy_header(f) for f in files]
        first = headers[0][0][1]
        for f, (shape, _) in zip(files, headers, strict=True):
            if shape[1] != first:
                raise DataError(f"shards have different widths: {f} has {shape[1]}, {files[0]} has {first}")
        dtype = np.result_type(*[dt for _, dt in headers])
        blocks = [da.from_delayed(dask.delayed(_load_npy_shard)(str(f)), shape=shape, dtype=dt)
                  for f, (shape, dt) in zip(files, headers, strict=True)]
        X = da.concatenate(blocks, axis=0).astype(np.float32 if dtype != np.float64 else dtype)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pq.read_schema(files[0])
        if columns is None:
            columns = [f.name for f in schema if pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type)
                       or pa.types.is_large_list(f.type)]
            if len(columns) != 1:
                raise DataError(f"{source}: say which column(s) hold the vectors (columns=[...], --columns); "
                                f"list columns found: {columns}")
        frame = dd.read_parquet([str(f) for f in files])
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(f"{source}: no column(s) {missing}; shards have {list(frame.columns)}")
        parts = frame.to_delayed()
        if len(columns) == 1 and frame[columns[0]].dtype == object:
            # One pass finds each partition's rows and vector widths: ragged shards are
            # named here instead of failing later inside numpy on a worker.
            stats = dask.compute(*[dask.delayed(_partition_widths)(p, columns[0]) for p in parts])
            lengths = tuple(n for n, _, _ in stats)
            widths = {w for n, lo, hi in stats if n for w in (lo, hi)}
            if len(widths) > 1:
                raise _shard_width_error(source, files, columns[0])
            width = widths.pop() if widths else 0
        else:
            lengths = tuple(int(n) for n in frame.map_partitions(len).compute())
            width = len(columns)
        X = da.concatenate([da.from_delayed(dask.delayed(_vector_block)(p, columns, width), shape=(n, width),
                                            dtype=np.float32)
                            for p, n in zip(parts, lengths, strict=True) if n], axis=0)
        rest = [c for c in frame.columns if c not in columns]
        meta = frame[rest] if rest else None
    if X.shape[0] < 2:
        raise DataError(f"{source} has {X.shape[0]} row(s); at least 2 are needed")
    if check_finite:
        bad_rows = ~da.isfinite(X).all(axis=1)
        over_rows = (da.fabs(X) > FLOAT32_MAX).any(axis=1) & ~bad_rows if X.dtype.itemsize > 4 else None
        bad, over = dask.compute(bad_rows.sum(), over_rows.sum() if over_rows is not None else 0)
        if bad:
            raise DataError(f"{source} has {int(bad)} row(s) with NaN or inf values; drop or impute them before reducing")
        if over:
            raise DataError(f"{source} has {int(over)} row(s) with values beyond the float32 range (|x| > 3.4e38); "
                            "they would overflow to inf when converted to float32: rescale them")
    return X, meta
