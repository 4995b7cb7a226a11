"""t-SNE GPU twins in numba's CUDA simulator against the CPU twins, and TSNE(backend="cuda").

Invoked by tests/test_gpu_twins.py with NUMBA_ENABLE_CUDASIM=1, where the array module
of the twins is numpy. Kernels run on tiny inputs with a few threads per block (the
simulator runs one Python thread per CUDA thread). Exits non-zero on a failure.
"""

from __future__ import annotations

import functools

import numpy as np
from _common import embedscope_log_lines

from embedscope import TSNE, knn_accuracy, make_mixture, trustworthiness
from embedscope.backends import cpu as cpu_backend
from embedscope.backends import cuda as cuda_backend
from embedscope.kernels import tsne as ktsne
from embedscope.kernels.knn import exact_knn
from embedscope.kernels.knn import gpu as knn_gpu
from embedscope.kernels.tsne import gpu as tsne_gpu
from embedscope.kernels.tsne.fft import FFTRepulsion

THREADS = 8


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def _joint(n: int, k: int, perplexity: float, seed: int):
    X = np.random.default_rng(seed).normal(size=(n, 5)).astype(np.float32)
    idx, dist = exact_knn(X, k)
    return ktsne.joint_probabilities(idx, ktsne.conditional_affinities(dist, perplexity)[0], n)


def check_row_kernels() -> None:
    rng = np.random.default_rng(0)
    n = 40
    P = _joint(n, 12, 4.0, seed=1)
    P_dev = tsne_gpu.csr_to_device(P, np)
    for dim in (2, 3):
        Y32 = (rng.normal(size=(n, dim)) * 3).astype(np.float32)
        Y = Y32.astype(np.float64)  # the same points on both sides
        for dof in (1.0, 0.6):
            ref = np.empty_like(Y)
            ktsne.attractive_forces(P.indptr, P.indices, P.data, Y, Y, dof, ref)
            got = np.full_like(Y32, np.nan)
            tsne_gpu.attractive_forces_gpu(P_dev, Y32, Y32, dof, got, threads=THREADS)
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())

        # transform's shape: rows of new points against a fixed reference
        fixed32 = (rng.normal(size=(n, dim)) * 3).astype(np.float32)
        rows = P[:7]
        ref = np.empty((7, dim))
        ktsne.attractive_forces(rows.indptr, rows.indices, rows.data, Y[:7], fixed32.astype(np.float64), 1.0, ref)
        got = np.empty((7, dim), np.float32)
        tsne_gpu.attractive_forces_gpu(tsne_gpu.csr_to_device(rows, np), Y32[:7], fixed32, 1.0, got, threads=THREADS)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())

        # the fused step against the CPU step: one 1/Z for all rows, then one per row
        rep32 = rng.normal(size=(n, dim)).astype(np.float32)
        for inv_z in (np.array([0.37]), rng.uniform(0.1, 1.0, n)):
            upd32 = rng.normal(size=(n, dim)).astype(np.float32) * 0.1
            gains32 = rng.uniform(0.005, 2.0, size=(n, dim)).astype(np.float32)
            upd, gains = upd32.astype(np.float64), gains32.astype(np.float64)
            ktsne_inv_z = np.broadcast_to(inv_z, (n,)).copy()
            ktsne.gradient_step(P.indptr, P.indices, P.data, Y, Y, 0.8, rep32.astype(np.float64), ktsne_inv_z,
                                12.0, 4.0, 50.0, 0.5, upd, gains)
            tsne_gpu.gradient_step_gpu(P_dev, Y32, Y32, 0.8, rep32, inv_z, 12.0, 4.0, 50.0, 0.5,
                                       upd32, gains32, threads=THREADS)
            np.testing.assert_allclose(gains32, gains, rtol=1e-5)
            np.testing.assert_allclose(upd32, upd, rtol=1e-4, atol=1e-5 * np.abs(upd).max())

        z = 123.4
        np.testing.assert_allclose(tsne_gpu.kl_divergence_gpu(P_dev, Y32, np.array([z]), 0.7, threads=THREADS),
                                   ktsne.kl_divergence(P, Y, z, 0.7), rtol=1e-6)
        moved, step = Y32.copy(), rng.normal(size=(n, dim)).astype(np.float32)
        tsne_gpu.advance_gpu(moved, step)
        expected = Y + step
        np.testing.assert_allclose(moved, expected - expected.mean(axis=0), atol=1e-5)
    print("t-SNE row kernels ok")


def check_repulsion() -> None:
    rng = np.random.default_rng(2)
    for dim, dof in ((2, 1.0), (3, 0.6)):
        Y32 = (rng.normal(size=(300, dim)) * 4).astype(np.float32)
        rep, z = ktsne.exact_repulsion(Y32.astype(np.float64), dof)
        got, got_z = tsne_gpu.exact_repulsion_gpu(Y32, dof)
        assert got.dtype == np.float32 and got_z.shape == (1,)
        assert _rel(got, rep) < 1e-5 and abs(got_z[0] - z) / z < 1e-5

    # the grid twin on ~200 points: the CPU twin evaluated on the grid the GPU twin laid
    # out (its margin makes it a little wider than the CPU's own), then both against
    # the exact sums
    for scale, dof in ((1.0, 1.0), (15.0, 1.0), (25.0, 0.6)):  # fine boxes; unit boxes
        Y32 = (rng.normal(size=(200, 2)) * scale).astype(np.float32)
        Y32[:60] *= 0.1
        Y = Y32.astype(np.float64)
        twin = tsne_gpu.FFTRepulsionGPU(dof=dof, threads=THREADS)
        got, got_z = twin(Y32)
        grid = twin.grid_
        assert grid.lo[0] < Y[:, 0].min() and grid.lo[0] + grid.n_boxes * grid.box_width > Y[:, 0].max()
        rep, z = FFTRepulsion(dof=dof)._evaluate(Y, None, np.array(grid.lo), *grid[1:])
        assert got.dtype == np.float32 and got.shape == (200, 2)
        assert _rel(got, rep) < 1e-5, (scale, _rel(got, rep))
        assert abs(float(got_z[0]) - z) / z < 1e-5, (scale, got_z, z)
        own, _ = FFTRepulsion(dof=dof)(Y)
        exact, exact_z = ktsne.exact_repulsion(Y, dof)
        # loosely on so few, so sparse points; as close as the CPU's own grid gets
        assert _rel(got, exact) < max(0.1, 1.5 * _rel(own, exact)), (_rel(got, exact), _rel(own, exact))
        assert abs(float(got_z[0]) - exact_z) / exact_z < 1e-2
        T32 = (rng.normal(size=(30, 2)) * scale).astype(np.float32)
        rep_t, z_t = FFTRepulsion(dof=dof)(Y, T32.astype(np.float64))
        got_t, got_zt = tsne_gpu.FFTRepulsionGPU(dof=dof, threads=THREADS)(Y32, T32)
        assert _rel(got_t, rep_t) < 1e-5
        np.testing.assert_allclose(got_zt, z_t, rtol=1e-5)

    Y32 = (rng.normal(size=(150, 3)) * 3).astype(np.float32)
    coarse = dict(min_boxes=8, max_nodes=60)  # a small 3-D grid keeps numpy's FFTs quick
    twin = tsne_gpu.FFTRepulsionGPU(**coarse, threads=THREADS)
    got, got_z = twin(Y32)
    rep, z = FFTRepulsion(**coarse)._evaluate(Y32.astype(np.float64), None, np.array(twin.grid_.lo), *twin.grid_[1:])
    assert _rel(got, rep) < 1e-5 and abs(float(got_z[0]) - z) / z < 1e-5
    # negative control: the twin is sensitive to the grid it is given
    other, _ = tsne_gpu.FFTRepulsionGPU(n_interp=1, min_boxes=4, threads=THREADS)(Y32)
    assert _rel(other, rep) > 1e-2
    check_bounds_reads()
    print("t-SNE repulsion twins ok")


def check_bounds_reads() -> None:
    """The grid twin reads the bounds every few calls, and notices points left outside."""
    rng = np.random.default_rng(5)
    base = (rng.normal(size=(60, 2)) * 2).astype(np.float32)
    twin = tsne_gpu.FFTRepulsionGPU(threads=THREADS, sync_every=8)
    for step in range(30):  # an embedding that grows 3% a call, as t-SNE's do early on
        Y32 = base * np.float32(1.03**step)
        got, _ = twin(Y32)
        grid = twin.grid_
        extent = grid.n_boxes * grid.box_width
        assert (Y32 >= np.array(grid.lo)).all() and (Y32 <= np.array(grid.lo) + extent).all(), step
        if step in (0, 29):  # the grid it reused is as good as the CPU's own
            exact, _ = ktsne.exact_repulsion(Y32.astype(np.float64))
            own, _ = FFTRepulsion()(Y32.astype(np.float64))
            assert _rel(got, exact) < max(1e-3, 2 * _rel(own, exact)), (step, _rel(got, exact), _rel(own, exact))
    assert int(twin._outside[0]) == 0 and twin.syncs_ <= 10, twin.syncs_  # reads 1, 2, 4, 8 calls apart
    # negative control: no margin, rare reads and a jump leave points outside, which
    # the spread kernel counts and the next read answers by reading sooner
    jumpy = tsne_gpu.FFTRepulsionGPU(threads=THREADS, sync_every=4, margin=0.0)
    for _ in range(8):
        jumpy(base)
    interval = jumpy._interval
    jumpy(base * np.float32(1.5))
    assert int(jumpy._outside[0]) > 0
    while jumpy._since < jumpy._interval:
        jumpy(base * np.float32(1.5))
    jumpy(base * np.float32(1.5))  # reads the bounds and the count
    assert jumpy._interval < interval and int(jumpy._outside[0]) == 0, (interval, jumpy._interval)
    print("t-SNE grid bounds reads ok")


def _slim_launches() -> None:
    # One Python thread per CUDA thread in the simulator: few threads per block.
    knn_gpu.exact_knn_gpu = functools.partial(knn_gpu.exact_knn_gpu, threads=1)
    for name in ("gradient_step_gpu", "kl_divergence_gpu"):
        setattr(tsne_gpu, name, functools.partial(getattr(tsne_gpu, name), threads=32))


def check_estimator(X: np.ndarray, labels: np.ndarray, repulsion: str, perplexity: float,
                    precomputed: bool) -> None:
    k = int(3 * perplexity)
    params = dict(n_iter=60, perplexity=perplexity, random_state=0,
                  precomputed_knn=exact_knn(X, k) if precomputed else None)
    with embedscope_log_lines() as lines:
        cuda = TSNE(backend="cuda", verbose=True, **params)
        Y = cuda.fit_transform(X)
    cpu = TSNE(backend="cpu", **params).fit(X)

    assert cuda.backend_ == "cuda" and "NUMBA_ENABLE_CUDASIM" in cuda.backend_reason_
    assert isinstance(Y, np.ndarray) and Y.dtype == np.float32 and Y.shape == (len(X), 2)
    assert isinstance(cuda.embedding_, np.ndarray) and np.isfinite(Y).all()
    assert cuda.repulsion_ == cpu.repulsion_ == repulsion
    assert set(cuda.timings_) == {"preprocess", "knn", "affinities", "init", "optimise"}
    search = "precomputed" if precomputed else "exact on cuda"
    for stage in (f"knn ... k={k}, metric=euclidean, {search}", f"iterations on cuda, {repulsion} repulsion",
                  "iteration 50: KL divergence"):
        assert any(stage in line for line in lines), (stage, lines)
    assert cuda.n_iter_ == 60 and [it for it, _ in cuda.kl_history_] == [50]
    # Same graph and init, but 60 iterations are enough for the float32 descent to drift
    # (see check_same_trajectory); the quality must not. For scale: the CPU alone,
    # from inits perturbed by 1e-7, spans 0.82-0.85 trustworthiness and KL 1.44-1.54
    # on a perplexity-4 fit of these points.
    assert abs(cuda.kl_divergence_ - cpu.kl_divergence_) < 0.1 * cpu.kl_divergence_
    t_cuda, t_cpu = trustworthiness(X, cuda.embedding_, 10), trustworthiness(X, cpu.embedding_, 10)
    a_cuda, a_cpu = knn_accuracy(cuda.embedding_, labels, 10), knn_accuracy(cpu.embedding_, labels, 10)
    assert abs(t_cuda - t_cpu) < 0.03 and a_cuda >= a_cpu - 0.05 and a_cuda > 0.8, (t_cuda, t_cpu, a_cuda, a_cpu)
    placed = cuda.transform(X[:10])  # placed on the CPU against the fitted embedding
    assert placed.shape == (10, 2) and np.isfinite(placed).all()
    print(f"tsne cuda ({repulsion}, {search}): trustworthiness {t_cuda:.4f} vs cpu {t_cpu:.4f}, "
          f"accuracy {a_cuda:.3f} vs {a_cpu:.3f}, KL {cuda.kl_divergence_:.4f} vs {cpu.kl_divergence_:.4f}")


def check_same_trajectory(X: np.ndarray) -> None:
    """Same graph and init: the first 30 iterations (15 exaggerated) follow the CPU's.

    Later the two drift apart, as two float orders of one chaotic descent do.
    """
    params = dict(n_iter=30, perplexity=10.0, random_state=0, precomputed_knn=exact_knn(X, 30))
    cuda = TSNE(backend="cuda", **params).fit(X)
    cpu = TSNE(backend="cpu", **params).fit(X)
    spread = np.ptp(cpu.embedding_, axis=0).max()
    assert np.abs(cuda.embedding_ - cpu.embedding_).max() < 1e-3 * spread
    assert abs(cuda.kl_divergence_ - cpu.kl_divergence_) < 1e-4
    print("tsne cuda follows the cpu trajectory")


def main() -> None:
    check_row_kernels()
    check_repulsion()
    _slim_launches()
    X, labels = make_mixture(150, 10, 3, random_state=0)
    # k = 9 keeps the GPU kNN in the simulator to ~15 s; the other fits pass the graph.
    check_estimator(X, labels, "exact", perplexity=3.0, precomputed=False)
    check_same_trajectory(X)
    # the same 150 points through the grid repulsion on both backends
    cuda_backend.TSNE_EXACT_MAX = cpu_backend.TSNE_EXACT_MAX = 100
    cpu_backend.TSNE_BH_2D_MAX = 0  # the cpu's grid too (small 2-D fits take its Barnes-Hut)
    check_estimator(X, labels, "fft", perplexity=10.0, precomputed=True)
    print("tsne ok")


if __name__ == "__main__":
    main()
