"""UMAP SGD GPU twin in numba's CUDA simulator against the CPU twin (tiny graph).

Invoked by tests/test_gpu_twins.py with NUMBA_ENABLE_CUDASIM=1. The twins share the
hashed random stream and the snapshot rule, so a seeded run agrees up to float
rounding; a few epochs keep rounding differences from compounding.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from embedscope.kernels.umap_sgd import find_ab_params, optimize_layout
from embedscope.kernels.umap_sgd.gpu import optimize_layout_gpu


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
    cpu = optimize_layout(start.copy(), graph, 4, a=a, b=b, seed=7)
    gpu = optimize_layout_gpu(start.copy(), graph, 4, a=a, b=b, seed=7, threads=8)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-4)
    assert np.abs(cpu - start).max() > 1e-3  # the epochs moved the points
    fixed = rng.standard_normal((n, 2)).astype(np.float32)
    new_cpu = optimize_layout(start[:5].copy(), graph[:5], 3, a=a, b=b, seed=3, reference=fixed)
    new_gpu = optimize_layout_gpu(start[:5].copy(), graph[:5], 3, a=a, b=b, seed=3, reference=fixed, threads=8)
    np.testing.assert_allclose(new_gpu, new_cpu, rtol=1e-4, atol=1e-4)
    # a true callback return stops both twins after that epoch, keeping its layout
    seen = []

    def stop_at_two(epoch, total, layout):
        seen.append(epoch)
        return epoch >= 2

    cpu_stopped = optimize_layout(start.copy(), graph, 4, a=a, b=b, seed=7, callback=stop_at_two)
    gpu_stopped = optimize_layout_gpu(start.copy(), graph, 4, a=a, b=b, seed=7, threads=8, callback=stop_at_two)
    assert seen == [1, 2, 1, 2], seen
    np.testing.assert_allclose(gpu_stopped, cpu_stopped, rtol=1e-4, atol=1e-4)
    assert np.abs(cpu_stopped - cpu).max() > 1e-4  # two epochs fewer: not the full run's layout
    print("umap sgd parity ok")


if __name__ == "__main__":
    with np.errstate(over="ignore"):  # the hash wraps uint64 on purpose
        main()
