"""Device graph stages written against an array module, run here with numpy (#16).

The fuzzy union and t-SNE's ``P + P.T`` by sorted pair keys
(:mod:`embedscope.kernels.graph.union`) and the spectral layout with the graph's own
eigensolver (:mod:`embedscope.kernels.graph.spectral`) are the code the cuda backend
runs with cupy; here they run with numpy against the scipy host twins. The numba.cuda
kernels in front of them are checked in the CUDA simulator (tests/cudasim/graph_check.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from embedscope import UMAP, make_mixture
from embedscope.backends import get_spec
from embedscope.engine import stages
from embedscope.kernels import affinity
from embedscope.kernels import tsne as ktsne
from embedscope.kernels.graph import as_csr, csr_to_host, symmetrise, symmetrise_knn
from embedscope.kernels.graph.spectral import SpectralFailed, spectral_layout_xp
from embedscope.kernels.knn import exact_knn


@pytest.fixture(scope="module")
def knn_2k():
    X, _ = make_mixture(2000, 8, 4, random_state=0)
    idx, dist = exact_knn(X, 14)
    idx[3, 5] = -1          # a missing neighbour
    idx[7, 2] = idx[7, 1]   # a repeated one (summed, as scipy does)
    return idx, dist


def _directed(idx, dist, n_neighbors=15):
    sig, rho = affinity.smooth_knn_dist(np.ascontiguousarray(dist), float(np.log2(n_neighbors)), False)
    return affinity.membership_strengths(np.ascontiguousarray(dist), sig, rho)


def test_fuzzy_union_by_sorted_keys_equals_the_scipy_graph(knn_2k):
    idx, dist = knn_2k
    n = idx.shape[0]
    ref, _, _ = affinity.fuzzy_simplicial_set(idx, dist, 15)
    rows = np.repeat(np.arange(n), idx.shape[1])
    indptr, indices, data = symmetrise(rows, idx, _directed(idx, dist), n, "fuzzy")
    assert indptr.dtype == np.int64 and indices.dtype == np.int32 and data.dtype == np.float32
    np.testing.assert_array_equal(indptr, ref.indptr)
    np.testing.assert_array_equal(indices, ref.indices)
    np.testing.assert_allclose(data, ref.data, rtol=1e-6, atol=1e-7)
    for got, want in zip(symmetrise_knn(idx, _directed(idx, dist), "fuzzy"), (indptr, indices, data), strict=True):
        np.testing.assert_array_equal(got, want)
    # negative control: the plain sum is another graph on the same edges
    _, _, summed = symmetrise(rows, idx, _directed(idx, dist), n, "sum")
    assert np.abs(summed - ref.data).max() > 0.1


def test_joint_p_by_sorted_keys_equals_the_scipy_joint_p(knn_2k):
    idx, dist = knn_2k
    n = idx.shape[0]
    clean = np.where(idx < 0, np.arange(n)[:, None], idx)
    cond, _ = ktsne.conditional_affinities(dist, 10.0)
    cond = np.where(idx < 0, 0.0, cond).astype(np.float32)
    ref = ktsne.joint_probabilities(clean, cond, n)
    indptr, indices, data = symmetrise(np.repeat(np.arange(n), idx.shape[1]), idx, cond, n, "sum")
    data = (data / data.sum(dtype=np.float64)).astype(np.float32)
    np.testing.assert_array_equal(indptr, ref.indptr)
    np.testing.assert_array_equal(indices, ref.indices)
    np.testing.assert_allclose(data, ref.data, rtol=1e-5, atol=1e-12)
    # negative control: an unsymmetrised P differs
    one_way = sp.csr_matrix((cond.ravel(), (np.repeat(np.arange(n), idx.shape[1]), clean.ravel())), shape=(n, n))
    assert one_way.nnz != ref.nnz


def test_union_of_an_empty_or_self_only_graph_is_empty():
    indptr, indices, data = symmetrise(np.arange(4), np.arange(4), np.ones(4, np.float32), 4)
    assert indices.size == 0 and data.size == 0 and indptr.tolist() == [0] * 5
    with pytest.raises(ValueError, match="combine"):
        symmetrise(np.arange(4), np.arange(4), np.ones(4), 4, "max")


def _subspace_match(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest cosine between the column spans (1: the same subspace)."""
    qa, _ = np.linalg.qr(a.astype(np.float64))
    qb, _ = np.linalg.qr(b.astype(np.float64))
    return float(np.linalg.svd(qa.T @ qb, compute_uv=False).min())


@pytest.mark.parametrize("n", [300, 2500])  # dense eigh, then the sparse solver
def test_spectral_layout_xp_matches_the_host_spectral_layout(n):
    X, _ = make_mixture(n, 6, 1, random_state=1)
    idx, dist = exact_knn(X, 10)
    graph, _, _ = affinity.fuzzy_simplicial_set(idx, dist, 11)
    ref = stages.spectral_layout(graph, 2, seed=0)
    got = spectral_layout_xp(graph, 2, seed=0)
    assert got.dtype == np.float32 and got.shape == (n, 2)
    assert _subspace_match(got, ref) > 0.99
    noise = np.random.default_rng(0).normal(size=ref.shape)
    assert _subspace_match(noise, ref) < 0.5  # negative control


def test_spectral_layout_xp_refuses_a_disconnected_graph():
    block = sp.random(50, 50, density=0.3, random_state=0)
    block = (block + block.T).tocsr()
    graph = sp.block_diag([block, block]).tocsr()
    with pytest.raises(SpectralFailed, match="2 disconnected components"):
        spectral_layout_xp(graph, 2)


def test_initial_layout_solves_a_device_graph_with_its_solver_and_falls_back(monkeypatch):
    X, _ = make_mixture(400, 6, 1, random_state=2)
    idx, dist = exact_knn(X, 10)
    graph, _, _ = affinity.fuzzy_simplicial_set(idx, dist, 11)
    calls = []
    monkeypatch.setattr(stages, "is_device_csr", lambda g: True)  # as if graph were a cupyx matrix
    import embedscope.kernels.graph.spectral as spectral

    real = spectral.spectral_layout_xp
    monkeypatch.setattr(spectral, "spectral_layout_xp", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    layout, used = stages.initial_layout("spectral", 2, graph=graph, data=X, seed=0)
    assert used == "spectral" and calls and layout.shape == (400, 2)
    monkeypatch.setattr(stages, "SPECTRAL_MAX_POINTS_DEVICE", 100)
    lines = []
    layout, used = stages.initial_layout("spectral", 2, graph=graph, data=X, seed=0, log=lines.append)
    assert used.startswith("pca (spectral fallback: 400 points exceed the GPU spectral limit")
    assert lines and "using PCA init" in lines[0]


def test_kernel_tables_carry_the_graph_builders():
    cpu = get_spec("cpu").kernel_table()
    assert cpu.fuzzy_graph is not None and cpu.tsne_affinities is not None
    cuda = get_spec("cuda").kernel_table()  # loads no CUDA: the entries import lazily
    assert cuda.fuzzy_graph is not None and cuda.tsne_affinities is not None
    X, _ = make_mixture(300, 5, 3, random_state=0)
    umap = UMAP(n_epochs=5, random_state=0, backend="cpu").fit(X)
    ref, _, _ = affinity.fuzzy_simplicial_set(umap.knn_indices_, umap.knn_distances_, 15)
    assert (abs(umap.graph_ - ref)).max() == 0
    assert csr_to_host(as_csr(ref.indptr, ref.indices, ref.data, 300)).nnz == ref.nnz


# ----------------------------------------------------------------------------- on a GPU


@pytest.fixture(scope="module")
def knn_20k():
    X, _ = make_mixture(20_000, 20, 10, random_state=0)
    return X, *exact_knn(X, 29)


@pytest.mark.gpu
def test_fuzzy_graph_gpu_matches_cpu_on_device(knn_20k):
    from embedscope.kernels.graph.fuzzy import fuzzy_simplicial_set_gpu

    _, idx, dist = knn_20k
    ref, _, _ = affinity.fuzzy_simplicial_set(idx, dist, 30)
    got = csr_to_host(fuzzy_simplicial_set_gpu(idx, dist, 30)[0])
    np.testing.assert_array_equal(got.indptr, ref.indptr)
    np.testing.assert_array_equal(got.indices, ref.indices)
    np.testing.assert_allclose(got.data, ref.data, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_joint_p_gpu_matches_cpu_on_device(knn_20k):
    from embedscope.kernels.tsne.affinity_gpu import joint_probabilities_gpu

    _, idx, dist = knn_20k
    ref, missed_ref = ktsne.knn_joint_probabilities(idx, dist, len(idx), 9.0)
    P, missed = joint_probabilities_gpu(idx, dist, len(idx), 9.0)
    assert missed == missed_ref
    np.testing.assert_array_equal(P.indptr.get(), ref.indptr)
    np.testing.assert_array_equal(P.indices.get(), ref.indices)
    np.testing.assert_allclose(P.data.get(), ref.data, rtol=1e-4, atol=1e-10)


@pytest.mark.gpu
def test_spectral_layout_on_device_matches_the_host(knn_20k):
    from embedscope.kernels.graph.fuzzy import fuzzy_simplicial_set_gpu

    _, idx, dist = knn_20k
    graph = fuzzy_simplicial_set_gpu(idx, dist, 30)[0]
    ref = stages.spectral_layout(csr_to_host(graph), 2, seed=0)
    got = spectral_layout_xp(graph, 2, seed=0).get()
    assert _subspace_match(got, ref) > 0.99


@pytest.mark.gpu
def test_umap_on_cuda_builds_the_graph_and_init_on_the_device(knn_20k):
    X, _, _ = knn_20k
    umap = UMAP(n_neighbors=30, n_epochs=50, random_state=0, backend="cuda").fit(X)
    ref, _, _ = affinity.fuzzy_simplicial_set(umap.knn_indices_, umap.knn_distances_, 30)
    assert sp.issparse(umap.graph_) and umap.init_used_ == "spectral"
    assert abs(umap.graph_ - ref).max() < 1e-5


@pytest.mark.gpu
def test_upload_rows_on_device_frees_the_pinned_pool():
    import cupy

    from embedscope._memory import upload_rows

    X = np.random.default_rng(0).normal(size=(200_000, 100))  # 160 MB of float64
    out = upload_rows(X, cupy, chunk_bytes=16 * 2**20)
    assert out.dtype == cupy.float32 and cupy.allclose(out, cupy.asarray(X, dtype=cupy.float32))
    assert cupy.get_default_pinned_memory_pool().n_free_blocks() == 0
