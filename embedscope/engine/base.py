"""What every reducer shares: the scikit-learn estimator contract and backend choice."""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

from embedscope import _array
from embedscope._progress import Progress
from embedscope.backends import Backend, Request, resolve_backend


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
        return np.random.default_rng(None if seed is None else int(seed))
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed.randint(0, 2**31 - 1))


class BaseReducer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """A scikit-learn transformer: parameters live in ``__init__`` exactly as given.

    ``fit`` validates them with ``_validate_params(n_samples, n_features)``, which
    returns the checked values and sets nothing. Subclasses set ``_reducer_name``
    (the name backends list in their capabilities) and ``_fitted_attribute``, build
    a :meth:`_request` from their settings, and call :meth:`_start` at the top of
    ``fit``, which resolves the backend (recording ``backend_`` and
    ``backend_reason_``) and opens the stage log.

    From scikit-learn come ``get_params`` / ``set_params`` (so ``clone`` and grid
    searches), tags, ``check_is_fitted``, ``set_output``, ``get_feature_names_out``
    (``pca0``, ``pca1``, ...) and the HTML repr of notebooks.
    """

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

    #: The name reducers register under in backend capabilities ("pca", "umap", ...).
    _reducer_name: str = ""

    def _request(self, n: int) -> Request:
        """What this fit asks of a backend (see :class:`embedscope.backends.Request`).

        Subclasses add the settings a backend might lack (metric, k, knn_method,
        callback); the backend's capabilities decide, so no reducer names a backend.
        """
        return Request(self._reducer_name, n_samples=n, estimator=self)

    def _start(self, X_shape: tuple[int, ...] | None = None) -> tuple[Backend, Progress]:
        """Resolve the backend, record ``backend_`` / ``backend_reason_``, open the log.

        A backend that cannot run the settings raises :class:`Unsupported`, except
        that ``"auto"`` passes over a backend that would refuse (the user did not ask
        for it) and says why in ``backend_reason_``; ``backend_considered_`` keeps
        the (backend, reason) pairs ``auto`` weighed.
        """
        n = X_shape[0] if X_shape else 0
        backend = resolve_backend(self.backend, self._request(n))
        self.backend_, self.backend_reason_ = backend.name, backend.reason
        self.backend_considered_ = list(backend.considered)
        progress = Progress(getattr(self, "verbose", False), type(self).__name__)
        shape = f" on {X_shape[0]:,} x {X_shape[1]:,}" if X_shape else ""
        progress.log(f"backend {backend}{shape}")
        return backend, progress

    def _check_fitted(self, attribute: str | None = None) -> None:
        if not hasattr(self, attribute or self._fitted_attribute):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")


class StopTracker:
    """A reducer's ``callback``, remembering the last step it saw and whether it asked to stop.

    The epoch drivers stop on a true return value (:mod:`embedscope.kernels.umap_sgd`,
    :mod:`embedscope.kernels.pacmap`); the estimator reads ``step`` afterwards to record
    how many steps actually ran.
    """

    def __init__(self, callback: Any) -> None:
        self.callback = callback
        self.step = 0
        self.stopped = False

    def __call__(self, step: int, total: int, layout: Any) -> bool:
        self.step = step
        self.stopped = bool(self.callback(step, total, layout))
        return self.stopped


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
    number = int(value)
    if number < low or (high is not None and number > high):
        raise ValueError(f"{name}={value} must be {bound}")
    return number


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
    number = float(value)  # an int beyond float range was refused as not finite above
    if (low is not None and (number < low or (open_low and number == low))) or (high is not None and number > high):
        raise ValueError(f"{name}={value:g} must be {accepted}")
    return number


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


def check_init(init: Any, choices: tuple[str, ...], n: int, n_components: int, *,
               ignore_case: bool = True) -> None:
    """``init`` is one of ``choices`` or an ``(n, n_components)`` layout, else a ValueError naming it.

    ``ignore_case``: whether ``"PCA"`` counts as ``"pca"`` (the reducer must then
    compare lower-cased too).
    """
    if isinstance(init, str):
        if (init.lower() if ignore_case else init) not in choices:
            raise ValueError(f"init={init!r} must be one of {', '.join(choices)} or an array")
    else:
        check_init_array(init, n, n_components, "init array")


def check_common(estimator: Any) -> None:
    """The checks every graph reducer shares: ``random_state``, ``callback`` and ``pca_components``."""
    validate_random_state(estimator.random_state)
    if estimator.callback is not None and not callable(estimator.callback):
        raise ValueError(f"callback must be callable or None; got {estimator.callback!r}")
    if getattr(estimator, "pca_components", None) is not None:
        check_int(estimator.pca_components, "pca_components", 1)
