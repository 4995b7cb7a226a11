"""Shared fixtures: backends that exist here, the real word vectors, and marks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedscope.backends import probe_cuda

ROOT = Path(__file__).resolve().parents[1]
WORDS_DIR = ROOT.parent / "shared" / "data" / "words"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if probe_cuda().ok:
        return
    skip = pytest.mark.skip(reason=f"no usable GPU: {probe_cuda().detail}")
    for item in items:
        # the mark, not item.keywords: a test or param id containing "gpu" is no GPU test
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_reduction_left_running():
    """Wait at each test's end for the reductions an explorer started in the background:
    left running, one printed its progress lines into a later test's captured output."""
    yield
    import sys
    import threading

    app = sys.modules.get("embedscope.viz.app")  # not imported: no explorer started one
    if app is None:
        return
    for thread in threading.enumerate():
        if thread.name.startswith(app.REDUCE_THREAD):
            thread.join(timeout=120)


def _backend_params() -> list:
    """One param per registered backend, ``auto`` order; each one that cannot run here is
    skipped with its probe's reason, and GPU backends carry the ``gpu`` mark."""
    from embedscope.backends import available_backends, get_spec

    params = []
    for name, (ok, detail) in available_backends().items():
        marks = [pytest.mark.gpu] if get_spec(name).gpu else []
        if not ok:
            marks.append(pytest.mark.skip(reason=f"backend {name!r} cannot run here: {detail}"))
        params.append(pytest.param(name, id=name, marks=marks))
    return params


@pytest.fixture(scope="session", params=_backend_params())
def backend(request: pytest.FixtureRequest) -> str:
    """The name of every registered backend that can run here (the others are skipped
    with their probe's reason: cuda and cuml without a GPU)."""
    return request.param


def gpu_modules_loaded_by(statement: str) -> list[str]:
    """GPU modules (cupy, cuml, numba.cuda) a fresh interpreter has loaded after ``statement``."""
    import ast
    import subprocess
    import sys

    code = (f"import sys; {statement}; "
            "print([m for m in sys.modules if m.split('.')[0] in ('cupy', 'cuml', 'numba_cuda') "
            "or m.startswith('numba.cuda')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return ast.literal_eval(out.stdout.strip())


def host(array) -> np.ndarray:
    """A numpy copy of a numpy or cupy array, for assertions."""
    return array.get() if type(array).__module__.startswith("cupy") else np.asarray(array)


@pytest.fixture(scope="session")
def words():
    """The real word vectors (30,000 x 384, float16) and their metadata, or a skip."""
    vectors, meta = WORDS_DIR / "vectors.npy", WORDS_DIR / "meta.csv.gz"
    if not (vectors.exists() and meta.exists()):
        pytest.skip(f"word vectors not found at {WORDS_DIR}")
    import pandas as pd

    return np.load(vectors, mmap_mode="r"), pd.read_csv(meta, keep_default_na=False)


@pytest.fixture(scope="session")
def mixture_5k():
    """The seeded 20-cluster mixture of the quality tests: 5,000 x 50."""
    from embedscope.datasets import make_mixture

    return make_mixture(5000, 50, 20, random_state=0)


@pytest.fixture
def fake_cuda_only(monkeypatch):
    """The dispatcher sees a GPU (numpy standing in for cupy) and no cuML."""
    from embedscope.backends import _registry as dispatch

    monkeypatch.setattr(dispatch, "probe_cuda", lambda: dispatch._Probe(True, "fake GPU"))
    monkeypatch.setattr(dispatch, "probe_cuml", lambda: dispatch._Probe(False, "cuml is not installed"))
    monkeypatch.setattr(dispatch, "device_xp", lambda: np)
