"""What every reducer shares: the scikit-learn estimator contract and backend choice."""

from __future__ import annotations

import inspect
import math
import numbers
from dataclasses import replace
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

from embedscope import _array
from embedscope._progress import Progress
from embedscope.backends import Backend, Unsupported, resolve_backend
from embedscope.backends import _registry as dispatch


class NotFittedError(_SklearnNotFittedError):
    """A fitted attribute or ``transform`` was used before ``fit``.

    scikit-learn's own ``NotFittedError`` (so also an ``AttributeError`` and a
    ``ValueError``), so code written for scikit-learn catches it.
    """


#: The ``timings_`` keys of a fit of UMAP and t-SNE, in the order the stages run:
#: both build a neighbour graph (``affinities``) and optimise a layout against it.
#: PCA has its own two (``pca``, then ``transform`` when it projects).
GRAPH_STAGES = ("preprocess", "knn", "affinities", "init", "optimise")


def validate_random_state(seed: Any) -> None:
    """Refuse a seed numpy cannot use, naming ``random_state`` and what it accepts.

    Draws nothing, so a caller's Generator or RandomState is left as it was.
    """
    if isinstance(seed, bool):
        raise ValueError(f"random_state={seed!r} must be None, an integer >= 0 or a numpy Generator")
    if isinstance(seed, numbers.Integral):
        if seed < 0:
            raise ValueError(f"random_state={seed} must be None, an integer >= 0 or a numpy Generator")
        return
    if seed is None or isinstance(seed, np.random.Generator | np.random.RandomState):
        return
    raise ValueError(f"random_state={seed!r} must be None, an integer >= 0 or a numpy Generator")


def derive_seed(random_state: Any, high: int = 2**31 - 1) -> tuple[int, np.random.Generator]:
    """The integer seed a fit runs on, drawn from ``random_state``, and its generator.

    Every reducer takes its seed here, so one ``random_state`` means the same thing in
    all of them: an int (or None) seeds a fresh Generator, a Generator is drawn from
    (advancing it), a legacy RandomState gives one draw to seed a Generator. The
    generator is returned for whatever else the fit draws (t-SNE's random init).

    Parameters
    ----------
    random_state : None, int >= 0, numpy Generator or RandomState
    high : int, default=2**31 - 1
        The seed lies in ``[0, high)``.

    Returns
    -------
    seed : int
    rng : numpy.random.Generator
    """
    rng = check_random_state(random_state)
    return int(rng.integers(high)), rng


def check_random_state(seed: Any) -> np.random.Generator:
    """A numpy Generator from None, an int >= 0, a Generator or a legacy RandomState."""
    validate_random_state(seed)
    if seed is None or isinstance(seed, numbers.Integral):
        return np.random.default_rng(seed)
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed.randint(0, 2**31 - 1))


class BaseReducer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """A scikit-learn transformer: parameters live in ``__init__`` exactly as given.

    ``fit`` validates them with ``_validate_params(n_samples, n_features)``, which
    returns the checked values and sets nothing. Subclasses set
    ``_supported_backends`` and ``_fitted_attribute`` and call :meth:`_start` at the
    top of ``fit``, which resolves the backend (recording ``backend_`` and
    ``backend_reason_``) and opens the stage log.

    From scikit-learn come ``get_params`` / ``set_params`` (so ``clone`` and grid
    searches), tags, ``check_is_fitted``, ``set_output``, ``get_feature_names_out``
    (``pca0``, ``pca1``, ...) and the HTML repr of notebooks.
    """

    _supported_backends: tuple[str, ...] = ("cpu",)
    #: Set by every fit; ``check_is_fitted`` and ``transform`` look for it.
    _fitted_attribute: str = "embedding_"

    @classmethod
    def _param_names(cls) -> list[str]:
        """Constructor parameter names (the CLI maps its flags onto them)."""
        return list(cls._get_param_names())

    def set_params(self, **params: Any) -> BaseReducer:
        """Set constructor parameters; an unknown name is a ``ValueError`` listing the valid ones."""
        valid = set(self._param_names())
        for name in params:
            if name not in valid:
                raise ValueError(f"{type(self).__name__} has no parameter {name!r}; valid: {sorted(valid)}")
        return super().set_params(**params)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, self._fitted_attribute)

    @property
    def _n_features_out(self) -> int:
        # ClassNamePrefixFeaturesOutMixin names one output column per dimension
        return int(self.embedding_.shape[1])

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = []
        params = self.get_params(deep=False)
        for name in (name for name in defaults if name in params):  # signature order, not sorted
            value, default = params[name], defaults[name]
            same = default is value
            if not same:
                try:
                    same = bool(default == value)
                except Exception:
                    same = False
            if not same:
                changed.append(f"{name}={value!r}" if not isinstance(value, np.ndarray) else f"{name}=<array>")
        return f"{type(self).__name__}({', '.join(changed)})"

    def _refusal(self, backend: str, n: int) -> str | None:
        """Why ``backend`` cannot run these settings on ``n`` points, or None.

        Subclasses name what a GPU backend cannot do (too many neighbours, a
        parameter cuML lacks, ...) so that it is refused before any work.
        """
        return None

    def _start(self, X_shape: tuple[int, ...] | None = None) -> tuple[Backend, Progress]:
        """Resolve the backend, record ``backend_`` / ``backend_reason_``, open the log.

        A backend that cannot run the settings raises :class:`Unsupported`, except
        that ``"auto"`` first passes over a GPU backend that would refuse (the user did
        not ask for it) and says why in ``backend_reason_``.
        """
        n = X_shape[0] if X_shape else 0
        supports = self._supported_backends
        refused: dict[str, str] = {}
        if self.backend == "auto":
            # through the module, so a probe replaced there (tests, a GPU mock) is the one used
            probes = {"cuml": dispatch.probe_cuml, "cuda": dispatch.probe_cuda}
            refused = {name: why for name, probe in probes.items()
                       if name in supports and probe().ok and (why := self._refusal(name, n)) is not None}
            supports = tuple(name for name in supports if name not in refused)
        backend = resolve_backend(self.backend, supports=supports)
        if (why := self._refusal(backend.name, n)) is not None:
            raise Unsupported(why)
        reason = backend.reason
        for name, why in refused.items():
            reason = reason.replace(f"{name}: not implemented for this reducer",
                                    f"{name}: cannot run these settings ({why.split(';')[0]})")
        backend = replace(backend, reason=reason)
        self.backend_, self.backend_reason_ = backend.name, reason
        progress = Progress(getattr(self, "verbose", False), type(self).__name__)
        shape = f" on {X_shape[0]:,} x {X_shape[1]:,}" if X_shape else ""
        progress.log(f"backend {backend}{shape}")
        return backend, progress

    def _check_fitted(self, attribute: str | None = None) -> None:
        if not hasattr(self, attribute or self._fitted_attribute):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")


def _range_text(low: float | None, high: float | None, open_low: bool = False) -> str:
    if low is None and high is None:
        return "any finite number"
    if high is None:
        return f"{'>' if open_low else '>='} {low:g}"
    if low is None:
        return f"<= {high:g}"
    return f"in {'(' if open_low else '['}{low:g}, {high:g}]"


def check_int(value: Any, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int within ``[low, high]``, else a ValueError naming ``name`` and the range."""
    bound = f">= {low}" if high is None else f"between {low} and {high}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer {bound}; got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name}={value} must be {bound}")
    return int(value)


def _finite(value: numbers.Real) -> bool:
    # math, not numpy: np.isfinite refuses Python ints beyond int64
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range
        return False


def check_float(value: Any, name: str, low: float | None = None, high: float | None = None,
                *, open_low: bool = False) -> float:
    """``value`` as a finite float within bounds, else a ValueError naming ``name`` and the range."""
    accepted = _range_text(low, high, open_low)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not _finite(value):
        what = "a finite number" if accepted == "any finite number" else f"a finite number {accepted}"
        raise ValueError(f"{name} must be {what}; got {value!r}")
    if (low is not None and (value < low or (open_low and value == low))) or (high is not None and value > high):
        raise ValueError(f"{name}={value:g} must be {accepted}")
    return float(value)


#: Largest magnitude of a given initial layout: both optimisers work at unit scale
#: (UMAP in float32, whose squared distances overflow near 1e19).
MAX_INIT_MAGNITUDE = 1e10


def check_init_array(init: Any, n: int, n_components: int, name: str = "init") -> np.ndarray:
    """A given initial layout as a host float64 array, else a ValueError naming ``name``."""
    layout = np.asarray(_array.to_host(init))
    if layout.shape != (n, n_components):
        raise ValueError(f"{name} has shape {layout.shape}; expected ({n}, {n_components})")
    if layout.dtype.kind not in "biuf" or not np.isfinite(layout).all():
        raise ValueError(f"{name} must be a finite numeric array")
    layout = layout.astype(np.float64)
    if np.abs(layout).max() > MAX_INIT_MAGNITUDE:
        raise ValueError(f"{name} has values beyond +-{MAX_INIT_MAGNITUDE:g}; rescale it "
                         "(both optimisers work at unit scale)")
    return layout


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
    xp = _array.array_module(X)
    top = max(abs(float(xp.max(X))), abs(float(xp.min(X))))
    if top == 0.0 or SAFE_MAGNITUDE[0] <= top <= SAFE_MAGNITUDE[1]:
        return 1.0
    return float(2.0 ** np.frexp(top)[1])


def check_new_points_scale(Z: Any, metric: str, name: str = "new points") -> None:
    """Refuse new points whose squared distances overflow float32 at the fitted scale.

    ``Z`` is already divided by the scale found at fit, so ordinary new points lie
    near 1; cosine compares directions only and is never refused.
    """
    if metric == "cosine":
        return
    xp = _array.array_module(Z)
    top = max(abs(float(xp.max(Z))), abs(float(xp.min(Z))))
    if top > SAFE_MAGNITUDE[1]:
        raise ValueError(f"{name}: values reach {top:.3g} times the magnitude of the fitted data, so "
                         "their squared distances overflow float32; rescale them as the fitted data was")


def degenerate_reason(X: Any, metric: str, *, chunk_rows: int = 4096) -> str | None:
    """Why a neighbour graph of ``X`` under ``metric`` would be meaningless, or None.

    All rows identical leaves every distance 0 (no neighbourhood to preserve); under
    cosine, zero rows have no direction and rows that are multiples of one another are
    identical. Compares every row with the first, block by block, and stops at the
    first block that differs, so ordinary data costs one small block.
    """
    xp = _array.array_module(X)
    n = X.shape[0]
    cosine = metric == "cosine"

    def unit(block: Any) -> Any:
        block = xp.asarray(block, dtype=xp.float64)
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
        return f"all {n} rows are zero, which have no cosine distance"
    if cosine:
        return f"all {n} rows point the same way, so every cosine distance is 0"
    return f"all {n} rows are identical"
