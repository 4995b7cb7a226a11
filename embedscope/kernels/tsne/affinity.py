"""t-SNE input affinities: per-point perplexity calibration and the symmetric joint P.

Distances come in as the kNN search returns them ((n, k) float32, self excluded); P goes
out as a float32 CSR matrix with int32 indices that sums to 1, the form every gradient
kernel (CPU and GPU) reads.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from embedscope.kernels._threads import for_rows


def _calibrate(dist: np.ndarray, target_entropy: float, tol: float, max_iter: int, out: np.ndarray) -> int:
    """Row-wise binary search on the Gaussian precision to hit the target entropy; rows missed."""
    return int(sum(for_rows(_calibrate_rows, dist.shape[0], dist, target_entropy, tol, max_iter, out)))


@numba.njit(cache=True, nogil=True)
def _calibrate_rows(start, stop, dist, target_entropy, tol, max_iter, out):  # pragma: no cover - numba
    k = dist.shape[1]
    n_missed = 0
    for i in range(start, stop):
        dmin = np.inf
        for j in range(k):
            if dist[i, j] < dmin:
                dmin = dist[i, j]
        mean = 0.0
        for j in range(k):
            mean += dist[i, j] - dmin
        mean /= k
        # Start at the scale of the distances: the search then takes a few halvings.
        beta = 1.0 / mean if mean > 0.0 else 1.0
        lo = 0.0
        hi = np.inf
        hit = False
        for _ in range(max_iter):
            total = 0.0
            weighted = 0.0
            for j in range(k):
                shifted = dist[i, j] - dmin
                e = np.exp(-beta * shifted)
                total += e
                weighted += shifted * e
            # total >= 1: the nearest neighbour contributes exp(0).
            entropy = np.log(total) + beta * weighted / total
            if abs(entropy - target_entropy) <= tol:
                hit = True
                break
            if entropy > target_entropy:
                lo = beta
                beta = beta * 2.0 if hi == np.inf else 0.5 * (beta + hi)
            else:
                hi = beta
                beta = 0.5 * (beta + lo)
        if not hit:
            n_missed += 1
        total = 0.0
        for j in range(k):
            e = np.exp(-beta * (dist[i, j] - dmin))
            out[i, j] = e
            total += e
        for j in range(k):
            out[i, j] = out[i, j] / total
    return n_missed


def conditional_affinities(
    distances: np.ndarray, perplexity: float, *, squared: bool = True,
    tol: float = 1e-5, max_iter: int = 200,
) -> tuple[np.ndarray, int]:
    """Gaussian conditional probabilities ``p_j|i`` over each row's neighbours.

    Parameters
    ----------
    distances : ndarray of shape (n, k)
        Distances to each point's k neighbours (self excluded).
    perplexity : float
        Target perplexity, ``0 < perplexity < k`` for the search to be meaningful.
    squared : bool, default=True
        Square the distances first (the Gaussian of t-SNE is on squared euclidean
        distances; cosine and inner-product distances are used as they are).
    tol : float, default=1e-5
        Tolerance on the entropy (nats).
    max_iter : int, default=200
        Binary-search steps per row.

    Returns
    -------
    P : ndarray of shape (n, k), float32
        Each row sums to 1. Rows whose neighbours are all at the same distance
        (duplicates) come out uniform, never NaN.
    n_missed : int
        Rows where the search did not reach ``tol``.
    """
    d = np.asarray(distances, dtype=np.float64)
    if squared:
        d = d * d
    out = np.empty(d.shape, dtype=np.float64)
    missed = _calibrate(np.ascontiguousarray(d), float(np.log(perplexity)), tol, max_iter, out)
    return out.astype(np.float32), int(missed)


def joint_probabilities(indices: np.ndarray, conditional: np.ndarray, n: int) -> sp.csr_matrix:
    """Symmetric joint P = (P_cond + P_cond^T) / sum, as a CSR matrix (float32, sums to 1)."""
    k = indices.shape[1]
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cond = sp.csr_matrix((conditional.ravel().astype(np.float64), (rows, indices.ravel().astype(np.int64))),
                         shape=(n, n))
    P = (cond + cond.T).tocsr()
    P.sum_duplicates()
    P.eliminate_zeros()
    P.data /= P.data.sum()
    P.data = P.data.astype(np.float32)
    P.indices = P.indices.astype(np.int32)
    P.sort_indices()
    return P


def knn_joint_probabilities(indices: np.ndarray, distances: np.ndarray, n: int, perplexity: float, *,
                            squared: bool = True) -> tuple[sp.csr_matrix, int]:
    """The joint P of a kNN graph (host), and the rows whose perplexity search missed.

    Missing neighbours (``-1``, or the point itself) get no weight. The GPU twin is
    :func:`embedscope.kernels.tsne.affinity_gpu.joint_probabilities_gpu`.
    """
    missing = (indices < 0) | (indices == np.arange(n)[:, None])
    if missing.any():
        # A huge finite distance gives a missing entry zero weight in the perplexity
        # search (an infinite one would turn 0 * inf into NaN there).
        distances = np.where(missing, np.float32(1e18), distances)
    cond, missed = conditional_affinities(distances, perplexity, squared=squared)
    if missing.any():
        cond = np.where(missing, 0.0, cond).astype(cond.dtype)
        indices = np.where(missing, np.arange(n)[:, None], indices).astype(np.int32)
    return joint_probabilities(indices, cond, n), missed
