"""Device-memory planning: decide block sizes before starting, fail with numbers.

A GPU stage estimates its peak before it allocates. Where the data does not fit it
is streamed from host memory in blocks; where no block size fits at all, the user
gets :class:`DeviceMemoryError` saying how much is needed and how much is free,
never a raw CUDA out-of-memory traceback from the middle of a run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

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
             *, budget_fraction: float = 0.8, max_block_bytes: int = 16 * GIB) -> KnnPlan:
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
    max_block_bytes : int, default=16 GiB
        Cap of one distance block. The selection runs one thread block per query
        row, so the query rows of a launch are what fills the device: a 2 GiB cap gave
        536 rows at 1M points and 53 at 10M (for 132 SMs); 16 GiB gives 4,294 and 429.

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


#: Host rows copied to the device per transfer by :func:`upload_rows`.
UPLOAD_CHUNK_BYTES = 128 * 2**20


def upload_rows(X: Any, xp: Any, *, dtype: Any = np.float32,
                chunk_bytes: int = UPLOAD_CHUNK_BYTES) -> Any:
    """``X`` (host rows, any float dtype, memmaps included) as a C-contiguous ``dtype`` array on ``xp``.

    ``cupy.asarray(numpy_array)`` stages the whole array through a pinned host buffer of
    its size, which then stays in cupy's pinned pool; float64 input would also need a
    float32 host copy first. Here the rows go in chunks of at most ``chunk_bytes``
    (cast on the host a chunk at a time), and the pinned pool is emptied afterwards,
    so the host holds at most one chunk more than the input.
    """
    n = X.shape[0]
    out = xp.empty(X.shape, dtype=dtype)
    row_bytes = max(1, int(np.prod(X.shape[1:], dtype=np.int64)) * max(np.dtype(X.dtype).itemsize,
                                                                       np.dtype(dtype).itemsize))
    rows = max(1, chunk_bytes // row_bytes)
    for r0 in range(0, n, rows):
        out[r0:r0 + rows] = xp.asarray(np.ascontiguousarray(X[r0:r0 + rows], dtype=dtype))
    free_pinned(xp)
    return out


def free_pinned(xp: Any) -> None:
    """Give cupy's pinned staging buffers back to the host (nothing for numpy)."""
    pool = getattr(xp, "get_default_pinned_memory_pool", None)
    if pool is not None:
        pool().free_all_blocks()


# ----------------------------------------------------------------------------- host memory


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _cgroup_left(root: str = "/sys/fs/cgroup") -> int | None:
    """What a container's memory limit leaves (cgroup v2, else v1); MemAvailable shows the host's."""
    for limit_file, usage_file, stat_file, key in (
            ("memory.max", "memory.current", "memory.stat", "inactive_file"),
            ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "memory/memory.stat",
             "total_inactive_file")):
        limit_file, usage_file, stat_file = (os.path.join(root, f) for f in (limit_file, usage_file, stat_file))
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is None or usage is None or limit >= 1 << 60:  # "max" does not parse; v1 says ~2**63
            continue
        # usage counts the page cache; its inactive part is given back before an OOM kill
        reclaimable = 0
        try:
            with open(stat_file, encoding="ascii") as fh:
                for line in fh:
                    name, _, value = line.partition(" ")
                    if name == key:
                        reclaimable = int(value)
                        break
        except (OSError, ValueError):
            pass
        return max(0, limit - usage + reclaimable)
    return None


def _address_space_left() -> int | None:
    try:
        import resource
    except ImportError:  # not on Windows; nor is ulimit -v
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    pages = _read_int("/proc/self/statm")
    if pages is None:
        return None
    return max(0, soft - pages * os.sysconf("SC_PAGE_SIZE"))


def host_memory_budget() -> int | None:
    """Bytes this process may still allocate on the host, or None when the system does not say.

    The least of the memory available now, what a container's memory limit leaves, and
    within an address-space limit (``ulimit -v``) what is left of it: past any of them
    the process is killed or gets a ``MemoryError`` mid-run. Plots and generated
    datasets check their size against it before allocating.
    """
    limits = [b for b in (_meminfo_available(), _cgroup_left(), _address_space_left()) if b is not None]
    return min(limits) if limits else None
