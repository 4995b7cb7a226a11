"""The backend registry: resolution, why ``auto`` picked what it did, capability refusals.

GPUs are stood in for by monkeypatching the probes (``probe_cuda``, ``probe_cuml``)
and ``device_xp`` in ``embedscope.backends._registry``; nothing here needs a GPU.
Only ``_start`` (resolution) runs for GPU backends, never a kernel.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from embedscope import PCA, TSNE, UMAP, BackendUnavailable, Unsupported, _array, resolve_backend
from embedscope.backends import (
    BackendSpec,
    Capabilities,
    backend_names,
    get_spec,
    register,
    registered,
)
from embedscope.backends import _registry as registry
from embedscope.backends import cpu as cpu_backend
from embedscope.datasets import make_mixture

from .conftest import gpu_modules_loaded_by

SHAPE = (1000, 5)  # n large enough that no perplexity below is clamped


@pytest.fixture(autouse=True)
def _no_simulator(monkeypatch):
    # Under NUMBA_ENABLE_CUDASIM an explicit "cuda" resolves to the simulator.
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)


@pytest.fixture
def no_gpu(monkeypatch):
    """No GPU and no cuML, with fixed reasons, whatever this machine has."""
    monkeypatch.setattr(registry, "probe_cuda", lambda: registry._Probe(False, "cupy is not installed"))
    monkeypatch.setattr(registry, "probe_cuml", lambda: registry._Probe(False, "cuml is not installed"))


@pytest.fixture
def fake_gpu_with_cuml(monkeypatch):
    """A GPU (numpy standing in for cupy) and cuML, for resolution only."""
    monkeypatch.setattr(registry, "probe_cuda", lambda: registry._Probe(True, "fake GPU"))
    monkeypatch.setattr(registry, "probe_cuml", lambda: registry._Probe(True, "fake cuml"))
    monkeypatch.setattr(registry, "device_xp", lambda: np)


# ----------------------------------------------------------------------------- names


def test_registered_names_in_auto_order():
    assert registered() == ("cuml", "cuda", "cpu")
    assert backend_names() == ("auto", "cpu", "cuda", "cuml")
    priorities = [get_spec(name).priority for name in registered()]
    assert priorities == sorted(priorities, reverse=True)
    assert [name for name in registered() if get_spec(name).gpu] == ["cuml", "cuda"]


@pytest.mark.parametrize("name", ["gpu", "CPU", "", None, 1])
def test_unknown_backend_lists_every_name(name):
    with pytest.raises(ValueError, match=r"unknown backend .*; choose one of auto, cpu, cuda, cuml$"):
        resolve_backend(name)


def test_unknown_backend_from_an_estimator():
    with pytest.raises(ValueError, match="unknown backend 'gpu'; choose one of auto, cpu, cuda, cuml"):
        UMAP(backend="gpu").fit(np.random.default_rng(0).normal(size=(50, 3)))


def test_cpu_requested():
    backend = resolve_backend("cpu")
    assert (backend.name, backend.xp, backend.reason, backend.considered) == ("cpu", np, "requested", ())
    assert backend.device.startswith("CPU, ") and backend.device.endswith(" threads")
    assert backend.kernels is cpu_backend.kernels() and backend.delegate is None
    assert str(backend) == f"cpu ({backend.device}; requested)"


def test_gpu_backends_requested_on_a_fake_gpu(fake_gpu_with_cuml):
    cuda = resolve_backend("cuda")
    assert (cuda.name, cuda.xp, cuda.device, cuda.reason) == ("cuda", np, "fake GPU", "requested")
    assert cuda.kernels is not None and cuda.delegate is None
    assert cuda.capabilities.max_neighbors == 128
    cuml = resolve_backend("cuml")
    assert (cuml.name, cuml.device, cuml.reason) == ("cuml", "fake cuml", "requested")
    assert cuml.delegate is sys.modules["embedscope.backends.cuml"]
    with pytest.raises(RuntimeError, match="no kernel table"):  # a delegate runs its own stages
        cuml.kernels  # noqa: B018
    assert resolve_backend("auto").name == "cuml"


@pytest.mark.parametrize(("name", "missing", "install"), [
    ("cuda", "cupy is not installed", "pip install 'embedscope[gpu]'"),
    ("cuml", "cuml is not installed", "conda install -c rapidsai"),
])
def test_unavailable_gpu_backend_says_what_is_missing_and_how_to_install(no_gpu, name, missing, install):
    with pytest.raises(BackendUnavailable, match=f"backend='{name}' is not available: {missing}") as err:
        resolve_backend(name)
    assert install in str(err.value) and "or use backend='cpu'" in str(err.value)
    with pytest.raises(BackendUnavailable, match=missing):
        PCA(2, backend=name).fit(np.random.default_rng(0).normal(size=(50, 4)))


def test_fitted_backend_does_not_probe(no_gpu):
    fitted = registry.fitted_backend("cuda")  # the probe says no GPU; a fitted name needs none
    assert (fitted.name, fitted.reason) == ("cuda", "fitted") and fitted.capabilities.max_neighbors == 128


# ----------------------------------------------------------------------------- auto


def test_auto_without_a_gpu_picks_cpu_and_says_why(no_gpu):
    backend = resolve_backend("auto")
    assert backend.name == "cpu" and backend.xp is np
    assert backend.considered == (("cuml", "cuml is not installed"), ("cuda", "cupy is not installed"),
                                  ("cpu", "picked"))
    assert backend.reason == "auto: cuml: cuml is not installed; cuda: cupy is not installed; cpu: picked"


@pytest.mark.parametrize("cls", [PCA, UMAP, TSNE])
def test_estimators_record_what_auto_weighed(no_gpu, cls):
    est = cls()
    backend, _ = est._start(SHAPE)
    assert backend.name == est.backend_ == "cpu"
    assert est.backend_considered_ == [("cuml", "cuml is not installed"), ("cuda", "cupy is not installed"),
                                       ("cpu", "picked")]
    assert est.backend_reason_ == "auto: cuml: cuml is not installed; cuda: cupy is not installed; cpu: picked"


@pytest.mark.parametrize("cls", [PCA, UMAP, TSNE])
def test_auto_with_a_gpu_and_without_cuml_picks_cuda(fake_cuda_only, cls):
    est = cls()
    assert est._start(SHAPE)[0].name == est.backend_ == "cuda"
    assert est.backend_considered_ == [("cuml", "cuml is not installed"), ("cuda", "picked")]


def test_explicit_request_records_no_alternatives(fake_cuda_only):
    est = UMAP(backend="cpu")
    est._start(SHAPE)
    assert (est.backend_, est.backend_reason_, est.backend_considered_) == ("cpu", "requested", [])


@pytest.mark.skipif(registry.probe_cuda().ok, reason="a GPU is usable here")
def test_auto_on_this_machine_passes_over_each_gpu_backend_with_its_probe_reason():
    backend = resolve_backend("auto")
    detail = {name: why for name, (_, why) in registry.available_backends().items()}
    assert backend.name == "cpu"
    assert backend.considered == (("cuml", detail["cuml"]), ("cuda", detail["cuda"]), ("cpu", "picked"))


def test_disable_gpu_env(monkeypatch):
    monkeypatch.setenv("EMBEDSCOPE_DISABLE_GPU", "1")
    registry.probe_cuda.cache_clear()
    registry.probe_cuml.cache_clear()
    try:
        disabled = "GPU use disabled by EMBEDSCOPE_DISABLE_GPU"
        assert registry.available_backends()["cuda"] == (False, disabled)
        backend = resolve_backend("auto")
        assert backend.name == "cpu" and ("cuda", disabled) in backend.considered
        with pytest.raises(BackendUnavailable, match="EMBEDSCOPE_DISABLE_GPU"):
            resolve_backend("cuda")
        # negative control: "0" leaves GPU use on (the probe then says something else)
        monkeypatch.setenv("EMBEDSCOPE_DISABLE_GPU", "0")
        registry.probe_cuda.cache_clear()
        assert registry.probe_cuda().detail != disabled
    finally:
        registry.probe_cuda.cache_clear()
        registry.probe_cuml.cache_clear()


# ----------------------------------------------------------------------------- capability refusals


def test_cpu_refuses_ivf_and_names_nndescent():
    with pytest.raises(Unsupported, match=r"knn_method='ivf' is the GPU approximate search.*'nndescent'"):
        UMAP(backend="cpu", knn_method="ivf")._start(SHAPE)
    for method in ("auto", "exact", "nndescent"):  # negative control
        assert UMAP(backend="cpu", knn_method=method)._start(SHAPE)[0].name == "cpu"


def test_auto_with_ivf_and_no_gpu_says_cpu_cannot(no_gpu):
    # the cure is a setting, so it is Unsupported (a ValueError), with cpu's hint whole
    with pytest.raises(Unsupported, match=r"cpu: cannot run these settings \(knn_method='ivf' is the GPU.*"
                                          r"use knn_method='nndescent' or 'auto'\)$"):
        UMAP(knn_method="ivf")._start(SHAPE)


def test_auto_with_ivf_passes_over_nothing_on_a_gpu(fake_cuda_only):
    est = UMAP(knn_method="ivf")
    assert est._start(SHAPE)[0].name == "cuda"


def test_cuda_refuses_nndescent(fake_cuda_only):
    with pytest.raises(Unsupported, match=r"'nndescent' has no GPU version yet.*backend='cpu'"):
        UMAP(backend="cuda", knn_method="nndescent")._start(SHAPE)
    est = UMAP(knn_method="nndescent")
    assert est._start(SHAPE)[0].name == "cpu"
    assert est.backend_considered_[1] == ("cuda", "cannot run these settings (knn_method='nndescent' has no "
                                                  "GPU version yet; on backend='cuda' use knn_method='auto', "
                                                  "'exact' or 'ivf' (approximate), or backend='cpu')")


# (reducer, settings at the limit, settings one past it, the hint the refusal ends with)
_NEIGHBOUR_LIMITS = [
    (UMAP, {"n_neighbors": 129}, {"n_neighbors": 130},
     r"finds at most 128 neighbours per point \(n_neighbors <= 129; got 130\); use backend='cpu' "
     r"or pass precomputed_knn$"),
    (TSNE, {"perplexity": 42.0}, {"perplexity": 43.0},
     r"finds at most 128 neighbours per point and t-SNE needs 3 x perplexity = 129; use perplexity <= 42, "
     r"pass precomputed_knn, or use backend='cpu'$"),
]


@pytest.mark.parametrize(("cls", "fits", "too_many", "message"), _NEIGHBOUR_LIMITS)
def test_cuda_refuses_more_neighbours_than_it_finds_with_each_reducers_hint(fake_cuda_only, cls, fits,
                                                                           too_many, message):
    assert cls(backend="cuda", **fits)._start(SHAPE)[0].name == "cuda"
    with pytest.raises(Unsupported, match=message):
        cls(backend="cuda", **too_many)._start(SHAPE)
    # under auto the same settings pass cuda over, with the reason recorded
    est = cls(**too_many)
    assert est._start(SHAPE)[0].name == "cpu"
    assert [name for name, _ in est.backend_considered_] == ["cuml", "cuda", "cpu"]
    assert est.backend_considered_[1][1].startswith(
        "cannot run these settings (backend='cuda' finds at most 128 neighbours per point")
    assert "cuda: cannot run these settings (backend='cuda' finds at most 128" in est.backend_reason_
    # a graph given up front needs no search, so no limit
    n = SHAPE[0]
    knn = (np.zeros((n, 200), np.int32), np.zeros((n, 200), np.float32))
    assert cls(backend="cuda", precomputed_knn=knn, **too_many)._start(SHAPE)[0].name == "cuda"


def test_auto_reason_keeps_the_umap_neighbour_hint_whole(fake_cuda_only):
    est = UMAP(n_neighbors=130)
    est._start(SHAPE)
    reason = est.backend_considered_[1][1]
    assert reason.count("(") == reason.count(")") and "got 130" in reason


# cuML refuses what its adapter cannot map; (estimator settings, refusal)
_CUML_REFUSALS = [
    (TSNE, {"n_components": 3}, "cuML's t-SNE is 2-D only"),
    (TSNE, {"dof": 0.5}, "no heavy-tail dof"),
    (TSNE, {"metric": "inner_product"}, "not metric='inner_product'"),
    (UMAP, {"init": "pca"}, "init='spectral', 'random' or an array"),
    (UMAP, {"callback": lambda *a: None}, "does not call Python epoch callbacks"),
    (UMAP, {"metric": "inner_product"}, "not metric='inner_product'"),
    (PCA, {"svd_solver": "randomized"}, "no svd_solver='randomized'"),
    (PCA, {"n_components": 0.9}, "integer n_components"),
]


@pytest.mark.parametrize(("cls", "params", "message"), _CUML_REFUSALS)
def test_cuml_refuses_what_its_adapter_refuses(fake_gpu_with_cuml, cls, params, message):
    with pytest.raises(Unsupported, match=message + r".*use backend='cuda'"):
        cls(backend="cuml", **params)._start(SHAPE)
    est = cls(**params)
    assert est._start(SHAPE)[0].name == "cuda"
    assert est.backend_considered_[0][0] == "cuml"
    assert est.backend_considered_[0][1].startswith("cannot run these settings (") and message in \
        est.backend_considered_[0][1]
    assert est.backend_considered_[1] == ("cuda", "picked")


@pytest.mark.parametrize("cls", [PCA, UMAP, TSNE])
def test_cuml_runs_the_defaults(fake_gpu_with_cuml, cls):
    # negative control for the refusals above
    est = cls(backend="cuml")
    assert est._start(SHAPE)[0].name == "cuml"
    assert cls()._start(SHAPE)[0].name == "cuml"


# ----------------------------------------------------------------------------- a new backend


@pytest.fixture
def toy_backend(monkeypatch, no_gpu):
    """A "toy" backend above cpu that runs UMAP only, on cpu's kernels: one register call."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    register(BackendSpec(name="toy", priority=15, probe=lambda: registry._Probe(True, "toy device"),
                         capabilities=Capabilities(reducers=frozenset({"umap"})),
                         array_module=lambda: np, kernels=cpu_backend.kernels))
    return "toy"


def test_registering_a_backend_is_one_call(toy_backend):
    assert registered() == ("cuml", "cuda", "toy", "cpu")
    assert backend_names() == ("auto", "cpu", "cuda", "cuml", "toy")
    umap = UMAP()
    assert umap._start(SHAPE)[0].name == "toy"
    assert umap.backend_reason_ == ("auto: cuml: cuml is not installed; cuda: cupy is not installed; "
                                    "toy: picked")
    for cls in (PCA, TSNE):
        est = cls()
        assert est._start(SHAPE)[0].name == "cpu"
        assert est.backend_considered_[2] == ("toy", "not implemented for this reducer")
    with pytest.raises(Unsupported, match="backend='toy' is not implemented for this reducer yet; "
                                          "available: cuml, cuda, cpu"):
        TSNE(backend="toy")._start(SHAPE)
    with pytest.raises(ValueError, match="choose one of auto, cpu, cuda, cuml, toy"):
        resolve_backend("tpu")


def test_a_registered_backend_runs_a_fit_on_its_kernel_table(toy_backend):
    X, _ = make_mixture(300, 5, 3, random_state=0)
    toy = UMAP(n_epochs=30, init="random", random_state=0, backend="toy").fit(X)
    cpu = UMAP(n_epochs=30, init="random", random_state=0, backend="cpu").fit(X)
    assert toy.backend_ == "toy" and cpu.backend_ == "cpu"
    np.testing.assert_array_equal(toy.embedding_, cpu.embedding_)  # the same kernels ran
    np.testing.assert_array_equal(toy.transform(X[:20]), cpu.transform(X[:20]))


def test_a_backend_registered_for_umap_only_runs_a_umap_fit_with_pca_init(toy_backend):
    X, _ = make_mixture(300, 5, 3, random_state=0)
    toy = UMAP(n_epochs=30, init="pca", random_state=0, backend="toy").fit(X)
    cpu = UMAP(n_epochs=30, init="pca", random_state=0, backend="cpu").fit(X)
    np.testing.assert_array_equal(toy.embedding_, cpu.embedding_)


def test_registry_is_restored_after_the_toy_backend():
    assert "toy" not in registered()


# ----------------------------------------------------------------------------- imports and array types


def test_import_pulls_in_no_gpu_library():
    assert gpu_modules_loaded_by("import embedscope") == []


def test_to_output_keeps_host_input_on_the_host():
    a = np.arange(6.0).reshape(3, 2)
    out = _array.to_output(a, np.zeros(3))
    assert out is a  # numpy in, the same numpy out: no copy
    listed = _array.to_output([[1, 2]], [[0, 0]])
    assert type(listed) is np.ndarray and listed.tolist() == [[1, 2]]


class _FakeCupyArray:
    """Reads as a cupy array to ``_array`` (its type lives in module ``cupy``)."""

    __module__ = "cupy._core.core"

    def __init__(self, data):
        self.data = np.asarray(data)

    def get(self):
        return self.data.copy()


def test_to_output_follows_a_cupy_input(monkeypatch):
    fake = types.ModuleType("cupy")
    fake.asarray = _FakeCupyArray
    monkeypatch.setitem(sys.modules, "cupy", fake)
    like = _FakeCupyArray(np.zeros((2, 2)))
    out = _array.to_output(np.ones((2, 2)), like)
    assert isinstance(out, _FakeCupyArray) and out.data.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    already = _FakeCupyArray(np.eye(2))
    assert _array.to_output(already, like) is already  # no second copy
    back = _array.to_output(already, np.zeros(2))  # device result, host input: copied back
    assert type(back) is np.ndarray and back.tolist() == [[1.0, 0.0], [0.0, 1.0]]


@pytest.mark.gpu
def test_to_output_returns_cupy_for_cupy_input():
    import cupy

    like = cupy.zeros((2, 2))
    out = _array.to_output(np.ones((2, 2)), like)
    assert isinstance(out, cupy.ndarray) and out.get().tolist() == [[1.0, 1.0], [1.0, 1.0]]
