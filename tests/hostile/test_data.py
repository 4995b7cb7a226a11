"""Hostile cases of data intake and the Dask path (#14): nothing read wrong, nothing hangs.

Each case runs the real ``embedscope reduce`` in a subprocess (tests/hostile/harness.py)
under a timeout and an address-space limit: a FIFO that would block, a device that never
ends or a size that cannot fit fails the case instead of the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.hostile.harness import Case, Result, run_case

ROWS, DIMS = 120, 6


def _data() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((ROWS, DIMS)).astype(np.float32)


def _vectors(folder: Path) -> None:
    np.save(folder / "v.npy", _data())


def _fifo_input(folder: Path) -> None:
    os.mkfifo(folder / "v.npy")


def _fifo_meta(folder: Path) -> None:
    _vectors(folder)
    os.mkfifo(folder / "meta.tsv")


def _dev_zero(folder: Path) -> None:
    (folder / "zero.csv").symlink_to("/dev/zero")


def _corrupt_header(folder: Path) -> None:
    _vectors(folder)
    raw = bytearray((folder / "v.npy").read_bytes())
    at = raw.index(b"{") + 1
    raw[at : at + 3] = b'"""'  # numpy's header parser fails with tokenize.TokenError
    (folder / "bad.npy").write_bytes(bytes(raw))
    (folder / "v.npy").unlink()


def _huge_float64(folder: Path) -> None:
    data = _data().astype(np.float64)
    data[[7, 40], 2] = 1e300
    np.save(folder / "big.npy", data)


def _huge_csv(folder: Path) -> None:
    (folder / "big.csv").write_text("0.5,1\n2,1e300\n3,4\n")


def _mixed_shards(folder: Path) -> None:
    (folder / "shards").mkdir()
    np.save(folder / "shards" / "a.npy", _data()[:60])
    pd.DataFrame({"emb": list(_data()[60:])}).to_parquet(folder / "shards" / "b.parquet")


def _ragged_shards(folder: Path) -> None:
    (folder / "shards").mkdir()
    pd.DataFrame({"emb": list(_data()[:60])}).to_parquet(folder / "shards" / "p0.parquet")
    pd.DataFrame({"emb": list(_data()[60:, :4])}).to_parquet(folder / "shards" / "p1.parquet")


def _symlink_loop(folder: Path) -> None:
    (folder / "a.npy").symlink_to("b.npy")
    (folder / "b.npy").symlink_to("a.npy")


def _pandas_csv(folder: Path) -> None:
    pd.DataFrame(_data()).to_csv(folder / "v.csv", index=False)  # header row "0,1,2,3,4,5"


def _mixed_first_row(folder: Path) -> None:
    (folder / "v.tsv").write_text("1\tword\t3\n4\t5\t6\n7\t8\t9\n")


def _rows_written(expected: int):
    def check(folder: Path, result: Result) -> None:
        out = folder / "o.npy"
        written = np.load(out) if out.exists() else pd.read_parquet(folder / "o")
        assert len(written) == expected, f"{len(written)} rows written, {expected} expected"

    return check


PCA = ["--method", "pca"]
CASES = [
    Case("fifo-input", ["reduce", "v.npy", *PCA, "--out", "o.npy"], setup=_fifo_input, timeout=60,
         message=r"v\.npy is a FIFO \(named pipe\), not a regular file"),
    Case("fifo-meta", ["reduce", "v.npy", "--meta", "meta.tsv", *PCA, "--out", "o.npy"], setup=_fifo_meta,
         timeout=60, message=r"metadata file meta\.tsv is a FIFO"),
    Case("dev-zero-as-csv", ["reduce", "zero.csv", *PCA, "--out", "o.npy"], setup=_dev_zero, timeout=60,
         memory_gb=2.0, message=r"zero\.csv \(-> /dev/zero\) is a character device"),
    Case("huge-builtin", ["reduce", "builtin:mixture:1e15x50", *PCA, "--out", "o.npy"], timeout=60,
         message=r"builtin:mixture:1e15x50 needs 2\d\d PB of memory"),
    Case("fractional-builtin-size", ["reduce", "builtin:mixture:1.5kx2.5", *PCA, "--out", "o.npy"],
         message=r"size '2\.5' must be a positive whole number"),
    Case("corrupt-npy-header", ["reduce", "bad.npy", *PCA, "--out", "o.npy"], setup=_corrupt_header,
         message=r"bad\.npy is not a readable \.npy file: corrupt header \(TokenError"),
    Case("float64-1e300", ["reduce", "big.npy", *PCA, "--out", "o.npy"], setup=_huge_float64,
         message=r"2 row\(s\) with values beyond the float32 range \(\|x\| > 3\.4e38, rows 7, 40\)"),
    Case("csv-1e300", ["reduce", "big.csv", *PCA, "--out", "o.npy"], setup=_huge_csv,
         message=r"big\.csv has 1 row\(s\) with values beyond the float32 range"),
    Case("mixed-shard-folder", ["reduce", "shards", *PCA, "--out", "o"], setup=_mixed_shards,
         message=r"shards mixes 1 \.npy and 1 \.parquet shard\(s\)"),
    Case("ragged-parquet-shards", ["reduce", "shards", *PCA, "--out", "o"], setup=_ragged_shards,
         message=r"different widths in column 'emb': shards/p1\.parquet has 4, shards/p0\.parquet has 6"),
    Case("symlink-loop", ["reduce", "a.npy", *PCA, "--out", "o.npy"], setup=_symlink_loop,
         message=r"a\.npy: symlink loop"),
    Case("tsv-mixed-first-row", ["reduce", "v.tsv", *PCA, "--out", "o.npy"], setup=_mixed_first_row,
         message=r"row 1 mixes numbers and text \(column 2 is 'word'\)"),
    Case("pandas-numeric-header", ["reduce", "v.csv", *PCA, "--out", "o.npy"], expect="handle",
         setup=_pandas_csv, outputs=["o.npy"], check=_rows_written(ROWS),
         message=r"first row read as a header \(the column numbers 0\.\.5"),
    Case("unreachable-scheduler", ["reduce", "v.npy", *PCA, "--scheduler", "tcp://127.0.0.1:1", "--out", "o"],
         setup=_vectors, timeout=30, env={"EMBEDSCOPE_CONNECT_TIMEOUT": "2"},
         message=r"no Dask scheduler answered at tcp://127\.0\.0\.1:1 within 2 s"),
    Case("local-cluster-single-npy", ["reduce", "v.npy", *PCA, "--local-cluster", "1", "--out", "o"],
         expect="handle", setup=_vectors, outputs=["o"], timeout=120, check=_rows_written(ROWS)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case(case: Case, tmp_path: Path) -> None:
    run_case(case, tmp_path / "work")
