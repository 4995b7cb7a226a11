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
    """Peak device bytes of :func:`symmetrise` for ``n_edges`` directed edges of ``n`` nodes.

    Counted: the directed keys and values (int64 + float32), both directions
    concatenated (2 x), their sort permutation (int64) and sorted copies, the
    first-of-key mask, and the CSR output (int32 columns, float32 values, int64
    ``indptr``) - a deliberate over-estimate (every temporary alive at once).
    """
    both = 2 * n_edges
    return int(n_edges * (8 + 4 + 8) + both * (8 + 4 + 8 + 8 + 4 + 1) + both * (4 + 4 + 8) + 8 * (n + 1))


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
    if combine not in COMBINE:
        raise ValueError(f"combine={combine!r} must be one of {COMBINE}")
    rows = xp.asarray(rows).astype(xp.int64, copy=False).ravel()
    cols = xp.asarray(cols).astype(xp.int64, copy=False).ravel()
    values = xp.asarray(values).ravel()
    keep = (cols >= 0) & (cols != rows) & (values != 0)
    rows, cols, values = rows[keep], cols[keep], values[keep]
    keys, values = _dedup(rows * n + cols, values, xp)
    del rows, cols
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


def is_device_csr(graph: Any) -> bool:
    """True for a cupyx sparse matrix (a graph that lives on a GPU)."""
    return type(graph).__module__.startswith("cupyx.")
