"""The cuda backend: our CUDA kernels (numba-cuda and CuPy) on one GPU.

Nothing GPU loads with this module: each kernel module is imported when a stage
first runs, so the backend registers (and reports what is missing) on any machine.
Under ``NUMBA_ENABLE_CUDASIM=1`` an explicit ``backend="cuda"`` runs the same
kernels in numba's simulator on host arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.sparse as sp

from embedscope._array import is_cupy, to_host
from embedscope.backends import _registry
from embedscope.backends._registry import (
    ALL_METRICS,
    BackendSpec,
    Capabilities,
    Kernels,
    PacmapKernels,
    TsneKernels,
    register,
)
from embedscope.backends._shared import GPU_EXACT_MAX_POINTS, TSNE_EXACT_MAX
from embedscope.kernels.knn.consts import KMAX

#: Metrics ``knn_method="auto"`` searches by IVF above ``GPU_EXACT_MAX_POINTS`` (those
#: the IVF index knows, ``kernels.knn.ivf.IVF_METRICS``).
IVF_AUTO_METRICS = frozenset({"euclidean", "cosine", "inner_product"})

INSTALL_HINT = "pip install 'embedscope[gpu]'  (or: conda install -c conda-forge cupy)"


def _device_xp() -> Any:
    from embedscope.kernels._cuda import device_array_module

    return device_array_module()


def place(X: Any) -> Any:
    """``X`` on the device the GPU twins use (numpy under the simulator), in one copy.

    numpy data larger than half the free GPU memory stays on the host: PCA and the
    exact kNN search then stream it to the device in blocks.
    """
    xp = _device_xp()
    if xp is np or is_cupy(X):
        return xp.asarray(X)
    from embedscope import _memory

    if 4 * X.shape[0] * X.shape[1] > _memory.device_free_bytes() // 2:  # float32 once on the device
        return X
    # Every stage reads float32: cast on the host, so float64 input does not land on the
    # device at twice the size the memory check above counted; in bounded chunks, so
    # neither a float32 host copy nor a pinned staging buffer of the whole array is made.
    return _memory.upload_rows(X, xp, dtype=np.float32)


def uses_ivf(method: str, n: int, self_join: bool = True) -> bool:
    """Whether the search of ``n`` points runs IVF (approximate) rather than exactly."""
    # "auto" keeps queries (transform) exact: m x N costs less than building an index.
    return method == "ivf" or (method == "auto" and self_join and n > GPU_EXACT_MAX_POINTS)


def knn(data: Any, k: int, metric: str, *, queries: Any = None, method: str = "auto", seed: int = 0,
        log: Callable[[str], None] | None = None,
        metric_kwds: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The kNN graph on the GPU: exact (blocked GEMM + select, or a brute-force scan for
    the coordinate-wise metrics) or IVF-flat; host arrays out.

    IVF knows euclidean, cosine and inner_product only: ``"auto"`` stays exact for the
    other metrics at any size, and ``"ivf"`` refuses them (``ValueError``).
    """
    if uses_ivf(method, data.shape[0], queries is None) and (method == "ivf" or metric in IVF_AUTO_METRICS):
        from embedscope.kernels.knn.ivf import ivf_knn

        indices, distances = ivf_knn(data, k, metric, queries=queries, random_state=seed, xp=_device_xp())
    else:
        from embedscope.kernels.knn.gpu import exact_knn_gpu

        indices, distances = exact_knn_gpu(data, k, metric, queries, metric_kwds=metric_kwds)
    return to_host(indices), to_host(distances)


def _knn_label(method: str, n: int) -> str:
    return f"{'ivf' if uses_ivf(method, n) else 'exact'} on cuda"


def _umap_optimize(head: np.ndarray, graph: sp.csr_matrix, n_epochs: int, **kwargs: Any) -> np.ndarray:
    from embedscope.kernels.umap_sgd.gpu import optimize_layout_gpu

    layout = optimize_layout_gpu(head, graph, n_epochs, **kwargs)
    return np.ascontiguousarray(to_host(layout), dtype=np.float32)


def _tsne_place(P: sp.csr_matrix, Y: np.ndarray) -> tuple[Any, Any]:
    from embedscope.kernels.tsne import gpu

    xp = _device_xp()
    return gpu.csr_to_device(P, xp), xp.asarray(np.ascontiguousarray(Y, dtype=np.float32))


def _tsne_repulsion(n: int, dim: int, dof: float) -> tuple[Callable, str, str]:
    from embedscope.kernels.tsne import gpu

    if n <= TSNE_EXACT_MAX:
        return ((lambda sources: gpu.exact_repulsion_gpu(sources, dof)), "exact",
                f"{n:,} points <= TSNE_EXACT_MAX={TSNE_EXACT_MAX:,}")
    # The grid repulsion is dimension-generic on the device; there is no GPU Barnes-Hut.
    return gpu.FFTRepulsionGPU(dof=dof), "fft", f"{dim}-D above TSNE_EXACT_MAX on the device"


def _tsne_step(P: Any, Y: Any, rep: Any, z: Any, dof: float, exaggeration: float,
               learning_rate: float, momentum: float, update: Any, gains: Any) -> None:
    from embedscope.kernels.tsne import gpu

    # 1/Z is formed on the device: the step never waits for Z to reach the host.
    gpu.gradient_step_gpu(P, Y, Y, dof, rep, 1.0 / z, exaggeration, 4.0, learning_rate,
                          momentum, update, gains)


def _tsne_advance(Y: Any, update: Any) -> None:
    from embedscope.kernels.tsne import gpu

    gpu.advance_gpu(Y, update)


def _tsne_kl(P: Any, Y: Any, z: Any, dof: float) -> float:
    from embedscope.kernels.tsne import gpu

    return gpu.kl_divergence_gpu(P, Y, z, dof)


def _fuzzy_graph(indices: Any, distances: Any, n_neighbors: int, *,
                 rho_from_nearest: bool = False) -> tuple[Any, Any, Any]:
    """UMAP's fuzzy graph built on the GPU; it stays there (cupyx CSR) for the init and the SGD."""
    from embedscope.kernels.graph.fuzzy import fuzzy_simplicial_set_gpu

    return fuzzy_simplicial_set_gpu(indices, distances, n_neighbors, rho_from_nearest=rho_from_nearest)


def _tsne_affinities(indices: Any, distances: Any, n: int, perplexity: float, *,
                     squared: bool = True, overwrite: bool = False) -> tuple[Any, int]:
    """t-SNE's joint P built on the GPU, as the ``DeviceCSR`` the gradient kernels read.

    ``overwrite`` is accepted for the contract and not used: the device build makes
    its own arrays."""
    from embedscope.kernels.tsne.affinity_gpu import joint_probabilities_gpu

    return joint_probabilities_gpu(indices, distances, n, perplexity, squared=squared)


def _pacmap_pairs(Z: Any, indices: np.ndarray, distances: np.ndarray, metric: str, n_neighbors: int,
                  n_mid_near: int, n_further: int, seed: int,
                  metric_kwds: dict[str, Any] | None = None) -> tuple[Any, ...]:
    from embedscope.kernels.pacmap.gpu import pair_lists_gpu

    if metric not in ("euclidean", "cosine", "inner_product"):
        # The device's mid-near draws know the product metrics; the others are chosen on
        # the host (O(n) pairs, cheap next to the search) and the lists uploaded.
        from embedscope.kernels._cuda import device_array_module
        from embedscope.kernels.pacmap import pair_lists

        xp = device_array_module()
        lists = pair_lists(to_host(Z), to_host(indices), to_host(distances), metric, n_neighbors, n_mid_near,
                           n_further, seed, metric_kwds)
        return tuple(xp.asarray(a) for a in lists)
    return pair_lists_gpu(Z, indices, distances, metric, n_neighbors, n_mid_near, n_further, seed)


def _pacmap_optimize(layout: np.ndarray, lists: tuple[Any, ...], n_iters: tuple[int, int, int],
                     **kwargs: Any) -> np.ndarray:
    from embedscope.kernels.pacmap.gpu import optimize_layout_gpu

    return np.ascontiguousarray(to_host(optimize_layout_gpu(layout, lists, n_iters, **kwargs)),
                                dtype=np.float32)


@lru_cache(maxsize=1)
def kernels() -> Kernels:
    """The cuda kernel table."""
    return Kernels(place=place, knn=knn, knn_label=_knn_label, umap_optimize=_umap_optimize,
                   tsne=TsneKernels(_tsne_place, _tsne_repulsion, _tsne_step, _tsne_advance, _tsne_kl),
                   fuzzy_graph=_fuzzy_graph, tsne_affinities=_tsne_affinities,
                   pacmap=PacmapKernels(_pacmap_pairs, _pacmap_optimize))


def _simulated() -> bool:
    from embedscope.kernels._cuda import simulated

    return simulated()


CAPABILITIES = Capabilities(
    reducers=frozenset({"pca", "umap", "tsne", "pacmap"}),
    metrics=ALL_METRICS | {"precomputed"},
    knn_methods=frozenset({"auto", "exact", "ivf"}),
    max_neighbors=KMAX,
    # t-SNE places new points on the host (its fitted state lives there).
    transform=frozenset({"pca", "umap", "tsne", "pacmap"}),
    # The target graph and the local radii are host steps; densMAP has its GPU twin.
    umap_options=frozenset({"supervised", "densmap", "output_dens"}),
    hints={"knn_method=nndescent": "knn_method='nndescent' has no GPU version yet; on backend='cuda' use "
                                   "knn_method='auto', 'exact' or 'ivf' (approximate), or backend='cpu'"},
)

register(BackendSpec(name="cuda", priority=20, probe=lambda: _registry.probe_cuda(),
                     capabilities=CAPABILITIES, array_module=lambda: _registry.device_xp(),
                     kernels=kernels, install_hint=INSTALL_HINT, gpu=True, simulated=_simulated))
