"""The embedscope command: reduce writes atomically, errors are one clear line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from embedscope.cli import main


def test_reduce_pca_to_parquet_with_metadata(tmp_path, capsys):
    out = tmp_path / "coords.parquet"
    assert main(["reduce", "builtin:mixture:1500x20", "--method", "pca", "--out", str(out)]) == 0
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["x", "y", "label"] and len(frame) == 1500
    err = capsys.readouterr().err
    assert "1,500 vectors x 20 dims" in err and "backend cpu" in err and "pca done" in err


def test_reduce_npy_3d_quiet(tmp_path, capsys):
    src = tmp_path / "v.npy"
    np.save(src, np.random.default_rng(0).standard_normal((300, 9)).astype(np.float32))
    out = tmp_path / "c.npy"
    assert main(["reduce", str(src), "--method", "pca", "--n-components", "3", "--out", str(out), "--quiet"]) == 0
    assert np.load(out).shape == (300, 3)
    assert capsys.readouterr().err == ""


def test_refuses_to_overwrite_and_force_replaces(tmp_path, capsys):
    out = tmp_path / "c.parquet"
    out.write_text("precious")
    args = ["reduce", "builtin:mixture:500x5", "--method", "pca", "--out", str(out), "--quiet"]
    assert main(args) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert out.read_text() == "precious"
    assert main([*args, "--force"]) == 0
    assert len(pd.read_parquet(out)) == 500


def test_failed_run_leaves_no_partial_output(tmp_path, capsys):
    src = tmp_path / "bad.npy"
    arr = np.ones((10, 3))
    arr[2, 1] = np.nan
    np.save(src, arr)
    out = tmp_path / "c.parquet"
    assert main(["reduce", str(src), "--method", "pca", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "NaN or inf" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == [src]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["reduce", "missing.npy", "--method", "pca", "--out", "o.parquet"], "no such file"),
        (["reduce", "builtin:mixture:50x4", "--method", "pca", "--out", "o.csv"], "must end in .parquet or .npy"),
        (["reduce", "builtin:mixture:50x4", "--method", "pca", "--perplexity", "5", "--out", "o.npy"],
         "--perplexity does not apply"),
        (["reduce", "builtin:mixture:50x4", "--method", "pca", "--param", "bogus=1", "--out", "o.npy"],
         "no parameter"),
        (["reduce", "builtin:mixture:50x4", "--method", "pca", "--backend", "cuml", "--out", "o.npy"], "cuml"),
        # The Dask flags are checked by one helper for every command, before a cluster starts.
        (["reduce", "builtin:mixture:50x4", "--method", "pca", "--local-cluster", "2",
          "--scheduler", "tcp://127.0.0.1:1", "--out", "o"], "--scheduler ADDRESS or --local-cluster N, not both"),
        (["reduce", "builtin:mixture:50x4", "--method", "pca", "--local-cluster", "0", "--out", "o"],
         "--local-cluster 0: N must be at least 1"),
        (["plot", "c.parquet", "--scheduler", "tcp://127.0.0.1:1", "--local-cluster", "2", "--out", "p.png"],
         "--scheduler ADDRESS or --local-cluster N, not both"),
        (["plot", "c.parquet", "--local-cluster", "-1", "--out", "p.png"], "--local-cluster -1: N must be at least 1"),
    ],
)
def test_errors_are_one_clear_line(tmp_path, monkeypatch, capsys, args, message):
    from embedscope.backends import probe_cuml

    if "cuml" in args and probe_cuml().ok:
        pytest.skip("cuml is usable here")
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_param_passthrough(tmp_path):
    out = tmp_path / "c.npy"
    assert main(["reduce", "builtin:mixture:400x30", "--method", "pca", "--param", "whiten=true",
                 "--svd-solver", "full", "--out", str(out), "--quiet"]) == 0
    np.testing.assert_allclose(np.load(out).std(axis=0, ddof=1), 1.0, rtol=1e-4)


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert ("cpu   yes" in out and "auto picks: cpu" in out) or "auto picks: cu" in out
    assert "numba" in out and "datashader" in out


def test_help_shows_examples():
    for command in ("reduce", "info"):
        out = subprocess.run([sys.executable, "-m", "embedscope.cli", command, "--help"],
                             capture_output=True, text=True, check=True).stdout
        assert "example" in out and f"embedscope {command}" in out


def test_outputs_get_ordinary_permissions(tmp_path):
    import os

    out = tmp_path / "c.npy"
    assert main(["reduce", "builtin:mixture:300x5", "--method", "pca", "--out", str(out), "--quiet"]) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == (0o666 & ~umask)
