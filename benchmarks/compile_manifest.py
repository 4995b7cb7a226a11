"""Rewrite embedscope/kernels/compile_manifest.json: the kernels each default fit compiles.

    python benchmarks/compile_manifest.py
    python benchmarks/compile_manifest.py tsne-exact-fft-joint   # only these profiles; the rest kept

For each profile (a reducer, its kNN route and the other size rules that change which
kernels it calls, 2-D; ``backends/cpu.py``'s ``_precompile`` names them), one fit in a
fresh process with an empty numba cache (``NUMBA_CACHE_DIR`` a new temporary folder,
precompilation off) records the kernels it calls from Python, in the order met, with
their argument types and the seconds each took to compile; then the time a worker
interpreter takes to start and import the kernels. :mod:`embedscope.kernels._precompile` reads the file before a
first fit. Rerun it when a kernel's arguments change (``tests/test_precompile.py`` says
when), and commit the file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib import import_module
from pathlib import Path
from typing import Any

from embedscope.kernels._precompile import ENV, MANIFEST, encode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CompileEvents

#: The fits whose kernels make each profile: (estimator, rows, keyword arguments).
RECORD_FITS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "umap-exact": ("UMAP", 3000, {}),
    "umap-nndescent": ("UMAP", 60000, {}),
    "tsne-exact-barnes-hut": ("TSNE", 3000, {}),
    "tsne-exact-fft": ("TSNE", 20000, {}),
    # above kernels.tsne.affinity.SCIPY_JOINT_MAX the joint P is built by kernels
    "tsne-exact-fft-joint": ("TSNE", 30000, {}),
    # perplexity 10 (k = 30) takes NN-descent from 40k points, as perplexity 30 does from 100k
    "tsne-nndescent-fft-joint": ("TSNE", 45000, {"perplexity": 10.0}),
    # from TSNE_REORDER_MIN (100k) the loop relabels by layout position (kernels.locality);
    # at k = 90 the search is exact up to 100k, so NN-descent needs one point more
    "tsne-nndescent-fft-joint-reorder": ("TSNE", 100001, {}),
    # ... and exactly at 100k it searches exactly and relabels (as at any perplexity above 20)
    "tsne-exact-fft-joint-reorder": ("TSNE", 100000, {}),
    "pacmap-exact": ("PaCMAP", 3000, {}),
    "pacmap-nndescent": ("PaCMAP", 45000, {}),
    "pacmap-nndescent-reorder": ("PaCMAP", 100000, {}),
}


def _record_child(profile: str) -> list[dict[str, Any]]:
    """Fit once with an empty cache; the kernels compiled from Python, in order, with seconds."""
    import embedscope
    import embedscope.kernels._precompile as precompile_module
    from embedscope.datasets import make_mixture

    name, rows, kwargs = RECORD_FITS[profile]
    X, _ = make_mixture(rows, 50, 10, random_state=0)
    asked: list[str | None] = []
    precompile_module.precompile = lambda name, **_: asked.append(name)
    with CompileEvents() as events:
        getattr(embedscope, name)(random_state=0, **kwargs).fit(X)
    # a record fit that takes another route than its name says would list the wrong kernels
    if asked != [profile]:
        sys.exit(f"{profile}: the fit {name}({rows} rows, {kwargs}) asks for profile {asked}; change RECORD_FITS")
    entries = []
    for dispatcher in events.top_level:
        func = dispatcher.py_func
        if not func.__module__.startswith("embedscope.") or getattr(import_module(func.__module__), func.__name__,
                                                                    None) is not dispatcher:
            continue
        for sig in dispatcher.signatures:
            args = [encode(t) for t in sig]
            if any(a is None for a in args):
                continue
            entries.append({"module": func.__module__, "name": func.__name__, "args": args,
                            "seconds": round(events.top_seconds.get(id(dispatcher), 0.0) / len(dispatcher.signatures), 3)})
    return entries


def _record(only: list[str]) -> None:
    unknown = sorted(set(only) - set(RECORD_FITS))
    if unknown:
        sys.exit(f"unknown profile(s) {', '.join(unknown)}; known: {', '.join(RECORD_FITS)}")
    kept = json.loads(MANIFEST.read_text())["profiles"] if only else {}
    profiles = {}
    for profile in RECORD_FITS:
        if only and profile not in only and profile in kept:
            profiles[profile] = kept[profile]
            continue
        with tempfile.TemporaryDirectory(prefix="embedscope-record-") as cache:
            env = {**os.environ, "NUMBA_CACHE_DIR": cache, ENV: "0"}
            out = subprocess.run([sys.executable, __file__, "--child", profile],
                                 env=env, capture_output=True, text=True, check=True)
        profiles[profile] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{profile}: {len(profiles[profile])} kernels, "
              f"{sum(e['seconds'] for e in profiles[profile]):.2f} s", file=sys.stderr)
    began = time.perf_counter()
    # a worker with nothing to compile: the interpreter and the package imports
    subprocess.run([sys.executable, "-m", "embedscope.kernels._precompile", "--worker"], input="[]", text=True,
                   check=True)
    startup = round(time.perf_counter() - began, 2)
    # one kernel a line: a re-record's diff shows which kernels and types changed
    blocks = [f'  "{name}": [\n' + ",\n".join("    " + json.dumps(e) for e in entries) + "\n  ]"
              for name, entries in profiles.items()]
    text = f'{{\n "startup_s": {startup},\n "profiles": {{\n' + ",\n".join(blocks) + "\n }\n}\n"
    json.loads(text)
    tmp = MANIFEST.with_suffix(".json.partial")
    tmp.write_text(text)
    os.replace(tmp, MANIFEST)
    print(f"wrote {MANIFEST} (worker start-up {startup} s)", file=sys.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="*", metavar="PROFILE",
                        help=f"re-record only these, keeping the others (known: {', '.join(RECORD_FITS)})")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_record_child(args.child)))
    else:
        _record(args.profiles)
