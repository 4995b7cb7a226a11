"""UMAP: the estimator that runs the shared stages (see ``engine.stages``) on every backend.

prepare (PCA to 50 dims when d > 100) -> kNN graph -> fuzzy simplicial set
(``kernels.affinity``) -> init (``engine.stages``) -> SGD epochs (``kernels.umap_sgd``).

The kNN search, the fuzzy graph and the SGD epochs differ per backend: they come from
the backend's kernel table (``backends.cpu`` / ``backends.cuda``). On the GPU the
graph is built and kept on the device (``kernels.graph``) for the spectral init and
the epochs; ``graph_`` is its host copy. A delegate backend (cuML) fits the whole
reducer itself.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from embedscope._array import array_module, to_host, to_output
from embedscope._progress import Progress
from embedscope.backends import Backend, Request, fitted_backend
from embedscope.engine import stages
from embedscope.engine.base import (
    BaseReducer,
    StopTracker,
    check_common,
    check_float,
    check_init,
    check_int,
    derive_seed,
)
from embedscope.engine.stages import INIT_CHOICES
from embedscope.errors import DataError
from embedscope.io.validate import validate_vectors
from embedscope.kernels.graph import csr_to_host

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
#: ``target_metric`` values (umap-learn's; "l2" is "euclidean").
TARGET_METRICS = ("categorical", "euclidean", "l2")
#: Largest ``dens_lambda`` (umap-learn's default is 2; the term's steps are clipped,
#: so beyond this the data graph no longer shapes the layout at all).
MAX_DENS_LAMBDA = 1000.0
#: Largest ``n_components`` ``inverse_transform`` accepts (umap-learn's limit): the
#: interpolation needs layout neighbourhoods that are local, which 2-8 dimensions give.
MAX_INVERSE_COMPONENTS = 8
#: Bounds of ``spread``: the kernel is fitted on [0, 3 spread] in float32 coordinates
#: starting in a [0, 10] box, so scales far outside give a degenerate layout.
SPREAD_RANGE = (1e-3, 1e3)


def check_target(y: Any, n: int, target_metric: str) -> np.ndarray:
    """``y`` of ``fit(X, y)`` checked and encoded for the target graph.

    Categorical: any 1-D labels (or a column) of length ``n``; returns int64 codes
    with -1 kept for unlabelled points. Euclidean: numeric (n,) or (n, d); returns
    float32 (n, d). A wrong length or NaN / inf is a :class:`DataError` naming ``y``.
    """
    values = np.asarray(to_host(y))
    if values.ndim == 0 or values.shape[0] != n:
        got = "a scalar" if values.ndim == 0 else f"{values.shape[0]} rows"
        raise DataError(f"y has {got}, but X has {n}: fit(X, y) needs one target per row of X")
    if values.ndim == 2 and values.shape[1] == 1 and target_metric == "categorical":
        values = values[:, 0]
    if values.dtype.kind in "fc" and not np.all(np.isfinite(values)):
        bad = np.flatnonzero(~np.isfinite(values.reshape(n, -1)).all(axis=1))
        raise DataError(f"y has NaN or inf in {bad.size} rows (first: {bad[:5].tolist()}); use -1 for an "
                        "unlabelled point")
    if values.dtype.kind == "c":
        raise DataError("y must be real labels or numbers, not complex")
    if target_metric == "categorical":
        if values.ndim != 1:
            raise DataError(f"categorical y must be 1-D labels; got shape {values.shape} (for vector "
                            "targets use target_metric='euclidean')")
        if values.dtype.kind in "biuf":
            unlabelled = values == -1
        else:
            unlabelled = np.zeros(n, dtype=bool)
        try:
            _, codes = np.unique(values, return_inverse=True)
        except TypeError as exc:  # mixed objects that do not compare
            raise DataError(f"y labels must be comparable values of one kind ({exc})") from None
        return np.where(unlabelled, -1, codes.ravel()).astype(np.int64)
    if values.dtype.kind not in "biuf":
        raise DataError(f"target_metric='euclidean' needs numeric y; got dtype {values.dtype}")
    values = values.reshape(n, -1).astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise DataError("y overflows float32")
    return np.ascontiguousarray(values)


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
        device, and so do the fuzzy graph (:mod:`embedscope.kernels.graph.fuzzy`) and
        the spectral init (cupyx's eigsh, up to 5,000,000 points); the PCA init's
        projection returns to the host. It finds at most 128
        neighbours (``n_neighbors <= 129``) unless ``precomputed_knn`` is given.
        ``"cuml"``: RAPIDS cuML's UMAP fits with the same parameters (no PCA
        preprocessing; ``knn_method`` does not apply); what it cannot honour raises
        :class:`embedscope.Unsupported`. ``"auto"`` picks cuml, then cuda, then cpu,
        whichever can run here.
    verbose : bool, default=False
        Log each stage (naming the backend) and every 10% of the epochs.
    callback : callable or None, default=None
        ``callback(epoch, n_epochs, embedding)`` after every epoch (the array is live;
        copy it to keep it). On the cuda backend it is the device (cupy) array. A true
        return value stops the optimisation after that epoch: the layout it left is
        the embedding and ``n_epochs_`` says how many epochs ran.
    target_n_neighbors : int, default=-1
        Supervised UMAP with ``target_metric="euclidean"``: neighbourhood size of the
        target's kNN graph (counting the point itself); -1 uses ``n_neighbors``.
        umap-learn's name.
    target_metric : {"categorical", "euclidean"}, default="categorical"
        How ``fit(X, y)`` reads ``y`` (umap-learn's names). ``"categorical"``: labels
        (any values compared for equality; -1 marks an unlabelled point, for
        semi-supervised UMAP); a data-graph edge between two different labels is
        scaled by ``exp(-far_dist)``, ``far_dist = 2.5 / (1 - target_weight)``, and
        one with an unlabelled end by ``exp(-1)``. ``"euclidean"`` (alias ``"l2"``):
        numeric ``y`` of shape (n,) or (n, d); a fuzzy kNN graph of ``y`` is built and
        intersected with the data graph. Either way each point's strongest edge is
        then reset to 1 and the graph symmetrised again.
    target_weight : float, default=0.5
        In [0, 1]: how much ``y`` shapes the graph (umap-learn's name and default).
        With categorical ``y``, 0 still separates labels mildly (far_dist 2.5) and 1
        cuts every edge between different labels.
    densmap : bool, default=False
        densMAP (Narayan, Berger & Cho 2021; umap-learn's ``densmap``): for the last
        ``dens_frac`` of the epochs an extra gradient makes the log local radius of
        each point in the layout correlate with its log local radius in the data, so
        dense clusters stay small and sparse ones wide. The radius of a point is the
        mean squared distance to its graph neighbours, weighted by membership in the
        data (distances of the searched space: PCA space for wide data) and by the
        low-dimensional kernel in the layout. cpu and cuda backends (cuML: not wired);
        not with ``metric="inner_product"``.
    dens_lambda : float, default=2.0
        Weight of the density term (umap-learn's name), in [0, 1000].
    dens_frac : float, default=0.3
        Fraction of the epochs (the last ones) the density term is active, in [0, 1].
    dens_var_shift : float, default=0.1
        Added to the variance of the layout's log radii in the correlation (keeps a
        nearly uniform layout from dividing by zero), >= 0.
    output_dens : bool, default=False
        With densMAP or without, ``fit_transform`` returns ``(embedding, r_orig,
        r_emb)`` (the log local radii of each point in the data and in the layout,
        as umap-learn does) and ``rad_orig_`` / ``rad_emb_`` keep them.

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
        Epochs that ran (fewer than ``n_epochs`` when the callback stopped the fit).
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
    rad_orig_, rad_emb_ : ndarray of shape (n_samples,), float32
        With ``output_dens=True``: log local radii in the data and in the layout.

    Notes
    -----
    ``inverse_transform`` keeps a reference to the fitted data (no copy where it is
    already a numpy or cupy array; a pickled estimator carries it).

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
        target_n_neighbors: int = -1,
        target_metric: str = "categorical",
        target_weight: float = 0.5,
        densmap: bool = False,
        dens_lambda: float = 2.0,
        dens_frac: float = 0.3,
        dens_var_shift: float = 0.1,
        output_dens: bool = False,
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
        self.target_n_neighbors = target_n_neighbors
        self.target_metric = target_metric
        self.target_weight = target_weight
        self.densmap = densmap
        self.dens_lambda = dens_lambda
        self.dens_frac = dens_frac
        self.dens_var_shift = dens_var_shift
        self.output_dens = output_dens
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
        check_init(self.init, INIT_CHOICES, n, params["n_components"])
        check_common(self)
        if self.knn_method not in ("auto", "exact", "nndescent", "ivf"):
            raise ValueError(f"knn_method={self.knn_method!r} must be 'auto', 'exact', 'nndescent' or 'ivf'")
        params |= self._validate_extras(n, params["metric"])
        return params

    def _validate_extras(self, n: int, metric: str) -> dict[str, Any]:
        """The supervised and densMAP parameters (umap-learn's names), checked."""
        params: dict[str, Any] = {}
        if self.target_metric not in TARGET_METRICS:
            raise ValueError(f"target_metric={self.target_metric!r} must be one of {', '.join(TARGET_METRICS)}")
        params["target_metric"] = "euclidean" if self.target_metric == "l2" else self.target_metric
        params["target_weight"] = check_float(self.target_weight, "target_weight", 0.0, 1.0)
        if isinstance(self.target_n_neighbors, numbers.Integral) and self.target_n_neighbors == -1:
            params["target_n_neighbors"] = -1
        else:
            params["target_n_neighbors"] = check_int(self.target_n_neighbors, "target_n_neighbors", 2, n)
        for name in ("densmap", "output_dens"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}")
        params["dens_lambda"] = check_float(self.dens_lambda, "dens_lambda", 0.0, MAX_DENS_LAMBDA)
        params["dens_frac"] = check_float(self.dens_frac, "dens_frac", 0.0, 1.0)
        params["dens_var_shift"] = check_float(self.dens_var_shift, "dens_var_shift", 0.0)
        if (self.densmap or self.output_dens) and metric == "inner_product":
            raise ValueError("densmap and output_dens need distances >= 0; metric='inner_product' has "
                             "negative ones (use 'cosine' or 'euclidean')")
        return params

    def _request(self, n: int) -> Request:
        k = int(self.n_neighbors) - 1 if isinstance(self.n_neighbors, int) else None
        searches = self.precomputed_knn is None

        def hint(limit: int) -> str:
            return (f" (n_neighbors <= {limit + 1}; got {self.n_neighbors}); use backend='cpu' "
                    "or pass precomputed_knn")

        return Request("umap", n_samples=n, metric=stages.canonical_metric(self.metric), neighbors=k if searches else None,
                       neighbors_hint=hint, knn_method=self.knn_method, callback=self.callback is not None,
                       precomputed_knn=not searches, estimator=self,
                       umap_options=self._options())

    def _options(self) -> frozenset[str]:
        """The optional UMAP features this fit asks of a backend (``Capabilities.umap_options``)."""
        wanted = {"supervised": getattr(self, "_y_given", False), "densmap": bool(self.densmap),
                  "output_dens": bool(self.output_dens)}
        return frozenset(name for name, on in wanted.items() if on)

    # ------------------------------------------------------------------ fit

    def fit(self, X: Any, y: Any = None) -> UMAP:
        """Embed ``X``; returns ``self`` with ``embedding_`` and ``graph_`` set.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            numpy, memory-mapped numpy or cupy.
        y : array-like of shape (n_samples,) or None, default=None
            Supervised UMAP (see ``target_metric``): labels, -1 for unlabelled points
            (semi-supervised); with ``target_metric="euclidean"`` numeric targets of
            shape (n_samples,) or (n_samples, d). None: unsupervised.

        Returns
        -------
        self

        Raises
        ------
        DataError
            ``y`` of another length than ``X``, or with NaN / inf values.
        """
        from embedscope.kernels import affinity, umap_sgd

        X = validate_vectors(X, name="X", min_rows=2)
        n = X.shape[0]
        params = self._validate_params(n, X.shape[1])
        target = None if y is None else check_target(y, n, params["target_metric"])
        self._y_given = target is not None
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
            return self._fit_delegated(X, backend, progress, n, target)
        kernels = backend.kernels
        seed, _ = derive_seed(self.random_state, 2**63 - 1)
        self._seed = seed
        self._metric = params["metric"]
        if self.precomputed_knn is None:
            stages.precompile(backend, "umap", n, k, self._metric, self.n_components, progress.log,
                              method=self.knn_method)

        with progress.stage("preprocess", f"{n:,} x {X.shape[1]:,} on {backend.name}"):
            self._prep = stages.Preparation(self._metric, self.pca_components, seed=seed % (2**31),
                                            backend=backend.name, metric_kwds=params["metric_kwds"],
                                            log=progress.log)
            Z = self._prep.fit_transform(kernels.place(X))
            self.pca_ = self._prep.pca
            Z_host = to_host(Z)  # the init's PCA and transform() read the host copy
        precomputed = self.precomputed_knn is not None
        search = stages.knn_label(backend, self.knn_method, n, precomputed, self._metric)
        with progress.stage("knn", f"{search}, k={k}, metric={self._metric}"):
            if precomputed:
                indices, distances = given
            else:
                indices, distances = stages.knn_graph(backend, Z, k, self._prep.search_metric,
                                                      method=self.knn_method, seed=seed, log=progress.log,
                                                      metric_kwds=self._prep.metric_kwds)
        del Z  # frees the device copy before the epochs
        rho_nearest = self._metric == "inner_product"
        # The graph stays where the backend builds it (a cupyx CSR on the GPU) for the
        # init and the epochs; graph_ gets a host copy at the end. A supervised fit
        # intersects it with the target graph on the host (sparse, label lookups).
        fuzzy_graph = kernels.fuzzy_graph or affinity.fuzzy_simplicial_set
        supervised = "" if target is None else (f", intersected with the {params['target_metric']} target "
                                                f"graph (target_weight={params['target_weight']:g}) on the host")
        with progress.stage("affinities", f"fuzzy simplicial set on {backend.name}{supervised}"):
            graph, _, _ = fuzzy_graph(indices, distances, params["n_neighbors"], rho_from_nearest=rho_nearest)
            if target is not None:
                graph = self._intersect_target(csr_to_host(graph), target, params, seed)
        n_epochs = umap_sgd.default_epochs(n) if self.n_epochs is None else int(self.n_epochs)
        with progress.stage("init", str(self.init) if isinstance(self.init, str) else "array"):
            layout, used = stages.initial_layout(self.init, params["n_components"], graph=graph, data=Z_host,
                                                 seed=seed % (2**31), log=progress.log, backend=backend.name)
        a, b = umap_sgd.find_ab_params(params["spread"], params["min_dist"])
        dens_data = np.zeros(0, dtype=np.float32)
        if self.densmap or self.output_dens:
            from embedscope.kernels.umap_sgd import densmap

            dens_data = densmap.data_radii(graph, indices, distances)
        with progress.stage("optimise", f"{n_epochs} epochs on {backend.name}"
                                        + (" (densMAP)" if self.densmap else "")):
            pruned = umap_sgd.edge_schedule(graph, max(n_epochs, 1))
            tracker = None if self.callback is None else StopTracker(self.callback)
            extra: dict[str, Any] = {}
            if self.densmap:
                extra["densmap"] = densmap.DensParams(
                    log_radii=dens_data, dens_lambda=params["dens_lambda"], dens_frac=params["dens_frac"],
                    var_shift=params["dens_var_shift"])
            layout = kernels.umap_optimize(
                layout, pruned, n_epochs, a=a, b=b, learning_rate=params["learning_rate"],
                negative_sample_rate=params["negative_sample_rate"], seed=seed,
                callback=tracker, log=progress.log, **extra)
            if tracker is not None and tracker.stopped:
                progress.log(f"stopped by the callback after epoch {tracker.step}/{n_epochs}")
                n_epochs = tracker.step
        if not np.all(np.isfinite(layout)):  # a kernel defect, never user data
            raise NonFiniteLayout("UMAP produced non-finite coordinates; please report this input")
        if self.output_dens:
            self.rad_orig_ = dens_data
            self.rad_emb_ = densmap.layout_radii(layout, graph, a, b)
        self._fit_data = X  # inverse_transform interpolates in it (a reference, not a copy)

        self._ab = (a, b)
        self._train = Z_host
        self._n_neighbors = params["n_neighbors"]
        self.knn_indices_, self.knn_distances_ = indices, distances
        self.graph_ = csr_to_host(graph)
        self.embedding_ = layout
        self.init_used_ = used
        self.n_epochs_ = n_epochs
        self.timings_ = progress.timings
        return self

    def _intersect_target(self, graph: sp.csr_matrix, target: np.ndarray, params: dict[str, Any],
                          seed: int) -> sp.csr_matrix:
        """The data graph intersected with the target's, local connectivity reset (host)."""
        from embedscope.kernels import affinity
        from embedscope.kernels.knn import nearest_neighbors

        weight = params["target_weight"]
        if params["target_metric"] == "categorical":
            mixed = affinity.categorical_intersection(graph, target, affinity.far_distance(weight))
        else:
            n = target.shape[0]
            size = params["n_neighbors"] if params["target_n_neighbors"] == -1 else params["target_n_neighbors"]
            size = min(size, n)
            t_idx, t_dist = nearest_neighbors(target, size - 1, "euclidean", random_state=seed % (2**31))
            target_graph, _, _ = affinity.fuzzy_simplicial_set(t_idx, t_dist, size)
            mixed = affinity.general_intersection(graph, target_graph, weight)
        return affinity.reset_local_connectivity(mixed)

    def _fit_delegated(self, X: Any, backend: Backend, progress: Progress, n: int, target: Any = None) -> UMAP:
        from embedscope.kernels.umap_sgd import default_epochs, find_ab_params

        if self.pca_components is not None and X.shape[1] > 100:
            progress.log(f"{backend.name}: pca_components is not applied; it searches all "
                         f"{X.shape[1]:,} features")
        self._progress = progress
        embedding = backend.delegate.fit_umap(self, X, backend, y=target)
        self.embedding_ = np.ascontiguousarray(to_host(embedding), dtype=np.float32)
        # what inverse_transform reads (a refit must not keep an earlier backend's)
        self._fit_data, self._metric = X, self.metric
        self._ab = find_ab_params(float(self.spread), float(self.min_dist))
        self.init_used_ = self.init if isinstance(self.init, str) else "array"
        # What cuML was asked for; None is umap-learn's rule, which cuML follows too.
        self.n_epochs_ = default_epochs(n) if self.n_epochs is None else int(self.n_epochs)
        self.timings_ = progress.timings
        return self

    def fit_transform(self, X: Any, y: Any = None) -> Any:
        """Fit and return the embedding in the input's array type (cupy in, cupy out).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or None, default=None
            See :meth:`fit`.

        Returns
        -------
        array of shape (n_samples, n_components), float32
            With ``output_dens=True``, the tuple ``(embedding, r_orig, r_emb)`` of
            the embedding and the log local radii in the data and in the layout.
        """
        self.fit(X, y)
        embedding = to_output(self.embedding_, X)
        if self.output_dens:
            return embedding, self.rad_orig_, self.rad_emb_
        return embedding

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

    # ------------------------------------------------------------------ inverse_transform

    def inverse_transform(self, Y: Any) -> Any:
        """Points of the layout mapped back to the data space (umap-learn's ``inverse_transform``).

        Each layout point is matched to its ``n_neighbors`` nearest points of
        ``embedding_``, and the fitted data rows of those neighbours are averaged
        with the weights of UMAP's low-dimensional kernel ``1 / (1 + a d^(2b))``
        (normalised to sum to 1): an interpolation in the data space, without the
        refinement umap-learn adds, so a result always lies in the convex hull of
        fitted rows. Runs on the host on every backend.

        Only for fits with ``metric="euclidean"`` (an average of rows is meaningless
        under the other metrics' geometry: cosine and inner product ignore scale) and
        ``n_components <= 8`` (umap-learn's limit; in more dimensions a layout point's
        neighbours no longer surround it). Memory: the fit keeps a reference to its
        training data for this (no copy for numpy, memory-mapped or cupy input).

        Parameters
        ----------
        Y : array-like of shape (m, n_components)
            Points in the layout's coordinates.

        Returns
        -------
        ndarray of shape (m, n_features_in_), float32, in ``Y``'s array type
        """
        from embedscope.kernels.knn import exact_knn

        self._check_fitted("embedding_")
        metric = self._metric
        if metric != "euclidean":
            raise ValueError(f"inverse_transform needs a fit with metric='euclidean' (got {metric!r}): "
                             "it averages data rows, which other metrics' geometry does not support")
        if self.embedding_.shape[1] > MAX_INVERSE_COMPONENTS:
            raise ValueError(f"inverse_transform needs n_components <= {MAX_INVERSE_COMPONENTS} "
                             f"(got {self.embedding_.shape[1]}): in more dimensions a layout point's "
                             "neighbours no longer surround it")
        data = getattr(self, "_fit_data", None)
        if data is None:
            raise ValueError("this UMAP keeps no training data (fitted by an older version); fit it again")
        points = validate_vectors(Y, name="Y", min_rows=1)
        if points.shape[1] != self.embedding_.shape[1]:
            raise ValueError(f"Y has {points.shape[1]} columns, but the layout has {self.embedding_.shape[1]} "
                             "(n_components)")
        fitted = self.embedding_
        k = min(int(self.n_neighbors), fitted.shape[0])
        indices, distances = exact_knn(fitted, k, "euclidean",
                                       queries=np.ascontiguousarray(to_host(points), dtype=np.float32))
        a, b = self._ab
        dist = distances.astype(np.float64)
        weights = 1.0 / (1.0 + a * dist ** (2.0 * b))
        weights /= weights.sum(axis=1, keepdims=True)
        xp = array_module(data)
        rows = to_host(data[xp.asarray(indices.ravel())]).astype(np.float64)
        rows = rows.reshape(indices.shape[0], k, -1)
        result = np.einsum("mk,mkd->md", weights, rows).astype(np.float32)
        return to_output(result, Y)
