"""Peak memory and time of the t-SNE affinity stage (perplexity search + symmetric P).

    .venv/bin/python benchmarks/tsne_memory.py [--n 1000000] [--k 90]

A kNN graph of ``n`` points and ``k`` random neighbours each (the worst case for the
symmetrisation: almost no mutual pairs, so P has nearly ``2 n k`` entries) goes through
``knn_joint_probabilities``, each mode in a fresh process: ``copy`` (the default, the
caller's arrays untouched) and ``overwrite`` (the kNN arrays used as scratch, as a fit
does with its own search); the peer, ``scipy``, sums the same conditional P with its
transpose in scipy.sparse, as embedscope did before. A sampler thread reads the process RSS every 2 ms. Printed
and written to ``results/tsne_memory.{json,md}``: the RSS before (inputs held), the
peak above it, the output's size and the time (warm: compiled on a small graph first).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, run_child, write_results


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    return 0


def scipy_joint(indices: np.ndarray, distances: np.ndarray, n: int, perplexity: float) -> sp.csr_matrix:
    """The peer: the same conditional P summed with its transpose by scipy.sparse, as
    embedscope did before (float64 COO -> CSR, ``C + C.T``, then float32)."""
    from embedscope.kernels.tsne import conditional_affinities

    cond, _ = conditional_affinities(distances, perplexity)
    rows = np.repeat(np.arange(n, dtype=np.int64), indices.shape[1])
    C = sp.csr_matrix((cond.ravel().astype(np.float64), (rows, indices.ravel().astype(np.int64))), shape=(n, n))
    del cond, rows
    P = (C + C.T).tocsr()
    del C
    P.eliminate_zeros()
    P.data /= P.data.sum()
    P.data = P.data.astype(np.float32)
    P.indices = P.indices.astype(np.int32)
    P.sort_indices()
    return P


def child(n: int, k: int, mode: str) -> dict[str, float | int | str]:
    from embedscope.kernels.tsne import knn_joint_probabilities

    overwrite = mode == "overwrite"

    def build(idx: np.ndarray, dist: np.ndarray, size: int) -> sp.csr_matrix:
        if mode == "scipy":
            return scipy_joint(idx, dist, size, k / 3)
        return knn_joint_probabilities(idx, dist, size, k / 3, overwrite=overwrite)[0]

    rng = np.random.default_rng(0)
    idx = rng.integers(0, n, size=(n, k)).astype(np.int32)
    dist = np.sort(rng.random((n, k), dtype=np.float32) + 1.0, axis=1)
    inputs = (idx.nbytes + dist.nbytes) / 2**30
    build(idx[:2000] % 2000, dist[:2000].copy(), 2000)
    base = _rss()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    P = build(idx, dist, n)
    elapsed = time.perf_counter() - t0
    done.set()
    thread.join()
    return {"mode": mode, "n": n, "k": k, "time_s": elapsed,
            "rss_before_gb": base / 2**30, "peak_above_gb": (peak[0] - base) / 2**30, "inputs_gb": inputs,
            "output_gb": (P.data.nbytes + P.indices.nbytes + P.indptr.nbytes) / 2**30, "nnz": P.nnz}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=90)
    ap.add_argument("--child", choices=["scipy", "copy", "overwrite"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.n, args.k, args.child)))
        return
    rows = [{"mode": mode, **run_child(__file__, ["--n", str(args.n), "--k", str(args.k), "--child", mode])}
            for mode in ("scipy", "copy", "overwrite")]
    table = markdown_table(rows, ["mode", "n", "k", "time_s", "rss_before_gb", "peak_above_gb", "inputs_gb",
                                  "output_gb", "nnz", "error"])
    print(table)
    write_results("tsne_memory", {"machine": machine(), "rows": rows}, table)


if __name__ == "__main__":
    main()
