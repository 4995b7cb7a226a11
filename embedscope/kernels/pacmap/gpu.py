"""GPU twin of PaCMAP's pair choice and optimiser (the drivers of :mod:`.cuda`).

Same contract as the CPU twin (:mod:`embedscope.kernels.pacmap`): the pairs are chosen
on the device with the same hashed draws, the by-point lists are built on the device in
the CPU's order (a sort on a unique key), and the Adam iterations run one kernel launch
each (one thread per point) with the layout, moments and lists resident; the phase
weights, callbacks and progress stay in Python.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np

from embedscope.kernels._cuda import cuda, device_array_module
from embedscope.kernels.pacmap.cpu import BETA1, BETA2, EPS, adam_rate, weights

THREADS_PER_BLOCK = 256


@lru_cache(maxsize=1)
def _kernels() -> Any:
    cuda()  # restores what numba-cuda needs from numpy before it loads
    from embedscope.kernels.pacmap import cuda as pacmap_cuda

    return pacmap_cuda


def _blocks(n: int, threads: int) -> int:
    return max(1, -(-n // threads))


def symmetric_lists_gpu(pairs: Any, *, both: bool = True) -> tuple[Any, Any]:
    """:func:`.pairs.symmetric_lists` on the device: the same CSR, built by one sort.

    Each entry gets a unique key ``row * span + order``, ``order`` being its place in the
    CPU twin's fill (own partners by column, then incoming ones by source and column),
    so the sort needs no stability and the lists match the CPU's entry for entry.
    """
    xp = device_array_module()
    pairs = xp.asarray(pairs)
    m, width = pairs.shape
    src = xp.repeat(xp.arange(m, dtype=xp.int64), width)
    col = xp.tile(xp.arange(width, dtype=xp.int64), m)
    dst = pairs.ravel().astype(xp.int64)
    keep = dst >= 0
    src, col, dst = src[keep], col[keep], dst[keep]
    if dst.size == 0:  # no pairs of this kind (MN_ratio or FP_ratio 0)
        return xp.zeros(m + 1, dtype=xp.int64), xp.empty(0, dtype=xp.int32)
    span = width * (m + 1)
    rows = src
    partners = dst
    order = col
    if both:
        rows = xp.concatenate([src, dst])
        partners = xp.concatenate([dst, src])
        order = xp.concatenate([col, width + src * width + col])
    sort = xp.argsort(rows * span + order)
    indptr = xp.zeros(m + 1, dtype=xp.int64)
    indptr[1:] = xp.cumsum(xp.bincount(rows, minlength=m))
    return indptr, xp.ascontiguousarray(partners[sort].astype(xp.int32))


def sample_pairs_gpu(data: Any, indices: Any, distances: Any, metric_code: int, n_neighbors: int,
                     n_mid_near: int, n_further: int, seed: int,
                     threads: int = THREADS_PER_BLOCK) -> tuple[Any, Any, Any]:
    """:func:`.pairs.sample_pairs` on the device; device int32 arrays out."""
    xp = device_array_module()
    kern = _kernels()
    data = xp.ascontiguousarray(xp.asarray(data, dtype=xp.float32))
    indices = xp.ascontiguousarray(xp.asarray(indices, dtype=xp.int32))
    distances = xp.ascontiguousarray(xp.asarray(distances, dtype=xp.float32))
    n = data.shape[0]
    blocks = _blocks(n, threads)
    seed64 = np.uint64(seed % 2**64)
    finite = distances[xp.isfinite(distances)]
    scaled = bool(finite.size == 0 or float(finite.min()) >= 0)
    sigmas = xp.ones(n, dtype=xp.float32)
    if scaled:
        kern.scale_sigmas[blocks, threads](distances, sigmas)
    nb = xp.empty((n, n_neighbors), dtype=xp.int32)
    kern.neighbor_pairs[blocks, threads](indices, distances, sigmas, n_neighbors, scaled, nb)
    mn = xp.empty((n, n_mid_near), dtype=xp.int32)
    if n_mid_near:
        kern.mid_near_pairs[blocks, threads](data, metric_code, n_mid_near, seed64, mn)
    fp = xp.empty((n, n_further), dtype=xp.int32)
    if n_further:
        kern.further_pairs[blocks, threads](nb, n, n_further, seed64, True, fp)
    return nb, mn, fp


def pair_lists_gpu(Z: Any, indices: Any, distances: Any, metric: str, n_neighbors: int, n_mid_near: int,
                   n_further: int, seed: int) -> tuple[Any, ...]:
    """The six by-point pair lists of a fit, on the device (the cuda backend's ``pairs``)."""
    from embedscope.kernels.knn.metrics import _METRIC_CODE

    xp = device_array_module()
    data = xp.ascontiguousarray(xp.asarray(Z, dtype=xp.float32))
    if metric == "cosine":  # the rows the search compared (knn.prepare's rule, zero rows kept)
        norms = xp.sqrt((data * data).sum(axis=1, keepdims=True))
        data = data / xp.where(norms > 0, norms, xp.float32(1.0))
    pairs = sample_pairs_gpu(data, indices, distances, _METRIC_CODE[metric], n_neighbors, n_mid_near,
                             n_further, seed)
    return tuple(array for kind in pairs for array in symmetric_lists_gpu(kind))


def optimize_layout_gpu(
    layout: Any,
    lists: tuple[Any, ...],
    n_iters: tuple[int, int, int],
    *,
    learning_rate: float = 1.0,
    reference: Any = None,
    phase_weights: Callable[[int, tuple[int, int, int]], tuple[float, float, float]] = weights,
    callback: Callable[[int, int, Any], object] | None = None,
    log: Callable[[str], None] | None = None,
    threads: int = THREADS_PER_BLOCK,
) -> Any:
    """:func:`.cpu.optimize_layout` on the GPU; a device array out (numpy under the simulator)."""
    xp = device_array_module()
    kernel = _kernels().adam_step
    y = xp.array(layout, dtype=xp.float32, copy=True, order="C")
    out = xp.empty_like(y)
    m, v = xp.zeros_like(y), xp.zeros_like(y)
    nb_ptr, nb_idx, mn_ptr, mn_idx, fp_ptr, fp_idx = (
        xp.ascontiguousarray(xp.asarray(a, dtype=xp.int64 if k % 2 == 0 else xp.int32))
        for k, a in enumerate(lists))
    fixed = None if reference is None else xp.ascontiguousarray(xp.asarray(reference, dtype=xp.float32))
    blocks = _blocks(y.shape[0], threads)
    total = int(sum(n_iters))
    report = max(1, total // 10)
    for it in range(total):
        w_nb, w_mn, w_fp = phase_weights(it, n_iters)
        kernel[blocks, threads](y, y if fixed is None else fixed, nb_ptr, nb_idx, mn_ptr, mn_idx, fp_ptr,
                                fp_idx, float(w_nb), float(w_mn), float(w_fp),
                                float(adam_rate(learning_rate, it + 1)), BETA1, BETA2, EPS, m, v, out)
        y, out = out, y
        if callback is not None and callback(it + 1, total, y):
            break  # the caller asked to stop: the layout stays as this iteration left it
        if log is not None and ((it + 1) % report == 0 or it + 1 == total):
            log(f"iteration {it + 1}/{total}")
    return y
