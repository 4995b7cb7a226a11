"""PaCMAP (issue #17): quality with negative controls, seeds, 3-D, transform, bad input, wiring."""

from __future__ import annotations

import numpy as np
import pytest

import embedscope as es
from embedscope import PaCMAP, Unsupported
from embedscope.engine.base import GRAPH_STAGES
from embedscope.errors import DataError
from embedscope.kernels.pacmap import (
    further_pairs,
    neighbor_pairs,
    sample_pairs,
    scale_sigmas,
    symmetric_lists,
    weights,
)

FAST = {"n_iters": (60, 60, 120)}


@pytest.fixture(scope="module")
def mixture():
    return es.make_mixture(1500, 20, 6, random_state=0)


@pytest.fixture(scope="module")
def fitted(mixture):
    X, _ = mixture
    return PaCMAP(random_state=0, backend="cpu", **FAST).fit(X)


def _knn_sets(A, B, k):
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=k).fit(A).kneighbors(B, return_distance=False)


def test_quality_floor_with_random_layout_control(mixture, fitted):
    X, labels = mixture
    Y = fitted.embedding_
    assert Y.shape == (1500, 2) and Y.dtype == np.float32 and np.isfinite(Y).all()
    trust = es.trustworthiness(X, Y, 15)
    triplets = es.random_triplet_accuracy(X, Y)
    label_acc = es.knn_accuracy(Y, labels, 15)
    control = np.random.default_rng(0).normal(size=Y.shape)
    assert trust > 0.88 and triplets > 0.7 and label_acc > 0.95, (trust, triplets, label_acc)
    assert es.trustworthiness(X, control, 15) < 0.6 and es.random_triplet_accuracy(X, control) < 0.6
    assert tuple(fitted.timings_) == GRAPH_STAGES
    assert fitted.backend_ == "cpu" and fitted.n_iters_ == (60, 60, 120)
    assert (fitted.n_mid_near_, fitted.n_further_) == (5, 20)


def test_seeded_runs_repeat_across_thread_counts_and_seeds_differ(mixture, monkeypatch):
    import numba

    from embedscope.kernels.pacmap import cpu

    monkeypatch.setattr(cpu, "SERIAL_BELOW", 0)  # the parallel kernel, even on small data
    X, _ = mixture
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = PaCMAP(random_state=3, backend="cpu", n_iters=(20, 20, 20)).fit_transform(X[:600])
        numba.set_num_threads(before)
        many = PaCMAP(random_state=3, backend="cpu", n_iters=(20, 20, 20)).fit_transform(X[:600])
        other = PaCMAP(random_state=4, backend="cpu", n_iters=(20, 20, 20)).fit_transform(X[:600])
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, many)
    assert not np.array_equal(one, other)  # the control: another seed, another layout
    serial = PaCMAP(random_state=3, backend="cpu", n_iters=(20, 20, 20))
    monkeypatch.setattr(cpu, "SERIAL_BELOW", 10**9)
    np.testing.assert_allclose(serial.fit_transform(X[:600]), one, atol=1e-4)  # the one-thread kernel agrees


def test_relabelled_fit_is_the_same_layout_in_input_order(mixture, monkeypatch):
    # Large fits relabel their points by layout position (kernels.locality): each
    # point's sums keep their terms and order, so the layout is the same to the bit.
    from embedscope.kernels.pacmap import cpu

    X, _ = mixture
    plain = PaCMAP(random_state=3, backend="cpu", n_iters=(20, 20, 20)).fit_transform(X[:800])
    monkeypatch.setattr(cpu, "REORDER_MIN", 1)
    monkeypatch.setattr(cpu, "REORDER_AT", frozenset({0, 7, 30}))
    orders = []
    real = cpu.locality_order
    monkeypatch.setattr(cpu, "locality_order", lambda y: orders.append(real(y)) or orders[-1])
    seen = []
    est = PaCMAP(random_state=3, backend="cpu", n_iters=(20, 20, 20),
                 callback=lambda it, total, Y: seen.append(np.array(Y)) and False)
    relabelled = est.fit_transform(X[:800])
    np.testing.assert_array_equal(relabelled, plain)
    np.testing.assert_array_equal(seen[-1], plain)
    # the control: the labels really moved (three times, none the identity)
    assert len(orders) == 3 and not any(np.array_equal(o, np.arange(800)) for o in orders)
    # the kernel's own contract: a list's arrays are replaced (the old ones can be
    # freed), a tuple is left alone; both give the same layout
    rng = np.random.default_rng(0)
    n = 300
    layout = rng.normal(size=(n, 2)).astype(np.float32)
    pairs = []
    for per in (5, 3, 8):
        pairs += [np.arange(0, n * per + 1, per, dtype=np.int64), rng.integers(0, n, n * per).astype(np.int32)]
    as_tuple = tuple(a.copy() for a in pairs)
    as_list = [a.copy() for a in pairs]
    originals = list(as_list)  # held here, so no new array can reuse an old one's address
    a = cpu.optimize_layout(layout, as_tuple, (5, 5, 5))
    b = cpu.optimize_layout(layout, as_list, (5, 5, 5))
    np.testing.assert_array_equal(a, b)
    assert all(np.array_equal(x, y) for x, y in zip(as_tuple, pairs, strict=True))
    assert all(x is not o for x, o in zip(as_list, originals, strict=True))


def test_three_components_random_init_and_array_init(mixture):
    X, _ = mixture
    Y3 = PaCMAP(n_components=3, init="random", random_state=0, **FAST).fit_transform(X[:800])
    assert Y3.shape == (800, 3) and np.isfinite(Y3).all()
    assert es.trustworthiness(X[:800], Y3, 15) > 0.85
    start = np.random.default_rng(0).normal(scale=0.01, size=(800, 2))
    Y = PaCMAP(init=start, random_state=0, n_iters=(0, 0, 0)).fit_transform(X[:800])
    np.testing.assert_allclose(Y, start.astype(np.float32))


def test_int_n_iters_is_the_third_phase_as_in_the_package(mixture):
    X, _ = mixture
    seen = []
    PaCMAP(n_iters=5, random_state=0, callback=lambda i, total, Y: seen.append((i, total, Y.shape))
           ).fit(X[:300])
    assert seen[0] == (1, 205, (300, 2)) and seen[-1][0] == 205 and len(seen) == 205


def test_transform_places_held_out_points_near_their_neighbours(mixture):
    X, labels = mixture
    train, test = X[:1200], X[1200:]
    est = PaCMAP(random_state=0, **FAST).fit(train)
    placed = est.transform(test)
    assert placed.shape == (300, 2) and np.isfinite(placed).all()

    def agreement(Y_new):
        data = _knn_sets(train, test, 10)
        layout = _knn_sets(est.embedding_, Y_new, 10)
        return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(data, layout, strict=True)])

    # the ceiling: how well the fitted points themselves keep their 10-NN
    own = np.mean([len(set(a[1:]) & set(b[1:])) / 10 for a, b in
                   zip(_knn_sets(train, train[:300], 11), _knn_sets(est.embedding_, est.embedding_[:300], 11),
                       strict=True)])
    lo, hi = est.embedding_.min(axis=0), est.embedding_.max(axis=0)
    control = np.random.default_rng(0).uniform(lo, hi, size=placed.shape)
    got, chance = agreement(placed), agreement(control)
    assert got > 0.5 * own and got > 10 * max(chance, 0.005), (got, own, chance)
    nearest = _knn_sets(est.embedding_, placed, 1)[:, 0]
    assert np.mean(labels[:1200][nearest] == labels[1200:]) > 0.95


def test_duplicates_and_cosine_give_finite_layouts():
    rng = np.random.default_rng(0)
    X = np.vstack([np.repeat(rng.normal(size=(5, 8)), 60, axis=0), rng.normal(size=(100, 8))])
    Y = PaCMAP(random_state=0, n_iters=(30, 30, 30)).fit_transform(X)
    assert np.isfinite(Y).all()
    Z = np.vstack([np.zeros((20, 8)), rng.normal(size=(200, 8))])
    Y = PaCMAP(metric="angular", random_state=0, n_iters=(30, 30, 30)).fit_transform(Z)
    assert np.isfinite(Y).all()
    Y = PaCMAP(metric="inner_product", random_state=0, n_iters=(30, 30, 30)).fit_transform(Z)
    assert np.isfinite(Y).all()


def test_bad_input_is_one_named_error():
    X = np.random.default_rng(0).normal(size=(50, 5))
    cases = {
        "n_neighbors": dict(n_neighbors=0),
        "n_components": dict(n_components=0),
        "MN_ratio": dict(MN_ratio=-1.0),
        "FP_ratio": dict(FP_ratio=float("nan")),
        "metric": dict(metric="chebyshev-ish"),
        "n_iters": dict(n_iters=(1, 2)),
        "learning_rate": dict(learning_rate=0.0),
        "init": dict(init="spectral"),
        "random_state": dict(random_state=-1),
        "callback": dict(callback=3),
    }
    for name, params in cases.items():
        with pytest.raises(ValueError, match=name):
            PaCMAP(**params).fit(X)
    with pytest.raises(ValueError, match="init array"):
        PaCMAP(init=np.zeros((3, 2))).fit(X)
    with pytest.raises(ValueError, match=r"n_neighbors=10 needs at least 12 points"):
        PaCMAP().fit(X[:11])
    PaCMAP(n_iters=(5, 5, 5)).fit(X[:12])  # the smallest that works
    for bad in (np.nan, np.inf):
        Xb = X.copy()
        Xb[3, 2] = bad
        with pytest.raises(DataError, match="NaN or inf"):
            PaCMAP().fit(Xb)
    with pytest.raises(DataError, match="identical"):
        PaCMAP().fit(np.ones((40, 3)))
    with pytest.raises(AttributeError, match="not fitted"):
        PaCMAP().transform(X)
    est = PaCMAP(n_iters=(5, 5, 5), random_state=0).fit(X)
    with pytest.raises(ValueError, match="features"):
        est.transform(X[:, :3])


def test_cuml_refuses_pacmap_and_auto_passes_over_it():
    from embedscope.backends import get_spec, resolve_backend

    est = PaCMAP()
    with pytest.raises(Unsupported, match=r"cuML has no PaCMAP \(rapidsai/cuml#4726\)"):
        resolve_backend("cuml", est._request(100))
    picked = resolve_backend("auto", est._request(100))
    assert picked.name != "cuml"
    assert ("cuml", get_spec("cuml").capabilities.hints["reducer=pacmap"]) in picked.considered
    # a request over the GPU search's k names PaCMAP's own limit
    refusal = get_spec("cuda").refusal(PaCMAP(n_neighbors=100)._request(10_000))
    assert refusal is not None and "n_neighbors <= 78" in refusal


def test_pair_kernels_follow_the_paper():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)).astype(np.float32)
    from embedscope.kernels.knn import exact_knn

    idx, dist = exact_knn(X, 30)
    sig = scale_sigmas(dist)
    np.testing.assert_allclose(sig, dist[:, 3:6].mean(axis=1), rtol=1e-6)
    near = neighbor_pairs(idx, dist, sig, 5, True, np.empty((200, 5), np.int32))
    scaled = dist**2 / (sig[:, None] * sig[idx])
    expect = np.take_along_axis(idx, np.argsort(scaled, axis=1, kind="stable")[:, :5], axis=1)
    np.testing.assert_array_equal(near, expect)
    assert not np.array_equal(near, idx[:, :5])  # scaling changes the choice (the control)
    nb, mn, fp = sample_pairs(X, idx, dist, 0, 5, 3, 8, 7)
    assert (fp != np.arange(200)[:, None]).all()
    assert not any(set(fp[i]) & set(nb[i]) for i in range(200))
    assert (mn != np.arange(200)[:, None]).all() and (mn >= 0).all()
    # mid-near pairs lie between near pairs and random ones
    d = lambda a, b: np.linalg.norm(X[a] - X[b], axis=-1)  # noqa: E731
    rows = np.arange(200)[:, None]
    assert d(rows, nb).mean() < d(rows, mn).mean() < d(rows, fp).mean()
    again = further_pairs(nb, 200, 8, np.uint64(7), True, np.empty((200, 8), np.int32))
    np.testing.assert_array_equal(again, fp)
    indptr, partners = symmetric_lists(nb)
    assert indptr[-1] == 2 * nb.size and partners[indptr[3]:indptr[3] + 5].tolist() == nb[3].tolist()
    assert weights(0, (100, 100, 250)) == (2.0, 1000.0, 1.0)
    assert weights(50, (100, 100, 250))[1] == pytest.approx(501.5)
    assert weights(150, (100, 100, 250)) == (3.0, 3.0, 1.0) and weights(449, (100, 100, 250)) == (1.0, 0.0, 1.0)


def test_reduce_and_cli(tmp_path, capsys):
    import pandas as pd

    from embedscope.cli import main

    X, _ = es.make_mixture(300, 6, 3, random_state=0)
    Y = es.reduce(X, "pacmap", n_iters=(10, 10, 10), random_state=0)
    assert Y.shape == (300, 2)
    out = tmp_path / "c.parquet"
    assert main(["reduce", "builtin:mixture:400x8", "--method", "pacmap", "--n-neighbors", "8",
                 "--param", "n_iters=[10,10,10]", "--random-state", "0", "--out", str(out)]) == 0
    assert len(pd.read_parquet(out)) == 400
    assert "PaCMAP" in capsys.readouterr().err


def test_bench_and_serve_know_pacmap(monkeypatch):
    import argparse
    import importlib.util

    from embedscope.bench import impls
    from embedscope.bench.runner import plan_jobs
    from embedscope.viz.cli import register

    labels = [j.label for j in plan_jobs(["pacmap"], ["cpu"], ["pacmap"])]
    assert labels == ["pacmap / embedscope[cpu]", "pacmap / pacmap"]
    assert [j.label for j in plan_jobs(["umap"], ["cpu"], ["pacmap"])] == ["umap / embedscope[cpu]"]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pacmap" else real(name, *a))
    assert impls.peer_missing("pacmap") == "pacmap is not installed (pip install pacmap)"
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["serve", "v.npy", "--method", "pacmap"]).method == "pacmap"


def test_every_knn_metric_reaches_the_pairs():
    """PaCMAP takes the kNN search's metrics (with metric_kwds); the quality in each
    metric beats a random layout's, and the manhattan layout differs from the euclidean."""
    from embedscope.datasets import make_mixture

    X, _ = make_mixture(1000, 12, 8, random_state=1)
    noise = np.random.default_rng(0).normal(size=(1000, 2))
    layouts = {}
    for metric, kwds in (("manhattan", None), ("minkowski", {"p": 3}), ("correlation", None)):
        Y = es.PaCMAP(metric=metric, metric_kwds=kwds, random_state=0, n_iters=(50, 50, 100)).fit_transform(X)
        layouts[metric] = Y
        assert np.isfinite(Y).all()
        trust = es.trustworthiness(X, Y, 15, metric=metric, metric_kwds=kwds)
        assert trust > es.trustworthiness(X, noise, 15, metric=metric, metric_kwds=kwds) + 0.2
    euclid = es.PaCMAP(random_state=0, n_iters=(50, 50, 100)).fit_transform(X)
    assert not np.allclose(euclid, layouts["manhattan"])
    with pytest.raises(ValueError, match="needs vectors"):
        es.PaCMAP(metric="precomputed").fit(np.zeros((30, 30)))
    with pytest.raises(ValueError, match="p"):
        es.PaCMAP(metric="minkowski", metric_kwds={"p": 0.5}).fit(X)
