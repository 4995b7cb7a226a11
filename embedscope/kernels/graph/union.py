"""Sparse symmetrisation by sorted pair keys, written once for numpy and cupy.

A directed edge list ``(row, col, value)`` of an ``n``-node graph becomes a CSR matrix
of ``A op A.T`` without a sparse-matrix library: each edge is keyed ``row * n + col``
(int64), duplicates are summed (``xp.add.at``), the edges and their transposes are
sorted by key together, and a key that appears twice (an edge present both ways) is
combined by ``op``: the fuzzy union ``a + b - a * b`` (UMAP) or the sum ``a + b``
(t-SNE). A sorted key list is already row-major, so its rows give ``indptr`` by a
search and its columns are sorted within each row.

Every step is an ``xp`` call that cupy implements (``argsort`` is CUB's radix sort on
a GPU), so the same code runs on the host in CI and on the device, where the graph
stays for the optimiser. :func:`union_bytes` is what the memory planner counts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Ways to combine an edge with its transpose.
COMBINE = ("fuzzy", "sum")


def union_bytes(n_edges: int, n: int) -> int:
    """Peak device bytes of :func:`symmetrise_knn` for ``n_edges`` directed edges of ``n`` nodes.

    Traced from the code (E = ``n_edges``, all kept, no duplicates): the caller's
    float32 values (4E) and int32 columns (4E); the int64 keys (8E) and the dedup's
    sort (permutation 8E, sorted keys 8E and values 4E); both directions with their
    transposed keys and values (8E + 16E + 8E); their sort permutation (16E), sorted
    copies (16E + 8E) and the sort's scratch (taken as 16E); the CSR output. About 84
    bytes per directed edge, counted as 96 to leave room for the allocator.
    """
    return int(96 * n_edges + 8 * (n + 1))


def _first_of_runs(keys: Any, xp: Any) -> Any:
    """Mask of the first element of each run of equal values in sorted ``keys``."""
    first = xp.ones(keys.shape[0], dtype=bool)
    if keys.shape[0] > 1:
        first[1:] = keys[1:] != keys[:-1]
    return first


def _dedup(keys: Any, values: Any, xp: Any) -> tuple[Any, Any]:
    """Sorted unique keys and the sum of the values of each (a kNN row may repeat a column)."""
    order = xp.argsort(keys, kind="stable")
    keys = keys[order]
    values = values[order]
    first = _first_of_runs(keys, xp)
    if bool(first.all()):
        return keys, values
    run = xp.cumsum(first) - 1
    sums = xp.zeros(int(run[-1]) + 1, dtype=values.dtype)
    xp.add.at(sums, run, values)
    return keys[first], sums


def symmetrise(rows: Any, cols: Any, values: Any, n: int, combine: str = "fuzzy", *,
               xp: Any = np) -> tuple[Any, Any, Any]:
    """CSR arrays of ``A op A.T`` for the directed edges ``A[rows, cols] = values``.

    Parameters
    ----------
    rows, cols : int arrays of shape (m,)
        Edge ends; edges with ``cols < 0`` (missing neighbours) or ``rows == cols``
        are dropped, as are zero values (the result has no explicit zeros).
    values : float array of shape (m,)
        Non-negative weights; duplicate ``(row, col)`` pairs are summed first.
    n : int
        Number of nodes.
    combine : {"fuzzy", "sum"}, default="fuzzy"
        ``a + b - a * b`` (UMAP's fuzzy union) or ``a + b`` (t-SNE's joint P before
        normalisation); an edge present one way only keeps its value.
    xp : module, default=numpy
        numpy or cupy; every array in and out lives with it.

    Returns
    -------
    indptr : int64 array (n + 1,)
    indices : int32 array (nnz,), sorted within each row
    data : array (nnz,), the dtype of ``values``
    """
    rows = xp.asarray(rows).astype(xp.int64, copy=False).ravel()
    cols = xp.asarray(cols).astype(xp.int64, copy=False).ravel()
    values = xp.asarray(values).ravel()
    keep = (cols >= 0) & (cols != rows) & (values != 0)
    return _union(rows[keep] * n + cols[keep], values[keep], n, combine, xp)


def symmetrise_knn(indices: Any, values: Any, combine: str = "fuzzy", *, xp: Any = np) -> tuple[Any, Any, Any]:
    """:func:`symmetrise` of a kNN graph: row ``i`` of ``indices`` / ``values`` (n, k) are i's edges.

    Builds the pair keys straight from the (n, k) arrays, without int64 row and column
    lists (16 bytes per edge less at the peak).
    """
    n = indices.shape[0]
    indices = xp.asarray(indices)
    values = xp.asarray(values)
    starts = xp.arange(n, dtype=xp.int64)[:, None]
    keep = (indices >= 0) & (indices != starts) & (values != 0)
    keys = starts * n + indices
    if bool(keep.all()):
        return _union(keys.ravel(), values.ravel(), n, combine, xp)
    return _union(keys[keep], values[keep], n, combine, xp)


def _union(keys: Any, values: Any, n: int, combine: str, xp: Any) -> tuple[Any, Any, Any]:
    """The CSR arrays of ``A op A.T`` from the directed keys ``row * n + col`` and values."""
    if combine not in COMBINE:
        raise ValueError(f"combine={combine!r} must be one of {COMBINE}")
    keys, values = _dedup(keys, values, xp)
    transposed = (keys % n) * n + keys // n
    both = xp.concatenate([keys, transposed])
    vals = xp.concatenate([values, values])
    del keys, transposed, values
    order = xp.argsort(both, kind="stable")
    both = both[order]
    vals = vals[order]
    del order
    first = _first_of_runs(both, xp)
    # After the dedup each key occurs at most twice: once as an edge, once as a transpose.
    paired = xp.zeros_like(first)
    if both.shape[0] > 1:
        paired[:-1] = ~first[1:]
    a = vals[paired]
    b = vals[xp.flatnonzero(paired) + 1]
    vals[paired] = a + b - a * b if combine == "fuzzy" else a + b
    del a, b, paired
    keys = both[first]
    data = vals[first]
    del both, vals, first
    nonzero = data != 0
    if not bool(nonzero.all()):
        keys, data = keys[nonzero], data[nonzero]
    row_of = keys // n
    indptr = xp.searchsorted(row_of, xp.arange(n + 1, dtype=xp.int64), side="left").astype(xp.int64)
    indices = (keys - row_of * n).astype(xp.int32)
    return indptr, indices, data


def as_csr(indptr: Any, indices: Any, data: Any, n: int, xp: Any = np) -> Any:
    """A CSR matrix on ``xp``'s device: scipy's for numpy, cupyx's for cupy (no copy)."""
    if xp is np:
        import scipy.sparse as sp

        return sp.csr_matrix((data, indices, indptr), shape=(n, n))
    import cupyx.scipy.sparse as csp  # pragma: no cover - needs a GPU

    return csp.csr_matrix((data, indices, indptr), shape=(n, n))  # pragma: no cover


def csr_to_host(graph: Any) -> Any:
    """A scipy CSR matrix of ``graph`` (cupyx matrices are copied to the host)."""
    import scipy.sparse as sp

    if sp.issparse(graph):
        return graph.tocsr()
    return graph.get().tocsr()  # cupyx.scipy.sparse


def to_device(a: Any, xp: Any, dtype: Any = None) -> Any:
    """``a`` on ``xp``'s device; host arrays go through :func:`embedscope._memory.upload_rows`
    (bounded pinned staging) when ``xp`` is not numpy."""
    dtype = a.dtype if dtype is None else dtype
    if xp is np or not isinstance(a, np.ndarray):
        return xp.ascontiguousarray(xp.asarray(a, dtype=dtype))
    from embedscope._memory import upload_rows  # pragma: no cover - needs a GPU

    return upload_rows(a, xp, dtype=dtype)  # pragma: no cover


def is_device_csr(graph: Any) -> bool:
    """True for a cupyx sparse matrix (a graph that lives on a GPU)."""
    return type(graph).__module__.startswith("cupyx.")
