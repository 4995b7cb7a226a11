"""The cpu backend: our numba kernels on the host, everywhere."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.sparse as sp

from embedscope._array import to_host
from embedscope.backends._registry import (
    ALL_METRICS,
    BackendSpec,
    Capabilities,
    Kernels,
    PacmapKernels,
    TsneKernels,
    probe_cpu,
    register,
)
from embedscope.backends._shared import TSNE_EXACT_MAX


def knn(data: np.ndarray, k: int, metric: str, *, queries: np.ndarray | None = None,
        method: str = "auto", seed: int = 0, log: Callable[[str], None] | None = None,
        metric_kwds: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The kNN graph of ``data`` (or of ``queries`` against it: always exact)."""
    from embedscope.kernels.knn import exact_knn, nearest_neighbors

    if queries is not None:
        return exact_knn(data, k, metric, queries=queries, metric_kwds=metric_kwds)
    return nearest_neighbors(data, k, metric, method=method, random_state=seed, log=log,
                             metric_kwds=metric_kwds)


def _knn_label(method: str, n: int) -> str:
    return f"{method} on cpu"


def _precompile(reducer: str, n: int, k: int, metric: str, n_components: int,
                log: Callable[[str], None] | None = None, method: str = "auto") -> None:
    """The first fit's kernels compiled in parallel processes (:mod:`embedscope.kernels._precompile`).

    Profiles are recorded for default 2-D fits; others (3-D, the direct metrics, a
    precomputed matrix, t-SNE's exact repulsion) compile as they are called. A
    profile's name spells out each size rule that changes which kernels a fit calls:
    the kNN route, t-SNE's repulsion and joint-P builder, and the relabelling of
    t-SNE and PaCMAP fits from 100k points.
    """
    from embedscope.kernels._precompile import precompile
    from embedscope.kernels.knn.metrics import DIRECT_METRICS, check_metric
    from embedscope.kernels.knn.router import auto_method

    if n_components != 2 or metric == "precomputed" or check_metric(metric) in DIRECT_METRICS:
        return
    if method == "auto":
        method = auto_method(n, k, metric)
    profile = f"{reducer}-{method}"
    if reducer == "tsne":  # its kernels also follow the repulsion rule and P's builder
        from embedscope.kernels.tsne.affinity import joint_builder

        repulsion = tsne_repulsion(n, n_components, 1.0)[1]
        if repulsion == "exact":
            return
        profile += f"-{repulsion}"
        if joint_builder(n) == "kernels":
            profile += "-joint"
        if tsne_relabels(n):
            profile += "-reorder"
    elif reducer == "pacmap":
        from embedscope.kernels.pacmap.cpu import relabels_points

        if relabels_points(n):
            profile += "-reorder"
    precompile(profile, log=log)


def _umap_optimize(head: np.ndarray, graph: sp.csr_matrix, n_epochs: int, **kwargs: Any) -> np.ndarray:
    from embedscope.kernels.umap_sgd import optimize_layout

    return optimize_layout(head, graph, n_epochs, **kwargs)


def _tsne_place(P: sp.csr_matrix, Y: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    return P, np.ascontiguousarray(Y, dtype=np.float64)


#: From this many points up, 3-D t-SNE on the CPU uses the grid (FFT) repulsion;
#: below it Barnes-Hut. No size was found where the grid wins on this 2-core machine,
#: so Barnes-Hut stays the default (the threshold is out of reach). Measured
#: (benchmarks/results/tsne_cpu_3d_grouped.md, crossover rows: one call on the grown 20k
#: layout, subsampled): the group-walk Barnes-Hut took 11 ms against the grid's 114 ms at
#: 20k, 0.9 against 20 ms at 2,500, with force error 0.13% against 3.3%. A 100k x 50 3-D
#: fit takes 83-97 s (benchmarks/results/tsne_cpu_3d100k_grouped.md). The grid's
#: near-field pairs grow with the layout's width over a fixed node count.
TSNE_GRID_3D_MIN = 2**62
#: Nodes per dimension of the CPU's 3-D grid: the FFT grows as its cube (pruned
#: transforms on the 2 cores here: 5 ms at 32 nodes, 23 ms at 48, 67 ms at 64 per
#: iteration), so the cap trades accuracy on wide layouts for time
#: (benchmarks/tsne_cpu.py, mixture20k-3d against Barnes-Hut).
TSNE_GRID_3D_NODES = 48
#: Radius, in node spacings, inside which the 3-D grid's kernel is split off and summed
#: pair by pair (``FFTRepulsion``'s ``near_nodes``). On the tight 20k layout of the unsplit grid,
#: 48 nodes: force error 65% unsplit, 20% at 2, 2.4% at 3, 0.5% at 4 (3.4% at 3 on the
#: split grid's own 20k layout); the pair sums grow as the cube of the radius.
TSNE_GRID_3D_NEAR = 3.0
#: Points per end of each axis the 3-D grid leaves to an exact sum (``FFTRepulsion``'s
#: ``outliers``): the few points t-SNE throws far out set the grid's width otherwise.
TSNE_GRID_3D_OUTLIERS = 8
#: Below this many points 2-D t-SNE on the CPU uses Barnes-Hut (the group walk of
#: ``kernels.tsne.bh``) instead of the grid. Whole warm fits, grid against tree
#: (``make_mixture(n, 50, 20)``, seed 0, 2 cores; trustworthiness equal or higher,
#: within 0.0004): 3,000 points 3.55 / 1.60 s, KL 1.201 / 1.166; 8,000 5.80 / 4.43 s,
#: KL 2.025 / 1.994; 14,000 8.07 / 7.72 s, KL 2.526 / 2.497
#: (benchmarks/results/tsne_small.md); earlier: 20,000 11.48 / 11.42 s, 50,000
#: 28.7 / 33.4 s. One call's force error at 3,000 points: 2.9% (grid), 0.5% (tree).
#: The grid's cost per call has a floor (its FFTs) that small layouts do not amortise.
TSNE_BH_2D_MAX = 15_000
#: The same for the 2-D grid: in a 300k-point fit (20-cluster mixture) 1-3 points
#: thrown out made the grid 2-4x as wide as the rest of the layout for most of the
#: normal phase (width 510 against 147 at iteration 400), with 2-16x the nodes.
TSNE_GRID_2D_OUTLIERS = 8


def tsne_repulsion(n: int, dim: int, dof: float) -> tuple[Callable, str, str]:
    """The CPU repulsion routine for ``n`` source points in ``dim`` dimensions, its name and why."""
    from embedscope.kernels import tsne as ktsne

    if n <= TSNE_EXACT_MAX:
        return ((lambda sources, targets=None: ktsne.exact_repulsion(sources, dof, targets)), "exact",
                f"{n:,} points <= TSNE_EXACT_MAX={TSNE_EXACT_MAX:,}")
    if dim == 2 and n < TSNE_BH_2D_MAX:
        return ktsne.BarnesHutRepulsion(dof=dof), "barnes-hut", f"2-D, {n:,} points < TSNE_BH_2D_MAX={TSNE_BH_2D_MAX:,}"
    if dim == 2:
        return (ktsne.FFTRepulsion(dof=dof, outliers=TSNE_GRID_2D_OUTLIERS), "fft",
                f"2-D, {n:,} points >= TSNE_BH_2D_MAX={TSNE_BH_2D_MAX:,}")
    limit = "off" if TSNE_GRID_3D_MIN >= 2**62 else f"{TSNE_GRID_3D_MIN:,}"
    if n >= TSNE_GRID_3D_MIN:
        # Few boxes: the grid may not be finer than the cap however narrow the layout.
        return (ktsne.FFTRepulsion(dof=dof, min_boxes=TSNE_GRID_3D_NODES // 3, max_nodes=TSNE_GRID_3D_NODES,
                                   outliers=TSNE_GRID_3D_OUTLIERS, near_nodes=TSNE_GRID_3D_NEAR),
                "fft", f"3-D, {n:,} points >= TSNE_GRID_3D_MIN={limit}")
    return (ktsne.BarnesHutRepulsion(dof=dof), "barnes-hut",
            f"3-D, {n:,} points < TSNE_GRID_3D_MIN={limit}")


def _tsne_step(P: sp.csr_matrix, Y: np.ndarray, rep: np.ndarray, z: float, dof: float,
               exaggeration: float, learning_rate: float, momentum: float,
               update: np.ndarray, gains: np.ndarray) -> None:
    from embedscope.kernels.tsne import gradient_step

    gradient_step(P.indptr, P.indices, P.data, Y, Y, dof, rep, np.full(Y.shape[0], 1.0 / z),
                  exaggeration, 4.0, learning_rate, momentum, update, gains)


def _tsne_advance(Y: np.ndarray, update: np.ndarray) -> None:
    from embedscope.kernels.tsne import advance

    advance(Y, update)


def _tsne_kl(P: sp.csr_matrix, Y: np.ndarray, z: float, dof: float) -> float:
    from embedscope.kernels.tsne import kl_divergence

    return kl_divergence(P, Y, z, dof)


#: From this many points up, the t-SNE loop relabels the problem by layout position now
#: and then (``kernels.locality``): past the caches, the attraction's reads of
#: scattered neighbours dominate an iteration (benchmarks/locality.py).
TSNE_REORDER_MIN = 100_000


def tsne_relabels(n: int) -> bool:
    """Whether a t-SNE fit of ``n`` points relabels them by layout position.

    The first fit's precompiled kernels (:func:`_precompile`) follow it too.
    """
    return n >= TSNE_REORDER_MIN


def _tsne_reorder(P: sp.csr_matrix, Y: np.ndarray) -> np.ndarray | None:
    from embedscope.kernels.locality import locality_order, permute_csr

    if not tsne_relabels(Y.shape[0]):
        return None
    order = locality_order(Y)
    permute_csr(P, order)
    return order


def _fuzzy_graph(indices: np.ndarray, distances: np.ndarray, n_neighbors: int, *,
                 rho_from_nearest: bool = False) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    from embedscope.kernels.affinity import fuzzy_simplicial_set

    return fuzzy_simplicial_set(indices, distances, n_neighbors, rho_from_nearest=rho_from_nearest)


def _tsne_affinities(indices: np.ndarray, distances: np.ndarray, n: int, perplexity: float, *,
                     squared: bool = True, overwrite: bool = False) -> tuple[sp.csr_matrix, int]:
    from embedscope.kernels.tsne import knn_joint_probabilities

    return knn_joint_probabilities(indices, distances, n, perplexity, squared=squared, overwrite=overwrite)


def _pacmap_pairs(Z: Any, indices: np.ndarray, distances: np.ndarray, metric: str, n_neighbors: int,
                  n_mid_near: int, n_further: int, seed: int,
                  metric_kwds: dict[str, Any] | None = None) -> tuple[np.ndarray, ...]:
    from embedscope.kernels.pacmap import pair_lists

    return pair_lists(to_host(Z), indices, distances, metric, n_neighbors, n_mid_near, n_further, seed,
                      metric_kwds)


def _pacmap_optimize(layout: np.ndarray, lists: tuple[np.ndarray, ...], n_iters: tuple[int, int, int],
                     **kwargs: Any) -> np.ndarray:
    from embedscope.kernels.pacmap import optimize_layout

    return optimize_layout(layout, lists, n_iters, **kwargs)


@lru_cache(maxsize=1)
def kernels() -> Kernels:
    """The cpu kernel table."""
    return Kernels(place=to_host, knn=knn, knn_label=_knn_label, umap_optimize=_umap_optimize,
                   tsne=TsneKernels(_tsne_place, tsne_repulsion, _tsne_step, _tsne_advance, _tsne_kl,
                                     _tsne_reorder),
                   fuzzy_graph=_fuzzy_graph, tsne_affinities=_tsne_affinities,
                   pacmap=PacmapKernels(_pacmap_pairs, _pacmap_optimize), precompile=_precompile)


CAPABILITIES = Capabilities(
    reducers=frozenset({"pca", "umap", "tsne", "pacmap"}),
    metrics=ALL_METRICS | {"precomputed"},
    knn_methods=frozenset({"auto", "exact", "nndescent"}),
    transform=frozenset({"pca", "umap", "tsne", "pacmap"}),
    umap_options=frozenset({"supervised", "densmap", "output_dens"}),
    hints={"knn_method=ivf": "knn_method='ivf' is the GPU approximate search (backend='cuda'); "
                             "on backend='cpu' use knn_method='nndescent' or 'auto'"},
)

register(BackendSpec(name="cpu", priority=10, probe=probe_cpu, capabilities=CAPABILITIES,
                     array_module=lambda: np, kernels=kernels))
