"""The one precomputed-kNN contract (``embedscope.engine.stages.check_precomputed``),
through every graph reducer: UMAP and t-SNE accept and refuse the same graphs, in the
same words, before any work.
"""

from __future__ import annotations

import numpy as np
import pytest

from embedscope import TSNE, UMAP, make_mixture
from embedscope.kernels.knn import exact_knn

N, K = 150, 15  # UMAP(n_neighbors=16) and TSNE(perplexity=5) both use k = 15


def _reducer(cls, **params):
    """A quick fit of ``cls`` whose kNN graph has k = K neighbours (self excluded)."""
    if cls is UMAP:
        return UMAP(n_neighbors=K + 1, n_epochs=20, random_state=0, backend="cpu", **params)
    return TSNE(perplexity=K / 3, n_iter=100, random_state=0, backend="cpu", **params)


@pytest.fixture(scope="module")
def data():
    X, _ = make_mixture(N, 6, 3, random_state=0)
    indices, distances = exact_knn(X, K)
    return X, indices, distances


def _with_missing(indices, rows, columns=3):
    """``indices`` with the last ``columns`` neighbours of ``rows`` marked missing (-1)."""
    out = indices.copy()
    out[rows, -columns:] = -1
    return out


# ----------------------------------------------------------------------------- accepted


@pytest.mark.parametrize("cls", [UMAP, TSNE])
def test_a_self_column_first_is_dropped(data, cls):
    X, indices, distances = data
    with_self = (np.hstack([np.arange(N)[:, None], indices]), np.hstack([np.zeros((N, 1)), distances]))
    given = _reducer(cls, precomputed_knn=(indices, distances)).fit_transform(X)
    again = _reducer(cls, precomputed_knn=with_self).fit_transform(X)
    np.testing.assert_allclose(again, given, rtol=1e-5, atol=1e-5)
    # negative control: a graph that differs in one column gives another layout
    other = (np.hstack([indices[:, 1:], indices[:, :1]]), distances)
    assert not np.allclose(_reducer(cls, precomputed_knn=other).fit_transform(X), given, atol=1e-3)


@pytest.mark.parametrize("cls", [UMAP, TSNE])
def test_missing_entries_are_accepted(data, cls):
    X, indices, distances = data
    missing = _with_missing(indices, np.arange(0, N, 4))
    missing[1, 5] = 1  # a point listed as its own neighbour (not first) is missing too
    Y = _reducer(cls, precomputed_knn=(missing, distances)).fit_transform(X)
    assert Y.shape == (N, 2) and np.isfinite(Y).all()
    assert Y.std(axis=0).min() > 0


# ----------------------------------------------------------------------------- refused

_RANGE = r"precomputed_knn indices must lie in \[0, 150\) \(or -1 for a missing neighbour\)"
_FINITE = "precomputed_knn indices must be integers and distances finite"
_ASCENDING = "precomputed_knn distances must be ascending along each row"
_NONE_VALID = "precomputed_knn has no valid neighbour: every entry is -1 or the point itself"


def _bad_graph(case, indices, distances):
    indices, distances = indices.copy(), distances.copy()
    if case == "index n":
        indices[7, 3] = N
    elif case == "index -2":
        indices[7, 3] = -2
    elif case == "unsorted":
        distances[7, [3, 4]] = distances[7, [4, 3]] + np.array([0.0, 1.0], dtype=distances.dtype)
    elif case in ("nan", "inf", "-inf"):
        distances[7, 3] = float(case)
    elif case == "all missing":
        indices[:] = -1
    elif case == "self or missing":  # self listed after a missing first entry counts as missing
        indices[:] = np.arange(N)[:, None]
        indices[:, 0] = -1
    return indices, distances


@pytest.mark.parametrize(("case", "message"), [
    ("index n", _RANGE),
    ("index -2", _RANGE),
    ("unsorted", _ASCENDING),
    ("nan", _FINITE),
    ("inf", _FINITE),
    ("-inf", _FINITE),
    ("all missing", _NONE_VALID),
    ("self or missing", _NONE_VALID),
])
def test_bad_graphs_are_refused_alike_before_any_work(data, monkeypatch, case, message):
    X, indices, distances = data
    graph = _bad_graph(case, indices, distances)
    for cls in (UMAP, TSNE):  # no backend is resolved: the check comes first
        monkeypatch.setattr(cls, "_start", lambda *a, **k: pytest.fail("work started"))
    errors = []
    for cls in (UMAP, TSNE):
        with pytest.raises(ValueError, match=message) as err:
            _reducer(cls, precomputed_knn=graph).fit(X)
        errors.append(str(err.value))
    assert errors[0] == errors[1]


def test_the_graphs_refused_above_are_accepted_when_mended(data):
    # negative control for the refusals: the unchanged graph fits through both
    X, indices, distances = data
    for cls in (UMAP, TSNE):
        assert np.isfinite(_reducer(cls, precomputed_knn=(indices, distances)).fit_transform(X)).all()


# ----------------------------------------------------------------------------- t-SNE's P


def _fit_keeping_p(monkeypatch, X, graph):
    kept = {}
    optimise = TSNE._optimise

    def spy(self, P, *args, **kwargs):
        kept["P"] = P.copy()
        return optimise(self, P, *args, **kwargs)

    monkeypatch.setattr(TSNE, "_optimise", spy)
    Y = _reducer(TSNE, precomputed_knn=graph).fit_transform(X)
    return Y, kept["P"].tocsr()


def test_tsne_puts_no_weight_on_missing_entries(data, monkeypatch):
    X, indices, distances = data
    rows = np.arange(0, N, 3)
    missing = _with_missing(indices, rows)
    Y, P = _fit_keeping_p(monkeypatch, X, (missing, distances))
    assert np.isfinite(Y).all()
    assert abs(P.sum() - 1.0) < 1e-5 and abs(P - P.T).max() < 1e-9
    assert np.all(P.diagonal() == 0)  # missing entries were not turned into self-weight
    # pairs (i, j) whose only link was the entry marked missing: no weight left
    lists = [set(row[row >= 0]) for row in missing]
    pairs = [(i, j) for i in rows for j in indices[i, -3:] if i not in lists[j]]
    assert len(pairs) >= 20
    i, j = np.array(pairs).T
    assert np.all(np.asarray(P[i, j]).ravel() == 0)
    # negative control: the full graph weights those pairs
    _, P_full = _fit_keeping_p(monkeypatch, X, (indices, distances))
    assert np.all(np.asarray(P_full[i, j]).ravel() > 0)
