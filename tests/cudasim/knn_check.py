"""Run the GPU kNN twin in numba's CUDA simulator against the CPU twin (tiny inputs).

Invoked by tests/test_gpu_twins.py with NUMBA_ENABLE_CUDASIM=1; exits non-zero on a
mismatch. Covers every metric: the matrix-product ones through ``select_topk``, the
coordinate-wise ones (manhattan, chebyshev, minkowski, hamming, jaccard) through the
brute-force ``direct_topk``.
"""

from __future__ import annotations

import numpy as np

from embedscope._memory import KnnPlan
from embedscope.kernels.knn import exact_knn
from embedscope.kernels.knn.gpu import exact_knn_gpu


def main() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((21, 5)).astype(np.float32)
    X[5] = X[9]  # a duplicate pair: distance 0, tie broken by index
    X[11] = 0.0  # an all-zero row (cosine distance 1 to everything)
    Q = rng.standard_normal((4, 5)).astype(np.float32)
    B = (rng.random((21, 6)) < 0.4).astype(np.float32)  # binary rows: ties everywhere
    B[3] = 0.0  # an all-zero row (jaccard distance 0 to another zero row)
    B[7] = 0.0
    BQ = (rng.random((4, 6)) < 0.4).astype(np.float32)
    resident = KnnPlan(query_rows=21, data_rows=21, resident=True, peak_bytes=0)
    streamed = KnnPlan(query_rows=8, data_rows=6, resident=False, peak_bytes=0)
    cases = [("euclidean", resident, None, None), ("euclidean", streamed, None, None),
             ("euclidean", streamed, Q, None), ("cosine", resident, None, None), ("cosine", streamed, Q, None),
             ("inner_product", resident, Q, None), ("correlation", resident, Q, None),
             ("manhattan", streamed, None, None), ("chebyshev", resident, Q, None),
             ("minkowski", resident, None, {"p": 3}), ("minkowski", resident, Q, {"p": 1.5}),
             ("hamming", resident, None, None), ("jaccard", streamed, "binary", None)]
    for metric, plan, queries, kwds in cases:
        data = B if metric in ("hamming", "jaccard") else X
        queries = BQ if isinstance(queries, str) else queries
        ref_i, ref_d = exact_knn(data, 4, metric, queries, metric_kwds=kwds)
        got_i, got_d = exact_knn_gpu(data, 4, metric, queries, plan=plan, threads=4, metric_kwds=kwds)
        label = f"{metric}, {'resident' if plan.resident else 'streamed'}, {'self-join' if queries is None else 'queries'}"
        np.testing.assert_allclose(got_d, ref_d, rtol=1e-5, atol=1e-5, err_msg=label)
        np.testing.assert_array_equal(got_i, ref_i, err_msg=label)
    print("knn parity ok")


if __name__ == "__main__":
    main()
