"""Row-parallel loops without numba's ``parallel=True``: serial ``nogil`` kernels on a thread pool.

A ``prange`` kernel compiles through numba's parfor passes and a gufunc wrapper of its
own: the UMAP SGD epoch took 6.5 s of CPU to compile with ``parallel=True`` against
2.3 s serial (busy 2-core machine, fresh cache), the largest single share of a first
fit. A kernel written over a row range ``[start, stop)`` with ``nogil=True`` compiles
as a plain function, and running its chunks on Python threads gives the same
parallelism: each chunk is one contiguous block of rows, as numba's static schedule
gives a thread. Results do not depend on the split when rows are independent (each
writes only its own rows), which every caller here guarantees.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import numba
import numpy as np

__all__ = ["for_rows", "n_chunks", "run_row_chunks"]

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


def _forget_pool() -> None:
    # A forked child inherits the pool object but not its threads: submitting to it
    # would wait forever (dask and multiprocessing fork workers), so it starts afresh.
    global _pool, _pool_size, _lock
    _pool, _pool_size, _lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def n_chunks(n_rows: int, min_rows: int = 1) -> int:
    """How many chunks ``n_rows`` rows are split into: numba's thread count, at most one per ``min_rows``."""
    return max(1, min(numba.get_num_threads(), n_rows // max(min_rows, 1)))


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="embedscope-rows")
            _pool_size = workers
        return _pool


def run_row_chunks(kernel: Callable[..., Any], n_rows: int, chunks: int,
                   args: tuple[object, ...], per_chunk: tuple[np.ndarray, ...] = ()) -> list[Any]:
    """Call ``kernel(start, stop, *args, *(a[c] for a in per_chunk))`` for each chunk ``c``.

    Returns the calls' results, in chunk order.

    ``chunks`` contiguous blocks of rows; chunk 0 runs in the calling thread, the rest
    on a pool of ``chunks - 1`` threads. ``per_chunk`` arrays give each chunk its own
    scratch row (indexed by chunk, at least ``chunks`` rows). ``kernel`` must release
    the GIL (``nogil=True``) for the chunks to overlap; an exception in any chunk is
    raised here after all have finished.
    """
    bounds = np.linspace(0, n_rows, chunks + 1).astype(np.int64)
    if chunks <= 1:
        return [kernel(0, n_rows, *args, *(a[0] for a in per_chunk))]
    pool = _executor(chunks - 1)
    futures = [pool.submit(kernel, int(bounds[c]), int(bounds[c + 1]), *args, *(a[c] for a in per_chunk))
               for c in range(1, chunks)]
    try:
        first = kernel(int(bounds[0]), int(bounds[1]), *args, *(a[0] for a in per_chunk))
    finally:
        wait(futures)  # no chunk may still write once the caller moves on
    return [first, *(future.result() for future in futures)]


def for_rows(kernel: Callable[..., Any], n_rows: int, *args: object, min_rows: int = 1024) -> list[Any]:
    """:func:`run_row_chunks` with one chunk per thread, each of at least ``min_rows`` rows."""
    return run_row_chunks(kernel, n_rows, n_chunks(n_rows, min_rows), args)
