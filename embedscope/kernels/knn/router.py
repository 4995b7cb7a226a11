"""The kNN stage UMAP and t-SNE share on the CPU: exact or NN-descent, by size."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from embedscope.kernels.knn.exact import exact_knn
from embedscope.kernels.knn.metrics import DIRECT_METRICS, check_metric
from embedscope.kernels.knn.nndescent import nndescent_knn

#: Up to this many points ``method="auto"`` searches exactly. Exact search costs
#: n^2 d whatever the data; NN-descent's sweeps grow with the data's intrinsic
#: dimension. On 2 shared cores at 30k points, k=15 (local-join NN-descent): the
#: word vectors (PCA to 50) 0.88 s exact vs 0.61 s NN-descent at recall 0.983, a 50-D
#: mixture 0.92 s vs 0.40 s; 60k mixture 3.5 s vs 0.9 s. Under a second either way,
#: exact results are kept to here.
EXACT_MAX_POINTS = 40_000
#: NN-descent's cost grows with k squared, exact search's barely: for wider
#: neighbourhoods than WIDE_K (t-SNE's k = 3 x perplexity = 90) exact search stays the
#: choice longer. k=90 on 50-D mixtures: 100k points 12.3 s exact vs 13.3 s
#: NN-descent, 200k 41 s vs 24 s (recall 0.998). PaCMAP's k = 60 (lists of 80, one
#: sweep since the recall check runs after every sweep) is cheaper by NN-descent from
#: 40k: 100k x 50, 50 clusters, 12.4 s exact vs 6.5 s (recall 0.997); under load,
#: 60k 9.5 vs 7.9 s, 100k with 20 clusters 25.9 vs 18.8 s, k = 45 at 100k 20.2 vs 9.3 s.
EXACT_MAX_POINTS_WIDE = 100_000
WIDE_K = 60
#: The direct metrics' exact search is a scalar scan (no BLAS): NN-descent overtakes
#: it at far fewer points (see :func:`nearest_neighbors`).
EXACT_MAX_POINTS_DIRECT = 10_000


def auto_method(n: int, n_neighbors: int, metric: str) -> str:
    """What ``method="auto"`` searches ``n`` points by: ``"exact"`` or ``"nndescent"``."""
    limit = EXACT_MAX_POINTS if n_neighbors <= WIDE_K else EXACT_MAX_POINTS_WIDE
    if check_metric(metric) in DIRECT_METRICS:
        limit = EXACT_MAX_POINTS_DIRECT
    return "exact" if n <= limit else "nndescent"


def nearest_neighbors(
    X: np.ndarray,
    n_neighbors: int,
    metric: str = "euclidean",
    *,
    method: str = "auto",
    random_state: int | None = None,
    log: Callable[[str], None] | None = None,
    metric_kwds: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The kNN graph of ``X`` (self excluded): the stage UMAP and t-SNE share.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    n_neighbors : int
        Neighbours per point, not counting the point itself.
    metric : str, default="euclidean"
        One of ``metrics.METRICS`` or an alias (see :mod:`.metrics`).
    method : {"auto", "exact", "nndescent"}, default="auto"
        ``"exact"`` is the blocked search, ``"nndescent"`` the approximate one;
        ``"auto"`` is exact up to 40,000 points (100,000 when ``n_neighbors > 60``),
        NN-descent above (recall@14 ~0.97 on 50-D mixtures of 300k points). The
        direct metrics (manhattan, chebyshev, minkowski, hamming, jaccard) have no
        BLAS form, so "auto" is exact for them only up to 10,000 points.
    random_state : int, optional
        Seed for approximate methods.
    log : callable, optional
        Receives NN-descent's recall checks (see :func:`nndescent_knn`).
    metric_kwds : dict, optional
        The metric's parameters: ``{"p": p}`` for minkowski.

    Returns
    -------
    indices : ndarray of shape (n, n_neighbors), int32
    distances : ndarray of shape (n, n_neighbors), float32
    """
    metric = check_metric(metric)
    if method not in ("auto", "exact", "nndescent"):
        raise ValueError(f"unknown kNN method {method!r}; choose 'auto', 'exact' or 'nndescent'")
    if method == "auto":
        method = auto_method(X.shape[0], n_neighbors, metric)
    if method == "nndescent":
        return nndescent_knn(X, n_neighbors, metric, random_state=random_state, log=log, metric_kwds=metric_kwds)
    return exact_knn(X, n_neighbors, metric, metric_kwds=metric_kwds)
