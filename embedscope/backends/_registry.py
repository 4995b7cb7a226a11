"""The backend registry: what each backend can do, its kernels, and how one is chosen.

A backend registers a :class:`BackendSpec` once (``backends/cpu.py``, ``cuda.py``,
``cuml.py``): its name, its place in the ``auto`` order, a probe that says whether it
can run on this machine, its :class:`Capabilities` and either a kernel table (the
stages run our kernels) or a delegate (an outside library fits the whole reducer).
A reducer asks for a backend with a :class:`Request` (its name and the settings
that matter to a backend); :func:`resolve_backend` checks the request against the
capabilities, and ``auto`` walks the registry, passing over what cannot run here or
would refuse, and records every (backend, reason) it weighed.

Nothing GPU-related is imported at module level. cupy and cuml are probed lazily and
the probe result is cached, so ``import embedscope`` works on a machine with neither.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from types import ModuleType
from typing import Any

import numpy as np

#: Every metric a kNN search of ours knows: ``kernels.knn.metrics.METRICS`` (written out
#: here so importing the registry loads no numba kernel; tests/test_metrics_knn.py
#: checks the two agree).
#: ``"precomputed"`` (a distance matrix as input) is a capability of its own: a backend
#: lists it in ``Capabilities.metrics`` where its reducers read neighbours from a matrix.
ALL_METRICS = frozenset({"euclidean", "cosine", "inner_product", "manhattan", "chebyshev", "minkowski",
                         "correlation", "hamming", "jaccard"})
#: The metrics searched as matrix products (BLAS / cuBLAS), the rest coordinate by coordinate.
GRAM_METRICS = frozenset({"euclidean", "cosine", "inner_product", "correlation"})


class BackendUnavailable(RuntimeError):
    """An explicitly requested backend cannot run on this machine."""


class Unsupported(ValueError):
    """A backend cannot honour a requested setting (e.g. cuML t-SNE in 3-D)."""


@dataclass(frozen=True)
class _Probe:
    ok: bool
    detail: str


@dataclass(frozen=True)
class Capabilities:
    """What a backend can run; :meth:`BackendSpec.refusal` checks a request against it.

    Attributes
    ----------
    reducers : frozenset of str
        Reducers it implements (``"pca"``, ``"umap"``, ``"tsne"``).
    metrics : frozenset of str
        Input metrics its kNN search (or delegate) accepts.
    knn_methods : frozenset of str
        ``knn_method`` values its search honours (``"auto"`` always).
    max_neighbors : int or None
        Largest k its kNN search finds per point (None: no limit). A precomputed
        graph is never limited.
    transform : frozenset of str
        Reducers whose ``transform`` runs on this backend.
    callback : bool
        Whether an optimiser callback can be called.
    precomputed_knn : bool
        Whether a given kNN graph can be used instead of a search.
    umap_options : frozenset of str
        Optional UMAP features it runs: ``"supervised"`` (``fit(X, y)``),
        ``"densmap"``, ``"output_dens"`` (none unless a backend lists them, so a
        delegate never silently drops one).
    hints : dict of str to str
        The refusal text for a setting it lacks, keyed ``"knn_method=ivf"`` etc.,
        naming what to use instead (``"reducer=NAME"``: why a reducer it lacks is missing).
    """

    reducers: frozenset[str]
    metrics: frozenset[str] = ALL_METRICS
    knn_methods: frozenset[str] = frozenset({"auto", "exact"})
    max_neighbors: int | None = None
    transform: frozenset[str] = frozenset()
    callback: bool = True
    precomputed_knn: bool = True
    umap_options: frozenset[str] = frozenset()
    hints: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """What a reducer asks of a backend: the settings a backend might not support.

    Attributes
    ----------
    reducer : str
        ``"pca"``, ``"umap"`` or ``"tsne"``.
    n_samples : int
    metric : str or None
        None where the reducer has no metric (PCA).
    neighbors : int or None
        k of the kNN search (self excluded); None where no search runs (PCA, or a
        precomputed graph).
    neighbors_hint : callable or None
        ``hint(largest_k)`` -> how the reducer's parameter maps to k, appended to a
        refusal ("(n_neighbors <= 129; got 200); use backend='cpu' ...").
    knn_method : str
    callback : bool
        A callback was given.
    precomputed_knn : bool
        A kNN graph was given.
    estimator : object or None
        The estimator itself, for a delegate that maps its parameters (cuML).
    umap_options : frozenset of str
        Optional UMAP features asked for (see :attr:`Capabilities.umap_options`).
    """

    reducer: str
    n_samples: int = 0
    metric: str | None = None
    neighbors: int | None = None
    neighbors_hint: Callable[[int], str] | None = None
    knn_method: str = "auto"
    callback: bool = False
    precomputed_knn: bool = False
    estimator: Any = None
    umap_options: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TsneKernels:
    """The t-SNE optimiser's kernels on one backend (the loop itself is shared)."""

    #: ``place(P, Y)`` -> (P, Y) where the kernels read them (host float64 / device float32).
    place: Callable[..., tuple[Any, Any]]
    #: ``repulsion(n, dim, dof)`` -> (``routine(Y) -> (rep, Z)``, name, reason): the
    #: reason names the rule that chose it (``TSNE.repulsion_reason_``, and the log).
    repulsion: Callable[[int, int, float], tuple[Callable, str, str]]
    #: ``step(P, Y, rep, Z, dof, exaggeration, learning_rate, momentum, update, gains)``.
    step: Callable[..., None]
    #: ``advance(Y, update)``: ``Y += update``, then recentre.
    advance: Callable[[Any, Any], None]
    #: ``kl(P, Y, Z, dof)`` -> KL(P || Q).
    kl: Callable[..., float]
    #: ``reorder(P, Y)`` -> ``order`` or None: relabels P in place so that points close
    #: in the layout ``Y`` get close labels (row ``r`` becomes old row ``order[r]``);
    #: the loop permutes ``Y`` and its own state alike. None (the entry, or its
    #: answer): the labels stay.
    reorder: Callable[[Any, Any], Any] | None = None


@dataclass(frozen=True)
class PacmapKernels:
    """PaCMAP's kernels on one backend (see :mod:`embedscope.kernels.pacmap`)."""

    #: ``pairs(Z, indices, distances, metric, n_neighbors, n_mid_near, n_further, seed)`` ->
    #: the six-array pair lists by point, where ``optimize`` reads them (host or device).
    pairs: Callable[..., tuple[Any, ...]]
    #: ``optimize(layout, lists, n_iters, *, learning_rate, reference, callback, log)`` ->
    #: host float32 layout.
    optimize: Callable[..., np.ndarray]


@dataclass(frozen=True)
class Kernels:
    """A backend's kernel table: what differs per backend in the shared stages.

    Every entry returns host (numpy) arrays unless it says otherwise.
    """

    #: ``place(X)`` -> ``X`` where this backend's stages read it (host, or device).
    place: Callable[[Any], Any]
    #: ``knn(data, k, metric, *, queries=None, method="auto", seed=0, log=None,
    #: metric_kwds=None)`` -> host (int32 indices, float32 distances) of shape (m, k),
    #: self excluded.
    knn: Callable[..., tuple[np.ndarray, np.ndarray]]
    #: ``knn_label(method, n)`` -> what the search will run, for the stage log.
    knn_label: Callable[[str, int], str]
    #: :func:`embedscope.kernels.umap_sgd.optimize_layout`'s contract, host layout out.
    umap_optimize: Callable[..., np.ndarray]
    tsne: TsneKernels
    #: ``fuzzy_graph(indices, distances, n_neighbors, *, rho_from_nearest)`` -> (graph,
    #: sigmas, rhos): UMAP's fuzzy simplicial set as a CSR matrix where this backend
    #: keeps it (scipy on the host, cupyx on the device). None: the host twin.
    fuzzy_graph: Callable[..., tuple[Any, Any, Any]] | None = None
    #: ``tsne_affinities(indices, distances, n, perplexity, *, squared, overwrite)`` ->
    #: (P, n_missed): t-SNE's joint P where this backend keeps it (scipy CSR, or a
    #: device ``DeviceCSR``), for :attr:`TsneKernels.place`; ``overwrite=True`` lets it
    #: use the kNN arrays as scratch. None: the host twin.
    tsne_affinities: Callable[..., tuple[Any, int]] | None = None
    #: PaCMAP's pair choice and optimiser (None where the backend has no PaCMAP).
    pacmap: PacmapKernels | None = None
    #: ``precompile(reducer, n, k, metric, n_components, log, method="auto")``: compile, before a fit,
    #: the kernels it will call that are not yet cached (None: nothing to prepare).
    precompile: Callable[..., object] | None = None


@dataclass
class BackendSpec:
    """One registered backend.

    Attributes
    ----------
    name : str
    priority : int
        ``auto`` tries higher priorities first.
    probe : callable
        ``probe()`` -> object with ``ok`` and ``detail`` (device text, or what is missing).
    capabilities : Capabilities
    array_module : callable
        ``array_module()`` -> the module its stages use (numpy or cupy).
    kernels : callable or None
        ``kernels()`` -> :class:`Kernels` (loaded on first use), or None for a
        delegate backend.
    delegate : callable or None
        ``delegate()`` -> module with ``fit_pca``, ``fit_umap``, ``fit_tsne``
        (``(est, X, backend)``) and ``refusal(request)``, for a backend that hands the
        whole fit to another library.
    install_hint : str
        How to install what it needs.
    simulated : callable or None
        ``simulated()`` -> True where an explicit request runs on a simulator instead
        of the device (numba's CUDA simulator).
    gpu : bool
        Runs on a GPU (Dask then starts a dask-cuda cluster; benchmarks sample GPU memory).
    """

    name: str
    priority: int
    probe: Callable[[], Any]
    capabilities: Capabilities
    array_module: Callable[[], ModuleType]
    kernels: Callable[[], Kernels] | None = None
    delegate: Callable[[], Any] | None = None
    install_hint: str = ""
    simulated: Callable[[], bool] | None = None
    gpu: bool = False

    def kernel_table(self) -> Kernels:
        """Its :class:`Kernels`; a delegate backend has none (RuntimeError)."""
        if self.kernels is None:
            raise RuntimeError(f"backend {self.name!r} hands whole fits to another library; "
                               "it has no kernel table")
        return self.kernels()

    def refusal(self, request: Request) -> str | None:
        """Why this backend cannot run ``request``, or None."""
        caps = self.capabilities
        if request.reducer not in caps.reducers:
            return caps.hints.get(f"reducer={request.reducer}", "not implemented for this reducer")
        if missing := sorted(request.umap_options - caps.umap_options):
            what = _OPTION_TEXT.get(missing[0], missing[0])
            return caps.hints.get(missing[0], f"backend={self.name!r} does not run {what}")
        if self.delegate is not None:
            return self.delegate().refusal(request)
        if request.metric is not None and request.metric not in caps.metrics:
            return caps.hints.get(f"metric={request.metric}",
                                  f"backend={self.name!r} has no metric={request.metric!r}; it supports "
                                  f"{', '.join(sorted(caps.metrics))}")
        if request.precomputed_knn and not caps.precomputed_knn:
            return f"backend={self.name!r} cannot use precomputed_knn"
        if request.callback and not caps.callback:
            return f"backend={self.name!r} cannot call a callback"
        if request.neighbors is not None:
            if request.knn_method not in caps.knn_methods:
                return caps.hints.get(f"knn_method={request.knn_method}",
                                      f"knn_method={request.knn_method!r} is not available on backend={self.name!r}")
            limit = caps.max_neighbors
            if limit is not None and request.neighbors > limit:
                tail = request.neighbors_hint(limit) if request.neighbors_hint else ""
                return f"backend={self.name!r} finds at most {limit} neighbours per point{tail}"
        return None


#: How a refusal names each of :attr:`Capabilities.umap_options`.
_OPTION_TEXT = {"supervised": "supervised UMAP (fit(X, y)); use backend='cuda' or 'cpu'",
                "densmap": "densMAP (densmap=True); use backend='cuda' or 'cpu'",
                "output_dens": "output_dens=True; use backend='cuda' or 'cpu'"}

_REGISTRY: dict[str, BackendSpec] = {}


def register(spec: BackendSpec) -> None:
    """Add (or replace) a backend; ``auto`` tries it in order of ``priority``."""
    _REGISTRY[spec.name] = spec


def registered() -> tuple[str, ...]:
    """The registered backend names, ``auto`` order first."""
    return tuple(sorted(_REGISTRY, key=lambda name: -_REGISTRY[name].priority))


def get_spec(name: str) -> BackendSpec:
    """The registered :class:`BackendSpec` called ``name`` (KeyError if none)."""
    return _REGISTRY[name]


def backend_names() -> tuple[str, ...]:
    """Every value a ``backend=`` parameter accepts: ``"auto"`` and each registered name."""
    return ("auto", *sorted(_REGISTRY))


@dataclass(frozen=True)
class Backend:
    """A resolved backend.

    Attributes
    ----------
    name : str
        A registered name (``"cpu"``, ``"cuda"``, ``"cuml"``).
    xp : module
        The array module the stages use: numpy for cpu, cupy for cuda and cuml.
    device : str
        Human-readable device description (CPU cores, or GPU name and memory).
    reason : str
        Why this backend was chosen: ``"requested"``, or for ``auto`` the rendered
        :attr:`considered` list.
    considered : tuple of (str, str)
        For ``auto``: every backend weighed before the pick, with why it was passed
        over, then the pick.
    """

    name: str
    xp: ModuleType = field(repr=False)
    device: str
    reason: str
    spec: BackendSpec | None = field(default=None, repr=False, compare=False)
    considered: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return f"{self.name} ({self.device}; {self.reason})"

    @property
    def capabilities(self) -> Capabilities:
        return _spec_of(self).capabilities

    @property
    def kernels(self) -> Kernels:
        """The kernel table (a delegate backend, cuML, has none: check ``delegate`` first)."""
        return _spec_of(self).kernel_table()

    @property
    def delegate(self) -> Any:
        """The module a delegate backend hands whole fits to, else None."""
        spec = _spec_of(self)
        return spec.delegate() if spec.delegate is not None else None


def fitted_backend(name: str) -> Backend:
    """The registered backend ``name`` as a fit left it, without probing again.

    ``transform`` runs where ``fit`` ran; the estimator keeps only the name (a
    resolved backend holds modules, which do not pickle).
    """
    return Backend(name, np, "", "fitted", _REGISTRY[name])


def _spec_of(backend: Backend) -> BackendSpec:
    return backend.spec if backend.spec is not None else _REGISTRY[backend.name]


# ----------------------------------------------------------------------------- probes


def _gpu_disabled() -> bool:
    # Lets a GPU box exercise the CPU path end to end (tests, benchmarks).
    return os.environ.get("EMBEDSCOPE_DISABLE_GPU", "") not in ("", "0")


@lru_cache(maxsize=1)
def probe_cuda() -> _Probe:
    """Can cupy use a visible GPU? Returns the GPU description or what is missing."""
    if _gpu_disabled():
        return _Probe(False, "GPU use disabled by EMBEDSCOPE_DISABLE_GPU")
    if importlib.util.find_spec("cupy") is None:
        return _Probe(False, "cupy is not installed")
    try:
        cupy = importlib.import_module("cupy")
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # driver missing, CUDA runtime mismatch, ...
        return _Probe(False, f"cupy is installed but cannot use a GPU ({exc.__class__.__name__}: {exc})")
    if count < 1:
        return _Probe(False, "no CUDA device visible")
    try:
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        free, total = cupy.cuda.Device().mem_info
        return _Probe(True, f"{name}, {total / 2**30:.0f} GiB ({free / 2**30:.0f} GiB free)")
    except Exception as exc:
        return _Probe(False, f"cupy cannot query the GPU ({exc.__class__.__name__}: {exc})")


@lru_cache(maxsize=1)
def probe_cuml() -> _Probe:
    """Is cuML importable, with a GPU to run on?"""
    if importlib.util.find_spec("cuml") is None:
        return _Probe(False, "cuml is not installed")
    gpu = probe_cuda()
    if not gpu.ok:
        return _Probe(False, f"cuml is installed but {gpu.detail}")
    try:
        cuml = importlib.import_module("cuml")
    except Exception as exc:
        return _Probe(False, f"cuml failed to import ({exc.__class__.__name__}: {exc})")
    return _Probe(True, f"cuml {getattr(cuml, '__version__', '?')} on {gpu.detail}")


def probe_cpu() -> _Probe:
    """The CPU always runs: its detail is the number of threads numba will use."""
    return _Probe(True, cpu_description())


def cpu_description() -> str:
    """Number of CPU cores numba will use."""
    try:
        import numba

        threads = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    except Exception:
        threads = os.cpu_count() or 1
    return f"CPU, {threads} threads"


def device_xp() -> ModuleType:
    """cupy, for the GPU backends (looked up here so a test can stand in numpy)."""
    return importlib.import_module("cupy")


# ----------------------------------------------------------------------------- resolve


def resolve_backend(backend: str = "auto", request: Request | None = None) -> Backend:
    """Resolve a backend name into a :class:`Backend` that can run ``request``.

    Parameters
    ----------
    backend : str, default="auto"
        ``"auto"`` or a registered name (``"cpu"``, ``"cuda"``, ``"cuml"``). ``auto``
        tries the registered backends in order (cuml, cuda, cpu), passes over one
        that cannot run here or whose capabilities refuse ``request``, and records
        every reason in ``Backend.considered`` / ``Backend.reason``.
    request : Request, optional
        What the reducer will ask; None checks availability only.

    Returns
    -------
    Backend

    Raises
    ------
    ValueError
        Unknown backend name.
    BackendUnavailable
        An explicitly requested backend cannot run here; the message says what is
        missing and how to install it.
    Unsupported
        An explicitly requested backend cannot run ``request``; the message says why
        and what to use instead.

    Notes
    -----
    With ``NUMBA_ENABLE_CUDASIM=1`` an explicit ``"cuda"`` resolves to the simulator
    (``xp`` is numpy), whatever GPU is present.
    """
    names = backend_names()
    if not isinstance(backend, str) or backend not in names:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(names)}")
    if backend != "auto":
        return _explicit(_REGISTRY[backend], request)
    considered: list[tuple[str, str]] = []
    for name in registered():
        spec = _REGISTRY[name]
        if request is not None and request.reducer not in spec.capabilities.reducers:
            considered.append((name, spec.capabilities.hints.get(f"reducer={request.reducer}",
                                                                 "not implemented for this reducer")))
            continue
        probe = spec.probe()
        if not probe.ok:
            considered.append((name, probe.detail))
            continue
        why = spec.refusal(request) if request is not None else None
        if why is not None:
            considered.append((name, f"cannot run these settings ({why})"))
            continue
        considered.append((name, "picked"))
        reason = "auto: " + "; ".join(f"{n}: {r}" for n, r in considered)
        return Backend(name, spec.array_module(), probe.detail, reason, spec, tuple(considered))
    text = "; ".join(f"{n}: {r}" for n, r in considered)
    if any(r.startswith("cannot run these settings") for _, r in considered):
        # Something here could run, but not with these settings: the cure is a setting.
        raise Unsupported(f"no backend here can run these settings: {text}")
    raise BackendUnavailable(f"no registered backend can run this: {text}")


def _explicit(spec: BackendSpec, request: Request | None) -> Backend:
    name = spec.name
    if request is not None and request.reducer not in spec.capabilities.reducers:
        available = [n for n in registered() if request.reducer in _REGISTRY[n].capabilities.reducers]
        if (hint := spec.capabilities.hints.get(f"reducer={request.reducer}")) is not None:
            raise Unsupported(f"{hint}; available: {', '.join(available)}")
        raise Unsupported(f"backend={name!r} is not implemented for this reducer yet; "
                          f"available: {', '.join(available)}")
    if spec.simulated is not None and spec.simulated():
        # The simulator runs the kernels on host arrays, which lets CI test the
        # cuda code paths end to end without a GPU; "auto" never picks it (slow).
        resolved = Backend(name, np, "numba CUDA simulator, no GPU",
                           "requested (NUMBA_ENABLE_CUDASIM is set)", spec)
    else:
        probe = spec.probe()
        if not probe.ok:
            raise BackendUnavailable(
                f"backend={name!r} is not available: {probe.detail}. "
                f"Install with: {spec.install_hint}; or use backend='cpu'."
            )
        resolved = Backend(name, spec.array_module(), probe.detail, "requested", spec)
    if request is not None and (why := spec.refusal(request)) is not None:
        raise Unsupported(why)
    return resolved


def available_backends() -> dict[str, tuple[bool, str]]:
    """Every registered backend with whether it can run here and why (``embedscope info``)."""
    return {name: (probe.ok, probe.detail) for name in registered()
            for probe in [_REGISTRY[name].probe()]}
