"""GPU twins of the t-SNE kernels (:mod:`.gradient`, :mod:`.exact`, :mod:`.fft`).

The row-wise kernels over the sparse P (attraction, the fused gradient step, the KL
terms) are numba.cuda kernels (:mod:`embedscope.kernels.tsne.cuda`), one thread per
row. The repulsion is written once against the array module of the embedding
(cupy on a GPU, numpy in numba's CUDA simulator):

- :func:`exact_repulsion_gpu`: all pairs, in blocks of rows (small N);
- :class:`FFTRepulsionGPU`: the CPU twin's grid interpolation (same layout, nodes,
  Lagrange weights and vector kernel), with the spread and the gather as numba.cuda
  kernels (``cuda.spread`` / ``cuda.gather``) and the convolution as
  ``xp.fft.rfftn`` / ``irfftn``.

Positions, forces, the grid and the FFT are float32 on the device; Z and the KL
report are accumulated in float64. Z stays on the device (a 1-element array), and the
grid's bounds are read only every few steps, so a step never waits for the device.
Nothing CUDA is imported until a kernel is first used.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import scipy.fft as sfft
import scipy.sparse as sp

from embedscope._array import array_module, to_host
from embedscope.kernels._cuda import cuda, device_array_module
from embedscope.kernels.tsne.fft import FFTRepulsion, fast_boxes, ladder

THREADS_PER_BLOCK = 128
#: Pairs per block of :func:`exact_repulsion_gpu` (bounds its temporary arrays).
EXACT_BLOCK_PAIRS = 2**22
#: How far (a share of the width) the grid twin lets the bounds move between reads.
READ_BUDGET = 0.1
#: The most margin (a share of the width, each side) the grid twin adds: at the very
#: start, when the embedding grows 10x a step, points may leave the grid for a step
#: (they act as if on its edge) rather than the grid being 30x the embedding.
MAX_PAD = 4.0


@lru_cache(maxsize=1)
def _kernels() -> Any:
    cuda()  # restores what numba-cuda needs from numpy before it loads
    from embedscope.kernels.tsne import cuda as tsne_cuda

    return tsne_cuda


def _blocks(n: int, threads: int) -> int:
    return max(1, -(-n // threads))


class DeviceCSR(NamedTuple):
    """The joint P on the device: int64 ``indptr``, int32 ``indices``, float32 ``data``."""

    indptr: Any
    indices: Any
    data: Any
    shape: tuple[int, int]


def csr_to_device(P: sp.csr_matrix, xp: Any = None) -> DeviceCSR:
    """Copy a scipy CSR matrix to the device in the dtypes the kernels take."""
    xp = device_array_module() if xp is None else xp
    return DeviceCSR(xp.asarray(P.indptr, dtype=xp.int64), xp.asarray(P.indices, dtype=xp.int32),
                     xp.asarray(P.data, dtype=xp.float32), tuple(P.shape))


def attractive_forces_gpu(P: DeviceCSR, Y: Any, reference: Any, dof: float, out: Any, *,
                          threads: int = THREADS_PER_BLOCK) -> None:
    """GPU twin of :func:`embedscope.kernels.tsne.gradient.attractive_forces` (float32 arrays).

    Parameters
    ----------
    P : DeviceCSR
        Rows of P, one per point of ``Y``; columns index ``reference``.
    Y, reference : device arrays of shape (m, d) and (n, d), float32, d in {2, 3}
    dof : float
    out : device array of shape (m, d), float32
        Overwritten with ``sum_j p_ij w_ij^(1/dof) (Y[i] - reference[j])``.
    threads : int, default=128
        Threads per block.
    """
    _kernels().attractive_forces[_blocks(Y.shape[0], threads), threads](
        P.indptr, P.indices, P.data, Y, reference, float(dof), out)


def gradient_step_gpu(P: DeviceCSR, Y: Any, reference: Any, dof: float, rep: Any, inv_z: Any,
                      exaggeration: float, scale: float, learning_rate: float, momentum: float,
                      update: Any, gains: Any, *, threads: int = THREADS_PER_BLOCK) -> None:
    """GPU twin of :func:`.gradient.gradient_step`: attraction, then one momentum and gains update.

    Parameters
    ----------
    P : DeviceCSR
        Rows of P, one per point of ``Y``; columns index ``reference``.
    Y, reference : device arrays of shape (m, d) and (n, d), float32
        For a fit both are the embedding.
    dof : float
    rep : device array of shape (m, d), float32
        The repulsion's un-normalised sum (``rep`` of the repulsion routines).
    inv_z : device array of shape (1,) or (m,), float64
        1/Z once (a fit) or per row.
    exaggeration, scale, learning_rate, momentum : float
        ``grad = scale * (exaggeration * attraction - rep * inv_z)``.
    update, gains : device arrays of shape (m, d), float32
        Updated in place; ``Y`` is not (see :func:`advance_gpu`).
    threads : int, default=128
        Threads per block.
    """
    _kernels().gradient_step[_blocks(Y.shape[0], threads), threads](
        P.indptr, P.indices, P.data, Y, reference, float(dof), rep, inv_z, float(exaggeration),
        float(scale), float(learning_rate), float(momentum), update, gains)


def advance_gpu(Y: Any, update: Any) -> None:
    """``Y += update`` then recentre (:func:`.gradient.advance`), in place."""
    xp = array_module(Y)
    Y += update
    Y -= Y.mean(axis=0, dtype=xp.float64).astype(Y.dtype)


def kl_divergence_gpu(P: DeviceCSR, Y: Any, Z: Any, dof: float = 1.0, *,
                      threads: int = THREADS_PER_BLOCK) -> float:
    """GPU twin of :func:`embedscope.kernels.tsne.exact.kl_divergence`.

    Parameters
    ----------
    P : DeviceCSR
        The joint P (summing to 1).
    Y : device array of shape (n, d), float32
    Z : float or array of shape (1,)
        The embedding's normaliser, on the host or the device.
    dof : float, default=1.0
    threads : int, default=128

    Returns
    -------
    float
        KL(P || Q).
    """
    xp = array_module(Y)
    terms = xp.empty(Y.shape[0], dtype=xp.float64)
    _kernels().kl_terms[_blocks(Y.shape[0], threads), threads](
        P.indptr, P.indices, P.data, Y, float(dof), terms)
    return float(to_host(terms.sum())) + float(np.log(float(to_host(Z).reshape(-1)[0])))


def exact_repulsion_gpu(sources: Any, dof: float = 1.0) -> tuple[Any, Any]:
    """All-pairs repulsion of an embedding on itself (twin of ``exact_repulsion``).

    Returns
    -------
    rep : array of shape (n, d), the dtype of ``sources``
        ``sum_{j != i} w_ij^(1 + 1/dof) (s_i - s_j)``.
    Z : array of shape (1,), float64
        ``sum_{i != j} w_ij``, left on the device.
    """
    xp = array_module(sources)
    n = sources.shape[0]
    rep = xp.empty_like(sources)
    z = xp.zeros(1, dtype=xp.float64)
    rows = max(1, EXACT_BLOCK_PAIRS // n)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        diff = sources[start:stop, None, :] - sources[None, :, :]
        base = 1.0 + (diff * diff).sum(axis=2) / dof
        w = base ** -dof
        # A point meets itself once per row at distance exactly 0, where w is exactly
        # 1 and the force term is 0: subtracting the count excludes the self-pairs.
        z += w.sum(dtype=xp.float64) - (stop - start)
        rep[start:stop] = ((w / base)[:, :, None] * diff).sum(axis=1)
    return rep, z


class Grid(NamedTuple):
    """Where :class:`FFTRepulsionGPU` puts its grid: origin, boxes, box width, FFT length."""

    lo: tuple[float, ...]
    n_boxes: int
    box_width: float
    fft_len: int


class FFTRepulsionGPU(FFTRepulsion):
    """:class:`~embedscope.kernels.tsne.fft.FFTRepulsion` on the array module of its input.

    The grid layout (boxes, nodes, fast FFT lengths, the ladder of box widths, the
    cached kernel spectra) is the CPU twin's. The point passes are the numba.cuda
    kernels :func:`~embedscope.kernels.tsne.cuda.spread` and
    :func:`~embedscope.kernels.tsne.cuda.gather` (weights in registers, float32
    atomics into a float32 grid); the convolution is ``xp.fft.rfftn`` / ``irfftn``.

    The host never waits for the device within a step. The embedding's bounds are
    reduced on the device and copied to the host only every few calls (at every call
    while the embedding moves fast, up to ``sync_every`` apart once it moves slowly;
    see :meth:`_plan`): the grid is laid out from them with a margin for the movement
    expected until the next read (at least ``margin`` of the width). The spread kernel
    counts points that fall outside all the same; a count above 0 makes the next reads
    come at every call (meanwhile such points act as if on the grid's edge: a bounded
    error, where extrapolated Lagrange weights would not be).

    Parameters as the CPU twin's, plus:

    Parameters
    ----------
    dtype : numpy dtype, default=float32
        Precision of the FFTs and of the returned forces. The grid is float32 either
        way: float32 charges move the forces by ~4e-7 relative against float64 ones at
        1M points, well under the interpolation's ~1e-3 (``benchmarks/tsne_grid_precision.py``).
    sync_every : int, default=16
        Most calls between two reads of the bounds (reads come at every call while
        the embedding grows fast, then the interval doubles). 1 reads every call.
    margin : float, default=0.02
        Least margin on each side, as a share of the embedding's width.
    threads : int, default=128
        Threads per block of the point kernels.

    Attributes
    ----------
    grid_ : Grid or None
        The grid of the last call.
    syncs_ : int
        Reads of the bounds so far (device-to-host copies that wait for the device).
    """

    def __init__(self, dof: float = 1.0, n_interp: int = 3, boxes_per_unit: float = 1.0,
                 min_boxes: int = 50, max_nodes: int | None = None, dtype: Any = np.float32, *,
                 sync_every: int = 16, margin: float = 0.02, threads: int = THREADS_PER_BLOCK) -> None:
        super().__init__(dof, n_interp, boxes_per_unit, min_boxes, max_nodes)
        self.dtype = np.dtype(dtype)
        self.sync_every = max(1, int(sync_every))
        self.margin = float(margin)
        self.threads = int(threads)
        self.grid_: Grid | None = None
        self.syncs_ = 0
        self._interval = 1
        self._since = 0
        self._seen: np.ndarray | None = None
        self._outside: Any = None

    def _device_spectra(self, n_boxes: int, box_width: float, fft_len: int, dim: int, xp: Any) -> Any:
        """Spectra of the scalar kernel ``w`` and the ``dim`` vector kernels, cached."""
        key = (n_boxes, box_width, fft_len, dim, xp.__name__, self.dtype.str)
        if key == self._cache_key:
            return self._spectra
        p, dof = self.n_interp, self.dof
        m = n_boxes * p
        steps = xp.arange(fft_len, dtype=xp.float64)
        # Circular offsets: the second half of the period holds the negative ones;
        # offsets of m nodes or more never occur between two grid nodes.
        steps = xp.where(steps < m, steps, steps - fft_len)
        valid = xp.abs(steps) < m
        axis = steps * (box_width / p)
        grids, mask = [], None
        for ax in range(dim):
            shape = [1] * dim
            shape[ax] = fft_len
            grids.append(axis.reshape(shape))
            mask = valid.reshape(shape) if mask is None else mask & valid.reshape(shape)
        base = 1.0 + sum(g * g for g in grids) / dof
        kernels = [xp.where(mask, base ** -dof, 0.0)]
        kernels += [xp.where(mask, g * base ** (-dof - 1.0), 0.0) for g in grids]
        stacked = xp.stack(xp.broadcast_arrays(*kernels)).astype(self.dtype)
        spectra = xp.fft.rfftn(stacked, axes=tuple(range(1, dim + 1)))
        self._cache_key, self._spectra = key, spectra
        return spectra

    def _plan(self, ends: np.ndarray, dim: int, outside: int) -> Grid:
        """Lay the grid out from bounds just read (``ends``: rows lo, hi).

        t-SNE embeddings move fast early on (10x a step from a tiny start, and back
        and forth in the exaggerated phase) and slowly late (<1% a step). So the
        movement of the bounds is measured as a rate per call, and the next read is
        set as many calls ahead (doubling at most, up to ``sync_every``) as keep the
        predicted movement within ``READ_BUDGET`` of the width; each side of the grid
        gets 1.5 times that movement. A point found outside resets reads to every call.
        """
        lo, hi = ends[0], ends[1]
        width = max(float((hi - lo).max()), 1e-12)
        rate = 0.0
        if self._seen is not None and self._since > 0:
            before = max(float((self._seen[1] - self._seen[0]).max()), 1e-12)
            moved = float(max(np.abs(self._seen[0] - lo).max(), np.abs(hi - self._seen[1]).max()))
            rate = (1.0 + moved / before) ** (1.0 / self._since) - 1.0
        if outside > 0 or self._seen is None:  # nothing known about the movement yet
            self._interval = 1
        else:
            ahead = math.log1p(READ_BUDGET) / math.log1p(rate) if rate > 0 else math.inf
            self._interval = int(max(1, min(2 * self._interval, self.sync_every, ahead)))
        self._seen = ends.copy()
        pad = width * min(MAX_PAD, max(self.margin, 1.5 * ((1.0 + rate) ** self._interval - 1.0)))
        # The box width of the CPU twin's grid for the bounds as they are (so the grid
        # is as fine as the CPU's), and more boxes to reach over the margin.
        p = self.n_interp
        _, box_width, _ = self._layout(lo, hi, dim)
        need = width + 2.0 * pad
        n_boxes = fast_boxes(math.ceil(need / box_width - 1e-9), p)
        max_boxes = max(1, (self.max_nodes or (2000 if dim == 2 else 240)) // p)
        if n_boxes > max_boxes:
            n_boxes = max_boxes
            box_width = ladder(need * (1 + 1e-9)) / n_boxes
        fft_len = sfft.next_fast_len(2 * n_boxes * p, real=True)
        centre = (lo + hi) / 2.0
        return Grid(tuple(float(v) for v in centre - n_boxes * box_width / 2.0), n_boxes, box_width, fft_len)

    def __call__(self, sources: Any, targets: Any = None) -> tuple[Any, Any]:
        """Repulsion on ``targets`` (default: ``sources``, self excluded).

        Returns
        -------
        rep : array of shape (m, d), ``dtype``
            ``sum_j w_ij^(1+1/dof) (t_i - s_j)``.
        Z : float64 array
            Self-join: shape (1,), ``sum_{i != j} w_ij``. Otherwise shape (m,), each
            target's ``sum_j w_ij``.
        """
        xp = array_module(sources)
        self_join = targets is None
        S = sources
        dim = S.shape[1]
        if dim not in (2, 3):
            raise ValueError(f"grid repulsion supports 2-D and 3-D embeddings, not {dim}-D")
        if self._outside is None or array_module(self._outside) is not xp:
            self._outside = xp.zeros(1, dtype=xp.int32)
        if not self_join:
            # Placing new points (tests; t-SNE transform runs on the host): the CPU
            # twin's grid, read at once, and the fit's read schedule left alone.
            both = xp.concatenate([S, targets])
            ends = to_host(xp.stack([both.min(axis=0), both.max(axis=0)])).astype(np.float64)
            lo, hi = ends
            return self._evaluate_device(S, targets, Grid(tuple(float(v) for v in lo), *self._layout(lo, hi, dim)),
                                         xp)
        if self.grid_ is None or self._since >= self._interval:
            # The only wait on the device: bounds reduced there, read every few calls.
            ends = to_host(xp.stack([S.min(axis=0), S.max(axis=0)])).astype(np.float64)
            outside = int(to_host(self._outside)[0])
            self._outside[...] = 0
            self.syncs_ += 1
            grid = self._plan(ends, dim, outside)
            self._since = 0
        else:
            grid = self.grid_
        self._since += 1
        self.grid_ = grid
        return self._evaluate_device(S, targets, grid, xp)

    def _evaluate_device(self, S: Any, T: Any, grid: Grid, xp: Any) -> tuple[Any, Any]:
        self_join = T is None
        n, dim = S.shape
        kernels = _kernels()
        spectra = self._device_spectra(grid.n_boxes, grid.box_width, grid.fft_len, dim, xp)
        p, fft_len = self.n_interp, grid.fft_len
        m = grid.n_boxes * p
        lo = (*grid.lo, 0.0)[:3]
        inv = 1.0 / grid.box_width
        charges = xp.zeros(m**dim, dtype=xp.float32)
        kernels.spread[_blocks(n, self.threads), self.threads](
            S, lo[0], lo[1], lo[2], inv, grid.n_boxes, p, charges, self._outside)
        axes = tuple(range(dim))
        q_hat = xp.fft.rfftn(charges.reshape((m,) * dim), s=(fft_len,) * dim, axes=axes)
        channels = spectra[1:] if self_join else spectra
        pots = xp.fft.irfftn(q_hat[None] * channels, s=(fft_len,) * dim, axes=tuple(range(1, dim + 1)))
        pots = xp.ascontiguousarray(pots[(slice(None),) + (slice(0, m),) * dim], dtype=xp.float32)
        pots = pots.reshape(pots.shape[0], -1)
        T = S if self_join else xp.ascontiguousarray(T, dtype=xp.float32)
        values = xp.empty((T.shape[0], pots.shape[0]), dtype=xp.float32)
        kernels.gather[_blocks(T.shape[0], self.threads), self.threads](
            T, lo[0], lo[1], lo[2], inv, grid.n_boxes, p, pots, values)
        if not self_join:
            return values[:, 1:].astype(self.dtype), xp.maximum(values[:, 0].astype(xp.float64), 1e-300)
        # Parseval, as the CPU twin: interior frequencies of the last (halved) axis
        # stand for two.
        halves = xp.full(q_hat.shape[-1], 2.0)
        halves[0] = 1.0
        if fft_len % 2 == 0:
            halves[-1] = 1.0
        energy = (q_hat.real * q_hat.real + q_hat.imag * q_hat.imag) * spectra[0].real
        z = (energy * halves).sum(dtype=xp.float64).reshape(1) / float(fft_len) ** dim - n
        return values.astype(self.dtype, copy=False), xp.maximum(z, 1e-300)
