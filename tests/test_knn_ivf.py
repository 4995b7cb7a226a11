"""IVF-flat approximate kNN: recall against the exact search, the shared contract, wiring.

The index is written against an array module; here it runs on numpy, which tests the
logic the cupy run shares. The selection kernel it uses on cupy is checked in numba's
CUDA simulator, and the ``gpu`` test compares a cupy run on a device.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from embedscope.datasets import make_mixture
from embedscope.kernels.knn import exact_knn
from embedscope.kernels.knn.ivf import default_n_lists, default_n_probe, ivf_knn

METRICS = ["euclidean", "cosine", "inner_product"]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([np.intersect1d(f, t).size / truth.shape[1] for f, t in zip(found, truth, strict=True)]))


def check_contract(idx: np.ndarray, dist: np.ndarray, m: int, k: int, self_join: bool) -> None:
    assert idx.shape == (m, k) and dist.shape == (m, k)
    assert idx.dtype == np.int32 and dist.dtype == np.float32
    assert np.all(idx >= 0), "every row is full"
    assert np.all(np.isfinite(dist))
    step = np.diff(dist, axis=1)
    assert np.all(step >= 0), "rows ascend"
    tied = step == 0
    assert np.all(np.diff(idx, axis=1)[tied] > 0), "ties ordered by index"
    assert all(np.unique(row).size == k for row in idx), "no neighbour twice in a row"
    if self_join:
        assert not np.any(idx == np.arange(m)[:, None]), "a point is never its own neighbour"


def assert_same_as_exact(idx, dist, data, k, metric, queries=None):
    """The exact search's answer, up to float32 rounding between the two BLAS calls.

    Copies of a point have equal distances here but may differ in the last bit in
    the exact search's tiles, which then orders them differently: rows are compared
    index by index only where neighbouring distances (and the k-th and (k+1)-th)
    are apart, and as sets where at least the boundary is.
    """
    ref_i, ref_d = exact_knn(data, k + 1, metric, queries=queries)
    np.testing.assert_allclose(dist, ref_d[:, :k], rtol=1e-5, atol=1e-5)
    gap = 1e-5 * max(1.0, float(np.abs(ref_d).max()))
    apart = np.diff(ref_d, axis=1) > gap
    boundary = apart[:, k - 1]
    distinct = apart.all(axis=1)
    assert distinct.mean() > 0.5
    np.testing.assert_array_equal(idx[distinct], ref_i[distinct, :k])
    assert all(set(a) == set(b) for a, b in zip(idx[boundary], ref_i[boundary, :k], strict=True))


@pytest.fixture(scope="module")
def tricky():
    """Small data with duplicates (distance 0, ties by index) and an all-zero row."""
    X = np.random.default_rng(3).normal(size=(600, 8)).astype(np.float32)
    X[10] = X[20] = X[30] = X[5]
    X[77] = 0.0
    return X


def test_recall_on_a_50d_mixture_with_defaults():
    X, _ = make_mixture(20_000, 50, 20, random_state=0)
    truth, _ = exact_knn(X, 15)
    idx, dist = ivf_knn(X, 15, random_state=0)
    assert default_n_lists(20_000) == 141 and default_n_probe(141) == 12
    check_contract(idx, dist, 20_000, 15, self_join=True)
    assert recall(idx, truth) >= 0.95
    # distances are the true ones of the points found (recomputed, not the gram trick's)
    rows = np.arange(0, 20_000, 97)
    true = np.linalg.norm(X[idx[rows]].astype(np.float64) - X[rows, None, :], axis=2)
    np.testing.assert_allclose(dist[rows], true, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("metric", METRICS)
def test_probing_every_list_is_the_exact_search(tricky, metric):
    X = tricky
    idx, dist = ivf_knn(X, 9, metric, n_lists=12, n_probe=12, random_state=0)
    check_contract(idx, dist, X.shape[0], 9, self_join=True)
    assert_same_as_exact(idx, dist, X, 9, metric)


@pytest.mark.parametrize("metric", METRICS)
def test_queries_against_the_data(tricky, metric):
    X = tricky
    Q = np.random.default_rng(4).normal(size=(40, 8)).astype(np.float32)
    Q[3] = X[5]  # a query equal to four data points: all at distance 0, by index
    idx, dist = ivf_knn(X, 6, metric, queries=Q, n_lists=12, n_probe=12, random_state=0)
    check_contract(idx, dist, 40, 6, self_join=False)
    assert_same_as_exact(idx, dist, X, 6, metric, queries=Q)
    if metric == "euclidean":
        np.testing.assert_array_equal(idx[3, :4], [5, 10, 20, 30])
        assert np.all(dist[3, :4] == 0)
    # approximate probing keeps the contract; k may be all the points
    idx, dist = ivf_knn(X, X.shape[0], metric, queries=Q[:3], n_lists=12, n_probe=2, random_state=0)
    check_contract(idx, dist, 3, X.shape[0], self_join=False)


def test_duplicates_and_zero_rows(tricky):
    X = tricky
    idx, dist = ivf_knn(X, 5, n_lists=24, random_state=0)
    # the four copies find each other first, at distance 0, by index, never themselves
    for row, others in {5: [10, 20, 30], 10: [5, 20, 30], 30: [5, 10, 20]}.items():
        np.testing.assert_array_equal(idx[row, :3], others)
        assert np.all(dist[row, :3] == 0)
    idx, dist = ivf_knn(X, 5, "cosine", n_lists=24, random_state=0)
    np.testing.assert_allclose(dist[77], 1.0)  # the zero row is at distance 1 from all
    assert np.all(dist[idx != 77] <= 2.0) and np.all(dist >= 0)


def test_inner_product_on_a_mixture():
    X, _ = make_mixture(3000, 20, 10, random_state=2)
    truth, _ = exact_knn(X, 10, "inner_product")
    idx, dist = ivf_knn(X, 10, "inner_product", random_state=0)
    check_contract(idx, dist, 3000, 10, self_join=True)
    assert recall(idx, truth) >= 0.95
    assert np.any(dist < 0), "larger products are nearer: distances go negative"
    np.testing.assert_allclose(dist[:20], -np.einsum("ij,ikj->ik", X[:20], X[idx[:20]]), rtol=1e-4, atol=1e-3)


def test_seeded_runs_repeat_and_batches_do_not_matter():
    X, _ = make_mixture(4000, 16, 12, random_state=5)
    a = ivf_knn(X, 10, n_probe=3, random_state=7)
    b = ivf_knn(X, 10, n_probe=3, random_state=7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    # a budget of a few kilobytes splits queries, lists and norms into many small
    # batches; the result may not change
    c = ivf_knn(X, 10, n_probe=3, random_state=7, budget_bytes=64 * 2**10)
    np.testing.assert_array_equal(a[0], c[0])
    np.testing.assert_array_equal(a[1], c[1])
    other = ivf_knn(X, 10, n_probe=3, random_state=8)
    check_contract(*other, 4000, 10, self_join=True)


def test_rows_short_of_candidates_probe_more_lists():
    # 50 lists of ~4 points and one probe leave every row short of 10 candidates
    X = np.random.default_rng(6).normal(size=(200, 4)).astype(np.float32)
    idx, dist = ivf_knn(X, 10, n_lists=50, n_probe=1, random_state=0)
    check_contract(idx, dist, 200, 10, self_join=True)
    ref_i, _ = exact_knn(X, 10)
    assert recall(idx, ref_i) > 0.5
    idx, _ = ivf_knn(X[:3], 2, random_state=0)  # tiny: one list
    np.testing.assert_array_equal(idx, exact_knn(X[:3], 2)[0])


def test_bad_inputs_are_refused_clearly(tricky):
    X = tricky
    with pytest.raises(ValueError, match=r"k=600 neighbours asked of 600 points; k must be between 1 and 599"):
        ivf_knn(X, 600)
    with pytest.raises(ValueError, match="k must be between 1 and"):
        ivf_knn(X, 0)
    with pytest.raises(ValueError, match=r"unknown metric 'nope'; choose one of euclidean, cosine"):
        ivf_knn(X, 5, "nope")
    with pytest.raises(ValueError, match=r"the IVF search has no metric='manhattan'; it supports euclidean, cosine, "
                                         r"inner_product"):
        ivf_knn(X, 5, "manhattan")
    with pytest.raises(ValueError, match=r"queries have shape \(3, 5\); expected \(m, 8\)"):
        ivf_knn(X, 5, queries=np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="n_lists=601 must be between 1 and the number of points"):
        ivf_knn(X, 5, n_lists=601)
    with pytest.raises(ValueError, match="n_probe=0 must be at least 1"):
        ivf_knn(X, 5, n_probe=0)
    with pytest.raises(ValueError, match="2-D"):
        ivf_knn(X[0], 5)


@pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None, reason="numba-cuda is not installed")
def test_selection_kernel_path_matches_in_cuda_simulator():
    # The cupy run reduces each list's distance block with knn.gpu's kernel; the
    # simulator runs that path (on numpy arrays) against the array-op one.
    code = textwrap.dedent("""
        import numpy as np
        from embedscope.kernels.knn.ivf import ivf_knn
        X = np.random.default_rng(0).normal(size=(36, 5)).astype(np.float32)
        X[7] = X[3]
        X[8] = 0.0
        Q = np.random.default_rng(1).normal(size=(5, 5)).astype(np.float32)
        for metric, queries in (("euclidean", None), ("euclidean", Q), ("cosine", None),
                                ("inner_product", Q)):
            args = dict(queries=queries, n_lists=4, n_probe=2, random_state=0)
            ref = ivf_knn(X, 3, metric, use_kernel=False, **args)
            got = ivf_knn(X, 3, metric, use_kernel=True, **args)
            np.testing.assert_array_equal(got[0], ref[0], err_msg=metric)
            np.testing.assert_allclose(got[1], ref[1], rtol=1e-6, atol=1e-6, err_msg=metric)
        print("ivf kernel path ok")
    """)
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "ivf kernel path ok" in proc.stdout


# ----------------------------------------------------------------------------- UMAP wiring

def test_umap_cuda_picks_ivf_above_the_threshold_and_when_asked(monkeypatch):
    from embedscope.backends import cuda as cuda_backend

    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")  # the cuda kNN then runs on numpy
    calls = []

    def fake_ivf(data, k, metric, **kwargs):
        calls.append(("ivf", kwargs.get("queries") is None))
        return exact_knn(data, k, metric, queries=kwargs.get("queries"))

    def fake_exact(data, k, metric, queries=None, metric_kwds=None):
        calls.append(("exact", queries is None))
        return exact_knn(data, k, metric, queries=queries)

    monkeypatch.setattr("embedscope.kernels.knn.ivf.ivf_knn", fake_ivf)
    monkeypatch.setattr("embedscope.kernels.knn.gpu.exact_knn_gpu", fake_exact)
    knn = cuda_backend.kernels().knn
    X, _ = make_mixture(300, 8, 3, random_state=0)
    knn(X, 5, "euclidean")
    knn(X, 5, "euclidean", method="ivf")
    monkeypatch.setattr(cuda_backend, "GPU_EXACT_MAX_POINTS", 200)
    knn(X, 5, "euclidean")
    knn(X, 5, "euclidean", queries=X[:4])  # transform stays exact
    assert calls == [("exact", True), ("ivf", True), ("ivf", True), ("exact", False)]
    kernels = cuda_backend.kernels()
    assert kernels.knn_label("auto", 300) == "ivf on cuda" and kernels.knn_label("exact", 300) == "exact on cuda"


def test_umap_cuda_ivf_runs_the_real_search(monkeypatch):
    from embedscope.backends import cuda as cuda_backend

    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    X, _ = make_mixture(1000, 10, 5, random_state=0)
    idx, dist = cuda_backend.kernels().knn(X, 8, "euclidean", method="ivf", seed=3)
    check_contract(idx, dist, 1000, 8, self_join=True)
    assert recall(idx, exact_knn(X, 8)[0]) >= 0.95


def test_umap_cpu_refuses_ivf():
    from embedscope import UMAP
    from embedscope.backends import Unsupported

    X, _ = make_mixture(200, 5, 2, random_state=0)
    with pytest.raises(Unsupported, match=r"knn_method='ivf' is the GPU approximate search.*'nndescent'"):
        UMAP(backend="cpu", knn_method="ivf").fit(X)


# ----------------------------------------------------------------------------- on a device

@pytest.mark.gpu
@pytest.mark.parametrize("metric", METRICS)
def test_cupy_run_matches_recall_and_contract_on_device(metric):
    import cupy

    X, _ = make_mixture(20_000, 50, 20, random_state=0)
    truth, _ = exact_knn(X, 15, metric)
    got_i, got_d = ivf_knn(cupy.asarray(X), 15, metric, random_state=0)
    assert isinstance(got_i, cupy.ndarray) and isinstance(got_d, cupy.ndarray)
    idx, dist = got_i.get(), got_d.get()
    check_contract(idx, dist, 20_000, 15, self_join=True)
    assert recall(idx, truth) >= 0.95
    # the same index on the host: the two runs share every step but BLAS rounding
    ref_i, _ = ivf_knn(X, 15, metric, random_state=0)
    assert recall(idx, ref_i) >= 0.99
    # exhaustive probing is the exact search, on the device too
    Q = X[:500]
    full_i, full_d = ivf_knn(cupy.asarray(X), 15, metric, queries=cupy.asarray(Q), n_lists=50,
                             n_probe=50, random_state=0)
    ref_i, ref_d = exact_knn(X, 15, metric, queries=Q)
    np.testing.assert_allclose(full_d.get(), ref_d, rtol=1e-4, atol=1e-4)
    assert recall(full_i.get(), ref_i) >= 0.999
