"""The layout drawn while it optimises: reducer callbacks that stop the fit.

The GPU epoch drivers' stop is checked in the CUDA simulator
(tests/cudasim/umap_sgd_check.py, umap_dens_check.py, pacmap_check.py); the page in
a browser by tests/test_app_browser.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from embedscope import TSNE, UMAP, PaCMAP, make_mixture


@pytest.fixture(scope="module")
def mixture():
    X, labels = make_mixture(400, 10, 4, random_state=0)
    return X, labels


class Recorder:
    """A callback keeping a copy of each layout it sees; true (stop) from step ``stop_at`` on."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.stop_at, self.steps, self.layouts = stop_at, [], []

    def __call__(self, step, second, layout):
        self.steps.append(step)
        self.layouts.append(np.array(layout, dtype=np.float32))
        return self.stop_at is not None and step >= self.stop_at


# ------------------------------------------------------------------ the drivers stop
@pytest.mark.parametrize("densmap", [False, True])
def test_umap_callback_stops_and_keeps_the_layout(mixture, densmap):
    X, _ = mixture
    params = dict(n_epochs=40, random_state=0, backend="cpu", densmap=densmap, dens_frac=0.9)
    stopped = Recorder(stop_at=6)
    est = UMAP(callback=stopped, **params).fit(X)
    assert stopped.steps == [1, 2, 3, 4, 5, 6]
    assert est.n_epochs_ == 6
    np.testing.assert_array_equal(est.embedding_, stopped.layouts[-1])
    full = Recorder()  # negative control: a callback returning None runs every epoch
    whole = UMAP(callback=full, **params).fit(X)
    assert full.steps[-1] == 40 and whole.n_epochs_ == 40
    assert np.abs(whole.embedding_ - est.embedding_).max() > 1e-3


def test_pacmap_callback_stops_in_its_second_phase(mixture):
    X, _ = mixture
    stopped = Recorder(stop_at=7)
    est = PaCMAP(n_iters=(5, 5, 10), random_state=0, backend="cpu", callback=stopped).fit(X)
    assert stopped.steps[-1] == 7 and est.n_iters_ == (5, 2, 0)
    np.testing.assert_array_equal(est.embedding_, stopped.layouts[-1])
    whole = PaCMAP(n_iters=(5, 5, 10), random_state=0, backend="cpu", callback=Recorder()).fit(X)
    assert whole.n_iters_ == (5, 5, 10)


def test_tsne_calls_back_every_given_iterations_and_stops(mixture):
    X, _ = mixture
    stopped = Recorder(stop_at=15)
    est = TSNE(n_iter=100, callbacks_every_iters=5, random_state=0, backend="cpu", callback=stopped).fit(X)
    assert stopped.steps == [5, 10, 15] and est.n_iter_ == 15
    np.testing.assert_array_equal(est.embedding_, stopped.layouts[-1])
    assert TSNE().callbacks_every_iters == 50  # the old cadence stays the default
    with pytest.raises(ValueError, match="callbacks_every_iters"):
        TSNE(callbacks_every_iters=0).fit(X)
