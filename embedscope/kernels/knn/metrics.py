"""Metric registry of the kNN searches: names, aliases, kernel codes, row preparation.

Every twin (CPU exact, NN-descent, GPU exact, IVF) reads the metric through
:func:`check_metric` (and its parameters through :func:`check_metric_kwds`) and hands
its kernels the integer code in ``_METRIC_CODE``, so a metric means the same thing
everywhere. Names follow umap-learn / scipy:

- ``"euclidean"``: true (not squared) distance; alias ``"l2"``;
- ``"cosine"``: ``1 - cos``, an all-zero row at distance 1 from everything;
  alias ``"angular"``;
- ``"inner_product"``: ``-<q, x>``, so larger products are nearer and distances may
  be negative; aliases ``"ip"``, ``"dot"``;
- ``"manhattan"``: ``sum |q - x|``; aliases ``"l1"``, ``"cityblock"``, ``"taxicab"``;
- ``"chebyshev"``: ``max |q - x|``; aliases ``"linf"``, ``"linfinity"``, ``"linfty"``,
  ``"infinity"``;
- ``"minkowski"``: ``(sum |q - x|^p)^(1/p)`` with ``metric_kwds={"p": p}``, ``p >= 1``
  (default 2);
- ``"correlation"``: ``1 - pearson(q, x)``: the cosine distance of the rows after
  each is centred on its own mean (prepared that way here, then searched as cosine);
  a constant row is at distance 1 from everything (scipy gives NaN there);
- ``"hamming"``: the share of coordinates that differ (scipy's and scikit-learn's
  definition), on any values;
- ``"jaccard"``: on binary rows (0/1 or boolean; checked), ``|q xor x| / |q or x|``,
  0 between two all-zero rows (as scipy).

``"precomputed"`` is not a search metric: a reducer reads the neighbours of a square
distance matrix from its rows (:func:`embedscope.kernels.knn.exact.precomputed_knn`).

The first three (and correlation) are searched as matrix products (BLAS); the others
are "direct" metrics, computed coordinate by coordinate (:data:`DIRECT_METRICS`).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from embedscope._array import array_module

METRICS = ("euclidean", "cosine", "inner_product", "manhattan", "chebyshev", "minkowski", "correlation",
           "hamming", "jaccard")
#: The input metric of a reducer whose ``X`` is a square distance matrix.
PRECOMPUTED = "precomputed"
_ALIASES = {
    "l2": "euclidean", "ip": "inner_product", "dot": "inner_product", "angular": "cosine",
    "l1": "manhattan", "cityblock": "manhattan", "taxicab": "manhattan",
    "linf": "chebyshev", "linfinity": "chebyshev", "linfty": "chebyshev", "infinity": "chebyshev",
    "pearson": "correlation",
}
#: Kernel codes. Correlation rows are centred and unit-normalised by :func:`prepare`,
#: after which they are searched exactly as cosine rows (code 1).
_METRIC_CODE = {"euclidean": 0, "cosine": 1, "inner_product": 2, "manhattan": 3, "chebyshev": 4,
                "minkowski": 5, "hamming": 6, "jaccard": 7, "correlation": 1}
#: Metrics computed coordinate by coordinate (no matrix-product form).
DIRECT_METRICS = frozenset({"manhattan", "chebyshev", "minkowski", "hamming", "jaccard"})
#: Metrics a principal-component projection keeps approximately (euclidean exactly up
#: to the dropped components; cosine and correlation on unit rows). PCA distorts the
#: others (sums of absolute values, maxima, counts of equal or nonzero coordinates).
PCA_SAFE_METRICS = frozenset({"euclidean", "cosine", "correlation"})
#: Parameters each metric takes (``metric_kwds`` keys).
METRIC_KWDS = {"minkowski": ("p",)}


def check_metric(metric: Any, *, allow_precomputed: bool = False) -> str:
    """Canonical metric name, or a ``ValueError`` naming the choices.

    ``allow_precomputed`` accepts ``"precomputed"`` (a reducer's input metric; the
    searches themselves refuse it).
    """
    choices = (*METRICS, PRECOMPUTED) if allow_precomputed else METRICS
    if isinstance(metric, str):
        name = _ALIASES.get(metric.lower(), metric.lower())
        if name in choices:
            return name
        if name == PRECOMPUTED:
            raise ValueError("metric='precomputed' means the input is a distance matrix; a kNN search "
                             "needs vectors (read the neighbours from the matrix rows instead)")
    if callable(metric):
        raise ValueError(f"metric={metric!r}: custom metric functions are not supported; choose one of "
                         f"{', '.join(choices)}")
    raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(choices)}")


def check_metric_kwds(metric: str, metric_kwds: Any) -> dict[str, Any]:
    """The checked parameters of ``metric`` (a canonical name): a dict, defaults filled.

    Unknown keys are refused with the keys the metric takes; minkowski's ``p`` must be a
    finite number >= 1 (below 1 it is not a metric: the triangle inequality fails).
    """
    if metric_kwds is None:
        metric_kwds = {}
    if not isinstance(metric_kwds, dict):
        raise ValueError(f"metric_kwds must be a dict or None; got {type(metric_kwds).__name__}")
    allowed = METRIC_KWDS.get(metric, ())
    unknown = sorted(str(key) for key in metric_kwds if key not in allowed)
    if unknown:
        takes = f"takes only {', '.join(repr(a) for a in allowed)}" if allowed else "takes no parameters"
        raise ValueError(f"metric_kwds has {', '.join(repr(u) for u in unknown)}, which metric={metric!r} "
                         f"does not use; it {takes}")
    out: dict[str, Any] = {}
    if metric == "minkowski":
        p = metric_kwds.get("p", 2.0)
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not math.isfinite(p) or p < 1:
            raise ValueError(f"metric_kwds['p']={p!r} must be a finite number >= 1 for metric='minkowski' "
                             "(for p = inf use metric='chebyshev')")
        out["p"] = float(p)
    return out


def minkowski_p(metric: str, metric_kwds: Any) -> float:
    """The exponent the kernels take: minkowski's ``p``, else 2.0 (unused)."""
    return float(check_metric_kwds(metric, metric_kwds).get("p", 2.0))


def non_binary_reason(X: Any) -> str | None:
    """Why ``X`` is not binary (0/1 or boolean) data, or None. Works on numpy and cupy."""
    if X.dtype.kind == "b":
        return None
    xp = array_module(X)
    bad = xp.logical_and(X != 0, X != 1)
    if bool(bad.any()):
        value = float(X[bad][0])
        return f"metric='jaccard' needs binary data (0/1 or boolean values); found {value:g}"
    return None


def prepare(X: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """float32 rows ready for the metric and their squared norms.

    Unit rows for cosine; centred unit rows for correlation; jaccard rows are checked
    to be binary (``ValueError`` otherwise).
    """
    if metric == "jaccard" and (reason := non_binary_reason(np.asarray(X))) is not None:
        raise ValueError(reason)
    X = np.ascontiguousarray(X, dtype=np.float32)
    if metric == "correlation":
        X = X - X.mean(axis=1, dtype=np.float64, keepdims=True).astype(np.float32)
    if metric in ("cosine", "correlation"):
        norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64)).astype(np.float32)
        # Zero rows stay zero: their cosine similarity is 0, distance 1, never NaN.
        X = X / np.where(norms > 0, norms, 1.0)[:, None]
    sq = np.einsum("ij,ij->i", X, X, dtype=np.float64).astype(np.float32)
    return X, sq
