"""Backend resolution explains itself and never needs a GPU to import."""

from __future__ import annotations

import numpy as np
import pytest

from embedscope import BackendUnavailable, _array, resolve_backend
from embedscope.backends import _registry as dispatch

from .conftest import gpu_modules_loaded_by


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'gpu'; choose one of auto, cpu, cuda, cuml"):
        resolve_backend("gpu")


def test_cpu_requested():
    backend = resolve_backend("cpu")
    assert backend.name == "cpu" and backend.xp is np and backend.reason == "requested"
    assert "CPU" in backend.device


@pytest.mark.skipif(dispatch.probe_cuda().ok, reason="a GPU is usable here")
def test_auto_without_gpu_says_why():
    backend = resolve_backend("auto")
    assert backend.name == "cpu"
    assert "cuda:" in backend.reason and "cuml:" in backend.reason
    for name in ("cuda", "cuml"):
        with pytest.raises(BackendUnavailable, match="Install with"):
            resolve_backend(name)


def test_disable_gpu_env(monkeypatch):
    monkeypatch.setenv("EMBEDSCOPE_DISABLE_GPU", "1")
    dispatch.probe_cuda.cache_clear()
    dispatch.probe_cuml.cache_clear()
    try:
        assert resolve_backend("auto").name == "cpu"
        assert "disabled" in dispatch.available_backends()["cuda"][1]
    finally:
        dispatch.probe_cuda.cache_clear()
        dispatch.probe_cuml.cache_clear()


def test_unsupported_backend_for_a_reducer():
    with pytest.raises(dispatch.Unsupported, match="not implemented"):
        resolve_backend("cuml", supports=("cpu", "cuda"))
    assert "not implemented" in resolve_backend("auto", supports=("cpu",)).reason


def test_import_pulls_in_no_gpu_library():
    assert gpu_modules_loaded_by("import embedscope") == []


def test_to_output_keeps_numpy():
    a = np.arange(6.0).reshape(3, 2)
    assert _array.to_output(a, np.zeros(3)) is not None
    assert isinstance(_array.to_output(a, [[1, 2]]), np.ndarray)


@pytest.mark.gpu
def test_to_output_returns_cupy_for_cupy_input():
    import cupy

    like = cupy.zeros((2, 2))
    assert isinstance(_array.to_output(np.ones((2, 2)), like), cupy.ndarray)
