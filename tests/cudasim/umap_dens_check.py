"""densMAP GPU twin in numba's CUDA simulator against the CPU twin (tiny graph).

Invoked by tests/test_gpu_twins.py with NUMBA_ENABLE_CUDASIM=1: a few epochs, all of
them with the density term (dens_frac=1), then the radius sums on their own.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from embedscope.kernels.umap_sgd import find_ab_params, optimize_layout
from embedscope.kernels.umap_sgd.densmap import DensParams, _radius_sums
from embedscope.kernels.umap_sgd.gpu import _dens_kernels, optimize_layout_gpu


def main() -> None:
    rng = np.random.default_rng(0)
    n, k = 24, 4
    rows = np.repeat(np.arange(n), k)
    cols = (rows + rng.integers(1, n, size=rows.size)) % n
    graph = sp.csr_matrix((rng.uniform(0.1, 1.0, rows.size), (rows, cols)), shape=(n, n))
    graph = graph.maximum(graph.T).tocsr()
    graph.sort_indices()
    start = rng.standard_normal((n, 2)).astype(np.float32) * 3
    a, b = find_ab_params(1.0, 0.1)
    params = DensParams(log_radii=rng.standard_normal(n).astype(np.float32), dens_lambda=2.0, dens_frac=1.0)
    plain = optimize_layout(start.copy(), graph, 4, a=a, b=b, seed=7)
    cpu = optimize_layout(start.copy(), graph, 4, a=a, b=b, seed=7, densmap=params)
    gpu = optimize_layout_gpu(start.copy(), graph, 4, a=a, b=b, seed=7, threads=8, densmap=params)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-4)
    assert np.abs(cpu - plain).max() > 1e-3  # the density term moved the points
    indptr, indices = graph.indptr.astype(np.int64), graph.indices.astype(np.int32)
    sums, norms = np.zeros(n), np.zeros(n)
    _dens_kernels().radius_sums[3, 8](start, indptr, indices, a, b, sums, norms)
    want = _radius_sums(start, indptr, indices, a, b)
    np.testing.assert_allclose(sums, want[0], rtol=1e-10)
    np.testing.assert_allclose(norms, want[1], rtol=1e-10)
    # the estimator on backend="cuda" runs the twin (the simulator stands in for the GPU)
    from embedscope import UMAP, make_mixture
    from embedscope.kernels.knn import exact_knn

    X, _ = make_mixture(60, 5, 3, random_state=0)
    # a given graph and PCA init keep the simulator to the epochs (its kNN search is slow)
    fit = dict(n_neighbors=5, n_epochs=3, init="pca", random_state=0, densmap=True, dens_frac=1.0,
               output_dens=True, precomputed_knn=exact_knn(X, 4))
    on_gpu = UMAP(backend="cuda", **fit).fit(X)
    on_cpu = UMAP(backend="cpu", **fit).fit(X)
    assert on_gpu.backend_ == "cuda"
    np.testing.assert_allclose(on_gpu.embedding_, on_cpu.embedding_, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(on_gpu.rad_emb_, on_cpu.rad_emb_, rtol=1e-3, atol=1e-3)
    # the callback stops the densMAP epochs on the GPU as on the CPU, and n_epochs_ says so
    stop = dict(fit, n_epochs=6, callback=lambda epoch, total, layout: epoch >= 2)
    gpu_stopped = UMAP(backend="cuda", **stop).fit(X)
    cpu_stopped = UMAP(backend="cpu", **stop).fit(X)
    assert gpu_stopped.n_epochs_ == cpu_stopped.n_epochs_ == 2
    np.testing.assert_allclose(gpu_stopped.embedding_, cpu_stopped.embedding_, rtol=1e-3, atol=1e-3)
    print("umap densmap parity ok")


if __name__ == "__main__":
    with np.errstate(over="ignore"):  # the hash wraps uint64 on purpose
        main()
