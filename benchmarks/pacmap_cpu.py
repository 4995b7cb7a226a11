"""PaCMAP on the CPU: ours against the ``pacmap`` package, per stage, with quality and peak memory.

    python benchmarks/pacmap_cpu.py                         # 100k x 50 mixture and the words
    python benchmarks/pacmap_cpu.py --sizes 1m              # adds the 1M x 50 mixture (ours only)
    python benchmarks/pacmap_cpu.py --sizes 1m --peer-at-sizes   # ... and the package there too
    python benchmarks/pacmap_cpu.py --repeats 3             # medians of 3 warm fits each
    python benchmarks/pacmap_cpu.py --quick                 # 3,000-point smoke run of the script
    python benchmarks/pacmap_cpu.py --datasets mixture1m --skip-package --name pacmap_cpu_1m   # another file

Datasets: ``mixture100k`` (100,000 x 50, 50 clusters, seed 0), ``words`` (the 30,000 x 384
word vectors in ../shared/data/words, cosine: the package's ``distance="angular"``), and
``mixture<SIZE>`` for each of ``--sizes`` (``embedscope.datasets.parse_size``: 1m, 500k...).

Both libraries run with the same settings: ``n_neighbors=10, MN_ratio=0.5, FP_ratio=2.0``,
450 iterations ``(100, 100, 250)``, PCA init, defaults otherwise (the package: its own
kNN backend and PCA to 100 dims above 100 features; ours: PCA to 50 dims and our kNN
search; the package is left unseeded, as in ``embedscope bench``). Every fit is a fresh
process (its own peak RSS, VmHWM, data included) after one warm-up fit of the same data in
that process at a 5,000-row slice, so JIT compilation is excluded from ``fit_s`` and
reported apart (``warmup_s``, the compile-dominated first fit). Quality on a 5,000-point
sample: trustworthiness@15 and kNN label accuracy@15 (mixture: cluster; words: first
letter), and random triplet accuracy (global structure) on 10,000 triplets.

Targets (issue #17): time <= 0.5x the package's at trustworthiness and triplet accuracy >=
the package's - 0.01; 1M x 50 in <= 10 min with peak RSS <= 3 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, peak_rss_bytes, run_child, write_results

# the checkout's sibling shared/ (a worktree under wt/ has it one level further up)
WORDS = next((p / "shared" / "data" / "words" for p in Path(__file__).resolve().parents[2:4]
              if (p / "shared" / "data" / "words").is_dir()),
             Path(__file__).resolve().parents[2] / "shared" / "data" / "words")
SETTINGS = {"n_components": 2, "n_neighbors": 10, "MN_ratio": 0.5, "FP_ratio": 2.0}
WARMUP_ROWS = 5000


def load(name: str, quick: bool = False) -> tuple[np.ndarray, np.ndarray, str]:
    """The dataset, its labels and its metric."""
    from embedscope.datasets import make_mixture, parse_size

    if name == "words":
        import pandas as pd

        X = np.load(WORDS / "vectors.npy").astype(np.float32)
        labels = pd.read_csv(WORDS / "meta.csv.gz", keep_default_na=False)["first_letter"].to_numpy()
        if quick:
            X, labels = X[:3000], labels[:3000]
        return X, labels, "cosine"
    if name.startswith("mixture"):
        n = 3000 if quick else parse_size(name.removeprefix("mixture"))
        X, labels = make_mixture(n, 50, 50, random_state=0)
        return X, labels, "euclidean"
    raise ValueError(name)


def quality(X: np.ndarray, Y: np.ndarray, labels: np.ndarray, metric: str) -> dict[str, float]:
    from embedscope.engine.metrics import knn_accuracy, random_triplet_accuracy, trustworthiness

    n = min(5000, X.shape[0])
    return {
        "trustworthiness": trustworthiness(X, Y, 15, metric=metric, sample_size=n, random_state=0),
        "triplet_accuracy": random_triplet_accuracy(X, Y, n_triplets=10_000, metric=metric, random_state=0),
        "knn_label_accuracy": knn_accuracy(Y, labels, 15, sample_size=n, random_state=0),
    }


def _ours_fit(X: np.ndarray, metric: str) -> tuple[np.ndarray, dict[str, float]]:
    from embedscope import PaCMAP

    est = PaCMAP(metric=metric, random_state=0, **SETTINGS)
    Y = est.fit_transform(X)
    return Y, {f"t_{k}": v for k, v in est.timings_.items()}


def _package_fit(X: np.ndarray, metric: str) -> tuple[np.ndarray, dict[str, float]]:
    import pacmap

    est = pacmap.PaCMAP(distance="angular" if metric == "cosine" else "euclidean", verbose=False, **SETTINGS)
    return est.fit_transform(X, init="pca"), {}


def child(impl: str, dataset: str, quick: bool) -> None:
    X, labels, metric = load(dataset, quick)
    start = time.perf_counter()
    if impl == "ours":
        import embedscope

        fit, version = _ours_fit, f"embedscope {embedscope.__version__}"
    else:
        import pacmap

        fit, version = _package_fit, f"pacmap {getattr(pacmap, '__version__', '?')}"
    import_s = time.perf_counter() - start
    start = time.perf_counter()
    warm = np.ascontiguousarray(X[:min(WARMUP_ROWS, X.shape[0])])
    fit(warm, metric)  # compiles (JIT), excluded below
    if impl == "ours":
        # A slice this small is searched exactly; the full fit may take NN-descent (the
        # numba cache is fresh for the run), which would otherwise compile inside fit_s.
        from embedscope.kernels.knn.router import nearest_neighbors

        nearest_neighbors(warm, SETTINGS["n_neighbors"] + 50, metric, method="nndescent", random_state=0)
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    Y, stages = fit(X, metric)
    fit_s = time.perf_counter() - start
    result = {"impl": version, "dataset": dataset, "n": int(X.shape[0]), "import_s": import_s,
              "warmup_s": warmup_s, "fit_s": fit_s, "peak_rss_gb": peak_rss_bytes() / 1e9, **stages}
    result.update(quality(X, np.asarray(Y), labels, metric))
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["mixture100k", "words"])
    parser.add_argument("--sizes", nargs="*", default=[], help="extra mixture sizes (ours only), e.g. 1m")
    parser.add_argument("--peer-at-sizes", action="store_true", help="run the package at --sizes too")
    parser.add_argument("--skip-package", action="store_true", help="ours only")
    parser.add_argument("--repeats", type=int, default=1, help="fresh-process fits per library (median)")
    parser.add_argument("--quick", action="store_true", help="3,000 rows per dataset: checks the script")
    parser.add_argument("--name", default=None, help="results file name (default pacmap_cpu)")
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "DATASET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.quick)
        return

    script = str(Path(__file__).resolve())
    os.environ.setdefault("NUMBA_CACHE_DIR", tempfile.mkdtemp(prefix="pacmap_bench_numba_"))
    datasets = [*args.datasets, *(f"mixture{s}" for s in args.sizes)]
    rows = []
    for dataset in datasets:
        peer = not args.skip_package and (dataset not in [f"mixture{s}" for s in args.sizes] or args.peer_at_sizes)
        for impl in ["ours", *(["package"] if peer else [])]:
            results = []
            for _ in range(max(1, args.repeats)):
                print(f"running {impl} on {dataset} ...", file=sys.stderr, flush=True)
                result = run_child(script, ["--child", impl, dataset, *(["--quick"] if args.quick else [])])
                result.setdefault("dataset", dataset)
                results.append(result)
                print(json.dumps(result), file=sys.stderr, flush=True)
            timed = [r for r in results if "fit_s" in r]
            result = dict(sorted(timed, key=lambda r: r["fit_s"])[len(timed) // 2]) if timed else results[0]
            if len(timed) > 1:
                result["fit_all_s"] = [round(r["fit_s"], 2) for r in timed]
            rows.append(result)
    for dataset in datasets:
        ours = next((r for r in rows if r["dataset"] == dataset and str(r.get("impl", "")).startswith("embedscope")
                     and "fit_s" in r), None)
        peer = next((r for r in rows if r["dataset"] == dataset and str(r.get("impl", "")).startswith("pacmap")
                     and "fit_s" in r), None)
        if ours and peer:
            ours["time_ratio_vs_package"] = ours["fit_s"] / peer["fit_s"]
            ours["trust_diff_vs_package"] = ours["trustworthiness"] - peer["trustworthiness"]
            ours["triplet_diff_vs_package"] = ours["triplet_accuracy"] - peer["triplet_accuracy"]
    columns = ["dataset", "n", "impl", "import_s", "warmup_s", "fit_s", "fit_all_s", "t_preprocess", "t_knn",
               "t_affinities", "t_init", "t_optimise", "peak_rss_gb", "trustworthiness", "triplet_accuracy",
               "knn_label_accuracy", "time_ratio_vs_package", "trust_diff_vs_package",
               "triplet_diff_vs_package", "error"]
    table = markdown_table(rows, columns)
    print(table)
    write_results(args.name or ("pacmap_cpu_quick" if args.quick else "pacmap_cpu"), {"machine": machine(), "rows": rows}, table)


if __name__ == "__main__":
    main()
