"""The Dask path on a real LocalCluster of 2 worker processes.

Sharded data on disk goes through PCA, UMAP (fit on a sample, transform on the
workers) and the raster; results agree with the single-machine path; a worker killed
mid-run loses nothing (Dask reruns its tasks).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

import dask.array as da  # noqa: E402

from embedscope import PCA, knn_accuracy, load_vectors, make_mixture  # noqa: E402
from embedscope.engine import distributed as dist  # noqa: E402
from embedscope.errors import DataError  # noqa: E402
from embedscope.io.write import OutputExists, coords_frame, write_coords, write_parquet_dir  # noqa: E402

N_SHARDS, SHARD_ROWS, DIM = 4, 1000, 20


@pytest.fixture(scope="module")
def client():
    with dist.cluster(local_workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    X, labels = make_mixture(N_SHARDS * SHARD_ROWS, DIM, 8, random_state=4)
    folder = tmp_path_factory.mktemp("npy_shards")
    for i in range(N_SHARDS):
        np.save(folder / f"part-{i:03d}.npy", X[i * SHARD_ROWS : (i + 1) * SHARD_ROWS])
    return folder, X, labels


def test_npy_shards_load_lazily(shards):
    folder, X, _ = shards
    vectors, meta = load_vectors(folder)
    assert type(vectors).__module__.startswith("dask") and meta is None
    assert vectors.shape == X.shape and vectors.numblocks[0] == N_SHARDS
    np.testing.assert_array_equal(vectors.compute(), X)
    glob_vectors, _ = load_vectors(str(folder / "part-00[01].npy"))
    assert glob_vectors.shape == (2 * SHARD_ROWS, DIM)


def test_parquet_shards_with_metadata(tmp_path, shards):
    _, X, labels = shards
    for i in range(2):
        rows = slice(i * SHARD_ROWS, (i + 1) * SHARD_ROWS)
        pd.DataFrame({"emb": list(X[rows]), "label": labels[rows]}).to_parquet(tmp_path / f"p{i}.parquet")
    vectors, meta = load_vectors(tmp_path)
    np.testing.assert_allclose(vectors.compute(), X[: 2 * SHARD_ROWS])
    assert list(meta.columns) == ["label"]
    np.testing.assert_array_equal(meta["label"].compute().to_numpy(), labels[: 2 * SHARD_ROWS])


def test_bad_shards(tmp_path):
    with pytest.raises(DataError, match=r"no \.npy or \.parquet shards"):
        load_vectors(tmp_path)
    np.save(tmp_path / "a.npy", np.zeros((5, 3), np.float32))
    np.save(tmp_path / "b.npy", np.zeros((5, 4), np.float32))
    with pytest.raises(DataError, match="different widths"):
        load_vectors(tmp_path)
    bad = np.ones((5, 3), np.float32)
    bad[2, 1] = np.nan
    np.save(tmp_path / "b.npy", bad)
    with pytest.raises(DataError, match="1 row"):
        load_vectors(tmp_path)


def test_one_file_is_one_shard(tmp_path, shards):
    # 'plot one.parquet --local-cluster' said "no .npy or .parquet shards found"
    from embedscope.io.shards import shard_files

    folder, _, _ = shards
    one = folder / "part-001.npy"
    assert shard_files(one) == [one]
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"no \.npy or \.parquet shards"):
        shard_files(tmp_path / "notes.txt")


def test_distributed_pca_agrees_with_single_machine(client, shards):
    folder, X, _ = shards
    vectors, _ = load_vectors(folder)
    ours = PCA(5).fit(vectors)
    single = PCA(5, svd_solver="covariance").fit(X)
    np.testing.assert_allclose(ours.components_, single.components_, atol=1e-4)
    np.testing.assert_allclose(ours.explained_variance_, single.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(ours.transform(vectors).compute(), single.transform(X), atol=1e-3)
    assert ours.svd_solver_ == "covariance (dask)"


def test_umap_sample_then_transform_on_workers(client, shards, tmp_path):
    from embedscope import UMAP

    folder, X, labels = shards
    vectors, _ = load_vectors(folder)
    sampled = dist.SampledReducer(UMAP(random_state=0), sample_size=1500, random_state=1)
    coords = sampled.fit_transform(vectors)
    assert "1,500 of 4,000 rows" in sampled.summary_
    out = write_coords(tmp_path / "coords", coords, pd.DataFrame({"label": labels}))
    written = pd.read_parquet(out)
    assert len(written) == len(X) and list(written.columns) == ["x", "y", "label"]
    Y = written[["x", "y"]].to_numpy()
    assert np.isfinite(Y).all()
    # The sample rows are exactly what the single-machine fit on the sample gives.
    single = UMAP(random_state=0).fit(X[sampled.sample_rows_])
    np.testing.assert_allclose(Y[sampled.sample_rows_], single.embedding_, atol=1e-6)
    # Rows placed by transform land among their own clusters.
    rest = np.setdiff1d(np.arange(len(X)), sampled.sample_rows_)
    assert knn_accuracy(Y[rest], labels[rest], 15) > 0.9
    with pytest.raises(OutputExists, match="exists"):
        write_parquet_dir(coords_frame(coords, pd.DataFrame({"label": labels})), out)  # refused without force
    assert len(pd.read_parquet(out)) == len(X)


def test_one_coords_table_for_pandas_and_dask(tmp_path):
    # One builder: the same columns and values whether the coordinates are in memory or
    # lazy, a metadata column named like a coordinate kept as meta_<name> in both.
    import dask.dataframe as dd

    coords = np.arange(24, dtype=np.float32).reshape(8, 3)
    meta = pd.DataFrame({"x": np.arange(8) * 10.0, "label": np.arange(8)})  # dask would retype strings
    expected = coords_frame(coords, meta)
    assert list(expected.columns) == ["x", "y", "z", "meta_x", "label"]
    for lazy_meta in (meta, dd.from_pandas(meta, npartitions=2)):
        lazy = coords_frame(da.from_array(coords, chunks=(4, -1)), lazy_meta)
        pd.testing.assert_frame_equal(lazy.compute().reset_index(drop=True), expected)
    assert list(coords_frame(np.zeros((2, 5))).columns) == ["c0", "c1", "c2", "c3", "c4"]
    out = write_coords(tmp_path / "shards", da.from_array(coords, chunks=(4, -1)), meta)
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected)


def test_worker_killed_mid_run_loses_nothing(client, shards):
    from embedscope import UMAP

    folder, _, _ = shards
    vectors, _ = load_vectors(folder)
    vectors = vectors.rechunk((250, -1))  # 16 tasks, so the kill lands mid-run
    sampled = dist.SampledReducer(UMAP(random_state=0, n_epochs=60), sample_size=1000).fit(vectors)
    expected = sampled.transform(vectors).compute(scheduler="sync")
    future = client.compute(sampled.transform(vectors))
    pids = client.run(os.getpid)

    def kill_one() -> None:
        deadline = time.time() + 30
        while time.time() < deadline and not any(client.processing().values()):
            time.sleep(0.05)
        os.kill(next(iter(pids.values())), signal.SIGKILL)

    killer = threading.Thread(target=kill_one)
    killer.start()
    result = future.result(timeout=300)
    killer.join()
    np.testing.assert_allclose(result, expected, atol=1e-5)
    client.wait_for_workers(2, timeout=60)


def test_raster_of_dask_dataframe_matches_pandas(client):
    dd = pytest.importorskip("dask.dataframe")
    from embedscope.viz import raster

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=20_000), "y": rng.normal(size=20_000)})
    lazy = dd.from_pandas(frame, npartitions=4)
    ranges = {"x_range": (-4.0, 4.0), "y_range": (-4.0, 4.0), "width": 64, "height": 48}
    np.testing.assert_array_equal(np.asarray(raster(lazy, **ranges)), np.asarray(raster(frame, **ranges)))


def test_reduce_cli_on_shards_with_local_cluster(shards, tmp_path):
    from embedscope.cli import main

    folder, X, _ = shards
    out = tmp_path / "pcs"
    assert main(["reduce", str(folder), "--method", "pca", "--local-cluster", "2", "--out", str(out), "--quiet"]) == 0
    written = pd.read_parquet(out)
    np.testing.assert_allclose(written[["x", "y"]].to_numpy(), PCA(2, svd_solver="covariance").fit_transform(X),
                               atol=1e-3)


def test_sharded_reduce_records_its_method_for_titles(shards, tmp_path):
    """#19: the Dask path records what the single-file path does, in every shard."""
    import pyarrow.parquet as pq

    from embedscope.cli import main
    from embedscope.io.write import LAYOUT_KEY, read_layout_info
    from embedscope.viz._input import layout_title

    folder, X, _ = shards
    out = tmp_path / "umap-coords"
    # no cluster flag: a folder of shards takes the Dask path on the local threads
    assert main(["reduce", str(folder), "--method", "umap", "--n-neighbors", "7", "--n-epochs", "20",
                 "--random-state", "3", "--sample-size", "300", "--out", str(out), "--quiet"]) == 0
    info = read_layout_info(out)
    assert info["method"] == "umap" and info["params"]["n_neighbors"] == 7 and info["params"]["random_state"] == 3
    assert info["sample"] == {"rows": 300, "of": len(X), "random_state": 0}
    assert layout_title(info, out.name).startswith("UMAP n_neighbors=7, ")
    parts = sorted(out.glob("*.parquet"))
    assert len(parts) == N_SHARDS and all(LAYOUT_KEY in pq.read_schema(p).metadata for p in parts)
    pcs = tmp_path / "pcs"
    assert main(["reduce", str(folder), "--method", "pca", "--svd-solver", "full", "--out", str(pcs), "--quiet"]) == 0
    assert read_layout_info(pcs)["params"]["svd_solver"] == "full"
    # negative control: shards written without a record give none
    import dask.dataframe as dd

    write_parquet_dir(dd.from_pandas(pd.read_parquet(pcs), npartitions=2), tmp_path / "plain")
    assert read_layout_info(tmp_path / "plain") is None


def test_dask_array_through_reduce(client):
    from embedscope import reduce

    X, _ = make_mixture(3000, 10, 5, random_state=0)
    lazy = da.from_array(X, chunks=(1000, 10))
    Y = reduce(lazy, "umap", sample_size=1000, random_state=0, n_epochs=50)
    assert type(Y).__module__.startswith("dask") and Y.compute().shape == (3000, 2)


COORD_SHARDS, COORD_ROWS = 3, 1500


@pytest.fixture(scope="module")
def coord_shards(tmp_path_factory):
    """Coordinates as 'embedscope reduce' writes them on Dask (parquet shards), and as one file."""
    rng = np.random.default_rng(11)
    n = COORD_SHARDS * COORD_ROWS
    label = rng.integers(0, 6, n)
    centres = rng.normal(scale=8.0, size=(6, 2))
    xy = (centres[label] + rng.normal(size=(n, 2))).astype(np.float32)
    frame = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "label": np.array(list("fedcba"))[label],
                          "group": label, "score": xy[:, 0] * 0.1 + rng.random(n)})
    folder = tmp_path_factory.mktemp("coords") / "coords"
    folder.mkdir()
    for i in range(COORD_SHARDS):
        frame.iloc[i * COORD_ROWS : (i + 1) * COORD_ROWS].to_parquet(folder / f"part.{i}.parquet", index=False)
    single = folder.parent / "coords.parquet"
    frame.to_parquet(single, index=False)
    return folder, single


def _png_pixels(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGBA"))


def _plot(args: list[str]) -> int:
    from embedscope.cli import main

    return main(["plot", *args, "--width", "160", "--height", "120", "--quiet"])


def test_plot_cli_local_cluster_matches_single_machine(coord_shards, tmp_path, capsys):
    from embedscope.cli import main

    folder, single = coord_shards
    on_dask, local = tmp_path / "dask.png", tmp_path / "single.png"
    assert main(["plot", str(folder), "--color", "label", "--local-cluster", "2", "--width", "160",
                 "--height", "120", "--out", str(on_dask)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(on_dask)
    assert "aggregating on the Dask scheduler at tcp://" in captured.err and "2 worker processes" in captured.err
    assert _plot([str(single), "--color", "label", "--out", str(local)]) == 0
    pixels = _png_pixels(on_dask)
    raster = pixels[:, :160, :3]
    assert (raster != 255).any(axis=2).sum() > 500  # points were drawn, not a blank canvas
    assert pixels.shape == _png_pixels(local).shape
    np.testing.assert_array_equal(pixels, _png_pixels(local))


@pytest.mark.parametrize("color", [None, "group", "score"])
def test_plot_cli_on_a_scheduler_matches_single_machine(client, coord_shards, tmp_path, color):
    folder, single = coord_shards
    colour = ["--color", color] if color else []
    on_dask, local = tmp_path / "dask.png", tmp_path / "single.png"
    address = client.scheduler_info()["address"]
    assert _plot([str(folder / "part.*.parquet"), *colour, "--scheduler", address, "--out", str(on_dask)]) == 0
    assert _plot([str(single), *colour, "--out", str(local)]) == 0
    dask_pixels, local_pixels = _png_pixels(on_dask), _png_pixels(local)
    assert dask_pixels.shape == local_pixels.shape
    differ = (dask_pixels != local_pixels).any(axis=2).mean()
    # Means per pixel are summed in another order across partitions, so allow a few
    # last-bit colour differences; counts must agree exactly.
    assert differ == 0 if color != "score" else differ < 0.01
    assert client.scheduler_info()["workers"]  # the shared cluster outlived the CLI's client


def test_plot_cli_cluster_refusals(coord_shards, tmp_path, capsys):
    folder, single = coord_shards
    cases = [
        ([str(folder), "--local-cluster", "2", "--scheduler", "tcp://127.0.0.1:1"], "not both"),
        ([str(folder), "--local-cluster", "0"], "at least 1"),
        ([str(folder), "--local-cluster", "2", "--color", "nope"], "no column 'nope'"),
        ([str(tmp_path / "empty"), "--local-cluster", "2"], "no .npy or .parquet shards"),
        ([str(single), "--local-cluster", "2", "--meta", str(single)], "--meta is not supported"),
    ]
    (tmp_path / "empty").mkdir()
    for args, message in cases:
        assert _plot([*args, "--out", str(tmp_path / "p.png")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (args, err)
    assert _plot([str(folder), "--local-cluster", "2", "--out", str(tmp_path / "p.html")]) == 2
    assert ".png only" in capsys.readouterr().err
    assert not list(tmp_path.glob("p.*"))


# ----------------------------------------------------------------------------- issue 14: intake, cluster


def test_mixed_shard_folder_is_refused_naming_both_kinds(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((5, 3), np.float32))
    pd.DataFrame({"emb": list(np.ones((5, 3), np.float32))}).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(DataError, match=r"mixes 1 \.npy and 1 \.parquet shard\(s\) \(e\.g\. a\.npy and b\.parquet\)"):
        load_vectors(tmp_path)


def test_special_file_among_shards_is_refused_not_skipped(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((5, 3), np.float32))
    os.mkfifo(tmp_path / "b.npy")
    with pytest.raises(DataError, match=r"shard .*b\.npy is a FIFO"):
        load_vectors(tmp_path)
    (tmp_path / "b.npy").unlink()
    (tmp_path / "c.npy").symlink_to(tmp_path / "c.npy")
    with pytest.raises(DataError, match=r"c\.npy: symlink loop"):
        load_vectors(tmp_path)


def test_ragged_parquet_shards_name_the_shard_and_widths(tmp_path):
    pd.DataFrame({"emb": list(np.ones((5, 3), np.float32))}).to_parquet(tmp_path / "p0.parquet")
    pd.DataFrame({"emb": list(np.ones((5, 4), np.float32))}).to_parquet(tmp_path / "p1.parquet")
    with pytest.raises(DataError, match=r"different widths in column 'emb': .*p1\.parquet has 4, .*p0\.parquet has 3"):
        load_vectors(tmp_path)
    pd.DataFrame({"emb": [np.ones(3, np.float32)] * 4 + [np.ones(2, np.float32)]}).to_parquet(tmp_path / "p1.parquet")
    with pytest.raises(DataError, match=r"p1\.parquet has vectors of different widths \(2 and 3\)"):
        load_vectors(tmp_path)
    pd.DataFrame({"emb": list(np.full((5, 3), 2, np.float32))}).to_parquet(tmp_path / "p1.parquet")
    assert load_vectors(tmp_path).vectors.compute().tolist() == [[1.0] * 3] * 5 + [[2.0] * 3] * 5


def test_npy_shard_widths_and_float64_overflow_are_named(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((5, 3)))
    np.save(tmp_path / "b.npy", np.zeros((5, 4)))
    with pytest.raises(DataError, match=r"different widths: .*b\.npy has 4, .*a\.npy has 3"):
        load_vectors(tmp_path)
    big = np.zeros((5, 3))
    big[1, 2] = 1e300
    np.save(tmp_path / "b.npy", big)
    with pytest.raises(DataError, match=r"1 row\(s\) with values beyond the float32 range"):
        load_vectors(tmp_path)


def test_single_npy_becomes_blocks_read_from_the_file(tmp_path):
    import pickle

    X = np.random.default_rng(0).standard_normal((1000, 8))
    np.save(tmp_path / "x.npy", X)
    mapped, _ = load_vectors(tmp_path / "x.npy")
    lazy = dist.as_dask_array(mapped, chunk_bytes=8 * 8 * 300)
    assert lazy.numblocks == (4, 1) and lazy.dtype == np.float64
    np.testing.assert_array_equal(lazy.compute(), X)
    # The tasks carry the path and row ranges, not the 64 KB of data.
    assert len(pickle.dumps(dict(lazy.__dask_graph__()))) < 8 * X.size // 4
    ints = dist.as_dask_array(np.arange(12, dtype=np.int16).reshape(6, 2))
    assert ints.dtype == np.float32 and ints.compute().tolist()[-1] == [10.0, 11.0]
    assert dist.as_dask_array(lazy) is lazy


def test_local_cluster_listens_on_loopback_only(client):
    import psutil

    me = psutil.Process()
    procs = [me, *me.children(recursive=True)]
    listening = [c.laddr for p in procs for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert client.dashboard_link.startswith("http://127.0.0.1:")
    dashboard_port = int(client.dashboard_link.split(":")[2].split("/")[0])
    assert dashboard_port in {addr.port for addr in listening}
    exposed = [addr for addr in listening if addr.ip not in ("127.0.0.1", "::1")]
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_unreachable_scheduler_fails_within_the_timeout(monkeypatch):
    start = time.perf_counter()
    with pytest.raises(dist.ClusterError, match=r"no Dask scheduler answered at tcp://127\.0\.0\.1:1 within 1 s"):
        with dist.cluster("tcp://127.0.0.1:1", timeout=1):
            pass
    assert time.perf_counter() - start < 15
    assert dist.connect_timeout() == dist.CONNECT_TIMEOUT == 30
    monkeypatch.setenv("EMBEDSCOPE_CONNECT_TIMEOUT", "2.5")
    assert dist.connect_timeout() == 2.5
    monkeypatch.setenv("EMBEDSCOPE_CONNECT_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="EMBEDSCOPE_CONNECT_TIMEOUT='soon' must be a positive number"):
        dist.connect_timeout()


def test_killed_worker_becomes_one_line():
    from distributed.scheduler import KilledWorker

    with pytest.raises(dist.ClusterError) as info:
        with dist._cluster_errors():
            raise KilledWorker("_place_block-abc", None, 3)
    message = str(info.value)
    assert message.startswith("KilledWorker: Dask gave up on task '_place_block-abc'") and "after 4 worker death(s)" in message
    assert "\n" not in message
    with pytest.raises(ValueError, match="untouched"):  # other errors pass as they are
        with dist._cluster_errors():
            raise ValueError("untouched")


def test_real_killed_worker_becomes_one_line(client):
    def set_allowed(dask_scheduler, n):
        old, dask_scheduler.allowed_failures = dask_scheduler.allowed_failures, n
        return old

    old = client.run_on_scheduler(set_allowed, n=0)  # the first worker death gives up on the task
    try:
        with pytest.raises(dist.ClusterError, match=r"^KilledWorker: Dask gave up on task '_exit-.*' after 1 worker death\(s\)"):
            with dist._cluster_errors():
                client.submit(os._exit, 1, pure=False).result(timeout=120)
    finally:
        client.run_on_scheduler(set_allowed, n=old)
        client.wait_for_workers(2, timeout=60)
