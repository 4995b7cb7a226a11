"""CPU reference figures for the GPU check, computed here (never on the device).

    python benchmarks/gpu_reference.py                      # every case (hours on 2 cores)
    python benchmarks/gpu_reference.py --cases knn_1m_50,tsne_50k_3d

Measured on 2 shared cores (2026-12-01): knn_1m_50 7 s, umap_1m_50 954 s (NN-descent
635 s, epochs 304 s), tsne_50k_3d 365 s (Barnes-Hut in 3-D, where the device runs the
FFT grid). umap_1m_768 and tsne_250k_2d are not stored yet: their steps say so
instead of comparing.

Each case fits the cpu backend on exactly the data, parameters and trust sample the
device step uses (the definitions live in benchmarks/gpu_steps.py) and merges its
figures into benchmarks/gpu_reference.json; the device step records its own figure next
to the stored one (trustworthiness within 0.01, KL within 3%: the issue's targets).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_steps import REFERENCE, ROOT, knn_ref_rows, mixture, trust, tsne_params, umap_params


def knn_1m_50() -> dict[str, Any]:
    """Exact neighbours (CPU twin) of 1,000 seeded rows of the 1M x 50 mixture."""
    from embedscope.kernels.knn import exact_knn

    n = 1_000_000
    X, _ = mixture(n, 50)
    rows = knn_ref_rows(n)
    idx, dist = exact_knn(X, 16, queries=X[rows])  # queries: the point itself comes back too
    keep = idx != rows[:, None]
    first = np.argsort(~keep, axis=1, kind="stable")[:, :15]  # the 15 nearest that are not the row
    idx, dist = np.take_along_axis(idx, first, axis=1), np.take_along_axis(dist, first, axis=1)
    return {"n": n, "size": f"{n:,} x 50", "k": 15, "rows": rows.tolist(), "indices": idx.tolist(),
            "distances": [[float(f"{v:.6g}") for v in row] for row in dist]}


def _umap(d: int) -> dict[str, Any]:
    from embedscope import UMAP

    n = 1_000_000
    X, _ = mixture(n, d)
    est = UMAP(backend="cpu", **umap_params())
    start = time.perf_counter()
    Y = est.fit_transform(X)
    return {"size": f"{n:,} x {d}", "fit_s": time.perf_counter() - start, "timings": est.timings_,
            "init_used": est.init_used_, "trust": trust(X, Y)}


def _tsne(n: int, dim: int) -> dict[str, Any]:
    from embedscope import TSNE

    X, _ = mixture(n, 50)
    est = TSNE(backend="cpu", **tsne_params(dim))
    start = time.perf_counter()
    Y = est.fit_transform(X)
    return {"size": f"{n:,} x 50 -> {dim}-D", "fit_s": time.perf_counter() - start, "timings": est.timings_,
            "n_iter": est.n_iter_, "repulsion": est.repulsion_, "kl": float(est.kl_divergence_), "trust": trust(X, Y)}


CASES = {
    "knn_1m_50": knn_1m_50,
    "umap_1m_50": lambda: _umap(50),
    "umap_1m_768": lambda: _umap(768),
    "tsne_250k_2d": lambda: _tsne(250_000, 2),
    "tsne_50k_3d": lambda: _tsne(50_000, 3),
}


def _write(stored: dict[str, Any]) -> None:
    """One line per case: the stored neighbour lists stay small (< 200 KB) and diffs stay readable."""
    cases = ",\n".join(f"  {json.dumps(name)}: {json.dumps(case, separators=(',', ':'))}"
                        for name, case in stored["cases"].items())
    REFERENCE.write_text(f'{{\n "about": {json.dumps(stored["about"])},\n "cases": {{\n{cases}\n }}\n}}\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    import os

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    for name in args.cases.split(","):
        start = time.perf_counter()
        figures = CASES[name]()
        figures.update(computed=time.strftime("%Y-%m-%d %H:%M:%S %Z"), commit=commit, cpus=os.cpu_count(),
                       case_s=round(time.perf_counter() - start, 1))
        stored = json.loads(REFERENCE.read_text()) if REFERENCE.exists() else {}
        stored.setdefault("about", "CPU references of benchmarks/gpu_steps.py (benchmarks/gpu_reference.py)")
        stored.setdefault("cases", {})[name] = figures
        _write(stored)
        print(name, {k: v for k, v in figures.items() if k not in ("rows", "indices", "distances")}, flush=True)


if __name__ == "__main__":
    main()
