"""kNN stage: exact search against brute force, NN-descent recall, the shared contract."""

from __future__ import annotations

import numpy as np
import pytest

from embedscope.datasets import make_mixture
from embedscope.kernels.knn import check_metric, exact_knn, nearest_neighbors, nndescent_knn


def brute_force(X: np.ndarray, k: int, metric: str) -> np.ndarray:
    X = X.astype(np.float64)
    if metric == "euclidean":
        D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    elif metric == "cosine":
        norms = np.linalg.norm(X, axis=1)
        U = X / np.where(norms > 0, norms, 1)[:, None]
        D = 1 - U @ U.T
    else:
        D = -(X @ X.T)
    np.fill_diagonal(D, np.inf)
    return np.argsort(D, axis=1, kind="stable")[:, :k]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth, strict=True)]))


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "inner_product"])
def test_exact_matches_brute_force(metric):
    X = np.random.default_rng(0).normal(size=(300, 12)).astype(np.float32)
    idx, dist = exact_knn(X, 7, metric)
    assert recall(idx, brute_force(X, 7, metric)) > 0.999
    assert idx.dtype == np.int32 and dist.dtype == np.float32
    assert np.all(np.diff(dist, axis=1) >= 0)


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "inner_product"])
def test_nndescent_recall_and_contract(metric):
    X, _ = make_mixture(6000, 30, 20, random_state=1)
    truth, _ = exact_knn(X, 14, metric)
    idx, dist = nndescent_knn(X, 14, metric, random_state=0)
    assert idx.shape == (6000, 14) and idx.dtype == np.int32 and dist.dtype == np.float32
    assert recall(idx, truth) >= 0.95
    rows = np.arange(6000)[:, None]
    assert not np.any(idx == rows), "a point is never its own neighbour"
    assert all(len(set(r)) == 14 for r in idx[:500]), "no repeated neighbour in a row"
    assert np.all(np.diff(dist, axis=1) >= 0) and np.all(np.isfinite(dist))
    if metric == "euclidean":  # distances are the true ones for the indices found
        true = np.linalg.norm(X[idx[:50]] - X[:50, None, :], axis=2)
        np.testing.assert_allclose(dist[:50], true, rtol=1e-4, atol=1e-4)


def test_nndescent_negative_control_and_seed():
    X, _ = make_mixture(3000, 20, 10, random_state=2)
    truth, _ = exact_knn(X, 10)
    a, _ = nndescent_knn(X, 10, random_state=5)
    b, _ = nndescent_knn(X, 10, random_state=5)
    np.testing.assert_array_equal(a, b)
    # a random graph scores near zero: the recall measure can fail
    shuffled = np.random.default_rng(0).integers(0, 3000, size=truth.shape)
    assert recall(shuffled, truth) < 0.05


def test_nndescent_tiny_and_degenerate_inputs():
    idx, dist = nndescent_knn(np.random.default_rng(0).normal(size=(5, 3)), 4, random_state=0)
    assert sorted(idx[0]) == [1, 2, 3, 4]
    dup = np.ones((400, 8), dtype=np.float32)  # all identical rows
    idx, dist = nndescent_knn(dup, 5, random_state=0)
    assert np.all(dist == 0) and not np.any(idx == np.arange(400)[:, None])
    zero = np.vstack([np.zeros((50, 8)), np.random.default_rng(1).normal(size=(350, 8))])
    idx, dist = nndescent_knn(zero, 5, "cosine", random_state=0)
    assert np.all(np.isfinite(dist)) and np.all(idx >= 0)


def test_nearest_neighbors_methods_and_errors():
    X, _ = make_mixture(500, 10, 5, random_state=0)
    exact, _ = nearest_neighbors(X, 8)
    forced, _ = nearest_neighbors(X, 8, method="nndescent", random_state=0)
    assert recall(forced, exact) > 0.95
    with pytest.raises(ValueError, match="unknown kNN method"):
        nearest_neighbors(X, 8, method="hnsw")
    with pytest.raises(ValueError, match="unknown metric"):
        nearest_neighbors(X, 8, metric="manhatan")
    with pytest.raises(ValueError, match="k=500"):
        nndescent_knn(X, 500)
    assert check_metric("L2") == "euclidean"


def test_nndescent_widens_its_lists_when_the_sampled_recall_falls_short():
    # Uniform 40-D data is hard for NN-descent: narrow lists converge near 0.8.
    X = np.random.default_rng(0).uniform(size=(4000, 40)).astype(np.float32)
    truth, _ = exact_knn(X, 5)

    def recall(idx):
        return np.mean([len(set(a) & set(b)) / 5 for a, b in zip(idx, truth, strict=True)])

    narrow, _ = nndescent_knn(X, 5, random_state=0, target_recall=None)
    lines = []
    checked, _ = nndescent_knn(X, 5, random_state=0, target_recall=0.95, log=lines.append)
    assert len(lines) == 1 and "lists of 9" in lines[0]
    estimate = float(lines[0].split("~")[1].split()[0])
    assert abs(estimate - recall(narrow)) < 0.05  # the sampled estimate is honest
    assert recall(checked) > recall(narrow) + 0.05


def test_nndescent_stops_early_once_the_sampled_recall_clears_the_target():
    X, _ = make_mixture(20_000, 30, 40, random_state=3)
    truth, _ = exact_knn(X, 14)
    lines = []
    early, _ = nndescent_knn(X, 14, random_state=0, log=lines.append)
    full, _ = nndescent_knn(X, 14, random_state=0, target_recall=None)
    assert len(lines) == 1 and "stopping early" in lines[0]
    assert recall(early, truth) >= 0.95
    assert recall(early, truth) > recall(full, truth) - 0.01
    # the margin is kept: a target it cannot clear early leaves the sweeps to converge
    lines.clear()
    late, _ = nndescent_knn(X, 14, random_state=0, target_recall=0.99, log=lines.append)
    assert not any("stopping early" in line for line in lines)
    np.testing.assert_array_equal(late, full)


def test_nndescent_stops_once_its_sweeps_only_settle_the_last_links(monkeypatch):
    from embedscope.kernels.knn import nndescent

    # two full-dimensional clusters: recall converges near 0.94, in sweeps that change
    # 3%, 0.6%, 0.1% and 0.02% of the links at the end
    X, _ = make_mixture(20_000, 50, 2, random_state=3)
    truth, _ = exact_knn(X, 14)
    changes = []
    sweep = nndescent._join_sweep

    def counted(*args, **kwargs):
        changes.append(sweep(*args, **kwargs))
        return changes[-1]

    monkeypatch.setattr(nndescent, "_join_sweep", counted)
    full, _ = nndescent_knn(X, 14, random_state=0, target_recall=None)
    converged = len(changes)
    # a target that the sampled recall never clears by the early stop's margin (0.03),
    # but does by 0.01 once a sweep changes fewer than 1% of the links
    target = recall(full, truth) - 0.015
    changes.clear()
    lines = []
    settled, _ = nndescent_knn(X, 14, random_state=0, target_recall=target, log=lines.append)
    assert len(lines) == 1 and "stopping early" in lines[0] and "of links changed" in lines[0], lines
    assert len(changes) < converged
    assert recall(settled, truth) >= target
    # negative control: without the settling rule the same target waits for convergence
    monkeypatch.setattr(nndescent, "_TAIL_CHANGES", 0.0)
    changes.clear()
    again, _ = nndescent_knn(X, 14, random_state=0, target_recall=target)
    assert len(changes) == converged
    np.testing.assert_array_equal(again, full)


def test_nndescent_graph_is_the_same_for_any_thread_count_and_update_buffer(monkeypatch):
    # The joins' updates are applied in an order that depends on the thread count and
    # on how often the buffers fill; rows keep the k smallest by (distance, index), so
    # the graph must not. Copies of rows add exact distance ties (40 copies of one
    # point for 10 places at distance 0); those rows mostly settle in the leaf joins,
    # so this checks the buffered rounds and thread split more than the tie rule.
    import numba

    from embedscope.kernels.knn import nndescent

    X, _ = make_mixture(3000, 16, 12, random_state=4)
    X = np.vstack([X, X[:300], np.repeat(X[:1], 40, axis=0)])
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one, d_one = nndescent_knn(X, 10, random_state=3)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two, d_two = nndescent_knn(X, 10, random_state=3)
        # a buffer that fills after one point's join: many emit/apply rounds per sweep
        monkeypatch.setattr(nndescent, "_UPDATE_BUFFER", 1)
        small, _ = nndescent_knn(X, 10, random_state=3)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(d_one, d_two)
    np.testing.assert_array_equal(one, small)
    truth, _ = exact_knn(X, 10)
    assert recall(one, truth) >= 0.95
