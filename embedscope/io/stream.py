"""Streaming the rows of an array in blocks, with small, steady memory.

``.npy`` files are memory-mapped and never copied whole; :func:`iter_row_chunks`
streams them through a small reusable buffer so that a pass over a file larger than
RAM keeps the resident set small.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from embedscope._array import array_module, is_cupy
from embedscope.errors import DataError

#: Bytes per block in streamed passes (about 21,800 rows of 768 float32): large enough
#: for BLAS to run at full speed, small enough that a few blocks stay well under the
#: 25%-of-file budget of the memory-mapped path.
CHUNK_BYTES = 64 * 2**20
#: Block size for data already on a GPU: kernel launches, not memory, bound the blocks.
DEVICE_CHUNK_BYTES = 1024 * 2**20

def _file_backing(X: np.ndarray) -> tuple[str, int] | None:
    """(path, byte offset) of a C-contiguous memmap that starts its file mapping."""
    import mmap

    if not isinstance(X, np.memmap) or not X.flags.c_contiguous:
        return None
    if not isinstance(X.base, mmap.mmap) or X.filename is None:
        return None  # a view of a memmap: its offset is not tracked reliably
    return str(X.filename), int(X.offset)


def chunk_rows_for(X: Any, chunk_bytes: int = CHUNK_BYTES) -> int:
    """How many rows of ``X`` make up about ``chunk_bytes``."""
    row_bytes = max(1, X.shape[1] * 4)
    return max(1, min(X.shape[0], chunk_bytes // row_bytes))


def iter_row_chunks(
    X: Any, *, chunk_rows: int | None = None, dtype: Any = np.float32
) -> Iterator[tuple[int, Any]]:
    """Yield ``(start_row, block)`` over the rows of ``X``.

    A memory-mapped ``.npy`` is read with ``os.pread`` into one reusable buffer
    instead of through the mapping, so its pages do not stay in this process's
    resident set: a pass over a 3 GB file keeps RSS near one chunk.

    Parameters
    ----------
    X : array
        numpy (memmap included) or cupy array, 2-D.
    chunk_rows : int, optional
        Rows per block; default about 64 MiB worth.
    dtype : dtype or None, default=float32
        Blocks are converted to this dtype (None keeps the stored dtype). float64
        input stays float64 when dtype is float32, since precision was asked for.

    Notes
    -----
    Blocks from the buffered path are reused: copy one to keep it past the next step.
    """
    n = X.shape[0]
    step = chunk_rows or chunk_rows_for(X, DEVICE_CHUNK_BYTES if is_cupy(X) else CHUNK_BYTES)
    out_dtype = None if dtype is None else (np.float64 if X.dtype == np.float64 else np.dtype(dtype))
    backing = _file_backing(X) if isinstance(X, np.ndarray) else None
    if backing is None:
        xp = array_module(X)
        for start in range(0, n, step):
            block = X[start : start + step]
            if out_dtype is not None:
                block = xp.ascontiguousarray(block, dtype=out_dtype)
            yield start, block
        return
    path, offset = backing
    row_bytes = X.shape[1] * X.dtype.itemsize
    raw = np.empty((step, X.shape[1]), dtype=X.dtype)
    converted = None if out_dtype in (None, X.dtype) else np.empty((step, X.shape[1]), dtype=out_dtype)
    fd = os.open(path, os.O_RDONLY)
    try:
        for start in range(0, n, step):
            rows = min(step, n - start)
            view = raw[:rows].reshape(-1).view(np.uint8).data  # a writable memoryview of the buffer
            got, want = 0, rows * row_bytes
            while got < want:
                read = os.preadv(fd, [view[got:]], offset + start * row_bytes + got)
                if read == 0:
                    raise DataError(f"{path} ended early at row {start}: the file is truncated")
                got += read
            if converted is None:
                yield start, raw[:rows]
            else:
                np.copyto(converted[:rows], raw[:rows], casting="unsafe")
                yield start, converted[:rows]
    finally:
        os.close(fd)
