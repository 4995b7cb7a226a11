"""First fit after ``pip install``: compile overhead of each reducer, cold cache against warm.

    python benchmarks/cold_start.py                      # UMAP, t-SNE, PaCMAP on 3,000 x 50
    python benchmarks/cold_start.py --repeats 3          # medians of 3 (each cold run a fresh cache)
    python benchmarks/cold_start.py --rows 60000         # the NN-descent path (exact kNN below 40k)
    python benchmarks/cold_start.py --name cold_start_main   # results under another name

Each reducer runs in fresh interpreters with ``NUMBA_CACHE_DIR`` set to a new empty
folder: first the **cold** process (nothing cached: every kernel compiles, as on the
first use after ``pip install``), then a **cached** one on the same folder (what every
later session pays: kernels load from disk). Each process fits twice on the same data
(``make_mixture(rows, dims, 10, random_state=0)``, the reducer's defaults and
``random_state=0``); the second fit, everything compiled and loaded, is the **warm** time.

- ``compile_s`` = cold first fit - warm fit: the first-use wait (target, issue #20:
  <= 3 s for UMAP and t-SNE);
- ``load_s`` = cached first fit - warm fit: what the on-disk cache still costs;
- ``compile_cpu_s``: ``compile_s`` in CPU seconds of the process (all threads): on a
  shared, loaded machine wall times swing with the neighbours' work, CPU time much less
  (compiling is single-threaded, so on an idle machine the two agree). The first fit
  compiles in worker processes too (:mod:`embedscope.kernels._precompile`), whose CPU
  time this does not count; ``EMBEDSCOPE_PRECOMPILE=0 python benchmarks/cold_start.py``
  measures the one-process compile;
- ``compiled``: kernels (numba dispatchers) compiled in the cold process, and
  ``top``: the costliest, by exclusive compile seconds (numba's ``numba:compile``
  events, nested compiles subtracted).

Import time (``import embedscope`` and the reducer's module) is reported apart and
not counted in either.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CompileEvents, machine, markdown_table, write_results

REDUCERS = ("umap", "tsne", "pacmap")
CLASSES = {"umap": "UMAP", "tsne": "TSNE", "pacmap": "PaCMAP"}


def child(reducer: str, rows: int, dims: int) -> dict[str, Any]:
    """One process: import, fit twice, and what numba compiled on the way."""
    start = time.perf_counter()
    import embedscope
    from embedscope.datasets import make_mixture

    cls = getattr(embedscope, CLASSES[reducer])
    import_s = time.perf_counter() - start
    X, _ = make_mixture(rows, dims, 10, random_state=0)
    fits, cpu = [], []
    with CompileEvents() as timer:
        for _ in range(2):
            began, began_cpu = time.perf_counter(), time.process_time()
            cls(random_state=0).fit(X)
            fits.append(time.perf_counter() - began)
            cpu.append(time.process_time() - began_cpu)
    top = sorted(timer.seconds.items(), key=lambda kv: -kv[1])
    return {"import_s": import_s, "first_s": fits[0], "warm_s": fits[1],
            "first_cpu_s": cpu[0], "warm_cpu_s": cpu[1],
            "compiled": len(timer.seconds), "specialisations": sum(timer.count.values()),
            "compile_events_s": sum(timer.seconds.values()),
            "top": [[name, round(sec, 3), timer.count[name]] for name, sec in top]}


def run(reducer: str, rows: int, dims: int, cache: str) -> dict[str, Any]:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    proc = subprocess.run([sys.executable, __file__, "--child", reducer, "--rows", str(rows), "--dims", str(dims)],
                          env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{reducer} child failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reducers", nargs="+", default=list(REDUCERS), choices=REDUCERS)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--dims", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--name", default="cold_start", help="results file name (default cold_start)")
    parser.add_argument("--child", choices=REDUCERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.rows, args.dims)))
        return

    rows: list[dict[str, Any]] = []
    runs: dict[str, list[dict[str, Any]]] = {}
    for reducer in args.reducers:
        runs[reducer] = []
        for _ in range(args.repeats):
            cache = tempfile.mkdtemp(prefix="embedscope-coldstart-")
            try:
                cold = run(reducer, args.rows, args.dims, cache)
                cached = run(reducer, args.rows, args.dims, cache)
            finally:
                shutil.rmtree(cache, ignore_errors=True)
            runs[reducer].append({"cold": cold, "cached": cached})
            print(f"{reducer}: cold {cold['first_s']:.2f} s, cached {cached['first_s']:.2f} s, "
                  f"warm {cold['warm_s']:.2f} / {cached['warm_s']:.2f} s", file=sys.stderr)
        each = runs[reducer]

        def med(key: str, side: str, items: list[dict[str, Any]] = each) -> float:
            return statistics.median(r[side][key] for r in items)

        warm = statistics.median([r[s]["warm_s"] for r in each for s in ("cold", "cached")])
        warm_cpu = statistics.median([r[s]["warm_cpu_s"] for r in each for s in ("cold", "cached")])
        last = each[-1]["cold"]
        rows.append({"reducer": reducer, "cold_s": med("first_s", "cold"), "cached_s": med("first_s", "cached"),
                     "warm_s": warm, "compile_s": med("first_s", "cold") - warm,
                     "load_s": med("first_s", "cached") - warm,
                     "compile_cpu_s": med("first_cpu_s", "cold") - warm_cpu, "import_s": med("import_s", "cached"),
                     "compiled": last["compiled"], "specialisations": last["specialisations"],
                     "top": ", ".join(f"{n} {s:.2f}" for n, s, _ in last["top"][:3])})
    columns = ["reducer", "cold_s", "cached_s", "warm_s", "compile_s", "load_s", "compile_cpu_s", "import_s", "compiled",
               "specialisations", "top"]
    table = markdown_table(rows, columns)
    note = (f"\n\n{args.rows} x {args.dims} mixture, {args.repeats} repeat(s) (medians); "
            "compile_s = cold first fit - warm fit, load_s = cached first fit - warm fit, "
            "compile_cpu_s = the same as compile_s in process CPU seconds; "
            "top: costliest kernels to compile, exclusive seconds.")
    print(table + note)
    write_results(args.name, {"machine": machine(), "rows": args.rows, "dims": args.dims,
                              "repeats": args.repeats, "results": rows, "runs": runs}, table + note)


if __name__ == "__main__":
    main()
