"""GPU twins of the t-SNE kernels (:mod:`.gradient`, :mod:`.exact`, :mod:`.fft`).

The row-wise kernels over the sparse P (attraction, the fused gradient step, the KL
terms) are numba.cuda kernels (:mod:`embedscope.kernels.tsne.cuda`), one thread per
row. The repulsion is written once against the array module of the embedding
(cupy on a GPU, numpy in numba's CUDA simulator):

- :func:`exact_repulsion_gpu`: all pairs, in blocks of rows (small N);
- :class:`FFTRepulsionGPU`: the CPU twin's grid interpolation (same layout, nodes,
  Lagrange weights and vector kernel), with the spread as a scatter-add, the
  convolution as ``xp.fft.rfftn`` / ``irfftn`` and the gather as a gather-multiply.

Positions, forces and the FFT are float32 on the device; grid charges, Z and the KL
report are accumulated in float64. Z stays on the device (a 1-element array), so a
step never waits for it. Nothing CUDA is imported until a kernel is first used.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from embedscope._array import array_module, to_host
from embedscope.kernels._cuda import cuda, device_array_module
from embedscope.kernels.tsne.fft import FFTRepulsion

THREADS_PER_BLOCK = 128
#: Pairs per block of :func:`exact_repulsion_gpu` (bounds its temporary arrays).
EXACT_BLOCK_PAIRS = 2**22


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


def _scatter_add(target: Any, index: Any, values: Any) -> None:
    """``target[index] += values`` with repeated indices summed (numpy or cupy).

    ``ufunc.at`` on both: CuPy 14 deprecates ``cupyx.scatter_add``, which warned on
    every iteration.
    """
    array_module(target).add.at(target, index, values)


class FFTRepulsionGPU(FFTRepulsion):
    """:class:`~embedscope.kernels.tsne.fft.FFTRepulsion` on the array module of its input.

    The grid layout (boxes, nodes, fast FFT lengths, the cached kernel spectra) is the
    CPU twin's; only where the arithmetic runs differs. Parameters as the CPU twin's,
    plus:

    Parameters
    ----------
    dtype : numpy dtype, default=float32
        Precision of the FFTs and of the returned forces (charges are summed in
        float64 either way).
    """

    def __init__(self, dof: float = 1.0, n_interp: int = 3, boxes_per_unit: float = 1.0,
                 min_boxes: int = 50, max_nodes: int | None = None, dtype: Any = np.float32) -> None:
        super().__init__(dof, n_interp, boxes_per_unit, min_boxes, max_nodes)
        self.dtype = np.dtype(dtype)

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

    def _interpolation(self, points: Any, lo: Any, box_width: float, n_boxes: int) -> tuple[Any, Any]:
        """Flat node indices and Lagrange weights, each (n, p^d), of every point's box.

        The CPU twin's ``_locate`` / ``_lagrange``, vectorised over the points.
        """
        xp = array_module(points)
        n, dim = points.shape
        p = self.n_interp
        m = n_boxes * p
        rel = (points.astype(xp.float64) - lo) / box_width
        box = xp.clip(xp.floor(rel), 0, n_boxes - 1)
        u = rel - box
        nodes = [(k + 0.5) / p for k in range(p)]
        weights = []
        for k in range(p):
            wk = xp.ones_like(u)
            for j in range(p):
                if j != k:
                    wk = wk * ((u - nodes[j]) / (nodes[k] - nodes[j]))
            weights.append(wk)
        w_axes = xp.stack(weights, axis=2)  # (n, d, p)
        i_axes = box.astype(xp.int64)[:, :, None] * p + xp.arange(p, dtype=xp.int64)
        flat, weight = i_axes[:, 0, :], w_axes[:, 0, :]
        for ax in range(1, dim):
            flat = (flat[:, :, None] * m + i_axes[:, ax, None, :]).reshape(n, -1)
            weight = (weight[:, :, None] * w_axes[:, ax, None, :]).reshape(n, -1)
        return flat, weight

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
        T = S if self_join else targets
        n, dim = S.shape
        if dim not in (2, 3):
            raise ValueError(f"grid repulsion supports 2-D and 3-D embeddings, not {dim}-D")
        # One small device-to-host copy per call: the grid layout is decided on the host.
        parts = [S.min(axis=0), S.max(axis=0)]
        if not self_join:
            parts += [T.min(axis=0), T.max(axis=0)]
        ends = to_host(xp.stack(parts)).astype(np.float64)
        lo, hi = ends[0::2].min(axis=0), ends[1::2].max(axis=0)
        n_boxes, box_width, fft_len = self._layout(lo, hi, dim)
        spectra = self._device_spectra(n_boxes, box_width, fft_len, dim, xp)
        m = n_boxes * self.n_interp
        lo_dev = xp.asarray(lo)
        flat, weight = self._interpolation(S, lo_dev, box_width, n_boxes)
        charges = xp.zeros(m**dim, dtype=xp.float64)
        _scatter_add(charges, flat.reshape(-1), weight.reshape(-1))
        axes = tuple(range(dim))
        q_hat = xp.fft.rfftn(charges.reshape((m,) * dim).astype(self.dtype), s=(fft_len,) * dim, axes=axes)
        channels = spectra[1:] if self_join else spectra
        pots = xp.fft.irfftn(q_hat[None] * channels, s=(fft_len,) * dim, axes=tuple(range(1, dim + 1)))
        pots = xp.ascontiguousarray(pots[(slice(None),) + (slice(0, m),) * dim]).reshape(pots.shape[0], -1)
        if not self_join:
            flat, weight = self._interpolation(T, lo_dev, box_width, n_boxes)
        values = xp.stack([(weight * pots[c][flat]).sum(axis=1) for c in range(pots.shape[0])], axis=1)
        if not self_join:
            return values[:, 1:].astype(self.dtype), xp.maximum(values[:, 0], 1e-300)
        # Parseval, as the CPU twin: interior frequencies of the last (halved) axis
        # stand for two.
        halves = xp.full(q_hat.shape[-1], 2.0)
        halves[0] = 1.0
        if fft_len % 2 == 0:
            halves[-1] = 1.0
        energy = (q_hat.real * q_hat.real + q_hat.imag * q_hat.imag) * spectra[0].real
        z = (energy * halves).sum(dtype=xp.float64).reshape(1) / float(fft_len) ** dim - n
        return values.astype(self.dtype), xp.maximum(z, 1e-300)
