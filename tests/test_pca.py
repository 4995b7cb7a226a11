"""PCA agrees with scikit-learn on every solver, streams memory maps, fails clearly."""

from __future__ import annotations

import re

import numpy as np
import pytest

from embedscope import PCA, BackendUnavailable, DataError, Unsupported, make_mixture
from embedscope.backends import available_backends, get_spec, registered
from embedscope.engine.base import NotFittedError
from embedscope.kernels import pca as kpca

from .conftest import host

sklearn_decomposition = pytest.importorskip("sklearn.decomposition")


@pytest.fixture(scope="module")
def data():
    X, _ = make_mixture(3000, 60, 12, random_state=3)
    return X


def _same_up_to_sign(a, b, atol):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    signs = np.sign((a * b).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(a * signs, b, atol=atol)


@pytest.mark.parametrize("solver", ["full", "covariance", "randomized"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_agrees_with_sklearn(data, solver, dtype, backend):
    X = data.astype(dtype)
    ours = PCA(8, svd_solver=solver, random_state=0, backend=backend)
    refusal = get_spec(backend).refusal(ours._request(len(X)))
    if refusal is not None:  # e.g. cuML has no randomized solver: refused before any work
        with pytest.raises(Unsupported, match=re.escape(refusal)):
            ours.fit(X)
        return
    Y = host(ours.fit_transform(X))
    ref = sklearn_decomposition.PCA(8, svd_solver="full").fit(data.astype(np.float64))
    tol = 1e-9 if dtype == np.float64 and solver != "randomized" else 2e-5
    _same_up_to_sign(host(ours.components_), ref.components_, atol=tol * 10)
    np.testing.assert_allclose(host(ours.explained_variance_), ref.explained_variance_, rtol=tol * 10)
    np.testing.assert_allclose(host(ours.explained_variance_ratio_), ref.explained_variance_ratio_, rtol=tol * 10)
    np.testing.assert_allclose(host(ours.singular_values_), ref.singular_values_, rtol=tol * 10)
    Y_ref = ref.transform(data.astype(np.float64))
    scale = np.abs(Y_ref).max()
    _same_up_to_sign(Y.T, Y_ref.T, atol=tol * 10 * scale)
    assert Y.dtype == dtype
    assert ours.backend_ == backend


def test_sign_convention_matches_sklearn_exactly(data):
    X = data.astype(np.float64)
    ours = PCA(5, svd_solver="covariance").fit(X)
    ref = sklearn_decomposition.PCA(5, svd_solver="full").fit(X)
    np.testing.assert_allclose(ours.components_, ref.components_, atol=1e-9)
    pivots = np.abs(ours.components_).argmax(axis=1)
    assert (ours.components_[np.arange(5), pivots] > 0).all()


def test_whiten_and_inverse_transform(data):
    X = data.astype(np.float64)
    ours = PCA(6, whiten=True, svd_solver="full").fit(X)
    ref = sklearn_decomposition.PCA(6, whiten=True, svd_solver="full").fit(X)
    Y = ours.transform(X)
    np.testing.assert_allclose(Y.std(axis=0, ddof=1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(ours.inverse_transform(Y), ref.inverse_transform(ref.transform(X)), atol=1e-8)
    full = PCA(None, svd_solver="full").fit(X)
    np.testing.assert_allclose(full.inverse_transform(full.transform(X)), X, atol=1e-8)


def test_variance_fraction_and_auto_solver(data):
    X = data.astype(np.float64)
    ours = PCA(0.9).fit(X)
    ref = sklearn_decomposition.PCA(0.9, svd_solver="full").fit(X)
    assert ours.n_components_ == ref.n_components_
    assert ours.svd_solver_ == "covariance"  # tall and narrow
    wide = np.random.default_rng(0).standard_normal((200, 1500))
    assert PCA(5, random_state=0).fit(wide).svd_solver_ == "randomized"
    assert PCA(150).fit(wide[:, :300]).svd_solver_ == "full"


def test_randomized_is_seeded():
    X = np.random.default_rng(0).standard_normal((400, 700)).astype(np.float32)
    a = PCA(10, svd_solver="randomized", random_state=4).fit_transform(X)
    b = PCA(10, svd_solver="randomized", random_state=4).fit_transform(X)
    np.testing.assert_array_equal(a, b)


def test_memmap_streams_and_matches_in_memory(tmp_path, data):
    path = tmp_path / "big.npy"
    np.save(path, data)
    mm = np.load(path, mmap_mode="r")
    streamed = PCA(6, random_state=0).fit(mm)
    assert streamed.svd_solver_ == "covariance"
    in_memory = PCA(6, svd_solver="covariance").fit(data)
    np.testing.assert_allclose(streamed.components_, in_memory.components_, atol=1e-6)
    np.testing.assert_allclose(streamed.transform(mm), in_memory.transform(data), atol=1e-4)
    rand = PCA(6, svd_solver="randomized", random_state=0).fit(mm)
    _same_up_to_sign(rand.components_, in_memory.components_, atol=1e-4)


def test_chunked_covariance_is_exact_across_chunk_sizes(data):
    X = data.astype(np.float64) + 1e4  # a large common offset must not cost digits
    m1, c1 = kpca.mean_and_covariance(X, np, chunk_rows=37)
    _m2, c2 = kpca.mean_and_covariance(X, np, chunk_rows=len(X))
    np.testing.assert_allclose(m1, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(c1, np.cov(X, rowvar=False), atol=1e-9)
    np.testing.assert_allclose(c1, c2, atol=1e-9)


def test_estimator_contract(data):
    sklearn_base = pytest.importorskip("sklearn.base")
    est = PCA(4, whiten=True, random_state=2)
    clone = sklearn_base.clone(est)
    assert clone.get_params() == est.get_params()
    assert est.set_params(n_components=3).n_components == 3
    assert repr(est) == "PCA(n_components=3, whiten=True, random_state=2)"
    with pytest.raises(ValueError, match="no parameter 'bogus'"):
        est.set_params(bogus=1)
    before = est.get_params()
    est.fit(data)
    assert est.get_params() == before  # fit never rewrites parameters


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_components": 0}, "n_components=0 must be between 1 and 60"),
        ({"n_components": 61}, "n_components=61"),
        ({"n_components": 1.5}, r"fraction of variance in \(0, 1\)"),
        ({"n_components": "two"}, "n_components must be"),
        ({"svd_solver": "magic"}, "svd_solver='magic'"),
        ({"backend": "tpu"}, "unknown backend 'tpu'"),
        ({"iterated_power": -1}, "iterated_power"),
    ],
)
def test_bad_parameters(data, params, message):
    with pytest.raises(ValueError, match=message):
        PCA(**params).fit(data)


def test_bad_usage(data):
    with pytest.raises(NotFittedError, match="not fitted"):
        PCA(2).transform(data)
    est = PCA(2).fit(data)
    with pytest.raises(ValueError, match="fitted on 60"):
        est.transform(data[:, :10])
    bad = data.copy()
    bad[5, 5] = np.nan
    with pytest.raises(DataError, match="NaN"):
        PCA(2).fit(bad)


@pytest.mark.parametrize("name", registered())
def test_explicit_backend_that_cannot_run_names_what_is_missing(data, name):
    ok, detail = available_backends()[name]
    if ok:
        pytest.skip(f"backend {name!r} runs here")
    with pytest.raises(BackendUnavailable, match=re.escape(f"{detail}. Install with: {get_spec(name).install_hint}")):
        PCA(2, backend=name).fit(data)


@pytest.mark.words
def test_word_vectors_from_memmap(words):
    vectors, _ = words
    ours = PCA(50, random_state=0).fit(vectors)
    ref = sklearn_decomposition.PCA(50, svd_solver="full").fit(np.asarray(vectors, np.float64))
    np.testing.assert_allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=1e-3, atol=1e-6)
