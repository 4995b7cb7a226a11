"""Backend resolution: which implementation runs a reducer, and why.

A :class:`Backend` is small: a name, the array module ``xp`` (numpy or cupy), a
description of the device, and the reason it was chosen. Stages are written once
against ``xp``; only kernels differ per backend.

Nothing GPU-related is imported at module level. cupy and cuml are probed lazily and
the probe result is cached, so ``import embedscope`` works on a machine with neither.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass, field
from functools import lru_cache
from types import ModuleType

import numpy as np

BACKENDS = ("auto", "cpu", "cuda", "cuml")

INSTALL_HINTS = {
    "cuda": "pip install 'embedscope[gpu]'  (or: conda install -c conda-forge cupy)",
    "cuml": "conda install -c rapidsai -c conda-forge cuml  (or: pip install 'embedscope[cuml]')",
}


class BackendUnavailable(RuntimeError):
    """An explicitly requested backend cannot run on this machine."""


class Unsupported(ValueError):
    """A backend cannot honour a requested setting (e.g. cuML t-SNE in 3-D)."""


@dataclass(frozen=True)
class Backend:
    """A resolved backend.

    Attributes
    ----------
    name : str
        ``"cpu"``, ``"cuda"`` or ``"cuml"``.
    xp : module
        The array module the stages use: numpy for cpu, cupy for cuda and cuml.
    device : str
        Human-readable device description (CPU cores, or GPU name and memory).
    reason : str
        Why this backend was chosen (for ``backend="auto"``) or that it was requested.
    """

    name: str
    xp: ModuleType = field(repr=False)
    device: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name} ({self.device}; {self.reason})"


@dataclass(frozen=True)
class _Probe:
    ok: bool
    detail: str


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


def cpu_description() -> str:
    """Number of CPU cores numba will use."""
    try:
        import numba

        threads = numba.config.NUMBA_NUM_THREADS
    except Exception:
        threads = os.cpu_count() or 1
    return f"CPU, {threads} threads"


def _cpu(reason: str) -> Backend:
    return Backend("cpu", np, cpu_description(), reason)


def _cupy_backend(name: str, detail: str, reason: str) -> Backend:
    cupy = importlib.import_module("cupy")
    return Backend(name, cupy, detail, reason)


def _simulated() -> bool:
    from embedscope.kernels._cuda import simulated

    return simulated()


def resolve_backend(backend: str = "auto", *, supports: tuple[str, ...] = ("cpu", "cuda", "cuml")) -> Backend:
    """Resolve a backend name into a :class:`Backend`.

    Parameters
    ----------
    backend : {"auto", "cpu", "cuda", "cuml"}, default="auto"
        ``"auto"`` picks cuml where it is installed and a GPU is visible, else cuda
        where cupy can use a GPU, else cpu, and records why in ``Backend.reason``.
    supports : tuple of str
        The backends the calling reducer implements; ``auto`` skips the others.

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

    Notes
    -----
    With ``NUMBA_ENABLE_CUDASIM=1`` an explicit ``"cuda"`` resolves to the simulator
    (``xp`` is numpy), whatever GPU is present.
    """
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "cpu":
        return _cpu("requested")
    if backend in ("cuda", "cuml"):
        if backend not in supports:
            raise Unsupported(f"backend={backend!r} is not implemented for this reducer yet; "
                              f"available: {', '.join(supports)}")
        if backend == "cuda" and _simulated():
            # The simulator runs the kernels on host arrays, which lets CI test the
            # cuda code paths end to end without a GPU; "auto" never picks it (slow).
            return Backend("cuda", np, "numba CUDA simulator, no GPU",
                           "requested (NUMBA_ENABLE_CUDASIM is set)")
        probe = probe_cuda() if backend == "cuda" else probe_cuml()
        if not probe.ok:
            raise BackendUnavailable(
                f"backend={backend!r} is not available: {probe.detail}. "
                f"Install with: {INSTALL_HINTS[backend]}; or use backend='cpu'."
            )
        return _cupy_backend(backend, probe.detail, "requested")

    skipped = []
    for name in ("cuml", "cuda"):
        if name not in supports:
            skipped.append(f"{name}: not implemented for this reducer")
            continue
        probe = probe_cuml() if name == "cuml" else probe_cuda()
        if probe.ok:
            why = "auto: " + "; ".join([*skipped, f"{name} available"])
            return _cupy_backend(name, probe.detail, why)
        skipped.append(f"{name}: {probe.detail}")
    return _cpu("auto: " + "; ".join(skipped))


def available_backends() -> dict[str, tuple[bool, str]]:
    """Every backend with whether it can run here and the reason (for ``embedscope info``)."""
    cuda, cuml = probe_cuda(), probe_cuml()
    return {
        "cpu": (True, cpu_description()),
        "cuda": (cuda.ok, cuda.detail),
        "cuml": (cuml.ok, cuml.detail),
    }
