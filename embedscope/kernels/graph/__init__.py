"""Affinity graphs on the device: UMAP's fuzzy graph, sparse symmetrisation, spectral init.

Contract
--------
Symmetrisation (:mod:`.union`, array-module generic)
    :func:`symmetrise` takes a directed edge list (rows, cols, values; ``cols < 0``
    missing, self-loops and zeros dropped, duplicates summed; :func:`symmetrise_knn`
    the same from (n, k) kNN arrays) and returns the CSR
    arrays ``(indptr int64, indices int32, data)`` of ``A + A.T - A * A.T`` ("fuzzy")
    or ``A + A.T`` ("sum"), indices sorted per row, by sorting int64 pair keys.
    numpy in, numpy out (CI, the host); cupy in, cupy out (the device).

UMAP's fuzzy graph (:mod:`.fuzzy` driver, :mod:`.cuda` numba.cuda kernel)
    ``fuzzy_simplicial_set_gpu(knn_indices, knn_distances, n_neighbors,
    rho_from_nearest=...)`` is the GPU twin of
    :func:`embedscope.kernels.affinity.fuzzy_simplicial_set`: the kNN arrays (host or
    device) in, a CSR graph that stays on the device out (cupyx; scipy under numba's
    CUDA simulator), float32 data, plus sigmas and rhos.

Spectral init (:mod:`.spectral`, array-module generic)
    ``spectral_layout_xp(graph, n_components, seed=...)``: the leading non-trivial
    eigenvectors of ``D^-1/2 A D^-1/2`` for a scipy or cupyx CSR graph, with the
    eigensolver of its library (scipy's / cupyx's ``eigsh``); raises
    :class:`SpectralFailed` with the reason (the caller falls back to PCA).

Parity: tests/test_graph_device.py (union and spectral with numpy against scipy's
graph and ARPACK) and tests/cudasim/graph_check.py (the kernels in the CUDA
simulator against the CPU twins), both in CI; the kernels are compiled to PTX by
tests/test_gpu_twins.py. Importing this package loads no CUDA.
"""

from __future__ import annotations

from embedscope.kernels.graph.union import (
    as_csr,
    csr_to_host,
    is_device_csr,
    symmetrise,
    symmetrise_knn,
    union_bytes,
)

__all__ = ["as_csr", "csr_to_host", "is_device_csr", "symmetrise", "symmetrise_knn", "union_bytes"]
