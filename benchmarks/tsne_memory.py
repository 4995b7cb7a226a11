"""Peak memory and time of the t-SNE affinity stage (perplexity search + symmetric P).

    .venv/bin/python benchmarks/tsne_memory.py [--n 1000000] [--k 90]

A kNN graph of ``n`` points and ``k`` random neighbours each (the worst case for the
symmetrisation: almost no mutual pairs, so P has nearly ``2 n k`` entries) goes through
``knn_joint_probabilities``; a sampler thread reads the process RSS every 2 ms. Printed
and written to ``results/tsne_memory.json``: the RSS before (inputs held), the peak
above it, the output's size, and the time (warm: compiled on a small graph first).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, write_results


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=90)
    args = ap.parse_args()
    from embedscope.kernels.tsne import knn_joint_probabilities

    rng = np.random.default_rng(0)
    n, k = args.n, args.k
    idx = rng.integers(0, n, size=(n, k)).astype(np.int32)
    dist = np.sort(rng.random((n, k), dtype=np.float32) + 1.0, axis=1)
    knn_joint_probabilities(idx[:2000] % 2000, dist[:2000], 2000, k / 3)
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
    P, _ = knn_joint_probabilities(idx, dist, n, k / 3)
    elapsed = time.perf_counter() - t0
    done.set()
    thread.join()
    row = {"n": n, "k": k, "time_s": elapsed, "rss_before_gb": base / 2**30,
           "peak_above_gb": (peak[0] - base) / 2**30, "inputs_gb": (idx.nbytes + dist.nbytes) / 2**30,
           "output_gb": (P.data.nbytes + P.indices.nbytes + P.indptr.nbytes) / 2**30, "nnz": P.nnz}
    table = markdown_table([row], list(row))
    print(table)
    write_results("tsne_memory", {"machine": machine(), "rows": [row]},
                  table)


if __name__ == "__main__":
    main()
