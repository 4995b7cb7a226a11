"""Hot CPU kernels of two trees A/B in one process, calls alternating: min and median ms per call.

    git archive main | tar -x -C /tmp/main_src
    NUMBA_CACHE_DIR=$(mktemp -d) PYTHONPATH=$PWD python benchmarks/kernel_ab.py /tmp/main_src 8

(a fresh cache: numba keys a cached kernel by its file, and the other tree's module is
loaded under a name of its own)

Loads the other tree's ``umap_sgd/cpu.py`` and ``tsne/gradient.py`` beside this tree's
and alternates their calls on the same data (UMAP epochs on a 100,000-point graph, 2-D
and 3-D; a t-SNE gradient step with about 180 neighbours a row), so that a neighbour's
load on a shared machine hits both alike. Prints one JSON line: ``{kernel: {"base":
[min, median], "this": [min, median]}}``. Used to check that the row kernels on a
thread pool (issue #20) run as fast as the prange kernels they replaced.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from types import ModuleType
from typing import Any

import numpy as np
import scipy.sparse as sp

N = 100_000


def load(path: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def summary(times: dict[str, list[float]]) -> dict[str, list[float]]:
    return {k: [round(1000 * min(v), 2), round(1000 * float(np.median(v)), 2)] for k, v in times.items()}


def main() -> None:
    base = sys.argv[1] if len(sys.argv) > 1 else "/tmp/main_src"
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    from embedscope.kernels.tsne import gradient as this_grad
    from embedscope.kernels.umap_sgd import cpu as this_sgd

    sgd = {"base": load(f"{base}/embedscope/kernels/umap_sgd/cpu.py", "base_sgd_cpu"), "this": this_sgd}
    grad = {"base": load(f"{base}/embedscope/kernels/tsne/gradient.py", "base_tsne_grad"), "this": this_grad}
    rng = np.random.default_rng(0)
    rows = np.repeat(np.arange(N), 15)
    cols = (rows + rng.integers(-200, 200, rows.size)) % N
    graph = sp.csr_matrix((rng.uniform(0.05, 1.0, rows.size).astype(np.float32), (rows, cols)), shape=(N, N))
    graph = graph.maximum(graph.T).tocsr()
    graph.setdiag(0)
    graph.eliminate_zeros()
    results: dict[str, Any] = {}
    for dim in (2, 3):
        start = rng.standard_normal((N, dim)).astype(np.float32) * 5
        times: dict[str, list[float]] = {"base": [], "this": []}
        for module in sgd.values():
            module.optimize_layout(start.copy(), graph, 1, a=1.58, b=0.9, seed=1)  # compile
        for _ in range(reps):
            for name, module in sgd.items():
                head = start.copy()
                began = time.perf_counter()
                module.optimize_layout(head, graph, 3, a=1.58, b=0.9, seed=1)
                times[name].append((time.perf_counter() - began) / 3)
        results[f"umap_epoch_{dim}d_ms"] = summary(times)
    rows = np.repeat(np.arange(N), 90)
    cols = (rows + rng.integers(-500, 500, rows.size)) % N
    P = sp.csr_matrix((rng.uniform(0, 1, rows.size), (rows, cols)), shape=(N, N))
    P = (P + P.T).tocsr()
    P.data /= P.data.sum()
    Y = rng.standard_normal((N, 2)) * 20
    rep, inv_z = rng.standard_normal((N, 2)), np.full(N, 1e-6)
    update, gains = np.zeros((N, 2)), np.ones((N, 2))
    times = {"base": [], "this": []}
    for i in range(reps + 1):
        for name, module in grad.items():
            began = time.perf_counter()
            module.gradient_step(P.indptr, P.indices, P.data, Y, Y, 1.0, rep, inv_z, 12.0, 4.0, 200.0, 0.5,
                                 update, gains)
            if i:  # the first call compiles
                times[name].append(time.perf_counter() - began)
    results["tsne_gradient_ms"] = summary(times)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
