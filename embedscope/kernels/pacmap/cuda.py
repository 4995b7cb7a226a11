"""numba.cuda kernels of the PaCMAP GPU twin. Import through :mod:`.gpu` only.

The CPU twin (:mod:`.pairs`, :mod:`.cpu`) is parallel over points, draws its random
numbers from a hash of ``(seed, point, slot, draw)`` and sums each point's gradient
from its own pair lists; so each kernel here is the same body with one thread per
point, and a seeded run chooses the same pairs and agrees with the CPU up to float
rounding (fused multiply-adds).
"""

from __future__ import annotations

import math

from numba import boolean, cuda, float32, float64, int32, int64, uint64

from embedscope.kernels._random import GOLDEN, MIX1, MIX2
from embedscope.kernels.pacmap.pairs import FP_TAG, FP_TRIES, MN_DRAWS, MN_TAG, ROW_MUL, SLOT_MUL


@cuda.jit(device=True, inline=True)
def _mix(x):
    """splitmix64's finaliser, bit-identical to :func:`embedscope.kernels._random.mix64`."""
    x = (x ^ (x >> uint64(30))) * MIX1
    x = (x ^ (x >> uint64(27))) * MIX2
    return x ^ (x >> uint64(31))


@cuda.jit(device=True, inline=True)
def _stream(seed, point, slot, tag):
    return _mix(uint64(seed) ^ (uint64(point) * ROW_MUL) ^ ((uint64(slot) | (tag << uint64(32))) * SLOT_MUL))


@cuda.jit(device=True, inline=True)
def _draw(state, n):
    return int64(((_mix(state) >> uint64(32)) * uint64(n)) >> uint64(32))


@cuda.jit(device=True, inline=True)
def _pair_dist(data, i, j, metric_code):
    """The kNN search's pair distance on prepared rows (as ``knn.nndescent._pair_dist``)."""
    acc = float32(0.0)
    if metric_code == 0:
        for f in range(data.shape[1]):
            diff = data[i, f] - data[j, f]
            acc += diff * diff
        return acc
    for f in range(data.shape[1]):
        acc += data[i, f] * data[j, f]
    if metric_code == 1:
        return max(float32(1.0) - acc, float32(0.0))
    return -acc


@cuda.jit
def scale_sigmas(distances, out):
    """``sigma_i``: the CPU twin's :func:`.pairs.scale_sigmas`, one thread per point."""
    i = cuda.grid(1)
    if i >= distances.shape[0]:
        return
    k = distances.shape[1]
    hi = min(6, k)
    lo = min(3, hi - 1)
    acc = float32(0.0)
    count = 0
    for c in range(lo, hi):
        value = distances[i, c]
        if math.isfinite(value):
            acc += value
            count += 1
    out[i] = max(acc / float32(max(count, 1)), float32(1e-10))


@cuda.jit
def neighbor_pairs(indices, distances, sigmas, n_pairs, scaled_order, out):
    """Near pairs by rank of the scaled distance (the CPU twin's rule, same ties)."""
    i = cuda.grid(1)
    n = indices.shape[0]
    if i >= n:
        return
    k = indices.shape[1]
    for c in range(n_pairs):
        out[i, c] = -1
    for a in range(k):
        j = indices[i, a]
        if j < 0 or j == i:
            continue
        if scaled_order:
            score_a = distances[i, a] * distances[i, a] / (sigmas[i] * sigmas[j])
        else:
            score_a = float32(a)
        rank = 0
        for b in range(k):
            jb = indices[i, b]
            if b == a or jb < 0 or jb == i:
                continue
            if scaled_order:
                score_b = distances[i, b] * distances[i, b] / (sigmas[i] * sigmas[jb])
            else:
                score_b = float32(b)
            if score_b < score_a or (score_b == score_a and b < a):
                rank += 1
                if rank >= n_pairs:
                    break
        if rank < n_pairs:
            out[i, rank] = j


@cuda.jit
def mid_near_pairs(data, metric_code, n_pairs, seed, out):
    """Mid-near pairs: the 2nd nearest of 6 hashed draws (the CPU twin's stream)."""
    i = cuda.grid(1)
    n = data.shape[0]
    if i >= n:
        return
    for p in range(n_pairs):
        state = _stream(seed, i, p, MN_TAG)
        best = int64(-1)
        second = int64(-1)
        best_d = math.inf
        second_d = math.inf
        for _ in range(MN_DRAWS):
            j = int64(i)
            while j == i:
                state += GOLDEN
                j = _draw(state, n)
            d = _pair_dist(data, i, j, metric_code)
            if d < best_d:
                second = best
                second_d = best_d
                best = j
                best_d = d
            elif d < second_d:
                second = j
                second_d = d
        out[i, p] = second


@cuda.jit
def further_pairs(near, n_ref, n_pairs, seed, exclude_self, out):
    """Further pairs: hashed draws that are not near pairs (nor the point, in a fit)."""
    i = cuda.grid(1)
    m = near.shape[0]
    if i >= m:
        return
    n_near = near.shape[1]
    for p in range(n_pairs):
        state = _stream(seed, i, p, FP_TAG)
        j = int64(-1)
        for _ in range(FP_TRIES):
            state += GOLDEN
            j = _draw(state, n_ref)
            clash = exclude_self and j == i
            for c in range(n_near):
                if near[i, c] == j:
                    clash = True
                    break
            if not clash:
                break
        out[i, p] = j


@cuda.jit(fastmath=True)
def adam_step(y, reference, nb_ptr, nb_idx, mn_ptr, mn_idx, fp_ptr, fp_idx,
              w_nb, w_mn, w_fp, rate, beta1, beta2, eps, m, v, out):
    """One Adam step, one thread per point: the CPU twin's :func:`.cpu.adam_step`.

    ``out``'s row ``i`` holds the point's gradient until its update (as on the CPU).
    """
    i = cuda.grid(1)
    n = y.shape[0]
    if i >= n:
        return
    dim = y.shape[1]
    one = float32(1.0)
    wnb = float32(20.0 * w_nb)
    wmn = float32(20000.0 * w_mn)
    wfp = float32(2.0 * w_fp)
    if dim == 2:
        # the same sums with the point and its gradient in registers (the compiler cannot
        # rule out that out aliases y, so it would store and reload the sums every pair)
        y0 = y[i, 0]
        y1 = y[i, 1]
        g0 = float32(0.0)
        g1 = float32(0.0)
        for e in range(nb_ptr[i], nb_ptr[i + 1]):
            j = nb_idx[e]
            d0 = y0 - reference[j, 0]
            d1 = y1 - reference[j, 1]
            d = one + d0 * d0 + d1 * d1
            coef = wnb / ((float32(10.0) + d) * (float32(10.0) + d))
            g0 += coef * d0
            g1 += coef * d1
        if wmn != float32(0.0):
            for e in range(mn_ptr[i], mn_ptr[i + 1]):
                j = mn_idx[e]
                d0 = y0 - reference[j, 0]
                d1 = y1 - reference[j, 1]
                d = one + d0 * d0 + d1 * d1
                coef = wmn / ((float32(10000.0) + d) * (float32(10000.0) + d))
                g0 += coef * d0
                g1 += coef * d1
        for e in range(fp_ptr[i], fp_ptr[i + 1]):
            j = fp_idx[e]
            d0 = y0 - reference[j, 0]
            d1 = y1 - reference[j, 1]
            d = one + d0 * d0 + d1 * d1
            coef = wfp / ((one + d) * (one + d))
            g0 -= coef * d0
            g1 -= coef * d1
        b1 = float32(beta1)
        b2 = float32(beta2)
        m[i, 0] = b1 * m[i, 0] + (one - b1) * g0
        v[i, 0] = b2 * v[i, 0] + (one - b2) * g0 * g0
        m[i, 1] = b1 * m[i, 1] + (one - b1) * g1
        v[i, 1] = b2 * v[i, 1] + (one - b2) * g1 * g1
        out[i, 0] = y0 - float32(rate) * m[i, 0] / (math.sqrt(v[i, 0]) + float32(eps))
        out[i, 1] = y1 - float32(rate) * m[i, 1] / (math.sqrt(v[i, 1]) + float32(eps))
        return
    for c in range(dim):
        out[i, c] = float32(0.0)
    if wnb != float32(0.0):
        for e in range(nb_ptr[i], nb_ptr[i + 1]):
            j = nb_idx[e]
            d = one
            for c in range(dim):
                diff = y[i, c] - reference[j, c]
                d += diff * diff
            coef = wnb / ((float32(10.0) + d) * (float32(10.0) + d))
            for c in range(dim):
                out[i, c] += coef * (y[i, c] - reference[j, c])
    if wmn != float32(0.0):
        for e in range(mn_ptr[i], mn_ptr[i + 1]):
            j = mn_idx[e]
            d = one
            for c in range(dim):
                diff = y[i, c] - reference[j, c]
                d += diff * diff
            coef = wmn / ((float32(10000.0) + d) * (float32(10000.0) + d))
            for c in range(dim):
                out[i, c] += coef * (y[i, c] - reference[j, c])
    if wfp != float32(0.0):
        for e in range(fp_ptr[i], fp_ptr[i + 1]):
            j = fp_idx[e]
            d = one
            for c in range(dim):
                diff = y[i, c] - reference[j, c]
                d += diff * diff
            coef = wfp / ((one + d) * (one + d))
            for c in range(dim):
                out[i, c] -= coef * (y[i, c] - reference[j, c])
    b1 = float32(beta1)
    b2 = float32(beta2)
    rate32 = float32(rate)
    eps32 = float32(eps)
    for c in range(dim):
        g = out[i, c]
        m[i, c] = b1 * m[i, c] + (one - b1) * g
        v[i, c] = b2 * v[i, c] + (one - b2) * g * g
        out[i, c] = y[i, c] - rate32 * m[i, c] / (math.sqrt(v[i, c]) + eps32)


#: Argument types (as the driver passes them), for ahead-of-time compile checks.
SIGNATURES = {
    "scale_sigmas": (float32[:, :], float32[:]),
    "neighbor_pairs": (int32[:, :], float32[:, :], float32[:], int64, boolean, int32[:, :]),
    "mid_near_pairs": (float32[:, :], int64, int64, uint64, int32[:, :]),
    "further_pairs": (int32[:, :], int64, int64, uint64, boolean, int32[:, :]),
    "adam_step": (float32[:, :], float32[:, :], int64[:], int32[:], int64[:], int32[:], int64[:], int32[:],
                  float64, float64, float64, float64, float64, float64, float64,
                  float32[:, :], float32[:, :], float32[:, :]),
}
