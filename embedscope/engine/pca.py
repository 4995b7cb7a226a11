"""Principal component analysis on every backend, streaming where the data is large."""

from __future__ import annotations

import importlib
import numbers
from typing import Any

import numpy as np

from embedscope._array import as_float, is_cupy, is_dask, to_host, to_output
from embedscope._progress import Progress
from embedscope.engine.base import BaseReducer, check_int, derive_seed, validate_random_state
from embedscope.io.validate import validate_vectors
from embedscope.kernels import pca as kpca

SOLVERS = ("auto", "full", "randomized", "covariance")
#: Subspace iterations beyond this add nothing (7 already converges); each costs two
#: passes over the data, so a typo such as 10**6 would run for hours.
MAX_ITERATED_POWER = 100


def _is_streamed(X: Any) -> bool:
    return isinstance(X, np.memmap)


def _well_scaled(cov: Any, dtype: Any, xp: Any) -> bool:
    """False where the covariance overflowed, or its scale lies in the subnormals of ``dtype``.

    All-zero covariances (constant data) also fail, and are recomputed at no harm.
    """
    if not bool(xp.isfinite(cov).all()):
        return False
    # Below this, squares of the input's type keep too few digits to trust.
    floor = 1e-30 if np.dtype(dtype) != np.float64 else 1e-280
    return float(xp.abs(xp.diagonal(cov)).max()) > floor


class PCA(BaseReducer):
    """Principal component analysis (scikit-learn compatible).

    The same code runs on numpy and cupy; the covariance and randomized solvers read
    the data in blocks, so a memory-mapped ``.npy`` larger than RAM is reduced with
    bounded memory (each pass streams the file through a small buffer).

    Parameters
    ----------
    n_components : int, float or None, default=None
        Components to keep. An int; a float in (0, 1) keeps the fewest components
        that explain that fraction of the variance (full and covariance solvers);
        None keeps ``min(n_samples, n_features)``.
    whiten : bool, default=False
        Scale projections to unit variance.
    svd_solver : {"auto", "full", "randomized", "covariance"}, default="auto"
        ``"full"``: LAPACK SVD of the centred data (in memory). ``"covariance"``:
        one streamed pass builds the d x d covariance, then an eigendecomposition;
        fastest for tall data with up to a few thousand features. ``"randomized"``:
        Halko subspace iteration, streamed. ``"auto"`` picks covariance for tall data
        with ``n_features <= 1000`` (or any memory-mapped input with
        ``n_features <= 4096``), randomized for other large inputs, else full.
    iterated_power : int or "auto", default="auto"
        Subspace iterations of the randomized solver (7 when few components, else 4);
        0 to 100.
    random_state : int >= 0, Generator or None, default=None
        Seed of the randomized solver.
    backend : {"auto", "cpu", "cuda", "cuml"}, default="auto"
    verbose : bool, default=False
        Log stages to stderr.

    Attributes
    ----------
    components_ : array of shape (n_components, n_features)
        Principal axes; the largest-magnitude entry of each is positive.
    explained_variance_ : array of shape (n_components,)
    explained_variance_ratio_ : array of shape (n_components,)
    singular_values_ : array of shape (n_components,)
    mean_ : array of shape (n_features,)
    n_components_ : int
    n_samples_, n_features_in_ : int
    svd_solver_ : str
        The solver ``"auto"`` resolved to.
    embedding_ : array of shape (n_samples, n_components_)
        The training data projected (what ``fit_transform`` returned), in the input's
        array type, so a fitted PCA can be plotted like UMAP and t-SNE. ``fit`` pays
        one projection pass for it; ``fit_transform`` none.
    backend_, backend_reason_ : str
        The backend that ran, and why (``"requested"``, or what ``auto`` weighed).
    backend_considered_ : list of (str, str)
        Each backend ``auto`` weighed, in order, with why it was passed over, then the
        pick (empty for an explicit backend).
    timings_ : dict of str to float
        Seconds per stage: ``pca``, ``transform``.

    Examples
    --------
    >>> from embedscope import PCA, make_mixture
    >>> X, _ = make_mixture(1000, 20)
    >>> PCA(n_components=2).fit_transform(X).shape
    (1000, 2)
    """

    _reducer_name = "pca"
    _fitted_attribute = "components_"

    def __init__(
        self,
        n_components: int | float | None = None,
        *,
        whiten: bool = False,
        svd_solver: str = "auto",
        iterated_power: int | str = "auto",
        random_state: Any = None,
        backend: str = "auto",
        verbose: bool = False,
    ) -> None:
        self.n_components = n_components
        self.whiten = whiten
        self.svd_solver = svd_solver
        self.iterated_power = iterated_power
        self.random_state = random_state
        self.backend = backend
        self.verbose = verbose

    # ------------------------------------------------------------------ validation
    def _validate_params(self, n: int, d: int) -> dict[str, Any]:
        """Every constructor parameter checked against ``n`` x ``d`` data; sets nothing.

        Returns the checked values; a bad one is a ValueError naming it and its range.
        """
        if self.svd_solver not in SOLVERS:
            raise ValueError(f"svd_solver={self.svd_solver!r}; choose one of {', '.join(SOLVERS)}")
        nc = self.n_components
        if isinstance(nc, bool) or (nc is not None and not isinstance(nc, numbers.Real)):
            raise ValueError(f"n_components must be an int, a float in (0, 1) or None; got {nc!r}")
        if isinstance(nc, numbers.Integral):
            if not 1 <= nc <= min(n, d):  # there are no more principal axes than that
                raise ValueError(f"n_components={nc} must be between 1 and {min(n, d)} "
                                 f"(min(n_samples, n_features) = min({n}, {d}))")
        elif isinstance(nc, numbers.Real) and not 0 < nc < 1:
            raise ValueError(f"n_components={nc} as a float must be a fraction of variance in (0, 1)")
        iterated_power = self.iterated_power
        if iterated_power != "auto":
            iterated_power = check_int(iterated_power, "iterated_power", 0, MAX_ITERATED_POWER)
        validate_random_state(self.random_state)
        return {"n_components": nc, "svd_solver": self.svd_solver, "iterated_power": iterated_power}

    def _choose_solver(self, X: Any, n: int, d: int) -> str:
        if self.svd_solver != "auto":
            return self.svd_solver
        k = min(n, d) if self.n_components is None else self.n_components
        if _is_streamed(X):
            return "covariance" if d <= 4096 else "randomized"
        if d <= 1000 and n >= 10 * d:
            return "covariance"
        if isinstance(k, numbers.Integral) and max(n, d) > 500 and k < 0.8 * min(n, d):
            return "randomized"
        return "full"

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any = None) -> PCA:
        """Fit the principal axes of ``X``.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
            numpy, memory-mapped numpy, cupy, or a ``dask.array`` (fitted in one
            distributed pass; ``transform`` then returns a lazy ``dask.array``).
        y : ignored

        Returns
        -------
        self
        """
        self._fit_project(X)
        return self

    def fit_transform(self, X: Any, y: Any = None) -> Any:
        """Fit and project ``X``; the result has the input's array type.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        array of shape (n_samples, n_components_), also kept as ``embedding_``
        """
        return self._fit_project(X)

    def _fit_project(self, X: Any) -> Any:
        X = self._fit(X)
        self.embedding_ = self._project(X, self._progress)
        return self.embedding_

    @property
    def _n_features_out(self) -> int:
        return int(self.n_components_)

    def _fit(self, X: Any) -> Any:
        distributed = is_dask(X)
        X = X if distributed else validate_vectors(X)
        n, d = X.shape
        self._validate_params(n, d)
        backend, progress = self._start((n, d))
        self._xp = backend.xp
        self.timings_ = progress.timings
        self._progress = progress
        if distributed:
            from embedscope.engine.distributed import fit_pca

            self._xp = np  # the covariance is assembled and decomposed here
            fit_pca(self, X, progress)
            return X
        if backend.delegate is not None:
            backend.delegate.fit_pca(self, X, backend)
            return X
        if backend.xp is np and is_cupy(X):  # a host backend reads a host copy
            X = X.get()
        solver = self._choose_solver(X, n, d)
        if solver == "full" and _is_streamed(X):
            progress.log("svd_solver='full' reads the whole memory-mapped array into memory")
        if solver == "randomized" and not isinstance(self.n_components, numbers.Integral | type(None)):
            raise ValueError("svd_solver='randomized' needs an integer n_components")
        self.svd_solver_ = solver
        self.n_samples_, self.n_features_in_ = n, d
        xp = backend.xp
        with progress.stage("pca", f"{solver} solver, {n:,} x {d:,} -> {self.n_components or min(n, d)}"):
            getattr(self, f"_fit_{solver}")(X, xp)
        return X

    def _n_keep(self, variances: Any, total: float, xp: Any) -> int:
        nc = self.n_components
        if nc is None:
            return int(variances.shape[0])
        if isinstance(nc, numbers.Integral):
            return int(nc)
        if total <= 0:  # constant data: no variance to explain, one (zero) axis says so
            return 1
        ratios = np.cumsum(to_host(variances) / total)
        return int(min(np.searchsorted(ratios, nc, side="right") + 1, len(ratios)))

    def _finish(self, mean: Any, variances: Any, components: Any, total: float, xp: Any) -> None:
        dtype = np.float64 if self._x_dtype == np.float64 else np.float32
        if not np.isfinite(total) or not bool(xp.isfinite(variances).all()):
            raise ValueError("X has values so large that their variance overflows float64; "
                             "rescale the data")
        k = self._n_keep(variances, total, xp)
        components = kpca.flip_signs(components[:k].astype(xp.float64), xp)
        self.n_components_ = k
        self.mean_ = mean.astype(dtype)
        self.components_ = components.astype(dtype)
        # Values near float32's limits have variances float32 cannot hold: keep float64.
        top = float(variances[:k].max()) if k else 0.0
        info = np.finfo(dtype)
        outside = top * max(self.n_samples_ - 1, 1) >= float(info.max) or 0.0 < top < float(info.tiny)
        vdtype = np.float64 if outside else dtype
        self.explained_variance_ = variances[:k].astype(vdtype)
        self.explained_variance_ratio_ = (variances[:k] / total).astype(dtype) if total > 0 else xp.zeros(k, dtype)
        self.singular_values_ = xp.sqrt(variances[:k] * max(self.n_samples_ - 1, 1)).astype(vdtype)
        self.noise_variance_ = float((total - float(variances[:k].sum())) / max(min(self.n_samples_, self.n_features_in_) - k, 1)) \
            if k < min(self.n_samples_, self.n_features_in_) else 0.0

    def _fit_covariance(self, X: Any, xp: Any) -> None:
        self._x_dtype = X.dtype
        with np.errstate(over="ignore", invalid="ignore"):
            mean, cov = kpca.mean_and_covariance(X, xp)
        scale = 1.0
        if not _well_scaled(cov, X.dtype, xp):
            # Squares overflowed (values near 1e20 and up in float32) or fell into the
            # subnormals: a second pass in float64 on the data over its largest magnitude
            # (a power of two, so exact). Ordinary data never takes it.
            top = kpca.max_magnitude(X, xp)
            if top > 0:
                scale = float(2.0 ** np.frexp(top)[1])
                mean, cov = kpca.mean_and_covariance(X, xp, scale=scale)
                mean = mean * scale
        k_max = min(self.n_samples_, self.n_features_in_)
        values, vectors = kpca.top_eigh(cov, xp, k_max)
        with np.errstate(over="ignore"):
            self._finish(mean, values * scale**2, vectors, float(xp.trace(cov)) * scale**2, xp)

    def _fit_full(self, X: Any, xp: Any) -> None:
        self._x_dtype = X.dtype
        data = as_float(X, xp)
        mean = data.mean(axis=0, dtype=xp.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            centred = data - mean.astype(data.dtype)
        s = vt = None
        scale = 1.0
        # LAPACK's SVD can loop forever on inf: never hand it an overflowed matrix.
        if bool(xp.isfinite(centred).all()):
            with np.errstate(over="ignore", invalid="ignore"):
                _, s, vt = xp.linalg.svd(centred, full_matrices=False)
        if s is None or not (bool(xp.isfinite(s).all()) and bool(xp.isfinite(vt).all())):
            # Values near float32's limit overflowed the centring or the singular values:
            # once more in float64 over a power of two (exact), cheap next to the failure.
            wide = data.astype(xp.float64) - mean
            top = float(xp.abs(wide).max())
            scale = float(2.0 ** np.frexp(top)[1]) if top > 0 else 1.0
            _, s, vt = xp.linalg.svd(wide / scale, full_matrices=False)
        variances = (s.astype(xp.float64) ** 2) / max(self.n_samples_ - 1, 1) * scale**2
        self._finish(mean, variances, vt, float(variances.sum()), xp)

    def _fit_randomized(self, X: Any, xp: Any) -> None:
        self._x_dtype = X.dtype
        n, d = X.shape
        # _validate_params and _choose_solver admit only an integer n_components here
        k = int(self.n_components) if self.n_components is not None else min(n, d)
        mean = xp.zeros(d, dtype=xp.float64)
        for _, block in kpca.iter_row_chunks(X):
            mean += xp.asarray(block).sum(axis=0, dtype=xp.float64)
        mean /= n
        n_iter = (7 if k < 0.1 * min(n, d) else 4) if self.iterated_power == "auto" else int(self.iterated_power)
        seed = self._seed()
        overflow = ValueError(
            "X has values too large for float32 arithmetic in the randomized solver "
            "(products overflow); rescale the data or use svd_solver='covariance'")
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                s, vt = kpca.randomized_svd(X, mean, k, xp, n_iter=n_iter, random_state=seed)
        except (np.linalg.LinAlgError, FloatingPointError):
            raise overflow from None
        if not (bool(xp.isfinite(s).all()) and bool(xp.isfinite(vt).all())):
            raise overflow
        variances = (s.astype(xp.float64) ** 2) / max(n - 1, 1)
        total = kpca.total_variance(X, mean, xp)
        self._finish(mean, variances, vt, total, xp)

    def _seed(self) -> int | None:
        rs = self.random_state
        if rs is None or isinstance(rs, numbers.Integral):
            # the solver seeds its own Generator with an int (None: a fresh one), so a
            # seeded PCA keeps the values it has always had
            return None if rs is None else int(rs)
        return derive_seed(rs)[0]

    def __getstate__(self) -> dict[str, Any]:
        # the array module is stored by name: a module does not pickle
        state = dict(super().__getstate__())
        if "_xp" in state:
            state["_xp"] = state["_xp"].__name__
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state.get("_xp"), str):
            state = {**state, "_xp": importlib.import_module(state["_xp"])}
        super().__setstate__(state)

    # ------------------------------------------------------------------ projection
    def _projection(self) -> Any:
        xp = self._xp
        components = self.components_.astype(xp.float64)
        if self.whiten:
            variances = self.explained_variance_.astype(xp.float64)
            # 1e-30 guards constant axes; data at 1e-30 has variances far below it, so
            # the guard follows the largest variance there
            floor = min(1e-30, max(float(variances.max()) * 1e-12, 1e-300))
            scale = xp.sqrt(xp.maximum(variances, floor))
            components = components / scale[:, None]
        return components.T.astype(self.components_.dtype)

    def _project(self, X: Any, progress: Progress | None = None) -> Any:
        """``X`` projected; timed into ``progress`` (a fit's log), else only logged."""
        if is_dask(X):
            from embedscope.engine.distributed import pca_transform

            return pca_transform(self, X)
        if getattr(self, "_cuml_model", None) is not None:
            return to_output(self._cuml_model.transform(X), X)
        xp = self._xp
        # transform of new data logs its stage but leaves the fit's timings_ alone
        progress = progress or Progress(self.verbose, type(self).__name__)
        with progress.stage("transform", f"{X.shape[0]:,} rows"):
            with np.errstate(over="ignore", invalid="ignore"):
                out = kpca.centred_matmul(X, self.mean_.astype(self.components_.dtype), self._projection(), xp)
            if not bool(xp.isfinite(out).all()):
                out = self._project_wide(X, xp)
        return to_output(out, X)

    def _project_wide(self, X: Any, xp: Any) -> Any:
        """The projection in float64, for data whose float32 products overflowed.

        Refused when even the projections lie beyond the output type's range.
        """
        dtype = self.components_.dtype
        with np.errstate(over="ignore", invalid="ignore"):
            wide = kpca.centred_matmul(X, self.mean_.astype(np.float64),
                                       self._projection().astype(np.float64), xp)
        if not bool(xp.isfinite(wide).all()) or float(xp.abs(wide).max()) > float(np.finfo(dtype).max):
            raise ValueError(f"X has values so large that its projections overflow {np.dtype(dtype).name}; "
                             "rescale the data")
        return wide.astype(dtype)

    def transform(self, X: Any) -> Any:
        """Project ``X`` onto the fitted axes.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)

        Returns
        -------
        array of shape (n_samples, n_components_), in the input's array type
        """
        self._check_fitted("components_")
        X = X if is_dask(X) else validate_vectors(X, min_rows=1)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but PCA is expecting {self.n_features_in_} "
                             f"features as input: it was fitted on {self.n_features_in_}")
        if self._xp is np and is_cupy(X):
            X = X.get()
        return self._project(X)

    def inverse_transform(self, Y: Any) -> Any:
        """Map projections back to the original space.

        Parameters
        ----------
        Y : array of shape (n_samples, n_components_)

        Returns
        -------
        array of shape (n_samples, n_features_in_)
        """
        self._check_fitted("components_")
        if getattr(self, "_cuml_model", None) is not None:
            return to_output(self._cuml_model.inverse_transform(Y), Y)
        xp = self._xp
        Yx = xp.asarray(Y, dtype=self.components_.dtype)
        if Yx.ndim != 2 or Yx.shape[1] != self.n_components_:
            raise ValueError(f"expected shape (n, {self.n_components_}); got {tuple(Yx.shape)}")
        components = self.components_
        if self.whiten:
            components = components * xp.sqrt(self.explained_variance_)[:, None]
        return to_output(Yx @ components + self.mean_, Y)
