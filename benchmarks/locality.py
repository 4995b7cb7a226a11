"""Cost of a t-SNE, PaCMAP and UMAP iteration with the points in input order against relabelled by layout position.

    .venv/bin/python benchmarks/locality.py [--n 1000000] [--k 90] [--iters 20] [--width 600] [--pacmap] [--umap]

A grown layout is made up: ``n`` points in 50 Gaussian blobs over a square ``width``
units wide (a 1M-point t-SNE spreads to ~500-800 units), its kNN graph (k neighbours,
sklearn's KD-tree, in the layout itself so that P's neighbours are close there, as
they are in a fitted map) turned into t-SNE's P, and the labels shuffled (input rows
in no spatial order, as real data comes). Then ``--iters`` iterations of the CPU
loop's kernels (grid repulsion, fused attraction step, advance) run twice on the same
problem: ``input-order``, and ``reordered`` after one call of the cpu backend's
``reorder`` (its cost is reported on its own). Printed and written to
``results/NAME.{json,md}`` (``--name``, default ``locality``): median seconds per iteration and per part.

``--pacmap`` adds PaCMAP's Adam step on the same layout: its pair lists as a fit builds
them (``symmetric_lists``) from the 10 nearest of the layout's kNN graph, 5
mid-near partners drawn from the 50 nearest, and 20 further partners at random,
timed in input order and after the relabelling its optimiser does
(``kernels.pacmap.cpu``, ``kernels.locality``).

``--umap`` adds one UMAP epoch (the 2-D SGD kernel) on the same layout's 15-nearest
fuzzy graph, pruned and scheduled for 200 epochs as a 1M-point fit is, in input order
and relabelled as its optimiser does (``kernels.umap_sgd.cpu``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
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


def step_rows(method: str, Y: np.ndarray, arrays: tuple[np.ndarray, ...], nnz: int,
              timed: Callable[[np.ndarray, tuple[np.ndarray, ...]], float],
              relabel: Callable[[np.ndarray], tuple[np.ndarray, ...]]) -> list[dict[str, object]]:
    """Rows of one method's step timed on ``Y`` in input order, then relabelled.

    ``timed(layout, arrays)`` -> median seconds per step; ``relabel(order)`` -> the
    method's arrays relabelled (its cost is reported as ``reorder_s``, with the order).
    """
    from embedscope.kernels.locality import locality_order

    n = Y.shape[0]
    rows: list[dict[str, object]] = [{"order": f"{method} input-order", "n": n, "nnz": nnz,
                                      "step_s": timed(Y.copy(), arrays)}]
    t0 = time.perf_counter()
    order = locality_order(Y)
    relabelled = relabel(order)
    reorder_s = time.perf_counter() - t0
    rows.append({"order": f"{method} reordered", "n": n, "nnz": nnz, "reorder_s": reorder_s,
                 "step_s": timed(np.ascontiguousarray(Y[order]), relabelled)})
    rows[1]["speedup"] = rows[0]["step_s"] / rows[1]["step_s"]
    for row in rows:
        row["iteration_s"] = row["step_s"]
    return rows


def pacmap_rows(n: int, width: float, iters: int) -> list[dict[str, object]]:
    from sklearn.neighbors import NearestNeighbors

    from embedscope.kernels.locality import inverse_order, permute_lists
    from embedscope.kernels.pacmap.cpu import adam_step
    from embedscope.kernels.pacmap.pairs import symmetric_lists

    rng = np.random.default_rng(2)
    centres = rng.uniform(0, width, size=(50, 2))
    Y = (centres[rng.integers(0, 50, n)] + rng.normal(0, width / 40, size=(n, 2))).astype(np.float32)
    idx = NearestNeighbors(n_neighbors=51, algorithm="kd_tree").fit(Y).kneighbors(Y, return_distance=False)[:, 1:]
    near = idx[:, :10]
    mid = idx[np.arange(n)[:, None], rng.integers(10, 50, size=(n, 5))]
    far = rng.integers(0, n, size=(n, 20))
    shuffle = rng.permutation(n)  # input rows in no spatial order
    inverse = inverse_order(shuffle)
    pairs = [inverse[a[shuffle]].astype(np.int32) for a in (near, mid, far)]
    Y = np.ascontiguousarray(Y[shuffle])
    lists = tuple(x for a in pairs for x in symmetric_lists(a))

    def timed(y: np.ndarray, lists: tuple[np.ndarray, ...]) -> float:
        m, v, out = np.zeros_like(y), np.zeros_like(y), np.empty_like(y)
        times = []
        for it in range(iters + 1):
            t0 = time.perf_counter()
            adam_step(y, y, *lists, 2.0, 3.0, 1.0, 1e-3, m, v, out)
            if it:  # the first call compiles or warms
                times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def relabel(order: np.ndarray) -> tuple[np.ndarray, ...]:
        inv = inverse_order(order)
        return tuple(x for ptr, ix in zip(lists[::2], lists[1::2], strict=True)
                     for x in permute_lists(ptr, ix, order, inv))

    return step_rows("pacmap", Y, lists, int(sum(a.size for a in lists[1::2])), timed, relabel)


def umap_rows(n: int, width: float, iters: int) -> list[dict[str, object]]:
    from sklearn.neighbors import NearestNeighbors

    from embedscope.kernels import umap_sgd
    from embedscope.kernels.affinity import fuzzy_simplicial_set
    from embedscope.kernels.locality import permute_lists

    rng = np.random.default_rng(3)
    centres = rng.uniform(0, width / 20, size=(50, 2))  # UMAP layouts are ~20x narrower
    Y = (centres[rng.integers(0, 50, n)] + rng.normal(0, width / 800, size=(n, 2))).astype(np.float32)
    shuffle = rng.permutation(n)  # input rows in no spatial order
    Y = np.ascontiguousarray(Y[shuffle])
    dist, idx = NearestNeighbors(n_neighbors=16, algorithm="kd_tree").fit(Y).kneighbors(Y)
    graph = fuzzy_simplicial_set(idx[:, 1:].astype(np.int32), dist[:, 1:].astype(np.float32), 15)[0]
    schedule = umap_sgd.sgd_schedule(umap_sgd.edge_schedule(graph, 200), 5)
    a, b = umap_sgd.find_ab_params(1.0, 0.1)
    scratch, picks = umap_sgd.sgd_buffers(8, 2)

    def timed(head: np.ndarray, arrays: tuple[np.ndarray, ...]) -> float:
        arrays = tuple(x.copy() for x in arrays)  # the clocks advance
        snapshot = head.copy()
        times = []
        for epoch in range(iters + 1):
            t0 = time.perf_counter()
            umap_sgd.sgd_epoch(head, snapshot, *arrays, 5, a, b, 0.5, epoch, np.uint64(1), True, scratch, picks)
            if epoch:
                times.append(time.perf_counter() - t0)
        return statistics.median(times)

    return step_rows("umap", Y, schedule, int(schedule[1].size), timed,
                     lambda order: permute_lists(schedule[0], schedule[1], order, None, *schedule[2:]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=90)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--width", type=float, default=600.0)
    ap.add_argument("--name", default="locality")
    ap.add_argument("--pacmap", action="store_true", help="also time PaCMAP's step")
    ap.add_argument("--umap", action="store_true", help="also time a UMAP epoch")
    args = ap.parse_args()
    from embedscope.backends import cpu
    from embedscope.kernels.locality import locality_order

    t0 = time.perf_counter()
    P, Y = problem(args.n, args.k, args.width)
    print(f"problem: {args.n:,} points, nnz {P.nnz:,}, built in {time.perf_counter() - t0:.1f} s", flush=True)
    rng = np.random.default_rng(1)
    shuffle = rng.permutation(args.n)
    from embedscope.kernels.locality import permute_csr

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
    if args.pacmap:
        del P
        rows += pacmap_rows(args.n, args.width, args.iters)
    if args.umap:
        rows += umap_rows(args.n, args.width, args.iters)
    table = markdown_table(rows, ["order", "n", "nnz", "iteration_s", "repulsion_s", "step_s", "advance_s",
                                  "reorder_s", "speedup"])
    print(table)
    write_results(args.name, {"machine": machine(), "args": vars(args), "rows": rows}, table)


if __name__ == "__main__":
    main()
