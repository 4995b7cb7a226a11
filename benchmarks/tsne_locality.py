"""Cost of a t-SNE iteration with the points in input order against relabelled by layout position.

    .venv/bin/python benchmarks/tsne_locality.py [--n 1000000] [--k 90] [--iters 20] [--width 600]

A grown layout is made up: ``n`` points in 50 Gaussian blobs over a square ``width``
units wide (a 1M-point t-SNE spreads to ~500-800 units), its kNN graph (k neighbours,
sklearn's KD-tree, in the layout itself so that P's neighbours are close there, as
they are in a fitted map) turned into t-SNE's P, and the labels shuffled (input rows
in no spatial order, as real data comes). Then ``--iters`` iterations of the CPU
loop's kernels (grid repulsion, fused attraction step, advance) run twice on the same
problem: ``input-order``, and ``reordered`` after one call of the cpu backend's
``reorder`` (its cost is reported on its own). Printed and written to
``results/tsne_locality.{json,md}``: median seconds per iteration and per part.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, write_results


def problem(n: int, k: int, width: float, seed: int = 0) -> tuple[object, np.ndarray]:
    from sklearn.neighbors import NearestNeighbors

    from embedscope.kernels.tsne import knn_joint_probabilities

    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, width, size=(50, 2))
    Y = centres[rng.integers(0, 50, n)] + rng.normal(0, width / 40, size=(n, 2))
    Y -= Y.mean(axis=0)
    dist, idx = NearestNeighbors(n_neighbors=k + 1, algorithm="kd_tree").fit(Y).kneighbors(Y)
    P, _ = knn_joint_probabilities(idx[:, 1:].astype(np.int32), dist[:, 1:].astype(np.float32), n, k / 3,
                                   overwrite=True)
    return P, np.ascontiguousarray(Y)


def iterate(P: object, Y: np.ndarray, iters: int) -> dict[str, float]:
    from embedscope.backends.cpu import kernels

    tk = kernels().tsne
    repulsion = tk.repulsion(Y.shape[0], 2, 1.0)[0]
    update, gains = np.zeros_like(Y), np.ones_like(Y)
    parts: dict[str, list[float]] = {"repulsion_s": [], "step_s": [], "advance_s": []}
    for _ in range(iters):
        t0 = time.perf_counter()
        rep, z = repulsion(Y)
        t1 = time.perf_counter()
        # A tiny learning rate: the layout stays put, so every iteration costs alike.
        tk.step(P, Y, rep, z, 1.0, 1.0, 1e-3, 0.8, update, gains)
        t2 = time.perf_counter()
        tk.advance(Y, update)
        t3 = time.perf_counter()
        parts["repulsion_s"].append(t1 - t0)
        parts["step_s"].append(t2 - t1)
        parts["advance_s"].append(t3 - t2)
    out = {key: statistics.median(v) for key, v in parts.items()}
    out["iteration_s"] = sum(out.values())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=90)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--width", type=float, default=600.0)
    ap.add_argument("--name", default="tsne_locality")
    args = ap.parse_args()
    from embedscope.backends import cpu
    from embedscope.kernels.tsne.order import locality_order

    t0 = time.perf_counter()
    P, Y = problem(args.n, args.k, args.width)
    print(f"problem: {args.n:,} points, nnz {P.nnz:,}, built in {time.perf_counter() - t0:.1f} s", flush=True)
    rng = np.random.default_rng(1)
    shuffle = rng.permutation(args.n)
    from embedscope.kernels.tsne.order import permute_csr

    permute_csr(P, shuffle)  # input rows in no spatial order
    Y = np.ascontiguousarray(Y[shuffle])
    small = P[:2000][:, :2000].tocsr()
    iterate(small, Y[:2000].copy(), 2)  # compile outside the timing
    locality_order(Y[:2000])
    rows = [{"order": "input-order", "n": args.n, "nnz": P.nnz, **iterate(P, Y.copy(), args.iters)}]
    t0 = time.perf_counter()
    order = cpu._tsne_reorder(P, Y) if args.n >= cpu.TSNE_REORDER_MIN else locality_order(Y)
    if args.n < cpu.TSNE_REORDER_MIN:
        permute_csr(P, order)
    reorder_s = time.perf_counter() - t0
    rows.append({"order": "reordered", "n": args.n, "nnz": P.nnz, "reorder_s": reorder_s,
                 **iterate(P, np.ascontiguousarray(Y[order]), args.iters)})
    rows[1]["speedup"] = rows[0]["iteration_s"] / rows[1]["iteration_s"]
    table = markdown_table(rows, ["order", "n", "nnz", "iteration_s", "repulsion_s", "step_s", "advance_s",
                                  "reorder_s", "speedup"])
    print(table)
    write_results(args.name, {"machine": machine(), "args": vars(args), "rows": rows}, table)


if __name__ == "__main__":
    main()
