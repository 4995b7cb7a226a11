"""GPU twins: logic in numba's CUDA simulator, compilation for real GPUs, parity on one.

Three layers, so a kernel that is wrong or does not compile never lands even though CI
has no GPU:

1. the simulator runs each twin on tiny inputs against its CPU twin (a subprocess,
   since the simulator must be chosen before numba.cuda is imported);
2. every kernel is compiled to PTX for Hopper (sm_90) and Ampere (sm_80) with NVVM,
   which catches typing errors the simulator (plain Python) cannot;
3. on a machine with a GPU, the ``gpu``-marked tests compare twins on real sizes.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedscope._memory import DeviceMemoryError, plan_knn

HERE = Path(__file__).resolve().parent
KERNEL_MODULES = ["embedscope.kernels.knn.cuda", "embedscope.kernels.umap_sgd.cuda",
                  "embedscope.kernels.tsne.cuda", "embedscope.kernels.graph.cuda",
                  "embedscope.kernels.tsne.affinity_cuda", "embedscope.kernels.view_raster_cuda",
                  "embedscope.kernels.umap_sgd.cuda_dens", "embedscope.kernels.pacmap.cuda"]
needs_numba_cuda = pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                                      reason="numba-cuda is not installed")


@needs_numba_cuda
@pytest.mark.parametrize("script", ["knn_check.py", "umap_sgd_check.py", "umap_backend_check.py",
                                    "tsne_check.py", "graph_check.py", "view_raster_check.py",
                                    "umap_dens_check.py", "pacmap_check.py"])
def test_twin_matches_cpu_in_cuda_simulator(script):
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run([sys.executable, str(HERE / "cudasim" / script)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "ok" in proc.stdout


def test_cuda_backend_resolves_to_the_simulator_only_when_asked(monkeypatch):
    from embedscope.backends import BackendUnavailable, probe_cuda, resolve_backend

    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    backend = resolve_backend("cuda")
    assert backend.name == "cuda" and backend.xp is np and "simulator" in backend.device
    assert resolve_backend("auto").name != "cuda" or probe_cuda().ok  # never picked by auto
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "0")
    if not probe_cuda().ok:
        with pytest.raises(BackendUnavailable):
            resolve_backend("cuda")


def _nvvm_available() -> bool:
    from numba import float32

    from embedscope.kernels._cuda import cuda

    def probe(a):
        a[0] = 1.0

    try:
        cuda().compile_ptx(probe, (float32[:],), cc=(9, 0))
    except Exception:
        return False
    return True


@needs_numba_cuda
@pytest.mark.parametrize("module_name", KERNEL_MODULES)
@pytest.mark.parametrize("cc", [(9, 0), (8, 0)])
def test_kernels_compile_to_ptx(module_name, cc):
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        pytest.skip("compilation needs the real numba.cuda, not the simulator")
    if not _nvvm_available():
        if os.environ.get("EMBEDSCOPE_REQUIRE_NVVM"):
            pytest.fail("NVVM is required (EMBEDSCOPE_REQUIRE_NVVM) but numba-cuda cannot compile")
        pytest.skip("NVVM/NVRTC libraries not installed (pip install nvidia-nvvm nvidia-cuda-nvrtc)")
    from embedscope.kernels._cuda import cuda

    module = importlib.import_module(module_name)
    for name, signature in module.SIGNATURES.items():
        ptx, _ = cuda().compile_ptx(getattr(module, name).py_func, signature, cc=cc)
        assert f".target sm_{cc[0]}{cc[1]}" in ptx, name


def test_knn_plan_keeps_data_resident_when_it_fits():
    plan = plan_knn(1_000_000, 1_000_000, 50, 15, free_bytes=100 * 2**30)
    assert plan.resident and plan.data_rows == 1_000_000
    assert plan.query_rows * plan.data_rows * 4 <= 16 * 2**30 + 4 * plan.data_rows * 32
    assert plan.peak_bytes <= 0.8 * 100 * 2**30
    # Enough query rows per launch to fill a 132-SM device many times over (one thread
    # block per row), at 1M and at 10M points.
    assert plan.query_rows >= 4000
    assert plan_knn(10_000_000, 10_000_000, 50, 15, free_bytes=139 * 2**30).query_rows >= 400
    # A small device keeps the block within its budget.
    small = plan_knn(1_000_000, 1_000_000, 50, 15, free_bytes=8 * 2**30)
    assert small.peak_bytes <= 0.8 * 8 * 2**30 and small.query_rows < plan.query_rows


def test_knn_plan_streams_data_larger_than_the_device():
    plan = plan_knn(50_000_000, 1000, 768, 15, free_bytes=16 * 2**30)
    assert not plan.resident and plan.data_rows < 50_000_000
    assert plan.peak_bytes <= 0.8 * 16 * 2**30


def test_knn_plan_says_what_is_needed_when_nothing_fits():
    with pytest.raises(DeviceMemoryError, match=r"needs at least .* of GPU memory; .* is free"):
        plan_knn(10_000, 10_000, 4096, 15, free_bytes=8 * 2**20)


@pytest.mark.gpu
@pytest.mark.parametrize("metric", ["euclidean", "cosine", "inner_product", "correlation", "manhattan",
                                    "chebyshev"])
def test_knn_gpu_parity_on_device(metric):
    from embedscope.datasets import make_mixture
    from embedscope.kernels.knn import exact_knn
    from embedscope.kernels.knn.gpu import exact_knn_gpu

    X, _ = make_mixture(20_000, 50, 20, random_state=0)
    # The reference has one neighbour more: a row whose 15th and 16th neighbours are
    # within rounding may rightly swap them between the two summation orders.
    ref_i, ref_d = exact_knn(X, 16, metric)
    got_i, got_d = exact_knn_gpu(X, 15, metric)
    got_i, got_d = got_i.get(), got_d.get()
    np.testing.assert_allclose(got_d, ref_d[:, :15], rtol=1e-4, atol=1e-4)
    # Rows whose neighbour distances (the 16th included) are all apart by more than
    # float32 rounding of the two BLAS libraries can be compared index by index.
    gap = 1e-5 * float(np.abs(ref_d).max())
    distinct = (np.diff(ref_d, axis=1) > gap).all(axis=1)
    assert distinct.mean() > 0.3
    np.testing.assert_array_equal(got_i[distinct], ref_i[distinct, :15])
    # The rest hold the same neighbour sets up to such a swap at the boundary.
    boundary = ~distinct
    same = [len(set(g) & set(r)) >= 14 for g, r in zip(got_i[boundary], ref_i[boundary, :16], strict=True)]
    assert all(same)


@pytest.mark.gpu
def test_umap_sgd_gpu_matches_cpu_on_device():
    import scipy.sparse as sp

    from embedscope.datasets import make_mixture
    from embedscope.engine.metrics import trustworthiness
    from embedscope.kernels.knn import exact_knn
    from embedscope.kernels.umap_sgd import find_ab_params, optimize_layout
    from embedscope.kernels.umap_sgd.gpu import optimize_layout_gpu

    X, _ = make_mixture(5000, 50, 20, random_state=0)
    idx, _ = exact_knn(X, 14)
    rows = np.repeat(np.arange(len(X)), 14)
    graph = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, idx.ravel())), shape=(len(X), len(X)))
    graph = graph.maximum(graph.T).tocsr()
    start = np.random.default_rng(0).uniform(-10, 10, (len(X), 2)).astype(np.float32)
    a, b = find_ab_params(1.0, 0.1)
    cpu = optimize_layout(start.copy(), graph, 200, a=a, b=b, seed=1)
    gpu = optimize_layout_gpu(start.copy(), graph, 200, a=a, b=b, seed=1).get()
    assert abs(trustworthiness(X, gpu, 15) - trustworthiness(X, cpu, 15)) < 0.01
    one_cpu = optimize_layout(start.copy(), graph, 1, a=a, b=b, seed=1)
    one_gpu = optimize_layout_gpu(start.copy(), graph, 1, a=a, b=b, seed=1).get()
    np.testing.assert_allclose(one_gpu, one_cpu, atol=1e-3)


@pytest.mark.gpu
def test_tsne_gpu_kernels_match_cpu_on_device():
    import cupy

    from embedscope.kernels import tsne as ktsne
    from embedscope.kernels.knn import exact_knn
    from embedscope.kernels.tsne.fft import FFTRepulsion
    from embedscope.kernels.tsne.gpu import FFTRepulsionGPU, attractive_forces_gpu, csr_to_device

    rng = np.random.default_rng(0)
    for scale in (0.01, 1.0, 30.0):  # early (fine boxes) to late (unit boxes) embeddings
        Y = (rng.normal(size=(20_000, 2)) * scale).astype(np.float32)
        Y[:5000] *= 0.1
        twin = FFTRepulsionGPU()
        got, got_z = twin(cupy.asarray(Y))
        # the CPU twin on the grid the GPU twin laid out (with its margin)
        rep, z = FFTRepulsion()._evaluate(Y.astype(np.float64), None, np.array(twin.grid_.lo), *twin.grid_[1:])
        assert np.linalg.norm(got.get() - rep) / np.linalg.norm(rep) < 1e-5
        assert abs(float(got_z[0]) - z) / z < 1e-5
    X = rng.normal(size=(5000, 10)).astype(np.float32)
    idx, dist = exact_knn(X, 90)
    P = ktsne.joint_probabilities(idx, ktsne.conditional_affinities(dist, 30.0)[0], 5000)
    ref = np.empty(Y[:5000].shape)
    ktsne.attractive_forces(P.indptr, P.indices, P.data, Y[:5000].astype(np.float64),
                            Y[:5000].astype(np.float64), 1.0, ref)
    Y_dev = cupy.asarray(Y[:5000])
    out = cupy.empty_like(Y_dev)
    attractive_forces_gpu(csr_to_device(P, cupy), Y_dev, Y_dev, 1.0, out)
    np.testing.assert_allclose(out.get(), ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())


@pytest.mark.gpu
def test_view_grid_gpu_matches_cpu_on_device():
    import cupy

    from embedscope.kernels.view_raster import view_grid, view_grid_gpu

    rng = np.random.default_rng(0)
    n = 2_000_000
    x, y = rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32)
    x[:1000], y[:1000] = x[1000:2000], y[1000:2000]  # ties: the lowest row id wins on both
    codes = rng.integers(-1, 20, n).astype(np.int32)
    palette = rng.uniform(0, 255, (20, 3)).astype(np.float32)
    values = rng.normal(size=n)
    for ranges in (((-4.0, 4.0), (-3.0, 3.0)), ((0.0, 0.3), (0.1, 0.2))):
        ref = view_grid(x, y, *ranges, 800, 600, codes=codes, palette=palette, values=values)
        got = view_grid_gpu(cupy.asarray(x), cupy.asarray(y), *ranges, 800, 600, codes=cupy.asarray(codes),
                            palette=palette, values=cupy.asarray(values))
        # a fused multiply-add on the device may move a point lying on a pixel edge
        assert np.abs(got.count.astype(np.int64) - ref.count).sum() <= 2
        assert (got.index == ref.index).mean() > 0.9999
        np.testing.assert_allclose(got.rgb_sum, ref.rgb_sum, rtol=1e-4, atol=1e-2)
        np.testing.assert_allclose(got.value_sum, ref.value_sum, rtol=1e-6, atol=1e-8)


@pytest.mark.gpu
def test_pacmap_gpu_matches_cpu_on_device():
    from embedscope import PaCMAP
    from embedscope.datasets import make_mixture
    from embedscope.engine.metrics import random_triplet_accuracy, trustworthiness
    from embedscope.kernels.knn import exact_knn, prepare
    from embedscope.kernels.pacmap import sample_pairs
    from embedscope.kernels.pacmap.gpu import sample_pairs_gpu

    X, _ = make_mixture(5000, 50, 20, random_state=0)
    idx, dist = exact_knn(X, 60)
    cpu_pairs = sample_pairs(prepare(X, "euclidean")[0], idx, dist, 0, 10, 5, 20, 3)
    gpu_pairs = sample_pairs_gpu(X, idx, dist, 0, 10, 5, 20, 3)
    for a, b in zip(cpu_pairs, gpu_pairs, strict=True):
        assert np.mean(a == b.get()) > 0.99
    cpu = PaCMAP(backend="cpu", random_state=0).fit_transform(X)
    gpu = PaCMAP(backend="cuda", random_state=0).fit_transform(X)
    assert abs(trustworthiness(X, gpu, 15) - trustworthiness(X, cpu, 15)) < 0.01
    assert abs(random_triplet_accuracy(X, gpu) - random_triplet_accuracy(X, cpu)) < 0.02


def test_row_stack_shim_restores_the_alias(monkeypatch):
    """numpy 2.5 dropped np.row_stack, which numba-cuda 0.30 still needs."""
    from embedscope.kernels import _cuda

    if hasattr(np, "row_stack"):
        monkeypatch.delattr(np, "row_stack")
    _cuda.cuda.cache_clear()
    try:
        if importlib.util.find_spec("numba_cuda") is None:
            with pytest.raises(ImportError):
                _cuda.cuda()
        else:
            _cuda.cuda()
        assert np.row_stack is np.vstack  # noqa: NPY201
    finally:
        _cuda.cuda.cache_clear()
