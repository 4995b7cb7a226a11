"""First-use compilation in parallel processes (embedscope.kernels._precompile)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
from numba.core import types

from embedscope.kernels import _precompile as pc

MANIFEST = json.loads(pc.MANIFEST.read_text())


@pytest.mark.parametrize("t", [
    types.Array(types.float32, 2, "C"),
    types.Array(types.int64, 1, "A", readonly=True),
    types.int64, types.uint64, types.float64, types.boolean, types.none,
    types.UniTuple(types.int32, 3),
    types.Tuple([types.float64, types.Array(types.uint8, 2, "F")]),
])
def test_types_round_trip(t):
    spec = pc.encode(t)
    assert spec is not None
    assert pc.decode(json.loads(json.dumps(spec))) == t


def test_types_a_manifest_cannot_carry():
    assert pc.encode(types.IntegerLiteral(0)) is None
    assert pc.encode(types.unicode_type) is None


def test_manifest_profiles():
    assert set(MANIFEST["profiles"]) == {"umap-exact", "umap-nndescent", "pacmap-exact", "pacmap-nndescent",
                                         "tsne-exact-barnes-hut", "tsne-exact-fft", "tsne-exact-fft-joint",
                                         "tsne-nndescent-fft-joint", "tsne-nndescent-fft-joint-reorder",
                                         "tsne-exact-fft-joint-reorder",
                                         "pacmap-nndescent-reorder"}
    for name, entries in MANIFEST["profiles"].items():
        assert entries, name
        for entry in entries:
            assert entry["module"].startswith("embedscope.kernels."), entry
            assert entry["seconds"] >= 0.0


def test_manifest_matches_what_fits_compile():
    """Each default fit calls its profile's kernels with exactly the manifest's types.

    A kernel whose argument types changed since the last ``--record`` would be
    compiled by the workers for nothing (and once more by the fit): re-record then.
    """
    import embedscope
    from embedscope.datasets import make_mixture

    X, _ = make_mixture(3000, 50, 10, random_state=0)
    embedscope.UMAP(random_state=0, backend="cpu", n_epochs=5).fit(X)
    embedscope.TSNE(random_state=0, backend="cpu", n_iter=250).fit(X)
    embedscope.PaCMAP(random_state=0, backend="cpu", n_iters=(2, 2, 2)).fit(X)
    for profile in ("umap-exact", "tsne-exact-barnes-hut", "pacmap-exact"):
        for entry in MANIFEST["profiles"][profile]:
            dispatcher = pc._dispatcher(entry["module"], entry["name"])
            sig = tuple(pc.decode(a) for a in entry["args"])
            assert sig in dispatcher.signatures, (profile, entry["name"], dispatcher.signatures)


def test_every_manifest_entry_compiles():
    """The NN-descent profiles' kernels too (their fits are too large for a unit test)."""
    for entries in MANIFEST["profiles"].values():
        for entry in entries:
            pc._compile(entry)
            dispatcher = pc._dispatcher(entry["module"], entry["name"])
            assert tuple(pc.decode(a) for a in entry["args"]) in dispatcher.signatures


def test_nothing_to_do():
    assert pc.precompile(None)["skipped"] == "no profile"
    assert pc.precompile("no-such-profile")["compiled"] == 0


def test_switched_off(monkeypatch):
    monkeypatch.setenv(pc.ENV, "0")
    assert pc.precompile("umap-exact")["skipped"] == f"{pc.ENV}=0"


def test_split_balances_and_keeps_every_entry():
    entries = [{"name": str(i), "seconds": s} for i, s in enumerate([1.0, 0.9, 0.5, 0.4, 0.3, 0.2, 0.1])]
    shares = pc._split(entries, 2, 0.5)
    assert sorted(e["name"] for share in shares for e in share) == sorted(e["name"] for e in entries)
    loads = [sum(e["seconds"] for e in share) + (0.5 if i else 0.0) for i, share in enumerate(shares)]
    assert max(loads) - min(loads) <= 0.5


@pytest.mark.skipif(pc._cpus() < 2, reason="workers start only with two CPUs or more")
def test_cold_cache_compiled_by_workers_gives_the_same_fit(tmp_path):
    """In a fresh cache: workers compile, the index files appear, a second call finds them,
    and the fit is the one this process computes (the same machine code either way)."""
    import embedscope
    from embedscope.datasets import make_mixture

    X, _ = make_mixture(600, 20, 4, random_state=1)
    here = embedscope.UMAP(random_state=3, backend="cpu", n_epochs=30).fit_transform(X)
    np.save(tmp_path / "X.npy", X)
    script = textwrap.dedent(f"""
        import json, numpy as np, embedscope
        from embedscope.kernels import _precompile as pc
        lines = []
        first = pc.precompile("umap-exact", log=lines.append)
        second = pc.precompile("umap-exact")
        missing = [e["name"] for e in json.loads(pc.MANIFEST.read_text())["profiles"]["umap-exact"]
                   if not pc._index_exists(e)]
        X = np.load({str(tmp_path / "X.npy")!r})
        Y = embedscope.UMAP(random_state=3, backend="cpu", n_epochs=30).fit_transform(X)
        np.save({str(tmp_path / "Y.npy")!r}, Y)
        print(json.dumps({{"first": first, "second": second, "missing": missing, "lines": lines}}))
    """)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["first"]["workers"] >= 1 and report["first"]["failed"] == [], report
    assert report["first"]["compiled"] == len(MANIFEST["profiles"]["umap-exact"])
    assert report["second"]["skipped"] == "cached"
    assert report["missing"] == []
    assert report["lines"][0].startswith("first use: compiling")
    np.testing.assert_array_equal(np.load(tmp_path / "Y.npy"), here)


def test_a_failing_worker_is_reported_not_raised(tmp_path, monkeypatch):
    # kernels whose types do not fit them: the workers fail to compile them
    bogus = [{"module": "embedscope.kernels.tsne.gradient", "name": "advance", "args": [["scalar", "int64"]] * n,
              "seconds": 1.0} for n in (1, 3)]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"startup_s": 0.1, "profiles": {"bogus": bogus}}))
    monkeypatch.setattr(pc, "MANIFEST", manifest)
    monkeypatch.setattr(pc, "_cpus", lambda: 2)
    monkeypatch.setattr(pc, "_index_exists", lambda entry: False)
    lines: list[str] = []
    result = pc.precompile("bogus", log=lines.append)
    assert result["workers"] == 1 and len(result["failed"]) == 1
    assert "advance" in result["failed"][0]
    assert "a worker failed" in lines[-1]


def test_stale_entries_and_unknown_cache_layout(tmp_path, monkeypatch):
    gone = {"module": "embedscope.kernels.no_such_module", "name": "k", "args": [], "seconds": 1.0}
    assert pc._index_exists(gone) is True  # nothing to compile for a kernel that is gone
    entry = MANIFEST["profiles"]["umap-exact"][0]
    dispatcher = pc._dispatcher(entry["module"], entry["name"])
    monkeypatch.setattr(dispatcher, "_cache", object())  # another numba's internals
    assert pc._index_exists(entry) is None
    assert pc.precompile("umap-exact")["skipped"].startswith("numba's cache layout")


def test_disable_jit_skips(monkeypatch):
    monkeypatch.setattr(numba.config, "DISABLE_JIT", True)
    assert pc.precompile("umap-exact")["skipped"] == "NUMBA_DISABLE_JIT"


def test_cpu_backend_picks_the_profile(monkeypatch):
    from embedscope.backends import cpu as cpu_backend

    asked: list[str] = []
    monkeypatch.setattr(pc, "precompile", lambda profile, log=None: asked.append(profile))
    cpu_backend._precompile("umap", 3000, 14, "euclidean", 2)
    cpu_backend._precompile("umap", 3000, 14, "cosine", 2, method="nndescent")  # the user's method
    cpu_backend._precompile("umap", 60000, 14, "euclidean", 2)
    cpu_backend._precompile("tsne", 3000, 90, "euclidean", 2)
    cpu_backend._precompile("tsne", 20000, 90, "euclidean", 2)
    cpu_backend._precompile("tsne", 60000, 90, "euclidean", 2)  # exact kNN, P built by kernels
    cpu_backend._precompile("tsne", 60000, 30, "euclidean", 2)  # perplexity 10: NN-descent from 40k
    cpu_backend._precompile("tsne", 100000, 90, "euclidean", 2)  # exact kNN, relabelled by layout position
    cpu_backend._precompile("tsne", 200000, 90, "euclidean", 2)  # relabelled by layout position too
    cpu_backend._precompile("pacmap", 45000, 60, "euclidean", 2)
    cpu_backend._precompile("pacmap", 200000, 60, "euclidean", 2)
    assert asked == ["umap-exact", "umap-nndescent", "umap-nndescent", "tsne-exact-barnes-hut", "tsne-exact-fft",
                     "tsne-exact-fft-joint", "tsne-nndescent-fft-joint", "tsne-exact-fft-joint-reorder",
                     "tsne-nndescent-fft-joint-reorder", "pacmap-nndescent", "pacmap-nndescent-reorder"]
    assert set(asked) <= set(MANIFEST["profiles"])
    asked.clear()
    cpu_backend._precompile("umap", 3000, 14, "euclidean", 3)  # 3-D: no profile
    cpu_backend._precompile("umap", 3000, 14, "manhattan", 2)  # direct metric: no profile
    cpu_backend._precompile("tsne", 1000, 90, "euclidean", 2)  # exact repulsion: no profile
    assert asked == []


def test_each_record_fit_takes_the_route_its_profile_names(monkeypatch):
    """benchmarks/compile_manifest.py records a profile by one fit: that fit must ask for it.

    (A 100k t-SNE searches exactly, so a "-nndescent-...-reorder" profile recorded from
    it listed no NN-descent kernels; the fit stops at the precompile step here, before
    the kNN search.)
    """
    from pathlib import Path

    import embedscope
    from embedscope.datasets import make_mixture

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import compile_manifest

    class Asked(Exception):
        pass

    def ask(profile, **_):
        raise Asked(profile)

    monkeypatch.setattr(pc, "precompile", ask)
    assert set(compile_manifest.RECORD_FITS) == set(MANIFEST["profiles"])
    for profile, (name, rows, kwargs) in compile_manifest.RECORD_FITS.items():
        X, _ = make_mixture(rows, 50, 10, random_state=0)
        with pytest.raises(Asked) as asked:
            getattr(embedscope, name)(random_state=0, **kwargs).fit(X)
        assert asked.value.args[0] == profile, (name, rows, kwargs)
