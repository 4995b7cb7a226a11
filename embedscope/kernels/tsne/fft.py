"""t-SNE repulsion by interpolation on a grid and FFT convolution (FIt-SNE idea).

Linderman et al. (2019): put ``n_interp`` equispaced Lagrange nodes in every box of a
regular grid over the embedding; spread each point's charge onto the nodes of its box;
the node-to-node interaction is a Toeplitz matrix, so it is one FFT convolution;
interpolate the node potentials back to the points. O(N p^d + G log G) per step.

Two choices differ from FIt-SNE / openTSNE, both for speed:

- We convolve the *vector* kernel ``G(δ) = w(δ)^(1+1/dof) δ`` (one kernel per
  dimension) against the single charge 1, instead of the scalar kernel against the
  charges ``1, y_1, y_2`` and reconstructing ``y_i φ_1 - φ_y``. That is one forward
  FFT of the charges and ``d`` inverse FFTs per step (FIt-SNE needs d+2 of each), and
  it avoids the cancellation of ``y_i φ_1 - φ_y`` when the embedding is large.
- ``Z = Σ_{i≠j} w_ij`` needs no inverse FFT: it is ``qᵀ (K q) - N`` over the grid,
  which Parseval gives from the charge spectrum already computed.
- Once the embedding is wider than ``min_boxes`` boxes the box width is fixed at
  ``1 / boxes_per_unit`` and the box count is rounded up to a fast FFT length, so
  the kernel spectra are cached and reused until the grid must grow (openTSNE
  recomputes them at every step, on a grid that grows with the embedding). While the
  embedding is narrower, the grid's extent is rounded up to the next step of a
  geometric ladder (``LADDER`` steps per doubling), so the box width, and with it the
  spectra, change once per ~9% of growth instead of at every step.
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np
import scipy.fft as sfft

from embedscope.kernels._threads import for_rows
from embedscope.kernels.tsne.near import add_near_field, bucket_order, far_kernels

#: FFT threads (scipy.fft workers).
WORKERS = max(1, os.cpu_count() or 1)
#: Steps per doubling of the ladder that narrow grids' extents are rounded up to.
#: A step is 2^(1/8) ~ 9%: the interpolation error (~h^p) grows by at most ~30% over
#: an exact fit, and the spectra are rebuilt ~8 times per doubling of the embedding.
LADDER = 8


def ladder(width: float) -> float:
    """``width`` rounded up to the next power of ``2 ** (1 / LADDER)``."""
    step = math.ceil(math.log2(width) * LADDER - 1e-9)
    return float(2.0 ** (step / LADDER))


@numba.njit(cache=True)
def _lagrange(u, n_interp, out):  # pragma: no cover - numba
    """Lagrange weights at box coordinate ``u`` in [0, 1] for nodes at (k + 0.5) / p."""
    for k in range(n_interp):
        xk = (k + 0.5) / n_interp
        wk = 1.0
        for m in range(n_interp):
            if m != k:
                xm = (m + 0.5) / n_interp
                wk *= (u - xm) / (xk - xm)
        out[k] = wk


@numba.njit(cache=True)
def _locate(coord, lo, box_width, n_boxes):  # pragma: no cover - numba
    # A point beyond the grid is taken to its edge (only the GPU twin, which lays its
    # grid out ahead of the points, meets any): extrapolated weights grow as u^(p-1).
    rel = min(max((coord - lo) / box_width, 0.0), float(n_boxes))
    b = int(np.floor(rel))
    if b >= n_boxes:
        b = n_boxes - 1
    return b, rel - b


@numba.njit(cache=True)
def _bounds(points):  # pragma: no cover - numba
    # One contiguous pass; numpy's min/max over axis 0 of an (n, 2) array is strided.
    d = points.shape[1]
    lo = points[0].copy()
    hi = points[0].copy()
    for i in range(points.shape[0]):
        for c in range(d):
            v = points[i, c]
            if v < lo[c]:
                lo[c] = v
            if v > hi[c]:
                hi[c] = v
    return lo, hi


@numba.njit(cache=True)
def _spread_2d(points, lo, box_width, n_boxes, n_interp, grid):  # pragma: no cover - numba
    # Serial on purpose: charges from many points land on shared nodes, and at
    # N p^2 adds this is a few ms even at a million points.
    wx = np.empty(n_interp)
    wy = np.empty(n_interp)
    for i in range(points.shape[0]):
        bx, ux = _locate(points[i, 0], lo[0], box_width, n_boxes)
        by, uy = _locate(points[i, 1], lo[1], box_width, n_boxes)
        _lagrange(ux, n_interp, wx)
        _lagrange(uy, n_interp, wy)
        for a in range(n_interp):
            for b in range(n_interp):
                grid[bx * n_interp + a, by * n_interp + b] += wx[a] * wy[b]


def _gather_2d(points: np.ndarray, lo: np.ndarray, box_width: float, n_boxes: int, n_interp: int,
               potentials: np.ndarray, out: np.ndarray) -> None:
    for_rows(_gather_2d_rows, points.shape[0], points, lo, box_width, n_boxes, n_interp, potentials, out)


@numba.njit(cache=True, nogil=True)
def _gather_2d_rows(start, stop, points, lo, box_width, n_boxes, n_interp, potentials, out):  # pragma: no cover
    n_chan = potentials.shape[0]
    wx = np.empty(n_interp)
    wy = np.empty(n_interp)
    for i in range(start, stop):
        bx, ux = _locate(points[i, 0], lo[0], box_width, n_boxes)
        by, uy = _locate(points[i, 1], lo[1], box_width, n_boxes)
        _lagrange(ux, n_interp, wx)
        _lagrange(uy, n_interp, wy)
        for c in range(n_chan):
            acc = 0.0
            for a in range(n_interp):
                for b in range(n_interp):
                    acc += wx[a] * wy[b] * potentials[c, bx * n_interp + a, by * n_interp + b]
            out[i, c] = acc


@numba.njit(parallel=True, cache=True)
def _spread_3d(points, lo, box_width, n_boxes, n_interp, grid):  # pragma: no cover - numba
    # Parallel over slabs of boxes along x: every box has its own nodes, so points of
    # different slabs never write the same node, and no atomics are needed. A counting
    # sort by slab (serial, O(N) integer work) hands each thread its points. In 3-D a
    # point writes p^3 = 27 nodes, 10x the 2-D work, so a serial spread would cost as
    # much as the gather (~20 ms at 100k points).
    n = points.shape[0]
    slab = np.empty(n, dtype=np.int64)
    for i in numba.prange(n):
        slab[i] = _locate(points[i, 0], lo[0], box_width, n_boxes)[0]
    order, first = bucket_order(slab, n_boxes)
    for bx in numba.prange(n_boxes):
        wx = np.empty(n_interp)
        wy = np.empty(n_interp)
        wz = np.empty(n_interp)
        for k in range(first[bx], first[bx + 1]):
            i = order[k]
            ux = _locate(points[i, 0], lo[0], box_width, n_boxes)[1]
            by, uy = _locate(points[i, 1], lo[1], box_width, n_boxes)
            bz, uz = _locate(points[i, 2], lo[2], box_width, n_boxes)
            _lagrange(ux, n_interp, wx)
            _lagrange(uy, n_interp, wy)
            _lagrange(uz, n_interp, wz)
            for a in range(n_interp):
                for b in range(n_interp):
                    wab = wx[a] * wy[b]
                    for e in range(n_interp):
                        grid[bx * n_interp + a, by * n_interp + b, bz * n_interp + e] += wab * wz[e]


def _gather_3d(points: np.ndarray, lo: np.ndarray, box_width: float, n_boxes: int, n_interp: int,
               potentials: np.ndarray, out: np.ndarray) -> None:
    for_rows(_gather_3d_rows, points.shape[0], points, lo, box_width, n_boxes, n_interp, potentials, out)


@numba.njit(cache=True, nogil=True)
def _gather_3d_rows(start, stop, points, lo, box_width, n_boxes, n_interp, potentials, out):  # pragma: no cover
    n_chan = potentials.shape[0]
    wx = np.empty(n_interp)
    wy = np.empty(n_interp)
    wz = np.empty(n_interp)
    for i in range(start, stop):
        bx, ux = _locate(points[i, 0], lo[0], box_width, n_boxes)
        by, uy = _locate(points[i, 1], lo[1], box_width, n_boxes)
        bz, uz = _locate(points[i, 2], lo[2], box_width, n_boxes)
        _lagrange(ux, n_interp, wx)
        _lagrange(uy, n_interp, wy)
        _lagrange(uz, n_interp, wz)
        for c in range(n_chan):
            acc = 0.0
            for a in range(n_interp):
                for b in range(n_interp):
                    for e in range(n_interp):
                        acc += (wx[a] * wy[b] * wz[e]
                                * potentials[c, bx * n_interp + a, by * n_interp + b, bz * n_interp + e])
            out[i, c] = acc


def pruned_rfftn(charges: np.ndarray, fft_len: int) -> np.ndarray:
    """``rfftn(charges, s=(fft_len,) * d)`` with the zero padding never transformed.

    Axis by axis, last first: each 1-D pass runs only over the lines that are not all
    padding (m^(d-1) lines, then m^(d-2) x fft_len ..., instead of fft_len^(d-1)
    every pass). In 3-D with fft_len = 2m that is 3.5 m^2 line transforms instead of
    6 m^2, and the padded cube is never built.
    """
    dim = charges.ndim
    out = sfft.rfft(charges, n=fft_len, axis=dim - 1, workers=WORKERS)
    for axis in range(dim - 2, -1, -1):
        out = sfft.fft(out, n=fft_len, axis=axis, overwrite_x=True, workers=WORKERS)
    return out


def pruned_irfftn(spectra: np.ndarray, fft_len: int, m: int) -> np.ndarray:
    """``irfftn`` over the last d axes of ``spectra``, keeping only the first ``m`` outputs per axis.

    The mirror of :func:`pruned_rfftn`: the first axis is transformed in full, and
    every later pass runs only over the lines whose outputs are kept.
    """
    dim = spectra.ndim - 1
    out = spectra
    for axis in range(1, dim):
        out = sfft.ifft(out, n=fft_len, axis=axis, overwrite_x=out is not spectra, workers=WORKERS)
        out = out[(slice(None),) * axis + (slice(0, m),)]
    out = sfft.irfft(out, n=fft_len, axis=dim, workers=WORKERS)
    return out[..., :m]


#: A grid of fixed box width is kept while the layout spans at least this share of it
#: (:meth:`FFTRepulsion._layout`): at most 1/0.8 = 1.25x the boxes needed per axis.
SHRINK_BELOW = 0.8
#: Self-joins crop their outermost points off the grid (``FFTRepulsion(outliers=...)``)
#: only when that narrows the grid by more than this share: otherwise the exact sums
#: over the cropped points would cost without buying a finer grid.
CROP_GAIN = 0.2


def fast_boxes(n_boxes: int, n_interp: int) -> int:
    """The least box count from ``n_boxes`` up whose FFT length, 2 n p, is a fast one."""
    while sfft.next_fast_len(2 * n_boxes * n_interp, real=True) != 2 * n_boxes * n_interp:
        n_boxes += 1
    return n_boxes


class FFTRepulsion:
    """Grid-interpolated repulsion for 2-D and 3-D embeddings, with cached kernel spectra.

    Parameters
    ----------
    dof : float, default=1.0
        Degrees of freedom of the kernel.
    n_interp : int, default=3
        Lagrange nodes per box and dimension.
    boxes_per_unit : float, default=1.0
        Boxes per unit of embedding length once the embedding spans more than
        ``min_boxes`` boxes (the kernel varies on a unit scale).
    min_boxes : int, default=50
        Boxes per dimension for small embeddings (finer boxes there).
    max_nodes : int, default=None
        Cap on nodes per dimension (memory guard); default 2000 in 2-D, 240 in 3-D.
    near_nodes : float, default=0
        3-D only: split the kernel at ``near_nodes`` node spacings, the smooth far part
        on the grid and the rest summed over pairs that close
        (:mod:`~embedscope.kernels.tsne.near`); 0 puts the whole kernel on the grid.
    outliers : int, default=0
        Self-joins only: up to this many points at each end of each axis are left off
        the grid, which then spans the rest, and their pairs are summed exactly
        (O(outliers x N)). A few points thrown far out would otherwise widen a capped
        grid until its nodes are coarser than the kernel: a 3-D t-SNE of 20k points
        spans ~330 units with its outliers and ~55 without.
    """

    def __init__(self, dof: float = 1.0, n_interp: int = 3, boxes_per_unit: float = 1.0,
                 min_boxes: int = 50, max_nodes: int | None = None, outliers: int = 0,
                 near_nodes: float = 0.0) -> None:
        self.dof = float(dof)
        self.n_interp = int(n_interp)
        self.boxes_per_unit = float(boxes_per_unit)
        self.min_boxes = int(min_boxes)
        self.max_nodes = max_nodes
        self.outliers = int(outliers)
        self.near_nodes = float(near_nodes)
        self._cache_key: tuple | None = None
        self._spectra: np.ndarray | None = None
        #: Type of the charge grid; float32 (float64 changes the forces by ~4e-7
        #: relative at 1M points: benchmarks/tsne_grid_precision.py).
        self.grid_dtype: type = np.float32

    # ------------------------------------------------------------------ grid
    def _layout(self, lo: np.ndarray, hi: np.ndarray, dim: int) -> tuple[int, float, int]:
        p = self.n_interp
        width = float((hi - lo).max())
        width = max(width, 1e-6) * (1 + 1e-9) + 1e-12
        max_nodes = self.max_nodes or (2000 if dim == 2 else 240)
        max_boxes = max(1, max_nodes // p)
        unit_boxes = width * self.boxes_per_unit
        cached = self._cache_key
        if (unit_boxes > self.min_boxes and cached is not None and cached[3] == dim
                and cached[1] == 1.0 / self.boxes_per_unit and unit_boxes <= cached[0] <= max_boxes
                and unit_boxes >= SHRINK_BELOW * cached[0]):
            # The grid in place still spans the layout: keep it (and its spectra) until
            # the layout needs one SHRINK_BELOW as wide. Following every wobble of the
            # width rebuilt the spectra 297 times in a 300k-point fit (50 s of 241).
            return cached[0], cached[1], cached[2]
        if unit_boxes <= self.min_boxes:
            n_boxes = min(self.min_boxes, max_boxes)
            # On the ladder: the spectra depend on the box width, so a width that
            # followed the embedding exactly would rebuild them at every step.
            box_width = ladder(width) / n_boxes
        else:
            # Round up to a fast FFT length, so the cache key changes rarely and
            # every transform is cheap; the grid then overhangs the embedding.
            n_boxes = fast_boxes(math.ceil(unit_boxes), p)
            box_width = 1.0 / self.boxes_per_unit
            if n_boxes > max_boxes:
                n_boxes = max_boxes
                box_width = ladder(width) / n_boxes
        fft_len = sfft.next_fast_len(2 * n_boxes * p, real=True)
        return n_boxes, box_width, fft_len

    def _kernel_spectra(self, n_boxes: int, box_width: float, fft_len: int, dim: int,
                        rc: float = 0.0) -> np.ndarray:
        key = (n_boxes, box_width, fft_len, dim, rc)
        if key == self._cache_key:
            return self._spectra
        p, dof = self.n_interp, self.dof
        m = n_boxes * p
        spacing = box_width / p
        offsets = np.arange(fft_len)
        offsets = np.where(offsets < m, offsets, offsets - fft_len).astype(np.float64)
        # Offsets of m or more nodes never occur between two nodes of the grid: zero.
        valid = (np.abs(offsets) < m).astype(np.float64)
        axis = offsets * spacing

        def along(values: np.ndarray, ax: int) -> np.ndarray:
            shape = [1] * dim
            shape[ax] = fft_len
            return values.reshape(shape)

        # Built by broadcasting from the 1-D axis and transformed one channel at a
        # time: a stack of meshgrids, masks and kernels in float64 held ~1.5 GB for a
        # moment at the 2-D cap (fft_len 4,000), the largest transient of a big fit.
        d2 = sum(along(axis * axis, ax) for ax in range(dim))
        value, slope = far_kernels(d2, dof, rc)
        del d2
        for ax in range(dim):
            value *= along(valid, ax)
            slope *= along(valid, ax)
        half = sfft.rfftn(value, workers=WORKERS)
        # Single precision from here on: the transforms are memory-bound, and float32
        # halves them (t-SNE on the 30k word vectors: 28.1 s -> 19.6 s end to end).
        # The interpolation's own error is ~1e-5 and above; float32 rounding moves the
        # forces by ~1e-7 relative (the same error against exact repulsion either way).
        spectra = np.empty((1 + dim, *half.shape), dtype=np.complex64)
        spectra[0] = half
        del value, half
        for ax in range(dim):
            spectra[1 + ax] = sfft.rfftn(slope * along(axis, ax), workers=WORKERS)
        self._cache_key, self._spectra = key, spectra
        return spectra

    # ------------------------------------------------------------------ evaluation
    def __call__(self, sources: np.ndarray, targets: np.ndarray | None = None) -> tuple[np.ndarray, float | np.ndarray]:
        """Repulsion on ``targets`` (default: ``sources``, self excluded).

        Returns ``(rep, Z)`` as :func:`embedscope.kernels.tsne.exact.exact_repulsion` does:
        ``rep[i] = Σ_j w_ij^(1+1/dof) (t_i - s_j)``; ``Z`` the total ``Σ_{i≠j} w_ij`` for
        a self-join, else each target's ``Σ_j w_ij``.
        """
        self_join = targets is None
        S = np.ascontiguousarray(sources, dtype=np.float64)
        T = S if self_join else np.ascontiguousarray(targets, dtype=np.float64)
        dim = S.shape[1]
        if dim not in (2, 3):
            raise ValueError(f"grid repulsion supports 2-D and 3-D embeddings, not {dim}-D")
        if self_join and self.outliers > 0 and S.shape[0] > 100 * self.outliers:
            return self._cropped(S)
        lo, hi = _bounds(S)
        if not self_join:
            lo_t, hi_t = _bounds(T)
            lo, hi = np.minimum(lo, lo_t), np.maximum(hi, hi_t)
        n_boxes, box_width, fft_len = self._layout(lo, hi, dim)
        return self._evaluate(S, None if self_join else T, lo, n_boxes, box_width, fft_len)

    def _cropped(self, S: np.ndarray) -> tuple[np.ndarray, float]:
        """Self-join with the ``outliers`` outermost points per side and axis summed exactly."""
        from embedscope.kernels.tsne.exact import exact_repulsion

        n, dim = S.shape
        k = self.outliers
        lo = np.array([np.partition(S[:, c], k)[k] for c in range(dim)])
        hi = np.array([np.partition(S[:, c], n - 1 - k)[n - 1 - k] for c in range(dim)])
        full_lo, full_hi = _bounds(S)
        if float((hi - lo).max()) >= (1.0 - CROP_GAIN) * float((full_hi - full_lo).max()):
            return self._evaluate(S, None, full_lo, *self._layout(full_lo, full_hi, dim))
        inside = ((S >= lo) & (S <= hi)).all(axis=1)
        bulk, out = np.ascontiguousarray(S[inside]), np.ascontiguousarray(S[~inside])
        rep = np.empty_like(S)
        rep_bulk, z_bulk = self._evaluate(bulk, None, lo, *self._layout(lo, hi, dim))
        rep_from_out, z_from_out = exact_repulsion(out, self.dof, targets=bulk)
        rep[inside] = rep_bulk + rep_from_out
        # The outliers against every point: their own pair (distance 0) adds w = 1 to
        # each row of Z and nothing to ``rep``.
        rep_out, z_out = exact_repulsion(S, self.dof, targets=out)
        rep[~inside] = rep_out
        z = float(z_bulk) + float(np.sum(z_from_out)) + float(np.sum(z_out)) - out.shape[0]
        return rep, max(z, 1e-300)

    def _evaluate(self, S: np.ndarray, T: np.ndarray | None, lo: np.ndarray, n_boxes: int, box_width: float,
                  fft_len: int) -> tuple[np.ndarray, float | np.ndarray]:
        """``__call__`` on a given grid: origin ``lo``, ``n_boxes`` boxes of ``box_width``.

        The GPU twin lays its grid out from bounds it reads only now and then, with a
        margin (:class:`~embedscope.kernels.tsne.gpu.FFTRepulsionGPU`); its tests
        evaluate the CPU twin on that grid.
        """
        self_join = T is None
        S = np.ascontiguousarray(S, dtype=np.float64)
        T = S if self_join else np.ascontiguousarray(T, dtype=np.float64)
        lo = np.asarray(lo, dtype=np.float64)
        n, dim = S.shape
        if self.near_nodes > 0 and dim != 3:
            raise ValueError(f"near_nodes (kernel splitting) is 3-D only, not {dim}-D")
        rc = self.near_nodes * box_width / self.n_interp
        spectra = self._kernel_spectra(n_boxes, box_width, fft_len, dim, rc)
        m = n_boxes * self.n_interp
        charges = np.zeros((m,) * dim, dtype=self.grid_dtype)
        spread = _spread_2d if dim == 2 else _spread_3d
        gather = _gather_2d if dim == 2 else _gather_3d
        spread(S, lo, box_width, n_boxes, self.n_interp, charges)
        channels = spectra[1:] if self_join else spectra
        # Pruned: the padded grid is 2^d x the charges, and most of it is zeros in
        # (forward) or outputs thrown away (inverse). In 2-D at the 2,000-node cap the
        # inverse pair took 0.22 s against 0.29 s unpruned (1M points, 2 cores).
        q_hat = pruned_rfftn(charges, fft_len)
        pots = np.ascontiguousarray(pruned_irfftn(q_hat[None] * channels, fft_len, m))
        values = np.empty((T.shape[0], pots.shape[0]), dtype=np.float64)
        gather(T, lo, box_width, n_boxes, self.n_interp, pots, values)
        near_z = np.zeros(T.shape[0])
        if not self_join:
            rep = np.ascontiguousarray(values[:, 1:])
            if rc > 0:
                add_near_field(S, T, self.dof, rc, rep, near_z)
            return rep, np.maximum(values[:, 0] + near_z, 1e-300)
        if rc > 0:
            add_near_field(S, None, self.dof, rc, values, near_z)
        # Parseval: qᵀ(K q) from the spectrum; the half-spectrum counts interior
        # frequencies of the last axis twice.
        weights = np.full(q_hat.shape[-1], 2.0)
        weights[0] = 1.0
        if fft_len % 2 == 0:
            weights[-1] = 1.0
        energy = (q_hat.real ** 2 + q_hat.imag ** 2) * spectra[0].real
        # The grid's diagonal is each point with itself: far(0) each (1 unsplit).
        self_term = float(far_kernels(np.zeros(1), self.dof, rc)[0][0])
        z = float((energy * weights).sum()) / float(fft_len) ** dim - n * self_term + float(near_z.sum())
        return values, max(z, 1e-300)
