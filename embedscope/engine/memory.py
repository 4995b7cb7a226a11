"""Device-memory planning: decide block sizes before starting, fail with numbers.

A GPU stage estimates its peak before it allocates. Where the data does not fit it
is streamed from host memory in blocks; where no block size fits at all, the user
gets :class:`DeviceMemoryError` saying how much is needed and how much is free,
never a raw CUDA out-of-memory traceback from the middle of a run.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 2**30


class DeviceMemoryError(MemoryError):
    """A GPU stage cannot fit in the device memory that is free."""


def device_free_bytes() -> int:
    """Free memory of the current CUDA device (cupy's pool counts as free)."""
    import cupy

    free, _ = cupy.cuda.Device().mem_info
    pool = cupy.get_default_memory_pool()
    return int(free + pool.free_bytes())


def _fmt(nbytes: float) -> str:
    return f"{nbytes / GIB:.2f} GiB" if nbytes >= GIB / 10 else f"{nbytes / 2**20:.1f} MiB"


@dataclass(frozen=True)
class KnnPlan:
    """Blocks of an exact kNN search on a device."""

    query_rows: int
    """Query rows per distance block."""
    data_rows: int
    """Data rows resident on the device at a time (all of them when the data fits)."""
    resident: bool
    """True when all data rows stay on the device for the whole search."""
    peak_bytes: int
    """Estimated peak device memory of the plan."""


def plan_knn(n_data: int, n_queries: int, dim: int, k: int, free_bytes: int,
             *, budget_fraction: float = 0.8, max_block_bytes: int = 2 * GIB) -> KnnPlan:
    """Choose block sizes for a blocked exact kNN search.

    Memory per plan: the data rows on the device (float32, plus norms), one query
    block, its ``query_rows x data_rows`` distance block, and the running top-k of
    the block (candidates of two lists while merging).

    Parameters
    ----------
    n_data, n_queries, dim, k : int
        Problem size.
    free_bytes : int
        Free device memory.
    budget_fraction : float, default=0.8
        Share of the free memory the plan may use.
    max_block_bytes : int, default=2 GiB
        Cap of one distance block (larger blocks gain nothing).

    Returns
    -------
    KnnPlan

    Raises
    ------
    DeviceMemoryError
        Even 32 query rows against 1024 data rows do not fit.
    """
    budget = int(free_bytes * budget_fraction)
    row_bytes = 4 * (dim + 1)
    topk_bytes_per_query = 2 * 2 * k * 8  # idx + dist, current and candidate lists

    def peak(q_rows: int, d_rows: int) -> int:
        return d_rows * row_bytes + q_rows * (row_bytes + topk_bytes_per_query) + 4 * q_rows * d_rows

    if n_data * row_bytes <= budget // 2:
        data_rows, resident = n_data, True
    else:
        data_rows, resident = max(1024, (budget // 2) // row_bytes), False
        data_rows = min(data_rows, n_data)
    spare = budget - data_rows * row_bytes
    per_query = row_bytes + topk_bytes_per_query + 4 * data_rows
    query_rows = min(n_queries, max(0, spare // per_query), max(32, max_block_bytes // (4 * data_rows)))
    if query_rows < min(32, n_queries):
        need = peak(min(32, n_queries), min(1024, n_data))
        raise DeviceMemoryError(
            f"exact kNN of {n_queries:,} x {n_data:,} points in {dim} dims needs at least {_fmt(need)} "
            f"of GPU memory; {_fmt(free_bytes)} is free. Free GPU memory, or use backend='cpu'."
        )
    return KnnPlan(int(query_rows), int(data_rows), resident, peak(int(query_rows), int(data_rows)))


def check_fits(needed_bytes: int, free_bytes: int, what: str, hint: str) -> None:
    """Raise :class:`DeviceMemoryError` when ``needed_bytes`` exceed the free memory."""
    if needed_bytes > free_bytes:
        raise DeviceMemoryError(f"{what} needs {_fmt(needed_bytes)} of GPU memory; {_fmt(free_bytes)} is free. {hint}")
