"""Affinity GPU twins in numba's CUDA simulator against the CPU twins (tiny graphs).

UMAP's smooth kNN kernel and fuzzy graph (:mod:`embedscope.kernels.graph.fuzzy`), and
t-SNE's perplexity kernel and joint P (:mod:`embedscope.kernels.tsne.affinity_gpu`).
Invoked by tests/test_gpu_twins.py with NUMBA_ENABLE_CUDASIM=1 (the device array
module is numpy there). Exits non-zero on a failure.
"""

from __future__ import annotations

import numpy as np

from embedscope.kernels import affinity
from embedscope.kernels import tsne as ktsne
from embedscope.kernels.graph.fuzzy import fuzzy_simplicial_set_gpu, smooth_knn_gpu
from embedscope.kernels.knn import exact_knn
from embedscope.kernels.tsne.affinity_gpu import conditional_affinities_gpu, joint_probabilities_gpu

THREADS = 8


def _knn(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)
    X[5] = X[4]  # a duplicate: a zero distance, rho from the next one
    return exact_knn(X, k)


def check_umap() -> None:
    idx, dist = _knn(48, 6, seed=0)
    for nearest, d in ((False, dist), (True, dist - 0.5)):  # negative distances: inner product
        sig_ref, rho_ref = affinity.smooth_knn_dist(np.ascontiguousarray(d), float(np.log2(7)), nearest)
        w_ref = affinity.membership_strengths(np.ascontiguousarray(d), sig_ref, rho_ref)
        sig, rho, w = smooth_knn_gpu(d, 7, rho_from_nearest=nearest, threads=THREADS, xp=np)
        np.testing.assert_allclose(rho, rho_ref, rtol=0, atol=0)
        np.testing.assert_allclose(sig, sig_ref, rtol=1e-6)
        np.testing.assert_allclose(w, w_ref, rtol=1e-5, atol=1e-7)
        ref, _, _ = affinity.fuzzy_simplicial_set(idx, d, 7, rho_from_nearest=nearest)
        got, _, _ = fuzzy_simplicial_set_gpu(idx, d, 7, rho_from_nearest=nearest, threads=THREADS)
        np.testing.assert_array_equal(got.indptr, ref.indptr)
        np.testing.assert_array_equal(got.indices, ref.indices)
        np.testing.assert_allclose(got.data, ref.data, rtol=1e-5, atol=1e-7)
    # negative control: another n_neighbors (target sum) must give other bandwidths
    other, _, _ = smooth_knn_gpu(dist, 4, threads=THREADS, xp=np)
    assert np.abs(other - sig_ref).max() > 1e-3


def check_tsne() -> None:
    n, k = 40, 9
    idx, dist = _knn(n, k, seed=1)
    for squared in (True, False):
        cond_ref, missed_ref = ktsne.conditional_affinities(dist, 3.0, squared=squared)
        cond, missed = conditional_affinities_gpu(dist, 3.0, squared=squared, threads=THREADS, xp=np)
        assert missed == missed_ref
        np.testing.assert_allclose(cond, cond_ref, rtol=1e-5, atol=1e-7)
        P_ref = ktsne.joint_probabilities(idx, cond_ref, n)
        P, _ = joint_probabilities_gpu(idx, dist, n, 3.0, squared=squared, threads=THREADS)
        np.testing.assert_array_equal(P.indptr, P_ref.indptr)
        np.testing.assert_array_equal(P.indices, P_ref.indices)
        np.testing.assert_allclose(P.data, P_ref.data, rtol=1e-5, atol=1e-9)
        assert P.data.dtype == np.float32 and P.indices.dtype == np.int32
    # missing neighbours (-1) get no weight, as on the host path of TSNE._affinities
    holes = idx.copy()
    holes[3, 4:] = -1
    P, _ = joint_probabilities_gpu(holes, dist, n, 3.0, threads=THREADS)
    assert abs(float(P.data.sum()) - 1.0) < 1e-5
    row3 = set(P.indices[P.indptr[3]:P.indptr[4]].tolist())
    assert row3 >= set(idx[3, :4].tolist())


if __name__ == "__main__":
    check_umap()
    check_tsne()
    print("graph affinity twins ok")
