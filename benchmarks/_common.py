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

__all__ = ["machine", "markdown_table", "peak_rss_bytes", "run_child", "write_results"]

RESULTS = Path(__file__).resolve().parent / "results"


def run_child(script: str, args: list[str], timeout: float | None = None) -> dict[str, Any]:
    """Run ``script`` in a fresh interpreter; it prints one JSON line last."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=timeout)
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
