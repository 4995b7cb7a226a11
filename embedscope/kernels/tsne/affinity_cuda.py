"""numba.cuda kernel of the t-SNE perplexity search. Import through :mod:`.affinity_gpu` only.

:func:`calibrate` is the row body of the CPU twin
(:func:`embedscope.kernels.tsne.affinity._calibrate`) with one thread per row: the
same start, bisection on the Gaussian precision, tolerance and step limit, in
float64; the squaring of euclidean distances and the zeroing of missing neighbours
happen in the kernel (the CPU path does both on host arrays around the search).
"""

from __future__ import annotations

import math

from numba import boolean, cuda, float32, float64, int32, int64


@cuda.jit
def calibrate(dist, missing_mask, target_entropy, tol, max_iter, squared, out, missed):
    """Row ``i`` of the conditional P: ``out[i, j] = p_j|i`` (float32), ``missed[i]`` = 1 on a miss.

    ``missing_mask[i, j]`` marks an entry with no neighbour: it is searched at a huge
    finite distance (weight 0, never 0 * inf) and written as 0.
    """
    i = cuda.grid(1)
    n = dist.shape[0]
    if i >= n:
        return
    k = dist.shape[1]
    dmin = math.inf
    for j in range(k):
        d = 1e18 if missing_mask[i, j] else float64(dist[i, j])
        if squared:
            d = d * d
        if d < dmin:
            dmin = d
    mean = 0.0
    for j in range(k):
        d = 1e18 if missing_mask[i, j] else float64(dist[i, j])
        if squared:
            d = d * d
        mean += d - dmin
    mean /= k
    beta = 1.0 / mean if mean > 0.0 else 1.0
    lo = 0.0
    hi = math.inf
    hit = False
    for _ in range(max_iter):
        total = 0.0
        weighted = 0.0
        for j in range(k):
            d = 1e18 if missing_mask[i, j] else float64(dist[i, j])
            if squared:
                d = d * d
            shifted = d - dmin
            e = math.exp(-beta * shifted)
            total += e
            weighted += shifted * e
        entropy = math.log(total) + beta * weighted / total
        if abs(entropy - target_entropy) <= tol:
            hit = True
            break
        if entropy > target_entropy:
            lo = beta
            beta = beta * 2.0 if hi == math.inf else 0.5 * (beta + hi)
        else:
            hi = beta
            beta = 0.5 * (beta + lo)
    missed[i] = 0 if hit else 1
    total = 0.0
    for j in range(k):
        d = 1e18 if missing_mask[i, j] else float64(dist[i, j])
        if squared:
            d = d * d
        total += math.exp(-beta * (d - dmin))
    for j in range(k):
        d = 1e18 if missing_mask[i, j] else float64(dist[i, j])
        if squared:
            d = d * d
        p = math.exp(-beta * (d - dmin)) / total
        out[i, j] = float32(0.0) if missing_mask[i, j] else float32(p)


SIGNATURES = {
    "calibrate": (float32[:, :], boolean[:, :], float64, float64, int64, boolean, float32[:, :],
                  int32[:]),
}
