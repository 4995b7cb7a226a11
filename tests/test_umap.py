"""UMAP: quality floors, negative controls, transform, seeds, bad input; every backend.

Tests taking the ``backend`` fixture run on every registered backend that can run here
(cpu; cuda and cuml on a GPU machine, where they carry the ``gpu`` mark); the CPU
tests pin backend="cpu" where they compare with exact CPU numbers, the others run on
whatever "auto" picks. The cuda backend is also checked end to end in numba's CUDA
simulator by tests/cudasim/umap_backend_check.py.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from embedscope import (
    UMAP,
    DataError,
    Unsupported,
    knn_accuracy,
    make_mixture,
    reduce,
    trustworthiness,
)
from embedscope._array import array_module
from embedscope.backends import get_spec
from embedscope.engine.base import GRAPH_STAGES
from embedscope.engine.stages import initial_layout, spectral_layout
from embedscope.kernels.affinity import fuzzy_simplicial_set
from embedscope.kernels.knn import exact_knn
from embedscope.kernels.umap_sgd import find_ab_params
from tests.conftest import gpu_modules_loaded_by, host

# umap-learn 0.5.12, UMAP(random_state=0).fit_transform(X) on the mixture_5k fixture
# (make_mixture(5000, 50, 20, random_state=0)): trustworthiness@15 = 0.9786
# (command: the script in benchmarks/umap_cpu.py's docstring, "floors" section).
MIXTURE_FLOOR = 0.9786 - 0.02
# umap-learn 0.5.12, UMAP(random_state=0, metric="cosine") on the 30,000 word vectors:
# trustworthiness@15 (cosine) = 0.7732; with our exact kNN graph fed in 0.7696.
WORDS_FLOOR = 0.7732 - 0.02


@pytest.fixture(scope="module")
def small():
    return make_mixture(1200, 20, 6, random_state=3)


@pytest.fixture(scope="module")
def fitted_5k(mixture_5k):
    """The cpu fit of the mixture: the reference every backend is held to."""
    X, _ = mixture_5k
    return UMAP(random_state=0, backend="cpu").fit(X)


@pytest.fixture(scope="module")
def fitted_5k_on(backend, mixture_5k, fitted_5k):
    """The same fit on ``backend`` (the cpu reference itself on cpu)."""
    if backend == fitted_5k.backend_:
        return fitted_5k
    return UMAP(random_state=0, backend=backend).fit(mixture_5k[0])


def test_quality_mixture(mixture_5k, fitted_5k, fitted_5k_on, backend):
    X, labels = mixture_5k
    umap = fitted_5k_on
    Y = umap.embedding_
    assert umap.backend_ == backend
    assert isinstance(Y, np.ndarray) and Y.shape == (5000, 2) and Y.dtype == np.float32
    assert np.all(np.isfinite(Y))
    score = trustworthiness(X, Y, 15)
    assert score >= MIXTURE_FLOOR
    assert knn_accuracy(Y, labels, 15) >= 0.95
    random_layout = np.random.default_rng(0).normal(size=Y.shape)
    assert knn_accuracy(random_layout, labels, 15) < 0.2, "negative control"
    assert trustworthiness(X, random_layout, 15) < 0.6, "negative control"
    if get_spec(backend).kernels is None:
        return  # a delegate (cuML) has its own stages and graph
    # our stages ran: the same stage keys, the graph's contract, the cpu's quality
    assert tuple(umap.timings_) == GRAPH_STAGES
    cpu_score = trustworthiness(X, fitted_5k.embedding_, 15)
    assert abs(score - cpu_score) < 0.01, (score, cpu_score)
    graph = umap.graph_
    assert graph.shape == (5000, 5000) and abs(graph - graph.T).max() < 1e-6
    assert graph.data.max() <= 1.0 and graph.diagonal().max() == 0


@pytest.mark.words
def test_quality_words(words):
    vectors, _ = words
    umap = UMAP(metric="cosine", random_state=0)
    Y = umap.fit_transform(vectors)
    assert umap.pca_.n_components_ == 50
    assert np.all(np.isfinite(Y))
    score = trustworthiness(np.asarray(vectors, dtype=np.float32), Y, 15, metric="cosine")
    assert score >= WORDS_FLOOR


def test_transform_places_new_points_near_their_neighbours(mixture_5k, backend):
    X, labels = mixture_5k
    rng = np.random.default_rng(0)
    held = rng.choice(5000, 400, replace=False)
    keep = np.setdiff1d(np.arange(5000), held)
    # input in the backend's array module (cupy on a GPU) comes back in it
    xp = get_spec(backend).array_module()
    umap = UMAP(random_state=0, n_epochs=200, backend=backend)
    Y = umap.fit_transform(xp.asarray(X[keep]))
    assert array_module(Y) is xp and Y.shape == (4600, 2)
    assert isinstance(umap.embedding_, np.ndarray)
    np.testing.assert_array_equal(host(Y), umap.embedding_)
    placed = umap.transform(xp.asarray(X[held]))
    assert array_module(placed) is xp
    assert isinstance(umap.transform(X[held[:20]]), np.ndarray)  # numpy in, numpy out
    Y_new = host(placed)
    assert Y_new.shape == (400, 2) and np.all(np.isfinite(Y_new))
    # label of the nearest fitted point in the embedding matches the held-out label
    nearest, _ = exact_knn(umap.embedding_, 5, queries=Y_new)
    votes = labels[keep][nearest]
    agree = np.mean([np.bincount(v).argmax() == lab for v, lab in zip(votes, labels[held], strict=True)])
    assert agree >= 0.95
    # and each point lands close to its high-dimensional neighbours' positions
    hd, _ = exact_knn(X[keep], 10, queries=X[held])
    centre = umap.embedding_[hd].mean(axis=1)
    spread = np.linalg.norm(umap.embedding_.std(axis=0))
    assert np.median(np.linalg.norm(Y_new - centre, axis=1)) < 0.1 * spread
    # negative control: points placed at random are far from their neighbours
    shuffled = Y_new[rng.permutation(400)]
    assert np.median(np.linalg.norm(shuffled - centre, axis=1)) > 0.3 * spread


def test_seeded_runs_reproduce(small):
    X, _ = small
    a = UMAP(random_state=4, n_epochs=60).fit_transform(X)
    b = UMAP(random_state=4, n_epochs=60).fit_transform(X)
    c = UMAP(random_state=5, n_epochs=60).fit_transform(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def _sgd_runs(small, kernels_and_chunks, negative_rate=5):
    """Five epochs from one fitted start per ``(kernel, chunks)``: the layouts."""
    from embedscope.kernels import umap_sgd
    from embedscope.kernels._threads import run_row_chunks

    X, _ = small
    fitted = UMAP(random_state=4, n_epochs=0).fit(X)
    a, b = fitted._ab
    schedule_graph = umap_sgd.edge_schedule(fitted.graph_, 40)
    n = fitted.embedding_.shape[0]
    layouts = []
    for kernel, chunks in kernels_and_chunks:
        head = fitted.embedding_.astype(np.float32)
        indptr, indices, per_sample, next_sample, next_negative = umap_sgd.sgd_schedule(schedule_graph,
                                                                                         negative_rate)
        scratch, picks = umap_sgd.sgd_buffers(chunks, 2)
        for epoch in range(1, 6):
            args = (head, head.copy(), indptr, indices, per_sample, next_sample, next_negative,
                    negative_rate, a, b, 0.05, epoch, np.uint64(3), True)
            if kernel == "2d":
                run_row_chunks(umap_sgd.sgd_rows_2d, n, chunks, args, (scratch, picks))
            else:
                run_row_chunks(umap_sgd.sgd_rows, n, chunks, args, (scratch, picks))
        layouts.append(head)
    return fitted.embedding_, layouts


# 60 negative samples an edge fill the 2-D kernel's buffer within a head's edges: the
# settling mid-head takes the same steps.
@pytest.mark.parametrize("negative_rate", [5, 60])
def test_sgd_2d_kernel_takes_the_generic_kernels_steps(small, negative_rate):
    """The register-held 2-D epoch and the any-dimension epoch move points alike."""
    from embedscope.kernels import umap_sgd

    assert 60 * 5 > umap_sgd.cpu.NEGATIVE_BUFFER and 60 <= umap_sgd.cpu.MAX_RATE_2D
    start, (two_d, generic) = _sgd_runs(small, [("2d", 1), ("any", 1)], negative_rate)
    moved = np.abs(two_d - start).max()
    assert moved > 0.01
    # not bit-equal: fastmath contracts the two kernels' sums differently
    np.testing.assert_allclose(two_d, generic, atol=1e-3 * moved)


def _reference_epoch(head, reference, graph_arrays, negative_rate, a, b, alpha, epoch, seed, from_origin=True):
    """One epoch in plain Python, float64, from the module's description of the rule.

    ``from_origin=False``: the rule before, each edge's negatives pushing at once from
    where its attraction left the head.
    """
    from embedscope.kernels._random import GOLDEN, MIX1, MIX2
    from embedscope.kernels.umap_sgd.cpu import _EDGE_MUL, _EPOCH_MUL

    mask = (1 << 64) - 1

    def mix(x):
        x = ((x ^ (x >> 30)) * int(MIX1)) & mask
        x = ((x ^ (x >> 27)) * int(MIX2)) & mask
        return x ^ (x >> 31)

    def clip(v):
        return np.clip(v, -4.0, 4.0)

    indptr, indices, per_sample, next_sample, next_negative = (arr.copy() for arr in graph_arrays)
    out = head.astype(np.float64)
    for i in range(head.shape[0]):
        origin = out[i].copy()  # where the head stands when its turn begins
        pushes = np.zeros(head.shape[1])
        for e in range(indptr[i], indptr[i + 1]):
            if next_sample[e] > epoch:
                continue
            diff = out[i] - reference[indices[e]]
            dist_sq = diff @ diff
            if dist_sq > 0:
                coeff = -2 * a * b * dist_sq ** (b - 1) / (1 + a * dist_sq**b)
                out[i] += clip(coeff * diff) * alpha  # attraction: one edge after another
            next_sample[e] += per_sample[e]
            per_negative = float(per_sample[e]) / negative_rate  # float64, as numba types it
            n_negative = int((epoch - float(next_negative[e])) / per_negative)
            if n_negative <= 0:
                continue
            state = mix((seed ^ (e * int(_EDGE_MUL)) ^ (epoch * int(_EPOCH_MUL))) & mask)
            edge_sum = np.zeros(head.shape[1])
            for _ in range(n_negative):
                state = (state + int(GOLDEN)) & mask
                k = ((mix(state) >> 32) * reference.shape[0]) >> 32
                if k == i:
                    continue
                diff = (origin if from_origin else out[i]) - reference[k]
                dist_sq = diff @ diff
                edge_sum += clip(2 * b / ((0.001 + dist_sq) * (a * dist_sq**b + 1)) * diff) if dist_sq > 0 else 4.0
            if from_origin:
                pushes += clip(edge_sum) * alpha
            else:
                out[i] += clip(edge_sum) * alpha
            next_negative[e] += n_negative * per_negative
        out[i] += pushes  # the pushes land after the head's last attraction
    return out


@pytest.mark.parametrize("kernel", ["2d", "any"])
def test_sgd_epoch_follows_the_documented_rule(kernel):
    """Both CPU kernels against a plain-Python epoch: attraction edge by edge, negatives from the start."""
    import scipy.sparse as sp

    from embedscope.kernels import umap_sgd
    from embedscope.kernels._threads import run_row_chunks

    rng = np.random.default_rng(1)
    n = 40
    rows = np.repeat(np.arange(n), 6)
    graph = sp.csr_matrix((rng.uniform(0.2, 1.0, rows.size), (rows, (rows + rng.integers(1, n, rows.size)) % n)),
                          shape=(n, n))
    graph = graph.maximum(graph.T).tocsr()
    graph.sort_indices()
    start = (rng.standard_normal((n, 2)) * 2).astype(np.float32)
    a, b = umap_sgd.find_ab_params(1.0, 0.1)
    arrays = umap_sgd.sgd_schedule(graph, 5)
    scratch, picks = umap_sgd.sgd_buffers(1, 2)
    for epoch in (1, 4):
        expected = _reference_epoch(start, start.astype(np.float64), arrays, 5, a, b, 0.5, epoch, 11)
        head = start.copy()
        clocks = [arr.copy() for arr in arrays]
        args = (head, start.copy(), *clocks, 5, a, b, 0.5, epoch, np.uint64(11), True)
        run_row_chunks(umap_sgd.sgd_rows_2d if kernel == "2d" else umap_sgd.sgd_rows, n, 1, args, (scratch, picks))
        moved = np.abs(expected - start).max()
        assert moved > 0.1
        np.testing.assert_allclose(head, expected, atol=1e-4 * moved)
        # negative control: the former rule moves the points elsewhere, beyond the tolerance
        former = _reference_epoch(start, start.astype(np.float64), arrays, 5, a, b, 0.5, epoch, 11, False)
        assert np.abs(former - expected).max() > 100 * 1e-4 * moved


def test_sgd_epoch_is_the_same_for_any_split_into_threads(small):
    """Blocks of heads on 1, 2 or 5 threads: the same layout to the bit (each head reads the snapshot)."""
    start, layouts = _sgd_runs(small, [("2d", 1), ("2d", 2), ("2d", 5), ("any", 1), ("any", 3)])
    assert np.abs(layouts[0] - start).max() > 0.01
    for layout in layouts[1:3]:
        np.testing.assert_array_equal(layout, layouts[0])
    np.testing.assert_array_equal(layouts[4], layouts[3])


@pytest.mark.parametrize("exponent", [-1.0, -0.105, 0.3, 0.8950, 1.0, 1.58])
def test_fast_power_matches_float64(exponent):
    import numba

    from embedscope.kernels._fastpow import pow_positive

    @numba.njit
    def powers(x, p):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = pow_positive(x[i], p)
        return out

    x = np.logspace(-12, 12, 200_001).astype(np.float32)
    exact = x.astype(np.float64) ** np.float64(np.float32(exponent))
    got = powers(x, np.float32(exponent)).astype(np.float64)
    assert np.max(np.abs(got / exact - 1.0)) < 5e-6
    # zero and subnormals read as the smallest normal float: finite, never NaN
    edge = powers(np.array([0.0, 1e-45, 1e-39], dtype=np.float32), np.float32(exponent))
    assert np.all(np.isfinite(edge))


def test_three_components_and_callback(small):
    X, labels = small
    calls = []
    umap = UMAP(n_components=3, n_epochs=50, random_state=0,
                callback=lambda e, n, Y: calls.append((e, n, Y.shape)))
    Y = umap.fit_transform(X)
    assert Y.shape == (1200, 3) and np.all(np.isfinite(Y))
    assert calls == [(e, 50, (1200, 3)) for e in range(1, 51)]
    assert knn_accuracy(Y, labels, 10) > 0.9


def test_progress_is_logged_only_when_verbose(small, capsys):
    X, _ = small
    UMAP(n_epochs=20, random_state=0).fit(X)
    assert "UMAP" not in capsys.readouterr().err
    UMAP(n_epochs=20, random_state=0, verbose=True).fit(X)
    text = capsys.readouterr().err
    for stage in ("knn", "affinities", "init", "optimise"):
        assert f"UMAP: {stage} done" in text
    assert text.count("UMAP: epoch ") == 10


def test_precomputed_knn(small):
    X, _ = small
    idx, dist = exact_knn(X, 14)
    ours = UMAP(random_state=1, n_epochs=40, backend="cpu").fit_transform(X)
    given = UMAP(random_state=1, n_epochs=40, backend="cpu", precomputed_knn=(idx, dist)).fit_transform(X)
    np.testing.assert_allclose(ours, given, atol=1e-5)
    # umap-learn's layout: the point itself first
    n = X.shape[0]
    with_self = (np.hstack([np.arange(n)[:, None], idx]), np.hstack([np.zeros((n, 1)), dist]))
    again = UMAP(random_state=1, n_epochs=40, backend="cpu", precomputed_knn=with_self).fit_transform(X)
    np.testing.assert_allclose(ours, again, atol=1e-5)
    with pytest.raises(ValueError, match="precomputed_knn"):
        UMAP(n_neighbors=30, precomputed_knn=(idx, dist)).fit(X)


def test_init_options(small):
    X, labels = small
    for init in ("pca", "random"):
        umap = UMAP(init=init, n_epochs=100, random_state=0).fit(X)
        assert umap.init_used_ == init and knn_accuracy(umap.embedding_, labels, 10) > 0.9
    start = np.random.default_rng(0).normal(size=(1200, 2))
    zero_epochs = UMAP(init=start, n_epochs=0).fit_transform(X)
    np.testing.assert_allclose(zero_epochs, start.astype(np.float32))
    with pytest.raises(ValueError, match="init"):
        UMAP(init="laplacian").fit(X)
    with pytest.raises(ValueError, match="init array"):
        UMAP(init=start[:10]).fit(X)


def test_spectral_init_connected_and_fallback():
    # one connected blob: spectral runs; its first axis separates the two ends
    line = np.linspace(0, 1, 600)[:, None] * np.ones((1, 5)) + 1e-3 * np.random.default_rng(0).normal(size=(600, 5))
    idx, dist = exact_knn(line.astype(np.float32), 10)
    graph, _, _ = fuzzy_simplicial_set(idx, dist, 11)
    layout = spectral_layout(graph, 2)
    assert abs(np.corrcoef(layout[:, 0], line[:, 0])[0, 1]) > 0.9
    # two far clusters: disconnected graph -> PCA init, with the reason recorded
    X, _ = make_mixture(600, 10, 2, random_state=0)
    X[:300] += 1000
    idx, dist = exact_knn(X, 10)
    graph, _, _ = fuzzy_simplicial_set(idx, dist, 11)
    messages = []
    layout, used = initial_layout("spectral", 2, graph=graph, data=X, log=messages.append)
    assert used.startswith("pca (spectral fallback") and "disconnected" in used and messages
    assert layout.shape == (600, 2) and np.all(np.isfinite(layout))


def test_parameter_errors(small):
    X, _ = small
    cases = {
        "n_neighbors": dict(n_neighbors=1201),
        "n_components": dict(n_components=0),
        "unknown metric": dict(metric="haming"),
        "min_dist": dict(min_dist=2.0),
        "spread": dict(spread=0),
        "learning_rate": dict(learning_rate=-1.0),
        "n_epochs": dict(n_epochs=-5),
        "negative_sample_rate": dict(negative_sample_rate=1.5),
        "knn_method": dict(knn_method="annoy"),
        "callback": dict(callback=3),
    }
    for name, params in cases.items():
        with pytest.raises(ValueError, match=name):
            UMAP(**params).fit(X)
    with pytest.raises(DataError):
        UMAP().fit(np.full((10, 3), np.nan))
    with pytest.raises(AttributeError, match="not fitted"):
        UMAP().transform(X)
    umap = UMAP(n_epochs=10, random_state=0).fit(X)
    with pytest.raises(ValueError, match="features"):
        umap.transform(X[:, :5])


@pytest.mark.parametrize("case", ["duplicates", "tight", "zeros_cosine"])
def test_degenerate_inputs_give_finite_layouts(case):
    rng = np.random.default_rng(0)
    metric = "euclidean"
    if case == "duplicates":  # 90% of the rows are copies of 5 points
        X = np.vstack([np.repeat(rng.normal(size=(5, 8)), 180, axis=0), rng.normal(size=(100, 8))])
    elif case == "tight":
        X = 5.0 + 1e-7 * rng.normal(size=(800, 8))
    elif case == "zeros_cosine":
        X = np.vstack([np.zeros((100, 8)), rng.normal(size=(700, 8))])
        metric = "cosine"
    Y = UMAP(metric=metric, n_epochs=50, random_state=0).fit_transform(X)
    assert Y.shape == (X.shape[0], 2) and np.all(np.isfinite(Y))


def test_all_identical_rows_are_refused():
    # every distance is 0: a layout would be noise around the init (issue #14)
    with pytest.raises(DataError, match="all 300 rows are identical"):
        UMAP(n_epochs=50, random_state=0).fit(np.ones((300, 4)))


@pytest.mark.parametrize("n", [2, 3, 5, 10, 16, 20])
def test_tiny_inputs(n):
    X = np.random.default_rng(n).normal(size=(n, 6))
    if n <= 15:
        with pytest.raises(ValueError, match="n_neighbors"):
            UMAP().fit(X)
    k = min(15, n)
    Y = UMAP(n_neighbors=k, random_state=0, n_epochs=30).fit_transform(X)
    assert Y.shape == (n, 2) and np.all(np.isfinite(Y))


def test_estimator_contract_and_reduce(small):
    X, _ = small
    umap = UMAP(n_neighbors=10, min_dist=0.3)
    assert umap.get_params()["n_neighbors"] == 10 and "min_dist=0.3" in repr(umap)
    clone = UMAP(**umap.get_params())
    assert clone.get_params() == umap.get_params()
    Y = reduce(X, "umap", n_neighbors=10, n_epochs=20, random_state=0)
    assert Y.shape == (1200, 2)
    a, b = find_ab_params(1.0, 0.1)
    assert abs(a - 1.577) < 0.01 and abs(b - 0.895) < 0.01  # umap-learn's values


@pytest.mark.parametrize(("spread", "min_dist"), [(1.0, 0.1), (1.0, 0.0), (1.0, 0.5), (1.0, 0.99),
                                                  (2.0, 0.1), (0.5, 0.01), (3.0, 1.0)])
def test_ab_params_match_scipy_curve_fit(spread, min_dist):
    from scipy.optimize import curve_fit

    x = np.linspace(0.0, spread * 3.0, 300)
    target = np.where(x < min_dist, 1.0, np.exp(-(x - min_dist) / spread))
    expected, _ = curve_fit(lambda d, a, b: 1.0 / (1.0 + a * d ** (2.0 * b)), x, target, p0=(1.0, 1.0),
                            maxfev=10_000)
    np.testing.assert_allclose(find_ab_params(spread, min_dist), expected, rtol=1e-5)


def test_umap_import_loads_no_gpu_module():
    assert gpu_modules_loaded_by("from embedscope import UMAP") == []


@pytest.mark.parametrize(("params", "message"), [
    ({"knn_method": "nndescent"}, "no GPU version yet"),
    ({"n_neighbors": 130}, "at most 128 neighbours"),
])
def test_cuda_backend_refuses_what_it_cannot_do_before_any_work(monkeypatch, params, message):
    # The simulator makes "cuda" resolvable here; the refusal comes before any kernel runs.
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    X, _ = make_mixture(200, 5, 2, random_state=0)
    with pytest.raises(Unsupported, match=message + r".*backend='cpu'"):
        UMAP(backend="cuda", **params).fit(X)


def test_cosine_with_pca_runs_the_pca_on_the_same_backend(mixture_5k, backend):
    if get_spec(backend).kernels is None:
        pytest.skip(f"backend {backend!r} hands the whole fit to another library (no pca_ of ours)")
    xp = get_spec(backend).array_module()
    X, labels = mixture_5k
    wide = np.hstack([X, X[:, ::-1], X[:, :20]])  # 120 features: PCA-50 runs first
    umap = UMAP(metric="cosine", n_epochs=200, random_state=0, backend=backend)
    Y = umap.fit_transform(xp.asarray(wide))
    assert umap.pca_.backend_ == backend and umap.pca_.n_components_ == 50
    assert knn_accuracy(host(Y), labels, 15) >= 0.9


@pytest.mark.gpu
def test_cuda_backend_streams_data_too_large_for_the_device(monkeypatch, small):
    from embedscope import _memory as memory
    from embedscope.backends.cuda import place as _to_device

    X, labels = small
    # Only the placement sees a tiny device: every stage reads memory.device_free_bytes
    # through the module (so a patch reaches them), and the kNN plan and the graph's
    # check must see the real device to run.
    real, answers = memory.device_free_bytes, iter([1024, 1024])
    monkeypatch.setattr(memory, "device_free_bytes", lambda: next(answers, None) or real())
    assert isinstance(_to_device(X), np.ndarray)
    umap = UMAP(backend="cuda", n_epochs=100, random_state=0).fit(X)
    assert umap.backend_ == "cuda" and knn_accuracy(umap.embedding_, labels, 10) > 0.9


def test_auto_passes_over_a_gpu_that_cannot_find_enough_neighbours(fake_cuda_only):
    assert UMAP()._start((300, 5))[0].name == "cuda"
    est = UMAP(n_neighbors=200)
    assert est._start((300, 5))[0].name == "cpu"
    assert "cuda: cannot run these settings (backend='cuda' finds at most 128" in est.backend_reason_
    with pytest.raises(Unsupported, match="at most 128"):
        UMAP(n_neighbors=200, backend="cuda")._start((300, 5))


def test_row_chunks_run_in_a_forked_child_after_the_pool_started():
    """The pool is rebuilt in a forked child (its threads are not inherited: it would hang)."""
    import multiprocessing

    from embedscope.kernels import _threads

    def kernel(start, stop, out):
        out[start:stop] = np.arange(start, stop)

    out = np.zeros(10)
    _threads.run_row_chunks(kernel, 10, 3, (out,))  # starts the pool in this process
    np.testing.assert_array_equal(out, np.arange(10))
    time.sleep(0.2)  # its workers go idle: the state a child must not trust
    context = multiprocessing.get_context("fork")
    child = context.Process(target=_threads.run_row_chunks, args=(kernel, 10, 3, (np.zeros(10),)))
    child.start()
    child.join(timeout=30)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0


def test_relabelled_fit_keeps_quality_row_order_and_seed(mixture_5k, monkeypatch):
    # Large fits relabel their points by layout position (kernels.locality); forced
    # here on 5,000 points. Negative samples then land on other points, so the
    # layout differs, but not its quality, and rows stay the user's.
    from embedscope.kernels.umap_sgd import cpu as sgd_cpu

    X, labels = mixture_5k
    plain = UMAP(random_state=0, backend="cpu", n_epochs=120).fit_transform(X)
    monkeypatch.setattr(sgd_cpu, "REORDER_MIN", 1)
    orders = []
    real = sgd_cpu.locality_order
    monkeypatch.setattr(sgd_cpu, "locality_order", lambda y: orders.append(real(y)) or orders[-1])
    seen = []
    est = UMAP(random_state=0, backend="cpu", n_epochs=120, callback=lambda e, n, Y: seen.append(np.array(Y)) and False)
    relabelled = est.fit_transform(X)
    assert len(orders) == 2 and not np.array_equal(orders[0], np.arange(len(X)))
    np.testing.assert_array_equal(seen[-1], relabelled)
    again = UMAP(random_state=0, backend="cpu", n_epochs=120).fit_transform(X)
    np.testing.assert_array_equal(again, relabelled)  # seeded runs still repeat
    assert knn_accuracy(relabelled, labels, 10) > knn_accuracy(plain, labels, 10) - 0.01
    assert trustworthiness(X, relabelled, 15) > trustworthiness(X, plain, 15) - 0.005
    # the control: the same layout with its rows shuffled scores at chance
    shuffled = relabelled[np.random.default_rng(0).permutation(len(X))]
    assert knn_accuracy(shuffled, labels, 10) < 0.2
