"""Device memory planning of the GPU stages, with a fake device (#16 item 6).

No GPU here: the array module is numpy (or a recording stand-in for cupy) and
``_memory.device_free_bytes`` is patched; every GPU stage reads it through the module,
so the patch reaches them all.
"""

from __future__ import annotations

import numpy as np
import pytest

from embedscope import _memory
from embedscope._memory import DeviceMemoryError, upload_rows


class _RecordingXp:
    """numpy standing in for cupy: records each host-to-device transfer and the pinned-pool release."""

    float32 = np.float32

    def __init__(self) -> None:
        self.transfers: list[int] = []
        self.freed = 0

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def asarray(self, a):
        self.transfers.append(a.nbytes)
        return np.asarray(a)

    def get_default_pinned_memory_pool(self):
        xp = self

        class Pool:
            def free_all_blocks(self) -> None:
                xp.freed += 1

        return Pool()


def test_upload_goes_in_bounded_float32_chunks_and_frees_the_pinned_pool():
    X = np.random.default_rng(0).normal(size=(1000, 30))  # float64
    xp = _RecordingXp()
    out = upload_rows(X, xp, chunk_bytes=16 * 1024)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, X.astype(np.float32))
    assert len(xp.transfers) > 1 and max(xp.transfers) <= 16 * 1024 and xp.freed == 1
    whole = _RecordingXp()
    upload_rows(X, whole, chunk_bytes=2**30)  # negative control: one transfer of everything
    assert whole.transfers == [X.shape[0] * X.shape[1] * 4]


def _fake_device(monkeypatch, free: int, module) -> None:
    monkeypatch.setattr(_memory, "device_free_bytes", lambda: free)
    monkeypatch.setattr(module, "simulated", lambda: False)
    monkeypatch.setattr(module, "device_array_module", lambda: np)


def test_fuzzy_graph_says_what_it_needs_before_allocating(monkeypatch):
    from embedscope.kernels.graph import fuzzy

    n, k = 10_000, 14
    need = fuzzy.fuzzy_graph_bytes(n, k)
    _fake_device(monkeypatch, need - 1, fuzzy)
    idx = np.zeros((n, k), np.int32)
    with pytest.raises(DeviceMemoryError, match=r"fuzzy graph of 10,000 points x 14 neighbours needs .* "
                                                r"free\. .*n_neighbors.*backend='cpu'"):
        fuzzy.fuzzy_simplicial_set_gpu(idx, np.ones((n, k), np.float32), 15)
    _memory.check_fits(need, need, "x", "y")  # negative control: exactly enough passes


def test_tsne_affinities_say_what_they_need_before_allocating(monkeypatch):
    from embedscope.kernels.tsne import affinity_gpu

    n, k = 10_000, 90
    _fake_device(monkeypatch, affinity_gpu.joint_p_bytes(n, k) - 1, affinity_gpu)
    with pytest.raises(DeviceMemoryError, match=r"t-SNE affinities of 10,000 points x 90 neighbours.*perplexity"):
        affinity_gpu.joint_probabilities_gpu(np.zeros((n, k), np.int32), np.ones((n, k), np.float32), n, 30.0)


def test_the_planned_bytes_grow_with_the_graph_and_stay_below_a_host_p():
    from embedscope.kernels.graph.fuzzy import fuzzy_graph_bytes
    from embedscope.kernels.tsne.affinity_gpu import joint_p_bytes

    assert fuzzy_graph_bytes(2000, 14) > 1.9 * fuzzy_graph_bytes(1000, 14)
    # 10M points at perplexity 30: what the device needs, in GiB (an H200 holds ~139)
    assert 50 < joint_p_bytes(10_000_000, 90) / 2**30 < 139


def test_exact_knn_on_a_fake_device_reads_the_patched_free_memory(monkeypatch):
    from embedscope.kernels.knn import gpu as knn_gpu

    _fake_device(monkeypatch, 8 * 2**20, knn_gpu)
    X = np.zeros((10_000, 4096), np.float32)
    with pytest.raises(DeviceMemoryError, match=r"needs at least .* of GPU memory; 8.0 MiB is free"):
        knn_gpu.exact_knn_gpu(X, 15)
    assert not hasattr(knn_gpu, "device_free_bytes")  # read through the module, never bound by name


def test_knn_float64_norms_are_computed_in_bounded_blocks(monkeypatch):
    from embedscope.kernels.knn import gpu as knn_gpu

    monkeypatch.setattr(knn_gpu, "NORM_BLOCK_ROWS", 7)
    X = np.random.default_rng(1).normal(size=(50, 9)).astype(np.float32)
    for metric in ("euclidean", "cosine"):
        rows, sq = knn_gpu._prepare(X, metric, np)
        ref = X / np.linalg.norm(X, axis=1, keepdims=True) if metric == "cosine" else X
        np.testing.assert_allclose(rows, ref, rtol=1e-6)
        np.testing.assert_allclose(sq, (ref.astype(np.float64) ** 2).sum(axis=1), rtol=1e-6)
    monkeypatch.setattr(knn_gpu, "EXACT_BLOCK_ELEMENTS", 40)
    idx = np.array([[1, 2], [0, -1], [4, 3]], np.int32)
    Q, D = X[:3], X[np.maximum(idx, 0)]
    _, got_d = knn_gpu._exact_distances(Q, D, idx, None, np)
    want = np.linalg.norm(Q[:, None, :] - D, axis=2)
    want[1, 1] = np.inf
    order = np.argsort(want, axis=1, kind="stable")
    np.testing.assert_allclose(got_d, np.take_along_axis(want, order, axis=1), rtol=1e-6)


def test_umap_epochs_say_what_they_need_before_allocating(monkeypatch):
    import scipy.sparse as sp

    from embedscope.kernels.umap_sgd import gpu as sgd_gpu

    graph = sp.random(5000, 5000, density=0.003, format="csr", random_state=0, dtype=np.float32)
    need = sgd_gpu.sgd_bytes(5000, 2, graph.nnz)
    _fake_device(monkeypatch, need - 1, sgd_gpu)
    head = np.zeros((5000, 2), np.float32)
    with pytest.raises(DeviceMemoryError, match=r"UMAP's epochs over 75,000 edges needs .*n_neighbors"):
        sgd_gpu.optimize_layout_gpu(head, graph, 10, a=1.6, b=0.9)
    assert sgd_gpu.sgd_bytes(5000, 2, 2 * graph.nnz) > need  # more edges, more bytes
