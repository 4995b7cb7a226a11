"""UMAP layout optimisation (SGD over the fuzzy graph's edges): CPU twin and GPU twin.

Contract
--------
Both drivers take the same arguments and run the same algorithm: ``head``, the
starting layout, float32 (n_heads, dim); ``graph``, the edge weights as an
(n_heads, n_ref) CSR matrix already pruned by :func:`edge_schedule`; ``n_epochs``;
the curve parameters ``a`` and ``b`` (:func:`find_ab_params`); ``learning_rate``,
``negative_sample_rate`` and ``seed``; ``reference``, the fixed tails and negative
samples (float32 (n_ref, dim)) for ``transform``, or None for a fit, where the layout
is its own reference, snapshotted at the start of every epoch; and the ``callback`` /
``log`` hooks, called after each epoch from the Python epoch loop.

- CPU, the reference: :func:`optimize_layout` (:mod:`.cpu`, numba, parallel over
  heads). Host numpy in, the same float32 array out, optimised in place.
- GPU: ``optimize_layout_gpu`` (:mod:`.gpu`, driver; :mod:`.cuda`, the numba.cuda
  kernel, one thread per head). Host or device input; a device array out (cupy, or
  numpy under numba's CUDA simulator), float32, and the callback sees the live device
  array.

Random numbers are a hash of ``(seed, epoch, edge, draw)`` and tails are read from the
snapshot, so nothing depends on the order heads run in: a seeded layout is the same
for any thread count on the CPU, and the GPU agrees with it up to float rounding.

Parity: tests/cudasim/umap_sgd_check.py (twins on a tiny graph in the CUDA
simulator) and tests/cudasim/umap_backend_check.py (``UMAP(backend="cuda")``), both
driven by tests/test_gpu_twins.py; ``test_umap_sgd_gpu_matches_cpu_on_device`` on a
real GPU. The GPU modules are not imported here: importing this package loads no
CUDA.

densMAP (:mod:`.densmap`, GPU twin :mod:`.cuda_dens`): :func:`optimize_layout` here
takes ``densmap=DensParams(...)`` and then runs
:func:`embedscope.kernels.umap_sgd.densmap.optimize_layout_dens`; without it, the
plain CPU driver, untouched. The GPU driver takes the same argument.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from embedscope.kernels.umap_sgd import cpu
from embedscope.kernels.umap_sgd.cpu import (
    LANES,
    default_epochs,
    edge_schedule,
    find_ab_params,
    scratch_width,
    sgd_buffers,
    sgd_epoch,
    sgd_rows,
    sgd_rows_2d,
    sgd_schedule,
)
from embedscope.kernels.umap_sgd.densmap import DensParams, optimize_layout_dens


def optimize_layout(head: np.ndarray, graph: sp.csr_matrix, n_epochs: int, *,
                    densmap: DensParams | None = None, **kwargs: Any) -> np.ndarray:
    """:func:`embedscope.kernels.umap_sgd.cpu.optimize_layout`, or with ``densmap`` densMAP's driver.

    ``densmap`` applies to a fit only (no ``reference``).
    """
    if densmap is None:
        return cpu.optimize_layout(head, graph, n_epochs, **kwargs)
    if kwargs.pop("reference", None) is not None:
        raise ValueError("densmap applies to a fit, not to placing points against a reference")
    return optimize_layout_dens(head, graph, n_epochs, densmap=densmap, **kwargs)


__all__ = [
    "LANES",
    "DensParams",
    "default_epochs",
    "edge_schedule",
    "find_ab_params",
    "optimize_layout",
    "scratch_width",
    "sgd_buffers",
    "sgd_epoch",
    "sgd_rows",
    "sgd_rows_2d",
    "sgd_schedule",
]
