"""Tune the GPU kNN twin's launch shape on a device: threads per row x distance-block size.

    python benchmarks/gpu_knn_tune.py --rows 250000     # prints one line per configuration
"""

from __future__ import annotations

import argparse
import itertools
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--dim", type=int, default=50)
    parser.add_argument("--final-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    import cupy

    from embedscope._memory import device_free_bytes, plan_knn
    from embedscope.kernels.knn.gpu import exact_knn_gpu

    X = cupy.random.default_rng(0).standard_normal((args.final_rows, args.dim), dtype=cupy.float32)
    sub = X[: args.rows]
    exact_knn_gpu(sub[:2000], 15)  # compile
    best = None
    for threads, block_gib in itertools.product((128, 256, 512), (2, 8)):
        plan = plan_knn(args.rows, args.rows, args.dim, 15, device_free_bytes(), max_block_bytes=block_gib * 2**30)
        cupy.cuda.get_current_stream().synchronize()
        start = time.perf_counter()
        exact_knn_gpu(sub, 15, plan=plan, threads=threads)
        cupy.cuda.get_current_stream().synchronize()
        seconds = time.perf_counter() - start
        print(json.dumps({"rows": args.rows, "threads": threads, "block_gib": block_gib,
                          "query_rows": plan.query_rows, "time_s": seconds}), flush=True)
        if best is None or seconds < best[0]:
            best = (seconds, threads, block_gib)
    _, threads, block_gib = best
    plan = plan_knn(args.final_rows, args.final_rows, args.dim, 15, device_free_bytes(), max_block_bytes=block_gib * 2**30)
    start = time.perf_counter()
    exact_knn_gpu(X, 15, plan=plan, threads=threads)
    cupy.cuda.get_current_stream().synchronize()
    print(json.dumps({"rows": args.final_rows, "threads": threads, "block_gib": block_gib,
                      "time_s": time.perf_counter() - start, "final": True}), flush=True)


if __name__ == "__main__":
    main()
