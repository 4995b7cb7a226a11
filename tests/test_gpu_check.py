"""benchmarks/gpu.py, the one-call GPU check: its dry run must keep working without a GPU.

The dry run is the device run's code at tiny sizes (numpy for cupy, the cpu backend
for the estimators, the CPU twin for the exact GPU search), so a step that rots fails here, not in the one device call a session may get. The
negative controls check the isolation the device run relies on: a failing step
records "error" with its message and the next one still runs; a step past its
timeout is killed and recorded as "timeout", keeping the figures it had written; the
global budget skips what it cannot start.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.py"
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_steps  # noqa: E402 - the benchmark folder is not a package

RECORD_KEYS = {"step", "status", "target", "timeout_s", "wall_s", "log", "figures", "met"}
#: Steps that cannot give a figure without a GPU, and what they must say instead.
NOT_RUN: dict[str, str] = {}
#: Figures each step must have written in the dry run (the device run writes the same).
FIGURES = {
    "env": {"python", "libraries", "gpu", "embedscope_info"},
    "umap_1m_50": {"fit_s", "timings", "trust", "transform_s", "transform_label_accuracy", "warmup_s",
                   "peak_host_rss_gib", "peak_device_gib_sampled", "cpu_reference"},
    "umap_1m_768": {"fit_s", "timings", "trust", "transform_s", "peak_host_rss_gib", "cpu_reference"},
    "tsne_250k_2d": {"fit_s", "ms_per_iteration", "kl", "trust", "timings", "iterations_done", "cpu_reference"},
    "tsne_50k_3d": {"fit_s", "ms_per_iteration", "kl", "trust", "repulsion", "cpu_reference"},
    "knn_exact": {"k15_s", "gemm_s", "select_and_rest_s", "k90_s", "recall_vs_cpu", "compile_s"},
    "ivf_1m": {"n_lists", "probes_20", "default_probes"},
    "ivf_10m": {"n_lists", "probes_32"},
    "pca_10m_768": {"time_s", "solver", "explained"},
    "raster_100m": {"bin_points_s", "aggregate_s", "shade_s", "image_shape"},
    "app_aggregation": {"time_s", "categories_s", "zoomed_s", "drawn"},
    "gpu_tests": {"summary", "pytest_exit", "failed"},
}


def run_check(out: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def records(out: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in out.glob("*.json")
            if path.stem not in ("summary",)}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    proc = run_check(out)
    return out, proc


def test_steps_fit_one_device_call():
    assert sum(step.timeout_s for step in gpu_steps.STEPS) <= 500
    names = [step.name for step in gpu_steps.STEPS]
    assert len(set(names)) == len(names) and set(names) == set(FIGURES) | set(NOT_RUN)


def test_dry_run_runs_every_step(dry_run):
    out, proc = dry_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = records(out)
    for step in gpu_steps.STEPS:
        record = got[step.name]
        assert RECORD_KEYS <= set(record), (step.name, set(record))
        assert record["status"] == NOT_RUN.get(step.name, "ok"), (step.name, record.get("error"), record.get("reason"))
        missing = FIGURES.get(step.name, set()) - set(record["figures"])
        assert not missing, (step.name, missing)
        assert (out / record["log"]).exists()
    assert not list(out.glob("*.partial.json")) and not list(out.glob("*.result.json"))  # scratch removed
    # tiny data is never compared with the stored 1M figures (nor with a missing one)
    stored = json.loads(gpu_steps.REFERENCE.read_text())["cases"]
    for case in ("umap_1m_50", "umap_1m_768", "tsne_250k_2d", "tsne_50k_3d"):
        said = got[case]["figures"]["cpu_reference"]
        assert ("not compared" if case in stored else "none stored") in said, (case, said)
    summary = json.loads((out / "summary.json").read_text())
    assert [r["step"] for r in summary["steps"]] == [s.name for s in gpu_steps.STEPS] and summary["dry_run"]
    table = (out / "summary.md").read_text()
    for step in gpu_steps.STEPS:
        assert re.search(rf"^\| {step.name} \| {NOT_RUN.get(step.name, 'ok')} \|", table, re.M), step.name


def test_dry_run_figures_are_plausible(dry_run):
    out, _ = dry_run
    got = {name: r["figures"] for name, r in records(out).items()}
    umap = got["umap_1m_50"]
    assert set(umap["timings"]) == {"preprocess", "knn", "affinities", "init", "optimise"}
    assert 0.8 < umap["trust"] <= 1.0 and umap["transform_finite"] and umap["transform_label_accuracy"] > 0.8
    assert got["tsne_50k_3d"]["kl"] > 0 and got["tsne_250k_2d"]["iterations_done"] == 100
    knn = got["knn_exact"]
    assert knn["recall_vs_cpu"].startswith("no stored CPU rows")  # the stored rows are for 1M, not 600
    assert knn["k15_s"] > 0 and knn["gemm_s"] > 0
    assert got["ivf_1m"]["probes_20"]["recall15"] > 0.5  # 20 of 55 lists at 3,000 points
    assert got["ivf_10m"]["probes_32"]["recall15"] > 0.9  # 32 of 39 lists: nearly exact
    assert got["raster_100m"]["image_shape"] == [600, 800]
    app = got["app_aggregation"]
    assert 0 < app["drawn"] <= 20_000 and app["zoomed_s"] > 0  # most of N(0, 1) lies in [-4, 4]^2


def test_a_failing_step_is_recorded_and_the_next_runs(tmp_path):
    proc = run_check(tmp_path, "--steps", "env,app_aggregation,pca_10m_768", "--inject-error", "env")
    assert proc.returncode == 1  # a step failed
    got = records(tmp_path)
    assert got["env"]["status"] == "error"
    assert "RuntimeError: injected failure in step env" in got["env"]["error"]
    assert got["env"]["figures"] == {"injected": "error"}  # what it recorded before failing is kept
    assert got["app_aggregation"]["status"] == "ok"
    assert got["pca_10m_768"]["status"] == "ok"
    assert "| env | error |" in (tmp_path / "summary.md").read_text()


def test_a_step_past_its_timeout_is_killed_and_the_budget_skips_the_rest(tmp_path):
    proc = run_check(tmp_path, "--steps", "app_aggregation,env", "--inject-hang", "app_aggregation",
                     "--timeout", "app_aggregation=3", "--budget", "7", timeout=60)
    assert proc.returncode == 1
    got = records(tmp_path)
    hung = got["app_aggregation"]
    assert hung["status"] == "timeout" and "3 s timeout" in hung["error"]
    assert hung["figures"] == {"injected": "hang"} and hung["wall_s"] < 10
    assert got["env"]["status"] == "skipped: budget"


def test_unknown_step_is_refused(tmp_path):
    proc = run_check(tmp_path, "--inject-error", "nope")
    assert proc.returncode == 2 and "unknown step" in proc.stderr


def test_reference_matches_the_steps():
    """The stored CPU figures describe the data the device steps use."""
    ref = json.loads(gpu_steps.REFERENCE.read_text())["cases"]
    knn = ref["knn_1m_50"]
    assert knn["n"] == 1_000_000 and knn["rows"] == gpu_steps.knn_ref_rows(1_000_000).tolist()
    assert len(knn["indices"]) == len(knn["rows"]) and all(len(row) == 15 for row in knn["indices"])
    assert all(r not in row for r, row in zip(knn["rows"], knn["indices"], strict=True))  # self excluded
    for case in ("umap_1m_50", "umap_1m_768", "tsne_250k_2d", "tsne_50k_3d"):
        if case in ref:
            assert 0.5 < ref[case]["trust"] <= 1.0
    assert gpu_steps.REFERENCE.stat().st_size < 1_000_000


def test_wheels_cover_what_the_device_image_lacks():
    """gpu_check.sh carries what the steps import beyond the GPU image, and nothing big unused."""
    text = (ROOT / "benchmarks" / "gpu_check.sh").read_text()
    fetched = set(re.search(r"-d \.whl (.*?)\n  du", text, re.S).group(1).replace("\\", " ").split())
    assert {"datashader", "xarray", "colorcet", "param", "pytest", "pluggy", "iniconfig", "hypothesis"} <= fetched
    assert not fetched & {"umap-learn", "pynndescent", "bokeh", "holoviews", "panel"}  # no step imports them


def test_met_reads_limits_and_cpu_checks():
    import gpu

    ok = {"status": "ok", "figures": {"k15_s": 2.0}}
    assert gpu._met("knn_exact", ok) == "yes"
    assert gpu._met("knn_exact", {**ok, "figures": {"k15_s": 16.0}}) == "no"
    assert gpu._met("knn_exact", {**ok, "status": "timeout"}) == ""
    checks = {"trust": {"met": True}, "kl": {"met": False}}
    assert gpu._met("tsne_50k_3d", {"status": "ok", "figures": {"cpu_reference": {"checks": checks}}}) == "no"
    assert gpu._met("ivf_10m", {"status": "ok", "figures": {"n_lists": 3162}}) == ""  # no target
