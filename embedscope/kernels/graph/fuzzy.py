"""GPU twin of :func:`embedscope.kernels.affinity.fuzzy_simplicial_set`.

The per-row smooth kNN distances and memberships run as one numba.cuda kernel
(:mod:`.cuda`, one thread per row); the fuzzy union ``A + A.T - A * A.T`` is
:func:`embedscope.kernels.graph.union.symmetrise` on the device array module. The
graph comes out as a CSR matrix that stays on the device (cupyx; scipy under numba's
CUDA simulator), ready for the epoch schedule, the spectral init and the SGD.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from embedscope import _memory
from embedscope.kernels._cuda import cuda, device_array_module, simulated
from embedscope.kernels.graph.union import as_csr, symmetrise_knn, to_device, union_bytes

THREADS_PER_BLOCK = 128


@lru_cache(maxsize=1)
def _kernel() -> Any:
    cuda()  # restores what numba-cuda needs from numpy before it loads
    from embedscope.kernels.graph import cuda as graph_cuda

    return graph_cuda.smooth_knn


def fuzzy_graph_bytes(n: int, k: int) -> int:
    """Peak device bytes of :func:`fuzzy_simplicial_set_gpu` for an (n, k) kNN graph."""
    return 4 * n * k * 2 + 8 * n + union_bytes(n * k, n)  # distances, memberships


def smooth_knn_gpu(distances: Any, n_neighbors: int, *, rho_from_nearest: bool = False,
                   threads: int = THREADS_PER_BLOCK, xp: Any = None) -> tuple[Any, Any, Any]:
    """``(sigmas, rhos, memberships)`` of sorted kNN distances, on the device.

    The contract of :func:`embedscope.kernels.affinity.smooth_knn_dist` plus
    :func:`~embedscope.kernels.affinity.membership_strengths`: float32 (n,), (n,)
    and (n, k) device arrays.
    """
    xp = device_array_module() if xp is None else xp
    d = to_device(distances, xp, np.float32)
    n, k = d.shape
    mean_all = float(xp.abs(d).mean(dtype=xp.float64)) if d.size else 0.0
    sigmas = xp.empty(n, dtype=xp.float32)
    rhos = xp.empty(n, dtype=xp.float32)
    weights = xp.empty((n, k), dtype=xp.float32)
    blocks = max(1, -(-n // threads))
    _kernel()[blocks, threads](d, float(np.log2(n_neighbors)), bool(rho_from_nearest), mean_all,
                               sigmas, rhos, weights)
    return sigmas, rhos, weights


def fuzzy_simplicial_set_gpu(knn_indices: Any, knn_distances: Any, n_neighbors: int, *,
                             rho_from_nearest: bool = False,
                             threads: int = THREADS_PER_BLOCK) -> tuple[Any, Any, Any]:
    """The symmetric fuzzy graph of a kNN graph, built and kept on the device.

    Parameters
    ----------
    knn_indices : int array (n, k), host or device
        Neighbours, self excluded; negative entries are missing neighbours.
    knn_distances : float array (n, k), host or device
        Matching distances, ascending per row.
    n_neighbors : int
        UMAP's neighbourhood size, counting the point itself.
    rho_from_nearest : bool, default=False
    threads : int, default=128

    Returns
    -------
    graph : cupyx.scipy.sparse.csr_matrix (n, n), float32
        scipy's under numba's CUDA simulator. Symmetric, zero diagonal, sorted
        indices (int32), no explicit zeros: the CPU twin's graph up to float rounding.
    sigmas, rhos : device arrays (n,), float32

    Raises
    ------
    DeviceMemoryError
        The graph's temporaries do not fit in the free device memory.
    """
    xp = device_array_module()
    n, k = knn_indices.shape
    if not simulated():
        _memory.check_fits(fuzzy_graph_bytes(n, k), _memory.device_free_bytes(),
                           f"the fuzzy graph of {n:,} points x {k} neighbours",
                           "Free GPU memory, lower n_neighbors, or use backend='cpu'.")
    sigmas, rhos, weights = smooth_knn_gpu(knn_distances, n_neighbors, rho_from_nearest=rho_from_nearest,
                                           threads=threads, xp=xp)
    indptr, indices, data = symmetrise_knn(to_device(knn_indices, xp), weights, "fuzzy", xp=xp)
    del weights
    return as_csr(indptr, indices, data.astype(xp.float32, copy=False), n, xp), sigmas, rhos
