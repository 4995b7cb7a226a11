"""numba.cuda kernels of densMAP's GPU twin. Import through :mod:`.gpu` only.

The CPU twin is :func:`embedscope.kernels.umap_sgd.densmap.sgd_epoch_dens` and
``_radius_sums``: the same arithmetic, one thread per head (see :mod:`.cuda` for the
shared rules: hashed random numbers, tails read from the snapshot).
"""

from __future__ import annotations

from numba import cuda, float32, float64, int32, int64, uint64

from embedscope.kernels._random import GOLDEN
from embedscope.kernels.umap_sgd.cpu import _EDGE_MUL, _EPOCH_MUL
from embedscope.kernels.umap_sgd.cuda import _clip, _mix
from embedscope.kernels.umap_sgd.densmap import RADIUS_EPS


@cuda.jit
def radius_sums(layout, indptr, indices, a, b, sums, norms):
    """Per point ``(sum phi d^2, sum phi)`` over its edges, in float64 (the CPU twin's)."""
    i = cuda.grid(1)
    if i >= layout.shape[0]:
        return
    dim = layout.shape[1]
    s = float64(0.0)
    t = float64(0.0)
    for e in range(indptr[i], indptr[i + 1]):
        j = indices[e]
        dist_sq = float64(0.0)
        for d in range(dim):
            diff = float64(layout[i, d]) - float64(layout[j, d])
            dist_sq += diff * diff
        phi = 1.0 / (1.0 + a * dist_sq ** b)
        s += phi * dist_sq
        t += phi
    sums[i] = s
    norms[i] = t


@cuda.jit(device=True, inline=True)
def _dlog_radius(phi, dphi, dist_sq, s, t):
    if t <= 0.0:
        return 0.0
    radius = s / t
    return ((phi + dphi * dist_sq) - radius * dphi) / (t * (radius + RADIUS_EPS))


@cuda.jit(fastmath=True)
def sgd_epoch_dens(head, reference, indptr, indices, epochs_per_sample, next_sample, next_negative,
                   negative_rate, a, b, alpha, epoch, seed, scratch, sums, norms, coeffs):
    """One densMAP epoch (fit case), one thread per head: the CPU twin's contract."""
    i = cuda.grid(1)
    n_heads = head.shape[0]
    if i >= n_heads:
        return
    dim = head.shape[1]
    n_ref = uint64(reference.shape[0])
    useed = uint64(seed)
    uepoch = uint64(epoch)
    a32 = float32(a)
    b32 = float32(b)
    alpha32 = float32(alpha)
    two_ab = float32(2.0 * a * b)
    two_b = float32(2.0 * b)
    for e in range(indptr[i], indptr[i + 1]):
        if float64(next_sample[e]) > float64(epoch):
            continue
        j = indices[e]
        dist_sq = float32(0.0)
        for d in range(dim):
            diff = head[i, d] - reference[j, d]
            dist_sq += diff * diff
        if dist_sq > float32(0.0):
            powered32 = dist_sq ** b32
            coeff = -two_ab * (powered32 / dist_sq) / (a32 * powered32 + float32(1.0))
            ref_sq = float64(0.0)
            for d in range(dim):
                diff64 = float64(reference[i, d]) - float64(reference[j, d])
                ref_sq += diff64 * diff64
            if ref_sq > 0.0:
                powered = ref_sq ** b
                phi = 1.0 / (1.0 + a * powered)
                dphi = -a * b * (powered / ref_sq) * phi * phi
                dens = 2.0 * (coeffs[i] * _dlog_radius(phi, dphi, ref_sq, sums[i], norms[i])
                              + coeffs[j] * _dlog_radius(phi, dphi, ref_sq, sums[j], norms[j]))
                coeff += float32(dens * float64(epochs_per_sample[e]))
            for d in range(dim):
                head[i, d] += _clip(coeff * (head[i, d] - reference[j, d])) * alpha32
        next_sample[e] += epochs_per_sample[e]
        if negative_rate <= 0:
            continue
        per_negative = float64(epochs_per_sample[e]) / float64(negative_rate)
        n_negative = int64((float64(epoch) - float64(next_negative[e])) / per_negative)
        if n_negative <= 0:
            continue
        state = _mix(useed ^ (uint64(e) * _EDGE_MUL) ^ (uepoch * _EPOCH_MUL))
        for d in range(dim):
            scratch[i, d] = float32(0.0)
        for _ in range(n_negative):
            state += GOLDEN
            k = int64(((_mix(state) >> uint64(32)) * n_ref) >> uint64(32))
            if k == i:
                continue
            dist_sq = float32(0.0)
            for d in range(dim):
                diff = head[i, d] - reference[k, d]
                dist_sq += diff * diff
            if dist_sq > float32(0.0):
                coeff = two_b / ((float32(0.001) + dist_sq) * (a32 * dist_sq ** b32 + float32(1.0)))
                for d in range(dim):
                    scratch[i, d] += _clip(coeff * (head[i, d] - reference[k, d]))
            else:
                for d in range(dim):
                    scratch[i, d] += float32(4.0)
        for d in range(dim):
            head[i, d] += _clip(scratch[i, d]) * alpha32
        next_negative[e] = float32(float64(next_negative[e]) + float64(n_negative) * per_negative)


#: Argument types (as the driver passes them), for ahead-of-time compile checks.
SIGNATURES = {
    "radius_sums": (float32[:, :], int64[:], int32[:], float64, float64, float64[:], float64[:]),
    "sgd_epoch_dens": (float32[:, :], float32[:, :], int64[:], int32[:], float32[:], float32[:], float32[:],
                       int64, float64, float64, float64, int64, uint64, float32[:, :], float64[:], float64[:],
                       float64[:]),
}
