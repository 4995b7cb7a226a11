"""Fuzzing ``load_vectors`` (#14): any array written as .npy, CSV or parquet either comes
back as a usable 2-D array holding exactly what was written, or is refused with one
``DataError`` line. Never another exception, never rows silently gained or lost.

Seeded (``derandomize=True``) and bounded, so a run is the same everywhere and takes
seconds; no deadline, so a slow shared machine does not make it flaky.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from embedscope.errors import DataError
from embedscope.io.load import load_vectors

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8, np.uint64,
          np.bool_, np.complex64, np.object_]
#: Values that break naive readers: NaN, inf, beyond float32, near-float32-max, subnormal.
SPECIAL = [np.nan, np.inf, -np.inf, 1e300, -1e300, 3.4e38, 3.5e38, 1e-310, 1e-45, 6e4, 7e4, 0.0, -0.0]


@st.composite
def arrays(draw, two_d_only: bool = False):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    if two_d_only:
        shape = draw(st.tuples(st.integers(0, 6), st.integers(0, 5)))
    else:
        shape = draw(st.one_of(st.tuples(st.integers(0, 6), st.integers(0, 5)),
                               hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)))
    if dtype.kind in "fcO":
        base = np.float64 if dtype.kind == "O" else (np.float32 if dtype == np.complex64 else dtype)
        finite = st.floats(width=np.dtype(base).itemsize * 8, allow_nan=False, allow_infinity=False)
        values = draw(hnp.arrays(np.float64, shape, elements=st.one_of(finite, st.sampled_from(SPECIAL))))
        if dtype.kind == "O":  # Python floats, as a DataFrame of mixed columns would hold them
            boxed = np.empty(shape, dtype=object)
            for i, value in enumerate(values.flat):
                boxed.flat[i] = float(value)
            return boxed
        with warnings.catch_warnings(), np.errstate(over="ignore"):
            warnings.simplefilter("ignore")
            return values.astype(dtype)
    return draw(hnp.arrays(dtype, shape))


def _check(path: Path, written: np.ndarray | None) -> None:
    """The property: a clean array equal to ``written`` (when known), or one DataError line.

    Text comes back as C-contiguous float32; binary formats keep their numeric dtype
    (a float64 .npy stays memory-mapped) and must convert to finite float32.
    """
    try:
        X, _ = load_vectors(path)
    except DataError as exc:
        message = str(exc)
        assert message and "\n" not in message and len(message) < 400, message
        return
    assert X.ndim == 2 and X.shape[0] >= 2 and X.shape[1] >= 1 and X.dtype.kind in "biuf", (X.shape, X.dtype)
    if path.suffix in (".csv", ".tsv"):
        assert X.dtype == np.float32 and X.flags.c_contiguous
    as32 = np.ascontiguousarray(X, dtype=np.float32)
    assert np.isfinite(as32).all()
    if written is not None:
        assert X.shape == written.shape, f"read {X.shape}, wrote {written.shape}"
        expected = np.asarray(written, dtype=np.float64).astype(np.float32)
        # Text holds a value's shortest repr in its own dtype: float16 0.40625 is
        # written "0.4062", which float32 reads 1.2e-4 away. Allow the written dtype's
        # own spacing for text of floats narrower than float32.
        rtol = 1e-6
        if written.dtype.kind == "f" and written.dtype.itemsize < 4 and path.suffix in (".csv", ".tsv"):
            rtol = float(np.finfo(written.dtype).eps)
        np.testing.assert_allclose(as32, expected, rtol=rtol, atol=0)


@FUZZ
@given(arrays())
def test_npy(array):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "v.npy"
        np.save(path, array, allow_pickle=array.dtype == object)
        _check(path, array if array.dtype != object else None)


@FUZZ
@given(arrays(two_d_only=True), st.booleans(), st.sampled_from([",", "\t"]))
def test_csv(array, header, sep):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("v.csv" if sep == "," else "v.tsv")
        # pandas writes the column positions 0..d-1 as the header row; np.savetxt none.
        # A headerless first row equal to 0..d-1 or 1..d would be read as a header by
        # design, so its row count is not compared.
        pd.DataFrame(array).to_csv(path, sep=sep, index=False, header=header)
        ambiguous = not header and len(array) and array.dtype.kind in "biuf" and any(
            np.array_equal(np.asarray(array[0], dtype=np.float64), np.arange(k, array.shape[1] + k)) for k in (0, 1))
        known = array.dtype.kind in "biuf" and not ambiguous
        _check(path, array if known and array.dtype.kind != "b" else None)


@FUZZ
@given(arrays(two_d_only=True), st.booleans())
def test_parquet(array, list_column):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "v.parquet"
        try:
            if list_column:
                pd.DataFrame({"emb": list(array) if len(array) else []}).to_parquet(path)
            else:
                pd.DataFrame(array, columns=[f"c{i}" for i in range(array.shape[1])]).to_parquet(path)
        except Exception:  # pyarrow cannot write this dtype (float16, complex): nothing to read
            return
        _check(path, array if array.dtype.kind in "iuf" and array.size else None)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 200), st.binary(min_size=1, max_size=4)), min_size=1, max_size=4))
def test_npy_with_corrupted_bytes(edits):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "v.npy"
        np.save(path, np.arange(24, dtype=np.float32).reshape(6, 4))
        raw = bytearray(path.read_bytes())
        for at, junk in edits:
            raw[at : at + len(junk)] = junk
        path.write_bytes(bytes(raw))
        _check(path, None)


@FUZZ
@given(st.text(alphabet="0123456789.,-+eEnaifx \t\n", max_size=80), st.sampled_from(["v.csv", "v.tsv"]))
def test_delimited_text(text, name):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_text(text)
        _check(path, None)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 400), st.binary(min_size=1, max_size=4)), min_size=1, max_size=4),
       st.booleans())
def test_npz_with_corrupted_bytes(edits, compressed):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "v.npz"
        save = np.savez_compressed if compressed else np.savez
        save(path, vectors=np.random.default_rng(0).standard_normal((20, 4)))
        raw = bytearray(path.read_bytes())
        for at, junk in edits:
            raw[at : at + len(junk)] = junk
        path.write_bytes(bytes(raw))
        _check(path, None)
