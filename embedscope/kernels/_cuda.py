"""The one place that imports ``numba.cuda``, lazily.

GPU twins define their kernels inside functions that call :func:`cuda`, so importing
a kernel module never touches CUDA: it loads on machines with no GPU and no
numba-cuda. Set ``NUMBA_ENABLE_CUDASIM=1`` before the first call to run the kernels
in numba's CUDA simulator (CI does, on tiny inputs, to test their logic on a CPU).
"""

from __future__ import annotations

import os
from functools import lru_cache
from types import ModuleType

import numpy as np

#: Threads per block of the row-wise kernels; a power of two (tree reductions).
THREADS = 128


@lru_cache(maxsize=1)
def cuda() -> ModuleType:
    """``numba.cuda``, with numpy 2.5's removed ``row_stack`` restored first.

    numba-cuda 0.30 still calls ``np.row_stack`` while compiling; numpy 2.5 dropped
    the alias of ``np.vstack``. Restoring it here, once, keeps the fix in one place.
    """
    if not hasattr(np, "row_stack"):
        np.row_stack = np.vstack  # noqa: NPY201 - restoring the removed alias is the point
    try:
        from numba import cuda as numba_cuda
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "the cuda backend's kernels need numba-cuda: pip install 'embedscope[gpu]'"
        ) from exc
    return numba_cuda


def simulated() -> bool:
    """True when kernels run in numba's CUDA simulator (no GPU involved)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def device_array_module(simulate: bool | None = None) -> ModuleType:
    """cupy on a GPU; numpy under the simulator, whose kernels take host arrays."""
    if simulated() if simulate is None else simulate:
        return np
    import cupy

    return cupy
