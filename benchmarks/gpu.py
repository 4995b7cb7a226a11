"""The one-call GPU check: each step of benchmarks/gpu_steps.py in its own process.

    python benchmarks/gpu.py --out DIR                 # the device run (benchmarks/gpu_check.sh)
    python benchmarks/gpu.py --out DIR --dry-run       # same steps, tiny sizes, no GPU or cupy (CI)
    python benchmarks/gpu.py --list                    # steps, timeouts, targets

A step runs in a child interpreter with its own timeout, so a hang or a CUDA fault
costs that step only: its process group is killed and the next step starts. As each
step ends, ``DIR/<step>.json`` is written (status ok / error / timeout / skipped: ... /
not implemented, its figures, the error text, wall time) and ``DIR/summary.json`` +
``DIR/summary.md`` are rewritten, so a call cut short keeps every finished step. A
global deadline (``--budget``, 500 s) shortens the last timeouts and marks the steps
it cannot start "skipped: budget" rather than overrun the device call.

Negative controls (tests/test_gpu_check.py): ``--inject-error STEP`` makes a step
raise, ``--inject-hang STEP`` makes it sleep past its timeout, ``--timeout STEP=S``
sets one step's limit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_steps
from gpu_steps import ROOT, STEPS, Context, Outcome, Step

#: Below this many seconds left in the budget a step is not started.
MIN_START_S = 5.0
#: A dry run's step limit is at least this: its limits catch hangs, and on a loaded CI
#: machine a cold numba compile of the CPU twins alone can pass a device step's limit.
DRY_MIN_TIMEOUT_S = 120.0
#: Grace between SIGTERM and SIGKILL of a step that ran past its timeout.
KILL_GRACE_S = 2.0
#: Figures shown in summary.md per step (all of them are in <step>.json).
HEADLINES = {
    "env": ["gpu", "cupy", "sms", "carried_imports"],
    "umap_1m_50": ["fit_s", "timings", "trust", "transform_s", "transform_label_accuracy",
                   "peak_device_gib_sampled", "peak_host_rss_gib", "warmup_s"],
    "umap_1m_768": ["fit_s", "timings", "trust", "transform_s", "peak_device_gib_sampled", "peak_host_rss_gib"],
    "tsne_250k_2d": ["fit_s", "ms_per_iteration", "kl", "trust", "timings", "iterations_done", "peak_device_gib_sampled"],
    "tsne_50k_3d": ["fit_s", "ms_per_iteration", "kl", "trust", "repulsion"],
    "knn_exact": ["k15_s", "gemm_s", "select_and_rest_s", "select_read_gb_per_s", "recall_vs_cpu", "k90_s"],
    "ivf_1m": ["n_lists", "probes_20", "probes_80"],
    "ivf_10m": ["n_lists", "probes_32"],
    "pca_10m_768": ["time_s", "solver"],
    "raster_100m": ["bin_points_s", "aggregate_s", "shade_s"],
    "app_aggregation": ["time_s", "categories_s", "zoomed_s"],
    "gpu_tests": ["summary", "failed"],
}
#: Figures with a numeric limit from the issue (figure <= limit is "met"); quality
#: targets are met when every stored-CPU comparison is (see gpu_steps.compare).
LIMITS = {
    "umap_1m_768": {"fit_s": 5.0},
    "knn_exact": {"k15_s": 3.0},
    "pca_10m_768": {"time_s": 1.0},
    "raster_100m": {"bin_points_s": 0.05},
    "app_aggregation": {"time_s": 0.03, "categories_s": 0.03},
}


# ----------------------------------------------------------------------------- child


def child(name: str, out: Path, dry: bool, inject: str | None) -> int:
    """Run one step here; its outcome goes to ``<step>.result.json`` for the parent."""
    step = {s.name: s for s in STEPS}[name]
    ctx = Context(step=name, dry=dry, out=out)
    result: dict[str, Any]
    try:
        if inject == "error":
            ctx.record(injected="error")
            raise RuntimeError(f"injected failure in step {name} (--inject-error)")
        if inject == "hang":
            ctx.record(injected="hang")
            time.sleep(3600)
        step.run(ctx)
        result = {"status": "ok"}
    except Outcome as outcome:
        result = {"status": outcome.status, "reason": outcome.reason}
    except BaseException as exc:  # everything, so the parent gets the text of any failure
        traceback.print_exc()
        result = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    (out / f"{name}.result.json").write_text(json.dumps(result) + "\n")
    return 1 if result["status"] == "error" else 0


# ----------------------------------------------------------------------------- parent


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_step(step: Step, out: Path, timeout: float, dry: bool, inject: str | None) -> dict[str, Any]:
    """One step in a child process group; its record (also written to ``<step>.json``)."""
    for stale in (f"{step.name}.partial.json", f"{step.name}.result.json"):
        (out / stale).unlink(missing_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", step.name, "--out", str(out)]
    cmd += ["--dry-run"] if dry else []
    cmd += [f"--inject={inject}"] if inject else []
    log = out / f"{step.name}.log"
    start = time.perf_counter()
    with log.open("w") as sink:
        # its own session: a timeout kills the step and everything it started (pytest's children too)
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)
        timed_out = False
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            code = _kill(proc)
    record: dict[str, Any] = {"step": step.name, "target": step.target, "timeout_s": round(timeout, 1),
                              "wall_s": round(time.perf_counter() - start, 2), "log": log.name}
    result = _read_json(out / f"{step.name}.result.json")
    if timed_out:
        record["status"] = "timeout"
        record["error"] = f"killed after its {timeout:.0f} s timeout; last output:\n{_tail(log)}"
    elif result is None:  # died without a word: a segfault, a CUDA abort, an OOM kill
        record["status"] = "error"
        record["error"] = f"step process exited {code} without a result; last output:\n{_tail(log)}"
    else:
        record.update(result)
    record["figures"] = _read_json(out / f"{step.name}.partial.json") or {}
    record["met"] = "" if dry else _met(step.name, record)  # tiny sizes meet nothing
    (out / f"{step.name}.json").write_text(json.dumps(record, indent=1) + "\n")
    for scratch in (f"{step.name}.partial.json", f"{step.name}.result.json"):
        (out / scratch).unlink(missing_ok=True)
    return record


def _kill(proc: subprocess.Popen) -> int | None:
    """SIGTERM, then SIGKILL, to the step's process group; None if it outlives both (a
    process stuck in the GPU driver): the next step starts anyway."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            return proc.wait(timeout=KILL_GRACE_S if sig == signal.SIGTERM else 10.0)
        except subprocess.TimeoutExpired:
            continue
    return proc.poll()


def _met(name: str, record: dict[str, Any]) -> str:
    figures = record.get("figures", {})
    verdicts = [figures[key] <= limit for key, limit in LIMITS.get(name, {}).items()
                if isinstance(figures.get(key), (int, float))]
    ref = figures.get("cpu_reference")
    if isinstance(ref, dict):
        verdicts += [check["met"] for check in ref.get("checks", {}).values()]
    if record.get("status") != "ok" or not verdicts:
        return ""
    return "yes" if all(verdicts) else "no"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def write_summary(out: Path, records: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """summary.json (every record) and summary.md (one row per step, headline figures)."""
    (out / "summary.json").write_text(json.dumps({**meta, "steps": records}, indent=1) + "\n")
    lines = ["| step | status | wall_s | met | figures | cpu reference | target | error |", "|---|---|---|---|---|---|---|---|"]
    for r in records:
        figures = r.get("figures", {})
        shown = "; ".join(f"{k} {_fmt(figures[k])}" for k in HEADLINES.get(r["step"], []) if k in figures)
        ref = figures.get("cpu_reference")
        ref_text = ("; ".join(f"{k}: device {_fmt(c['device'])} vs cpu {_fmt(c['cpu'])}" for k, c in ref["checks"].items())
                    if isinstance(ref, dict) else (ref or ""))
        error = (r.get("error") or r.get("reason") or "").splitlines()
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in (
            r["step"], r["status"], r.get("wall_s", ""), r.get("met", ""), shown, ref_text, r.get("target", ""),
            error[0] if error else "")) + " |")
    table = "\n".join(lines)
    mode = "dry run (tiny sizes, no GPU)" if meta["dry_run"] else "device run"
    (out / "summary.md").write_text(f"# GPU check: {mode}\n\n`{meta['command']}`, started {meta['started']}, "
                                    f"{meta['elapsed_s']:.0f} s of a {meta['budget_s']:.0f} s budget\n\n{table}\n")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results/gpu/run"))
    parser.add_argument("--steps", default=None, help="comma-separated steps (default: all, in order)")
    parser.add_argument("--budget", type=float, default=500.0, help="seconds for all steps together")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, no cupy (CI)")
    parser.add_argument("--list", action="store_true", help="print the steps and exit")
    parser.add_argument("--timeout", action="append", default=[], metavar="STEP=S", help="one step's limit")
    parser.add_argument("--inject-error", action="append", default=[], metavar="STEP")
    parser.add_argument("--inject-hang", action="append", default=[], metavar="STEP")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--inject", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.child:
        return child(args.child, out, args.dry_run, args.inject)

    known = {s.name: s for s in STEPS}
    if args.list:
        for s in STEPS:
            print(f"{s.name:16s} {s.timeout_s:5.0f} s  {s.target}")
        print(f"{'total':16s} {sum(s.timeout_s for s in STEPS):5.0f} s")
        return 0
    chosen = STEPS if not args.steps else [known[name] for name in args.steps.split(",")]
    timeouts = {name: float(sec) for name, sec in (item.split("=", 1) for item in args.timeout)}
    unknown = (set(timeouts) | set(args.inject_error) | set(args.inject_hang)) - set(known)
    if unknown:
        parser.error(f"unknown step(s): {', '.join(sorted(unknown))}; see --list")

    started = time.perf_counter()
    meta = {"command": " ".join(["benchmarks/gpu.py", *(argv if argv is not None else sys.argv[1:])]),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "dry_run": args.dry_run, "budget_s": args.budget,
            "reference": str(gpu_steps.REFERENCE.relative_to(ROOT)), "elapsed_s": 0.0}
    records: list[dict[str, Any]] = []
    for step in chosen:
        left = args.budget - (time.perf_counter() - started)
        if left < MIN_START_S:
            record = {"step": step.name, "status": "skipped: budget", "target": step.target, "figures": {},
                      "reason": f"{left:.0f} s of the {args.budget:.0f} s budget left"}
            (out / f"{step.name}.json").write_text(json.dumps(record, indent=1) + "\n")
        else:
            inject = "error" if step.name in args.inject_error else "hang" if step.name in args.inject_hang else None
            limit = step.timeout_s if not args.dry_run else max(step.timeout_s, DRY_MIN_TIMEOUT_S)
            record = run_step(step, out, min(timeouts.get(step.name, limit), left), args.dry_run, inject)
        records.append(record)
        meta["elapsed_s"] = time.perf_counter() - started
        first = (record.get("error") or record.get("reason") or "").splitlines()
        print(f"[{meta['elapsed_s']:6.1f} s] {step.name}: {record['status']}"
              + (f" ({first[0]})" if first else ""), flush=True)
        write_summary(out, records, meta)
    print(write_summary(out, records, meta))
    return 0 if all(r["status"] in ("ok", "not implemented") for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
