"""UMAP: the estimator that runs the shared stages (see ``engine.stages``) on every backend.

prepare (PCA to 50 dims when d > 100) -> kNN graph -> fuzzy simplicial set
(``kernels.affinity``) -> init (``engine.stages``) -> SGD epochs (``kernels.umap_sgd``).

Only the kNN search and the SGD epochs differ per backend: they come from the
backend's kernel table (``backends.cpu`` / ``backends.cuda``). The graph and the init
run on the host for both (sparse, cheap next to the kNN search and the epochs). A
delegate backend (cuML) fits the whole reducer itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from embedscope._array import to_host, to_output
from embedscope._progress import Progress
from embedscope.backends import Backend, Request, fitted_backend
from embedscope.engine import stages
from embedscope.engine.base import (
    BaseReducer,
    check_float,
    check_init_array,
    check_int,
    derive_seed,
    validate_random_state,
)
from embedscope.engine.stages import INIT_CHOICES
from embedscope.errors import DataError
from embedscope.io.validate import validate_vectors

#: Largest ``n_components``: a layout is for looking at or for a downstream model; above
#: 100 dimensions UMAP's low-dimensional kernel no longer separates anything and the
#: epochs cost grows linearly (``--n-components 1000000`` ran for minutes).
MAX_COMPONENTS = 100
#: Largest ``learning_rate``: each SGD step moves a point by at most 4 x the rate
#: (gradients are clipped at 4) in a [0, 10] starting box, so above 1000 the layout is
#: thrown across thousands of box widths per step and nothing of the graph survives.
MAX_LEARNING_RATE = 1000.0
#: Largest ``negative_sample_rate``: each edge sample draws this many repulsions, so
#: the epochs cost grows linearly with it (umap-learn's default is 5).
MAX_NEGATIVE_SAMPLE_RATE = 1000
#: Largest ``n_epochs`` (200-500 is usual; a million epochs of a small graph is hours).
MAX_EPOCHS = 100_000
#: Bounds of ``spread``: the kernel is fitted on [0, 3 spread] in float32 coordinates
#: starting in a [0, 10] box, so scales far outside give a degenerate layout.
SPREAD_RANGE = (1e-3, 1e3)


class NonFiniteLayout(RuntimeError, ValueError):
    """The SGD left the float range: a defect, not user data (every parameter and the
    data's scale are checked first). Also a ValueError, so it reaches a user as one line."""


class UMAP(BaseReducer):
    """Uniform Manifold Approximation and Projection (umap-learn compatible parameters).

    Parameters
    ----------
    n_neighbors : int, default=15
        Size of the local neighbourhood, **counting the point itself** (as in
        umap-learn), so the kNN graph holds ``n_neighbors - 1`` other points per row.
        Between 2 and the number of points.
    n_components : int, default=2
        Output dimensions (2 or 3 for plots), at most 100 (``MAX_COMPONENTS``).
    min_dist : float, default=0.1
        Smallest distance between embedded points; ``0 <= min_dist <= spread``.
    spread : float, default=1.0
        Scale of the embedded clusters, in [0.001, 1000].
    metric : str, default="euclidean"
        Distance in the input space (umap-learn's names): "euclidean" ("l2"),
        "cosine", "inner_product" ("dot", "ip"), "manhattan" ("l1", "cityblock",
        "taxicab"), "chebyshev" ("linf"), "minkowski" (with ``metric_kwds={"p": p}``),
        "correlation", "hamming" (share of differing coordinates), "jaccard" (binary
        data: 0/1 or boolean, checked) or "precomputed": ``X`` is then a square
        distance matrix (n x n, non-negative, zero diagonal, symmetric), the neighbours
        are read from its rows, no PCA runs and ``transform`` is refused. See
        :mod:`embedscope.kernels.knn.metrics` for each definition.
    metric_kwds : dict or None, default=None
        Parameters of the metric (umap-learn's name): ``{"p": p}`` for minkowski,
        ``p >= 1`` (default 2). Other keys, or keys for a metric that takes none, are
        refused.
    n_epochs : int or None, default=None
        SGD epochs; None is 500 up to 10,000 points and 200 above. 0 returns the
        initial layout; at most 100,000.
    learning_rate : float, default=1.0
        In (0, 1000].
    init : {"spectral", "pca", "random"} or array of shape (n, n_components), default="spectral"
        Spectral falls back to PCA init, logging the reason, when the graph is
        disconnected or ill-conditioned, and above 500,000 points (see
        ``engine.stages``); ``init_used_`` records what ran.
    negative_sample_rate : int, default=5
        Repulsive samples per attractive sample, 0 to 1000.
    random_state : int >= 0, Generator or None, default=None
        Seed of the kNN search, init and SGD. Every mode is parallel; a seeded run is
        reproducible on the same machine (whatever the thread count), an unseeded one
        draws a fresh seed.
    precomputed_knn : tuple (indices, distances) or None, default=None
        A kNN graph of the data, arrays of shape (n, >= n_neighbors - 1), each row
        ascending. A first column that is the point itself (umap-learn's layout) is
        dropped; extra columns are ignored; -1 marks a missing neighbour. A graph with
        no valid neighbour at all is refused.
    pca_components : int or None, default=50
        When the data has more than 100 features, reduce them to this many by PCA
        before the kNN search (cosine data is L2-normalised first). None disables.
        Applied only with euclidean, cosine and correlation: PCA changes inner
        products and the coordinate-wise metrics (manhattan, chebyshev, minkowski,
        hamming, jaccard), whose search then runs on every feature (logged).
    knn_method : {"auto", "exact", "nndescent", "ivf"}, default="auto"
        kNN search; see :func:`embedscope.kernels.knn.nearest_neighbors`. On the cuda
        backend "auto" is exact up to 2,000,000 points and IVF above,
        "ivf" forces the approximate IVF-flat search
        (:func:`embedscope.kernels.knn.ivf.ivf_knn`), "nndescent" is refused; "ivf"
        is cuda-only (the cpu backend refuses it: use "nndescent" there).
    backend : {"auto", "cpu", "cuda", "cuml"}, default="auto"
        ``"cuda"``: the data is copied to the GPU once (cupy input stays there; numpy
        data larger than half the free GPU memory stays on the host and is streamed
        in blocks), then PCA, the kNN search (exact,
        :func:`embedscope.kernels.knn.gpu.exact_knn_gpu`, or IVF) and the SGD epochs
        (:func:`embedscope.kernels.umap_sgd.gpu.optimize_layout_gpu`) run on the
        device; the fuzzy graph and the init run on the host. It finds at most 128
        neighbours (``n_neighbors <= 129``) unless ``precomputed_knn`` is given.
        ``"cuml"``: RAPIDS cuML's UMAP fits with the same parameters (no PCA
        preprocessing; ``knn_method`` does not apply); what it cannot honour raises
        :class:`embedscope.Unsupported`. ``"auto"`` picks cuml, then cuda, then cpu,
        whichever can run here.
    verbose : bool, default=False
        Log each stage (naming the backend) and every 10% of the epochs.
    callback : callable or None, default=None
        ``callback(epoch, n_epochs, embedding)`` after every epoch (the array is live;
        copy it to keep it). On the cuda backend it is the device (cupy) array.

    Raises
    ------
    ValueError
        From ``fit``: a parameter outside its range (the message names it and the
        range); :class:`embedscope.errors.DataError` for data with no
        neighbourhoods (all rows identical; under cosine, all zero or all parallel).
        Data of any float32 magnitude is embedded: values far from 1 are divided by a
        power of two first (the graph does not depend on scale).

    Attributes
    ----------
    embedding_ : ndarray of shape (n_samples, n_components), float32
        On the host (numpy) for every backend; ``fit_transform`` returns it in the
        input's array type (cupy in, cupy out).
    graph_ : scipy.sparse.csr_matrix of shape (n_samples, n_samples)
        The symmetric fuzzy simplicial set (cuml backend: cuML's graph, if it keeps one).
    knn_indices_, knn_distances_ : ndarray of shape (n_samples, n_neighbors - 1)
        Not set by the cuml backend.
    pca_ : PCA or None
        The PCA the kNN search ran in (see ``pca_components``), None when the
        full space was searched; ``transform`` projects new points with it.
    init_used_ : str
        Which initialisation ran (with the spectral fallback reason, if any).
    n_epochs_ : int
    timings_ : dict of str to float
        Seconds per stage: preprocess, knn, affinities (the fuzzy graph), init,
        optimise (``base.GRAPH_STAGES``, as t-SNE; cuml backend: one ``cuml-umap``
        stage).
    backend_, backend_reason_ : str
        The backend that ran, and why (``"requested"``, or what ``auto`` weighed).
    backend_considered_ : list of (str, str)
        Each backend ``auto`` weighed, in order, with why it was passed over, then the
        pick (empty for an explicit backend).
    n_features_in_ : int

    Examples
    --------
    >>> from embedscope import UMAP, make_mixture
    >>> X, labels = make_mixture(2000, 20, 5, random_state=0)
    >>> UMAP(random_state=0).fit_transform(X).shape
    (2000, 2)
    """

    _reducer_name = "umap"

    def __init__(
        self,
        n_neighbors: int = 15,
        n_components: int = 2,
        min_dist: float = 0.1,
        spread: float = 1.0,
        metric: str = "euclidean",
        n_epochs: int | None = None,
        learning_rate: float = 1.0,
        init: Any = "spectral",
        negative_sample_rate: int = 5,
        random_state: Any = None,
        precomputed_knn: tuple[np.ndarray, np.ndarray] | None = None,
        pca_components: int | None = 50,
        knn_method: str = "auto",
        backend: str = "auto",
        verbose: bool = False,
        callback: Callable[[int, int, np.ndarray], object] | None = None,
        metric_kwds: dict[str, Any] | None = None,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.n_components = n_components
        self.min_dist = min_dist
        self.spread = spread
        self.metric = metric
        self.n_epochs = n_epochs
        self.learning_rate = learning_rate
        self.init = init
        self.negative_sample_rate = negative_sample_rate
        self.random_state = random_state
        self.precomputed_knn = precomputed_knn
        self.pca_components = pca_components
        self.knn_method = knn_method
        self.backend = backend
        self.verbose = verbose
        self.callback = callback
        self.metric_kwds = metric_kwds

    # ------------------------------------------------------------------ validation

    def _validate_params(self, n: int, d: int) -> dict[str, Any]:
        """Every constructor parameter checked against ``n`` x ``d`` data; sets nothing.

        Returns the checked values; a bad one is a ValueError naming it and its range.
        """
        if n < 2:
            raise ValueError(f"UMAP needs at least 2 points; got {n}")
        params: dict[str, Any] = {}
        params["n_neighbors"] = check_int(self.n_neighbors, "n_neighbors", 2)
        if params["n_neighbors"] > n:
            raise ValueError(f"n_neighbors={self.n_neighbors} is larger than the number of points ({n}); "
                             f"use n_neighbors <= {n} (it counts the point itself)")
        params["n_components"] = check_int(self.n_components, "n_components", 1, MAX_COMPONENTS)
        params["spread"] = check_float(self.spread, "spread", *SPREAD_RANGE)
        params["min_dist"] = check_float(self.min_dist, "min_dist", 0.0, params["spread"])
        params["metric"], params["metric_kwds"] = stages.resolve_metric(self.metric, self.metric_kwds)
        if self.n_epochs is not None:
            check_int(self.n_epochs, "n_epochs", 0, MAX_EPOCHS)
        params["learning_rate"] = check_float(self.learning_rate, "learning_rate", 0.0, MAX_LEARNING_RATE,
                                              open_low=True)
        params["negative_sample_rate"] = check_int(self.negative_sample_rate, "negative_sample_rate", 0,
                                                   MAX_NEGATIVE_SAMPLE_RATE)
        if isinstance(self.init, str):
            if self.init.lower() not in INIT_CHOICES:
                raise ValueError(f"init={self.init!r} must be one of {', '.join(INIT_CHOICES)} or an array")
        else:
            check_init_array(self.init, n, params["n_components"], "init array")
        if self.pca_components is not None:
            check_int(self.pca_components, "pca_components", 1)
        validate_random_state(self.random_state)
        if self.knn_method not in ("auto", "exact", "nndescent", "ivf"):
            raise ValueError(f"knn_method={self.knn_method!r} must be 'auto', 'exact', 'nndescent' or 'ivf'")
        if self.callback is not None and not callable(self.callback):
            raise ValueError(f"callback must be callable; got {self.callback!r}")
        return params

    def _request(self, n: int) -> Request:
        k = int(self.n_neighbors) - 1 if isinstance(self.n_neighbors, int) else None
        searches = self.precomputed_knn is None

        def hint(limit: int) -> str:
            return (f" (n_neighbors <= {limit + 1}; got {self.n_neighbors}); use backend='cpu' "
                    "or pass precomputed_knn")

        return Request("umap", n_samples=n, metric=stages.canonical_metric(self.metric), neighbors=k if searches else None,
                       neighbors_hint=hint, knn_method=self.knn_method, callback=self.callback is not None,
                       precomputed_knn=not searches, estimator=self)

    # ------------------------------------------------------------------ fit

    def fit(self, X: Any, y: Any = None) -> UMAP:
        """Embed ``X``; returns ``self`` with ``embedding_`` and ``graph_`` set.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            numpy, memory-mapped numpy or cupy.
        y : ignored

        Returns
        -------
        self
        """
        from embedscope.kernels import affinity, umap_sgd

        X = validate_vectors(X, name="X", min_rows=2)
        n = X.shape[0]
        params = self._validate_params(n, X.shape[1])
        k = params["n_neighbors"] - 1
        if self.precomputed_knn is not None:
            # checked before any work; the stage below uses what the check returned
            given = stages.check_precomputed(self.precomputed_knn, n, k, params["metric"])
        elif (reason := stages.degenerate_reason(X, params["metric"])) is not None:
            raise DataError(f"{reason}: UMAP has no neighbourhoods to preserve")
        backend, progress = self._start(X.shape)
        self.n_features_in_ = X.shape[1]
        self._cuml_model: Any = None  # a refit on another backend must not transform with it
        if backend.delegate is not None:
            return self._fit_delegated(X, backend, progress, n)
        kernels = backend.kernels
        seed, _ = derive_seed(self.random_state, 2**63 - 1)
        self._seed = seed
        self._metric = params["metric"]

        with progress.stage("preprocess", f"{n:,} x {X.shape[1]:,} on {backend.name}"):
            self._prep = stages.Preparation(self._metric, self.pca_components, seed=seed % (2**31),
                                            backend=backend.name, metric_kwds=params["metric_kwds"],
                                            log=progress.log)
            Z = self._prep.fit_transform(kernels.place(X))
            self.pca_ = self._prep.pca
            Z_host = to_host(Z)  # the init's PCA and transform() read the host copy
        precomputed = self.precomputed_knn is not None
        search = stages.knn_label(backend, self.knn_method, n, precomputed)
        with progress.stage("knn", f"{search}, k={k}, metric={self._metric}"):
            if precomputed:
                indices, distances = given
            else:
                indices, distances = stages.knn_graph(backend, Z, k, self._prep.search_metric,
                                                      method=self.knn_method, seed=seed, log=progress.log,
                                                      metric_kwds=self._prep.metric_kwds)
        del Z  # frees the device copy before the epochs
        rho_nearest = self._metric == "inner_product"
        with progress.stage("affinities", "fuzzy simplicial set on the host"):
            graph, _, _ = affinity.fuzzy_simplicial_set(indices, distances, params["n_neighbors"],
                                                        rho_from_nearest=rho_nearest)
        n_epochs = umap_sgd.default_epochs(n) if self.n_epochs is None else int(self.n_epochs)
        with progress.stage("init", str(self.init) if isinstance(self.init, str) else "array"):
            layout, used = stages.initial_layout(self.init, params["n_components"], graph=graph, data=Z_host,
                                                 seed=seed % (2**31), log=progress.log, backend=backend.name)
        a, b = umap_sgd.find_ab_params(params["spread"], params["min_dist"])
        with progress.stage("optimise", f"{n_epochs} epochs on {backend.name}"):
            pruned = umap_sgd.edge_schedule(graph, max(n_epochs, 1))
            layout = kernels.umap_optimize(
                layout, pruned, n_epochs, a=a, b=b, learning_rate=params["learning_rate"],
                negative_sample_rate=params["negative_sample_rate"], seed=seed,
                callback=self.callback, log=progress.log)
        if not np.all(np.isfinite(layout)):  # a kernel defect, never user data
            raise NonFiniteLayout("UMAP produced non-finite coordinates; please report this input")

        self._ab = (a, b)
        self._train = Z_host
        self._n_neighbors = params["n_neighbors"]
        self.knn_indices_, self.knn_distances_ = indices, distances
        self.graph_ = graph
        self.embedding_ = layout
        self.init_used_ = used
        self.n_epochs_ = n_epochs
        self.timings_ = progress.timings
        return self

    def _fit_delegated(self, X: Any, backend: Backend, progress: Progress, n: int) -> UMAP:
        from embedscope.kernels.umap_sgd import default_epochs

        if self.pca_components is not None and X.shape[1] > 100:
            progress.log(f"{backend.name}: pca_components is not applied; it searches all "
                         f"{X.shape[1]:,} features")
        self._progress = progress
        embedding = backend.delegate.fit_umap(self, X, backend)
        self.embedding_ = np.ascontiguousarray(to_host(embedding), dtype=np.float32)
        self.init_used_ = str(self.init)
        # What cuML was asked for; None is umap-learn's rule, which cuML follows too.
        self.n_epochs_ = default_epochs(n) if self.n_epochs is None else int(self.n_epochs)
        self.timings_ = progress.timings
        return self

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
        """Embed new points against the fitted graph (the fitted layout stays fixed).

        Each new point is linked to its ``n_neighbors - 1`` nearest fitted points with
        fuzzy memberships, starts at their weighted mean position and is refined by a
        short SGD (a third of ``n_epochs``; 100 epochs up to 10,000 fitted points and
        30 above when ``n_epochs`` is None). Runs on the backend that fitted: on cuda
        the kNN of the new points and their SGD (against the fixed fitted layout) run
        on the GPU, except that more than 128 neighbours (possible only after fitting
        with ``precomputed_knn``) are searched on the CPU; on cuml, cuML's own
        ``transform`` runs.

        Parameters
        ----------
        X : array-like of shape (n_new, n_features)

        Returns
        -------
        array of shape (n_new, n_components), in the input's array type
        """
        from embedscope.kernels import affinity, umap_sgd

        self._check_fitted("embedding_")
        X = validate_vectors(X, name="X", min_rows=1)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but UMAP is expecting {self.n_features_in_} "
                             f"features as input: it was fitted on {self.n_features_in_}")
        if getattr(self, "_cuml_model", None) is not None:
            return to_output(self._cuml_model.transform(X), X)
        backend = fitted_backend(self.backend_)
        kernels = backend.kernels
        k = min(self._n_neighbors - 1, self._train.shape[0])
        Z = self._prep.transform(kernels.place(X))
        stages.check_new_points_scale(Z, self._metric, "X")
        indices, distances = stages.knn_queries(backend, self._train, Z, k, self._prep.search_metric,
                                                self._prep.metric_kwds)
        weights = affinity.transform_memberships(distances, self._n_neighbors,
                                                 rho_from_nearest=self._metric == "inner_product")
        fitted = self.embedding_
        share = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
        start = np.einsum("mk,mkc->mc", share, fitted[indices]).astype(np.float32)
        m = Z.shape[0]
        graph = sp.csr_matrix((weights.ravel(), indices.ravel(), np.arange(0, m * k + 1, k)),
                              shape=(m, fitted.shape[0]))
        if self.n_epochs is None:
            n_epochs = 100 if fitted.shape[0] <= 10_000 else 30
        else:
            n_epochs = int(self.n_epochs) // 3
        a, b = self._ab
        pruned = umap_sgd.edge_schedule(graph, max(n_epochs, 1))
        layout = kernels.umap_optimize(
            start, pruned, n_epochs, a=a, b=b, learning_rate=float(self.learning_rate) / 4.0,
            negative_sample_rate=int(self.negative_sample_rate), seed=self._seed ^ 0x5EED,
            reference=fitted)
        return to_output(layout, X)
