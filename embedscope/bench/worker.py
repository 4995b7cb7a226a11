"""One benchmark run in a fresh process: ``python -m embedscope.bench.worker SPEC.json``.

The spec (written by :mod:`embedscope.bench.runner`) names the data file, the method,
the implementation, the backend, the parameters, the seed and where to write. The
worker loads the data, fits a small warm-up (numba compilation or cache loading, CUDA
module loading: reported as ``compile_s``), then the timed fit (``repeats`` times with the
same seed: ``fit_s`` is their median, ``fit_s_runs`` every one); it saves the embedding
as ``.npy`` and writes a result JSON. Peak RSS is read right after the timed fit, so
the parent's quality measurements are not charged to the run.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

#: Rows of the warm-up fit: enough for t-SNE's perplexity 30 and UMAP's spectral init.
WARMUP_ROWS = 1000


def _host(Y: Any) -> np.ndarray:
    # Copying a device array to the host synchronises the device, so the clock
    # that stops after this call includes all GPU work.
    from embedscope._array import to_host

    if hasattr(Y, "to_numpy") and not isinstance(Y, np.ndarray):
        Y = Y.to_numpy()
    return np.ascontiguousarray(to_host(Y), dtype=np.float32)


def _median_extras(extras: list[dict[str, Any]]) -> dict[str, Any]:
    """The last repeat's extras, with per-stage seconds replaced by their medians."""
    out = dict(extras[-1])
    stages = [e.get("stages") for e in extras if isinstance(e.get("stages"), dict)]
    if len(stages) > 1:
        names = dict.fromkeys(name for st in stages for name in st)
        out["stages"] = {name: float(np.median([st[name] for st in stages if name in st])) for name in names}
    return out


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Execute one run described by ``spec``; return its result record."""
    from embedscope.bench.impls import get_fit
    from embedscope.bench.measure import GpuMemorySampler, current_rss_bytes, peak_rss_bytes

    result: dict[str, Any] = {}
    start = time.perf_counter()
    X = np.load(spec["data"])  # into memory: the run owns its copy, as a user's would
    result["load_s"] = time.perf_counter() - start
    fit = get_fit(spec["method"], spec["impl"], spec["backend"])
    params, seed = spec["params"], int(spec["seed"])
    warm_rows = min(X.shape[0], int(spec.get("warmup_rows", WARMUP_ROWS)))
    start = time.perf_counter()
    if warm_rows:
        _host(fit(X[:warm_rows], params, seed)[0])
    result["compile_s"] = time.perf_counter() - start
    result["rss_before_fit_bytes"] = current_rss_bytes()
    sampler = GpuMemorySampler().start() if spec.get("gpu") else None
    times: list[float] = []
    extras: list[dict[str, Any]] = []
    # Every repeat uses the same seed, so they time the same work; the median is
    # reported (the machine is shared and noisy), the spread is kept beside it.
    for _ in range(max(1, int(spec.get("repeats", 1)))):
        start = time.perf_counter()
        Y, extra = fit(X, params, seed)
        Y = _host(Y)
        times.append(time.perf_counter() - start)
        extras.append(extra)
    result["fit_s"] = float(np.median(times))
    result["fit_s_runs"] = times
    result["peak_rss_bytes"] = peak_rss_bytes()
    result["peak_gpu_bytes"] = sampler.stop() if sampler is not None else None
    result.update(_median_extras(extras))
    if Y.shape != (X.shape[0], params.get("n_components", 2)):
        raise ValueError(f"the embedding has shape {Y.shape}; expected ({X.shape[0]}, {params.get('n_components', 2)})")
    if not np.isfinite(Y).all():
        raise ValueError(f"the embedding has {int((~np.isfinite(Y)).any(axis=1).sum())} rows with NaN or inf")
    np.save(spec["embedding"], Y)
    result["status"] = "ok"
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the spec file named in ``argv``; write the result JSON; 0 on success."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m embedscope.bench.worker SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    try:
        result = run(spec)
        code = 0
    except Exception as exc:
        traceback.print_exc()
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        code = 1
    Path(spec["result"]).write_text(json.dumps(result, default=float))
    return code


if __name__ == "__main__":
    sys.exit(main())
