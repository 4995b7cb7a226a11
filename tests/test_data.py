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
from embedscope.engine.data import iter_row_chunks, validate_vectors


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
