"""GPU twin of the t-SNE input affinities (:mod:`.affinity`): conditional P and joint P.

The perplexity search is one numba.cuda kernel (:mod:`.affinity_cuda`, one thread per
row); the symmetric joint P is :func:`embedscope.kernels.graph.union.symmetrise`
(``P + P.T`` by sorted pair keys) on the device array module, normalised to sum 1.
Nothing of size N x k is built on the host: the kNN arrays are uploaded once and P
comes out as the :class:`embedscope.kernels.tsne.gpu.DeviceCSR` the gradient kernels
read (float32 data, int32 indices, int64 indptr).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from embedscope import _memory
from embedscope.kernels._cuda import cuda, device_array_module, simulated
from embedscope.kernels.graph.union import symmetrise_knn, to_device, union_bytes

THREADS_PER_BLOCK = 128


@lru_cache(maxsize=1)
def _kernel() -> Any:
    cuda()  # restores what numba-cuda needs from numpy before it loads
    from embedscope.kernels.tsne import affinity_cuda

    return affinity_cuda.calibrate


def joint_p_bytes(n: int, k: int) -> int:
    """Peak device bytes of :func:`joint_probabilities_gpu` for an (n, k) kNN graph."""
    return n * k * (4 + 4 + 1) + 4 * n + union_bytes(n * k, n)  # distances, P rows, the missing mask


def conditional_affinities_gpu(distances: Any, perplexity: float, *, missing: Any = None,
                               squared: bool = True, tol: float = 1e-5, max_iter: int = 200,
                               threads: int = THREADS_PER_BLOCK, xp: Any = None) -> tuple[Any, int]:
    """GPU twin of :func:`embedscope.kernels.tsne.affinity.conditional_affinities`.

    ``missing`` (bool (n, k), optional) marks entries without a neighbour: they get
    probability 0 (the CPU path's huge-distance rule). Returns ``(P, n_missed)``, P a
    float32 (n, k) device array whose rows sum to 1.
    """
    xp = device_array_module() if xp is None else xp
    d = to_device(distances, xp, np.float32)
    n, k = d.shape
    mask = xp.zeros((n, k), dtype=bool) if missing is None else xp.ascontiguousarray(xp.asarray(missing))
    out = xp.empty((n, k), dtype=xp.float32)
    missed = xp.zeros(n, dtype=xp.int32)
    blocks = max(1, -(-n // threads))
    _kernel()[blocks, threads](d, mask, float(np.log(perplexity)), float(tol), int(max_iter), bool(squared),
                               out, missed)
    return out, int(missed.sum())


def joint_probabilities_gpu(indices: Any, distances: Any, n: int, perplexity: float, *,
                            squared: bool = True, threads: int = THREADS_PER_BLOCK) -> tuple[Any, int]:
    """The t-SNE joint P of a kNN graph on the device, and the rows the search missed.

    Parameters
    ----------
    indices : int array (n, k), host or device
        Neighbours, self excluded; -1 (or the point itself) marks a missing one.
    distances : float array (n, k), host or device
    n : int
    perplexity : float
    squared : bool, default=True
        Square the distances (euclidean) before the Gaussian.
    threads : int, default=128

    Returns
    -------
    P : embedscope.kernels.tsne.gpu.DeviceCSR
        Symmetric, sums to 1, float32 data, int32 sorted indices, int64 indptr: the
        CPU twin's ``joint_probabilities`` up to float rounding.
    n_missed : int

    Raises
    ------
    DeviceMemoryError
        The temporaries do not fit in the free device memory.
    """
    from embedscope.kernels.tsne.gpu import DeviceCSR

    xp = device_array_module()
    k = indices.shape[1]
    if not simulated():
        _memory.check_fits(joint_p_bytes(n, k), _memory.device_free_bytes(),
                           f"the t-SNE affinities of {n:,} points x {k} neighbours",
                           "Free GPU memory, lower the perplexity, or use backend='cpu'.")
    cols = to_device(indices, xp)
    missing = (cols < 0) | (cols == xp.arange(n, dtype=cols.dtype)[:, None])
    cond, missed = conditional_affinities_gpu(distances, perplexity, missing=missing, squared=squared,
                                              threads=threads, xp=xp)
    del missing
    indptr, idx, data = symmetrise_knn(cols, cond, "sum", xp=xp)
    del cols, cond
    total = data.sum(dtype=xp.float64)
    data = (data / total).astype(xp.float32)
    return DeviceCSR(indptr, idx, data, (n, n)), missed
