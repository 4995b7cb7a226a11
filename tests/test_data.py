"""Data intake: every supported source, and a clear error for every bad one."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedscope import DataError, load_builtin, load_vectors, make_mixture
from embedscope.io.stream import iter_row_chunks
from embedscope.io.validate import validate_vectors


@pytest.fixture
def X():
    return np.random.default_rng(0).standard_normal((50, 6)).astype(np.float32)


def test_npy_is_memory_mapped_not_copied(tmp_path, X):
    path = tmp_path / "v.npy"
    np.save(path, X)
    vectors, meta = load_vectors(path)
    assert isinstance(vectors, np.memmap)
    assert meta is None
    np.testing.assert_array_equal(vectors, X)


def test_npz_single_and_named(tmp_path, X):
    np.savez(tmp_path / "one.npz", X)
    np.testing.assert_array_equal(load_vectors(tmp_path / "one.npz").vectors, X)
    np.savez(tmp_path / "two.npz", vectors=X, other=X[:3])
    np.testing.assert_array_equal(load_vectors(tmp_path / "two.npz").vectors, X)
    np.savez(tmp_path / "amb.npz", a=X, b=X)
    with pytest.raises(DataError, match="say which"):
        load_vectors(tmp_path / "amb.npz")
    np.testing.assert_array_equal(load_vectors(tmp_path / "amb.npz", key="b").vectors, X)
    with pytest.raises(DataError, match="no array 'c'"):
        load_vectors(tmp_path / "amb.npz", key="c")


def test_parquet_list_column_with_metadata(tmp_path, X):
    table = pa.table({"word": [f"w{i}" for i in range(50)], "emb": pa.array(list(X), type=pa.list_(pa.float32()))})
    pq.write_table(table, tmp_path / "t.parquet")
    vectors, meta = load_vectors(tmp_path / "t.parquet")
    np.testing.assert_allclose(vectors, X)
    assert list(meta.columns) == ["word"] and meta["word"].iloc[3] == "w3"


def test_parquet_fixed_size_list(tmp_path, X):
    flat = pa.array(X.reshape(-1))
    column = pa.FixedSizeListArray.from_arrays(flat, 6)
    pq.write_table(pa.table({"v": column}), tmp_path / "f.parquet")
    np.testing.assert_allclose(load_vectors(tmp_path / "f.parquet").vectors, X)


def test_parquet_numeric_columns_and_named_columns(tmp_path, X):
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    frame.to_parquet(tmp_path / "n.parquet")
    np.testing.assert_allclose(load_vectors(tmp_path / "n.parquet").vectors, X)
    frame["label"] = ["a"] * 50
    frame.to_parquet(tmp_path / "m.parquet")
    with pytest.raises(DataError, match=r"\['label'\] are not numeric"):
        load_vectors(tmp_path / "m.parquet")
    vectors, meta = load_vectors(tmp_path / "m.parquet", columns=[f"f{i}" for i in range(6)])
    np.testing.assert_allclose(vectors, X)
    assert list(meta.columns) == ["label"]


def test_parquet_ragged_list_is_an_error(tmp_path):
    pq.write_table(pa.table({"v": [[1.0, 2.0], [1.0, 2.0, 3.0]]}), tmp_path / "r.parquet")
    with pytest.raises(DataError, match="different lengths"):
        load_vectors(tmp_path / "r.parquet")


def test_tensorflow_projector_pair(tmp_path, X):
    np.savetxt(tmp_path / "vectors.tsv", X, delimiter="\t")
    (tmp_path / "metadata.tsv").write_text("".join(f"word{i}\n" for i in range(50)))
    vectors, meta = load_vectors(tmp_path / "vectors.tsv")
    np.testing.assert_allclose(vectors, X, rtol=1e-6)
    assert meta["label"].tolist()[:2] == ["word0", "word1"]


def test_multi_column_metadata_has_header_and_csv_gz(tmp_path, X):
    with gzip.open(tmp_path / "v.csv.gz", "wt") as f:
        np.savetxt(f, X, delimiter=",")
    (tmp_path / "meta.tsv").write_text("word\tlength\n" + "".join(f"w{i}\t{i % 7}\n" for i in range(50)))
    vectors, meta = load_vectors(tmp_path / "v.csv.gz", tmp_path / "meta.tsv")
    assert vectors.shape == (50, 6)
    assert list(meta.columns) == ["word", "length"] and meta["length"].iloc[8] == 1


def test_csv_with_text_cell_names_the_cell(tmp_path):
    (tmp_path / "bad.csv").write_text("1,2,3\n4,oops,6\n7,8,9\n")
    with pytest.raises(DataError, match=r"row 2, column 2 is not a number \('oops'\)"):
        load_vectors(tmp_path / "bad.csv")


def test_in_memory_inputs(X):
    np.testing.assert_array_equal(load_vectors(X).vectors, X)
    frame = pd.DataFrame(X, columns=list("abcdef"))
    np.testing.assert_allclose(load_vectors(frame).vectors, X)
    table = pa.Table.from_pandas(frame)
    np.testing.assert_allclose(load_vectors(table).vectors, X)
    meta = pd.DataFrame({"id": range(50)})
    assert load_vectors(X, meta).meta["id"].iloc[-1] == 49


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros(5), "must be 2-D"),
        (np.zeros((2, 3, 4)), "must be 2-D"),
        (np.zeros((0, 4)), "empty"),
        (np.zeros((1, 4)), "at least 2"),
        (np.array([["a", "b"], ["c", "d"]]), "dtype"),
        (np.array([[1, None], [2, 3]], dtype=object), "object array"),
        (np.zeros((3, 2), dtype=complex), "dtype"),
    ],
)
def test_bad_arrays(array, message):
    with pytest.raises(DataError, match=message):
        load_vectors(array)


def test_nan_and_inf_rows_are_counted_and_located(X):
    X = X.copy()
    X[[3, 17, 40], [0, 2, 5]] = [np.nan, np.inf, -np.inf]
    X[20] = 3e38  # finite values whose row sum overflows are not NaN rows
    with pytest.raises(DataError, match=r"3 row\(s\) with NaN or inf values \(rows 3, 17, 40\)"):
        load_vectors(X)


def test_nan_scan_of_memmap_in_chunks(tmp_path):
    data = np.ones((1000, 4), dtype=np.float16)
    data[999, 1] = np.nan
    np.save(tmp_path / "h.npy", data)
    with pytest.raises(DataError, match=r"rows 999\)"):
        load_vectors(tmp_path / "h.npy")


def test_metadata_row_mismatch(X):
    with pytest.raises(DataError, match="metadata has 49 rows but there are 50 vectors"):
        load_vectors(X, pd.DataFrame({"a": range(49)}))


def test_missing_directory_unknown_and_unreadable_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_vectors(tmp_path / "nope.npy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no \.npy or \.parquet shards"):  # a folder is read as shards
        load_vectors(tmp_path / "empty")
    (tmp_path / "x.bin").write_bytes(b"123")
    with pytest.raises(DataError, match="unknown file type"):
        load_vectors(tmp_path / "x.bin")
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.npy"
        np.save(locked, np.zeros((3, 3)))
        locked.chmod(0)
        with pytest.raises(DataError, match="permission denied"):
            load_vectors(locked)


def test_truncated_and_corrupt_files(tmp_path, X):
    np.save(tmp_path / "full.npy", X)
    raw = (tmp_path / "full.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="truncated"):
        load_vectors(tmp_path / "cut.npy")
    (tmp_path / "junk.npy").write_bytes(b"not a numpy file at all")
    with pytest.raises(DataError, match=r"not a readable \.npy"):
        load_vectors(tmp_path / "junk.npy")
    pd.DataFrame(X).rename(columns=str).to_parquet(tmp_path / "full.parquet")
    raw = (tmp_path / "full.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="parquet"):
        load_vectors(tmp_path / "cut.parquet")
    np.savez(tmp_path / "full.npz", X)
    raw = (tmp_path / "full.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="npz"):
        load_vectors(tmp_path / "cut.npz")


def test_object_npy_is_refused_never_unpickled(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="object array"):
        load_vectors(tmp_path / "obj.npy")


def test_builtins_are_seeded():
    X1, m1 = load_builtin("mixture:2000x12")
    X2, _ = load_builtin("mixture:2000x12")
    np.testing.assert_array_equal(X1, X2)
    assert X1.shape == (2000, 12) and X1.dtype == np.float32
    assert m1["label"].nunique() == 20
    assert load_vectors("builtin:mixture:1kx5").vectors.shape == (1000, 5)
    with pytest.raises(DataError, match="unknown built-in"):
        load_builtin("nope")
    _Y, labels = make_mixture(300, 4, 3, random_state=1)
    assert set(np.unique(labels)) == {0, 1, 2}


def test_digits_builtin():
    pytest.importorskip("sklearn")
    X, meta = load_builtin("digits")
    assert X.shape == (1797, 64) and meta["label"].nunique() == 10


def test_chunks_from_memmap_match_and_convert(tmp_path):
    data = np.random.default_rng(1).standard_normal((1003, 7)).astype(np.float16)
    np.save(tmp_path / "c.npy", data)
    mm = np.load(tmp_path / "c.npy", mmap_mode="r")
    seen = np.concatenate([block.copy() for _, block in iter_row_chunks(mm, chunk_rows=100)])
    assert seen.dtype == np.float32
    np.testing.assert_array_equal(seen, data.astype(np.float32))
    starts = [s for s, _ in iter_row_chunks(mm, chunk_rows=100)]
    assert starts == list(range(0, 1003, 100))


def test_validate_keeps_memmap(tmp_path, X):
    np.save(tmp_path / "k.npy", X)
    mm = np.load(tmp_path / "k.npy", mmap_mode="r")
    assert validate_vectors(mm) is mm


@pytest.mark.words
def test_real_word_vectors_load(words):
    vectors, meta = words
    loaded, _ = load_vectors(vectors)
    assert loaded.shape == (30000, 384) and loaded.dtype == np.float16
    assert len(meta) == 30000 and "null" in set(meta["word"])


# ----------------------------------------------------------------------------- issue 14: intake


@pytest.fixture
def decisions():
    """The progress lines of the ``embedscope`` logger, captured while the test runs."""
    import logging

    from embedscope._progress import logger

    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_pandas_numeric_header_is_a_header_not_a_row(tmp_path, X, decisions):
    pd.DataFrame(X).to_csv(tmp_path / "pd.csv", index=False)  # header "0,1,2,3,4,5"
    assert (tmp_path / "pd.csv").read_text().startswith("0,1,2,3,4,5\n")
    vectors, _ = load_vectors(tmp_path / "pd.csv")
    assert vectors.shape == (50, 6)
    np.testing.assert_allclose(vectors, X, rtol=1e-6)
    assert any("header" in line and "column numbers 0..5" in line for line in decisions)


@pytest.mark.parametrize("sep, suffix", [(",", "csv"), ("\t", "tsv")])
def test_header_rule(tmp_path, sep, suffix, decisions):
    def load(text):
        path = tmp_path / f"v.{suffix}"
        path.write_text(text.replace(",", sep))
        return load_vectors(path).vectors

    assert load("1,2,3\n4,5,6\n7,8,9\n").shape == (2, 3)  # the positions 1..d
    assert load("x,y,z\n4,5,6\n7,8,9\n").shape == (2, 3)  # names
    kept = load("0,1,5\n4,5,6\n7,8,9\n")  # numbers that are not the positions: data
    assert kept.shape == (3, 3) and kept[0].tolist() == [0, 1, 5]
    assert load("0\n1\n2\n").shape == (2, 1)  # one column: "0" is what pandas writes as its header
    assert load("2\n1\n2\n").shape == (3, 1)
    assert decisions[-1] == f"{tmp_path / f'v.{suffix}'}: no header row; the first row is data"
    assert decisions[-2].endswith("first row read as a header (the column numbers 0..0, as pandas writes them), not data")
    with pytest.raises(DataError, match=r"row 1 mixes numbers and text \(column 2 is 'name'\)"):
        load("1,name,3\n4,5,6\n7,8,9\n")


def test_short_csv_row_is_named(tmp_path):
    (tmp_path / "short.csv").write_text("0.5,2,3\n4,5\n7,8,9\n")
    with pytest.raises(DataError, match=r"row 2, column 3 is empty"):
        load_vectors(tmp_path / "short.csv")


def _unblock_after(path, seconds=10.0):
    """Open a FIFO for writing after ``seconds``, so a reader that blocks on it fails instead of hanging."""
    import threading

    def poke():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        except OSError:
            pass  # nobody was reading: the code under test did not open it

    timer = threading.Timer(seconds, poke)
    timer.daemon = True
    timer.start()
    return timer


def test_fifo_device_socket_and_links_are_refused(tmp_path, X):
    import socket

    os.mkfifo(tmp_path / "pipe.npy")
    timer = _unblock_after(tmp_path / "pipe.npy")
    with pytest.raises(DataError, match=r"pipe\.npy is a FIFO \(named pipe\), not a regular file"):
        load_vectors(tmp_path / "pipe.npy")
    timer.cancel()
    os.mkfifo(tmp_path / "meta.tsv")
    timer = _unblock_after(tmp_path / "meta.tsv")
    with pytest.raises(DataError, match=r"metadata file .*meta\.tsv is a FIFO"):
        load_vectors(X, tmp_path / "meta.tsv")
    timer.cancel()
    (tmp_path / "zero.csv").symlink_to("/dev/zero")
    with pytest.raises(DataError, match=r"zero\.csv \(-> /dev/zero\) is a character device"):
        load_vectors(tmp_path / "zero.csv")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "s.npy"))
        with pytest.raises(DataError, match="is a socket"):
            load_vectors(tmp_path / "s.npy")
    finally:
        sock.close()
    (tmp_path / "a.npy").symlink_to(tmp_path / "b.npy")
    (tmp_path / "b.npy").symlink_to(tmp_path / "a.npy")
    with pytest.raises(DataError, match="symlink loop"):
        load_vectors(tmp_path / "a.npy")
    (tmp_path / "dangling.npy").symlink_to(tmp_path / "gone.npy")
    with pytest.raises(DataError, match="dangling symlink"):
        load_vectors(tmp_path / "dangling.npy")
    np.save(tmp_path / "real.npy", X)
    (tmp_path / "link.npy").symlink_to(tmp_path / "real.npy")  # a link to a regular file is fine
    np.testing.assert_array_equal(load_vectors(tmp_path / "link.npy").vectors, X)


@pytest.mark.parametrize("junk", [b"'''", b'"""', b"(((", b"\x00\xff"])
def test_corrupt_npy_header_is_one_line(tmp_path, X, junk):
    np.save(tmp_path / "ok.npy", X)
    raw = bytearray((tmp_path / "ok.npy").read_bytes())
    at = raw.index(b"{") + 1
    raw[at : at + len(junk)] = junk
    (tmp_path / "bad.npy").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"bad\.npy is not a readable \.npy file") as info:
        load_vectors(tmp_path / "bad.npy")
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_float64_beyond_float32_is_called_overflow(tmp_path):
    data = np.random.default_rng(0).standard_normal((40, 3))
    data[[3, 17], 1] = [1e300, -5e38]
    np.save(tmp_path / "big.npy", data)
    with pytest.raises(DataError, match=r"2 row\(s\) with values beyond the float32 range .*rows 3, 17\)") as info:
        load_vectors(tmp_path / "big.npy")
    assert "NaN" not in str(info.value)
    np.savetxt(tmp_path / "big.csv", data, delimiter=",")
    with pytest.raises(DataError, match=r"big\.csv has 2 row\(s\) with values beyond the float32 range"):
        load_vectors(tmp_path / "big.csv")
    data[[3, 17], 1] = [3e38, -1e-300]  # wide but representable (or flushed to 0): accepted
    np.save(tmp_path / "fits.npy", data)
    assert np.isfinite(np.asarray(load_vectors(tmp_path / "fits.npy").vectors, dtype=np.float32)).all()
    data[5, 0] = np.inf  # a real inf is still called one
    np.save(tmp_path / "inf.npy", data)
    with pytest.raises(DataError, match=r"1 row\(s\) with NaN or inf values \(rows 5\)"):
        load_vectors(tmp_path / "inf.npy")


def test_one_size_rule():
    from embedscope.datasets import parse_shape, parse_size, parse_sizes

    for text, value in [("2500", 2500), ("10_000", 10_000), ("10k", 10_000), ("1.5M", 1_500_000), ("1e3", 1000)]:
        assert parse_size(text) == value == parse_sizes(text)[0]
    for bad in ("ten", "0", "-5k", "1.2345k", "inf", "nan", ""):
        with pytest.raises(DataError, match="size"):
            parse_size(bad)
    assert parse_shape("100kx50") == (100_000, 50) and parse_shape("1e3") == (1000, None)
    assert load_builtin("mixture:1e3x4").vectors.shape == (1000, 4)
    for bad in ("mixture:1.5x3", "mixture:10kx", "mixture:10x5x2", "swissroll:0x5"):
        with pytest.raises(DataError, match="size"):
            load_builtin(bad)


def test_huge_builtin_is_refused_before_allocating(monkeypatch):
    import embedscope.datasets as data

    with pytest.raises(DataError, match=r"builtin:mixture:1e15x50 needs 2\d\d PB of memory \(1,000,000,000,000,000 x 50"):
        load_vectors("builtin:mixture:1e15x50")
    with pytest.raises(DataError, match=r"builtin:swissroll:1e12x100 needs .* TB"):
        load_vectors("builtin:swissroll:1e12x100")
    monkeypatch.setattr(data, "host_memory_budget", lambda: 10_000)
    with pytest.raises(DataError, match=r"needs 20\.4 KB of memory \(100 x 48 .*; 10 KB is available"):
        load_builtin("mixture:100x48")
    assert load_builtin("mixture:100x20").vectors.shape == (100, 20)  # 9.2 KB: fits


def test_single_non_list_non_numeric_column_is_refused(tmp_path):
    # Found by tests/hostile/test_fuzz_load.py: a lone bool column reached pyarrow's list kernel.
    pd.DataFrame({"flag": [True, False, True]}).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(DataError, match=r"column\(s\) \['flag'\] are not numeric"):
        load_vectors(tmp_path / "b.parquet")


def test_corrupt_compressed_npz_is_one_line(tmp_path):
    np.savez_compressed(tmp_path / "c.npz", x=np.random.default_rng(0).random((100, 3)))
    raw = bytearray((tmp_path / "c.npz").read_bytes())
    raw[60:80] = bytes(20)  # inside the deflated data: zlib.error, not a zip error
    (tmp_path / "c.npz").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"c\.npz is not a readable \.npz file \(corrupt member\): error: Error -3"):
        load_vectors(tmp_path / "c.npz")
