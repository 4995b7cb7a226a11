"""Hostile cases of ``reduce`` options and the CLI's last line of defence (#14)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedscope import cli
from tests.hostile.harness import Case, Result, run_case


def _vectors(folder: Path) -> None:
    np.save(folder / "v.npy", np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32))


def _one_column_meta(folder: Path) -> None:
    _vectors(folder)
    pd.DataFrame({"word": [f"w{i}" for i in range(300)]}).to_csv(folder / "meta.csv", index=False)


def _named_column(folder: Path, result: Result) -> None:
    frame = pd.read_parquet(folder / "o.parquet")
    assert list(frame.columns) == ["x", "y", "word"] and frame["word"].iloc[0] == "w0"


def _one_warning_line(folder: Path, result: Result) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("embedscope reduce: warning: perplexity=1000"), lines


PCA = ["--method", "pca", "--quiet"]
CASES = [
    Case("key-on-npy", ["reduce", "v.npy", *PCA, "--key", "abc", "--out", "o.npy"], setup=_vectors,
         message=r"--key\) names an array inside an \.npz file"),
    Case("columns-on-npy", ["reduce", "v.npy", *PCA, "--columns", "emb", "--out", "o.npy"], setup=_vectors,
         message=r"--columns\) selects vector columns of a parquet table"),
    Case("one-column-meta-with-header", ["reduce", "v.npy", "--meta", "meta.csv", *PCA, "--out", "o.parquet"],
         expect="handle", setup=_one_column_meta, outputs=["o.parquet"], check=_named_column),
    Case("warning-is-one-line", ["reduce", "v.npy", "--method", "tsne", "--perplexity", "1000", "--n-iter", "250",
                                 "--quiet", "--out", "o.npy"],
         expect="handle", setup=_vectors, outputs=["o.npy"], check=_one_warning_line),
    Case("unknown-param", ["reduce", "v.npy", *PCA, "--param", "nosuch=1", "--out", "o.npy"], setup=_vectors,
         message=r"PCA has no parameter\(s\) \['nosuch'\]"),
    Case("param-not-for-method", ["reduce", "v.npy", *PCA, "--perplexity", "5", "--out", "o.npy"], setup=_vectors,
         message=r"--perplexity does not apply to --method pca"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case(case: Case, tmp_path: Path) -> None:
    run_case(case, tmp_path / "work")


def test_an_unexpected_error_is_one_line(monkeypatch, capsys) -> None:
    def boom(args):
        raise RuntimeError("deep inside\na library")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["info"].set_defaults(func=boom)
    assert cli.main(["info"]) == 2
    err = capsys.readouterr().err
    assert err == ("embedscope info: error: unexpected RuntimeError: deep inside a library "
                   "(set EMBEDSCOPE_DEBUG=1 for the traceback)\n")
    monkeypatch.setenv("EMBEDSCOPE_DEBUG", "1")
    with pytest.raises(RuntimeError, match="deep inside"):
        cli.main(["info"])


def test_os_errors_read_as_their_cause() -> None:
    from embedscope.engine.command import one_line

    assert one_line(PermissionError(13, "Permission denied", "/x/y")) == "Permission denied: /x/y"
    assert one_line(ValueError("two\n  lines")) == "two lines"
