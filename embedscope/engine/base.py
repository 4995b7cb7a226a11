"""What every reducer shares: the scikit-learn estimator contract and backend choice."""

from __future__ import annotations

import inspect
import numbers
from dataclasses import replace
from typing import Any

import numpy as np

from embedscope._progress import Progress
from embedscope.engine import dispatch
from embedscope.engine.dispatch import Backend, Unsupported, resolve_backend


class NotFittedError(AttributeError, ValueError):
    """A fitted attribute or ``transform`` was used before ``fit``."""


def check_random_state(seed: Any) -> np.random.Generator:
    """A numpy Generator from None, an int, a Generator or a legacy RandomState."""
    if seed is None or isinstance(seed, numbers.Integral):
        return np.random.default_rng(seed)
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.RandomState):
        return np.random.default_rng(seed.randint(0, 2**31 - 1))
    raise ValueError(f"random_state={seed!r} must be None, an int or a numpy Generator")


class BaseReducer:
    """Parameters live in ``__init__`` exactly as given; ``fit`` validates them.

    Subclasses set ``_supported_backends`` and call :meth:`_start` at the top of
    ``fit``, which resolves the backend (recording ``backend_`` and
    ``backend_reason_``) and opens the stage log.
    """

    _supported_backends: tuple[str, ...] = ("cpu",)

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters as given (scikit-learn convention)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> BaseReducer:
        """Set constructor parameters; unknown names are a ``ValueError``."""
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"{type(self).__name__} has no parameter {name!r}; valid: {sorted(valid)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = []
        for name, value in self.get_params().items():
            default = defaults.get(name, inspect.Parameter.empty)
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

    def _check_fitted(self, attribute: str) -> None:
        if not hasattr(self, attribute):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")


def check_int(value: Any, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int within ``[low, high]``, else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name}={value} must be {bound}")
    return int(value)


def check_float(value: Any, name: str, low: float | None = None, high: float | None = None,
                *, open_low: bool = False) -> float:
    """``value`` as a finite float within bounds, else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    if low is not None and (value < low or (open_low and value == low)):
        raise ValueError(f"{name}={value} must be {'>' if open_low else '>='} {low}")
    if high is not None and value > high:
        raise ValueError(f"{name}={value} must be <= {high}")
    return float(value)
