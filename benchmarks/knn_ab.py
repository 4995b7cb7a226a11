"""NN-descent of two trees A/B in one process, runs alternating: seconds and the graph's hash.

    git show main:embedscope/kernels/knn/nndescent.py > /tmp/nndescent_main.py
    NUMBA_CACHE_DIR=$(mktemp -d) python benchmarks/knn_ab.py /tmp/nndescent_main.py --rows 1000000 --clusters 20

(a fresh cache: numba keys a cached kernel by its file, and the other copy is loaded
under a module name of its own)

Loads the other copy of ``kernels/knn/nndescent.py`` beside this tree's and alternates
their searches on the same ``make_mixture`` data (50-D, seed 0, euclidean), so that a
neighbour's load on this shared machine hits both alike; benchmarks/knn_cpu.py runs
each search in a fresh process instead, one after the other. Each search first runs on
5,000 rows, so compiling is not timed. Prints a line per search (seconds, a hash of the
neighbour indices: equal hashes mean the same graph) and the medians, and writes
``results/knn_ab.{json,md}`` (``--name``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", help="path of the other tree's kernels/knn/nndescent.py")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--k", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="knn_ab", help="results file stem")
    args = parser.parse_args()

    from embedscope.datasets import make_mixture
    from embedscope.kernels.knn import nndescent as this

    spec = importlib.util.spec_from_file_location("nndescent_other", args.other)
    if spec is None or spec.loader is None:
        parser.error(f"cannot load {args.other}")
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)
    X = make_mixture(args.rows, 50, args.clusters, random_state=0)[0]
    trees = {"other": other, "this": this}
    for module in trees.values():
        module.nndescent_knn(X[:5000], args.k, random_state=0)
    seconds: dict[str, list[float]] = {name: [] for name in trees}
    hashes: dict[str, set[str]] = {name: set() for name in trees}
    for _ in range(args.repeats):
        for name, module in trees.items():
            began = time.perf_counter()
            idx, _ = module.nndescent_knn(X, args.k, random_state=0)
            seconds[name].append(time.perf_counter() - began)
            hashes[name].add(hashlib.sha1(idx.tobytes()).hexdigest()[:12])
            print(f"{name}: {seconds[name][-1]:.2f} s, graph {sorted(hashes[name])[-1]}", flush=True)
    rows = [{"tree": name, "rows": args.rows, "clusters": args.clusters, "k": args.k,
             "median_s": round(float(np.median(seconds[name])), 2), "all_s": [round(s, 2) for s in seconds[name]],
             "graph": ", ".join(sorted(hashes[name])), "source": args.other if name == "other" else "this tree"}
            for name in trees]
    rows[1]["ratio_vs_other"] = round(rows[1]["median_s"] / rows[0]["median_s"], 3)
    table = markdown_table(rows, ["tree", "rows", "clusters", "k", "median_s", "all_s", "ratio_vs_other", "graph",
                                  "source"])
    print(table)
    write_results(args.name, {"machine": machine(), "rows": rows}, table)


if __name__ == "__main__":
    main()
