"""The layout drawn while it optimises: stopping callbacks, LiveFit, LiveView, ``serve --live``.

The GPU epoch drivers' stop is checked in the CUDA simulator
(tests/cudasim/umap_sgd_check.py, umap_dens_check.py, pacmap_check.py); the page in
a browser by tests/test_app_browser.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embedscope import PCA, TSNE, UMAP, PaCMAP, make_mixture
from embedscope.errors import DataError

pytest.importorskip("panel")


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


# ------------------------------------------------------------------ LiveFit
def test_livefit_snapshots_arrive_change_and_end_on_the_final_layout(mixture):
    from embedscope.viz.live import LiveFit

    X, _ = mixture
    est = UMAP(n_epochs=60, random_state=0, backend="cpu")
    fit = LiveFit(est, X, every=1e-4).start()
    assert fit.wait(120) and fit.error is None, fit.error
    assert fit.copies >= 10  # one per epoch at this period
    last = fit.snapshot()
    assert last.step == 60 and last.total == 60 and last.version == fit.copies
    np.testing.assert_array_equal(last.layout, est.embedding_)
    assert est.callback is None  # the reducer's parameter is given back
    assert not fit.stopped and est.n_epochs_ == 60


def test_livefit_throttles_copies(mixture):
    from embedscope.viz.live import LiveFit

    X, _ = mixture
    fit = LiveFit(UMAP(n_epochs=60, random_state=0, backend="cpu"), X, every=30).start()
    assert fit.wait(120) and fit.error is None
    assert fit.copies == 2  # the first epoch, then the final layout


def test_livefit_stop_keeps_the_layout_and_ends_early(mixture):
    import time

    from embedscope.viz.live import LiveFit

    X, _ = mixture
    seen = Recorder()
    est = UMAP(n_epochs=100_000, random_state=0, backend="cpu", callback=seen)
    fit = LiveFit(est, X, every=1e-4).start()
    deadline = time.monotonic() + 60
    while (fit.snapshot() is None or fit.snapshot().step < 5) and time.monotonic() < deadline:
        time.sleep(0.01)
    fit.stop()
    assert fit.wait(60) and fit.stopped and fit.error is None
    assert 5 <= est.n_epochs_ < 1000 and "stopped after" in fit.status
    np.testing.assert_array_equal(fit.embedding, est.embedding_)
    np.testing.assert_array_equal(fit.snapshot().layout, est.embedding_)
    assert seen.steps[-1] == est.n_epochs_  # the user's callback was chained
    assert est.callback is seen


@pytest.mark.parametrize("reducer", [
    TSNE(n_iter=60, random_state=0, backend="cpu"),
    PaCMAP(n_iters=(10, 10, 40), random_state=0, backend="cpu"),
], ids=["tsne", "pacmap"])
def test_livefit_tsne_and_pacmap(mixture, reducer):
    from embedscope.viz.live import TSNE_EVERY_ITERS, LiveFit

    X, _ = mixture
    fit = LiveFit(reducer, X, every=1e-4).start()
    assert fit.wait(120) and fit.error is None, fit.error
    snap = fit.snapshot()
    assert snap.total == 60 == snap.step
    if fit.method == "tsne":
        assert fit.copies == 60 // TSNE_EVERY_ITERS + 1
        assert reducer.callbacks_every_iters == 50  # restored
    else:
        assert fit.copies >= 3
    np.testing.assert_array_equal(snap.layout, reducer.embedding_)


def test_livefit_tsne_stops_early_keeping_the_users_cadence(mixture):
    from embedscope.viz.live import LiveFit

    X, _ = mixture
    user = Recorder(stop_at=50)
    est = TSNE(n_iter=500, random_state=0, backend="cpu", callback=user, callbacks_every_iters=25)
    fit = LiveFit(est, X, every=1e-4).start()
    assert fit.wait(120) and fit.error is None
    assert user.steps == [25, 50] and est.n_iter_ == 50  # the user's callback asked to stop
    assert est.callbacks_every_iters == 25 and est.callback is user


def test_livefit_refuses_what_it_cannot_watch(mixture):
    from embedscope.viz.live import LiveFit

    X, _ = mixture
    with pytest.raises(ValueError, match="UMAP, TSNE or PaCMAP"):
        LiveFit(PCA(n_components=2), X)
    with pytest.raises(ValueError, match="n_components=3"):
        LiveFit(UMAP(n_components=3), X)
    with pytest.raises(ValueError, match="every"):
        LiveFit(UMAP(), X, every=0)
    with pytest.raises(ValueError, match="callbacks_every_iters"):
        LiveFit(TSNE(callbacks_every_iters="x"), X)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        LiveFit(UMAP(), bad)
    with pytest.raises(DataError):
        LiveFit(UMAP(), X[:, :1].ravel())


def test_livefit_reports_a_failed_fit(mixture):
    from embedscope.viz.live import LiveFit

    X, _ = mixture
    done = []
    fit = LiveFit(UMAP(n_neighbors=1), X, on_done=done.append).start()
    assert fit.wait(60) and fit.error and "n_neighbors" in fit.error
    assert done == [None] and fit.embedding is None


# ------------------------------------------------------------------ LiveView
def _ink(rgba: np.ndarray) -> np.ndarray:
    return (rgba[..., :3] < 230).any(axis=2)


def test_liveview_draws_snapshots_and_hands_over(mixture):
    from embedscope.viz.live import LiveFit, LiveView

    X, labels = mixture
    meta = pd.DataFrame({"label": labels.astype(str)})
    fit = LiveFit(UMAP(n_epochs=30, random_state=0, backend="cpu"), X, every=1e-4)
    handed = []
    view = LiveView(fit, meta, "label", width=400, height=300, on_done=lambda: handed.append(True))
    assert view.frames == 0 and not handed
    fit.start()
    assert fit.wait(120)
    assert view.poll() is True and view.frames == 1 and not handed  # the final frame is shown first
    assert view.poll() is False and view.frames == 1 and handed == [True]
    image = view.source.data["image"][0].view(np.uint8).reshape(150, 200, 4)
    assert 0.01 < _ink(image).mean() < 0.6
    # categories coloured: more than one hue among the inked pixels
    assert len({tuple(p) for p in image[_ink(image)][:, :3] // 32}) > 3
    x0, y0, x1, y1 = view.figure.x_range.start, view.figure.y_range.start, view.figure.x_range.end, view.figure.y_range.end
    Y = fit.embedding
    assert x0 < Y[:, 0].min() and Y[:, 0].max() < x1 and y0 < Y[:, 1].min() and Y[:, 1].max() < y1


def test_liveview_frame_puts_points_where_they_are():
    from embedscope.viz.live import LiveFit, LiveView

    X, _ = make_mixture(50, 5, 2, random_state=0)
    view = LiveView(LiveFit(UMAP(), X), width=200, height=200)
    layout = np.array([[0.0, 0.0], [10.0, 10.0]] + [[0.0, 0.0]] * 48, dtype=np.float32)
    rgba, (x0, y0, x1, y1) = view.frame_rgba(layout)
    ink = _ink(rgba)
    (r0, c0), (r1, c1) = np.argwhere(ink)  # rows bottom-up: (0, 0) is in the first rows
    assert r0 < 5 and c0 < 5 and r1 > 94 and c1 > 94 and ink.sum() == 2
    assert x0 < 0 < 10 < x1 and y0 < 0 < 10 < y1
    assert not _ink(view.frame_rgba(np.full((50, 2), np.nan, np.float32))[0]).any()


def test_liveview_stop_button_stops_the_fit(mixture):
    from embedscope.viz.live import LiveFit, LiveView

    X, _ = mixture
    fit = LiveFit(UMAP(n_epochs=100_000, random_state=0, backend="cpu"), X, every=1e-4)
    view = LiveView(fit)
    fit.start()
    view.stop_button.clicks += 1
    assert view.stop_button.disabled
    assert fit.wait(60) and fit.stopped
    assert fit.reducer.n_epochs_ < 100_000
    view.poll()
    assert "stopped after" in view.status.object or "stopped" in fit.status


def test_embeddingplot_live_becomes_the_plot(mixture):
    from embedscope.viz.figure import EmbeddingPlot
    from embedscope.viz.live import LiveView

    X, labels = mixture
    meta = pd.DataFrame({"label": labels.astype(str)})
    est = PaCMAP(n_iters=(5, 5, 10), random_state=0, backend="cpu")
    view = EmbeddingPlot.live(est, X, meta, "label", width=300, height=200)
    assert isinstance(view, LiveView)
    assert view.fit.wait(120)
    assert view.poll() and view.plot is None  # the final frame first
    assert not view.poll() and isinstance(view.plot, EmbeddingPlot)
    np.testing.assert_array_equal(view.plot.frame[["x", "y"]].to_numpy(np.float32), est.embedding_)
    with pytest.raises(DataError, match="rows"):
        EmbeddingPlot.live(UMAP(), X, meta.iloc[:10])


# ------------------------------------------------------------------ serve --live
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    X, _ = make_mixture(300, 8, 3, random_state=1)
    root = tmp_path_factory.mktemp("live")
    np.save(root / "vectors.npy", X)
    pd.DataFrame({"x": X[:, 0], "y": X[:, 1]}).to_parquet(root / "coords.parquet", index=False)
    return root


def test_serve_live_refuses_coordinates_pca_and_two_inputs(files, capsys):
    from embedscope.viz.cli import main

    cases = [([str(files / "coords.parquet")], "already holds 2-D coordinates"),
             ([str(files / "vectors.npy"), "--method", "pca"], "--method pca has no iterations"),
             ([str(files / "coords.parquet"), str(files / "coords.parquet")], "give one vectors file")]
    for args, message in cases:
        assert main(["serve", *args, "--live", "--port", "0", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_appdata_live_finishes_as_the_explorer_data(files):
    from embedscope.viz.app import AppData

    data = AppData(str(files / "vectors.npy"), method="umap", verbose=False, live=True)
    assert data.live is not None and "drawn live" in data.note
    assert not data.live.started  # serve() starts it
    data.live.start()
    assert data.wait(120) and data.error is None
    np.testing.assert_array_equal(data.frame[["x", "y"]].to_numpy(np.float32), data.live.embedding)
    plain = AppData(str(files / "vectors.npy"), method="pca", verbose=False)
    assert plain.live is None and plain.wait(60)
