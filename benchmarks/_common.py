"""Shared helpers of the benchmark scripts: child processes, peak memory, tables."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from embedscope.bench.measure import peak_rss_bytes  # VmHWM, not ru_maxrss: see there

__all__ = ["CompileEvents", "machine", "markdown_table", "peak_rss_bytes", "run_child", "write_results"]

RESULTS = Path(__file__).resolve().parent / "results"


class CompileEvents:
    """numba's compile events in one process, by dispatcher (use as ``with CompileEvents() as ev:``).

    ``seconds[name]`` / ``count[name]``: exclusive compile seconds (a kernel's callees
    are their own) and specialisations per ``module.function``; ``top_level``: the
    dispatchers compiled from Python (not as a callee), in the order met, and
    ``top_seconds[id(dispatcher)]`` their inclusive seconds (callees included).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.count: dict[str, int] = {}
        self.top_level: list[Any] = []
        self.top_seconds: dict[int, float] = {}
        self._stack: list[list[Any]] = []

    def __enter__(self) -> CompileEvents:
        from numba.core import event

        events = self

        class Listener(event.Listener):
            def on_start(self, ev: event.Event) -> None:
                dispatcher = ev.data["dispatcher"]
                if not events._stack and dispatcher not in events.top_level:
                    events.top_level.append(dispatcher)
                events._stack.append([dispatcher, time.perf_counter(), 0.0])

            def on_end(self, ev: event.Event) -> None:
                dispatcher, began, nested = events._stack.pop()
                total = time.perf_counter() - began
                func = dispatcher.py_func
                name = f"{func.__module__.removeprefix('embedscope.')}.{func.__name__}"
                events.seconds[name] = events.seconds.get(name, 0.0) + total - nested
                events.count[name] = events.count.get(name, 0) + 1
                if events._stack:
                    events._stack[-1][2] += total
                else:
                    events.top_seconds[id(dispatcher)] = events.top_seconds.get(id(dispatcher), 0.0) + total

        self._installed = event.install_listener("numba:compile", Listener())
        self._installed.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._installed.__exit__(*exc)


def run_child(script: str, args: list[str], timeout: float | None = None,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``script`` in a fresh interpreter (with ``env`` if given); it prints one JSON line last."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}",
                "wall_s": time.perf_counter() - start}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import numpy as np

    try:
        from threadpoolctl import threadpool_info

        blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads)" for i in threadpool_info()]
    except ImportError:
        blas = []
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "blas": blas,
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A markdown table of ``rows`` restricted to ``columns``."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_results(name: str, payload: dict[str, Any], table: str) -> None:
    """Write ``results/NAME.json`` and ``results/NAME.md`` (each to a temporary file, then renamed)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    texts = {"json": json.dumps(payload, indent=2, default=str) + "\n",
             "md": f"# {name}\n\n`{payload['machine']['command']}` on {payload['machine']['date']}\n\n{table}\n"}
    for suffix, text in texts.items():
        partial = RESULTS / f".{name}.{suffix}.partial"
        partial.write_text(text)
        os.replace(partial, RESULTS / f"{name}.{suffix}")
