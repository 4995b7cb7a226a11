"""Hostile cases of ``embedscope bench``: bad options are one line, nothing is left behind (#14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.harness import Case, run_case

BENCH = ["bench", "--data", "mixture:300x5", "--methods", "pca", "--quiet"]


def _file(folder: Path) -> None:
    (folder / "results").write_text("a file, not a folder")


CASES = [
    Case("bench-missing-data", ["bench", "--data", "nope.npy", "--methods", "pca", "--out", "b", "--quiet"],
         message=r"nope\.npy: no such file"),
    Case("bench-bad-size", [*BENCH, "--sizes", "abc", "--out", "b"], message=r"cannot read size 'abc'"),
    Case("bench-huge-size", [*BENCH, "--sizes", "1e15", "--out", "b"], message=r"needs .* of memory"),
    Case("bench-unknown-method", ["bench", "--data", "mixture:300x5", "--methods", "nosuch", "--out", "b"],
         message=r"unknown method 'nosuch'"),
    Case("bench-unknown-peer", [*BENCH, "--peers", "nosuch", "--out", "b"], message=r"unknown peer 'nosuch'"),
    Case("bench-unknown-backend", [*BENCH, "--backends", "gpu", "--out", "b"], message=r"unknown backend 'gpu'"),
    Case("bench-negative-budget", [*BENCH, "--budget", "-1", "--out", "b"], message=r"budget must be a positive"),
    Case("bench-negative-seed", [*BENCH, "--seed", "-1", "--out", "b"], message=r"seed must be an integer"),
    Case("bench-negative-sample", [*BENCH, "--sample-size", "-5", "--out", "b"], message=r"sample_size must be"),
    Case("bench-negative-warmup", [*BENCH, "--warmup-rows", "-3", "--out", "b"], message=r"warmup_rows must be"),
    Case("bench-missing-labels", [*BENCH, "--labels", "nosuch", "--out", "b"],
         message=r"labels column 'nosuch' not found"),
    Case("bench-out-is-a-file", [*BENCH, "--out", "results"], setup=_file,
         message=r"--out results is a file; give a folder"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case(case: Case, tmp_path: Path) -> None:
    # No case may leave its (never created) output folder behind: run_case checks
    # that nothing in the working folder changed.
    run_case(case, tmp_path / "work")
