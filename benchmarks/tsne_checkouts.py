"""One t-SNE fit of this checkout against another's, on the same kNN graph, at the same time.

    .venv/bin/python benchmarks/tsne_checkouts.py --knn /tmp/knn300.npz            # once: the graph
    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONPATH=<other checkout> \\
        .venv/bin/python benchmarks/tsne_checkouts.py --knn /tmp/knn300.npz --label base &
    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/tsne_checkouts.py --knn /tmp/knn300.npz --label main

This machine is shared and its speed drifts by 2x over minutes, so two fits timed one
after the other do not compare; two run at once, one thread each, do. The kNN graph of
the 300k x 50, 20-cluster mixture (``make_mixture(n, 50, 20, random_state=0)``, the
t-SNE benchmark's data) is searched once and given to both fits (``precomputed_knn``),
so only P and the optimisation are timed. Each run first fits 3,000 points to compile
every kernel (the relabelling too, where the checkout has it), then prints one JSON line:
fit and stage seconds, KL, trustworthiness@15 on 10,000 sampled points, the layout width.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--knn", required=True, help="npz of the kNN graph: searched and written when missing")
    ap.add_argument("--n", type=int, default=300_000)
    ap.add_argument("--label", default=None, help="fit and print under this label (without it: only the graph)")
    args = ap.parse_args()
    from embedscope import TSNE, make_mixture, trustworthiness
    from embedscope.backends import cpu

    X, _ = make_mixture(args.n, 50, 20, random_state=0)
    if not os.path.exists(args.knn):
        from embedscope.kernels.knn import nearest_neighbors

        t0 = time.perf_counter()
        idx, dist = nearest_neighbors(X, 90, random_state=0)
        partial = args.knn + ".partial.npz"
        np.savez(partial, indices=idx, distances=dist)
        os.replace(partial, args.knn)
        print(f"kNN graph of {args.n:,} points in {time.perf_counter() - t0:.1f} s -> {args.knn}")
    if args.label is None:
        return
    graph = np.load(args.knn)
    had = getattr(cpu, "TSNE_REORDER_MIN", None)
    if had is not None:
        cpu.TSNE_REORDER_MIN = 1
    TSNE(random_state=0, n_iter=60).fit(make_mixture(3000, 50, 20, random_state=1)[0])
    if had is not None:
        cpu.TSNE_REORDER_MIN = had
    t0 = time.perf_counter()
    est = TSNE(random_state=0, precomputed_knn=(graph["indices"], graph["distances"])).fit(X)
    elapsed = time.perf_counter() - t0
    trust = trustworthiness(X, est.embedding_, 15, sample_size=10_000, random_state=0)
    print(json.dumps({"label": args.label, "fit_s": round(elapsed, 1),
                      "stages_s": {k: round(v, 1) for k, v in est.timings_.items()},
                      "kl": round(est.kl_divergence_, 4), "trust15": round(trust, 4),
                      "width": round(float(np.ptp(est.embedding_, axis=0).max()), 1)}))


if __name__ == "__main__":
    main()
