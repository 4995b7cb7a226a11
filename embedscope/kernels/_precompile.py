"""First use: compile a fit's kernels in several processes at once, not one after another.

numba compiles a kernel the first time it meets new argument types and keeps the
machine code in its on-disk cache, so only the first fit after an install waits
(seconds: ``benchmarks/cold_start.py``). Compiling holds numba's global compiler lock,
so threads cannot share that work, but processes can: each compiles some kernels
into the same cache, and the fit then loads them (~10 ms a kernel).

``compile_manifest.json`` lists, per profile (reducer, kNN route, for t-SNE the
repulsion and P's builder, and whether the fit relabels its points by layout position;
2-D layouts), the kernels a default fit calls from Python with their
argument types, in the order met and with the seconds each took to compile. ``python benchmarks/compile_manifest.py``
rewrites it by running those fits in fresh processes with an empty cache;
``tests/test_precompile.py`` fails when a fit calls a listed kernel with other types.

:func:`precompile` runs before a CPU fit (the backend asks, see
``backends/cpu.py``). It does nothing when every kernel of the profile already has an
index file in numba's cache, when ``EMBEDSCOPE_PRECOMPILE=0``, with one CPU, or under
``NUMBA_DISABLE_JIT``. Otherwise it starts up to ``cpus - 1`` worker interpreters
(``python -m embedscope.kernels._precompile --worker``, not multiprocessing: nothing
of the user's ``__main__`` is imported again), compiles its own share meanwhile, and
waits for them. A kernel that a worker fails to compile, or a worker that does not
start, only means the fit compiles that kernel itself as it would have anyway: the
results are the same either way, since a cached kernel is the same machine code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

__all__ = ["ENV", "MANIFEST", "decode", "encode", "precompile"]

MANIFEST = Path(__file__).with_name("compile_manifest.json")
ENV = "EMBEDSCOPE_PRECOMPILE"
#: Most worker interpreters (beyond that, starting them costs more than they save on a
#: profile of ~20 kernels).
MAX_WORKERS = 4
#: Seconds a worker takes to start and import numba and the kernels before it compiles
#: (measured by benchmarks/compile_manifest.py; this is the fallback).
STARTUP_S = 0.8
#: How long to wait for the workers before going on without them (a share is seconds of
#: work; a worker still busy after this is stopped and the fit compiles what it lacks).
TIMEOUT_S = 120.0


def encode(t: Any) -> list[Any] | None:
    """A numba argument type as JSON, or None if it is not one a manifest carries."""
    from numba.core import types
    from numba.np.numpy_support import as_dtype

    if isinstance(t, types.Array):
        if not t.aligned:
            return None
        return ["array", str(as_dtype(t.dtype)), t.ndim, t.layout, not t.mutable]
    if isinstance(t, types.Literal):
        return None
    if t == types.none:
        return ["none"]
    if isinstance(t, (types.Integer, types.Float, types.Boolean)):
        return ["scalar", str(as_dtype(t))]
    if isinstance(t, types.UniTuple):
        inner = encode(t.dtype)
        return None if inner is None else ["unituple", inner, t.count]
    if isinstance(t, types.Tuple):
        parts = [encode(x) for x in t.types]
        return None if any(p is None for p in parts) else ["tuple", parts]
    return None


def decode(spec: list[Any]) -> Any:
    """The numba type :func:`encode` wrote."""
    import numpy as np
    from numba.core import types
    from numba.np.numpy_support import from_dtype

    kind = spec[0]
    if kind == "array":
        _, dtype, ndim, layout, readonly = spec
        return types.Array(from_dtype(np.dtype(dtype)), ndim, layout, readonly=readonly)
    if kind == "none":
        return types.none
    if kind == "scalar":
        return from_dtype(np.dtype(spec[1]))
    if kind == "unituple":
        return types.UniTuple(decode(spec[1]), spec[2])
    if kind == "tuple":
        return types.Tuple([decode(x) for x in spec[1]])
    raise ValueError(f"unknown type spec {spec!r}")


def _dispatcher(module: str, name: str) -> Any:
    return getattr(import_module(module), name)


def _compile(entry: dict[str, Any]) -> None:
    dispatcher = _dispatcher(entry["module"], entry["name"])
    dispatcher.compile(tuple(decode(s) for s in entry["args"]))


def _index_exists(entry: dict[str, Any]) -> bool | None:
    """Whether numba's cache holds an index for the kernel; None if that cannot be told.

    A kernel the package no longer has counts as cached (nothing to do for it). The
    index path is numba's internals: where they differ, None, and nothing is
    precompiled (rather than starting workers before every fit).
    """
    try:
        dispatcher = _dispatcher(entry["module"], entry["name"])
    except (ImportError, AttributeError):
        return True
    try:
        return os.path.exists(dispatcher._cache._cache_file._index_path)
    except AttributeError:
        return None


def _load(profile: str) -> tuple[list[dict[str, Any]], float]:
    try:
        manifest = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        return [], STARTUP_S
    return list(manifest.get("profiles", {}).get(profile, [])), float(manifest.get("startup_s", STARTUP_S))


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _split(entries: list[dict[str, Any]], workers: int, startup: float) -> list[list[dict[str, Any]]]:
    """Longest first, each to the least loaded share; share 0 is this process's (no start-up)."""
    loads = [0.0] + [startup] * workers
    shares: list[list[dict[str, Any]]] = [[] for _ in loads]
    for entry in sorted(entries, key=lambda e: -e["seconds"]):
        s = loads.index(min(loads))
        shares[s].append(entry)
        loads[s] += entry["seconds"]
    return shares


def _skipped(reason: str) -> dict[str, Any]:
    return {"compiled": 0, "workers": 0, "seconds": 0.0, "skipped": reason}


def precompile(profile: str | None, *, log: Callable[[str], None] | None = None,
               max_workers: int = MAX_WORKERS) -> dict[str, Any]:
    """Compile the kernels of ``profile`` not yet in numba's cache, in parallel processes.

    Parameters
    ----------
    profile : str or None
        A key of the manifest (e.g. ``"umap-exact"``); None does nothing.
    log : callable, optional
        Receives one line when there is work, one when it is done.
    max_workers : int, default=MAX_WORKERS
        Most worker interpreters (also bounded by the CPUs, less one for this process).

    Returns
    -------
    dict
        ``compiled`` (kernels compiled here and in workers), ``workers``, ``seconds``,
        and ``skipped`` (why nothing ran) where nothing did.
    """
    if profile is None:
        return _skipped("no profile")
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return _skipped(f"{ENV}=0")
    import numba

    if numba.config.DISABLE_JIT:
        return _skipped("NUMBA_DISABLE_JIT")
    entries, startup = _load(profile)
    cached = [_index_exists(e) for e in entries]
    if None in cached:
        return _skipped("numba's cache layout is not the one known")
    missing = [e for e, hit in zip(entries, cached, strict=True) if not hit]
    workers = min(max_workers, _cpus() - 1, len(missing) - 1)
    if not missing or workers < 1 or not sys.executable or getattr(sys, "frozen", False):
        return _skipped("cached" if not missing else "one CPU, one kernel, or no interpreter to start")
    began = time.perf_counter()
    shares = _split(missing, workers, startup)
    if log is not None:
        log(f"first use: compiling {len(missing)} kernels in {1 + sum(1 for s in shares[1:] if s)} processes "
            "(numba caches them for later runs)")
    # The workers import this very copy of the package (a script may have put it on
    # sys.path itself) and write to this process's cache directory.
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    if numba.config.CACHE_DIR:
        env["NUMBA_CACHE_DIR"] = numba.config.CACHE_DIR
    procs = []
    for share in shares[1:]:
        if not share:
            continue
        err = tempfile.TemporaryFile(mode="w+")  # a pipe could fill while this process compiles
        try:
            proc = subprocess.Popen([sys.executable, "-m", "embedscope.kernels._precompile", "--worker"],
                                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, text=True,
                                    env=env)
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(share))
            proc.stdin.close()
        except OSError:
            err.close()
            continue  # this process compiles that share when the fit calls it
        procs.append((proc, err))
    for entry in shares[0]:
        try:
            _compile(entry)
        except Exception:  # the fit's own call compiles it, or raises what is wrong
            pass
    failed = []
    for proc, err in procs:
        try:
            proc.wait(timeout=max(1.0, TIMEOUT_S - (time.perf_counter() - began)))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.returncode != 0:
            err.seek(0)
            lines = err.read().strip().splitlines()
            failed.append(lines[-1] if lines else f"exit status {proc.returncode}")
        err.close()
    seconds = time.perf_counter() - began
    if log is not None:
        log(f"compiled in {seconds:.1f} s" + (f"; a worker failed ({failed[0]}): the fit compiles the rest"
                                              if failed else ""))
    return {"compiled": len(missing), "workers": len(procs), "seconds": seconds, "failed": failed}


def _worker() -> int:
    entries = json.loads(sys.stdin.read())
    status = 0
    for entry in entries:
        try:
            _compile(entry)
        except Exception as exc:  # report it, go on with the others
            print(f"{entry['module']}.{entry['name']}: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    if sys.argv[1:] != ["--worker"]:
        sys.exit("usage: python -m embedscope.kernels._precompile --worker  (entries as JSON on stdin)")
    sys.exit(_worker())
