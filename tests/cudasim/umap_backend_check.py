"""UMAP(backend="cuda") end to end in numba's CUDA simulator, against backend="cpu".

Invoked by tests/test_gpu_twins.py with NUMBA_ENABLE_CUDASIM=1, where an explicit
"cuda" resolves to the simulator (numpy arrays). Checks the estimator's wiring:
data placement, PCA on the cuda backend, the GPU kNN and SGD twins in fit and
transform, host-side attributes, timings and stage lines. Exits non-zero on a failure.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
from _common import embedscope_log_lines

from embedscope import UMAP, make_mixture, trustworthiness
from embedscope.kernels.knn import gpu as knn_gpu
from embedscope.kernels.umap_sgd import gpu as umap_sgd_gpu


def _slim_launches() -> None:
    # The simulator runs one Python thread per CUDA thread, so the default 128 threads
    # per kNN row and 256 per SGD block would take minutes here; the kernels' logic at
    # other thread counts is what knn_check.py and umap_sgd_check.py cover.
    knn_gpu.exact_knn_gpu = functools.partial(knn_gpu.exact_knn_gpu, threads=1)
    umap_sgd_gpu.optimize_layout_gpu = functools.partial(umap_sgd_gpu.optimize_layout_gpu, threads=32)


def check_euclidean() -> None:
    X, labels = make_mixture(176, 10, 3, random_state=0)
    fit_rows, new_rows = X[:160], X[160:]
    params = dict(n_neighbors=8, n_epochs=30, random_state=0)
    with embedscope_log_lines() as lines:
        cuda = UMAP(backend="cuda", verbose=True, **params)
        Y = cuda.fit_transform(fit_rows)
    cpu = UMAP(backend="cpu", **params).fit(fit_rows)

    assert cuda.backend_ == "cuda" and "NUMBA_ENABLE_CUDASIM" in cuda.backend_reason_
    assert isinstance(Y, np.ndarray) and Y.dtype == np.float32 and Y.shape == (160, 2)
    assert isinstance(cuda.embedding_, np.ndarray) and cuda.embedding_.dtype == np.float32
    assert np.all(np.isfinite(Y))
    assert set(cuda.timings_) == {"preprocess", "knn", "affinities", "init", "optimise"}
    for stage in ("knn ... exact on cuda", "optimise ... 30 epochs on cuda", "preprocess ... 160 x 10 on cuda"):
        assert any(stage in line for line in lines), (stage, lines)
    # Both backends search exactly, so they build the same graph.
    np.testing.assert_array_equal(cuda.knn_indices_, cpu.knn_indices_)
    np.testing.assert_allclose(cuda.knn_distances_, cpu.knn_distances_, rtol=1e-4, atol=1e-5)
    assert cuda.init_used_ == cpu.init_used_
    t_cuda = trustworthiness(fit_rows, cuda.embedding_, 7)
    t_cpu = trustworthiness(fit_rows, cpu.embedding_, 7)
    assert abs(t_cuda - t_cpu) < 0.05 and t_cuda > 0.8, (t_cuda, t_cpu)

    placed = cuda.transform(new_rows)
    assert isinstance(placed, np.ndarray) and placed.shape == (16, 2) and np.all(np.isfinite(placed))
    # Each new point lands among the fitted points of its own cluster.
    nearest = np.argmin(((placed[:, None, :] - cuda.embedding_[None]) ** 2).sum(axis=2), axis=1)
    assert np.mean(labels[:160][nearest] == labels[160:]) >= 0.9
    print(f"umap cuda (euclidean): trustworthiness {t_cuda:.4f} vs cpu {t_cpu:.4f}")


def check_cosine_with_pca() -> None:
    rng = np.random.default_rng(1)
    X = (rng.standard_normal((3, 110))[rng.integers(0, 3, 96)] + 0.3 * rng.standard_normal((96, 110)))
    params = dict(n_neighbors=5, n_epochs=5, metric="cosine", init="random", random_state=2)
    cuda = UMAP(backend="cuda", **params).fit(X)
    cpu = UMAP(backend="cpu", **params).fit(X)
    assert cuda.pca_.backend_ == "cuda" and cuda.pca_.n_components_ == 50
    np.testing.assert_array_equal(cuda.knn_indices_, cpu.knn_indices_)
    np.testing.assert_allclose(cuda.knn_distances_, cpu.knn_distances_, rtol=1e-4, atol=1e-5)
    assert np.all(np.isfinite(cuda.embedding_))
    print("umap cuda (cosine, PCA-50) ok")


def main() -> None:
    _slim_launches()
    check_euclidean()
    check_cosine_with_pca()
    print("umap backend ok")


if __name__ == "__main__":
    # The SGD hash wraps uint64 on purpose; the simulator's threads do not inherit
    # np.errstate, so the warning is filtered by message instead.
    warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)
    main()
