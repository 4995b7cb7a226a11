"""Metric registry of the kNN searches: names, aliases, kernel codes, row preparation.

Every twin (CPU exact, NN-descent, GPU exact, IVF) reads the metric through
:func:`check_metric` and hands its kernels the integer code in ``_METRIC_CODE``, so
the three metrics mean the same thing everywhere:

- ``"euclidean"``: true (not squared) distance; aliases ``"l2"``;
- ``"cosine"``: ``1 - cos``, an all-zero row at distance 1 from everything;
  alias ``"angular"``;
- ``"inner_product"``: ``-<q, x>``, so larger products are nearer and distances may
  be negative; aliases ``"ip"``, ``"dot"``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

METRICS = ("euclidean", "cosine", "inner_product")
_ALIASES = {"l2": "euclidean", "ip": "inner_product", "dot": "inner_product", "angular": "cosine"}
_METRIC_CODE = {"euclidean": 0, "cosine": 1, "inner_product": 2}


def check_metric(metric: Any) -> str:
    """Canonical metric name, or a ``ValueError`` naming the choices."""
    if isinstance(metric, str):
        name = _ALIASES.get(metric.lower(), metric.lower())
        if name in METRICS:
            return name
    raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")


def prepare(X: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """float32 rows ready for the metric (unit rows for cosine) and squared norms."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    if metric == "cosine":
        norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64)).astype(np.float32)
        # Zero rows stay zero: their cosine similarity is 0, distance 1, never NaN.
        X = X / np.where(norms > 0, norms, 1.0)[:, None]
    sq = np.einsum("ij,ij->i", X, X, dtype=np.float64).astype(np.float32)
    return X, sq
