"""t-SNE kernels: perplexity calibration, sparse P, attractive and exact repulsive forces.

The t-SNE gradient with a heavy-tailed kernel of ``dof`` degrees of freedom
(``w_ij = (1 + |y_i - y_j|^2 / dof) ** -dof``, ``q_ij = w_ij / Z``) is

    dC/dy_i = 4 * (sum_j p_ij w_ij^(1/dof) (y_i - y_j)
                   - (1 / Z) sum_j w_ij^(1 + 1/dof) (y_i - y_j))

The first sum runs over the sparse P only (:func:`attractive_forces`); the second over
all pairs, computed exactly here for small N (:func:`exact_repulsion`) and by grid
interpolation in :mod:`embedscope.kernels.tsne_fft` for large N. Every repulsion
routine returns the same pair: ``rep`` (the un-normalised second sum, one row per
target) and ``Z`` (total over all ordered pairs i != j for a self-join).

All arrays cross the boundary as float32 C-contiguous (embedding coordinates in
float64, where the optimiser accumulates), indices as int32/int64.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp


@numba.njit(parallel=True, cache=True)
def _calibrate(dist, target_entropy, tol, max_iter, out):  # pragma: no cover - numba
    """Row-wise binary search on the Gaussian precision to hit the target entropy."""
    n, k = dist.shape
    n_missed = 0
    for i in numba.prange(n):
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


@numba.njit(parallel=True, cache=True, fastmath=True)
def attractive_forces(indptr, indices, values, Y, reference, dof, out):  # pragma: no cover - numba
    """``out[i] = sum_j p_ij w_ij^(1/dof) (Y[i] - reference[j])`` over the CSR rows of P.

    For a fit ``reference`` is ``Y`` itself; for ``transform`` it is the fixed
    embedding and ``Y`` the points being placed.
    """
    n, d = Y.shape
    for i in numba.prange(n):
        for c in range(d):
            out[i, c] = 0.0
        for jj in range(indptr[i], indptr[i + 1]):
            j = indices[jj]
            d2 = 0.0
            for c in range(d):
                diff = Y[i, c] - reference[j, c]
                d2 += diff * diff
            f = values[jj] / (1.0 + d2 / dof)
            for c in range(d):
                out[i, c] += f * (Y[i, c] - reference[j, c])


@numba.njit(parallel=True, cache=True, fastmath=True)
def _exact_repulsion(targets, sources, dof, self_join, rep, z_rows):  # pragma: no cover - numba
    m, d = targets.shape
    n = sources.shape[0]
    for i in numba.prange(m):
        for c in range(d):
            rep[i, c] = 0.0
        z = 0.0
        for j in range(n):
            if self_join and j == i:
                continue
            d2 = 0.0
            for c in range(d):
                diff = targets[i, c] - sources[j, c]
                d2 += diff * diff
            base = 1.0 + d2 / dof
            w = base ** -dof
            z += w
            f = w / base
            for c in range(d):
                rep[i, c] += f * (targets[i, c] - sources[j, c])
        z_rows[i] = z


def exact_repulsion(
    sources: np.ndarray, dof: float = 1.0, targets: np.ndarray | None = None,
) -> tuple[np.ndarray, float | np.ndarray]:
    """Exact O(N^2) repulsion: the reference every approximation is tested against.

    Parameters
    ----------
    sources : ndarray of shape (n, d)
        The embedding whose points repel.
    dof : float, default=1.0
        Degrees of freedom of the heavy-tailed kernel.
    targets : ndarray of shape (m, d), optional
        Points to evaluate at; None is a self-join (``i == j`` skipped).

    Returns
    -------
    rep : ndarray of shape (m, d), float64
        ``sum_j w_ij^(1 + 1/dof) (t_i - s_j)``.
    Z : float or ndarray of shape (m,)
        Self-join: ``sum_{i != j} w_ij``. Otherwise each target's ``sum_j w_ij``.
    """
    self_join = targets is None
    S = np.ascontiguousarray(sources, dtype=np.float64)
    T = S if self_join else np.ascontiguousarray(targets, dtype=np.float64)
    rep = np.empty(T.shape, dtype=np.float64)
    z_rows = np.empty(T.shape[0], dtype=np.float64)
    _exact_repulsion(T, S, float(dof), self_join, rep, z_rows)
    return rep, (float(z_rows.sum()) if self_join else z_rows)


@numba.njit(parallel=True, cache=True, fastmath=True)
def _kl_terms(indptr, indices, values, Y, dof, out):  # pragma: no cover - numba
    n, d = Y.shape
    for i in numba.prange(n):
        acc = 0.0
        for jj in range(indptr[i], indptr[i + 1]):
            p = values[jj]
            if p <= 0.0:
                continue
            j = indices[jj]
            d2 = 0.0
            for c in range(d):
                diff = Y[i, c] - Y[j, c]
                d2 += diff * diff
            # p log p - p log w, with log w = -dof log(1 + d2/dof)
            acc += p * (np.log(p) + dof * np.log1p(d2 / dof))
        out[i] = acc


def kl_divergence(P: sp.csr_matrix, Y: np.ndarray, Z: float, dof: float = 1.0) -> float:
    """KL(P || Q) for the joint P (summing to 1) and the embedding's normaliser ``Z``."""
    terms = np.empty(Y.shape[0], dtype=np.float64)
    _kl_terms(P.indptr, P.indices, P.data, np.ascontiguousarray(Y, dtype=np.float64), float(dof), terms)
    return float(terms.sum() + np.log(Z))
