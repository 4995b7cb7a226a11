"""Fuzz PCA, UMAP and t-SNE over small hostile inputs (issue #14).

Shapes of 2-60 rows by 1-12 columns; duplicate rows, constant columns, few distinct
values, magnitudes from 1e-30 to 1e37; the main parameters of each reducer, in and
out of range. Every call must either return finite coordinates of the right shape or
raise a ``ValueError`` with a one-line message: never another exception, never NaN.

Seeded (``derandomize=True``) and bounded, so a run is the same every time and takes
well under a minute once numba's kernels are compiled (cached).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from embedscope import PCA, TSNE, UMAP, PaCMAP

FUZZ = settings(derandomize=True, deadline=None, database=None, max_examples=120,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MAGNITUDES = [1.0, 1.0, 1e-30, 1e-12, 1e12, 1e30, 1e37]
ODD_VALUES = [0.0, 1.0, -1.0, 0.5, 3.0, 1e-30, 1e30, -2.5e12, 1e38]


@st.composite
def datasets(draw: st.DrawFn) -> np.ndarray:
    n = draw(st.integers(2, 60))
    d = draw(st.integers(1, 12))
    kind = draw(st.sampled_from(["normal", "clusters", "integers", "odd values"]))
    if kind == "odd values":
        # few distinct values: many duplicate rows and zero distances
        X = draw(arrays(np.float64, (n, d), elements=st.sampled_from(ODD_VALUES)))
    else:
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        X = rng.standard_normal((n, d))
        if kind == "clusters":
            X[: n // 2] += 8.0
        elif kind == "integers":
            X = np.round(X * 2)
        X *= draw(st.sampled_from(MAGNITUDES))
    constant = draw(st.lists(st.integers(0, d - 1), max_size=d, unique=True))
    X[:, constant] = draw(st.sampled_from([0.0, 1.0, -7.5]))
    for source, target in draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)),
                                        max_size=3)):
        X[target] = X[source]  # a few duplicate rows
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return X.astype(dtype)


def _holds(reducer, X: np.ndarray, components: int) -> None:
    """The reducer returns finite (n, components) coordinates or refuses in one line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # perplexity clamps and the like are allowed
            Y = np.asarray(reducer.fit_transform(X))
    except ValueError as exc:
        message = str(exc)
        assert message.strip() and "\n" not in message, f"{reducer!r}: unclear refusal {message!r}"
        return
    assert Y.shape == (X.shape[0], components), f"{reducer!r}: shape {Y.shape}"
    assert np.isfinite(Y).all(), f"{reducer!r}: non-finite coordinates"


@FUZZ
@given(X=datasets(), data=st.data())
def test_pca_never_fails_badly(X, data):
    n, d = X.shape
    components = data.draw(st.sampled_from([None, 1, 2, min(n, d), 0.5, 0.99, 0, min(n, d) + 1]))
    reducer = PCA(n_components=components, whiten=data.draw(st.booleans()),
                  svd_solver=data.draw(st.sampled_from(["auto", "full", "covariance", "randomized"])),
                  random_state=0, backend="cpu")
    expected = min(n, d) if components is None else components
    if isinstance(components, float):
        try:
            Y = reducer.fit_transform(X)
        except ValueError as exc:
            assert "\n" not in str(exc)
            return
        expected = reducer.n_components_
        assert Y.shape == (n, expected) and np.isfinite(Y).all()
        return
    _holds(reducer, X, expected)


@FUZZ
@given(X=datasets(), data=st.data())
def test_umap_never_fails_badly(X, data):
    n = X.shape[0]
    components = data.draw(st.integers(1, 3))
    reducer = UMAP(
        n_neighbors=data.draw(st.integers(2, max(2, min(n, 20)))),
        n_components=components,
        min_dist=data.draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])),
        spread=data.draw(st.sampled_from([0.5, 1.0, 3.0])),
        metric=data.draw(st.sampled_from(["euclidean", "cosine", "inner_product"])),
        init=data.draw(st.sampled_from(["spectral", "pca", "random"])),
        n_epochs=data.draw(st.integers(0, 25)),
        learning_rate=data.draw(st.sampled_from([0.01, 1.0, 20.0])),
        negative_sample_rate=data.draw(st.integers(0, 8)),
        random_state=0, backend="cpu",
    )
    _holds(reducer, X, components)


@FUZZ
@given(X=datasets(), data=st.data())
def test_tsne_never_fails_badly(X, data):
    components = data.draw(st.sampled_from([2, 3]))
    reducer = TSNE(
        n_components=components,
        perplexity=data.draw(st.sampled_from([0.5, 2.0, 5.0, 30.0])),
        early_exaggeration=data.draw(st.sampled_from([1.0, 12.0, 200.0])),
        learning_rate=data.draw(st.sampled_from(["auto", 1.0, 200.0, 5000.0])),
        n_iter=data.draw(st.integers(1, 60)),
        metric=data.draw(st.sampled_from(["euclidean", "cosine", "inner_product"])),
        init=data.draw(st.sampled_from(["pca", "random"])),
        dof=data.draw(st.sampled_from([0.5, 1.0, 3.0])),
        random_state=0, backend="cpu",
    )
    _holds(reducer, X, components)


HOSTILE_VALUES = [None, "x", [1], float("nan"), -1, 1e300, True, {}, 2**70, 10**400, -0.0,
                  np.float32(np.inf), np.int64(-3)]
FAST = {PCA: {}, UMAP: {"n_epochs": 5}, TSNE: {"n_iter": 20}, PaCMAP: {"n_iters": (5, 5, 5)}}


@pytest.mark.parametrize("estimator", [PCA, UMAP, TSNE, PaCMAP], ids=lambda c: c.__name__)
def test_every_parameter_refuses_hostile_values_by_name(estimator):
    """Each constructor parameter set to each hostile value: a result, or a ValueError naming it."""
    X = np.random.default_rng(0).standard_normal((40, 5)).astype(np.float32)
    refused = 0
    for name in estimator._param_names():
        if name == "verbose":  # any truthy value is a valid flag
            continue
        for value in HOSTILE_VALUES:
            reducer = estimator(**{**FAST[estimator], name: value})
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    Y = reducer.fit_transform(X)
                    # output_dens=True returns (embedding, r_orig, r_emb), as umap-learn does
                    Y = np.asarray(Y[0] if isinstance(Y, tuple) else Y)
            except ValueError as exc:
                assert name in str(exc) and "\n" not in str(exc), f"{name}={value!r}: {exc}"
                refused += 1
                continue
            assert np.isfinite(Y).all(), f"{name}={value!r}: non-finite coordinates"
    assert refused > 0
