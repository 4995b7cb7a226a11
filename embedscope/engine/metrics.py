"""Embedding quality: trustworthiness, kNN recall, kNN label accuracy and random
triplet accuracy.

The first three compare neighbourhoods, which costs O(S^2) on S points, so above
``sample_size`` points they are computed on a seeded subsample: the same rows in both
spaces. cupy inputs are subsampled on the device and the (small) subsample is
measured on the host.

Random triplet accuracy measures global structure instead: it reads only the rows of
its seeded triplets, so it needs no subsample, costs O(n_triplets) time and memory
whatever the number of points, and runs on the array module of its inputs (on the
device for cupy).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from embedscope._array import array_module, is_cupy, to_host
from embedscope.engine.stages import magnitude_scale
from embedscope.io.validate import validate_vectors
from embedscope.kernels.knn import exact_knn, prepare
from embedscope.kernels.knn.exact import pairwise_distances, precomputed_knn
from embedscope.kernels.knn.metrics import (
    DIRECT_METRICS,
    PRECOMPUTED,
    check_metric,
    check_metric_kwds,
)

DEFAULT_SAMPLE = 10_000
#: Triplets of :func:`random_triplet_accuracy` by default: its standard error is at
#: most 0.5 / sqrt(n_triplets) = 0.0016, below the third decimal the reports show.
DEFAULT_TRIPLETS = 100_000
#: float64 values per gathered block of triplet rows (8 MiB): bounds the temporaries
#: of one block whatever the dimension, so memory stays O(n_triplets).
_TRIPLET_BLOCK_VALUES = 2**20


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


def _metric_of(metric: Any, metric_kwds: Any, X: Any) -> tuple[str, dict[str, Any]]:
    """The checked metric and parameters; a precomputed ``X`` must be square."""
    name = check_metric(metric, allow_precomputed=True)
    kwds = check_metric_kwds(name, metric_kwds)
    if name == PRECOMPUTED and (X.ndim != 2 or X.shape[0] != X.shape[1]):
        raise ValueError(f"metric='precomputed' needs X as a square distance matrix; got shape {X.shape}")
    return name, kwds


def _take_original(X: Any, rows: np.ndarray | None, metric: str) -> np.ndarray:
    """The sampled rows of ``X`` (rows and columns of a distance matrix), rescaled."""
    if metric != PRECOMPUTED:
        return _rescaled(_take(X, rows))
    D = _take(X, rows)
    return np.asarray(D if rows is None else D[:, rows], dtype=np.float64)


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
    metric_kwds: dict[str, Any] | None = None,
) -> float:
    """How far an embedding's neighbours are from being true neighbours (1 is best).

    The measure of Venna & Kaski: each point's ``n_neighbors`` nearest points in the
    embedding that are not among its nearest in ``X`` are penalised by how far down
    ``X``'s ranking they are. Agrees with ``sklearn.manifold.trustworthiness``
    where ``X`` has no tied distances; with ties (hamming, jaccard on binary data) a
    point's rank here counts only the strictly closer points (scikit-learn breaks ties
    by index), so every tied point gets the best rank.

    Parameters
    ----------
    X : array of shape (n, d)
        Original vectors (numpy or cupy).
    Y : array of shape (n, c)
        Embedding.
    n_neighbors : int, default=15
    metric : str, default="euclidean"
        Metric in the original space, any the reducers take
        (:mod:`embedscope.kernels.knn.metrics`), or ``"precomputed"`` with ``X`` the
        (n, n) distance matrix; the embedding is always euclidean.
    sample_size : int or None, default=10000
        Above this many points, measure a seeded subsample of this size.
    random_state : int or None, default=0
        Seed of the subsample.
    metric_kwds : dict, optional
        The metric's parameters (``{"p": p}`` for minkowski).

    Returns
    -------
    float
    """
    metric, kwds = _metric_of(metric, metric_kwds, X)
    _checked_pair(X, Y, n_neighbors)
    rows = _sample_rows(X.shape[0], sample_size, random_state)
    Xs, Ys = _take_original(X, rows, metric), _rescaled(_take(Y, rows))
    n, k = Xs.shape[0], n_neighbors
    if not 1 <= k < n / 2:
        raise ValueError(f"n_neighbors={k} must be below n/2 = {n / 2:g} for trustworthiness")
    emb_idx, _ = exact_knn(Ys, k, "euclidean")
    gram_form = metric not in DIRECT_METRICS and metric != PRECOMPUTED
    if gram_form:
        P, sq = prepare(Xs, metric)
        P64, sq64 = P.astype(np.float64), sq.astype(np.float64)
    block = max(1, int(2**26 // (8 * n)))
    penalty = 0.0
    for start in range(0, n, block):
        stop = min(n, start + block)
        if metric == PRECOMPUTED:
            dist = np.ascontiguousarray(Xs[start:stop])
        elif not gram_form:
            dist = pairwise_distances(Xs[start:stop], Xs, metric, kwds)
        else:
            gram = P64[start:stop] @ P64.T
            if metric == "euclidean":
                dist = sq64[start:stop, None] + sq64[None, :] - 2.0 * gram
            elif metric in ("cosine", "correlation"):
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
    metric_kwds: dict[str, Any] | None = None,
) -> float:
    """Mean fraction of each point's k nearest neighbours in ``X`` kept among its k
    nearest in the embedding ``Y``.

    Parameters
    ----------
    X : array of shape (n, d)
    Y : array of shape (n, c)
    k : int, default=15
    metric : str, default="euclidean"
        Metric in the original space (as :func:`trustworthiness`; ``"precomputed"``
        reads the neighbours from the rows of the distance matrix ``X``).
    sample_size : int or None, default=10000
        Above this many points, both neighbour sets are computed within a seeded
        subsample of this size.
    random_state : int or None, default=0
    metric_kwds : dict, optional
        The metric's parameters (``{"p": p}`` for minkowski).

    Returns
    -------
    float
        Between 0 and 1.
    """
    metric, kwds = _metric_of(metric, metric_kwds, X)
    _checked_pair(X, Y, k)
    rows = _sample_rows(X.shape[0], sample_size, random_state)
    Xs, Ys = _take_original(X, rows, metric), _rescaled(_take(Y, rows))
    if metric == PRECOMPUTED:
        high, _ = precomputed_knn(Xs, k)
    else:
        high, _ = exact_knn(Xs, k, metric, metric_kwds=kwds)
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


def _triplets(n: int, n_triplets: int, random_state: int | None) -> np.ndarray:
    """``(3, n_triplets)`` int64 rows ``(i, j, k)``: uniform over ordered triplets of
    distinct points.

    Drawn on the host from numpy's generator whatever the inputs' array module, so a
    seed picks the same triplets on the CPU and on a GPU.
    """
    rng = np.random.default_rng(random_state)
    i = rng.integers(0, n, size=n_triplets)
    # Draw j from the n - 1 other points and k from the n - 2 left, then shift past the
    # excluded indices: uniform and distinct without rejection loops.
    j = rng.integers(0, n - 1, size=n_triplets)
    j += j >= i
    k = rng.integers(0, n - 2, size=n_triplets)
    k += k >= np.minimum(i, j)
    k += k >= np.maximum(i, j)
    return np.stack([i, j, k])


def _order_signs(A: Any, triplets: np.ndarray, metric: str, p: float = 2.0) -> Any:
    """sign(d(i, j) - d(i, k)) per triplet as int8, on ``A``'s array module.

    Distances are computed in float64 from the gathered rows only, and as differences
    rather than from norms, so equal distances (duplicate points) come out exactly equal.
    Only the order matters, so each distance is replaced by a monotone stand-in:
    squared euclidean, ``-<a, b>`` for inner product and (on unit rows) cosine, the
    unrooted sum for minkowski. Under ``"precomputed"`` ``A`` is the distance matrix
    and its entries are read.
    """
    xp = array_module(A)
    rows = xp.asarray(triplets) if xp is not np else triplets
    if metric == PRECOMPUTED:
        i, j, k = rows
        d_ab = xp.asarray(A[i, j], dtype=xp.float64)
        d_ac = xp.asarray(A[i, k], dtype=xp.float64)
        return xp.sign(d_ab - d_ac).astype(xp.int8)
    # take, not fancy indexing: the same rows, gathered about 4x faster by numpy.
    a, b, c = (xp.asarray(xp.take(A, r, axis=0), dtype=xp.float64) for r in rows)
    if metric in DIRECT_METRICS:
        d_ab, d_ac = (_direct_rows(a, other, metric, p, xp) for other in (b, c))
        return xp.sign(d_ab - d_ac).astype(xp.int8)
    if metric == "correlation":
        a, b, c = (part - part.mean(axis=1, keepdims=True) for part in (a, b, c))
    if metric == "euclidean":
        b -= a
        c -= a
        d_ab, d_ac = xp.einsum("ij,ij->i", b, b), xp.einsum("ij,ij->i", c, c)
    else:
        if metric in ("cosine", "correlation"):
            # The anchor's own norm scales both sides alike, so only the partners are
            # normalised; zero rows stay zero (similarity 0, distance 1), as in the kNN search.
            for part in (b, c):
                norms = xp.sqrt(xp.einsum("ij,ij->i", part, part))
                part /= xp.where(norms > 0, norms, 1.0)[:, None]
        d_ab, d_ac = -xp.einsum("ij,ij->i", a, b), -xp.einsum("ij,ij->i", a, c)
    return xp.sign(d_ab - d_ac).astype(xp.int8)


def _direct_rows(a: Any, b: Any, metric: str, p: float, xp: Any) -> Any:
    """A direct metric between paired float64 rows (minkowski unrooted), on ``xp``."""
    if metric == "manhattan":
        return xp.abs(a - b).sum(axis=1)
    if metric == "chebyshev":
        return xp.abs(a - b).max(axis=1)
    if metric == "minkowski":
        return (xp.abs(a - b) ** p).sum(axis=1)
    if metric == "hamming":
        return (a != b).mean(axis=1)
    on_a, on_b = a != 0, b != 0
    differ = (on_a != on_b).sum(axis=1)
    union = (on_a | on_b).sum(axis=1)
    return xp.where(union > 0, differ / xp.maximum(union, 1), 0.0)


def random_triplet_accuracy(
    X: Any,
    Y: Any,
    *,
    n_triplets: int = DEFAULT_TRIPLETS,
    metric: str = "euclidean",
    random_state: int | None = 0,
    metric_kwds: dict[str, Any] | None = None,
) -> float:
    """Share of random triplets whose distance order the embedding keeps (global structure).

    For ``n_triplets`` seeded triplets ``(i, j, k)`` of distinct points, the triplet is
    kept when ``j`` is nearer to ``i`` than ``k`` is in both ``X`` and ``Y``, or farther
    in both. Triplets with ``d_X(i, j) == d_X(i, k)`` have no order to keep and are left
    out; a tie in ``Y`` only (the embedding can no longer tell the two apart) counts as
    half kept, so a collapsed layout scores 0.5 like a random one. 1 is best; 0.5 is
    chance; below 0.5 the embedding reverses orders.

    Parameters
    ----------
    X : array of shape (n, d)
        Original vectors (numpy or cupy), n >= 3.
    Y : array of shape (n, c)
        Embedding (numpy or cupy), always measured with the euclidean distance.
    n_triplets : int, default=100000
        Triplets drawn (with replacement); the standard error of the result is at most
        ``0.5 / sqrt(n_triplets)``.
    metric : str, default="euclidean"
        Metric in the original space, as in the kNN search (``"cosine"`` is
        ``1 - cos``, an all-zero row at distance 1 from everything); ``"precomputed"``
        reads the distances from ``X``, an (n, n) distance matrix.
    random_state : int or None, default=0
        Seed of the triplets; the same seed draws the same triplets for numpy and cupy
        inputs.
    metric_kwds : dict, optional
        The metric's parameters (``{"p": p}`` for minkowski).

    Returns
    -------
    float
        Between 0 and 1. With cupy inputs the distances are computed on the device and
        only the final count is copied back.

    Raises
    ------
    ValueError
        An unknown metric, ``n_triplets`` not a positive integer, ``X`` or ``Y`` not a
        finite 2-D numeric array or with fewer than 3 rows, different row counts, or
        every drawn triplet tied in ``X`` (no order to keep).
    """
    metric, kwds = _metric_of(metric, metric_kwds, X)
    p = float(kwds.get("p", 2.0))
    if isinstance(n_triplets, bool) or not isinstance(n_triplets, (int, np.integer)) or n_triplets < 1:
        raise ValueError(f"n_triplets must be a positive integer; got {n_triplets!r}")
    X = validate_vectors(X, name="X", min_rows=3)
    Y = validate_vectors(Y, name="the embedding", min_rows=3)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but the embedding has {Y.shape[0]}")
    triplets = _triplets(X.shape[0], int(n_triplets), random_state)
    xp_x, xp_y = array_module(X), array_module(Y)
    block = max(1, _TRIPLET_BLOCK_VALUES // max(X.shape[1], Y.shape[1]))
    kept: Any = 0
    halves: Any = 0
    ordered: Any = 0
    for start in range(0, triplets.shape[1], block):
        part = triplets[:, start:start + block]
        sx, sy = _order_signs(X, part, metric, p), _order_signs(Y, part, "euclidean")
        if xp_x is not xp_y:  # one on the device, one on the host: compare the signs on the host
            sx, sy = to_host(sx), to_host(sy)
        xp = array_module(sx)
        # Device counts stay on the device until the end: one copy back, not one per block.
        ordered = ordered + xp.count_nonzero(sx)
        kept = kept + xp.count_nonzero((sx == sy) & (sx != 0))
        halves = halves + xp.count_nonzero((sy == 0) & (sx != 0))
    ordered = int(ordered)
    if ordered == 0:
        raise ValueError(f"all {n_triplets} triplets drawn are tied in X (d(i, j) == d(i, k)): "
                         "there is no distance order to keep; are the rows of X all equal?")
    return float((int(kept) + 0.5 * int(halves)) / ordered)


# ----------------------------------------------------------------------------- per point

#: Rows per block of the neighbour-set comparison: bounds its (rows, k, k) boolean
#: temporary to 32 MiB at k=15 whatever the number of points.
_OVERLAP_BLOCK_ROWS = 2**17


def shared_neighbors(a: Any, b: Any) -> Any:
    """How many entries each row of ``a`` shares with the same row of ``b``.

    Parameters
    ----------
    a, b : integer arrays of shape (n, k) and (n, m)
        Neighbour lists (numpy or cupy, both alike); an entry of -1 is missing and
        matches nothing. Entries within a row are assumed distinct.

    Returns
    -------
    int32 array of shape (n,), on the array module of ``a``.
    """
    xp = array_module(a)
    out = xp.empty(a.shape[0], dtype=np.int32)
    for start in range(0, a.shape[0], _OVERLAP_BLOCK_ROWS):
        pa, pb = a[start:start + _OVERLAP_BLOCK_ROWS], b[start:start + _OVERLAP_BLOCK_ROWS]
        hit = (pa[:, :, None] == pb[:, None, :]) & (pa[:, :, None] >= 0)
        out[start:start + pa.shape[0]] = hit.any(axis=2).sum(axis=1)
    return out


def _layout_knn(Y: Any, k: int) -> Any:
    """Exact k nearest neighbours (self excluded) of each row of a low-dimensional layout.

    On the host a k-d tree (scipy, all cores): O(n log n), seconds at a million 2-D
    points where a brute-force search is O(n^2). On the device the GPU exact search.
    """
    if is_cupy(Y):
        from embedscope.backends import resolve_backend

        indices, _ = resolve_backend("cuda").kernels.knn(Y, k, "euclidean", method="exact")
        return indices
    from scipy.spatial import cKDTree

    Y = np.asarray(Y, dtype=np.float64)
    _, found = cKDTree(Y).query(Y, k + 1, workers=-1)
    found = found.astype(np.int32, copy=False)
    own = found == np.arange(Y.shape[0], dtype=np.int32)[:, None]
    # The point itself is normally the first hit; with duplicate rows it may come later
    # (or, with more than k + 1 copies, not at all: then the last hit is dropped).
    drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(found, dtype=bool)
    keep[np.arange(Y.shape[0]), drop] = False
    return found[keep].reshape(Y.shape[0], k)


def neighborhood_preservation(
    X: Any,
    Y: Any,
    k: int = 15,
    *,
    metric: str = "euclidean",
    knn: tuple[Any, Any] | None = None,
    backend: str = "auto",
    random_state: int | None = 0,
    verbose: bool = False,
    metric_kwds: dict[str, Any] | None = None,
) -> np.ndarray:
    """Per point: the share of its k nearest neighbours in ``X`` that are also among its
    k nearest in the layout ``Y``.

    1 means the point's neighbourhood survived the projection intact, 0 that none of
    its neighbours is near it on the map. Its mean over all points is
    :func:`knn_recall` (measured there on a subsample); per point it shows *where*
    the map tears neighbourhoods apart. (Per-point trustworthiness and continuity
    terms are not given: they need the rank of each layout neighbour among all
    points in ``X``, an O(n^2) search.)

    Parameters
    ----------
    X : array of shape (n, d)
        Original vectors (numpy or cupy). Unused for the search when ``knn`` is given
        (pass None then).
    Y : array of shape (n, c)
        The layout (numpy or cupy), measured with the euclidean distance.
    k : int, default=15
        Neighbours compared per point, in [1, n - 1].
    metric : str, default="euclidean"
        Metric of the search in ``X``, any the reducers take, or ``"precomputed"``
        with ``X`` the (n, n) distance matrix.
    knn : tuple of (indices, distances), optional
        A kNN graph of ``X`` already computed (for example a fitted UMAP's
        ``knn_indices_, knn_distances_``), with at least ``k`` neighbours per point
        (self excluded, or in column 0 as umap-learn keeps it). Saves the search,
        the dominant cost.
    backend : str, default="auto"
        Where the search in ``X`` runs (``"cpu"``, ``"cuda"``, ``"auto"``). Above the
        backend's exact-search size it is approximate (NN-descent on the cpu, the
        IVF search on the GPU), as in the reducers.
    random_state : int or None, default=0
        Seed of an approximate search.
    verbose : bool, default=False
        Log the searches.
    metric_kwds : dict, optional
        The metric's parameters (``{"p": p}`` for minkowski).

    Returns
    -------
    float32 ndarray of shape (n,)
        Values in {0, 1/k, ..., 1}, on the host.

    Raises
    ------
    ValueError
        Different row counts, ``k`` out of range, non-finite values, an unknown
        metric, or a ``knn`` graph that breaks the precomputed contract.
    """
    from embedscope._progress import Progress
    from embedscope.engine.stages import check_precomputed

    Y = validate_vectors(Y, name="the embedding", min_rows=2)
    n = Y.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        raise ValueError(f"k={k!r} must be an integer between 1 and {n - 1} for {n} points")
    progress = Progress(verbose, "quality")
    if knn is not None:
        metric, kwds = _metric_of(metric, metric_kwds, np.empty((0, 0)))
        high, _ = check_precomputed(knn, n, int(k), metric)
    else:
        if X is None:
            raise ValueError("give X (the original vectors) or knn (their kNN graph)")
        X = validate_vectors(X, name="X", min_rows=2)
        metric, kwds = _metric_of(metric, metric_kwds, X)
        _checked_pair(X, Y, int(k))
        high = _data_knn(X, int(k), metric, kwds, backend, random_state, progress)
    with progress.stage("layout kNN", f"{n:,} x {Y.shape[1]}, k={k}"):
        low = _layout_knn(Y, int(k))
    shared = to_host(shared_neighbors(low, np.asarray(high) if not is_cupy(low) else _device(high)))
    return (shared / np.float32(k)).astype(np.float32)


def _device(a: np.ndarray) -> Any:
    import cupy

    return cupy.asarray(a)


def _data_knn(X: Any, k: int, metric: str, kwds: dict[str, Any], backend: str, random_state: int | None,
              progress: Any) -> np.ndarray:
    """The kNN of ``X`` on ``backend``, as the reducers search it (host int32 (n, k))."""
    from embedscope.backends import Request, get_spec, resolve_backend
    from embedscope.engine.stages import knn_graph

    request = Request("umap", n_samples=X.shape[0], metric=metric, neighbors=k)
    resolved = resolve_backend(backend, request)
    if resolved.delegate is not None:
        # A delegate (cuML) fits whole reducers and offers no search of ours: the
        # search runs on our kernels of the same kind of device.
        resolved = resolve_backend("cuda" if get_spec(resolved.name).gpu else "cpu", request)
    kernels = resolved.kernels
    rows = X if metric == PRECOMPUTED else (_rescaled(to_host(X)) if not is_cupy(X) else X)
    Z = rows if metric == PRECOMPUTED else kernels.place(rows)
    seed = 0 if random_state is None else int(random_state) % (2**31)
    with progress.stage("data kNN", f"{X.shape[0]:,} x {X.shape[1]}, k={k}, {metric}, "
                        f"{kernels.knn_label('auto', X.shape[0])}"):
        indices, _ = knn_graph(resolved, Z, k, metric, seed=seed, log=progress.log, metric_kwds=kwds)
    return np.asarray(indices)


def neighborhood_change(A: Any, B: Any, k: int = 15) -> np.ndarray:
    """Per point: how much its neighbourhood differs between two layouts of the same rows.

    The Jaccard distance ``1 - |N_A ∩ N_B| / |N_A ∪ N_B|`` between the point's k
    nearest neighbours in ``A`` and in ``B`` (both searched exactly, euclidean): 0
    where the two maps agree on its neighbours, 1 where they share none. It compares
    UMAP with t-SNE of the same vectors, two seeds, or two models' embeddings of the
    same items, whatever their scales, rotations or mirror images.

    Parameters
    ----------
    A, B : arrays of shape (n, c) and (n, c')
        Two layouts (numpy or cupy, both alike), row i the same item in both.
    k : int, default=15
        Neighbours compared per point, in [1, n - 1].

    Returns
    -------
    float32 ndarray of shape (n,)
        Values in [0, 1], on the host.

    Raises
    ------
    ValueError
        Different row counts, ``k`` out of range or non-finite values.
    """
    A = validate_vectors(A, name="the first layout", min_rows=2)
    B = validate_vectors(B, name="the second layout", min_rows=2)
    n = A.shape[0]
    if B.shape[0] != n:
        raise ValueError(f"the layouts have {n} and {B.shape[0]} rows; they must hold the same items")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        raise ValueError(f"k={k!r} must be an integer between 1 and {n - 1} for {n} points")
    shared = to_host(shared_neighbors(_layout_knn(A, int(k)), _layout_knn(B, int(k)))).astype(np.float32)
    return (1.0 - shared / (2 * int(k) - shared)).astype(np.float32)
