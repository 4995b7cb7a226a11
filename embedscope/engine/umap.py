"""UMAP: the estimator that runs the shared stages (see DESIGN.md) on the CPU backend.

preprocess (PCA to 50 dims when d > 100) -> kNN graph (``kernels.knn``) -> fuzzy
simplicial set (``kernels.affinity``) -> init (``engine.init``) -> SGD epochs
(``kernels.umap_sgd``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from embedscope.engine.base import BaseReducer, check_float, check_int, check_random_state
from embedscope.engine.data import validate_vectors
from embedscope.engine.dispatch import to_host, to_output
from embedscope.engine.init import INIT_CHOICES, initial_layout
from embedscope.kernels.knn import check_metric, exact_knn, nearest_neighbors


class UMAP(BaseReducer):
    """Uniform Manifold Approximation and Projection (umap-learn compatible parameters).

    Parameters
    ----------
    n_neighbors : int, default=15
        Size of the local neighbourhood, **counting the point itself** (as in
        umap-learn), so the kNN graph holds ``n_neighbors - 1`` other points per row.
        Between 2 and the number of points.
    n_components : int, default=2
        Output dimensions (2 or 3 for plots; any positive int works).
    min_dist : float, default=0.1
        Smallest distance between embedded points; ``0 <= min_dist <= spread``.
    spread : float, default=1.0
        Scale of the embedded clusters.
    metric : {"euclidean", "cosine", "inner_product"}, default="euclidean"
    n_epochs : int or None, default=None
        SGD epochs; None is 500 up to 10,000 points and 200 above. 0 returns the
        initial layout.
    learning_rate : float, default=1.0
    init : {"spectral", "pca", "random"} or array of shape (n, n_components), default="spectral"
        Spectral falls back to PCA init, logging the reason, when the graph is
        disconnected or ill-conditioned, and above 500,000 points (see
        ``engine.init``); ``init_used_`` records what ran.
    negative_sample_rate : int, default=5
        Repulsive samples per attractive sample.
    random_state : int, Generator or None, default=None
        Seed of the kNN search, init and SGD. Every mode is parallel; a seeded run is
        reproducible on the same machine (whatever the thread count), an unseeded one
        draws a fresh seed.
    precomputed_knn : tuple (indices, distances) or None, default=None
        A kNN graph of the data, arrays of shape (n, >= n_neighbors - 1), each row
        ascending. A first column that is the point itself (umap-learn's layout) is
        dropped; extra columns are ignored.
    pca_components : int or None, default=50
        When the data has more than 100 features, reduce them to this many by PCA
        before the kNN search (cosine data is L2-normalised first). None disables.
        Not applied with ``metric="inner_product"`` (centring changes inner products).
    knn_method : {"auto", "exact", "nndescent"}, default="auto"
        kNN search; see :func:`embedscope.kernels.knn.nearest_neighbors`.
    backend : {"auto", "cpu"}, default="auto"
    verbose : bool, default=False
        Log each stage and every 10% of the epochs.
    callback : callable or None, default=None
        ``callback(epoch, n_epochs, embedding)`` after every epoch (the array is live;
        copy it to keep it).

    Attributes
    ----------
    embedding_ : ndarray of shape (n_samples, n_components), float32
    graph_ : scipy.sparse.csr_matrix of shape (n_samples, n_samples)
        The symmetric fuzzy simplicial set.
    knn_indices_, knn_distances_ : ndarray of shape (n_samples, n_neighbors - 1)
    init_used_ : str
        Which initialisation ran (with the spectral fallback reason, if any).
    n_epochs_ : int
    timings_ : dict of str to float
        Seconds per stage: preprocess, knn, graph, init, optimize.
    backend_, backend_reason_ : str
    n_features_in_ : int

    Examples
    --------
    >>> from embedscope import UMAP, make_mixture
    >>> X, labels = make_mixture(2000, 20, 5, random_state=0)
    >>> UMAP(random_state=0).fit_transform(X).shape
    (2000, 2)
    """

    _supported_backends = ("cpu",)

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

    # ------------------------------------------------------------------ validation

    def _validate_params(self, n: int) -> dict[str, Any]:
        if n < 2:
            raise ValueError(f"UMAP needs at least 2 points; got {n}")
        params: dict[str, Any] = {}
        params["n_neighbors"] = check_int(self.n_neighbors, "n_neighbors", 2)
        if params["n_neighbors"] > n:
            raise ValueError(f"n_neighbors={self.n_neighbors} is larger than the number of points ({n}); "
                             f"use n_neighbors <= {n} (it counts the point itself)")
        params["n_components"] = check_int(self.n_components, "n_components", 1)
        params["spread"] = check_float(self.spread, "spread", 0.0, open_low=True)
        params["min_dist"] = check_float(self.min_dist, "min_dist", 0.0, params["spread"])
        params["metric"] = check_metric(self.metric)
        if self.n_epochs is not None:
            check_int(self.n_epochs, "n_epochs", 0)
        params["learning_rate"] = check_float(self.learning_rate, "learning_rate", 0.0, open_low=True)
        params["negative_sample_rate"] = check_int(self.negative_sample_rate, "negative_sample_rate", 0)
        if isinstance(self.init, str):
            if self.init.lower() not in INIT_CHOICES:
                raise ValueError(f"init={self.init!r} must be one of {', '.join(INIT_CHOICES)} or an array")
        elif np.shape(self.init) != (n, params["n_components"]):
            raise ValueError(f"init array has shape {np.shape(self.init)}; expected ({n}, {params['n_components']})")
        if self.pca_components is not None:
            check_int(self.pca_components, "pca_components", 1)
        if self.knn_method not in ("auto", "exact", "nndescent"):
            raise ValueError(f"knn_method={self.knn_method!r} must be 'auto', 'exact' or 'nndescent'")
        if self.callback is not None and not callable(self.callback):
            raise ValueError(f"callback must be callable; got {self.callback!r}")
        return params

    def _check_precomputed(self, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        try:
            indices, distances = self.precomputed_knn  # type: ignore[misc]
        except (TypeError, ValueError):
            raise ValueError("precomputed_knn must be a tuple (indices, distances)") from None
        indices, distances = np.asarray(indices), np.asarray(distances)
        if indices.ndim != 2 or indices.shape != distances.shape or indices.shape[0] != n:
            raise ValueError(f"precomputed_knn arrays must both have shape ({n}, k); "
                             f"got {indices.shape} and {distances.shape}")
        if indices.dtype.kind not in "iu" or not np.all(np.isfinite(distances)):
            raise ValueError("precomputed_knn indices must be integers and distances finite")
        if indices.shape[1] and np.array_equal(indices[:, 0], np.arange(n)):
            indices, distances = indices[:, 1:], distances[:, 1:]  # umap-learn includes self
        if indices.shape[1] < k:
            raise ValueError(f"precomputed_knn has {indices.shape[1]} neighbours per point (self excluded); "
                             f"n_neighbors={k + 1} needs {k}")
        if indices.min() < -1 or indices.max() >= n:
            raise ValueError(f"precomputed_knn indices must lie in [0, {n})")
        return (np.ascontiguousarray(indices[:, :k], dtype=np.int32),
                np.ascontiguousarray(distances[:, :k], dtype=np.float32))

    # ------------------------------------------------------------------ preprocessing

    def _prepare(self, X: np.ndarray, fitting: bool) -> np.ndarray:
        """The vectors the kNN search sees (normalised / PCA-reduced as fitted)."""
        Z = np.ascontiguousarray(X, dtype=np.float32)
        if fitting:
            self._use_pca = (self.pca_components is not None and Z.shape[1] > 100
                             and self._metric != "inner_product")
            self._knn_metric = "euclidean" if (self._use_pca and self._metric == "cosine") else self._metric
        if self._use_pca and self._metric == "cosine":
            norms = np.linalg.norm(Z, axis=1, keepdims=True)
            Z = Z / np.where(norms > 0, norms, 1.0)
        if self._use_pca:
            if fitting:
                from embedscope.engine.pca import PCA

                n_pca = min(int(self.pca_components), Z.shape[0], Z.shape[1])
                self.pca_ = PCA(n_components=n_pca, random_state=0).fit(Z)
            Z = np.ascontiguousarray(self.pca_.transform(Z), dtype=np.float32)
        return Z

    def _to_metric(self, distances: np.ndarray) -> np.ndarray:
        # cosine data searched as unit vectors in PCA space: |a - b|^2 / 2 = 1 - cos.
        if self._metric == "cosine" and self._knn_metric == "euclidean":
            return (distances * distances / 2.0).astype(np.float32)
        return distances

    # ------------------------------------------------------------------ fit

    def fit(self, X: Any, y: Any = None) -> UMAP:
        """Embed ``X``; returns ``self`` with ``embedding_`` and ``graph_`` set.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
        """
        from embedscope.kernels import affinity, umap_sgd

        X = validate_vectors(X, name="X", min_rows=2)
        n = X.shape[0]
        params = self._validate_params(n)
        _backend, progress = self._start(X.shape)
        rng = check_random_state(self.random_state)
        seed = int(rng.integers(0, 2**63 - 1))
        self._seed = seed
        self._metric = params["metric"]
        self.n_features_in_ = X.shape[1]
        k = params["n_neighbors"] - 1

        with progress.stage("preprocess", f"{n:,} x {X.shape[1]:,}"):
            Z = self._prepare(to_host(X), fitting=True)
        with progress.stage("knn", f"k={k}, metric={self._knn_metric}"):
            if self.precomputed_knn is not None:
                indices, distances = self._check_precomputed(n, k)
            else:
                indices, distances = nearest_neighbors(Z, k, self._knn_metric, method=self.knn_method,
                                                       random_state=seed % (2**31))
                distances = self._to_metric(distances)
        rho_nearest = self._metric == "inner_product"
        with progress.stage("graph", "fuzzy simplicial set"):
            graph, _, _ = affinity.fuzzy_simplicial_set(indices, distances, params["n_neighbors"],
                                                        rho_from_nearest=rho_nearest)
        n_epochs = umap_sgd.default_epochs(n) if self.n_epochs is None else int(self.n_epochs)
        with progress.stage("init", str(self.init) if isinstance(self.init, str) else "array"):
            layout, used = initial_layout(self.init, params["n_components"], graph=graph, data=Z,
                                          seed=seed % (2**31), log=progress.log)
        a, b = umap_sgd.find_ab_params(params["spread"], params["min_dist"])
        with progress.stage("optimize", f"{n_epochs} epochs"):
            pruned = umap_sgd.edge_schedule(graph, max(n_epochs, 1))
            layout = umap_sgd.optimize_layout(
                layout, pruned, n_epochs, a=a, b=b, learning_rate=params["learning_rate"],
                negative_sample_rate=params["negative_sample_rate"], seed=seed,
                callback=self.callback, log=progress.log)
        if not np.all(np.isfinite(layout)):  # a kernel defect, never user data
            raise RuntimeError("UMAP produced non-finite coordinates; please report this input")

        self._ab = (a, b)
        self._train = Z
        self._n_neighbors = params["n_neighbors"]
        self.knn_indices_, self.knn_distances_ = indices, distances
        self.graph_ = graph
        self.embedding_ = layout
        self.init_used_ = used
        self.n_epochs_ = n_epochs
        self.timings_ = progress.timings
        self._output_like = X
        return self

    def fit_transform(self, X: Any, y: Any = None) -> Any:
        """Fit and return the embedding in the input's array type."""
        self.fit(X)
        return to_output(self.embedding_, X)

    # ------------------------------------------------------------------ transform

    def transform(self, X: Any) -> Any:
        """Embed new points against the fitted graph (the fitted layout stays fixed).

        Each new point is linked to its ``n_neighbors - 1`` nearest fitted points with
        fuzzy memberships, starts at their weighted mean position and is refined by a
        short SGD (a third of ``n_epochs``; 100 epochs up to 10,000 fitted points and
        30 above when ``n_epochs`` is None).

        Parameters
        ----------
        X : array-like of shape (n_new, n_features)

        Returns
        -------
        array of shape (n_new, n_components)
        """
        from embedscope.kernels import affinity, umap_sgd

        self._check_fitted("embedding_")
        X = validate_vectors(X, name="X", min_rows=1)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features; this UMAP was fitted on {self.n_features_in_}")
        Z = self._prepare(to_host(X), fitting=False)
        k = min(self._n_neighbors - 1, self._train.shape[0])
        indices, distances = exact_knn(self._train, k, self._knn_metric, queries=Z)
        distances = self._to_metric(distances)
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
        layout = umap_sgd.optimize_layout(
            start, pruned, n_epochs, a=a, b=b, learning_rate=float(self.learning_rate) / 4.0,
            negative_sample_rate=int(self.negative_sample_rate), seed=self._seed ^ 0x5EED,
            reference=fitted)
        return to_output(layout, X)

