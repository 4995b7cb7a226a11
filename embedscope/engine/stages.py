"""The stages every graph reducer shares, written once: prepare, kNN, precomputed graphs, init.

A reducer (UMAP, t-SNE, and every later one) validates its parameters, resolves a
backend, then calls these in order; only the affinities and the optimiser are its
own. Each stage runs on the backend's kernel table (:class:`embedscope.backends.Kernels`),
so no stage asks which backend it is on.

0. :func:`resolve_metric` - the one check of ``metric`` and ``metric_kwds`` every
   reducer runs; :func:`degenerate_reason` / :func:`check_distance_matrix` check the
   data against the metric (binary rows for jaccard; a square distance matrix for
   ``metric="precomputed"``).
1. :class:`Preparation` - float32 rows, a power-of-two rescale of extreme magnitudes,
   then (for wide data) PCA to ``pca_components`` dimensions, cosine rows made unit
   length first. One threshold (:data:`PCA_ABOVE`), one seed rule (the fit's seed).
   PCA is skipped for the metrics it would distort (all but euclidean, cosine and
   correlation), and for a precomputed distance matrix.
2. :func:`knn_graph` / :func:`knn_queries` - the kNN search on the backend; the rule for
   exact vs approximate per device lives in the backend's kernel table (cpu: exact up
   to a few thousand points, NN-descent above; cuda: exact up to 2M points, IVF above).
3. :func:`check_precomputed` - the one contract for a given kNN graph.
4. :func:`initial_layout` (UMAP: spectral, PCA, random or given) and :func:`pca_axes`
   (the PCA projection both UMAP's and t-SNE's PCA init use).

Spectral init takes the leading non-trivial eigenvectors of the normalised adjacency
``D^-1/2 A D^-1/2`` (the smallest of the normalised Laplacian). It needs a connected,
well-conditioned graph; otherwise we fall back to PCA of the data and say why,
never silently to random. The eigensolver is ARPACK with a small Krylov basis
(``ncv`` <= 32 vectors, so memory stays at ~32 x N floats whatever N is) and a bounded
number of restarts; dense ``eigh`` below 2,000 points. A graph the backend built on
the GPU is solved there (:func:`device_spectral_layout`, cupyx's ``eigsh`` with the
same settings, residual-checked).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from embedscope._array import array_module, to_host
from embedscope.backends import Backend, get_spec
from embedscope.errors import DataError
from embedscope.kernels.graph import is_device_csr
from embedscope.kernels.knn.metrics import (
    PCA_SAFE_METRICS,
    PRECOMPUTED,
    check_metric,
    check_metric_kwds,
    non_binary_reason,
)

#: Input dimensions above which the kNN search runs on principal components, and how
#: many by default (``pca_components``). Applied only to the metrics a projection
#: keeps (``PCA_SAFE_METRICS``: euclidean, cosine, correlation); not to
#: ``inner_product`` (centring changes inner products) nor to the coordinate-wise
#: metrics (manhattan, chebyshev, minkowski, hamming, jaccard).
PCA_ABOVE, PCA_DIMS = 100, 50
INIT_CHOICES = ("spectral", "pca", "random")
#: Up to this many points the spectral problem is solved densely (exact, quick).
DENSE_SPECTRAL_MAX = 2000
#: Above this many points spectral init is replaced by PCA init (documented switch):
#: ARPACK on a million-node graph costs minutes for a layout SGD mostly rewrites.
SPECTRAL_MAX_POINTS = 500_000
_KRYLOV_MAX = 32
#: The same switch for a graph built on the GPU (``kernels.graph.spectral``, cupyx's
#: Lanczos). Not measured on a device yet (#16): lower it if the GPU solve is slow.
SPECTRAL_MAX_POINTS_DEVICE = 5_000_000


class InitFallback(Exception):
    """Spectral init is not possible; ``str(exc)`` says why."""


def spectral_layout(graph: sp.spmatrix, n_components: int, *, seed: int = 0) -> np.ndarray:
    """Leading non-trivial eigenvectors of the normalised graph, float32 (n, c).

    Parameters
    ----------
    graph : sparse matrix of shape (n, n)
        Symmetric non-negative weights.
    n_components : int
    seed : int, default=0
        Seeds ARPACK's start vector.

    Raises
    ------
    InitFallback
        Disconnected graph, too few points, or an eigensolver failure.
    """
    from scipy.sparse.csgraph import connected_components

    n = graph.shape[0]
    k = n_components + 1
    if n <= k + 1:
        raise InitFallback(f"{n} points are too few for a {n_components}-D spectral layout")
    n_parts, _ = connected_components(graph, directed=False)
    if n_parts > 1:
        raise InitFallback(f"the kNN graph has {n_parts} disconnected components")
    degrees = np.asarray(graph.sum(axis=1)).ravel()
    if not np.all(degrees > 0):
        raise InitFallback("some points have no graph edges")
    scale = sp.diags(1.0 / np.sqrt(degrees))
    normalised = (scale @ graph @ scale).tocsr().astype(np.float64)
    try:
        if n <= DENSE_SPECTRAL_MAX:
            values, vectors = np.linalg.eigh(normalised.toarray())
            order = np.argsort(values)[::-1][:k]
        else:
            from scipy.sparse.linalg import eigsh

            rng = np.random.default_rng(seed)
            start = np.sqrt(degrees) + 1e-3 * rng.standard_normal(n)
            values, vectors = eigsh(normalised, k=k, which="LA", ncv=min(n - 1, max(2 * k + 1, _KRYLOV_MAX)),
                                    tol=1e-4, v0=start, maxiter=max(200, n // 100))
            order = np.argsort(values)[::-1]
    except Exception as exc:  # ArpackNoConvergence, LinAlgError
        raise InitFallback(f"the spectral eigensolver failed ({type(exc).__name__})") from exc
    layout = vectors[:, order[1:k]]
    spread = layout.std(axis=0)
    if not np.all(np.isfinite(layout)) or np.any(spread < 1e-12):
        raise InitFallback("the spectral problem is ill-conditioned (degenerate eigenvectors)")
    return layout.astype(np.float32)


def device_spectral_layout(graph: Any, n_components: int, *, seed: int = 0) -> np.ndarray:
    """:func:`spectral_layout` of a graph that lives on the GPU, solved there (host layout out).

    The device solver (cupyx's Lanczos) lifts the host limit to
    :data:`SPECTRAL_MAX_POINTS_DEVICE`; its failures are :class:`InitFallback` too.
    """
    from embedscope.kernels.graph.spectral import SpectralFailed, spectral_layout_xp

    n = graph.shape[0]
    if n > SPECTRAL_MAX_POINTS_DEVICE:
        raise InitFallback(f"{n:,} points exceed the GPU spectral limit of {SPECTRAL_MAX_POINTS_DEVICE:,}")
    try:
        return to_host(spectral_layout_xp(graph, n_components, seed=seed))
    except SpectralFailed as exc:
        raise InitFallback(str(exc)) from exc


def pca_backend(backend: str) -> str:
    """The backend a reducer's inner PCA runs on: its own where that backend runs PCA, else the cpu."""
    return backend if "pca" in get_spec(backend).capabilities.reducers else "cpu"


def pca_axes(data: Any, n_components: int, *, seed: int = 0, backend: str = "cpu") -> np.ndarray:
    """Projection of ``data`` on its first ``min(n_components, d, n)`` principal axes (host).

    The PCA init of every reducer starts here, on the backend the reducer runs on
    (never ``auto``: a ``backend="cpu"`` fit must not initialise on a GPU).
    """
    from embedscope.engine.pca import PCA

    n, d = data.shape
    usable = min(n_components, d, n)
    if usable < 1:
        return np.zeros((n, 0))
    return to_host(PCA(n_components=usable, random_state=seed, backend=pca_backend(backend)).fit_transform(data))


def pca_layout(data: np.ndarray, n_components: int, *, seed: int = 0, backend: str = "cpu") -> np.ndarray:
    """Projection of ``data`` on its first principal axes, float32 (n, c).

    Columns beyond the data's rank are filled with tiny seeded noise so the layout
    never has a constant axis.
    """
    n = data.shape[0]
    rng = np.random.default_rng(seed)
    layout = np.zeros((n, n_components), dtype=np.float32)
    projected = pca_axes(np.asarray(data), n_components, seed=seed, backend=backend)
    layout[:, :projected.shape[1]] = np.asarray(projected, dtype=np.float32)
    flat = layout.std(axis=0) < 1e-12
    if np.any(flat):
        layout[:, flat] = rng.normal(scale=1e-4, size=(n, int(flat.sum()))).astype(np.float32)
    return layout


def random_layout(n: int, n_components: int, *, seed: int = 0) -> np.ndarray:
    """Uniform points in ``[-10, 10]^c``, float32 (n, c)."""
    return np.random.default_rng(seed).uniform(-10.0, 10.0, size=(n, n_components)).astype(np.float32)


def rescale(layout: np.ndarray, *, seed: int = 0, box: float = 10.0) -> np.ndarray:
    """Each axis mapped to ``[0, box]`` (UMAP's starting scale), float32 C-contiguous.

    A constant axis gets tiny noise instead of a division by zero.
    """
    layout = np.asarray(layout, dtype=np.float64)
    low, high = layout.min(axis=0), layout.max(axis=0)
    width = high - low
    flat = width <= 1e-12 * np.maximum(1.0, np.abs(high))
    out = box * (layout - low) / np.where(flat, 1.0, width)
    if np.any(flat):
        rng = np.random.default_rng(seed)
        out[:, flat] = box / 2 + rng.normal(scale=1e-3, size=(layout.shape[0], int(flat.sum())))
    return np.ascontiguousarray(out, dtype=np.float32)


def initial_layout(
    init: Any,
    n_components: int,
    *,
    graph: sp.spmatrix,
    data: np.ndarray,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    backend: str = "cpu",
) -> tuple[np.ndarray, str]:
    """The starting layout for ``init`` and what was actually used.

    Parameters
    ----------
    init : {"spectral", "pca", "random"} or array of shape (n, n_components)
    n_components : int
    graph : sparse matrix (n, n)
        The symmetric fuzzy graph (for spectral).
    data : ndarray (n, d)
        The (preprocessed) vectors (for PCA and the spectral fallback).
    seed : int
    log : callable, optional
        Receives the fallback reason, if any.
    backend : str, default="cpu"
        The backend the PCA init runs on (the reducer's).

    Returns
    -------
    layout : float32 array (n, n_components), rescaled to ``[0, 10]`` per axis
    used : str
        ``"spectral"``, ``"pca"``, ``"random"``, ``"array"``, or
        ``"pca (spectral fallback: <reason>)"``.
    """
    n = graph.shape[0]
    if isinstance(init, str):
        name = init.lower()
        if name not in INIT_CHOICES:
            raise ValueError(f"init={init!r} must be one of {', '.join(INIT_CHOICES)} or an array")
        if name == "random":
            return rescale(random_layout(n, n_components, seed=seed), seed=seed), "random"
        if name == "spectral":
            try:
                if is_device_csr(graph):
                    layout = device_spectral_layout(graph, n_components, seed=seed)
                else:
                    if n > SPECTRAL_MAX_POINTS:
                        raise InitFallback(f"{n:,} points exceed the spectral limit of {SPECTRAL_MAX_POINTS:,}")
                    layout = spectral_layout(graph, n_components, seed=seed)
                return rescale(layout, seed=seed), "spectral"
            except InitFallback as reason:
                used = f"pca (spectral fallback: {reason})"
                if log is not None:
                    log(f"spectral init not used: {reason}; using PCA init")
                return rescale(pca_layout(data, n_components, seed=seed, backend=backend), seed=seed), used
        return rescale(pca_layout(data, n_components, seed=seed, backend=backend), seed=seed), "pca"
    layout = np.asarray(init)
    if layout.shape != (n, n_components):
        raise ValueError(f"init array has shape {layout.shape}; expected ({n}, {n_components})")
    if not np.issubdtype(layout.dtype, np.number) or not np.all(np.isfinite(layout)):
        raise ValueError("init array must be numeric and finite")
    return np.ascontiguousarray(layout, dtype=np.float32), "array"


# ----------------------------------------------------------------------------- metric


#: The ``metric`` values a reducer takes, in the order its docs list them.
REDUCER_METRICS = ("euclidean", "cosine", "inner_product", "manhattan", "chebyshev", "minkowski",
                   "correlation", "hamming", "jaccard", PRECOMPUTED)


def resolve_metric(metric: Any, metric_kwds: Any = None) -> tuple[str, dict[str, Any]]:
    """The one check of a reducer's ``metric`` and ``metric_kwds`` (umap-learn's names).

    Returns the canonical metric name (aliases such as ``"l1"`` resolved) and its
    checked parameters (``{"p": p}`` for minkowski, default 2; empty otherwise).
    ``"precomputed"`` is accepted: ``X`` is then a square distance matrix
    (:func:`check_distance_matrix`). An unknown metric, an unknown ``metric_kwds`` key
    or minkowski's ``p < 1`` is a ``ValueError`` naming the choices.
    """
    name = check_metric(metric, allow_precomputed=True)
    return name, check_metric_kwds(name, metric_kwds)


def canonical_metric(metric: Any) -> Any:
    """``metric`` with its alias resolved where it is valid, else unchanged (for a
    backend request built before the parameters are checked)."""
    try:
        return check_metric(metric, allow_precomputed=True)
    except ValueError:
        return metric


#: Tolerance of :func:`check_distance_matrix`, relative to the largest distance:
#: float32 distances computed two ways differ by far less.
_MATRIX_RTOL = 1e-3


def check_distance_matrix(X: Any) -> str | None:
    """Check a ``metric="precomputed"`` input; return why it is degenerate, or None.

    ``X[i, j]`` is the distance from point i to point j: square, non-negative, with a
    zero diagonal and symmetric, the last two up to ``1e-3`` times the largest
    distance. A matrix that breaks that raises :class:`embedscope.errors.DataError`
    naming the first problem; an all-zero one (no neighbourhoods) returns its reason.
    """
    n, m = X.shape
    if n != m:
        raise DataError(f"metric='precomputed' needs a square distance matrix (n x n); got {n} x {m}")
    D = np.asarray(to_host(X))
    low = float(D.min())
    if low < 0:
        raise DataError(f"metric='precomputed': distances must be >= 0; found {low:g}")
    top = float(D.max())
    if top == 0.0:
        return f"all {n} x {n} distances are 0"
    tol = _MATRIX_RTOL * top
    diag = float(np.abs(np.diagonal(D)).max())
    if diag > tol:
        raise DataError(f"metric='precomputed': the diagonal (each point's distance to itself) must be 0; "
                        f"found {diag:g}")
    for start in range(0, n, 2048):  # blocks: |D - D.T| of a large matrix is not built at once
        block = D[start:start + 2048]
        gap = float(np.abs(block - D[:, start:start + 2048].T).max())
        if gap > tol:
            raise DataError(f"metric='precomputed': the matrix must be symmetric (d(i, j) = d(j, i)); "
                            f"entries differ by {gap:g} (largest distance {top:g})")
    return None


# ----------------------------------------------------------------------------- data checks

#: Largest magnitude of the input that the float32 kernels square safely, and the
#: smallest below which squares lose digits to float32's subnormals. Outside, UMAP and
#: t-SNE divide the data by a power of two (exact, and both are scale-invariant: the
#: graph calibrates each point's bandwidth to its own distances).
SAFE_MAGNITUDE = (2.0**-40, 2.0**40)


def magnitude_scale(X: Any) -> float:
    """A power of two to divide ``X`` by so its largest magnitude is near 1, or 1.0.

    1.0 whenever the largest magnitude already lies in :data:`SAFE_MAGNITUDE` (so
    ordinary data is untouched) or ``X`` is all zeros. Reads ``X`` twice (max and min),
    without a temporary copy.
    """
    xp = array_module(X)
    top = max(abs(float(xp.max(X))), abs(float(xp.min(X))))
    if top == 0.0 or SAFE_MAGNITUDE[0] <= top <= SAFE_MAGNITUDE[1]:
        return 1.0
    return float(2.0 ** np.frexp(top)[1])


#: Metrics that compare directions or equalities only, never overflowed by magnitudes.
_SCALE_FREE = frozenset({"cosine", "correlation", "hamming", "jaccard"})


def check_new_points_scale(Z: Any, metric: str, name: str = "new points") -> None:
    """Refuse new points whose squared distances overflow float32 at the fitted scale.

    ``Z`` is already divided by the scale found at fit, so ordinary new points lie
    near 1; cosine, correlation, hamming and jaccard compare directions or equalities
    only and are never refused.
    """
    if metric in _SCALE_FREE:
        return
    xp = array_module(Z)
    top = max(abs(float(xp.max(Z))), abs(float(xp.min(Z))))
    if top > SAFE_MAGNITUDE[1]:
        raise ValueError(f"{name}: values reach {top:.3g} times the magnitude of the fitted data, so "
                         "their squared distances overflow float32; rescale them as the fitted data was")


def degenerate_reason(X: Any, metric: str, *, chunk_rows: int = 4096) -> str | None:
    """Why a neighbour graph of ``X`` under ``metric`` would be meaningless, or None.

    All rows identical leaves every distance 0 (no neighbourhood to preserve); under
    cosine, zero rows have no direction and rows that are multiples of one another are
    identical (under correlation, after each row is centred). Compares every row with
    the first, block by block, and stops at the first block that differs, so ordinary
    data costs one small block.

    Data the metric cannot take raises :class:`embedscope.errors.DataError`: jaccard
    needs binary rows, ``"precomputed"`` a valid distance matrix
    (:func:`check_distance_matrix`).
    """
    if metric == PRECOMPUTED:
        return check_distance_matrix(X)
    if metric == "jaccard" and (bad := non_binary_reason(X)) is not None:
        raise DataError(bad)
    xp = array_module(X)
    n = X.shape[0]
    cosine = metric in ("cosine", "correlation")
    centre = metric == "correlation"

    def unit(block: Any) -> Any:
        block = xp.asarray(block, dtype=xp.float64)
        if centre:
            block = block - block.mean(axis=1, keepdims=True)
        norms = xp.sqrt((block * block).sum(axis=1, keepdims=True))
        return block / xp.where(norms > 0, norms, 1.0), norms.ravel()

    first = xp.asarray(X[:1], dtype=xp.float64)
    if cosine:
        first, _ = unit(first)
    any_nonzero = False
    for start in range(0, n, chunk_rows):
        block = X[start:start + chunk_rows]
        if cosine:
            block, norms = unit(block)
            any_nonzero = any_nonzero or bool((norms > 0).any())
            # float32 rows parallel to one another normalise to within rounding
            if bool((xp.abs(block - first) > 1e-6).any()):
                return None
        elif bool((xp.asarray(block) != xp.asarray(X[:1])).any()):
            return None
    if cosine and not any_nonzero:
        what = "constant, which have no correlation" if centre else "zero, which have no cosine distance"
        return f"all {n} rows are {what}"
    if cosine:
        return f"all {n} rows point the same way, so every {metric} distance is 0"
    return f"all {n} rows are identical"


# ----------------------------------------------------------------------------- 1 prepare


class Preparation:
    """The fitted preparation of the vectors a kNN graph is built on.

    ``fit_transform`` learns it on the training data, ``transform`` applies the same
    to new points. Both run on the array module that holds the input (numpy, or
    cupy where the backend placed the data on a GPU) and return the same kind.

    Parameters
    ----------
    metric : str
        The input metric.
    pca_components : int or None
        Reduce data wider than :data:`PCA_ABOVE` features to this many principal
        components (None: never).
    seed : int
        The fit's seed (the randomized PCA solver draws from it).
    backend : str
        The backend the PCA runs on (the reducer's).
    metric_kwds : dict, optional
        The metric's checked parameters (:func:`resolve_metric`), handed on to the search.
    log : callable, optional
        Told when PCA is skipped because the metric would be distorted by it.

    Attributes
    ----------
    scale : float
        The power of two the data is divided by (1.0 for ordinary magnitudes):
        squared distances of values near 1e20 overflow float32 and near 1e-20
        vanish; every graph here calibrates per point, so dividing is exact and
        changes nothing else.
    pca : PCA or None
        The fitted PCA, None where the full space is searched.
    search_metric : str
        The metric the kNN search runs under on the prepared rows: the input metric,
        except that correlation rows reduced by PCA are already centred and unit
        length and are searched by cosine.
    """

    def __init__(self, metric: str, pca_components: int | None, *, seed: int, backend: str,
                 metric_kwds: dict[str, Any] | None = None, log: Callable[[str], None] | None = None) -> None:
        self.metric = metric
        self.metric_kwds = dict(metric_kwds or {})
        self.pca_components = pca_components
        self.seed = seed
        self.backend = backend
        self.log = log
        self.scale = 1.0
        self.pca: Any = None
        self.uses_pca = False
        self.search_metric = metric

    def fit_transform(self, X: Any) -> Any:
        """Learn the scale and the PCA on ``X``; returns the prepared float32 rows."""
        xp = array_module(X)
        Z = xp.ascontiguousarray(xp.asarray(X, dtype=xp.float32))
        self.scale = magnitude_scale(Z)
        wide = self.pca_components is not None and Z.shape[1] > PCA_ABOVE
        self.uses_pca = wide and self.metric in PCA_SAFE_METRICS
        if wide and not self.uses_pca and self.metric != PRECOMPUTED and self.log is not None:
            self.log(f"pca_components not applied: PCA would change {self.metric} distances; the kNN "
                     f"search runs on all {Z.shape[1]:,} features")
        self.search_metric = "cosine" if self.uses_pca and self.metric == "correlation" else self.metric
        self.pca = None
        Z = self._scaled_unit(Z)
        if self.uses_pca:
            from embedscope.engine.pca import PCA

            n_pca = min(int(self.pca_components), Z.shape[0], Z.shape[1])  # type: ignore[arg-type]
            self.pca = PCA(n_components=n_pca, random_state=self.seed, backend=pca_backend(self.backend))
            Z = xp.ascontiguousarray(xp.asarray(self.pca.fit_transform(Z), dtype=xp.float32))
        return Z

    def transform(self, X: Any) -> Any:
        """``X`` prepared as the training data was.

        Refused (``ValueError``) after a fit on a precomputed distance matrix: placing
        new points needs their distances to the fitted ones, which the matrix lacks.
        """
        if self.metric == PRECOMPUTED:
            raise ValueError("metric='precomputed' cannot place new points: transform needs the new points' "
                             "distances to the fitted ones; fit on vectors with a metric to use transform")
        if self.metric == "jaccard" and (bad := non_binary_reason(X)) is not None:
            raise DataError(bad)
        xp = array_module(X)
        Z = self._scaled_unit(xp.ascontiguousarray(xp.asarray(X, dtype=xp.float32)))
        if self.pca is not None:
            Z = xp.ascontiguousarray(xp.asarray(self.pca.transform(Z), dtype=xp.float32))
        return Z

    def _scaled_unit(self, Z: Any) -> Any:
        xp = array_module(Z)
        if self.scale != 1.0:
            Z = Z / xp.float32(self.scale)
        if self.uses_pca and self.metric == "correlation":
            Z = Z - Z.mean(axis=1, keepdims=True)  # then searched as cosine (search_metric)
        if self.uses_pca and self.metric in ("cosine", "correlation"):
            # Cosine data is searched by cosine in PCA space too, though the unit rows
            # are projected from their mean: PCA-50 of the word vectors keeps less than
            # their norm for many rows, and re-normalising makes up for it. Recall of
            # the true cosine 15-NN (1,000 rows): 0.52 by cosine, 0.47 by euclidean
            # distance in PCA-50 (0.74 / 0.67 in PCA-100); trustworthiness@15 of the
            # UMAP layout 0.778 / 0.781 against 0.765 / 0.760 (seeds 0 / 1). Without
            # PCA the search normalises cosine rows itself.
            norms = xp.linalg.norm(Z, axis=1, keepdims=True)
            Z = Z / xp.where(norms > 0, norms, xp.float32(1.0))
        return Z


# ----------------------------------------------------------------------------- 2 kNN


def knn_graph(backend: Backend, Z: Any, k: int, metric: str, *, method: str = "auto", seed: int = 0,
              log: Callable[[str], None] | None = None,
              metric_kwds: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The kNN graph of the prepared rows ``Z`` on ``backend``: host (int32, float32) (n, k).

    Self excluded, rows ascending. ``method`` "auto" lets the backend choose exact
    or approximate by size; the search is seeded by ``seed`` (any non-negative int).
    Under ``metric="precomputed"`` ``Z`` is the distance matrix and the neighbours are
    read from its rows on the host (no search).
    """
    if metric == PRECOMPUTED:
        from embedscope.kernels.knn.exact import precomputed_knn

        if log is not None:
            log("reading the neighbours from the rows of the precomputed distance matrix")
        return precomputed_knn(np.asarray(to_host(Z), dtype=np.float32), k)
    kwargs = {"metric_kwds": metric_kwds} if metric_kwds else {}  # a kernel table need not know it
    return backend.kernels.knn(Z, k, metric, method=method, seed=seed % (2**31), log=log, **kwargs)


def precompile(backend: Backend, reducer: str, n: int, k: int, metric: str, n_components: int,
               log: Callable[[str], None] | None = None, method: str = "auto") -> None:
    """Before a fit: the backend compiles the kernels it will call and has not cached yet.

    On the CPU the first fit after an install compiles them in parallel processes
    (:mod:`embedscope.kernels._precompile`); later fits find them cached and pay a few
    ``stat`` calls here. ``method`` is the kNN method asked for ("auto": the backend's rule).
    """
    hook = backend.kernels.precompile if backend.delegate is None else None
    if hook is not None:
        hook(reducer, n, k, metric, n_components, log, method=method)


def knn_label(backend: Backend, method: str, n: int, precomputed: bool, metric: str = "") -> str:
    """What the kNN stage will run, for the stage log."""
    if precomputed:
        return "precomputed"
    if metric == "precomputed":  # no search: the rows of the distance matrix are read
        return "rows of the distance matrix"
    return backend.name if backend.delegate is not None else backend.kernels.knn_label(method, n)


def knn_queries(backend: Backend, train: Any, Z: Any, k: int, metric: str,
                metric_kwds: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest training rows of each new row ``Z``; host (int32, float32) (m, k).

    Runs on ``backend`` where its search finds k neighbours, else on the cpu (only
    after a fit on a precomputed graph wider than the GPU search keeps).
    """
    limit = backend.capabilities.max_neighbors
    if backend.delegate is not None or (limit is not None and k > limit):
        kernels = get_spec("cpu").kernel_table()
    else:
        kernels = backend.kernels
    kwargs = {"metric_kwds": metric_kwds} if metric_kwds else {}
    return kernels.knn(train, k, metric, queries=kernels.place(Z), **kwargs)


# ----------------------------------------------------------------------------- 3 precomputed kNN


def check_precomputed(knn: Any, n: int, k: int, metric: str, *, at_least: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """A user's kNN graph checked against one contract, as host (int32, float32) (n, <= k).

    The contract (the same for every reducer):

    - a pair ``(indices, distances)`` of arrays of shape ``(n, m)`` (numpy or cupy);
      integer indices in ``[0, n)``, or -1 for a missing neighbour;
    - distances finite, ascending along each row, and >= 0 except under
      ``metric="inner_product"``;
    - a first column that is the point itself (umap-learn's layout) is dropped; a
      point listed elsewhere as its own neighbour counts as missing;
    - the first ``k`` remaining columns are used; fewer than ``at_least`` (default
      ``k``) is refused, and so is a graph with no valid neighbour at all.

    Parameters
    ----------
    knn : tuple of (indices, distances)
    n : int
        Rows of the data.
    k : int
        Neighbours per point the reducer uses (self excluded).
    metric : str
    at_least : int, optional
        Fewest columns accepted (default ``k``).

    Returns
    -------
    indices : int32 array (n, min(k, m))
    distances : float32 array (n, min(k, m))
    """
    try:
        indices, distances = knn
    except (TypeError, ValueError):
        raise ValueError("precomputed_knn must be a tuple (indices, distances)") from None
    indices, distances = np.asarray(to_host(indices)), np.asarray(to_host(distances))
    if indices.ndim != 2 or indices.shape != distances.shape or indices.shape[0] != n:
        raise ValueError(f"precomputed_knn arrays must both have shape ({n}, k); "
                         f"got {indices.shape} and {distances.shape}")
    if indices.dtype.kind not in "iu" or distances.dtype.kind not in "iuf" or not np.all(np.isfinite(distances)):
        raise ValueError("precomputed_knn indices must be integers and distances finite")
    if indices.shape[1] and np.array_equal(indices[:, 0], np.arange(n)):
        indices, distances = indices[:, 1:], distances[:, 1:]  # umap-learn includes self
    need = k if at_least is None else at_least
    if indices.shape[1] < need:
        raise ValueError(f"precomputed_knn has {indices.shape[1]} neighbours per point (self excluded); "
                         f"this needs {need}")
    if indices.size and (indices.min() < -1 or indices.max() >= n):
        raise ValueError(f"precomputed_knn indices must lie in [0, {n}) (or -1 for a missing neighbour)")
    indices, distances = indices[:, :k], distances[:, :k]
    valid = (indices >= 0) & (indices != np.arange(n)[:, None])
    if not valid.any():
        raise ValueError("precomputed_knn has no valid neighbour: every entry is -1 or the point itself")
    if metric != "inner_product" and (distances < 0).any():
        raise ValueError("precomputed_knn distances must be >= 0 (only metric='inner_product' has "
                         "negative distances)")
    if (np.diff(distances, axis=1) < 0).any():
        raise ValueError("precomputed_knn distances must be ascending along each row")
    return (np.ascontiguousarray(indices, dtype=np.int32),
            np.ascontiguousarray(distances, dtype=np.float32))
