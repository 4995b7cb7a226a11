"""densMAP (issue #17): ``densmap=True`` keeps each cluster's density in the layout.

Four Gaussian clusters with standard deviations 0.25, 0.5, 1 and 2: plain UMAP gives
them the same size, so the log local radii of the layout do not follow those of the
data (Pearson -0.003 on this fixture); densMAP correlates them (0.856; umap-learn 0.5.12
0.885 with the same settings, benchmarks/densmap_cpu.py), and the clusters' median
layout radii follow their spreads (0.45, 0.69, 1.26, 3.14 against 0.80, 0.88, 0.84,
0.81), while trustworthiness stays near plain UMAP's (0.936 against 0.956). Plain UMAP
is the negative control: the same checks fail on it. Before the density step was
weighted by each edge's sampling rate the correlation here was 0.53.
"""

from __future__ import annotations

import numpy as np
import pytest

from embedscope import UMAP

STDS = (0.25, 0.5, 1.0, 2.0)
PER = 300


@pytest.fixture(scope="module")
def clusters():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.standard_normal((PER, 8)) * s + 12 * i for i, s in enumerate(STDS)]).astype(np.float32)


@pytest.fixture(scope="module")
def radii(clusters):
    out = {}
    for densmap in (False, True):
        model = UMAP(random_state=0, backend="cpu", n_epochs=100, init="pca", densmap=densmap, output_dens=True)
        out[densmap] = model.fit_transform(clusters), model
    return out


def test_output_dens_shapes(radii, clusters):
    (embedding, r_orig, r_emb), model = radii[True]
    n = clusters.shape[0]
    assert embedding.shape == (n, 2)
    assert r_orig.shape == (n,) and r_emb.shape == (n,)
    assert r_orig.dtype == np.float32 and np.all(np.isfinite(r_orig)) and np.all(np.isfinite(r_emb))
    assert model.rad_orig_ is r_orig and model.rad_emb_ is r_emb
    # the data radii grow with the clusters' spread (log of 4x in std is log 16 in d^2)
    medians = [np.median(r_orig[i * PER:(i + 1) * PER]) for i in range(len(STDS))]
    assert np.all(np.diff(medians) > 1.0)


def test_densmap_correlates_local_radii(radii):
    plain = np.corrcoef(radii[False][0][1], radii[False][0][2])[0, 1]
    dens = np.corrcoef(radii[True][0][1], radii[True][0][2])[0, 1]
    assert dens > 0.8, dens
    assert plain < 0.3, plain  # negative control: plain UMAP evens the densities out
    assert dens > plain + 0.5


def test_densmap_keeps_neighbourhoods(radii, clusters):
    from embedscope.engine.metrics import trustworthiness

    plain = trustworthiness(clusters, radii[False][0][0])
    dens = trustworthiness(clusters, radii[True][0][0])
    assert dens > plain - 0.04, (dens, plain)  # the density term bends, not breaks, the layout


def test_densmap_orders_cluster_sizes(radii):
    (_, _, r_emb), _ = radii[True]
    medians = [np.median(r_emb[i * PER:(i + 1) * PER]) for i in range(len(STDS))]
    # each doubling of the spread widens the cluster in the layout (log radii 0.3+ apart)
    assert np.all(np.diff(medians) > 0.3), medians


def test_without_output_dens_returns_the_embedding(clusters):
    out = UMAP(random_state=0, backend="cpu", n_epochs=5, init="pca", densmap=True).fit_transform(clusters)
    assert isinstance(out, np.ndarray) and out.shape == (clusters.shape[0], 2)


def test_densmap_dens_frac_zero_is_plain_umap(clusters):
    plain = UMAP(random_state=0, backend="cpu", n_epochs=20, init="pca").fit_transform(clusters)
    zero = UMAP(random_state=0, backend="cpu", n_epochs=20, init="pca", densmap=True,
                dens_frac=0.0).fit_transform(clusters)
    np.testing.assert_array_equal(plain, zero)


@pytest.mark.parametrize("kwargs, match", [
    ({"dens_lambda": -1.0}, "dens_lambda"),
    ({"dens_frac": 1.5}, "dens_frac"),
    ({"dens_var_shift": -0.1}, "dens_var_shift"),
    ({"densmap": "yes"}, "densmap"),
    ({"metric": "inner_product"}, "inner_product"),
])
def test_bad_densmap_parameters(clusters, kwargs, match):
    kwargs = {"densmap": True, **kwargs}
    with pytest.raises(ValueError, match=match):
        UMAP(n_epochs=0, backend="cpu", **kwargs).fit(clusters[:100])


def test_backends_declare_densmap():
    from embedscope.backends import get_spec
    from embedscope.backends._registry import BackendSpec, Capabilities, Request

    asked = Request("umap", umap_options=frozenset({"densmap", "output_dens"}))
    assert get_spec("cpu").refusal(asked) is None
    assert get_spec("cuda").refusal(asked) is None  # the GPU twin (tests/cudasim/umap_dens_check.py)
    bare = BackendSpec("fake", 0, lambda: None, Capabilities(reducers=frozenset({"umap"})), lambda: np)
    why = bare.refusal(asked)
    assert why is not None and "densmap" in why
