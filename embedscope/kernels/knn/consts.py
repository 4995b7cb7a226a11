"""Sizes shared by the kNN GPU kernels and their host driver (no CUDA import here)."""

#: Largest k the selection kernel keeps per thread (local memory).
KMAX = 128

#: Most threads per query row (shared-memory arrays of the merge are this long).
MAX_THREADS = 512
