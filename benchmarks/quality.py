"""Per-point quality (#18): the cost of ``neighborhood_preservation`` next to one kNN graph.

    python benchmarks/quality.py                 # 1,000,000 x 50 mixture (the target: <= 60 s)
    python benchmarks/quality.py --n 100000      # quicker

It times, on the mixture and a layout of it (PCA to 2-D: the measure's cost does not
depend on how good the layout is):

- ``data kNN``: the kNN graph of the vectors on the cpu backend (what a reducer's kNN
  stage costs; ``reduce --quality`` reuses the fit's graph and skips it);
- ``layout kNN``: the exact k-d tree search of the 2-D layout;
- ``overlap``: the per-point comparison of the two neighbour sets;
- ``from graph``: the whole call given the graph (what ``reduce --quality`` pays);
- ``from vectors``: the whole call with its own search, and its ratio to one kNN graph.

Writes benchmarks/results/quality.json and .md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, peak_rss_bytes, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=50)
    parser.add_argument("--k", type=int, default=15)
    parser.add_argument("--name", default="quality")
    args = parser.parse_args()

    import embedscope as es
    from embedscope.datasets import make_mixture
    from embedscope.engine.metrics import _layout_knn, shared_neighbors
    from embedscope.kernels.knn import nearest_neighbors

    X, _ = make_mixture(args.n, args.d, 50, random_state=0)
    Y = es.PCA(n_components=2, random_state=0).fit_transform(X)
    # Warm the JIT on a small copy so compile time is not charged to the figures.
    es.neighborhood_preservation(X[:2000], Y[:2000], args.k)

    times = {}
    start = time.perf_counter()
    graph = nearest_neighbors(X, args.k, "euclidean", random_state=0)
    times["data kNN"] = time.perf_counter() - start
    start = time.perf_counter()
    low = _layout_knn(Y, args.k)
    times["layout kNN"] = time.perf_counter() - start
    start = time.perf_counter()
    shared_neighbors(low, graph[0])
    times["overlap"] = time.perf_counter() - start
    start = time.perf_counter()
    from_graph = es.neighborhood_preservation(None, Y, args.k, knn=graph)
    times["from graph"] = time.perf_counter() - start
    start = time.perf_counter()
    from_vectors = es.neighborhood_preservation(X, Y, args.k)
    times["from vectors"] = time.perf_counter() - start
    row = {"n": args.n, "d": args.d, "k": args.k, **{f"{k} s": v for k, v in times.items()},
           "from vectors / data kNN": times["from vectors"] / times["data kNN"],
           "mean (graph)": float(from_graph.mean()), "mean (vectors)": float(from_vectors.mean()),
           "peak RSS MiB": peak_rss_bytes() / 2**20}
    columns = list(row)
    print(markdown_table([row], columns))
    write_results(args.name, {"machine": machine(), "rows": [row]}, markdown_table([row], columns))


if __name__ == "__main__":
    main()
