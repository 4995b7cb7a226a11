"""PaCMAP: Pairwise Controlled Manifold Approximation, on every backend with its kernels.

Wang, Huang, Rudin & Shaposhnik, "Understanding How Dimension Reduction Tools Work: An
Empirical Approach to Deciphering t-SNE, UMAP, TriMap, and PaCMAP for Data
Visualization", JMLR 22 (2021).

prepare (PCA to 50 dims when d > 100) -> kNN graph of ``n_neighbors + 50`` -> near,
mid-near and further pairs (``kernels.pacmap.pairs``, the ``affinities`` stage) ->
init (PCA, scaled small) -> Adam on the three pair losses in three phases
(``kernels.pacmap``). The kNN search, the pair choice and the optimiser come from the
backend's kernel table (``Kernels.pacmap``); adding PaCMAP to a backend is one entry there.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from embedscope._array import to_host, to_output
from embedscope.backends import Request, fitted_backend
from embedscope.engine import stages
from embedscope.engine.base import (
    BaseReducer,
    StopTracker,
    check_common,
    check_float,
    check_init,
    check_init_array,
    check_int,
    derive_seed,
)
from embedscope.errors import DataError
from embedscope.io.validate import validate_vectors
from embedscope.kernels.knn import check_metric

#: Largest ``n_components`` (as UMAP).
MAX_COMPONENTS = 100
#: Largest number of iterations in one phase (450 in all is the paper's).
MAX_ITERS = 100_000
#: Largest ``learning_rate``: Adam moves a point by about the rate per step whatever the
#: gradient, so far above the paper's 1.0 the layout is thrown around.
MAX_LEARNING_RATE = 1000.0
#: Largest ``MN_ratio`` / ``FP_ratio`` (each pair costs every iteration).
MAX_RATIO = 100.0
#: Phases of the package when ``n_iters`` is one number (it is the third phase).
FIRST_PHASES = (100, 100)
#: Iterations of ``transform`` (the third phase's weights, against the fixed layout),
#: and its step size relative to ``learning_rate``.
TRANSFORM_ITERS, TRANSFORM_RATE = 60, 0.1
INIT_CHOICES = ("pca", "random")


class NonFiniteLayout(RuntimeError, ValueError):
    """The optimiser left the float range: a defect, not user data."""


def _phases_run(n_iters: tuple[int, int, int], ran: int) -> tuple[int, int, int]:
    """The iterations each phase ran when the fit stopped after ``ran`` in all."""
    done = []
    for phase in n_iters:
        done.append(min(phase, ran))
        ran -= done[-1]
    return done[0], done[1], done[2]


def _pairs_per_point(n_neighbors: int, ratio: float) -> int:
    return int(n_neighbors * ratio)


class PaCMAP(BaseReducer):
    """Pairwise Controlled Manifold Approximation (PaCMAP; Wang et al., JMLR 2021).

    Parameter names follow the ``pacmap`` package where they mean the same thing
    (``n_components``, ``n_neighbors``, ``MN_ratio``, ``FP_ratio``, ``random_state``,
    ``verbose``); the package's ``distance``, ``lr`` and ``num_iters`` are ``metric``,
    ``learning_rate`` and ``n_iters`` here, as in every embedscope reducer.

    Parameters
    ----------
    n_components : int, default=2
        Output dimensions (2 or 3 for plots), at most 100.
    n_neighbors : int, default=10
        Near pairs per point, chosen among its ``n_neighbors + 50`` nearest points by
        the scaled distance ``d_ij^2 / (sigma_i sigma_j)`` (``sigma_i``: mean distance
        to its 4th-6th neighbours). At least 1 and at most ``n_samples - 2``.
    MN_ratio : float, default=0.5
        Mid-near pairs per near pair (``int(n_neighbors * MN_ratio)`` per point); each
        is the 2nd nearest of 6 random points. In [0, 100].
    FP_ratio : float, default=2.0
        Further pairs per near pair (``int(n_neighbors * FP_ratio)`` per point),
        random points that are not near pairs. In [0, 100].
    metric : str, default="euclidean"
        Of the kNN search and the mid-near draws: any metric the kNN search knows
        (euclidean, cosine, inner_product, manhattan, chebyshev, minkowski, correlation,
        hamming, jaccard; see the README's metrics table), not ``"precomputed"``.
        ``"angular"`` (the package's name) is cosine. Under ``inner_product``,
        whose distances may be negative, near pairs keep the kNN order (no scaling).
    n_iters : int or (int, int, int), default=(100, 100, 250)
        Adam iterations of the three phases: phase 1 lowers the mid-near weight from
        1000 to 3 (global structure), phase 2 holds it at 3, phase 3 drops it to 0
        (local detail); near-pair weights 2, 3, 1, further-pair weight 1. One int
        ``t`` means ``(100, 100, t)``, as in the ``pacmap`` package. Each at most 100,000.
    learning_rate : float, default=1.0
        Adam's step size (beta1 0.9, beta2 0.999), in (0, 1000].
    init : {"pca", "random"} or array of shape (n, n_components), default="pca"
        ``"pca"``: the first principal components of the prepared data, scaled so the
        first has standard deviation 0.01 (the paper's small start); ``"random"``:
        normal with standard deviation 1e-4; an array is used as given.
    random_state : int >= 0, Generator or None, default=None
        Seed of the kNN search, the pair draws and the init. A seeded fit is
        reproducible on the same machine for any thread count: every point's gradient
        is summed from its own pair lists in a fixed order.
    backend : {"auto", "cpu", "cuda", "cuml"}, default="auto"
        ``"cuda"``: PCA, the kNN search (at most 128 neighbours, so
        ``n_neighbors <= 78``), the pair choice and the Adam iterations run on the GPU
        (:mod:`embedscope.kernels.pacmap.gpu`). ``"cuml"`` is refused: cuML has no
        PaCMAP (rapidsai/cuml#4726); ``"auto"`` passes over it.
    verbose : bool, default=False
        Log each stage and every 10% of the iterations.
    callback : callable or None, default=None
        ``callback(iteration, total_iterations, embedding)`` after every iteration (the
        array is live; copy it to keep it). On the cuda backend it is the device array.
        A true return value stops after that iteration, keeping its layout
        (``n_iters_`` then holds the iterations each phase ran).
    metric_kwds : dict or None, default=None
        The metric's parameters: ``{"p": p}`` for minkowski (umap-learn's name).

    Raises
    ------
    ValueError
        From ``fit``: a parameter outside its range (the message names it), too few
        points for the pairs; :class:`embedscope.errors.DataError` for data with no
        neighbourhoods (all rows identical) or non-finite values.

    Attributes
    ----------
    embedding_ : ndarray of shape (n_samples, n_components), float32
    n_iters_ : tuple of 3 ints
        The iterations each phase ran (fewer than ``n_iters`` when the callback
        stopped the fit).
    n_mid_near_, n_further_ : int
        Mid-near and further pairs per point.
    pca_ : PCA or None
        The PCA the pairs were chosen in (None when the full space was used).
    timings_ : dict of str to float
        Seconds per stage: preprocess, knn, affinities (choosing the pairs), init,
        optimise (``base.GRAPH_STAGES``, as UMAP and t-SNE).
    backend_, backend_reason_ : str
    backend_considered_ : list of (str, str)
    n_features_in_ : int

    Examples
    --------
    >>> from embedscope import PaCMAP, make_mixture
    >>> X, labels = make_mixture(2000, 20, 5, random_state=0)
    >>> PaCMAP(random_state=0).fit_transform(X).shape
    (2000, 2)
    """

    _reducer_name = "pacmap"

    def __init__(
        self,
        n_components: int = 2,
        n_neighbors: int = 10,
        MN_ratio: float = 0.5,
        FP_ratio: float = 2.0,
        metric: str = "euclidean",
        n_iters: int | tuple[int, int, int] = (100, 100, 250),
        learning_rate: float = 1.0,
        init: Any = "pca",
        random_state: Any = None,
        backend: str = "auto",
        verbose: bool = False,
        callback: Callable[[int, int, Any], object] | None = None,
        metric_kwds: dict[str, Any] | None = None,
    ) -> None:
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.MN_ratio = MN_ratio
        self.FP_ratio = FP_ratio
        self.metric = metric
        self.n_iters = n_iters
        self.learning_rate = learning_rate
        self.init = init
        self.random_state = random_state
        self.backend = backend
        self.verbose = verbose
        self.callback = callback
        self.metric_kwds = metric_kwds

    # ------------------------------------------------------------------ validation

    def _phases(self) -> tuple[int, int, int]:
        value = self.n_iters
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return (*FIRST_PHASES, check_int(value, "n_iters", 0, MAX_ITERS))
        if isinstance(value, tuple | list) and len(value) == 3:
            p1, p2, p3 = (check_int(v, "each of n_iters", 0, MAX_ITERS) for v in value)
            return p1, p2, p3
        raise ValueError(f"n_iters must be an integer or a tuple of 3 integers (the phases); got {value!r}")

    def _validate_params(self, n: int, d: int) -> dict[str, Any]:
        """Every constructor parameter checked against ``n`` x ``d`` data; sets nothing."""
        params: dict[str, Any] = {}
        params["n_neighbors"] = check_int(self.n_neighbors, "n_neighbors", 1)
        if n < params["n_neighbors"] + 2:
            raise ValueError(f"PaCMAP with n_neighbors={self.n_neighbors} needs at least "
                             f"{params['n_neighbors'] + 2} points (near pairs plus one further point); "
                             f"got {n}: lower n_neighbors or add points")
        params["n_components"] = check_int(self.n_components, "n_components", 1, MAX_COMPONENTS)
        params["MN_ratio"] = check_float(self.MN_ratio, "MN_ratio", 0.0, MAX_RATIO)
        params["FP_ratio"] = check_float(self.FP_ratio, "FP_ratio", 0.0, MAX_RATIO)
        params["metric"], params["metric_kwds"] = stages.resolve_metric(self.metric, self.metric_kwds)
        if params["metric"] == "precomputed":
            raise ValueError("PaCMAP needs vectors: its mid-near and further pairs compare random points; "
                             "metric='precomputed' is for UMAP and TSNE")
        params["n_iters"] = self._phases()
        params["learning_rate"] = check_float(self.learning_rate, "learning_rate", 0.0, MAX_LEARNING_RATE,
                                              open_low=True)
        check_init(self.init, INIT_CHOICES, n, params["n_components"])
        check_common(self)
        return params

    def _extended_k(self, n: int) -> int | None:
        if not isinstance(self.n_neighbors, numbers.Integral) or isinstance(self.n_neighbors, bool):
            return None
        from embedscope.kernels.pacmap import EXTRA_NEIGHBORS

        return max(1, min(int(self.n_neighbors) + EXTRA_NEIGHBORS, n - 1)) if n > 1 else None

    def _request(self, n: int) -> Request:
        def hint(limit: int) -> str:
            return (f" (PaCMAP searches n_neighbors + 50: n_neighbors <= {limit - 50}; got "
                    f"{self.n_neighbors}); use backend='cpu'")

        try:
            metric = check_metric(self.metric)  # "angular" is cosine to every backend
        except ValueError:
            metric = self.metric
        return Request("pacmap", n_samples=n, metric=metric, neighbors=self._extended_k(n),
                       neighbors_hint=hint, callback=self.callback is not None, estimator=self)

    # ------------------------------------------------------------------ fit

    def fit(self, X: Any, y: Any = None) -> PaCMAP:
        """Embed ``X``; returns ``self`` with ``embedding_`` set.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            numpy, memory-mapped numpy or cupy.
        y : ignored

        Returns
        -------
        self
        """
        X = validate_vectors(X, name="X", min_rows=2)
        n = X.shape[0]
        params = self._validate_params(n, X.shape[1])
        if (reason := stages.degenerate_reason(X, params["metric"])) is not None:
            raise DataError(f"{reason}: PaCMAP has no neighbourhoods to preserve")
        backend, progress = self._start(X.shape)
        self.n_features_in_ = X.shape[1]
        kernels = backend.kernels
        if kernels.pacmap is None:  # a registered backend that lists pacmap must carry its kernels
            raise RuntimeError(f"backend {backend.name!r} lists pacmap but has no PaCMAP kernels")
        seed, rng = derive_seed(self.random_state, 2**63 - 1)
        metric = params["metric"]
        n_nb = params["n_neighbors"]
        n_mn = _pairs_per_point(n_nb, params["MN_ratio"])
        n_fp = _pairs_per_point(n_nb, params["FP_ratio"])
        k_ext = self._extended_k(n)
        assert k_ext is not None
        stages.precompile(backend, "pacmap", n, k_ext, metric, self.n_components, progress.log)

        with progress.stage("preprocess", f"{n:,} x {X.shape[1]:,} on {backend.name}"):
            prep = stages.Preparation(metric, stages.PCA_DIMS, seed=seed % (2**31), backend=backend.name,
                                      metric_kwds=params["metric_kwds"], log=progress.log)
            Z = prep.fit_transform(kernels.place(X))
        # What the search compares (correlation rows after PCA are searched as cosine).
        metric = prep.search_metric
        search = stages.knn_label(backend, "auto", n, False)
        with progress.stage("knn", f"{search}, k={k_ext} (n_neighbors + 50), metric={metric}"):
            indices, distances = stages.knn_graph(backend, Z, k_ext, metric, seed=seed, log=progress.log,
                                                  metric_kwds=prep.metric_kwds)
        with progress.stage("affinities", f"{n_nb} near, {n_mn} mid-near, {n_fp} further pairs per point"):
            # a list: a relabelling optimiser replaces its arrays and frees the old ones
            lists = list(kernels.pacmap.pairs(Z, indices, distances, metric, n_nb, n_mn, n_fp, seed,
                                              metric_kwds=prep.metric_kwds))
            from embedscope.kernels.pacmap import has_scale, scale_sigmas

            # transform weighs a new point's neighbours by the same scaled distance
            self._sigmas = scale_sigmas(distances) if has_scale(distances) else np.ones(n, dtype=np.float32)
        del indices, distances
        Z_host = to_host(Z)
        del Z
        with progress.stage("init", str(self.init) if isinstance(self.init, str) else "array"):
            layout = self._initial_layout(Z_host, params["n_components"], seed, rng, backend.name)
        n_iters = params["n_iters"]
        with progress.stage("optimise", f"{sum(n_iters)} Adam iterations {n_iters} on {backend.name}"):
            tracker = None if self.callback is None else StopTracker(self.callback)
            layout = kernels.pacmap.optimize(layout, lists, n_iters, learning_rate=params["learning_rate"],
                                             reference=None, callback=tracker, log=progress.log)
            if tracker is not None and tracker.stopped:
                progress.log(f"stopped by the callback after iteration {tracker.step}/{sum(n_iters)}")
                n_iters = _phases_run(n_iters, tracker.step)
        del lists
        if not np.all(np.isfinite(layout)):  # a kernel defect, never user data
            raise NonFiniteLayout("PaCMAP produced non-finite coordinates; please report this input")

        self._prep = prep
        self.pca_ = prep.pca
        self._train = Z_host
        self._metric = metric
        self._seed = seed
        self._n_neighbors = n_nb
        self.n_mid_near_, self.n_further_ = n_mn, n_fp
        self.n_iters_ = n_iters
        self.embedding_ = np.ascontiguousarray(layout, dtype=np.float32)
        self.timings_ = progress.timings
        return self

    def _initial_layout(self, Z: np.ndarray, n_components: int, seed: int, rng: np.random.Generator,
                        backend: str) -> np.ndarray:
        if not isinstance(self.init, str):
            return check_init_array(self.init, Z.shape[0], n_components, "init array").astype(np.float32)
        if self.init.lower() == "random":
            return (1e-4 * rng.standard_normal((Z.shape[0], n_components))).astype(np.float32)
        layout = stages.pca_layout(Z, n_components, seed=seed % (2**31), backend=backend)
        spread = float(layout[:, 0].std())
        return (0.01 * layout / (spread if spread > 0 else 1.0)).astype(np.float32)

    def fit_transform(self, X: Any, y: Any = None) -> Any:
        """Fit and return the embedding in the input's array type (cupy in, cupy out).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        array of shape (n_samples, n_components), float32
        """
        self.fit(X)
        return to_output(self.embedding_, X)

    # ------------------------------------------------------------------ transform

    def transform(self, X: Any) -> Any:
        """Place new points against the fitted embedding (which stays fixed).

        Each new point is prepared as the fitted data was, finds its ``n_neighbors``
        nearest fitted points (exact search), and starts at their mean layout position
        weighted by ``exp(-d^2 / (sigma_new sigma_j))`` (the fit's scaled distance).
        Then 60 Adam iterations of the third phase's losses (near pairs weight 1 to
        those neighbours, further pairs weight 1 to ``int(n_neighbors * FP_ratio)``
        random fitted points that are not neighbours; step ``learning_rate / 10``)
        move it against the fixed fitted layout. New points do not interact.
        Runs on the backend that fitted.

        Parameters
        ----------
        X : array-like of shape (n_new, n_features)

        Returns
        -------
        array of shape (n_new, n_components), in the input's array type
        """
        from embedscope.kernels.pacmap import further_pairs, symmetric_lists

        self._check_fitted("embedding_")
        X = validate_vectors(X, name="X", min_rows=1)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but PaCMAP is expecting {self.n_features_in_} "
                             f"features as input: it was fitted on {self.n_features_in_}")
        backend = fitted_backend(self.backend_)
        kernels = backend.kernels
        assert kernels.pacmap is not None
        # A memory-mapped copy of a fitted estimator (joblib) holds read-only arrays, which
        # numba compiles apart (and vectorises differently): writable ones keep transform's
        # floats the same as the original's. Copies only what is read-only.
        fitted = np.require(self.embedding_, requirements=["C", "W"])
        train = np.require(self._train, requirements=["C", "W"])
        n_ref = fitted.shape[0]
        k = min(self._n_neighbors, n_ref)
        Z = self._prep.transform(kernels.place(X))
        stages.check_new_points_scale(Z, self._metric, "X")
        indices, distances = stages.knn_queries(backend, train, Z, k, self._metric, self._prep.metric_kwds)
        start = self._weighted_start(indices, distances, fitted)
        n_fp = _pairs_per_point(self._n_neighbors, float(self.FP_ratio))
        seed = np.uint64((self._seed ^ 0x5EED) % 2**64)
        far = further_pairs(indices, n_ref, n_fp, seed, False,
                            np.empty((indices.shape[0], n_fp), dtype=np.int32))
        empty = (np.zeros(indices.shape[0] + 1, dtype=np.int64), np.empty(0, dtype=np.int32))
        lists = (*symmetric_lists(indices, both=False), *empty, *symmetric_lists(far, both=False))
        layout = kernels.pacmap.optimize(start, lists, (0, 0, TRANSFORM_ITERS),
                                         learning_rate=float(self.learning_rate) * TRANSFORM_RATE,
                                         reference=fitted, callback=None, log=None)
        return to_output(np.ascontiguousarray(layout, dtype=np.float32), X)

    def _weighted_start(self, indices: np.ndarray, distances: np.ndarray, fitted: np.ndarray) -> np.ndarray:
        valid = indices >= 0
        safe = np.where(valid, indices, 0)
        dist = np.where(valid & np.isfinite(distances), distances, np.inf).astype(np.float64)
        if np.all(dist[np.isfinite(dist)] >= 0):
            hi = min(6, dist.shape[1])
            lo = min(3, hi - 1)
            own = np.where(np.isfinite(dist[:, lo:hi]), dist[:, lo:hi], np.nan)
            sigma_new = np.maximum(np.nan_to_num(np.nanmean(own, axis=1), nan=1.0), 1e-10)
            scaled = dist**2 / (sigma_new[:, None] * self._sigmas[safe].astype(np.float64))
            # relative to each row's nearest, so the weights never all underflow to 0
            scaled -= np.min(np.where(np.isfinite(scaled), scaled, np.inf), axis=1, keepdims=True)
            weight = np.where(valid, np.exp(-scaled), 0.0)
        else:
            weight = valid.astype(np.float64)
        weight /= np.maximum(weight.sum(axis=1, keepdims=True), 1e-300)
        return np.einsum("mk,mkc->mc", weight, fitted[safe].astype(np.float64)).astype(np.float32)
