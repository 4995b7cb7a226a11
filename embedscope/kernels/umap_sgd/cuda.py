"""numba.cuda kernel of the UMAP SGD GPU twin. Import through :mod:`.gpu` only.

The CPU twin (:func:`embedscope.kernels.umap_sgd.cpu.sgd_epoch`) is parallel over heads
with random numbers hashed from ``(seed, epoch, edge, draw)`` and tails read from a
snapshot of the layout: nothing depends on the order heads are processed in. So the
GPU twin is the same body with one thread per head, and a seeded run gives the same
layout as the CPU up to float rounding (fused multiply-adds, ``powf``).
"""

from __future__ import annotations

from numba import boolean, cuda, float32, float64, int32, int64, uint64

from embedscope.kernels._random import GOLDEN, MIX1, MIX2
from embedscope.kernels.umap_sgd.cpu import _EDGE_MUL, _EPOCH_MUL


@cuda.jit(device=True, inline=True)
def _mix(x):
    """splitmix64's finaliser, bit-identical to :func:`embedscope.kernels._random.mix64`."""
    x = (x ^ (x >> uint64(30))) * MIX1
    x = (x ^ (x >> uint64(27))) * MIX2
    return x ^ (x >> uint64(31))


@cuda.jit(device=True, inline=True)
def _clip(value):
    if value > float32(4.0):
        return float32(4.0)
    if value < float32(-4.0):
        return float32(-4.0)
    return value


@cuda.jit(fastmath=True)
def sgd_epoch(head, reference, indptr, indices, epochs_per_sample, next_sample, next_negative,
              negative_rate, a, b, alpha, epoch, seed, exclude_self, scratch):
    """One epoch, one thread per head: the CPU twin's contract and arithmetic.

    ``scratch`` (n_heads, 3 dim) holds, per head, an edge's summed repulsive steps,
    the head's starting position (its negative samples push from there) and its
    summed pushes, applied after its last edge (the CPU twin keeps these in one row
    per thread; here a thread is a head).
    """
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
    # Same typing as the CPU twin (float64 products rounded once), so the two agree.
    two_ab = float32(2.0 * a * b)
    two_b = float32(2.0 * b)
    for d in range(dim):
        scratch[i, dim + d] = head[i, d]
        scratch[i, 2 * dim + d] = float32(0.0)
    for e in range(indptr[i], indptr[i + 1]):
        if float64(next_sample[e]) > float64(epoch):
            continue
        j = indices[e]
        dist_sq = float32(0.0)
        for d in range(dim):
            diff = head[i, d] - reference[j, d]
            dist_sq += diff * diff
        if dist_sq > float32(0.0):
            powered = dist_sq ** b32
            coeff = -two_ab * (powered / dist_sq) / (a32 * powered + float32(1.0))
            for d in range(dim):
                head[i, d] += _clip(coeff * (head[i, d] - reference[j, d])) * alpha32
        next_sample[e] += epochs_per_sample[e]
        if negative_rate <= 0:
            continue
        # Spelled-out float64, the type numba gives these on the CPU twin (and that
        # the simulator, following numpy's scalar rules, would not).
        per_negative = float64(epochs_per_sample[e]) / float64(negative_rate)
        n_negative = int64((float64(epoch) - float64(next_negative[e])) / per_negative)
        if n_negative <= 0:
            continue
        state = _mix(useed ^ (uint64(e) * _EDGE_MUL) ^ (uepoch * _EPOCH_MUL))
        # As the CPU twin: the negative samples push from the head's starting
        # position; an edge's clipped steps are summed, clipped, and added to the
        # head's pushes.
        for d in range(dim):
            scratch[i, d] = float32(0.0)
        for _ in range(n_negative):
            state += GOLDEN
            k = int64(((_mix(state) >> uint64(32)) * n_ref) >> uint64(32))
            if exclude_self and k == i:
                continue
            dist_sq = float32(0.0)
            for d in range(dim):
                diff = scratch[i, dim + d] - reference[k, d]
                dist_sq += diff * diff
            if dist_sq > float32(0.0):
                coeff = two_b / ((float32(0.001) + dist_sq) * (a32 * dist_sq ** b32 + float32(1.0)))
                for d in range(dim):
                    scratch[i, d] += _clip(coeff * (scratch[i, dim + d] - reference[k, d]))
            else:
                for d in range(dim):
                    scratch[i, d] += float32(4.0)
        for d in range(dim):
            scratch[i, 2 * dim + d] += _clip(scratch[i, d]) * alpha32
        next_negative[e] = float32(float64(next_negative[e]) + float64(n_negative) * per_negative)
    for d in range(dim):
        head[i, d] += scratch[i, 2 * dim + d]


#: Argument types (as the driver passes them), for ahead-of-time compile checks.
SIGNATURES = {
    "sgd_epoch": (float32[:, :], float32[:, :], int64[:], int32[:], float32[:], float32[:], float32[:],
                  int64, float64, float64, float64, int64, uint64, boolean, float32[:, :]),
}
