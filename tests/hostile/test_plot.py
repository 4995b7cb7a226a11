"""Hostile and careless uses of ``embedscope plot``: runaway sizes, too many colours, bad input.

Each runs the real command under an address-space limit, so a plot that allocates past
its bounds fails here instead of taking the machine (a 2,000-category colour column on
2,000 points took 23 GB before #14).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.hostile.harness import Case, run_case

N = 2000


def _frame(n_categories: int, n: int = N) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"x": rng.standard_normal(n).astype(np.float32),
                         "y": rng.standard_normal(n).astype(np.float32),
                         "name": [f"w{i % n_categories:04d}" for i in range(n)]})


def _many(folder):
    _frame(2000).to_parquet(folder / "c.parquet")


def _few(folder):
    _frame(5).to_parquet(folder / "c.parquet")


def _shards(folder):
    (folder / "coords").mkdir()
    frame = _frame(2000)
    frame.iloc[:1000].to_parquet(folder / "coords" / "part.0.parquet")
    frame.iloc[1000:].to_parquet(folder / "coords" / "part.1.parquet")


def _no_xy(folder):
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [3.0, 4.0, 5.0]}).to_parquet(folder / "ab.parquet")


def _three_d(folder):
    np.save(folder / "c3.npy", np.random.default_rng(0).standard_normal((300, 3)).astype(np.float32))


def _empty(folder):
    pd.DataFrame({"x": np.zeros(0, np.float32), "y": np.zeros(0, np.float32)}).to_parquet(folder / "e.parquet")
    np.save(folder / "e.npy", np.zeros((0, 2), np.float32))
    (folder / "e.csv").write_text("")


def _wide(folder):
    np.save(folder / "v.npy", np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32))


def _values(folder):
    frame = _frame(5)
    v = np.arange(N, dtype=np.float64)
    v[::4] = np.nan
    frame.assign(v=v, allnan=np.full(N, np.nan)).to_parquet(folder / "c.parquet")


def _png_with_legend_of_64(folder, result):
    # 1200 px of plot plus the legend columns; the legend lists 63 categories and "other"
    with Image.open(folder / "p.png") as image:
        assert image.size[0] > 1200
    assert "'other'" in result.stderr and "1,937" in result.stderr


def _nothing_grouped(result):
    assert "other" not in result.stderr, result.stderr


PLOT = ["plot", "c.parquet", "--out", "p.png"]
# The limit is on address space, which counts glibc's per-thread malloc arenas (64 MB
# reserved each, one per busy thread: ~1 GB more on a 16-core machine) though they are
# not memory in use; two arenas keep the limit about memory on any machine.
ARENAS = {"MALLOC_ARENA_MAX": "2"}

CASES = [
    # harm: the per-category aggregate
    Case("color-2000-categories", [*PLOT, "--color", "name"], expect="handle", setup=_many, outputs=["p.png"],
         message=r"colour column 'name' has 2,000 distinct values; drawing the 63 most frequent",
         memory_gb=4.0, env=ARENAS, timeout=180, check=_png_with_legend_of_64),
    Case("color-2000-categories-quiet", [*PLOT, "--color", "name", "--quiet"], expect="handle", setup=_many,
         outputs=["p.png"], message=r"2,000 distinct values", memory_gb=4.0, env=ARENAS, timeout=180),
    Case("color-categories-over-memory", [*PLOT, "--color", "name", "--width", "6000", "--height", "6000"],
         setup=_many, message=r"6,000 x 6,000 pixels x 64 colour categories needs about .* GiB .* fewer categories",
         memory_gb=3.0, env=ARENAS, timeout=120),
    Case("color-few-categories", [*PLOT, "--color", "name", "--quiet"], expect="handle", setup=_few,
         outputs=["p.png"], memory_gb=3.0, env=ARENAS, timeout=180,
         check=lambda folder, result: _nothing_grouped(result)),
    Case("dask-color-2000-categories", ["plot", "coords", "--out", "p.png", "--color", "name", "--local-cluster", "1"],
         expect="handle", setup=_shards, outputs=["p.png"], message=r"2,000 distinct values; drawing the 63",
         memory_gb=5.0, env=ARENAS, timeout=300),
    # a value colour: NaN points are not drawn, so say how many; all NaN would draw nothing
    Case("color-values-some-nan", [*PLOT, "--color", "v"], expect="handle", setup=_values, outputs=["p.png"],
         message=r"column 'v' has no value \(NaN\) for 500 of 2,000 points; they are not drawn", timeout=120),
    Case("color-values-all-nan", [*PLOT, "--color", "allnan"], setup=_values,
         message=r"column 'allnan' holds no numbers \(all 2,000 values are NaN\)", timeout=120),
    # sizes, refused before the input is even read (the input does not exist)
    Case("width-200000", ["plot", "absent.parquet", "--out", "p.png", "--width", "200000"],
         message=r"--width 200,000 is over the bound of 16,384 pixels"),
    Case("height-200000", ["plot", "absent.parquet", "--out", "p.png", "--height", "200000"],
         message=r"--height 200,000 is over the bound of 16,384 pixels"),
    Case("area-over-bound", ["plot", "absent.parquet", "--out", "p.png", "--width", "16000", "--height", "16000"],
         message=r"256,000,000 pixels is over the bound of 36,000,000"),
    Case("width-zero", ["plot", "absent.parquet", "--out", "p.png", "--width", "0"],
         message=r"--width and --height must be positive"),
    Case("dask-width-200000", ["plot", "coords", "--out", "p.png", "--local-cluster", "1", "--width", "200000"],
         setup=_shards, message=r"--width 200,000 is over the bound"),
    # bad input, one line each
    Case("color-missing", [*PLOT, "--color", "nope"], setup=_few, message=r"no column 'nope' to colour by"),
    Case("color-is-coordinate", [*PLOT, "--color", "x"], setup=_few, message=r"no column 'x' to colour by"),
    Case("parquet-without-xy", ["plot", "ab.parquet", "--out", "p.png"], setup=_no_xy,
         message=r"ab.parquet has no x and y columns \(columns: \['a', 'b'\]\)"),
    Case("vectors-not-coordinates", ["plot", "v.npy", "--out", "p.png"], setup=_wide,
         message=r"8-dimensional vectors, not 2-D coordinates"),
    # 3-D is never drawn as x, y silently: refused, or drawn when --drop-z says so
    Case("three-d-coordinates", ["plot", "c3.npy", "--out", "p.png"], setup=_three_d,
         message=r"c3.npy holds 3-D coordinates; plot draws 2-D images \(.png, --tiles\): give --drop-z to draw x "
                 r"and y only, --out NAME.html for a rotatable 3-D view", timeout=120),
    Case("three-d-max-points-zero", ["plot", "absent.parquet", "--out", "v.html", "--max-points", "0"],
         message=r"--max-points must be in \[1, 2,000,000\]; got 0"),
    Case("three-d-coordinates-drop-z", ["plot", "c3.npy", "--out", "p.png", "--drop-z"], expect="handle",
         setup=_three_d, outputs=["p.png"], message=r"3-D coordinates; drawing x and y", timeout=120),
    Case("empty-parquet", ["plot", "e.parquet", "--out", "p.png"], setup=_empty, message=r"e.parquet is empty"),
    Case("empty-npy", ["plot", "e.npy", "--out", "p.png"], setup=_empty, message=r"e.npy is empty"),
    Case("empty-csv", ["plot", "e.csv", "--out", "p.png"], setup=_empty, message=r"e.csv is empty"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case(case, tmp_path):
    run_case(case, tmp_path / "work")
