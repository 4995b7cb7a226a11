"""PCA building blocks written once against ``xp`` (numpy or cupy).

Every function streams the rows of ``X`` through :func:`iter_row_chunks`, so the same
code serves an in-memory array, a memory-mapped ``.npy`` larger than RAM (read
through a small buffer) and a cupy array (chunks of host data are moved to the
device one at a time).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embedscope.io.stream import iter_row_chunks


def _on(xp: Any, block: Any) -> Any:
    """``block`` as an array of ``xp`` (host-to-device copy for cupy)."""
    return xp.asarray(block)


def work_dtype(X: Any) -> Any:
    """float64 where the input is float64, else float32."""
    return np.float64 if X.dtype == np.float64 else np.float32


def mean_and_covariance(X: Any, xp: Any, *, chunk_rows: int | None = None,
                        scale: float | None = None) -> tuple[Any, Any]:
    """Column means and the sample covariance (float64) in one pass over the rows.

    Sums are taken around a shift (the first block's mean) rather than zero, so the
    one-pass formula does not lose digits to a large common offset. With ``scale``,
    every block is divided by it in float64 first (for data whose squares overflow,
    or vanish in, the input's precision), and the results are of ``X / scale``.
    """
    n, d = X.shape
    shift = None
    total = xp.zeros(d, dtype=xp.float64)
    scatter = xp.zeros((d, d), dtype=xp.float64)
    for _, block in iter_row_chunks(X, chunk_rows=chunk_rows):
        block = _on(xp, block)
        if scale is not None:
            block = block.astype(xp.float64) / scale
        if shift is None:
            shift = block.mean(axis=0, dtype=xp.float64).astype(block.dtype)
        centred = block - shift
        # Column sums as a BLAS product: a float64 reduction with casting costs more
        # than the scatter matrix itself; centred values are small, float32 holds them.
        total += (xp.ones(centred.shape[0], dtype=centred.dtype) @ centred).astype(xp.float64)
        scatter += (centred.T @ centred).astype(xp.float64)  # a.T @ a runs as BLAS syrk
    offset = total / n
    mean = shift.astype(xp.float64) + offset
    cov = (scatter - n * xp.outer(offset, offset)) / max(n - 1, 1)
    return mean, cov


def max_magnitude(X: Any, xp: Any, *, chunk_rows: int | None = None) -> float:
    """Largest absolute value in ``X``, one streamed pass."""
    top = 0.0
    for _, block in iter_row_chunks(X, chunk_rows=chunk_rows):
        block = _on(xp, block)
        top = max(top, abs(float(block.max())), abs(float(block.min())))
    return top


def top_eigh(cov: Any, xp: Any, n_components: int) -> tuple[Any, Any]:
    """Largest eigenpairs of a symmetric matrix: (values descending, vectors as rows)."""
    values, vectors = xp.linalg.eigh(cov)
    order = xp.arange(values.shape[0] - 1, values.shape[0] - 1 - n_components, -1)
    values = xp.maximum(values[order], 0.0)
    return values, vectors[:, order].T


def flip_signs(components: Any, xp: Any) -> Any:
    """Make the largest-magnitude entry of each component positive (deterministic)."""
    rows = xp.arange(components.shape[0])
    pivots = xp.argmax(xp.abs(components), axis=1)
    signs = xp.sign(components[rows, pivots])
    signs = xp.where(signs == 0, 1.0, signs)
    return components * signs[:, None]


def centred_matmul(X: Any, mean: Any, right: Any, xp: Any, *, out: Any = None,
                   chunk_rows: int | None = None) -> Any:
    """``(X - mean) @ right`` by blocks of rows."""
    n = X.shape[0]
    right = xp.asarray(right)
    if out is None:
        out = xp.empty((n, right.shape[1]), dtype=right.dtype)
    shift = mean @ right
    for start, block in iter_row_chunks(X, chunk_rows=chunk_rows):
        block = _on(xp, block).astype(right.dtype, copy=False)
        out[start : start + block.shape[0]] = block @ right - shift
    return out


def centred_rmatmul(X: Any, mean: Any, left: Any, xp: Any, *, chunk_rows: int | None = None) -> Any:
    """``(X - mean).T @ left`` by blocks of rows (``left`` has one row per row of X)."""
    acc = xp.zeros((X.shape[1], left.shape[1]), dtype=left.dtype)
    for start, block in iter_row_chunks(X, chunk_rows=chunk_rows):
        block = _on(xp, block).astype(left.dtype, copy=False)
        acc += block.T @ left[start : start + block.shape[0]]
    return acc - xp.outer(mean.astype(left.dtype), left.sum(axis=0))


def randomized_svd(
    X: Any,
    mean: Any,
    n_components: int,
    xp: Any,
    *,
    n_oversamples: int = 10,
    n_iter: int = 4,
    random_state: int | None = 0,
    chunk_rows: int | None = None,
) -> tuple[Any, Any]:
    """Top singular values and right vectors of ``X - mean`` (Halko et al. 2011).

    Subspace iteration with QR re-orthonormalisation between passes; each pass reads
    ``X`` twice in blocks. The Gaussian test matrix comes from numpy's generator on
    the host, so a seed gives the same start on every backend.

    Returns
    -------
    singular_values : array (n_components,)
    components : array (n_components, d)
    """
    n, d = X.shape
    dtype = work_dtype(X)
    size = min(n_components + n_oversamples, min(n, d))
    rng = np.random.default_rng(random_state)
    omega = xp.asarray(rng.standard_normal((d, size)).astype(dtype))
    mean_w = mean.astype(dtype)
    Q = centred_matmul(X, mean_w, omega, xp, chunk_rows=chunk_rows)
    Q, _ = xp.linalg.qr(Q)
    for _ in range(n_iter):
        Z, _ = xp.linalg.qr(centred_rmatmul(X, mean_w, Q, xp, chunk_rows=chunk_rows))
        Q, _ = xp.linalg.qr(centred_matmul(X, mean_w, Z, xp, chunk_rows=chunk_rows))
    B_t = centred_rmatmul(X, mean_w, Q, xp, chunk_rows=chunk_rows)  # (d, size) = B.T
    if not bool(xp.isfinite(B_t).all()):
        # products overflowed the working precision; LAPACK's SVD may not return on inf
        raise FloatingPointError("randomized_svd: products overflow the input's precision")
    _, s, ut = xp.linalg.svd(B_t.T.astype(xp.float64), full_matrices=False)
    return s[:n_components], ut[:n_components]


def total_variance(X: Any, mean: Any, xp: Any, *, chunk_rows: int | None = None) -> float:
    """Sum of the per-column sample variances (the denominator of variance ratios)."""
    acc = 0.0
    for _, block in iter_row_chunks(X, chunk_rows=chunk_rows):
        block = _on(xp, block)
        centred = block - mean.astype(block.dtype)
        acc += float(xp.einsum("ij,ij->", centred, centred, dtype=xp.float64))
    return acc / max(X.shape[0] - 1, 1)


def block_moments(block: Any) -> tuple[int, np.ndarray, np.ndarray]:
    """Row count, column means and centred scatter matrix (float64, host) of one block.

    A cupy block (a dask-cuda worker's) is reduced on its GPU; only the d x d result
    travels.
    """
    from embedscope._array import array_module, to_host

    xp = array_module(block)
    block = xp.asarray(block)
    n = block.shape[0]
    mean = block.mean(axis=0, dtype=xp.float64)
    centred = block - mean.astype(block.dtype)
    scatter = (centred.T @ centred).astype(xp.float64)
    return n, to_host(mean), to_host(scatter)


def combine_moments(a: tuple[int, np.ndarray, np.ndarray],
                    b: tuple[int, np.ndarray, np.ndarray]) -> tuple[int, np.ndarray, np.ndarray]:
    """Merge the moments of two blocks exactly (Chan, Golub and LeVeque's update).

    Blocks are combined in any order and tree shape, so the covariance of a sharded
    array is assembled from per-shard results without a second pass or a shared
    shift.
    """
    n_a, mean_a, scatter_a = a
    n_b, mean_b, scatter_b = b
    if n_a == 0:
        return b
    if n_b == 0:
        return a
    n = n_a + n_b
    delta = mean_b - mean_a
    mean = mean_a + delta * (n_b / n)
    scatter = scatter_a + scatter_b + np.outer(delta, delta) * (n_a * n_b / n)
    return n, mean, scatter
