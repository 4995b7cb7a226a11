"""`embedscope bench`: datasets, the harness end to end, failures and timeouts, reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from embedscope.backends import available_backends
from embedscope.bench.datasets import load_bench_data
from embedscope.bench.measure import current_rss_bytes, peak_rss_bytes
from embedscope.bench.runner import Job, plan_jobs, run_bench
from embedscope.datasets import make_swiss_roll, parse_size, parse_sizes
from embedscope.errors import DataError
from embedscope.io.load import load_vectors

# ----------------------------------------------------------------------------- sizes, data


def test_parse_sizes():
    assert parse_sizes("10k,100k,1M") == [10_000, 100_000, 1_000_000]
    assert parse_sizes("2500, 1.5k,2500") == [2500, 1500]  # order kept, duplicates dropped
    assert parse_sizes(None) == [] and parse_sizes(" ") == []
    for bad in ("ten", "0", "-5k", "1.2345k"):
        with pytest.raises(ValueError, match="size"):
            parse_size(bad)


def test_swissroll_builtin_is_a_rolled_sheet_in_100_dims():
    X, meta = load_vectors("builtin:swissroll:3000x100")
    assert X.shape == (3000, 100) and X.dtype == np.float32 and np.isfinite(X).all()
    assert list(meta.columns) == ["label", "t"]
    assert sorted(meta["label"].unique()) == list(range(10))
    # Three directions carry almost all variance: the roll is a 2-D sheet in 3-D,
    # placed in 100-D with small noise (negative control: the noise alone is isotropic).
    spectrum = np.linalg.svd(X - X.mean(0), compute_uv=False) ** 2
    assert spectrum[:3].sum() / spectrum.sum() > 0.95
    assert spectrum[3] / spectrum[4] < 1.5
    # Same seed, same data; another seed, other data.
    again, _ = make_swiss_roll(3000, 100, random_state=0)
    other, _ = make_swiss_roll(3000, 100, random_state=1)
    assert np.array_equal(X, again) and not np.allclose(X, other)
    with pytest.raises(ValueError, match="n_features"):
        make_swiss_roll(10, 2)
    with pytest.raises(DataError, match="swissroll"):
        load_vectors("builtin:nonesuch")


def test_bench_data_generates_sizes_and_subsamples_files(tmp_path):
    mix = load_bench_data("mixture:x8", 700)
    assert mix.X.shape == (700, 8) and mix.name == "mixture:700x8" and mix.labels.shape == (700,)
    roll = load_bench_data("swissroll", 400)
    assert roll.X.shape == (400, 100) and roll.label_names == [str(i) for i in range(10)]

    X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    np.save(tmp_path / "v.npy", X)
    pd.DataFrame({"word": [f"w{i}" for i in range(50)], "first": list("ab" * 25)}).to_csv(tmp_path / "m.csv", index=False)
    sub = load_bench_data(str(tmp_path / "v.npy"), 20, meta=str(tmp_path / "m.csv"), labels="first")
    assert sub.X.shape == (20, 4) and sub.label_names == ["a", "b"]
    # The subsample is rows of the file, and its labels travel with them.
    rows = [int(np.flatnonzero((X == row).all(axis=1))[0]) for row in sub.X]
    assert rows == sorted(rows) and all(sub.label_names[c] == "ab"[r % 2] for c, r in zip(sub.labels, rows, strict=True))
    full = load_bench_data(str(tmp_path / "v.npy"), 500)
    assert full.X.shape == (50, 4) and "50" in full.note and full.labels is None
    with pytest.raises(DataError, match="nope"):
        load_bench_data(str(tmp_path / "v.npy"), None, meta=str(tmp_path / "m.csv"), labels="nope")


def test_plan_jobs_pairs_peers_with_their_methods():
    jobs = plan_jobs(["pca", "umap", "tsne"], ["cpu"], ["umap-learn", "opentsne", "sklearn"])
    labels = [j.label for j in jobs]
    assert labels == ["pca / embedscope[cpu]", "pca / sklearn", "umap / embedscope[cpu]", "umap / umap-learn",
                      "tsne / embedscope[cpu]", "tsne / opentsne", "tsne / sklearn"]
    assert Job("umap", "cuml", "gpu") in plan_jobs(["umap"], [], ["cuml"])
    for bad, match in ((["umapp"], "method"), (["umap"], "backend")):
        with pytest.raises(ValueError, match=match):
            plan_jobs(bad, ["gpu"] if match == "backend" else ["cpu"], [])
    with pytest.raises(ValueError, match="peer"):
        plan_jobs(["umap"], ["cpu"], ["umap_learn"])


def test_peak_rss_is_this_process_only():
    assert peak_rss_bytes() >= current_rss_bytes() > 0
    ballast = np.ones(2**30 // 8)  # 1 GiB touched in the parent
    code = "from embedscope.bench.measure import peak_rss_bytes; print(peak_rss_bytes())"
    child = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    # ru_maxrss would charge the child with the parent's peak (over 1 GiB); the child
    # itself (an interpreter with numpy, numba and pandas loaded) stays far below.
    assert child < peak_rss_bytes() - 2**29
    del ballast


# ----------------------------------------------------------------------------- end to end

MANIFEST_KEYS = {"command", "date_utc", "machine", "libraries", "data", "sizes", "methods", "backends", "peers",
                 "budget_s", "seed", "warmup_rows", "params", "peer_settings", "quality", "datasets", "labels", "meta"}


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    payload = run_bench("mixture:x10", methods=["pca", "umap"], sizes=[400], out_dir=out,
                        backends=["cpu", "cuda"], peers=["sklearn", "cuml"], budget=300, warmup_rows=100)
    return out, payload


def test_harness_end_to_end(bench_run):
    out, payload = bench_run
    runs = {r["label"]: r for r in payload["runs"]}
    assert set(runs) == {"pca / embedscope[cpu]", "pca / embedscope[cuda]", "pca / sklearn", "pca / cuml",
                         "umap / embedscope[cpu]", "umap / embedscope[cuda]", "umap / cuml"}
    for label in ("pca / embedscope[cpu]", "pca / sklearn", "umap / embedscope[cpu]"):
        run = runs[label]
        assert run["status"] == "ok", run
        assert run["fit_s"] > 0 and run["compile_s"] >= 0 and run["wall_s"] >= run["fit_s"]
        assert 50 * 2**20 < run["peak_rss_bytes"] < 4 * 2**30
        Y = np.load(out / run["embedding"])
        assert Y.shape == (400, 2) and np.isfinite(Y).all()
    assert runs["umap / embedscope[cpu]"]["stages"]  # our stage timings travel through
    # Quality floors on this well-separated mixture; both PCAs give the same picture.
    assert runs["umap / embedscope[cpu]"]["trustworthiness"] > 0.9
    assert runs["umap / embedscope[cpu]"]["knn_accuracy"] > 0.9
    assert runs["pca / embedscope[cpu]"]["trustworthiness"] == pytest.approx(runs["pca / sklearn"]["trustworthiness"], abs=1e-3)
    # Global structure for every method and implementation, beside trustworthiness.
    for label in ("pca / embedscope[cpu]", "pca / sklearn", "umap / embedscope[cpu]"):
        assert 0.6 < runs[label]["random_triplet_accuracy"] <= 1.0, runs[label]
    assert runs["pca / embedscope[cpu]"]["random_triplet_accuracy"] == pytest.approx(
        runs["pca / sklearn"]["random_triplet_accuracy"], abs=1e-3)
    # Not installed / not usable here: recorded with the reason, never run.
    if importlib_missing("cuml"):
        assert runs["pca / cuml"]["status"] == "missing" and "cuml" in runs["pca / cuml"]["error"]
    if not available_backends()["cuda"][0]:
        assert runs["pca / embedscope[cuda]"]["status"] == "unavailable"
    else:
        assert runs["umap / embedscope[cuda]"]["status"] in ("unsupported", "ok")


def importlib_missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


def test_quality_negative_control(bench_run):
    """A random layout scores far below the real ones (the measures can fail)."""
    from embedscope.bench.runner import _quality

    bench = load_bench_data("mixture:x10", 400)
    noise = np.random.default_rng(0).normal(size=(400, 2)).astype(np.float32)
    random_quality = _quality(bench.X, noise, bench.labels, 0, 10_000)
    umap = next(r for r in bench_run[1]["runs"] if r["label"] == "umap / embedscope[cpu]")
    assert random_quality["trustworthiness"] < umap["trustworthiness"] - 0.2
    assert random_quality["knn_accuracy"] < 0.5 < umap["knn_accuracy"]
    # Chance is 0.5, within six standard deviations: 100,000 triplets add 0.25 / m to the
    # variance, the one random layout of 400 points about 0.01 / n (sd 0.0054 over 40 layouts).
    assert abs(random_quality["random_triplet_accuracy"] - 0.5) < 6 * np.sqrt(0.25 / 100_000 + 0.01 / 400)
    assert random_quality["random_triplet_accuracy"] < umap["random_triplet_accuracy"] - 0.1


def test_manifest_is_complete(bench_run):
    out, payload = bench_run
    manifest = json.loads((out / "results.json").read_text())["manifest"]
    assert manifest == json.loads(json.dumps(payload["manifest"], default=float))
    assert MANIFEST_KEYS <= set(manifest)
    assert manifest["machine"]["cpu"] and manifest["machine"]["cpu_count"] >= 1 and manifest["machine"]["memory_bytes"]
    assert set(manifest["machine"]["backends"]) == {"cpu", "cuda", "cuml"}
    for lib in ("numpy", "numba", "scikit-learn", "cuml"):
        assert manifest["libraries"][lib]  # a version or "not installed"
    assert manifest["seed"] == 0 and manifest["quality"]["k"] == 15 and manifest["quality"]["n_triplets"] == 100_000
    assert manifest["params"]["umap"]["n_neighbors"] == 15 and "sklearn" in manifest["peer_settings"]
    assert manifest["datasets"] == [{"name": "mixture:400x10", "n": 400, "d": 10, "n_labels": 20, "note": ""}]


def test_reports_written(bench_run):
    from PIL import Image

    from embedscope.bench.report import LEGEND_ROW, PANEL, TITLE, rebuild_report

    out, payload = bench_run
    markdown = (out / "results.md").read_text()
    assert "| pca | sklearn | ok |" in markdown and "missing" in markdown and "grid.png" in markdown
    assert "| trust@15 | triplet acc | recall@15 |" in markdown and "100,000 seeded random triplets" in markdown
    assert payload["manifest"]["command"] in markdown
    with Image.open(out / "grid.png") as grid:
        # rows: pca and umap on one dataset; columns: embedscope[cpu], sklearn (attempted runs
        # only); under them the legend of the mixture's 20 labels, three to a row at this width
        panels_height = 2 * (PANEL + TITLE + 4)
        assert grid.size == (2 * (PANEL + 4), panels_height + 24 + 7 * LEGEND_ROW)
        pixels = np.asarray(grid.convert("RGB"))
    panel = pixels[TITLE:TITLE + PANEL, :PANEL]
    assert (panel != 255).any(axis=2).mean() > 0.001  # points were drawn
    # The legend's swatches are the panels' colours: every swatch colour appears in a panel.
    legend = pixels[panels_height:]
    swatches = {tuple(c) for c in legend[legend.sum(axis=2) < 3 * 250].reshape(-1, 3)} - {(0, 0, 0)}
    drawn = {tuple(c) for c in pixels[:panels_height].reshape(-1, 3)}
    named = [c for c in swatches if c in drawn]
    assert len(named) >= 15, len(named)
    page = (out / "report.html").read_text()
    assert "<table>" in page and "data:image/png;base64," in page and "<th>triplet acc</th>" in page
    assert page.split("<table>")[1].count("<tr>") == 1 + len(payload["runs"])
    # Stage times of our runs (peers report none); the report can be rebuilt from the JSON.
    assert "knn" in markdown.split("Seconds per stage")[1] and "| pca | sklearn |" not in markdown.split("Seconds per stage")[1]
    before = (out / "grid.png").read_bytes()
    (out / "grid.png").unlink()
    rebuild_report(out)
    assert (out / "grid.png").read_bytes() == before


# ----------------------------------------------------------------------------- failures

FAKES = '''
import os, subprocess, time
import numpy as np

class Crasher:
    def __init__(self, random_state=None):
        self.random_state = random_state
    def fit_transform(self, X):
        raise RuntimeError("deliberate failure in fit")

class Sleeper:
    def __init__(self, random_state=None):
        self.random_state = random_state
    def fit_transform(self, X):
        child = subprocess.Popen(["sleep", "600"])
        with open(os.environ["BENCH_FAKE_PID"], "w") as f:
            f.write(str(child.pid))
        time.sleep(600)

class NaNs:
    def __init__(self, random_state=None):
        self.random_state = random_state
    def fit_transform(self, X):
        return np.full((X.shape[0], 2), np.nan)

class Quick:
    def __init__(self, random_state=None):
        self.random_state = random_state
    def fit_transform(self, X):
        return np.asarray(X[:, :2])
'''


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead too
        return stat.read().split(")")[-1].split()[0] != "Z"


def test_failure_and_timeout_are_recorded_and_the_rest_go_on(tmp_path, monkeypatch):
    (tmp_path / "benchfakes.py").write_text(textwrap.dedent(FAKES))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("BENCH_FAKE_PID", str(tmp_path / "grandchild.pid"))
    start = time.perf_counter()
    payload = run_bench("mixture:x4", methods=["benchfakes:Crasher", "benchfakes:Sleeper", "benchfakes:NaNs",
                                               "benchfakes:Quick"],
                        sizes=[200], out_dir=tmp_path / "out", budget=20, warmup_rows=0)
    elapsed = time.perf_counter() - start
    status = {r["method"].partition(":")[2]: r for r in payload["runs"]}
    assert status["Crasher"]["status"] == "failed"
    assert "RuntimeError: deliberate failure in fit" in status["Crasher"]["error"]
    assert "deliberate failure" in (tmp_path / "out" / status["Crasher"]["log"]).read_text()  # traceback kept
    assert status["Sleeper"]["status"] == "timeout" and "20 s" in status["Sleeper"]["error"]
    assert status["NaNs"]["status"] == "failed" and "NaN" in status["NaNs"]["error"]
    assert status["Quick"]["status"] == "ok" and status["Quick"]["trustworthiness"] > 0.5
    assert 0 <= status["Quick"]["random_triplet_accuracy"] <= 1
    assert elapsed < 120  # the sleeper was cut at its budget, not waited for
    # The whole process group was killed, including what the run itself started.
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    deadline = time.time() + 5
    while _alive(grandchild) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(grandchild)
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "timeout: killed after the budget of 20 s" in markdown and "failed: RuntimeError" in markdown


# ----------------------------------------------------------------------------- CLI


def test_cli_bench(tmp_path, capsys):
    from embedscope.cli import main

    out = tmp_path / "cli"
    argv = ["bench", "--data", "mixture:x6", "--methods", "pca", "--peers", "opentsne", "--sizes", "300",
            "--budget", "120", "--warmup-rows", "50", "--repeats", "3", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    payload = json.loads((out / "results.json").read_text())
    assert [r["status"] for r in payload["runs"]] == ["ok"]  # openTSNE has no PCA: no run planned
    (run,) = payload["runs"]
    assert len(run["fit_s_runs"]) == 3 and run["fit_s"] == pytest.approx(np.median(run["fit_s_runs"]))
    assert payload["manifest"]["repeats"] == 3
    assert "median of 3 timed fits" in (out / "results.md").read_text()
    assert payload["manifest"]["command"] == (f"embedscope bench --data mixture:x6 --methods pca --backends cpu "
                                              f"--peers opentsne --sizes 300 --budget 120 --seed 0 "
                                              f"--sample-size 10000 --warmup-rows 50 --repeats 3 --out {out}")
    assert main(argv) == 2  # results are not overwritten without --force
    assert "--force" in capsys.readouterr().err
    assert main(["bench", "--data", "mixture", "--methods", "pca", "--sizes", "ten", "--out", str(tmp_path / "x")]) == 2
    assert "size" in capsys.readouterr().err
    assert main([*argv[:-4], "0", "--out", str(tmp_path / "y")]) == 2
    assert "repeats must be an integer in [1, 100]" in capsys.readouterr().err


@pytest.mark.gpu
def test_cuda_run_records_gpu_memory(tmp_path):
    payload = run_bench("mixture:x50", methods=["pca"], sizes=[20_000], out_dir=tmp_path, backends=["cuda"],
                        budget=300, warmup_rows=100)
    (run,) = payload["runs"]
    assert run["status"] == "ok" and run["backend"] == "cuda", run
    assert run["peak_gpu_bytes"] > 20_000 * 50 * 4 // 2  # at least half the data went through the device
    assert run["trustworthiness"] > 0.8 and run["random_triplet_accuracy"] > 0.6
