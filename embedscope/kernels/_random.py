"""Counter-based random numbers shared by the kernels (NN-descent, UMAP SGD).

A random draw is a hash of ``(seed, position)`` instead of a step of a shared
generator, so parallel loops draw the same numbers whatever the thread count or the
order threads run in: what makes seeded runs reproducible on every backend.
"""

from __future__ import annotations

import numba
import numpy as np

#: splitmix64's multipliers and increment (Steele, Lea and Flood 2014).
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@numba.njit(cache=True, inline="always")
def mix64(x):  # pragma: no cover - numba
    """splitmix64's finaliser: a well-spread 64-bit hash of ``x``."""
    x = (x ^ (x >> np.uint64(30))) * MIX1
    x = (x ^ (x >> np.uint64(27))) * MIX2
    return x ^ (x >> np.uint64(31))
