"""Measurements of one process: peak resident memory, peak GPU memory, the machine.

Peak RSS is read from ``VmHWM`` in ``/proc/self/status``: it belongs to the current
address space, so it starts afresh at exec. ``getrusage``'s ``ru_maxrss`` does not
(Linux carries the parent's peak across fork and exec), which would charge a child
with its parent's memory; it is only the fallback where ``/proc`` is absent.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import threading
import time
from typing import Any

__all__ = ["GpuMemorySampler", "library_versions", "machine_info", "peak_rss_bytes"]

#: Distributions whose versions go into every run manifest ("not installed" if absent).
LIBRARIES = ("embedscope", "numpy", "numba", "scipy", "pandas", "scikit-learn", "umap-learn",
             "openTSNE", "pacmap", "pynndescent", "datashader", "cupy-cuda12x", "cupy-cuda13x", "cupy",
             "cuml-cu12", "cuml-cu13", "cuml", "numba-cuda")


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """Peak resident set of this process image, in bytes (``VmHWM``)."""
    kib = _status_kib("VmHWM")
    if kib is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return kib * 1024


def current_rss_bytes() -> int:
    """Resident set of this process now, in bytes (``VmRSS``; 0 where unknown)."""
    kib = _status_kib("VmRSS")
    return 0 if kib is None else kib * 1024


class GpuMemorySampler:
    """Samples used device memory in a background thread; ``peak_bytes`` after ``stop``.

    cupy keeps no high-water mark, and cuML allocates through RMM, so the device-wide
    ``used = total - free`` from ``cudaMemGetInfo`` is sampled every ``interval``
    seconds and its rise over the value at ``start`` is reported. A peak shorter than
    the interval can be missed; the report says "sampled".

    Parameters
    ----------
    interval : float, default=0.02
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_bytes: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._base = 0

    def _used(self) -> int:
        import cupy

        free, total = cupy.cuda.runtime.memGetInfo()
        return int(total - free)

    def start(self) -> GpuMemorySampler:
        """Begin sampling (does nothing where cupy cannot reach a GPU)."""
        try:
            self._base = self._used()
        except Exception:  # no cupy or no device: nothing to sample
            return self
        self.peak_bytes = 0

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.peak_bytes = max(self.peak_bytes or 0, self._used() - self._base)
                except Exception:
                    return
                time.sleep(self.interval)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> int | None:
        """Stop sampling; the peak rise of used device memory in bytes, or None."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            try:
                self.peak_bytes = max(self.peak_bytes or 0, self._used() - self._base)
            except Exception:
                pass
        return self.peak_bytes


def library_versions() -> dict[str, str]:
    """Installed version of each library in :data:`LIBRARIES`."""
    versions = {}
    for dist in LIBRARIES:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_total() -> int | None:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU, memory, GPU backends, OS, Python."""
    from embedscope.backends import available_backends

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = os.cpu_count()
    return {
        "hostname": platform.node(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "memory_bytes": _memory_total(),
        "backends": {name: {"available": ok, "detail": detail}
                     for name, (ok, detail) in available_backends().items()},
    }
