"""Embedding quality: trustworthiness, kNN recall and kNN label accuracy.

All three compare neighbourhoods, which costs O(S^2) on S points, so above
``sample_size`` points they are computed on a seeded subsample: the same rows in both
spaces. cupy inputs are subsampled on the device and the (small) subsample is
measured on the host.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from embedscope._array import is_cupy, to_host
from embedscope.engine.stages import magnitude_scale
from embedscope.kernels.knn import check_metric, exact_knn, prepare

DEFAULT_SAMPLE = 10_000


def _sample_rows(n: int, sample_size: int | None, random_state: int | None) -> np.ndarray | None:
    if sample_size is None or n <= sample_size:
        return None
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n, size=sample_size, replace=False))


def _take(A: Any, rows: np.ndarray | None) -> np.ndarray:
    if rows is None:
        return to_host(A)
    if is_cupy(A):
        import cupy

        return to_host(A[cupy.asarray(rows)])
    return np.asarray(A[rows])


def _rescaled(A: np.ndarray) -> np.ndarray:
    """``A`` over a power of two when its magnitude would overflow (or vanish in) float32
    squared distances; neighbour ranks do not depend on scale, and ordinary data is
    returned as it is."""
    scale = magnitude_scale(A)
    return A if scale == 1.0 else np.asarray(A, dtype=np.float64) / scale


def _checked_pair(X: Any, Y: Any, k: int) -> None:
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but the embedding has {Y.shape[0]}")
    if not 1 <= k < X.shape[0]:
        raise ValueError(f"n_neighbors={k} must be between 1 and {X.shape[0] - 1} for {X.shape[0]} points")


@numba.njit(parallel=True, cache=True)
def _rank_penalty(dist_block, row_offset, emb_idx, k):  # pragma: no cover - numba
    """Sum over rows of max(0, rank_X(i, j) - k) for j among i's embedding neighbours."""
    n_rows, n_cols = dist_block.shape
    totals = np.zeros(n_rows, dtype=np.float64)
    for r in numba.prange(n_rows):
        self_col = row_offset + r
        acc = 0.0
        for t in range(emb_idx.shape[1]):
            j = emb_idx[row_offset + r, t]
            threshold = dist_block[r, j]
            closer = 0
            for c in range(n_cols):
                if c != self_col and dist_block[r, c] < threshold:
                    closer += 1
            rank = closer + 1
            if rank > k:
                acc += rank - k
        totals[r] = acc
    return totals.sum()


def trustworthiness(
    X: Any,
    Y: Any,
    n_neighbors: int = 15,
    *,
    metric: str = "euclidean",
    sample_size: int | None = DEFAULT_SAMPLE,
    random_state: int | None = 0,
) -> float:
    """How far an embedding's neighbours are from being true neighbours (1 is best).

    The measure of Venna & Kaski: each point's ``n_neighbors`` nearest points in the
    embedding that are not among its nearest in ``X`` are penalised by how far down
    ``X``'s ranking they are. Agrees with ``sklearn.manifold.trustworthiness``.

    Parameters
    ----------
    X : array of shape (n, d)
        Original vectors (numpy or cupy).
    Y : array of shape (n, c)
        Embedding.
    n_neighbors : int, default=15
    metric : {"euclidean", "cosine", "inner_product"}, default="euclidean"
        Metric in the original space; the embedding is always euclidean.
    sample_size : int or None, default=10000
        Above this many points, measure a seeded subsample of this size.
    random_state : int or None, default=0
        Seed of the subsample.

    Returns
    -------
    float
    """
    metric = check_metric(metric)
    _checked_pair(X, Y, n_neighbors)
    rows = _sample_rows(X.shape[0], sample_size, random_state)
    Xs, Ys = _rescaled(_take(X, rows)), _rescaled(_take(Y, rows))
    n, k = Xs.shape[0], n_neighbors
    if not 1 <= k < n / 2:
        raise ValueError(f"n_neighbors={k} must be below n/2 = {n / 2:g} for trustworthiness")
    emb_idx, _ = exact_knn(Ys, k, "euclidean")
    P, sq = prepare(Xs, metric)
    P64, sq64 = P.astype(np.float64), sq.astype(np.float64)
    block = max(1, int(2**26 // (8 * n)))
    penalty = 0.0
    for start in range(0, n, block):
        stop = min(n, start + block)
        gram = P64[start:stop] @ P64.T
        if metric == "euclidean":
            dist = sq64[start:stop, None] + sq64[None, :] - 2.0 * gram
        elif metric == "cosine":
            dist = 1.0 - gram
        else:
            dist = -gram
        penalty += _rank_penalty(dist, start, emb_idx, k)
    return float(1.0 - penalty * (2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0))))


def knn_recall(
    X: Any,
    Y: Any,
    k: int = 15,
    *,
    metric: str = "euclidean",
    sample_size: int | None = DEFAULT_SAMPLE,
    random_state: int | None = 0,
) -> float:
    """Mean fraction of each point's k nearest neighbours in ``X`` kept among its k
    nearest in the embedding ``Y``.

    Parameters
    ----------
    X : array of shape (n, d)
    Y : array of shape (n, c)
    k : int, default=15
    metric : {"euclidean", "cosine", "inner_product"}, default="euclidean"
        Metric in the original space.
    sample_size : int or None, default=10000
        Above this many points, both neighbour sets are computed within a seeded
        subsample of this size.
    random_state : int or None, default=0

    Returns
    -------
    float
        Between 0 and 1.
    """
    metric = check_metric(metric)
    _checked_pair(X, Y, k)
    rows = _sample_rows(X.shape[0], sample_size, random_state)
    Xs, Ys = _rescaled(_take(X, rows)), _rescaled(_take(Y, rows))
    high, _ = exact_knn(Xs, k, metric)
    low, _ = exact_knn(Ys, k, "euclidean")
    return recall_of(high, low)


def recall_of(true_indices: np.ndarray, found_indices: np.ndarray) -> float:
    """Mean per-row fraction of ``true_indices`` present in ``found_indices``."""
    true_indices, found_indices = np.asarray(true_indices), np.asarray(found_indices)
    hits = (true_indices[:, :, None] == found_indices[:, None, :]).any(axis=2)
    return float(hits.mean())


def knn_accuracy(
    Y: Any,
    labels: Any,
    k: int = 15,
    *,
    sample_size: int | None = DEFAULT_SAMPLE,
    random_state: int | None = 0,
) -> float:
    """Leave-one-out accuracy of a k-nearest-neighbour majority vote in the embedding.

    Parameters
    ----------
    Y : array of shape (n, c)
        Embedding.
    labels : array-like of shape (n,)
        Any hashable labels (ints, strings, categories).
    k : int, default=15
    sample_size : int or None, default=10000
    random_state : int or None, default=0

    Returns
    -------
    float
        Fraction of points whose neighbours' majority label is their own; ties go to
        the label that sorts first.
    """
    labels = to_host(labels) if not hasattr(labels, "to_numpy") else labels.to_numpy()
    if labels.shape[0] != Y.shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} entries but the embedding has {Y.shape[0]} rows")
    if not 1 <= k < Y.shape[0]:
        raise ValueError(f"k={k} must be between 1 and {Y.shape[0] - 1}")
    rows = _sample_rows(Y.shape[0], sample_size, random_state)
    Ys = _rescaled(_take(Y, rows))
    codes = np.unique(labels, return_inverse=True)[1].reshape(-1)
    codes = codes if rows is None else codes[rows]
    idx, _ = exact_knn(Ys, k, "euclidean")
    votes = codes[idx]
    n_labels = int(codes.max()) + 1
    counts = np.zeros((votes.shape[0], n_labels), dtype=np.int32)
    np.add.at(counts, (np.repeat(np.arange(votes.shape[0]), k), votes.reshape(-1)), 1)
    return float((counts.argmax(axis=1) == codes).mean())
