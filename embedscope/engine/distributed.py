"""Past one machine: Dask collections in, Dask collections out.

Shards are read by :mod:`embedscope.io.shards` (through ``load_vectors``); here:

- :func:`as_dask_array` splits an in-memory or memory-mapped array into row blocks;
- :func:`fit_pca` fits :class:`~embedscope.PCA` on a ``dask.array`` from per-block
  moments combined exactly, one pass, on the workers;
- :class:`SampledReducer` fits UMAP / t-SNE on a seeded sample with the best local
  backend, then places every partition with ``transform`` on the workers and returns
  a lazy ``dask.array`` of coordinates (:func:`embedscope.io.write.write_coords`
  writes it, with the metadata, as a folder of parquet shards);
- :func:`cluster` opens a ``Client`` on a scheduler address, a ``LocalCluster``, or a
  dask-cuda ``LocalCUDACluster`` (one worker per GPU) for the cuda backend.

Dask is an optional dependency (``pip install 'embedscope[dask]'``); nothing here is
imported by ``import embedscope``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from embedscope._array import dask_modules, is_dask
from embedscope._progress import Progress
from embedscope.kernels import pca as kpca

#: Seconds to wait for a scheduler (``EMBEDSCOPE_CONNECT_TIMEOUT`` overrides it).
CONNECT_TIMEOUT = 30.0


class ClusterError(ConnectionError):
    """The Dask scheduler could not be reached, or the workers a task needed kept dying."""


#: Sample the fit runs on by default: a UMAP / t-SNE fit of this size takes a minute
#: and a few GB on one worker.
DEFAULT_SAMPLE = 100_000


def _load_npy_rows(path: str, start: int, stop: int) -> np.ndarray:
    return np.array(np.load(path, mmap_mode="r", allow_pickle=False)[start:stop])


def as_dask_array(X: Any, *, chunk_bytes: int = 128 * 2**20) -> Any:
    """A ``dask.array`` of ``X`` in row blocks of about ``chunk_bytes``.

    A memory-mapped ``.npy`` becomes tasks that each read their rows from the file, so
    the array is neither read here nor copied into the task graph; other arrays are
    split in memory. Dask arrays are returned as they are.

    Parameters
    ----------
    X : array
        numpy (memory-mapped or not) or dask array, 2-D.
    chunk_bytes : int, default=128 MiB

    Returns
    -------
    dask.array.Array
        float32, or float64 where ``X`` is float64 (as for shards).
    """
    dask, da, _ = dask_modules()
    if is_dask(X):
        return X
    n, d = X.shape
    rows = max(1, min(n, chunk_bytes // max(1, d * X.dtype.itemsize)))
    dtype = np.float64 if X.dtype == np.float64 else np.float32
    path = getattr(X, "filename", None)
    whole_file = (isinstance(X, np.memmap) and path is not None and X.flags.c_contiguous
                  and np.load(path, mmap_mode="r", allow_pickle=False).shape == X.shape)
    if not whole_file:
        return da.from_array(np.asarray(X), chunks=(rows, -1)).astype(dtype)
    blocks = [da.from_delayed(dask.delayed(_load_npy_rows)(str(path), start, min(n, start + rows)),
                              shape=(min(n, start + rows) - start, d), dtype=X.dtype)
              for start in range(0, n, rows)]
    return da.concatenate(blocks, axis=0).astype(dtype)


# ----------------------------------------------------------------------------- PCA


def fit_pca(est: Any, X: Any, progress: Progress) -> None:
    """Fit ``est`` (an :class:`~embedscope.PCA`) on a ``dask.array`` in one pass.

    Each block's count, mean and centred scatter matrix are computed where the block
    lives; a tree of exact pairwise merges yields the covariance; its
    eigendecomposition (d x d) runs here.
    """
    dask, _, _ = dask_modules()
    n, d = X.shape
    if d > 8192:
        raise ValueError(f"the distributed PCA builds a {d} x {d} covariance matrix; "
                         "reduce the features first or use fewer than 8,192")
    X = X.rechunk({1: -1})
    parts = [dask.delayed(kpca.block_moments)(block) for block in X.to_delayed().ravel()]
    while len(parts) > 1:  # a tree of merges, so no single task holds every block's result
        parts = [dask.delayed(kpca.combine_moments)(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]
    with progress.stage("pca", f"distributed covariance, {n:,} x {d:,} in {X.numblocks[0]} blocks"):
        count, mean, scatter = parts[0].compute()
    cov = scatter / max(count - 1, 1)
    values, vectors = kpca.top_eigh(cov, np, min(n, d))
    est.svd_solver_ = "covariance (dask)"
    est.n_samples_, est.n_features_in_ = n, d
    est._x_dtype = X.dtype
    est._finish(mean, values, vectors, float(np.trace(cov)), np)


def _project_block(block: np.ndarray, mean: np.ndarray, projection: np.ndarray) -> np.ndarray:
    return (np.asarray(block, dtype=projection.dtype) - mean) @ projection


def pca_transform(est: Any, X: Any) -> Any:
    """Lazy projection of a ``dask.array`` onto the fitted axes."""
    X = X.rechunk({1: -1})
    mean = est.mean_.astype(est.components_.dtype)
    projection = est._projection()
    return X.map_blocks(_project_block, mean, projection, dtype=projection.dtype,
                        chunks=(X.chunks[0], (projection.shape[1],)))


# ----------------------------------------------------------------------------- UMAP / t-SNE


def _place_block(block: np.ndarray, reducer: Any, sample_rows: np.ndarray, block_info: Any = None) -> np.ndarray:
    """Coordinates of one block: fitted ones for sample rows, ``transform`` for the rest."""
    start = block_info[0]["array-location"][0][0]
    rows = np.arange(start, start + block.shape[0])
    out = np.empty((block.shape[0], reducer.embedding_.shape[1]), dtype=np.float32)
    pos = np.searchsorted(sample_rows, rows)
    in_sample = (pos < len(sample_rows)) & (sample_rows[np.minimum(pos, len(sample_rows) - 1)] == rows)
    out[in_sample] = reducer.embedding_[pos[in_sample]]
    rest = ~in_sample
    if rest.any():
        out[rest] = reducer.transform(np.asarray(block[rest], dtype=np.float32))
    return out


class SampledReducer:
    """Fit a reducer on a seeded sample, then place every row on the Dask workers.

    Parameters
    ----------
    reducer : UMAP, TSNE or PCA
        An unfitted estimator; it is fitted on the sample with its own backend.
    sample_size : int, default=100000
        Rows in the fit; all rows when the data is smaller.
    random_state : int, default=0
        Seed of the sample.
    verbose : bool, default=False

    Attributes
    ----------
    sample_rows_ : ndarray
        Sorted row numbers of the sample.
    n_samples_seen_ : int
        Total rows of the data.
    summary_ : str
        Says plainly that the model was fitted on a sample, and how large.
    """

    def __init__(self, reducer: Any, *, sample_size: int = DEFAULT_SAMPLE, random_state: int = 0,
                 verbose: bool = False) -> None:
        self.reducer = reducer
        self.sample_size = sample_size
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X: Any) -> SampledReducer:
        """Fit the reducer on a seeded sample of the rows of ``X`` (dask or numpy)."""
        progress = Progress(self.verbose, "dask")
        n = X.shape[0]
        if not isinstance(self.sample_size, int) or self.sample_size < 2:
            raise ValueError(f"sample_size={self.sample_size!r} must be an int >= 2")
        size = min(self.sample_size, n)
        rng = np.random.default_rng(self.random_state)
        self.sample_rows_ = np.arange(n) if size == n else np.sort(rng.choice(n, size=size, replace=False))
        with progress.stage("sample", f"{size:,} of {n:,} rows"):
            sample = X[self.sample_rows_]
            sample = sample.compute() if is_dask(sample) else np.asarray(sample)
        self.reducer.fit(sample)
        self.n_samples_seen_ = n
        self.summary_ = (f"{type(self.reducer).__name__} fitted on a seeded sample of {size:,} of {n:,} rows "
                         f"(random_state={self.random_state}); the other rows are placed by transform")
        progress.log(self.summary_)
        return self

    def transform(self, X: Any) -> Any:
        """Lazy coordinates of every row (a ``dask.array``): sample rows keep their fit."""
        dask, da, _ = dask_modules()
        if not hasattr(self, "sample_rows_"):
            raise AttributeError("this SampledReducer is not fitted yet; call fit first")
        if X.shape[0] != self.n_samples_seen_:
            raise ValueError(f"X has {X.shape[0]:,} rows; the sample was drawn from {self.n_samples_seen_:,}")
        if not is_dask(X):
            X = da.from_array(np.asarray(X), chunks=(max(1, min(100_000, X.shape[0])), -1))
        X = X.rechunk({1: -1})
        # One graph node holds the fitted model, so it is sent to each worker once.
        model = dask.delayed(self.reducer, pure=True)
        rows = dask.delayed(self.sample_rows_, pure=True)
        c = self.reducer.embedding_.shape[1]
        return X.map_blocks(_place_block, model, rows, dtype=np.float32, chunks=(X.chunks[0], (c,)))

    def fit_transform(self, X: Any) -> Any:
        """Fit on the sample and return the lazy coordinates of every row."""
        return self.fit(X).transform(X)


# ----------------------------------------------------------------------------- clusters


def connect_timeout() -> float:
    """Seconds to wait for a scheduler: ``EMBEDSCOPE_CONNECT_TIMEOUT``, else :data:`CONNECT_TIMEOUT`."""
    text = os.environ.get("EMBEDSCOPE_CONNECT_TIMEOUT", "").strip()
    if not text:
        return CONNECT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ValueError(f"EMBEDSCOPE_CONNECT_TIMEOUT={text!r} must be a positive number of seconds")
    return value


@contextmanager
def _cluster_errors() -> Iterator[None]:
    """Turn Dask's lost-worker failure into one line naming it."""
    try:
        from distributed.scheduler import KilledWorker
    except ImportError:  # pragma: no cover - distributed is there when a cluster is
        yield
        return
    try:
        yield
    except KilledWorker as exc:
        task = getattr(exc, "task", None) or (exc.args[0] if exc.args else "?")
        allowed = getattr(exc, "allowed_failures", None)
        deaths = f"{allowed + 1} worker death(s)" if isinstance(allowed, int) else "repeated worker deaths"
        raise ClusterError(
            f"KilledWorker: Dask gave up on task {task!r} after {deaths} while running it "
            "(out of memory or a crash? see the worker logs)"
        ) from None


@contextmanager
def cluster(scheduler: str | None = None, local_workers: int | None = None, *,
            gpu: bool = False, verbose: bool = False, timeout: float | None = None) -> Iterator[Any]:
    """A ``distributed.Client``: on ``scheduler``, or on a local cluster it starts.

    A local cluster listens on the loopback interface only, its dashboard included.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``).
    local_workers : int, optional
        Start a ``LocalCluster`` with this many single-threaded worker processes, or
        with ``gpu`` a dask-cuda ``LocalCUDACluster`` (one worker per visible GPU).
    gpu : bool, default=False
    verbose : bool, default=False
    timeout : float, optional
        Seconds to wait for ``scheduler``; by default :func:`connect_timeout` (30 s,
        or ``EMBEDSCOPE_CONNECT_TIMEOUT``).

    Raises
    ------
    ClusterError
        The scheduler did not answer within ``timeout``; or, inside the block, a
        task's workers died repeatedly (Dask's ``KilledWorker``).
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ImportError("the Dask path needs distributed: pip install 'embedscope[dask]'") from None
    progress = Progress(verbose, "dask")
    local = None
    if scheduler:
        wait = connect_timeout() if timeout is None else timeout
        try:
            client = Client(scheduler, timeout=wait)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"no Dask scheduler answered at {scheduler} within {wait:g} s "
                               f"({type(exc).__name__}); is it running and reachable? "
                               "(EMBEDSCOPE_CONNECT_TIMEOUT sets the wait)") from None
    else:
        # ":0" would serve the dashboard on every interface: anyone on the network
        # could watch the tasks and read the data they show.
        if gpu:
            try:
                from dask_cuda import LocalCUDACluster
            except ImportError:
                raise ImportError("several GPUs need dask-cuda: conda install -c rapidsai dask-cuda") from None
            local = LocalCUDACluster(host="127.0.0.1", dashboard_address="127.0.0.1:0")
        else:
            # silence_logs: a worker's heartbeat racing the scheduler's shutdown on a busy
            # machine logs a traceback (CommClosedError) that is no error of the user's run;
            # task failures still raise through the client.
            local = LocalCluster(n_workers=local_workers or 2, threads_per_worker=1, processes=True,
                                 host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                 silence_logs=logging.CRITICAL)
        client = Client(local)
    where = f"connected to {scheduler}" if scheduler else "local cluster"
    progress.log(f"{where}: {len(client.scheduler_info()['workers'])} workers")
    try:
        with _cluster_errors():
            yield client
    finally:
        client.close()
        if local is not None:
            local.close()
