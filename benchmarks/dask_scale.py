"""The Dask path at scale: N x 50 in shards through a LocalCluster, against one machine.

    python benchmarks/dask_scale.py                          # 10M rows, 2 workers
    python benchmarks/dask_scale.py --rows 2000000 --sample 20000

Stages timed: distributed PCA (fit + transform to parquet), UMAP fitted on a seeded
sample then placed on the workers (write included); peak memory (VmHWM) of every
worker (target: each under 4 GiB); and the same reducers on the single-machine path
at 1M rows for the ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, peak_rss_bytes, write_results


def make_shards(folder: Path, rows: int, dim: int, shard_rows: int, n_clusters: int = 50) -> None:
    """One 50-cluster Gaussian mixture, written shard by shard (bounded memory)."""
    centres = np.random.default_rng(0).uniform(-10, 10, size=(n_clusters, dim)).astype(np.float32)
    for i, start in enumerate(range(0, rows, shard_rows)):
        rng = np.random.default_rng(1000 + i)
        n = min(shard_rows, rows - start)
        labels = rng.integers(0, n_clusters, size=n)
        X = centres[labels] + rng.standard_normal((n, dim), dtype=np.float32)
        np.save(folder / f"part-{i:04d}.npy", X)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dim", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=int, default=100_000)
    parser.add_argument("--single-rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()

    from embedscope import PCA, UMAP
    from embedscope.engine import distributed as dist
    from embedscope.io.load import load_vectors
    from embedscope.io.write import write_coords

    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = Path(tmp) / "shards"
        folder.mkdir()
        t0 = time.perf_counter()
        make_shards(folder, args.rows, args.dim, 500_000)
        print(f"data: {args.rows:,} x {args.dim} in {len(list(folder.iterdir()))} shards, "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        with dist.cluster(local_workers=args.workers) as client:
            X, _ = load_vectors(folder, check_finite=False)
            start = time.perf_counter()
            pca = PCA(2).fit(X)
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
            write_coords(Path(tmp) / "pca-out", pca.transform(X))
            rows.append({"run": f"dask PCA {args.rows:,} x {args.dim}", "fit_s": fit_s,
                         "transform_write_s": time.perf_counter() - start})
            print(json.dumps(rows[-1]), flush=True)
            start = time.perf_counter()
            sampled = dist.SampledReducer(UMAP(random_state=0), sample_size=args.sample).fit(X)
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
            write_coords(Path(tmp) / "umap-out", sampled.transform(X))
            rows.append({"run": f"dask UMAP {args.rows:,} x {args.dim} (sample {args.sample:,})", "fit_s": fit_s,
                         "transform_write_s": time.perf_counter() - start})
            print(json.dumps(rows[-1]), flush=True)
            peaks = client.run(peak_rss_bytes)
            worst = max(peaks.values()) / 2**30
            for r in rows:
                r["worker_peak_gib"] = worst
        single = np.concatenate([np.load(f) for f in sorted(folder.iterdir())[: max(1, args.single_rows // 500_000)]])
        start = time.perf_counter()
        PCA(2).fit_transform(single)
        rows.append({"run": f"single-machine PCA {len(single):,} x {args.dim}", "fit_s": time.perf_counter() - start})
        start = time.perf_counter()
        UMAP(random_state=0).fit(single[np.sort(np.random.default_rng(0).choice(len(single), args.sample, replace=False))])
        rows.append({"run": f"single-machine UMAP fit on {args.sample:,} sample", "fit_s": time.perf_counter() - start})
        rows.append({"run": "driver process peak", "worker_peak_gib": peak_rss_bytes() / 2**30})
    table = markdown_table(rows, ["run", "fit_s", "transform_write_s", "worker_peak_gib"])
    print(table)
    write_results("dask_scale", {"machine": machine(), "args": vars(args), "results": rows}, table)


if __name__ == "__main__":
    main()
