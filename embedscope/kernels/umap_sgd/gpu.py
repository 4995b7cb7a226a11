"""GPU twin of :func:`embedscope.kernels.umap_sgd.cpu.optimize_layout`.

Same arguments and result as the CPU driver; the layout, graph and schedule live on
the device for all epochs, one kernel launch per epoch (one thread per head), and the
epoch loop, learning-rate decay, callbacks and progress stay in Python. The CSR graph
and the initial layout may be host (numpy / scipy) or device arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.sparse as sp

from embedscope import _memory
from embedscope._array import to_host
from embedscope.kernels._cuda import cuda, device_array_module, simulated
from embedscope.kernels.umap_sgd.cpu import sgd_schedule
from embedscope.kernels.umap_sgd.densmap import DensParams, density_coefficients

THREADS_PER_BLOCK = 256


@lru_cache(maxsize=1)
def _dens_kernels() -> Any:
    cuda()
    from embedscope.kernels.umap_sgd import cuda_dens

    return cuda_dens


@lru_cache(maxsize=1)
def _kernel() -> Any:
    cuda()  # restores what numba-cuda needs from numpy before it loads
    from embedscope.kernels.umap_sgd import cuda as umap_sgd_cuda

    return umap_sgd_cuda.sgd_epoch


def sgd_bytes(n_heads: int, dim: int, n_edges: int, n_ref: int = 0) -> int:
    """Device bytes of :func:`optimize_layout_gpu`: the schedule (int32 columns and three
    float32 clocks per edge, int64 indptr) where it is uploaded from the host, and the
    layout, its snapshot and the scratch (three rows of ``dim`` floats a head), plus a
    fixed reference."""
    return 16 * n_edges + 8 * (n_heads + 1) + 4 * dim * (5 * n_heads + n_ref)


def optimize_layout_gpu(
    head: Any,
    graph: sp.csr_matrix,
    n_epochs: int,
    *,
    a: float,
    b: float,
    learning_rate: float = 1.0,
    negative_sample_rate: int = 5,
    seed: int = 0,
    reference: Any = None,
    callback: Callable[[int, int, Any], object] | None = None,
    log: Callable[[str], None] | None = None,
    threads: int = THREADS_PER_BLOCK,
    densmap: DensParams | None = None,
) -> Any:
    """Run ``n_epochs`` epochs of UMAP's SGD on the GPU (the CPU twin's contract).

    ``densmap`` (fit case only) adds densMAP's density term for the last
    ``dens_frac`` of the epochs, as the CPU twin
    (:func:`embedscope.kernels.umap_sgd.densmap.optimize_layout_dens`): the radius
    sums run on the device, the per-point coefficients (two reductions) on the host.

    Returns
    -------
    head : device array (cupy; numpy under numba's CUDA simulator), float32
        The optimised layout. ``callback`` receives the live device array; a true
        return value stops after that epoch, as on the CPU.
    """
    if densmap is not None and reference is not None:
        raise ValueError("densmap applies to a fit, not to placing points against a reference")
    xp = device_array_module()
    if not simulated():
        ref_rows = 0 if reference is None else reference.shape[0]
        _memory.check_fits(sgd_bytes(head.shape[0], head.shape[1], graph.nnz, ref_rows),
                           _memory.device_free_bytes(), f"UMAP's epochs over {graph.nnz:,} edges",
                           "Free GPU memory, lower n_neighbors, or use backend='cpu'.")
    kernel = _kernel()
    head = xp.ascontiguousarray(xp.asarray(head, dtype=xp.float32))
    schedule = sgd_schedule(graph, negative_sample_rate)
    if schedule is None or n_epochs <= 0:
        return head
    indptr, indices, eps, next_sample, next_negative = (xp.asarray(a) for a in schedule)
    fit_case = reference is None
    snapshot = xp.empty_like(head) if fit_case else xp.ascontiguousarray(xp.asarray(reference, dtype=xp.float32))
    blocks = max(1, -(-head.shape[0] // threads))
    scratch = xp.empty((head.shape[0], 3 * head.shape[1]), dtype=xp.float32)
    report_every = max(1, n_epochs // 10)
    start_dens = n_epochs
    if densmap is not None and densmap.dens_lambda > 0.0:
        start_dens = n_epochs - round(densmap.dens_frac * n_epochs)
        log_data = np.asarray(densmap.log_radii, dtype=np.float64)
        dens = _dens_kernels()
        sums = xp.zeros(head.shape[0], dtype=xp.float64)
        norms = xp.zeros(head.shape[0], dtype=xp.float64)
    for epoch in range(n_epochs):
        if fit_case:
            xp.copyto(snapshot, head)
        alpha = learning_rate * (1.0 - epoch / n_epochs)
        if epoch >= start_dens:
            dens.radius_sums[blocks, threads](snapshot, indptr, indices, float(a), float(b), sums, norms)
            coeffs, _ = density_coefficients(log_data, to_host(sums), to_host(norms), densmap.dens_lambda,
                                             densmap.var_shift)
            dens.sgd_epoch_dens[blocks, threads](head, snapshot, indptr, indices, eps, next_sample, next_negative,
                                                 int(negative_sample_rate), float(a), float(b), float(alpha),
                                                 epoch, np.uint64(seed), scratch, sums, norms, xp.asarray(coeffs))
        else:
            kernel[blocks, threads](head, snapshot, indptr, indices, eps, next_sample, next_negative,
                                    int(negative_sample_rate), float(a), float(b), float(alpha),
                                    epoch, np.uint64(seed), fit_case, scratch)
        if callback is not None and callback(epoch + 1, n_epochs, head):
            break  # the caller asked to stop: the layout stays as this epoch left it
        if log is not None and ((epoch + 1) % report_every == 0 or epoch + 1 == n_epochs):
            log(f"epoch {epoch + 1}/{n_epochs}")
    return head
