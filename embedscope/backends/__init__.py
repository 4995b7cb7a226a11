"""Backends: who runs a reducer's stages (cpu, cuda, cuml), what each can do, and why one was picked."""

from embedscope.backends._registry import (
    BACKENDS,
    INSTALL_HINTS,
    Backend,
    BackendUnavailable,
    Unsupported,
    available_backends,
    cpu_description,
    probe_cuda,
    probe_cuml,
    resolve_backend,
)

__all__ = [
    "BACKENDS",
    "INSTALL_HINTS",
    "Backend",
    "BackendUnavailable",
    "Unsupported",
    "available_backends",
    "cpu_description",
    "probe_cuda",
    "probe_cuml",
    "resolve_backend",
]
