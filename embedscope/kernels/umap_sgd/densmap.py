"""densMAP: UMAP's SGD with a term that keeps local density (CPU twin; GPU twin in :mod:`.cuda_dens`).

From Narayan, Berger & Cho, "Assessing single-cell transcriptomic variability through
density-preserving data visualization" (Nature Biotechnology, 2021). Each point has a
local radius in the data,

    R_i = sum_j mu_ij d_ij^2 / sum_j mu_ij        (mu: fuzzy graph weights)

and one in the layout,

    r_i = sum_j phi_ij |y_i - y_j|^2 / sum_j phi_ij,   phi = 1 / (1 + a |y_i - y_j|^(2b)),

both over the graph's edges. densMAP adds ``dens_lambda`` times the Pearson correlation
``C`` of ``log r`` with ``log R`` to UMAP's objective, for the last ``dens_frac`` of the
epochs. At the start of each of those epochs the layout radii, their mean and
variance (plus ``dens_var_shift``, so a nearly uniform layout does not divide by
zero) and ``g_i = dens_lambda * n * dC / d log r_i`` are computed from the snapshot;
then every sampled edge ``(i, j)`` adds

    (g_i * d log r_i / d|y_i - y_j|^2 + g_j * d log r_j / d|y_i - y_j|^2) * 2 (y_i - y_j)

to the head's attractive step before it is clipped, times ``max(w) / w`` for an edge
of weight ``w``. UMAP samples an edge ``w / max(w)`` times an epoch, which is right
for its own term (the cross-entropy weighs each edge by ``w``), but the radii count an
edge by its length alone: the factor makes each epoch's expected density step the
whole gradient of ``dens_lambda * n * C``. The graph is symmetric, so both radii
contain the edge with the same length, and a head moving along its own edges follows
that gradient.

Without the factor (until 2026-12) strong edges carried the term and weak ones hardly
moved, and the correlation fell short of umap-learn's. ``benchmarks/densmap_cpu.py``,
medians of seeds 0 and 1, correlation of log radii / trustworthiness@15 (umap-learn
0.5.12 with the same settings; before the factor; now):

- four 8-D clusters of std 0.25-2 (1,200 points, 200 epochs): 0.900 / 0.923;
  0.511 / 0.946; 0.916 / 0.940;
- 20 30-D clusters of std 0.25-4 (20,000 points): 0.859 / 0.979; 0.895 / 0.980;
  0.929 / 0.977;
- the 30,000 x 384 word vectors (cosine): 0.406 / 0.641; 0.562 / 0.784; 0.752 / 0.748
  (plain UMAP: 0.494 / 0.802).

The default path (:func:`embedscope.kernels.umap_sgd.cpu.optimize_layout` without
``densmap``) does not go through here, so its speed is unchanged; the epochs before
the density phase run the ordinary kernels (so ``dens_frac=0`` is plain UMAP).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from embedscope.kernels._threads import n_chunks, run_row_chunks
from embedscope.kernels.umap_sgd.cpu import (
    _FLAGS,
    MIN_ROWS_PER_THREAD,
    _attraction,
    _clip,
    _float32_constants,
    push_negatives,
    sgd_buffers,
    sgd_epoch,
    sgd_schedule,
)

#: Added inside the logarithm of every radius (umap-learn's choice too): a point whose
#: neighbours all coincide with it has radius 0.
RADIUS_EPS = 1e-8


@dataclass(frozen=True)
class DensParams:
    """What the density term needs: the data's log radii and umap-learn's three knobs."""

    log_radii: np.ndarray
    dens_lambda: float = 2.0
    dens_frac: float = 0.3
    var_shift: float = 0.1


def data_radii(graph: sp.csr_matrix, knn_indices: np.ndarray, knn_distances: np.ndarray) -> np.ndarray:
    """log local radius of each point in the data, float32 (n,).

    ``sum_j mu_ij d_ij^2 / sum_j mu_ij`` over the edges of the fuzzy ``graph`` whose
    distance the kNN graph holds (in either direction; an edge only a target graph
    brought in has no data distance and is left out). A point without one gets
    the median radius.
    """
    n, k = knn_indices.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols = knn_indices.ravel().astype(np.int64)
    keep = (cols >= 0) & (cols != rows)
    # d^2 + 1 so that coincident points (d = 0) are still stored entries
    squared = knn_distances.ravel().astype(np.float64)[keep] ** 2 + 1.0
    directed = sp.csr_matrix((squared, (rows[keep], cols[keep])), shape=(n, n))
    directed.sum_duplicates()
    lengths = directed.maximum(directed.T).tocsr()
    weights = graph.tocsr().astype(np.float64)
    known = weights.multiply(lengths > 0)
    mu_sum = np.asarray(known.sum(axis=1)).ravel()
    weighted = np.asarray(weights.multiply(lengths).sum(axis=1)).ravel() - mu_sum
    has = mu_sum > 0
    radius = np.full(n, np.nan)
    radius[has] = weighted[has] / mu_sum[has]
    if not has.all():
        radius[~has] = np.median(radius[has]) if has.any() else 1.0
    return np.log(RADIUS_EPS + np.maximum(radius, 0.0)).astype(np.float32)


@numba.njit(parallel=True, nogil=True, cache=True)
def _radius_sums(layout, indptr, indices, a, b):  # pragma: no cover - numba
    """Per point ``(sum phi d^2, sum phi)`` over its edges, float64 (n,) each."""
    n, dim = layout.shape
    sums = np.zeros(n)
    norms = np.zeros(n)
    for i in numba.prange(n):
        s = 0.0
        t = 0.0
        for e in range(indptr[i], indptr[i + 1]):
            j = indices[e]
            dist_sq = 0.0
            for d in range(dim):
                diff = np.float64(layout[i, d]) - np.float64(layout[j, d])
                dist_sq += diff * diff
            phi = 1.0 / (1.0 + a * dist_sq**b)
            s += phi * dist_sq
            t += phi
        sums[i] = s
        norms[i] = t
    return sums, norms


def layout_radii(layout: np.ndarray, graph: sp.csr_matrix, a: float, b: float) -> np.ndarray:
    """log local radius of each point in ``layout``, float32 (n,) (see the module text)."""
    graph = graph.tocsr()
    sums, norms = _radius_sums(np.ascontiguousarray(layout, dtype=np.float32), graph.indptr.astype(np.int64),
                               graph.indices.astype(np.int64), float(a), float(b))
    radius = np.where(norms > 0, sums / np.where(norms > 0, norms, 1.0), 0.0)
    return np.log(RADIUS_EPS + radius).astype(np.float32)


def density_coefficients(log_data: np.ndarray, sums: np.ndarray, norms: np.ndarray, dens_lambda: float,
                         var_shift: float) -> tuple[np.ndarray, float]:
    """``g = dens_lambda * n * dC / d log r`` per point (float64), and the correlation ``C``.

    ``C = cov(log r, log R) / sqrt((var(log r) + var_shift) var(log R))``.
    """
    radius = np.where(norms > 0, sums / np.where(norms > 0, norms, 1.0), 0.0)
    log_emb = np.log(RADIUS_EPS + radius)
    data = log_data.astype(np.float64)
    de, dr = log_emb - log_emb.mean(), data - data.mean()
    var_e, var_r = float(de @ de) / de.size + var_shift, max(float(dr @ dr) / dr.size, 1e-12)
    corr = float(de @ dr) / de.size / np.sqrt(var_e * var_r)
    return dens_lambda * (dr / np.sqrt(var_e * var_r) - corr * de / var_e), corr


@numba.njit(cache=True, inline="always")
def _dlog_radius(phi, dphi, dist_sq, s, t):  # pragma: no cover - numba
    """d log(eps + s / t) / d dist_sq for one edge of a point with sums ``s, t``."""
    if t <= 0.0:
        return 0.0
    radius = s / t
    return ((phi + dphi * dist_sq) - radius * dphi) / (t * (radius + RADIUS_EPS))


@numba.njit(**_FLAGS)
def sgd_rows_dens(start, stop, head, reference, indptr, indices, epochs_per_sample, next_sample, next_negative,
                  negative_rate, a, b, alpha, epoch, seed, sums, norms, coeffs, row,
                  picked):  # pragma: no cover - numba
    """:func:`embedscope.kernels.umap_sgd.cpu.sgd_rows` (fit case) plus the density term.

    ``sums``, ``norms`` (float64 (n,)): each point's radius sums on ``reference``;
    ``coeffs`` (float64 (n,)): ``g`` of :func:`density_coefficients`. The negative
    samples are the plain epoch's (:func:`~embedscope.kernels.umap_sgd.cpu.push_negatives`),
    but each edge's push from where the head is, at once: pushed at the end of a
    head's turn as in UMAP's epochs, the density term lost most of its effect (the
    correlation of log radii on the fixture of tests/test_umap_densmap.py 0.25, at
    once 0.53 and 0.58 for seeds 0 and 1).
    """
    dim = head.shape[1]
    useed = np.uint64(seed)
    a32, b32, alpha32, two_ab, two_b = _float32_constants(a, b, alpha)
    for i in range(start, stop):
        for e in range(indptr[i], indptr[i + 1]):
            if next_sample[e] > epoch:
                continue
            j = indices[e]
            dist_sq = np.float32(0.0)
            for d in range(dim):
                diff = head[i, d] - reference[j, d]
                dist_sq += diff * diff
            if dist_sq > 0.0:
                coeff = _attraction(dist_sq, a32, b32, two_ab)
                # the density term, from the snapshot's edge length (the sums' own)
                ref_sq = 0.0
                for d in range(dim):
                    diff64 = np.float64(reference[i, d]) - np.float64(reference[j, d])
                    ref_sq += diff64 * diff64
                if ref_sq > 0.0:
                    powered = ref_sq**b
                    phi = 1.0 / (1.0 + a * powered)
                    dphi = -a * b * (powered / ref_sq) * phi * phi
                    dens = 2.0 * (coeffs[i] * _dlog_radius(phi, dphi, ref_sq, sums[i], norms[i])
                                  + coeffs[j] * _dlog_radius(phi, dphi, ref_sq, sums[j], norms[j]))
                    # An edge of weight w is sampled w / max(w) times an epoch, but it
                    # counts in the radii by its length alone: max(w) / w per sample
                    # makes the epoch's expected step the whole gradient.
                    coeff += np.float32(dens * epochs_per_sample[e])
                for d in range(dim):
                    head[i, d] += _clip(coeff * (head[i, d] - reference[j, d])) * alpha32
            next_sample[e] += epochs_per_sample[e]
            push_negatives(head, reference, i, e, epochs_per_sample, next_negative, negative_rate, epoch,
                           useed, True, a32, b32, two_b, alpha32, row, picked, True)


def optimize_layout_dens(
    head: np.ndarray,
    graph: sp.csr_matrix,
    n_epochs: int,
    *,
    a: float,
    b: float,
    densmap: DensParams,
    learning_rate: float = 1.0,
    negative_sample_rate: int = 5,
    seed: int = 0,
    callback: Callable[[int, int, np.ndarray], object] | None = None,
    log: Callable[[str], None] | None = None,
) -> np.ndarray:
    """:func:`embedscope.kernels.umap_sgd.cpu.optimize_layout` (fit case) with densMAP.

    The first ``(1 - dens_frac)`` of the epochs are ordinary UMAP epochs (the same
    kernels); the rest add the density term. ``densmap.log_radii`` are the data's
    log radii (:func:`data_radii`). A true return value of ``callback`` stops after
    that epoch, as in the plain driver.
    """
    head = np.ascontiguousarray(head, dtype=np.float32)
    schedule = sgd_schedule(graph, negative_sample_rate)
    if schedule is None or n_epochs <= 0:
        return head
    indptr, indices, epochs_per_sample, next_sample, next_negative = schedule
    log_data = np.asarray(densmap.log_radii, dtype=np.float64)
    if log_data.shape != (head.shape[0],):
        raise ValueError(f"densmap log_radii has shape {log_data.shape}; expected ({head.shape[0]},)")
    start_dens = n_epochs - round(densmap.dens_frac * n_epochs)
    snapshot = np.empty_like(head)
    report_every = max(1, n_epochs // 10)
    n_threads = numba.get_num_threads()
    scratch, picks = sgd_buffers(n_threads, head.shape[1])
    for epoch in range(n_epochs):
        np.copyto(snapshot, head)
        alpha = learning_rate * (1.0 - epoch / n_epochs)
        args = (head, snapshot, indptr, indices, epochs_per_sample, next_sample, next_negative,
                int(negative_sample_rate), float(a), float(b), float(alpha), epoch, np.uint64(seed))
        if epoch >= start_dens and densmap.dens_lambda > 0.0:
            sums, norms = _radius_sums(snapshot, indptr, indices, float(a), float(b))
            coeffs, corr = density_coefficients(log_data, sums, norms, densmap.dens_lambda, densmap.var_shift)
            chunks = min(n_chunks(head.shape[0], MIN_ROWS_PER_THREAD), n_threads)
            run_row_chunks(sgd_rows_dens, head.shape[0], chunks, (*args, sums, norms, coeffs), (scratch, picks))
        else:
            sgd_epoch(*args, True, scratch, picks)
        if callback is not None and callback(epoch + 1, n_epochs, head):
            break  # the caller asked to stop: the layout stays as this epoch left it
        if log is not None and ((epoch + 1) % report_every == 0 or epoch + 1 == n_epochs):
            extra = f", density correlation {corr:.3f}" if epoch >= start_dens and densmap.dens_lambda > 0 else ""
            log(f"epoch {epoch + 1}/{n_epochs}{extra}")
    return head
