"""The CPU kNN searches per metric: exact scan and NN-descent, this tree against another checkout.

    .venv/bin/python benchmarks/knn_metrics.py [--metrics manhattan chebyshev ...] [--base DIR]

For each metric, one process per tree (in turn, trees alternated over ``--repeats``)
times ``exact_knn`` of the first ``--exact-rows`` rows (self-join) and ``nndescent_knn``
of ``--rows`` rows, k = 15, on the 50-D mixture (``make_mixture(rows, 50, 20)``);
hamming and jaccard run on random binary rows (64 coordinates, 20% ones). Each process
compiles first on a small slice, so the times are warm. A hash of the neighbours and
distances says whether the two trees give the same result.

``--base DIR`` is a checkout (e.g. ``git worktree add /tmp/base <rev>``) whose
``embedscope`` runs the same measurement with its own numba cache in a folder of its own:
numba keeps a cached kernel until its own file changes, not a helper it inlines from
another file, so a shared or stale cache can time old code (CONTRIBUTING.md). Writes
results/NAME.json and .md (default name knn_metrics).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, run_child, write_results

METRICS = ("euclidean", "manhattan", "chebyshev", "minkowski-2", "minkowski-3", "minkowski-4", "hamming", "jaccard")


def _data(metric: str, rows: int) -> np.ndarray:
    if metric in ("hamming", "jaccard"):
        return (np.random.default_rng(0).random((rows, 64)) < 0.2).astype(np.float32)
    from embedscope.datasets import make_mixture

    X = make_mixture(rows, 50, 20, random_state=0)
    return (X[0] if isinstance(X, tuple) else X).astype(np.float32)


def _child(metric: str, rows: int, exact_rows: int, k: int) -> dict[str, object]:
    from embedscope.kernels.knn.exact import exact_knn
    from embedscope.kernels.knn.nndescent import nndescent_knn

    name, _, p = metric.partition("-")
    kwds = {"metric_kwds": {"p": float(p)}} if p else {}
    X = _data(metric, rows)
    exact_knn(X[:500], k, name, **kwds)
    nndescent_knn(X[:3000], k, name, random_state=0, **kwds)
    start = time.perf_counter()
    i1, d1 = exact_knn(X[:exact_rows], k, name, **kwds)
    exact_s = time.perf_counter() - start
    start = time.perf_counter()
    i2, d2 = nndescent_knn(X, k, name, random_state=0, **kwds)
    nndescent_s = time.perf_counter() - start
    digest = hashlib.md5(b"".join(a.tobytes() for a in (i1, d1, i2, d2))).hexdigest()[:12]
    return {"exact_s": exact_s, "nndescent_s": nndescent_s, "result": digest}


def _run(tree: Path, cache: Path, args: argparse.Namespace, metric: str) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(tree), NUMBA_CACHE_DIR=str(cache), EMBEDSCOPE_PRECOMPILE="0")
    return run_child(__file__, ["--child", metric, "--rows", str(args.rows), "--exact-rows", str(args.exact_rows),
                                "--k", str(args.k)], env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", nargs="+", default=list(METRICS), choices=METRICS,
                        help="minkowski-P is minkowski with p = P")
    parser.add_argument("--rows", type=int, default=60_000, help="rows of the NN-descent search")
    parser.add_argument("--exact-rows", type=int, default=15_000, help="rows of the exact search")
    parser.add_argument("--k", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=2, help="runs per tree (medians)")
    parser.add_argument("--base", help="another checkout to time against (alternated with this tree)")
    parser.add_argument("--name", default="knn_metrics")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.rows, args.exact_rows, args.k)))
        return
    here = Path(__file__).resolve().parents[1]
    trees = {"this": here} | ({"base": Path(args.base).resolve()} if args.base else {})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        caches = {label: Path(tmp) / label for label in trees}
        for metric in args.metrics:
            runs: dict[str, list[dict[str, object]]] = {label: [] for label in trees}
            for _ in range(args.repeats):
                for label in reversed(list(trees)):  # the base first: neither tree always runs second
                    runs[label].append(_run(trees[label], caches[label], args, metric))
            for label, results in runs.items():
                ok = [r for r in results if "error" not in r]
                row: dict[str, object] = {"metric": metric, "tree": label, "repeats": len(ok)}
                if ok:
                    row["exact_s"] = statistics.median(float(r["exact_s"]) for r in ok)  # type: ignore[arg-type]
                    row["nndescent_s"] = statistics.median(float(r["nndescent_s"]) for r in ok)  # type: ignore[arg-type]
                    row["result"] = ok[0]["result"]
                else:
                    row["error"] = results[0]["error"]
                rows.append(row)
                print(json.dumps(row), flush=True)
            if args.base and all(runs.values()):
                same = runs["this"][0].get("result") == runs["base"][0].get("result")
                rows[-2]["same_result"] = rows[-1]["same_result"] = same
    columns = ["metric", "tree", "exact_s", "nndescent_s", "same_result", "result", "repeats", "error"]
    table = markdown_table(rows, columns)
    note = (f"\n\nexact: `exact_knn` of {args.exact_rows:,} rows (self-join); NN-descent: `nndescent_knn` of "
            f"{args.rows:,} rows; k = {args.k}; 50-D mixture, binary rows for hamming and jaccard; medians of "
            f"{args.repeats}, trees alternated, each with an empty numba cache of its own (warm after a small fit).")
    print(table)
    write_results(args.name, {"machine": machine(), "base": args.base, "rows": rows}, table + note)


if __name__ == "__main__":
    main()
