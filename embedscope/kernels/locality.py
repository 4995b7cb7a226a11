"""Relabelling a layout problem so that points close in the layout get close labels.

Why: the layout optimisers (t-SNE's attraction, PaCMAP's pair forces) read
``Y[j]`` for every partner ``j`` of a point, and the partners are scattered over the
whole index range when the input rows come in no particular order (as they do:
shuffled data, clusters interleaved). Past the caches every read is a cache (and TLB)
miss: t-SNE's attraction on 1M points (~100 entries per row of P) took 0.39 s per
iteration in input order against 0.14 s relabelled, quiet, 2 cores
(``benchmarks/locality.py``). The t-SNE grid's spread and gather walk the grid
in point order as well.

The optimisers relabel their problem now and then by a Z-order (Morton) key of the
current layout (:func:`locality_order`): the partner lists' rows and labels are
permuted (:func:`permute_csr`, :func:`permute_lists`), and the layout and the
optimiser state with them. Every row keeps its entries in the same order, so a
point's sums run over the same terms in the same order.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from embedscope.kernels._threads import for_rows

#: Bits per axis of the Morton key (2-D: 2 x 21 = 42 bits, 3-D 63 bits): finer than any
#: cache line's worth of points at any size a host holds.
_BITS = 21


@numba.njit(cache=True, nogil=True)
def _spread_bits(v, stride):  # pragma: no cover - numba
    # Bit b of v goes to bit b * stride; the caller shifts each axis by its number.
    out = np.uint64(0)
    for b in range(_BITS):
        out |= ((v >> np.uint64(b)) & np.uint64(1)) << np.uint64(b * stride)
    return out


@numba.njit(cache=True, nogil=True)
def _morton_rows(start, stop, Y, lo, scale, keys):  # pragma: no cover - numba
    d = Y.shape[1]
    top = float((1 << _BITS) - 1)
    for i in range(start, stop):
        key = np.uint64(0)
        for c in range(d):
            q = min(max((Y[i, c] - lo[c]) * scale, 0.0), top)
            key |= _spread_bits(np.uint64(q), d) << np.uint64(c)
        keys[i] = key


def locality_order(Y: np.ndarray) -> np.ndarray:
    """A permutation that lists the rows of ``Y`` (n, d), d <= 3, in Z-order of their position.

    Returns ``order`` (int64): ``Y[order]`` is the layout relabelled, row ``r`` being
    the old row ``order[r]``. Deterministic (a stable sort of integer keys).
    """
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    n, d = Y.shape
    if d > 3:
        raise ValueError(f"locality_order takes 1 to 3 dimensions, not {d}")
    lo = Y.min(axis=0)
    width = float((Y.max(axis=0) - lo).max())
    scale = ((1 << _BITS) - 1) / width if width > 0 else 0.0
    keys = np.empty(n, dtype=np.uint64)
    for_rows(_morton_rows, n, Y, lo, scale, keys)
    return np.argsort(keys, kind="stable")


@numba.njit(cache=True, nogil=True)
def _relabel_rows(start, stop, indptr, new_indptr, order, src, relabel, dst):  # pragma: no cover - numba
    # Row r of the result is old row order[r], its column labels mapped through ``relabel``.
    for r in range(start, stop):
        old = order[r]
        s = indptr[old]
        o = new_indptr[r]
        for t in range(indptr[old + 1] - s):
            dst[o + t] = relabel[src[s + t]]


@numba.njit(cache=True, nogil=True)
def _copy_rows(start, stop, indptr, new_indptr, order, src, dst):  # pragma: no cover - numba
    for r in range(start, stop):
        old = order[r]
        s = indptr[old]
        o = new_indptr[r]
        for t in range(indptr[old + 1] - s):
            dst[o + t] = src[s + t]


def inverse_order(order: np.ndarray, dtype: np.dtype | type = np.int64) -> np.ndarray:
    """The labels' map of a relabelling: ``inverse[order[r]] = r`` (old label -> new)."""
    inverse = np.empty(order.shape[0], dtype=dtype)
    inverse[order] = np.arange(order.shape[0], dtype=dtype)
    return inverse


def in_input_order(y: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A relabelled layout back in the input's rows: ``out[labels[r]] = y[r]`` (a new array)."""
    out = np.empty_like(y)
    out[labels] = y
    return out


def _permuted_indptr(ptr: np.ndarray, order: np.ndarray) -> np.ndarray:
    new_ptr = np.zeros(ptr.shape[0], dtype=ptr.dtype)
    np.cumsum(np.diff(ptr)[order], out=new_ptr[1:])
    return new_ptr


def permute_csr(P: sp.csr_matrix, order: np.ndarray) -> None:
    """Relabel a square CSR matrix in place: it becomes ``P[order][:, order]``.

    Each row keeps its entries in their order (nothing is sorted). The index array is
    replaced, then the value array, each old one released as soon as its successor is
    built: the reorder costs one array more than P, not a second P (P is ~1 GB at 1M
    points).
    """
    n = P.shape[0]
    order = np.asarray(order, dtype=np.int64)
    if P.shape != (n, n) or order.shape != (n,):
        raise ValueError(f"permute_csr needs a square matrix and an order of its size, not {P.shape} and {order.shape}")
    old_indptr = P.indptr
    new_indptr = _permuted_indptr(old_indptr, order)
    inverse = inverse_order(order, P.indices.dtype)
    indices = np.empty_like(P.indices)
    for_rows(_relabel_rows, n, old_indptr, new_indptr, order, P.indices, inverse, indices)
    P.indices = indices
    del indices, inverse
    data = np.empty_like(P.data)
    for_rows(_copy_rows, n, old_indptr, new_indptr, order, P.data, data)
    P.data = data
    P.indptr = new_indptr
    # scipy caches whether the rows are sorted; relabelled rows are not.
    P.has_sorted_indices = False


def permute_lists_owned(ptr: np.ndarray, arrays: list[np.ndarray], order: np.ndarray,
                        inverse: np.ndarray | None = None) -> np.ndarray:
    """Partner lists by point (CSR) relabelled in the list the caller hands over.

    Row ``r`` becomes old row ``order[r]``. ``arrays[0]`` is the partner index array
    (relabelled), the rest per-entry values (e.g. an edge's sampling clock, moved with
    their entries). Each slot of ``arrays`` is replaced as soon as its successor is
    built, so where the list holds the only reference the reorder costs one array more
    than the lists, not a second copy of them (a 1M-point UMAP's schedule is ~0.6 GB).
    ``inverse`` (:func:`inverse_order` of ``order``) may be passed to save recomputing
    it for several lists. Returns the new ``ptr``.
    """
    n = ptr.shape[0] - 1
    order = np.asarray(order, dtype=np.int64)
    if order.shape != (n,):
        raise ValueError(f"permute_lists needs an order of {n} rows, not {order.shape}")
    idx_dtype = arrays[0].dtype
    inverse = inverse_order(order, idx_dtype) if inverse is None else inverse.astype(idx_dtype, copy=False)
    new_ptr = _permuted_indptr(ptr, order)
    out = np.empty_like(arrays[0])
    for_rows(_relabel_rows, n, ptr, new_ptr, order, arrays[0], inverse, out)
    arrays[0] = out
    del out, inverse
    for k in range(1, len(arrays)):
        out = np.empty_like(arrays[k])
        for_rows(_copy_rows, n, ptr, new_ptr, order, arrays[k], out)
        arrays[k] = out
        del out
    return new_ptr


def permute_lists(ptr: np.ndarray, idx: np.ndarray, order: np.ndarray, inverse: np.ndarray | None = None,
                  *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """:func:`permute_lists_owned` leaving the caller's arrays as they are.

    Returns ``(ptr, idx, *values)`` new, of the same dtypes.
    """
    arrays = [idx, *values]
    new_ptr = permute_lists_owned(ptr, arrays, order, inverse)
    return (new_ptr, *arrays)
