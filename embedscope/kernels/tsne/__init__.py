"""t-SNE kernels: input affinities, gradient, repulsion; CPU twins and their GPU twins.

Contract
--------
The optimiser loop (``engine.tsne``) is written once and picks one twin per stage.

Affinities
    :func:`conditional_affinities` takes the kNN distances, (n, k) float32 with the
    point itself excluded, and returns (n, k) float32 row-conditional probabilities;
    :func:`joint_probabilities` turns them into the symmetric joint P, an (n, n) CSR
    matrix, float32 data and int32 indices, summing to 1;
    :func:`knn_joint_probabilities` does both from a kNN graph with missing entries.
    GPU twin (:mod:`.affinity_gpu`, numba.cuda kernel in :mod:`.affinity_cuda`):
    ``joint_probabilities_gpu`` builds P on the device (perplexity search one thread
    per row, ``P + P.T`` by sorted pair keys) and returns a ``DeviceCSR``; parity in
    tests/cudasim/graph_check.py.

Gradient and step
    CPU (:mod:`.gradient`, numba, the reference): :func:`attractive_forces`,
    :func:`gradient_step` (attraction fused with the momentum and delta-bar-delta
    gains update, writing ``update`` and ``gains`` only) and :func:`advance`
    (``Y += update``, recentred). Host numpy arrays: positions, forces, updates and
    gains float64 (n, d), d in {2, 3}.
    GPU (:mod:`.gpu`, numba.cuda kernels in :mod:`.cuda`, one thread per row of P):
    ``attractive_forces_gpu``, ``gradient_step_gpu``, ``advance_gpu``,
    ``kl_divergence_gpu`` take a ``DeviceCSR`` (``csr_to_device``) and device arrays
    (cupy; numpy under numba's CUDA simulator), float32 positions, float64 reports.

Repulsion
    Every routine returns ``(rep, Z)``: ``rep`` the un-normalised repulsive sum, one
    (d,) row per target, and ``Z`` the kernel total over ordered pairs i != j.
    CPU: :func:`exact_repulsion` (O(N^2), float64, the reference for every
    approximation), :class:`FFTRepulsion` (grid interpolation, 2-D and 3-D; in 3-D
    the CPU runs it on a coarse grid with a pruned FFT, the kernel split at a few node
    spacings and the near part summed pair by pair (:mod:`.near`), and the outermost
    points summed exactly) and :class:`BarnesHutRepulsion` (3-D below
    ``backends.cpu.TSNE_GRID_3D_MIN`` points, 2-D below ``TSNE_BH_2D_MAX``). GPU: ``exact_repulsion_gpu`` and
    ``FFTRepulsionGPU`` (the CPU grid, same nodes and weights; fused spread and
    gather kernels, float32 on the device; ``Z`` a 1-element device array and the
    bounds read every few steps, so a step never waits for the device).

Objective
    :func:`kl_divergence` (CPU, float64) and ``kl_divergence_gpu``.

Parity: tests/cudasim/tsne_check.py runs every GPU twin in the CUDA simulator
against these CPU twins (tests/test_gpu_twins.py drives it, and compiles the kernels
to PTX); ``test_tsne_gpu_kernels_match_cpu_on_device`` checks them on a real GPU.
The GPU modules are not imported here: importing this package loads no CUDA.
"""

from __future__ import annotations

from embedscope.kernels.tsne.affinity import (
    conditional_affinities,
    joint_probabilities,
    knn_joint_probabilities,
)
from embedscope.kernels.tsne.bh import BarnesHutRepulsion
from embedscope.kernels.tsne.exact import exact_repulsion, kl_divergence
from embedscope.kernels.tsne.fft import FFTRepulsion
from embedscope.kernels.tsne.gradient import advance, attractive_forces, gradient_step

__all__ = [
    "BarnesHutRepulsion",
    "FFTRepulsion",
    "advance",
    "attractive_forces",
    "conditional_affinities",
    "exact_repulsion",
    "gradient_step",
    "joint_probabilities",
    "kl_divergence",
    "knn_joint_probabilities",
]
