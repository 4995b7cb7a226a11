"""Run every (method, backend or peer, size) of a benchmark, each in a fresh process.

:func:`run_bench` is the whole harness: it builds the dataset at each size, plans the
runs, records the ones that cannot start (peer missing, backend unavailable, backend
not implemented for the method) without starting them, runs the rest in
``python -m embedscope.bench.worker`` under a time budget (killed and recorded as
``timeout`` past it), measures quality in this process on every embedding alike, and
hands everything to :mod:`embedscope.bench.report`. A run that fails or times out is
recorded and the others go on.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedscope._progress import Progress
from embedscope.bench.impls import DEFAULT_PARAMS, PEER_GPU_CHECKS, PEER_NOTES, PEERS, peer_missing

__all__ = ["Job", "plan_jobs", "run_bench"]

#: Neighbours of the quality measures (trustworthiness, recall, label accuracy).
QUALITY_K = 15
#: Seeded triplets of the random triplet accuracy (global structure). It reads only
#: their rows, so it is measured on all points, not on the quality subsample.
QUALITY_TRIPLETS = 100_000


@dataclass(frozen=True)
class Job:
    """One column of the benchmark: a method run by an implementation on a backend."""

    method: str
    impl: str
    """``"embedscope"`` or a peer name."""
    backend: str

    @property
    def label(self) -> str:
        """``umap / embedscope[cpu]``, ``tsne / opentsne``."""
        who = f"embedscope[{self.backend}]" if self.impl == "embedscope" else self.impl
        return f"{self.method} / {who}"

    @property
    def slug(self) -> str:
        """A file-name-safe form of :attr:`label`."""
        method = self.method.rpartition(":")[2] if ":" in self.method else self.method
        return f"{method}-{self.impl}-{self.backend}".replace("/", "_").replace(" ", "_")


def plan_jobs(methods: list[str], backends: list[str], peers: list[str]) -> list[Job]:
    """Every (method, our backend) and (method, peer that implements it) pair.

    Raises
    ------
    ValueError
        An unknown method, backend or peer (the message lists the known ones).
    """
    from embedscope.engine.reduce import METHODS

    for method in methods:
        if method not in METHODS and ":" not in method:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)} "
                             "(or module:Class for your own reducer)")
    from embedscope.backends import registered

    for backend in backends:
        if backend not in registered():
            raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(registered())}")
    for peer in peers:
        if peer not in PEERS:
            raise ValueError(f"unknown peer {peer!r}; choose from {', '.join(PEERS)}")
    jobs = []
    for method in methods:
        jobs += [Job(method, "embedscope", backend) for backend in backends]
        jobs += [Job(method, peer, "gpu" if peer in PEER_GPU_CHECKS else "cpu")
                 for peer in peers if method in PEERS[peer][2]]
    return jobs


def _on_gpu(job: Job) -> bool:
    """Whether ``job`` runs on a GPU: its memory is then sampled."""
    from embedscope.backends import get_spec

    if job.impl != "embedscope":
        return job.impl in PEER_GPU_CHECKS
    return get_spec(job.backend).gpu


def _blocked(job: Job) -> str | None:
    """Why ``job`` cannot start here ("missing: ...", "unavailable: ...", ...), or None."""
    from embedscope.backends import available_backends

    if job.impl != "embedscope":
        why = peer_missing(job.impl)
        if why:
            return f"missing: {why}"
        if job.impl not in PEER_GPU_CHECKS:
            return None
        ok, detail = PEER_GPU_CHECKS[job.impl]()
        return None if ok else f"unavailable: {detail}"
    ok, detail = available_backends()[job.backend]
    if not ok:
        return f"unavailable: {detail}"
    if ":" not in job.method:
        from embedscope.backends import get_spec, registered
        from embedscope.engine.reduce import reducer_class

        reducer = reducer_class(job.method)._reducer_name
        supported = [name for name in registered() if reducer in get_spec(name).capabilities.reducers]
        if job.backend not in supported:
            return f"unsupported: {job.method} has no {job.backend} backend yet ({', '.join(supported)} only)"
    return None


def _tail(path: Path, lines: int = 1) -> str:
    try:
        text = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def _execute(spec: dict[str, Any], spec_path: Path, log_path: Path, budget: float) -> dict[str, Any]:
    """Run the worker on ``spec``; kill its whole process group past ``budget`` seconds."""
    spec_path.write_text(json.dumps(spec))
    start = time.perf_counter()
    with open(log_path, "w") as log:
        # A new session makes the worker the leader of its own process group, so a
        # timeout kills it together with any helper processes it started (joblib, loky).
        proc = subprocess.Popen([sys.executable, "-m", "embedscope.bench.worker", str(spec_path)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"status": "timeout", "error": f"killed after the budget of {budget:g} s",
                    "wall_s": time.perf_counter() - start}
    wall = time.perf_counter() - start
    result_path = Path(spec["result"])
    if result_path.exists():
        result = json.loads(result_path.read_text())
    else:  # killed by a signal (out of memory, ...) before it could write
        result = {"status": "failed", "error": _tail(log_path) or f"worker exited with code {code}"}
    if code != 0 and result.get("status") == "ok":
        result = {"status": "failed", "error": f"worker exited with code {code}"}
    if code < 0:
        result["error"] = f"worker killed by signal {-code} ({signal.Signals(-code).name}); " + result.get("error", "")
    result["wall_s"] = wall
    return result


def _quality(X: np.ndarray, Y: np.ndarray, labels: np.ndarray | None, seed: int,
             sample_size: int) -> dict[str, float]:
    from embedscope.engine.metrics import (
        knn_accuracy,
        knn_recall,
        random_triplet_accuracy,
        trustworthiness,
    )

    k = min(QUALITY_K, X.shape[0] - 1)
    out = {
        "trustworthiness": trustworthiness(X, Y, k, sample_size=sample_size, random_state=seed),
        "random_triplet_accuracy": random_triplet_accuracy(X, Y, n_triplets=QUALITY_TRIPLETS, random_state=seed),
        "knn_recall": knn_recall(X, Y, k, sample_size=sample_size, random_state=seed),
    }
    if labels is not None:
        out["knn_accuracy"] = knn_accuracy(Y, labels, k, sample_size=sample_size, random_state=seed)
    return out


def run_bench(
    data: str,
    *,
    methods: list[str],
    sizes: list[int | None],
    out_dir: str | os.PathLike,
    backends: list[str] = ("cpu",),
    peers: list[str] = (),
    budget: float = 600.0,
    labels: str | None = None,
    meta: str | None = None,
    seed: int = 0,
    sample_size: int = 10_000,
    warmup_rows: int = 1000,
    repeats: int = 1,
    command: str | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Run the benchmark and write its report into ``out_dir``.

    Parameters
    ----------
    data : str
        Dataset spec: ``mixture[:NxD]``, ``swissroll[:NxD]``, ``digits``, or a file
        :func:`embedscope.load_vectors` reads (see :func:`load_bench_data`).
    methods : list of str
        ``pca``, ``umap``, ``tsne`` or ``module:Class`` of your own reducer.
    sizes : list of int or None
        Numbers of points (None: the data's own size).
    out_dir : path
        Receives ``results.json``, ``results.md``, ``grid.png``, ``report.html``,
        ``embeddings/`` and ``logs/``.
    backends : list of str, default=("cpu",)
        Our backends to run: ``cpu``, ``cuda``, ``cuml``.
    peers : list of str, default=()
        ``umap-learn``, ``opentsne``, ``sklearn``, ``cuml``.
    budget : float, default=600
        Seconds each run may take (load, warm-up and fit) before it is killed.
    labels : str, optional
        Metadata column used for kNN label accuracy and panel colours.
    meta : str, optional
        Metadata file for a vector file.
    seed : int, default=0
        Seed of the data, of every reducer and of the quality subsample.
    sample_size : int, default=10000
        Quality measures use a seeded subsample of this many points.
    warmup_rows : int, default=1000
        Rows of the warm-up fit whose time is reported as compile time.
    repeats : int, default=1
        Timed fits per run, all with the same seed; the fit time reported is their
        median (``fit_s_runs`` holds each), stage times are medians too.
    command : str, optional
        The command line to record (the CLI passes its own).
    verbose : bool, default=False

    Returns
    -------
    dict
        ``{"manifest": {...}, "runs": [...]}``, as written to ``results.json``.
    """
    from embedscope.bench.datasets import load_bench_data
    from embedscope.bench.measure import library_versions, machine_info
    from embedscope.bench.report import write_report

    if not float(budget) > 0:
        raise ValueError(f"budget must be a positive number of seconds; got {budget!r}")
    # Checked here, before any run starts, so a bad value is one line and not a failure
    # deep inside the first fit or quality measure.
    if not (isinstance(seed, (int, np.integer)) and 0 <= seed < 2**32):
        raise ValueError(f"seed must be an integer in [0, 2**32); got {seed!r}")
    if not (isinstance(sample_size, (int, np.integer)) and sample_size >= 2 * QUALITY_K):
        raise ValueError(f"sample_size must be an integer >= {2 * QUALITY_K}; got {sample_size!r}")
    if not (isinstance(warmup_rows, (int, np.integer)) and warmup_rows >= 0):
        raise ValueError(f"warmup_rows must be a non-negative integer (0: no warm-up); got {warmup_rows!r}")
    if not (isinstance(repeats, (int, np.integer)) and not isinstance(repeats, bool) and 1 <= repeats <= 100):
        raise ValueError(f"repeats must be an integer in [1, 100]; got {repeats!r}")
    jobs = plan_jobs(list(methods), list(backends), list(peers))
    out = Path(out_dir)
    created = [p for p in (out, out / "embeddings", out / "logs") if not p.exists()]
    for sub in ("embeddings", "logs", ".work"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    progress = Progress(verbose, "bench")
    manifest: dict[str, Any] = {
        "command": command or " ".join(sys.argv),
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": machine_info(),
        "libraries": library_versions(),
        "data": data, "meta": meta, "labels": labels,
        "sizes": list(sizes), "methods": list(methods), "backends": list(backends), "peers": list(peers),
        "budget_s": float(budget), "seed": int(seed), "warmup_rows": int(warmup_rows),
        "repeats": int(repeats),
        "params": {m: DEFAULT_PARAMS.get(m, {}) for m in methods},
        "peer_settings": {p: PEER_NOTES[p] for p in peers},
        "quality": {"k": QUALITY_K, "sample_size": int(sample_size), "n_triplets": QUALITY_TRIPLETS,
                    "random_state": int(seed),
                    "measured_by": "the parent process, on every embedding alike"},
        "datasets": [],
    }
    runs: list[dict[str, Any]] = []
    label_sets: dict[str, tuple[np.ndarray | None, list[str] | None]] = {}
    total, done = len(jobs) * len(sizes), 0
    try:
        for size in sizes:
            with progress.stage("data", f"{data} at {size or 'full'} points"):
                bench = load_bench_data(data, size, labels=labels, meta=meta, random_state=seed)
            data_path = out / ".work" / f"data-{bench.X.shape[0]}.npy"
            np.save(data_path, bench.X)
            label_sets[bench.name] = (bench.labels, bench.label_names)
            manifest["datasets"].append({"name": bench.name, "n": int(bench.X.shape[0]), "d": int(bench.X.shape[1]),
                                         "n_labels": None if bench.label_names is None else len(bench.label_names),
                                         "note": bench.note})
            for job in jobs:
                done += 1
                record: dict[str, Any] = {"dataset": bench.name, "n": int(bench.X.shape[0]), "d": int(bench.X.shape[1]),
                                          "method": job.method, "impl": job.impl, "backend": job.backend,
                                          "label": job.label, "gpu": _on_gpu(job)}
                blocked = _blocked(job)
                if blocked:
                    record["status"] = blocked.partition(":")[0]
                    record["error"] = blocked.partition(": ")[2]
                    runs.append(record)
                    progress.log(f"[{done}/{total}] {job.label} at {bench.X.shape[0]:,}: {blocked}")
                    continue
                name = f"{job.slug}-{bench.X.shape[0]}"
                spec = {"data": str(data_path), "method": job.method, "impl": job.impl, "backend": job.backend,
                        "params": DEFAULT_PARAMS.get(job.method, {"n_components": 2}), "seed": int(seed),
                        "warmup_rows": int(warmup_rows), "repeats": int(repeats), "gpu": _on_gpu(job),
                        "embedding": str(out / "embeddings" / f"{name}.npy"),
                        "result": str(out / ".work" / f"{name}.result.json")}
                Path(spec["result"]).unlink(missing_ok=True)
                progress.log(f"[{done}/{total}] {job.label} at {bench.X.shape[0]:,} ...")
                result = _execute(spec, out / ".work" / f"{name}.spec.json", out / "logs" / f"{name}.log", budget)
                record.update(result)
                record["log"] = f"logs/{name}.log"
                if record["status"] == "ok":
                    record["embedding"] = f"embeddings/{name}.npy"
                    Y = np.load(spec["embedding"])
                    record.update(_quality(bench.X, Y, bench.labels, seed, sample_size))
                progress.log(f"[{done}/{total}] {job.label} at {bench.X.shape[0]:,}: {record['status']}"
                             + (f", fit {record['fit_s']:.2f} s, trustworthiness {record['trustworthiness']:.3f}, "
                                f"triplet accuracy {record['random_triplet_accuracy']:.3f}"
                                if record["status"] == "ok" else f" ({record.get('error', '')})"))
                runs.append(record)
    except BaseException:
        if not runs:
            # Nothing ran (bad data, an interrupt before the first run): leave no
            # empty folders behind, only those this call made and only while empty.
            shutil.rmtree(out / ".work", ignore_errors=True)
            for folder in reversed(created):
                with contextlib.suppress(OSError):
                    folder.rmdir()
        raise
    finally:
        shutil.rmtree(out / ".work", ignore_errors=True)
    payload = {"manifest": manifest, "runs": runs}
    with progress.stage("report", str(out)):
        write_report(payload, out, label_sets)
    return payload
