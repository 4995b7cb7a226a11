"""numba.cuda kernel of UMAP's smooth kNN distances. Import through :mod:`.fuzzy` only.

:func:`smooth_knn` is the row body of the CPU twin
(:func:`embedscope.kernels.affinity.smooth_knn_dist` followed by
:func:`~embedscope.kernels.affinity.membership_strengths`) with one thread per row:
the same ``rho`` rule, the same bisection (float64, the same step count and
tolerance), the same sigma floor, and the memberships in float32 as the CPU twin
computes them. A row reads only its own distances, so rows need no synchronisation.
"""

from __future__ import annotations

import math

from numba import boolean, cuda, float32, float64

from embedscope.kernels.affinity import _BISECT_STEPS, _TOLERANCE, MIN_SIGMA_SCALE


@cuda.jit
def smooth_knn(distances, target, rho_from_nearest, mean_all, sigmas, rhos, weights):
    """Row ``i``: ``rho``, the bisected ``sigma`` and the directed memberships.

    ``distances`` (n, k) float32 ascending per row; ``target`` is
    ``log2(n_neighbors)``; ``mean_all`` the mean absolute distance of the whole graph
    (the sigma floor of rows with no positive distance); outputs float32.
    """
    i = cuda.grid(1)
    n = distances.shape[0]
    if i >= n:
        return
    k = distances.shape[1]
    rho = 0.0
    if rho_from_nearest:
        rho = float64(distances[i, 0])
    else:
        for j in range(k):
            if distances[i, j] > float32(0.0):
                rho = float64(distances[i, j])
                break
    lo = 0.0
    hi = math.inf
    mid = 1.0
    for _ in range(_BISECT_STEPS):
        total = 0.0
        for j in range(k):
            gap = float64(distances[i, j]) - rho
            total += math.exp(-gap / mid) if gap > 0.0 else 1.0
        if abs(total - target) < _TOLERANCE:
            break
        if total > target:
            hi = mid
            mid = (lo + hi) / 2.0
        else:
            lo = mid
            mid = mid * 2.0 if hi == math.inf else (lo + hi) / 2.0
    row_mean = 0.0
    for j in range(k):
        row_mean += abs(float64(distances[i, j]) - (rho if rho_from_nearest else 0.0))
    row_mean /= k
    floor = MIN_SIGMA_SCALE * (row_mean if (rho > 0.0 or rho_from_nearest) else mean_all)
    if mid < floor:
        mid = floor
    if mid <= 0.0:
        mid = 1e-12
    sigma = float32(mid)
    rho32 = float32(rho)
    sigmas[i] = sigma
    rhos[i] = rho32
    for j in range(k):
        # float32 arithmetic, as the CPU twin's membership_strengths (float32 arrays).
        gap32 = distances[i, j] - rho32
        weights[i, j] = float32(1.0) if gap32 <= float32(0.0) else float32(math.exp(-gap32 / sigma))


SIGNATURES = {
    "smooth_knn": (float32[:, :], float64, boolean, float64, float32[:], float32[:], float32[:, :]),
}
