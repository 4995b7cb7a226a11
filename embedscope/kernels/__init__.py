"""Hot loops, one module per algorithm.

Each module has a CPU twin (numba) that is the reference implementation; GPU twins
(CuPy) follow the same contract. Public kernel functions take arrays and scalars only.
"""

from embedscope.kernels._cache import configure_numba_cache

# Before any kernel module's @numba.njit(cache=True) runs (numba picks the cache
# directory then, and raises if it finds none): see _cache.
configure_numba_cache()
