"""Backends: who runs a reducer's stages, what each can do, and why one was picked.

Each backend is one module that registers a :class:`BackendSpec` (its capabilities
and kernel table, or a delegate) when imported: :mod:`.cpu` (numba, everywhere),
:mod:`.cuda` (our CUDA kernels; registers on any machine, its probe says whether a
GPU can run it) and :mod:`.cuml` (hands whole fits to RAPIDS cuML). Adding a backend
is one module here and one line below.
"""

from embedscope.backends._registry import (
    Backend,
    BackendSpec,
    BackendUnavailable,
    Capabilities,
    Kernels,
    PacmapKernels,
    Request,
    TsneKernels,
    Unsupported,
    available_backends,
    backend_names,
    cpu_description,
    fitted_backend,
    get_spec,
    probe_cuda,
    probe_cuml,
    register,
    registered,
    resolve_backend,
)

# Registration order does not matter: ``auto`` follows each spec's priority.
for _module in ("cpu", "cuda", "cuml"):
    try:
        __import__(f"{__name__}.{_module}")
    except ImportError:  # pragma: no cover - a backend whose own imports fail is simply absent
        pass

#: Every value ``backend=`` accepts: "auto" and the registered names.
BACKENDS = backend_names()

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendSpec",
    "BackendUnavailable",
    "Capabilities",
    "Kernels",
    "PacmapKernels",
    "Request",
    "TsneKernels",
    "Unsupported",
    "available_backends",
    "backend_names",
    "cpu_description",
    "fitted_backend",
    "get_spec",
    "probe_cuda",
    "probe_cuml",
    "register",
    "registered",
    "resolve_backend",
]
