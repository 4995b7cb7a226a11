"""Hostile and careless parameters and data for the reducers (issue #14).

The table runs the real ``embedscope reduce`` command; the tests below it call the
estimators directly. Every refusal is a ``ValueError`` naming the parameter and the
accepted range (or the data's defect); extreme magnitudes are embedded, not refused.
"""

from __future__ import annotations

import numpy as np
import pytest

from embedscope import PCA, TSNE, UMAP
from embedscope.errors import DataError
from tests.hostile.harness import Case, run_case

pytestmark = pytest.mark.filterwarnings("ignore:perplexity=")  # t-SNE clamps it on small data

N, D = 120, 6


def _mixture(scale: float = 1.0, dtype=np.float32) -> np.ndarray:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D))
    X[: N // 2] += 5.0  # two clusters, so a layout has something to show
    return (X * scale).astype(dtype)


def _save(name: str, X: np.ndarray):
    def setup(folder):
        np.save(folder / name, X)
    return setup


vectors = _save("v.npy", _mixture())
huge = _save("v.npy", _mixture(1e30))
tiny = _save("v.npy", _mixture(1e-30))
identical = _save("v.npy", np.full((N, D), 3.0, dtype=np.float32))
zeros = _save("v.npy", np.zeros((N, D), dtype=np.float32))


def _finite_layout(components: int = 2):
    def check(folder, result):
        Y = np.load(folder / "o.npy")
        assert Y.shape == (N, components)
        assert np.isfinite(Y).all()
        assert (Y.astype(np.float64).std(axis=0) > 0).all(), "collapsed layout"
    return check


def reduce(*extra: str) -> list[str]:
    return ["reduce", "v.npy", "--out", "o.npy", "--quiet", *extra]


def refuse(id: str, args: list[str], message: str, setup=vectors) -> Case:
    return Case(id, args, message=message, setup=setup)


def handle(id: str, args: list[str], setup) -> Case:
    return Case(id, args, expect="handle", setup=setup, outputs=["o.npy"], check=_finite_layout())


FAST_UMAP = ["--method", "umap", "--n-epochs", "30", "--random-state", "0"]
FAST_TSNE = ["--method", "tsne", "--n-iter", "100", "--random-state", "0"]

CASES = [
    # runaway sizes: bounded, with the bound in the message, before any work
    refuse("umap-n-components-1e6", reduce("--method", "umap", "--n-components", "1000000"),
           r"n_components=1000000 must be between 1 and 100"),
    refuse("pca-n-components-1e6", reduce("--method", "pca", "--n-components", "1000000"),
           r"n_components=1000000 must be between 1 and 6 \(min\(n_samples, n_features\)"),
    refuse("tsne-n-components-1e6", reduce("--method", "tsne", "--n-components", "1000000"),
           r"n_components=1000000 must be 2 or 3"),
    refuse("umap-n-components-0", reduce("--method", "umap", "--n-components", "0"),
           r"n_components=0 must be between 1 and 100"),
    refuse("umap-negative-sample-rate-1e9", reduce(*FAST_UMAP, "--negative-sample-rate", "1000000000"),
           r"negative_sample_rate=1000000000 must be between 0 and 1000"),
    refuse("umap-n-epochs-1e9", reduce("--method", "umap", "--n-epochs", "1000000000"),
           r"n_epochs=1000000000 must be between 0 and 100000"),
    refuse("tsne-n-iter-1e9", reduce("--method", "tsne", "--n-iter", "1000000000"),
           r"n_iter=1000000000 must be between 1 and 100000"),
    # seeds
    refuse("pca-seed-negative", reduce("--method", "pca", "--random-state", "-1"),
           r"random_state=-1 must be None, an integer >= 0"),
    refuse("umap-seed-negative", reduce("--method", "umap", "--random-state", "-1"),
           r"random_state=-1 must be None, an integer >= 0"),
    refuse("tsne-seed-negative", reduce("--method", "tsne", "--random-state", "-1"),
           r"random_state=-1 must be None, an integer >= 0"),
    # absurd optimiser settings
    refuse("tsne-learning-rate-nan", reduce("--method", "tsne", "--learning-rate", "nan"),
           r"learning_rate='nan' must be 'auto' or a number in \(0, 1e\+07\]"),
    refuse("tsne-learning-rate-huge", reduce("--method", "tsne", "--learning-rate", "1e9"),
           r"learning_rate=1e\+09 must be in \(0, 1e\+07\]"),
    refuse("tsne-learning-rate-negative", reduce("--method", "tsne", "--learning-rate", "-5"),
           r"learning_rate=-5 must be in \(0, 1e\+07\]"),
    refuse("umap-learning-rate-nan", reduce("--method", "umap", "--learning-rate", "nan"),
           r"learning_rate must be a finite number in \(0, 1000\]; got 'nan'"),
    refuse("umap-learning-rate-huge", reduce("--method", "umap", "--learning-rate", "1e9"),
           r"learning_rate=1e\+09 must be in \(0, 1000\]"),
    refuse("umap-learning-rate-zero", reduce("--method", "umap", "--learning-rate", "0"),
           r"learning_rate=0 must be in \(0, 1000\]"),
    refuse("tsne-exaggeration-huge", reduce("--method", "tsne", "--early-exaggeration", "1e9"),
           r"early_exaggeration=1e\+09 must be in \[1, 1000\]"),
    refuse("tsne-exaggeration-inf", reduce("--method", "tsne", "--early-exaggeration", "inf"),
           r"early_exaggeration must be a finite number in \[1, 1000\]; got inf"),
    refuse("tsne-exaggeration-below-1", reduce("--method", "tsne", "--early-exaggeration", "0.5"),
           r"early_exaggeration=0.5 must be in \[1, 1000\]"),
    # other parameters: named, with their range
    refuse("umap-n-neighbors-1", reduce("--method", "umap", "--n-neighbors", "1"),
           r"n_neighbors=1 must be >= 2"),
    refuse("umap-n-neighbors-above-n", reduce("--method", "umap", "--n-neighbors", "100000"),
           r"n_neighbors=100000 is larger than the number of points \(120\)"),
    refuse("umap-min-dist-above-spread", reduce("--method", "umap", "--min-dist", "5"),
           r"min_dist=5 must be in \[0, 1\]"),
    refuse("umap-spread-zero", reduce("--method", "umap", "--spread", "0"),
           r"spread=0 must be in \[0.001, 1000\]"),
    refuse("umap-metric-unknown", reduce("--method", "umap", "--metric", "levenshtein"),
           r"unknown metric 'levenshtein'; choose one of"),
    refuse("umap-init-unknown", reduce("--method", "umap", "--init", "magic"),
           r"init='magic' must be one of spectral, pca, random"),
    refuse("tsne-perplexity-zero", reduce("--method", "tsne", "--perplexity", "0"),
           r"perplexity=0 must be > 0"),
    refuse("tsne-dof-huge", reduce("--method", "tsne", "--dof", "1e9"),
           r"dof=1e\+09 must be in \[0.01, 100\]"),
    # degenerate data
    refuse("umap-identical-rows", reduce("--method", "umap"), r"all 120 rows are identical", identical),
    refuse("umap-cosine-zero-rows", reduce("--method", "umap", "--metric", "cosine"),
           r"all 120 rows are zero, which have no cosine distance", zeros),
    refuse("tsne-identical-rows", reduce("--method", "tsne"), r"all 120 rows are identical", identical),
    refuse("tsne-cosine-zero-rows", reduce("--method", "tsne", "--metric", "cosine"),
           r"all 120 rows are zero", zeros),
    # magnitudes near float32's limits are embedded, not refused
    handle("pca-values-1e30", reduce("--method", "pca"), huge),
    handle("umap-values-1e30", reduce(*FAST_UMAP), huge),
    handle("tsne-values-1e30", reduce(*FAST_TSNE), huge),
    handle("pca-values-1e-30", reduce("--method", "pca"), tiny),
    handle("umap-values-1e-30", reduce(*FAST_UMAP), tiny),
    handle("tsne-values-1e-30", reduce(*FAST_TSNE), tiny),
    handle("umap-cosine-values-1e30", reduce(*FAST_UMAP, "--metric", "cosine"), huge),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case(case, tmp_path):
    run_case(case, tmp_path / "work")


# ----------------------------------------------------------------------------- API


def _two_clusters(n: int = 80, d: int = 5, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((n, d))
    X[: n // 2] += 6.0
    return (X * scale).astype(np.float32)


def _separation(Y: np.ndarray) -> float:
    """Distance between the two clusters' centres over their mean spread."""
    half = Y.shape[0] // 2
    a, b = Y[:half], Y[half:]
    return float(np.linalg.norm(a.mean(0) - b.mean(0)) / (a.std(0).mean() + b.std(0).mean()))


def _own_centre_fraction(Y: np.ndarray) -> float:
    """Share of points nearer their own cluster's centre than the other's."""
    half = Y.shape[0] // 2
    a, b = Y[:half], Y[half:]
    ca, cb = a.mean(0), b.mean(0)
    near_a = np.linalg.norm(Y - ca, axis=1) < np.linalg.norm(Y - cb, axis=1)
    return float((near_a[:half].sum() + (~near_a[half:]).sum()) / Y.shape[0])


def test_separation_checks_fail_on_a_scrambled_layout():
    """Negative control for the two checks above."""
    Y = np.random.default_rng(0).standard_normal((80, 2))
    assert _own_centre_fraction(Y) < 1.0
    assert _separation(Y) < 2.0


@pytest.mark.parametrize("scale", [1e30, 1e-30, 2.0**-140])
def test_extreme_magnitudes_embed_like_unit_data(scale):
    X = _two_clusters()
    # The rescaling is by a power of two, so data that differs by one gives the same layout.
    for reducer in (UMAP(n_epochs=50, random_state=0), TSNE(n_iter=150, random_state=0)):
        unit = reducer.fit_transform(X)
        extreme = reducer.fit_transform(_two_clusters(scale=scale))
        assert np.isfinite(extreme).all()
        # Every point nearer its own cluster's centre, and the clusters' gap a few
        # spreads wide (a collapsed or scrambled layout gives ~0): a ratio threshold of
        # 3 alone failed on one CPU at 1e30 (2.94, against 3.68 for the unit data),
        # whose rounding differs from the unit data's as 1e30 is not a power of two.
        assert _own_centre_fraction(extreme) == 1.0
        assert _separation(extreme) > 2.0
        assert _separation(extreme) == pytest.approx(_separation(unit), rel=0.5)


def test_power_of_two_scaling_gives_the_same_layout():
    X = _two_clusters()
    for reducer in (UMAP(n_epochs=50, random_state=0), TSNE(n_iter=150, random_state=0)):
        np.testing.assert_allclose(reducer.fit_transform(X * np.float32(2.0**100)),
                                   reducer.fit_transform(X), rtol=1e-4, atol=1e-4)


def test_unit_data_is_not_rescaled():
    X = _two_clusters()
    assert UMAP(n_epochs=5, random_state=0).fit(X)._prep.scale == 1.0
    assert TSNE(n_iter=5, random_state=0).fit(X)._prep.scale == 1.0


@pytest.mark.parametrize("solver", ["covariance", "full", "randomized"])
@pytest.mark.parametrize("scale", [1e30, 1e37, 1e-30])
def test_pca_extreme_magnitudes_match_unit_data(solver, scale):
    X = _two_clusters(d=8)
    unit = PCA(2, svd_solver=solver, random_state=0).fit(X)
    pca = PCA(2, svd_solver=solver, random_state=0)
    Y = pca.fit_transform(_two_clusters(d=8, scale=scale))
    assert np.isfinite(Y).all() and np.isfinite(pca.explained_variance_).all()
    np.testing.assert_allclose(np.abs(pca.components_), np.abs(unit.components_), atol=1e-4)
    np.testing.assert_allclose(pca.explained_variance_ratio_, unit.explained_variance_ratio_, rtol=1e-4)
    # float64 where float32 cannot hold the variances (1e60 or 1e-60)
    np.testing.assert_allclose(pca.explained_variance_.astype(np.float64) / scale**2,
                               unit.explained_variance_, rtol=1e-3)


@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_pca_whitening_gives_unit_variance_at_any_magnitude(scale):
    Y = PCA(2, whiten=True, svd_solver="covariance").fit_transform(_two_clusters(d=8, scale=scale))
    np.testing.assert_allclose(Y.astype(np.float64).std(axis=0, ddof=1), 1.0, rtol=1e-3)


def test_pca_refuses_projections_beyond_float32():
    X = _two_clusters(d=8)
    X[:, 0] = 3e38 * np.sign(X[:, 0])
    X[:, 1] = -X[:, 0]
    with pytest.raises(ValueError, match="overflow float32"):
        PCA(2, svd_solver="full").fit_transform(X)


@pytest.mark.parametrize("estimator", [PCA, UMAP, TSNE])
@pytest.mark.parametrize("seed", [-1, -(2**40), True, 1.5, "0"])
def test_bad_seed_names_random_state(estimator, seed):
    with pytest.raises(ValueError, match=r"random_state=.* must be None, an integer >= 0 or a numpy Generator"):
        estimator(random_state=seed).fit(_two_clusters())


def test_a_generator_seed_is_not_consumed_by_validation():
    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    PCA(2, svd_solver="covariance", random_state=rng).fit(_two_clusters())
    assert rng.bit_generator.state == state


@pytest.mark.parametrize("params, message", [
    ({"n_components": 101}, r"n_components=101 must be between 1 and 100"),
    ({"learning_rate": float("inf")}, r"learning_rate must be a finite number in \(0, 1000\]; got inf"),
    ({"learning_rate": 1e6}, r"learning_rate=1e\+06 must be in \(0, 1000\]"),
    ({"learning_rate": 2**70}, r"learning_rate=1.18059e\+21 must be in \(0, 1000\]"),
    ({"min_dist": 10**400}, r"min_dist must be a finite number in \[0, 1\]"),
    ({"spread": 1e9}, r"spread=1e\+09 must be in \[0.001, 1000\]"),
    ({"min_dist": -0.1}, r"min_dist=-0.1 must be in \[0, 1\]"),
    ({"negative_sample_rate": 10**9}, r"negative_sample_rate=1000000000 must be between 0 and 1000"),
    ({"n_epochs": 2.5}, r"n_epochs must be an integer between 0 and 100000; got 2.5"),
    ({"init": np.full((80, 2), np.nan)}, r"init array must be a finite numeric array"),
    ({"init": np.zeros((80, 3))}, r"init array has shape \(80, 3\); expected \(80, 2\)"),
    ({"init": np.full((80, 2), 1e30)}, r"init array has values beyond \+-1e\+10"),
])
def test_umap_bad_parameters_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        UMAP(**params).fit(_two_clusters())


@pytest.mark.parametrize("params, message", [
    ({"learning_rate": float("nan")}, r"learning_rate must be a finite number in \(0, 1e\+07\]; got nan"),
    ({"learning_rate": 0.0}, r"learning_rate=0 must be in \(0, 1e\+07\]"),
    ({"early_exaggeration": 1e6}, r"early_exaggeration=1e\+06 must be in \[1, 1000\]"),
    ({"early_exaggeration": float("-inf")}, r"early_exaggeration must be a finite number in \[1, 1000\]"),
    ({"dof": 1e-9}, r"dof=1e-09 must be in \[0.01, 100\]"),
    ({"n_iter": 10**7}, r"n_iter=10000000 must be between 1 and 100000"),
    ({"init": np.full((80, 2), np.inf)}, r"init array must be a finite numeric array"),
    ({"init": np.full((80, 2), -1e12)}, r"init array has values beyond \+-1e\+10"),
])
def test_tsne_bad_parameters_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        TSNE(**params).fit(_two_clusters())


def test_pca_bounds_iterated_power():
    with pytest.raises(ValueError, match=r"iterated_power=1000000 must be between 0 and 100"):
        PCA(2, svd_solver="randomized", iterated_power=10**6).fit(_two_clusters())


@pytest.mark.parametrize("X, message", [
    (np.full((50, 4), 7.0), r"all 50 rows are identical"),
    (np.zeros((50, 4)), r"all 50 rows are identical"),
])
def test_umap_refuses_identical_rows(X, message):
    with pytest.raises(DataError, match=message + ": UMAP has no neighbourhoods to preserve"):
        UMAP().fit(X)


@pytest.mark.parametrize("estimator", [UMAP, TSNE])
def test_cosine_refuses_zero_and_parallel_rows(estimator):
    with pytest.raises(DataError, match="all 50 rows are zero, which have no cosine distance"):
        estimator(metric="cosine").fit(np.zeros((50, 4)))
    parallel = np.outer(np.arange(1, 51), [1.0, -2.0, 0.5, 3.0]).astype(np.float32)
    with pytest.raises(DataError, match="all 50 rows point the same way"):
        estimator(metric="cosine").fit(parallel)
    # euclidean distances between the same rows are fine
    assert np.isfinite(estimator(n_epochs=10, random_state=0).fit_transform(parallel)
                       if estimator is UMAP else
                       estimator(n_iter=50, random_state=0).fit_transform(parallel)).all()


def test_one_distinct_row_is_enough():
    X = np.zeros((50, 4), dtype=np.float32)
    X[-1] = 1.0
    Y = UMAP(n_epochs=20, random_state=0).fit_transform(X)
    assert np.isfinite(Y).all()


def _knn_of(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    dist = np.linalg.norm(X[:, None] - X[None], axis=2)
    order = np.argsort(dist, axis=1)[:, 1:k + 1]
    return order, np.take_along_axis(dist, order, axis=1)


@pytest.mark.parametrize("estimator, k", [(UMAP, 14), (TSNE, 20)])
def test_precomputed_knn_with_no_valid_neighbour_is_refused(estimator, k):
    X = _two_clusters()
    n = X.shape[0]
    self_only = np.repeat(np.arange(n)[:, None], k + 1, axis=1)
    with pytest.raises(ValueError, match="precomputed_knn has no valid neighbour"):
        estimator(precomputed_knn=(self_only, np.zeros((n, k + 1)))).fit(X)
    if estimator is UMAP:
        with pytest.raises(ValueError, match="precomputed_knn has no valid neighbour"):
            estimator(precomputed_knn=(np.full((n, k), -1), np.zeros((n, k)))).fit(X)
    indices, distances = _knn_of(X, k + 1)
    assert np.isfinite(estimator(precomputed_knn=(indices, distances), random_state=0,
                                 **({"n_epochs": 20} if estimator is UMAP else {"n_iter": 60}))
                       .fit_transform(X)).all()


def test_umap_precomputed_knn_must_be_ascending_and_non_negative():
    X = _two_clusters()
    indices, distances = _knn_of(X, 14)
    with pytest.raises(ValueError, match="precomputed_knn distances must be ascending"):
        UMAP(precomputed_knn=(indices, distances[:, ::-1])).fit(X)
    with pytest.raises(ValueError, match=r"precomputed_knn distances must be >= 0"):
        UMAP(precomputed_knn=(indices, -distances[:, ::-1])).fit(X)


def test_tsne_divergence_is_a_value_error():
    from embedscope.engine.tsne import DivergedError

    assert issubclass(DivergedError, ValueError) and issubclass(DivergedError, FloatingPointError)


@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_quality_metrics_do_not_depend_on_magnitude(scale):
    from embedscope.engine.metrics import knn_accuracy, knn_recall, trustworthiness

    X = _two_clusters(n=120)
    Y = X[:, :2].copy()
    labels = np.arange(120) < 60
    Xs, Ys = X * np.float32(scale), Y * np.float32(scale)
    assert trustworthiness(Xs, Ys, 10) == pytest.approx(trustworthiness(X, Y, 10), abs=1e-9)
    assert knn_recall(Xs, Ys, 10) == pytest.approx(knn_recall(X, Y, 10), abs=1e-9)
    assert knn_accuracy(Ys, labels, 10) == pytest.approx(knn_accuracy(Y, labels, 10), abs=1e-9)


@pytest.mark.parametrize("estimator, params", [(UMAP, {"n_epochs": 20}), (TSNE, {"n_iter": 50})])
def test_transform_refuses_points_far_beyond_the_fitted_scale(estimator, params):
    X = _two_clusters()
    fitted = estimator(random_state=0, **params).fit(X)
    with pytest.raises(ValueError, match=r"values reach .* times the magnitude of the fitted data"):
        fitted.transform(X[:10] * np.float32(1e30))
    assert np.isfinite(fitted.transform(X[:10] * np.float32(1e-30))).all()
    # fitted at 1e30, new points at 1e30 are ordinary
    big = estimator(random_state=0, **params).fit(X * np.float32(1e30))
    assert np.isfinite(big.transform(X[:10] * np.float32(1e30))).all()
