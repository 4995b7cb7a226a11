"""UMAP on the CPU: ours against umap-learn, per stage, with quality and peak memory.

    python benchmarks/umap_cpu.py                      # 100k mixture, words, 1M mixture
    python benchmarks/umap_cpu.py --datasets mixture100k words
    python benchmarks/umap_cpu.py --skip-umap-learn    # ours only
    python benchmarks/umap_cpu.py --datasets mixture100k words --repeats 3   # medians of 3 warm fits

Datasets: ``mixture100k`` (100,000 x 50, 50 clusters, seed 0), ``words`` (the 30,000 x
384 word vectors in ../shared/data/words, cosine), ``mixture1m`` (1,000,000 x 50, 50
clusters) and ``mixture1m_20`` (1,000,000 x 50, 20 full-dimensional clusters, the hard
shape for the kNN graph search; benchmarks/knn_cpu.py), the 1M sets ours only:
umap-learn takes ~25 min and 10.5 GB there. ``mixture1m_20`` runs only when named:

    python benchmarks/umap_cpu.py --datasets mixture1m_20

Every run is a fresh process, so its peak RSS (VmHWM, data included) is its own.
Ours runs twice with one new, empty numba cache: the first run compiles (``cold``),
the second loads the cache (``warm``). umap-learn fits twice in one process (its
first fit compiles what its on-disk cache lacks). Quality: trustworthiness@15 and
embedding kNN recall@15 on a 5,000-point subsample against the original vectors, and
for ours the recall@k of the kNN graph itself against exact search on 1,000 rows.
Targets (issue #3): time <= 0.5x umap-learn's at trustworthiness >= umap-learn's -
0.01; 1M x 50 in <= 300 s with peak RSS <= 3 GB.

Floors for tests/test_umap.py were measured with umap-learn 0.5.12:
``UMAP(random_state=0).fit_transform(make_mixture(5000, 50, 20, random_state=0)[0])``
and ``UMAP(random_state=0, metric="cosine")`` on the words, scored with
``embedscope.trustworthiness(X, Y, 15)`` (cosine for the words).
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

WORDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "words" / "vectors.npy"
RESULTS_JSON = Path(__file__).resolve().parent / "results" / "umap_cpu.json"
DATASETS = ("mixture100k", "words", "mixture1m", "mixture1m_20")


def load(name: str) -> tuple[np.ndarray, str]:
    """The dataset and its metric."""
    from embedscope.datasets import make_mixture

    if name == "mixture100k":
        return make_mixture(100_000, 50, 50, random_state=0)[0], "euclidean"
    if name == "mixture1m":
        return make_mixture(1_000_000, 50, 50, random_state=0)[0], "euclidean"
    if name == "mixture1m_20":
        return make_mixture(1_000_000, 50, 20, random_state=0)[0], "euclidean"
    if name == "words":
        return np.load(WORDS).astype(np.float32), "cosine"
    raise ValueError(name)


def quality(X: np.ndarray, Y: np.ndarray, metric: str) -> dict[str, float]:
    from embedscope.engine.metrics import knn_recall, trustworthiness

    return {
        "trustworthiness": trustworthiness(X, Y, 15, metric=metric, sample_size=5000, random_state=0),
        "emb_knn_recall": knn_recall(X, Y, 15, metric=metric, sample_size=5000, random_state=0),
    }


def graph_recall(umap, metric: str) -> float:
    """Recall of the fitted kNN graph against exact search, on 1,000 seeded rows."""
    from embedscope.kernels.knn import exact_knn

    data = umap._train  # the vectors the search saw (after PCA, where applied)
    rows = np.random.default_rng(0).choice(data.shape[0], 1000, replace=False)
    k = umap.knn_indices_.shape[1]
    exact, _ = exact_knn(data, k + 1, umap._metric, queries=data[rows])
    hits = [len(set(umap.knn_indices_[r]) & (set(exact[t]) - {r})) / k for t, r in enumerate(rows)]
    return float(np.mean(hits))


def child_ours(dataset: str) -> None:
    X, metric = load(dataset)
    start = time.perf_counter()
    from embedscope import UMAP

    import_s = time.perf_counter() - start
    umap = UMAP(metric=metric, random_state=0)
    start = time.perf_counter()
    Y = umap.fit_transform(X)
    fit_s = time.perf_counter() - start
    result = {"impl": "embedscope", "dataset": dataset, "import_s": import_s, "fit_s": fit_s,
              "peak_rss_gb": peak_rss_bytes() / 1e9, "init_used": umap.init_used_,
              **{f"t_{k}": v for k, v in umap.timings_.items()}}
    result.update(quality(X, Y, metric))
    result["graph_recall"] = graph_recall(umap, metric)
    print(json.dumps(result))


def child_umap_learn(dataset: str, repeats: int = 1) -> None:
    X, metric = load(dataset)
    start = time.perf_counter()
    import umap

    import_s = time.perf_counter() - start
    fits = []
    for _ in range(1 + repeats):  # the first fit compiles, the rest are warm
        start = time.perf_counter()
        Y = umap.UMAP(metric=metric).fit_transform(X)  # unseeded: its parallel mode
        fits.append(time.perf_counter() - start)
    result = {"impl": "umap-learn " + umap.__version__ if hasattr(umap, "__version__") else "umap-learn",
              "dataset": dataset, "import_s": import_s, "fit_cold_s": fits[0],
              "fit_s": float(np.median(fits[1:])), "fit_warm_all_s": [round(f, 2) for f in fits[1:]],
              "peak_rss_gb": peak_rss_bytes() / 1e9}
    result.update(quality(X, Y, metric))
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS[:3]), choices=DATASETS)
    parser.add_argument("--skip-umap-learn", action="store_true")
    parser.add_argument("--repeats", type=int, default=1,
                        help="warm fits per library (median reported): umap-learn's time varies by ~1.5x "
                             "between runs on this shared machine")
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "DATASET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "ours":
            child_ours(args.child[1])
        else:
            child_umap_learn(args.child[1], args.repeats)
        return

    script = str(Path(__file__).resolve())
    rows = []
    cache = tempfile.mkdtemp(prefix="umap_bench_numba_")
    os.environ["NUMBA_CACHE_DIR"] = cache  # fresh cache: the first ours run is cold
    for dataset in args.datasets:
        runs = [("ours", "cold"), ("ours", "warm")]
        if not args.skip_umap_learn and not dataset.startswith("mixture1m"):
            runs.append(("umap-learn", "warm"))
        if dataset != args.datasets[0]:
            runs = [r for r in runs if r != ("ours", "cold")]  # cache already built
        for impl, state in runs:
            # ours: one fresh process per warm fit (so each peak RSS is its own)
            n_runs = args.repeats if (impl, state) == ("ours", "warm") else 1
            results = []
            for _ in range(n_runs):
                print(f"running {impl} ({state}) on {dataset} ...", file=sys.stderr, flush=True)
                result = run_child(script, ["--child", impl, dataset, "--repeats", str(args.repeats)])
                result.setdefault("dataset", dataset)
                result["state"] = state
                results.append(result)
                print(json.dumps(result), file=sys.stderr, flush=True)
            if len(results) > 1 and all("fit_s" in r for r in results):
                fits = [r["fit_s"] for r in results]
                result = dict(sorted(results, key=lambda r: r["fit_s"])[len(results) // 2])  # the median run
                result["fit_warm_all_s"] = [round(f, 2) for f in fits]
            rows.append(result)
    for dataset in args.datasets:
        ours = next((r for r in rows if r["dataset"] == dataset and r.get("impl") == "embedscope"
                     and r["state"] == "warm"), None)
        peer = next((r for r in rows if r["dataset"] == dataset and str(r.get("impl", "")).startswith("umap-learn")), None)
        if ours and peer and "fit_s" in peer and "fit_s" in ours:
            ours["time_ratio_vs_umap_learn"] = ours["fit_s"] / peer["fit_s"]
            ours["trust_diff_vs_umap_learn"] = ours["trustworthiness"] - peer["trustworthiness"]
    columns = ["dataset", "impl", "state", "import_s", "fit_cold_s", "fit_s", "t_preprocess", "t_knn", "t_affinities",
               "t_init", "t_optimise", "peak_rss_gb", "trustworthiness", "emb_knn_recall", "graph_recall",
               "time_ratio_vs_umap_learn", "trust_diff_vs_umap_learn", "init_used", "note", "error"]
    # datasets not run this time keep their last rows
    previous = RESULTS_JSON.exists() and json.loads(RESULTS_JSON.read_text()).get("rows", [])
    kept = [r for r in (previous or []) if r.get("dataset") not in args.datasets]
    for r in kept:
        r["note"] = "from an earlier run"
    rows = kept + rows
    columns.insert(6, "fit_warm_all_s")
    table = markdown_table(rows, columns)
    print(table)
    write_results("umap_cpu", {"machine": machine(), "rows": rows}, table)


if __name__ == "__main__":
    main()
