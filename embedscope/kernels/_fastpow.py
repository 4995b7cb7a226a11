"""``x ** p`` for positive float32 ``x`` in plain arithmetic, so that loops of it vectorise.

UMAP's low-dimensional kernel ``1 / (1 + a d^(2b))`` takes a power of every sampled
distance, and libm's ``powf`` was the largest single cost of the CPU layout: on a
100,000-point graph, replacing it by a plain multiply took the epochs from 6.6 s to
3.9 s. ``powf`` is a call, so a loop of them stays scalar. Here
``x ** p = 2 ** (p log2 x)`` with the exponent and mantissa read from the float's
bits, ``log2`` of the mantissa from the ``atanh`` series and ``2 ** f`` from its
Taylor series, truncated where the dropped terms fall below float32's rounding: a
loop over a group of distances then runs 8 lanes at a time (AVX2), about 0.35 ns a
power against libm's 3 ns. One at a time it is no faster than ``powf``; it pays only
in loops that LLVM vectorises (which needs ``error_model="numpy"`` in the caller).

Relative error against float64: under 3e-6 for ``x`` in [1e-8, 1e8], under 1e-5
in [1e-30, 1e30] (float32 rounding of ``p log2 x`` dominates; tested in
tests/test_umap.py). Results are clamped to float32's normal range.

:func:`log_normal` is the float64 natural log the same way (ten terms of the series:
within 3e-16 of libm's), for loops where a ``log`` per element is the whole cost:
t-SNE's KL divergence takes one per entry of P, and with libm's it cost four
iterations' time at 100,000 points (tests/test_tsne.py).
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from numba.core import types
from numba.core.extending import intrinsic

__all__ = ["log_normal", "pow_positive"]


def _bitcast(source: types.Type, target: types.Type) -> Any:
    """An intrinsic reading a ``source`` scalar's bits as a ``target`` of the same width."""

    def cast(typingctx, x):  # pragma: no cover - compiled into numba kernels
        if x != source:
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(target))

        return target(source), codegen

    cast.__name__ = f"_bitcast_{source}_{target}"
    return intrinsic(cast)


_float_bits = _bitcast(types.float32, types.int32)
_bits_float = _bitcast(types.int32, types.float32)
_double_bits = _bitcast(types.float64, types.int64)
_bits_double = _bitcast(types.int64, types.float64)


_LN2 = math.log(2.0)
# log2(m) = (2 / ln 2) atanh(t), t = (m - 1) / (m + 1); |t| <= 0.1716 for m in [1/sqrt2, sqrt2]
_L1 = np.float32(2.0 / _LN2)
_L3 = np.float32(2.0 / (3.0 * _LN2))
_L5 = np.float32(2.0 / (5.0 * _LN2))
_L7 = np.float32(2.0 / (7.0 * _LN2))
# 2^f = exp(f ln 2), |f| <= 1/2
_E1 = np.float32(_LN2)
_E2 = np.float32(_LN2**2 / 2.0)
_E3 = np.float32(_LN2**3 / 6.0)
_E4 = np.float32(_LN2**4 / 24.0)
_E5 = np.float32(_LN2**5 / 120.0)
_E6 = np.float32(_LN2**6 / 720.0)
_HALF_SQRT2_BITS = int(np.array(math.sqrt(0.5), dtype=np.float32).view(np.int32))
_TINY = np.float32(1e-37)


@numba.njit(cache=True, inline="always")
def _log2(x):  # pragma: no cover - numba
    bits = _float_bits(max(x, _TINY))  # zero and subnormals read as the smallest normal
    # Split x = 2^e m with m in [1/sqrt2, sqrt2) by integer arithmetic on the bits
    # (no compare, so no branch to mispredict where the loop stays scalar).
    exponent = (bits - _HALF_SQRT2_BITS) >> 23
    mantissa = _bits_float(np.int32(bits - (exponent << 23)))
    t = (mantissa - np.float32(1.0)) / (mantissa + np.float32(1.0))
    t2 = t * t
    return np.float32(exponent) + t * (_L1 + t2 * (_L3 + t2 * (_L5 + t2 * _L7)))


@numba.njit(cache=True, inline="always")
def _exp2(y):  # pragma: no cover - numba
    y = min(max(y, np.float32(-126.0)), np.float32(126.0))
    whole = np.floor(y + np.float32(0.5))
    f = y - whole
    scale = _bits_float(np.int32((np.int32(whole) + 127) << 23))
    return scale * (np.float32(1.0) + f * (_E1 + f * (_E2 + f * (_E3 + f * (_E4 + f * (_E5 + f * _E6))))))


@numba.njit(cache=True, inline="always")
def pow_positive(x, p):  # pragma: no cover - numba
    """``x ** p`` for float32 ``x >= 0`` (0 reads as 1e-37) and float32 ``p``."""
    return _exp2(p * _log2(x))


_HALF_SQRT2_BITS64 = int(np.array(math.sqrt(0.5), dtype=np.float64).view(np.int64))
# ln(m) = 2 atanh(t) = sum_k 2 t^(2k+1) / (2k+1); t^2 <= 0.0295, so ten terms leave < 1e-16
_A = tuple(2.0 / (2 * k + 1) for k in range(10))
_EXPONENT_MASK = 0x7FF


@numba.njit(cache=True, inline="always")
def log_normal(x):  # pragma: no cover - numba
    """Natural log of a positive, normal float64 ``x`` (inf and NaN come back as they are).

    Zero, negatives and subnormals are outside the contract (their bits do not split as
    ``2^e m``); callers pass values known to be >= 1 or similar.
    """
    bits = _double_bits(x)
    # an integer test (fastmath callers may drop float NaN checks), and a select rather
    # than an early return, so that loops of it still vectorise
    special = (bits >> 52) & _EXPONENT_MASK == _EXPONENT_MASK
    exponent = (bits - _HALF_SQRT2_BITS64) >> 52
    mantissa = _bits_double(bits - (exponent << 52))
    t = (mantissa - 1.0) / (mantissa + 1.0)
    t2 = t * t
    series = _A[0] + t2 * (_A[1] + t2 * (_A[2] + t2 * (_A[3] + t2 * (_A[4] + t2 * (
        _A[5] + t2 * (_A[6] + t2 * (_A[7] + t2 * (_A[8] + t2 * _A[9]))))))))
    value = exponent * _LN2 + t * series
    return x if special else value
