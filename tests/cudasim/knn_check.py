"""Run the GPU kNN twin in numba's CUDA simulator against the CPU twin (tiny inputs).

Invoked by tests/test_gpu_twins.py with NUMBA_ENABLE_CUDASIM=1; exits non-zero on a
mismatch.
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
    resident = KnnPlan(query_rows=21, data_rows=21, resident=True, peak_bytes=0)
    streamed = KnnPlan(query_rows=8, data_rows=6, resident=False, peak_bytes=0)
    cases = [("euclidean", resident, None), ("euclidean", streamed, None), ("euclidean", streamed, Q),
             ("cosine", resident, None), ("cosine", streamed, Q), ("inner_product", resident, Q)]
    for metric, plan, queries in cases:
        ref_i, ref_d = exact_knn(X, 4, metric, queries)
        got_i, got_d = exact_knn_gpu(X, 4, metric, queries, plan=plan, threads=4)
        label = f"{metric}, {'resident' if plan.resident else 'streamed'}, {'self-join' if queries is None else 'queries'}"
        np.testing.assert_allclose(got_d, ref_d, rtol=1e-5, atol=1e-5, err_msg=label)
        np.testing.assert_array_equal(got_i, ref_i, err_msg=label)
    print("knn parity ok")


if __name__ == "__main__":
    main()
