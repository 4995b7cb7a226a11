"""t-SNE (van der Maaten & Hinton 2008) with FFT-interpolated repulsion in 2-D and 3-D.

Stages (``engine.stages``, shared with UMAP): preparation (PCA to 50 dimensions for
wide data); kNN (k = 3 x perplexity) on the backend; then its own: per-point perplexity
calibration into a symmetric sparse P; PCA (or random, or given) initialisation;
gradient descent with early exaggeration, then the normal phase. Repulsion is exact
below 1,500 points, grid-interpolated (FIt-SNE) in 2-D (on the cpu backend the few points
thrown far out are summed exactly, so they do not stretch the grid), and Barnes-Hut in
3-D on the cpu backend (its 3-D grid is slower at every size measured:
``backends.cpu.TSNE_GRID_3D_MIN``) and in 2-D below 15,000 points there (faster and
more accurate than the grid at that size: ``backends.cpu.TSNE_BH_2D_MAX``). From 100k
points the cpu backend relabels the problem by layout position now and then
(``REORDER_AT``, ``kernels.locality``); the embedding, callbacks and reports are always
in the input's row order.
The optimiser loop runs in Python, one compiled step at a time, so progress, callbacks
and the KL report live here.

The loop is written once; the steps come from the backend's kernel table
(``backend.kernels.tsne``): the CPU twins in ``kernels.tsne`` or the GPU twins in
``kernels.tsne.gpu`` (numba.cuda and cupy, the grid repulsion in 3-D as well). On the
cuda backend the preparation, the kNN search, the perplexity calibration and P
(``kernels.tsne.affinity_gpu``, from the backend's ``tsne_affinities``) and the
iterations run on the device; the init stays on the host. A delegate
backend (cuML) fits the whole reducer itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from embedscope._array import array_module, to_host, to_output
from embedscope._progress import Progress
from embedscope.backends import Backend, Request, Unsupported, fitted_backend, get_spec
from embedscope.engine import stages
from embedscope.engine.base import (
    BaseReducer,
    check_common,
    check_float,
    check_init,
    check_int,
    derive_seed,
)
from embedscope.engine.stages import PCA_DIMS
from embedscope.errors import DataError
from embedscope.io.validate import validate_vectors
from embedscope.kernels import tsne as ktsne
from embedscope.kernels.locality import in_input_order

#: Iterations between KL reports (progress and callback).
REPORT_EVERY = 50
#: Iterations before which the loop asks the backend to relabel the points by their
#: place in the layout (``TsneKernels.reorder``): at the start (PCA init), while early
#: exaggeration forms the clusters, and twice as the layout spreads.
REORDER_AT = frozenset({0, 50, 250, 500})
#: Perplexity used to place new points in ``transform`` (openTSNE's choice: new points
#: should attach to their closest neighbours, not to a broad neighbourhood).
TRANSFORM_PERPLEXITY = 5.0
#: Largest ``early_exaggeration``: 4-30 is the useful range; far above, the attraction
#: swamps every step and "auto" learning rates collapse to their floor.
MAX_EXAGGERATION = 1000.0
#: Largest numeric ``learning_rate``: "auto" gives N / 4, so 1e7 covers 40M points; a
#: larger rate throws the layout apart in the first step.
MAX_LEARNING_RATE = 1e7
#: Largest ``n_iter`` (750-1000 is usual; each iteration costs a full gradient).
MAX_ITER = 100_000
#: Bounds of ``dof``: below, the kernel's tail is so heavy that every point repels every
#: other alike; above 100 it is a Gaussian to float precision.
DOF_RANGE = (1e-2, 100.0)


class DivergedError(FloatingPointError, ValueError):
    """The optimisation left the floating-point range (a ValueError, so it reaches a
    user as one line: the cure is a parameter, not a bug report)."""


class TSNE(BaseReducer):
    """t-distributed stochastic neighbour embedding (CPU with numba, or a CUDA GPU).

    Parameters
    ----------
    n_components : {2, 3}, default=2
        Embedding dimensions.
    perplexity : float, default=30.0
        Effective number of neighbours of each point. Above ``(n_samples - 1) / 3`` it
        is clamped to that with a ``UserWarning`` (as openTSNE does); the value used is
        ``perplexity_``.
    early_exaggeration : float, default=12.0
        Factor on P during the first phase (250 iterations, or ``n_iter // 4`` when
        ``n_iter < 1000``); in [1, 1000].
    learning_rate : float or "auto", default="auto"
        ``"auto"`` is ``max(N / exaggeration / 4, 50)`` for each phase: ``N / 48`` while
        exaggerating (scikit-learn's rule), ``N / 4`` afterwards (openTSNE's rule;
        the gradient here carries the factor 4). A number must lie in (0, 1e7].
    n_iter : int, default=1000
        Total iterations, early exaggeration included; 1 to 100,000.
    metric : str, default="euclidean"
        Metric of the input space, with UMAP's names and definitions: "euclidean",
        "cosine", "inner_product", "manhattan" ("l1", "cityblock", "taxicab"),
        "chebyshev" ("linf"), "minkowski" (``metric_kwds={"p": p}``), "correlation",
        "hamming", "jaccard" (binary data) or "precomputed" (``X`` is a square
        distance matrix; neighbours are read from its rows, no PCA runs, ``transform``
        is refused, and ``init="pca"`` takes the principal axes of the matrix rows).
        Only euclidean distances are squared in the affinities (as scikit-learn does).
    metric_kwds : dict or None, default=None
        Parameters of the metric: ``{"p": p}`` for minkowski, ``p >= 1`` (default 2).
        umap-learn's name; openTSNE calls it ``metric_params``.
    init : {"pca", "random"} or array of shape (n_samples, n_components), default="pca"
        ``"pca"``: the first principal components, scaled to standard deviation 1e-4.
    dof : float, default=1.0
        Degrees of freedom of the Student-t kernel (1 is standard t-SNE; smaller is
        heavier-tailed and shows finer clusters); in [0.01, 100].
    random_state : int >= 0, Generator or None, default=None
    precomputed_knn : tuple (indices, distances) or None, default=None
        A kNN graph of ``X`` that skips the search, under the contract of
        :func:`embedscope.engine.stages.check_precomputed` (shared with UMAP): arrays
        of shape ``(n_samples, k)``, rows ascending; a first column that is the point
        itself is dropped; -1 marks a missing neighbour (it gets no affinity); the first
        ``3 x perplexity`` columns are used.
    pca_components : int or None, default=50
        When the data has more than 100 features, the kNN search runs on this many
        principal components (cosine rows are normalised first). None searches the
        full space. Applied only with euclidean, cosine and correlation (PCA
        changes the other metrics' distances; skipping it is logged).
    backend : {"auto", "cpu", "cuda", "cuml"}, default="auto"
        ``"cuda"``: the kNN search (exact,
        :func:`embedscope.kernels.knn.gpu.exact_knn_gpu`, up to 2,000,000 points and
        IVF above, the rule UMAP follows) and the iterations
        (:mod:`embedscope.kernels.tsne.gpu`, float32 on the device; grid repulsion in
        2-D and 3-D) run on the GPU, the PCA preprocessing, the perplexity
        calibration and P too (:mod:`embedscope.kernels.tsne.affinity_gpu`); the init
        runs on the host. It finds at most 128 neighbours,
        so ``perplexity <= 42`` unless ``precomputed_knn`` is given. ``"cuml"``:
        RAPIDS cuML's t-SNE fits (2-D, dof=1, init "pca" or "random", no callback, no
        ``transform``); what it cannot honour raises :class:`embedscope.Unsupported`.
        ``"auto"`` picks cuml, then cuda, then cpu, passing over a GPU backend that
        cannot run the settings.
    verbose : bool, default=False
        Log stages (naming the backend), and the KL divergence every 50 iterations,
        to stderr.
    callback : callable or None, default=None
        ``callback(iteration, kl_divergence, embedding)`` every
        ``callbacks_every_iters`` iterations, with a host (numpy float32) copy of the
        embedding on every backend; a true return value stops the optimisation early
        (``n_iter_`` says how many iterations ran).
    callbacks_every_iters : int, default=50
        Iterations between two calls of ``callback`` (openTSNE's name), 1 to
        100,000. Each call computes the KL divergence (one pass over P's edges) and
        copies the embedding to the host. The KL log keeps its 50-iteration cadence.

    Raises
    ------
    ValueError
        From ``fit``: a parameter outside its range (the message names it and the
        range); :class:`embedscope.errors.DataError` for data with no
        neighbourhoods (all rows identical; under cosine, all zero or all parallel);
        :class:`DivergedError` (also a ``FloatingPointError``) if the optimisation
        leaves the float range. Data of any float32 magnitude is embedded: values far
        from 1 are divided by a power of two first (P does not depend on scale).

    Attributes
    ----------
    embedding_ : ndarray of shape (n_samples, n_components), float32
        On the host for every backend; ``fit_transform`` returns it in the input's
        array type (cupy in, cupy out).
    kl_divergence_ : float
        KL(P || Q) of the final embedding (without exaggeration).
    kl_history_ : list of (int, float)
        The reported (iteration, KL) pairs.
    n_iter_ : int
        Iterations run.
    perplexity_, learning_rate_ : float
        The values used (``learning_rate_`` of the normal phase).
    repulsion_ : str
        ``"exact"``, ``"fft"`` or ``"barnes-hut"`` (on the cpu backend: 2-D below
        ``embedscope.backends.cpu.TSNE_BH_2D_MAX``, 3-D below
        ``embedscope.backends.cpu.TSNE_GRID_3D_MIN``).
    repulsion_reason_ : str
        The rule that picked ``repulsion_`` (also logged with ``verbose``).
    pca_ : PCA or None
        The PCA the kNN search ran in (see ``pca_components``), None when the
        full space was searched; ``transform`` projects new points with it.
    backend_, backend_reason_ : str
        The backend that ran, and why (``"requested"``, or what ``auto`` weighed).
    backend_considered_ : list of (str, str)
        Each backend ``auto`` weighed, in order, with why it was passed over, then the
        pick (empty for an explicit backend).
    timings_ : dict of str to float
        Seconds per stage of the fit: preprocess, knn, affinities, init, optimise (both
        phases; ``base.GRAPH_STAGES``, as UMAP; cuml backend: one ``cuml-tsne``
        stage). ``transform`` leaves it as the fit left it.
    n_features_in_ : int

    Examples
    --------
    >>> from embedscope import TSNE, make_mixture
    >>> X, labels = make_mixture(1000, 20)
    >>> TSNE(random_state=0, n_iter=300).fit_transform(X).shape
    (1000, 2)
    """

    _reducer_name = "tsne"

    def __init__(
        self,
        n_components: int = 2,
        perplexity: float = 30.0,
        early_exaggeration: float = 12.0,
        learning_rate: float | str = "auto",
        n_iter: int = 1000,
        metric: str = "euclidean",
        init: str | np.ndarray = "pca",
        dof: float = 1.0,
        random_state: Any = None,
        precomputed_knn: tuple[np.ndarray, np.ndarray] | None = None,
        pca_components: int | None = PCA_DIMS,
        backend: str = "auto",
        verbose: bool = False,
        callback: Callable | None = None,
        metric_kwds: dict[str, Any] | None = None,
        callbacks_every_iters: int = REPORT_EVERY,
    ) -> None:
        self.n_components = n_components
        self.perplexity = perplexity
        self.early_exaggeration = early_exaggeration
        self.learning_rate = learning_rate
        self.n_iter = n_iter
        self.metric = metric
        self.init = init
        self.dof = dof
        self.random_state = random_state
        self.precomputed_knn = precomputed_knn
        self.pca_components = pca_components
        self.backend = backend
        self.verbose = verbose
        self.callback = callback
        self.metric_kwds = metric_kwds
        self.callbacks_every_iters = callbacks_every_iters

    # ------------------------------------------------------------------ validation
    def _validate_params(self, n: int, d: int) -> dict[str, Any]:
        """Every constructor parameter checked against ``n`` x ``d`` data; sets nothing.

        Returns the checked values; a bad one is a ValueError naming it and its range.
        """
        params: dict[str, Any] = {}
        if self.n_components not in (2, 3) or isinstance(self.n_components, bool):
            raise ValueError(f"n_components={self.n_components!r} must be 2 or 3")
        params["n_components"] = int(self.n_components)
        params["perplexity"] = check_float(self.perplexity, "perplexity", 0.0, open_low=True)
        params["early_exaggeration"] = check_float(self.early_exaggeration, "early_exaggeration", 1.0,
                                                   MAX_EXAGGERATION)
        params["learning_rate"] = self.learning_rate
        if not (isinstance(self.learning_rate, str) and self.learning_rate == "auto"):
            if isinstance(self.learning_rate, str):
                raise ValueError(f"learning_rate={self.learning_rate!r} must be 'auto' or a number "
                                 f"in (0, {MAX_LEARNING_RATE:g}]")
            params["learning_rate"] = check_float(self.learning_rate, "learning_rate", 0.0, MAX_LEARNING_RATE,
                                                  open_low=True)
        params["n_iter"] = check_int(self.n_iter, "n_iter", 1, MAX_ITER)
        params["metric"], params["metric_kwds"] = stages.resolve_metric(self.metric, self.metric_kwds)
        params["dof"] = check_float(self.dof, "dof", *DOF_RANGE)
        check_common(self)
        check_init(self.init, ("pca", "random"), n, params["n_components"], ignore_case=False)
        params["callbacks_every_iters"] = check_int(self.callbacks_every_iters, "callbacks_every_iters", 1, MAX_ITER)
        return params

    def _effective_perplexity(self, n: int) -> float:
        limit = (n - 1) / 3.0
        if self.perplexity > limit:
            warnings.warn(
                f"perplexity={self.perplexity:g} is too large for {n} points (needs 3 x perplexity "
                f"< n_samples); using perplexity={limit:g}", UserWarning, stacklevel=3)
            return limit
        return float(self.perplexity)

    # ------------------------------------------------------------------ backend
    def _neighbours(self, n: int) -> int:
        """k of the kNN graph: 3 x the (clamped) perplexity."""
        perplexity = min(float(self.perplexity), (n - 1) / 3.0)
        return min(n - 1, max(1, int(3 * perplexity)))

    def _request(self, n: int) -> Request:
        searches = self.precomputed_knn is None
        k = self._neighbours(n) if n > 1 and isinstance(self.perplexity, int | float) else None

        def hint(limit: int) -> str:
            return (f" and t-SNE needs 3 x perplexity = {k}; use perplexity <= {limit // 3}, "
                    "pass precomputed_knn, or use backend='cpu'")

        return Request("tsne", n_samples=n, metric=stages.canonical_metric(self.metric), neighbors=k if searches else None,
                       neighbors_hint=hint, callback=self.callback is not None,
                       precomputed_knn=not searches, estimator=self)

    # ------------------------------------------------------------------ stages
    def _precomputed(self, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The given graph (``stages.check_precomputed``: its first ``k`` columns, at least one)."""
        metric, _ = stages.resolve_metric(self.metric, self.metric_kwds)
        return stages.check_precomputed(self.precomputed_knn, n, k, metric, at_least=1)

    def _initial(self, X: np.ndarray, rng: np.random.Generator, backend: str) -> np.ndarray:
        n, nc = X.shape[0], self.n_components
        if not isinstance(self.init, str):
            return np.array(to_host(self.init), dtype=np.float64)
        if self.init == "pca":
            # Data with fewer features than n_components has fewer axes: the rest is noise.
            Y = np.asarray(stages.pca_axes(X, nc, seed=self._seed, backend=backend), dtype=np.float64)
            usable = Y.shape[1]
            std = Y[:, 0].std() if usable else 0.0
            if std > 0:
                Y = Y / std * 1e-4
                if usable < nc:
                    Y = np.hstack([Y, rng.normal(0.0, 1e-4, size=(n, nc - usable))])
                return Y
        # random, or PCA of data with no spread
        return rng.normal(0.0, 1e-4, size=(n, nc))

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any = None) -> TSNE:
        """Embed ``X``.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self
        """
        X = validate_vectors(X, min_rows=4)
        n = X.shape[0]
        params = self._validate_params(n, X.shape[1])
        k = self._neighbours(n)
        if self.precomputed_knn is not None:
            given = self._precomputed(n, k)  # checked before any work, used by the kNN stage
        if (reason := stages.degenerate_reason(X, params["metric"])) is not None:
            raise DataError(f"{reason}; t-SNE needs distinct points")
        backend, progress = self._start(X.shape)
        self._metric = params["metric"]
        self.n_features_in_ = X.shape[1]
        if backend.delegate is not None:
            return self._fit_delegated(X, backend, progress, n)
        kernels = backend.kernels
        self._seed, rng = derive_seed(self.random_state)
        self.perplexity_ = self._effective_perplexity(n)
        if self.precomputed_knn is None:
            stages.precompile(backend, "tsne", n, k, self._metric, self.n_components, progress.log)
        with progress.stage("preprocess", f"{n:,} x {X.shape[1]:,} on {backend.name}"):
            self._prep = stages.Preparation(self._metric, self.pca_components, seed=self._seed,
                                            backend=backend.name, metric_kwds=params["metric_kwds"],
                                            log=progress.log)
            Z = self._prep.fit_transform(kernels.place(X))
            self.pca_ = self._prep.pca
            Xp = np.ascontiguousarray(to_host(Z), dtype=np.float32)
        precomputed = self.precomputed_knn is not None
        search = stages.knn_label(backend, "auto", n, precomputed, self._metric)
        with progress.stage("knn", f"k={k}, metric={self._metric}, {search}"):
            if precomputed:
                indices, distances = given
            else:
                indices, distances = stages.knn_graph(backend, Z, k, self._prep.search_metric,
                                                      seed=self._seed, log=progress.log,
                                                      metric_kwds=self._prep.metric_kwds)
        del Z  # frees the device copy before the iterations
        with progress.stage("affinities", f"perplexity={self.perplexity_:g}"):
            # Our own kNN arrays are scratch for P; a user's precomputed graph is not.
            P, missed = self._affinities(indices, distances, n, kernels, overwrite=not precomputed)
            if missed:
                progress.log(f"perplexity search did not converge for {missed} point(s)")
        # The kNN arrays are not needed past P: at 1M points and k = 90 they hold
        # 720 MB through the whole optimisation otherwise.
        del indices, distances
        if precomputed:
            del given
        with progress.stage("init", str(self.init) if isinstance(self.init, str) else "array"):
            Y = self._initial(Xp, rng, backend.name)
        self._X_ref = Xp
        self._optimise(P, Y, progress, backend, params["callbacks_every_iters"])
        self.timings_ = progress.timings
        return self

    def _affinities(self, indices: np.ndarray, distances: np.ndarray, n: int,
                    kernels: Any = None, *, overwrite: bool = False) -> tuple[Any, int]:
        """The joint P of the kNN graph where the backend builds it (host CSR, or the device's
        ``DeviceCSR``); missing neighbours (-1, or the point itself) get no weight."""
        build = getattr(kernels, "tsne_affinities", None) or ktsne.knn_joint_probabilities
        return build(indices, distances, n, self.perplexity_, squared=self._metric == "euclidean",
                     overwrite=overwrite)

    def _fit_delegated(self, X: Any, backend: Backend, progress: Progress, n: int) -> TSNE:
        self.perplexity_ = self._effective_perplexity(n)
        if self.pca_components is not None and X.shape[1] > stages.PCA_ABOVE:
            progress.log(f"{backend.name}: pca_components is not applied; it searches all "
                         f"{X.shape[1]:,} features")
        self._progress = progress
        # The delegate sets what its library ran: n_iter_, learning_rate_ (normal phase,
        # in our units), kl_divergence_ and repulsion_.
        embedding = backend.delegate.fit_tsne(self, X, backend)
        self.embedding_ = np.ascontiguousarray(to_host(embedding), dtype=np.float32)
        self.kl_history_: list[tuple[int, float]] = []
        self.timings_ = progress.timings
        return self

    def _schedule(self, n: int) -> tuple[int, float, float]:
        ee_iter = min(250, self.n_iter // 4)
        ee = float(self.early_exaggeration)
        if self.learning_rate == "auto":
            return ee_iter, max(n / ee / 4.0, 50.0), max(n / 4.0, 50.0)
        return ee_iter, float(self.learning_rate), float(self.learning_rate)

    def _optimise(self, P: sp.csr_matrix, Y: np.ndarray, progress: Any, backend: Backend,
                  callback_every: int = REPORT_EVERY) -> None:
        kernels = backend.kernels.tsne
        n, dim = Y.shape
        dof = float(self.dof)
        repulsion, self.repulsion_, self.repulsion_reason_ = kernels.repulsion(n, dim, dof)
        ee_iter, lr_ee, lr_normal = self._schedule(n)
        self.learning_rate_ = lr_normal
        P, Y = kernels.place(P, Y)
        xp = array_module(Y)
        history: list[tuple[int, float]] = []
        it = 0
        stopped = False
        # labels[r]: the input row that row r of Y holds (None while unpermuted).
        labels: Any = None

        def as_input(Y: Any) -> np.ndarray:
            host = to_host(Y)
            return host if labels is None else in_input_order(host, labels)

        for phase, (stop, exaggeration, momentum, lr) in enumerate(
                [(ee_iter, float(self.early_exaggeration), 0.5, lr_ee),
                 (self.n_iter, 1.0, 0.8, lr_normal)]):
            if it >= stop or stopped:
                continue
            # both phases time into "optimise" (the key UMAP uses too); the log names each
            name = "early exaggeration" if phase == 0 else "normal phase"
            update, gains = xp.zeros_like(Y), xp.ones_like(Y)
            detail = (f"{name}, {stop - it} iterations on {backend.name}, {self.repulsion_} repulsion "
                      f"({self.repulsion_reason_}), lr={lr:.4g}")
            with progress.stage("optimise", detail):
                while it < stop:
                    if it in REORDER_AT and kernels.reorder is not None:
                        order = kernels.reorder(P, Y)
                        if order is not None:
                            Y, update, gains = Y[order], update[order], gains[order]
                            labels = order if labels is None else labels[order]
                    rep, z = repulsion(Y)
                    report = (it + 1) % REPORT_EVERY == 0
                    call = self.callback is not None and (it + 1) % callback_every == 0
                    if report or call:
                        kl = kernels.kl(P, Y, z, dof)
                    kernels.step(P, Y, rep, z, dof, exaggeration, lr, momentum, update, gains)
                    kernels.advance(Y, update)
                    it += 1
                    if report:
                        history.append((it, kl))
                        progress.log(f"iteration {it}: KL divergence {kl:.4f}")
                    if call and self.callback is not None and self.callback(it, kl, as_input(Y).astype(np.float32)):
                        progress.log(f"stopped by the callback after iteration {it}/{self.n_iter}")
                        stopped = True
                        break
        Y_host = as_input(Y)
        if not np.isfinite(Y_host).all():
            raise DivergedError("t-SNE optimisation diverged (non-finite coordinates); "
                                "lower learning_rate or early_exaggeration")
        _, z = repulsion(Y)
        self.kl_divergence_ = kernels.kl(P, Y, z, dof)
        self.kl_history_ = history
        self.n_iter_ = it
        self.embedding_ = Y_host.astype(np.float32)

    def fit_transform(self, X: Any, y: Any = None) -> Any:
        """Embed ``X`` and return the embedding (in the input's array type)."""
        self.fit(X)
        return to_output(self.embedding_, X)

    # ------------------------------------------------------------------ transform
    def transform(self, X: Any, n_iter: int = 250) -> Any:
        """Place new points in the fitted embedding, which stays fixed.

        Each new point gets Gaussian affinities (perplexity 5) to its nearest fitted
        points, starts at their affinity-weighted mean and is moved by gradient
        descent on its own KL divergence against the fixed embedding; new points do
        not interact with one another (as in openTSNE).

        A model fitted on the cuda backend places new points on the CPU (the fitted
        embedding and the reduced training data are kept on the host); one fitted on
        cuml cannot place new points (cuML's t-SNE has no ``transform``).

        Parameters
        ----------
        X : array of shape (n_new, n_features)
        n_iter : int, default=250
            Optimisation steps, 0 to 100,000.

        Returns
        -------
        array of shape (n_new, n_components), in the input's array type
        """
        self._check_fitted("embedding_")
        capabilities = fitted_backend(self.backend_).capabilities
        if "tsne" not in capabilities.transform:
            raise Unsupported(capabilities.hints.get("transform=tsne", f"backend={self.backend_!r} cannot "
                                                     "place new points; fit with backend='cpu'"))
        X_in = X
        X = validate_vectors(X, name="new points", min_rows=1)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but TSNE is expecting {self.n_features_in_} "
                             f"features as input: it was fitted on {self.n_features_in_}")
        n_iter = check_int(n_iter, "n_iter", 0, MAX_ITER)
        # Placing points does not choose a backend again (it would reset backend_):
        # it runs on the CPU for every fitted backend.
        progress = Progress(self.verbose, type(self).__name__)
        ref = self.embedding_.astype(np.float64)
        n_ref, m = ref.shape[0], X.shape[0]
        perplexity = min(TRANSFORM_PERPLEXITY, (n_ref - 1) / 3.0)
        k = min(n_ref, max(1, int(3 * perplexity)))
        cpu = get_spec("cpu").kernel_table()  # the fitted state lives on the host
        with progress.stage("knn", f"{m:,} new points, k={k}, exact on cpu"):
            Xq = self._prep.transform(to_host(X))
            stages.check_new_points_scale(Xq, self._metric)
            kwargs = {"metric_kwds": self._prep.metric_kwds} if self._prep.metric_kwds else {}
            indices, distances = cpu.knn(self._X_ref, k, self._prep.search_metric, queries=Xq, **kwargs)
        cond, _ = ktsne.conditional_affinities(distances, perplexity, squared=self._metric == "euclidean")
        indptr = np.arange(0, m * k + 1, k, dtype=np.int64)
        idx, vals = indices.ravel().astype(np.int32), cond.ravel().astype(np.float64)
        Y = np.einsum("mk,mkd->md", cond.astype(np.float64), ref[indices])
        repulsion = cpu.tsne.repulsion(n_ref, ref.shape[1], float(self.dof))[0]
        update, gains = np.zeros_like(Y), np.ones_like(Y)
        with progress.stage("place", f"{n_iter} iterations on cpu"):
            for _ in range(n_iter):
                rep, z_rows = repulsion(ref, Y)
                ktsne.gradient_step(indptr, idx, vals, Y, ref, float(self.dof), rep, 1.0 / z_rows,
                                    1.0, 2.0, 0.1, 0.5, update, gains)
                Y += update
        return to_output(Y.astype(np.float32), X_in)
