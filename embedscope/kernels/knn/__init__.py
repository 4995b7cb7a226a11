"""k-nearest-neighbour search: CPU twins (exact, NN-descent), GPU twins (exact, IVF).

Contract (shared by every twin)
-------------------------------
- Input: ``data`` (n, d) and optional ``queries`` (m, d), any float dtype, cast to
  float32 C-contiguous rows (:func:`prepare`, which also unit-normalises rows for
  cosine); ``k`` neighbours per query.
- ``indices``: int32 array ``(m, k)``, ``distances``: float32 array ``(m, k)``, each
  row sorted by increasing distance, ties by index; ``-1`` (at distance ``inf``)
  marks a slot no neighbour filled.
- Without ``queries`` the search is a self-join (m = n) and a point is never its own
  neighbour (exact duplicates of it are, at distance 0).
- Metrics (:mod:`.metrics`, :func:`check_metric`, ``METRICS``): ``"euclidean"`` (true,
  not squared, distance), ``"cosine"`` (``1 - cos``; an all-zero row is at distance 1
  from everything), ``"inner_product"`` (``-<q, x>``, so larger products are
  nearer; distances may be negative), ``"correlation"`` (cosine of centred rows),
  searched by matrix products; and ``"manhattan"``, ``"chebyshev"``, ``"minkowski"``
  (``metric_kwds={"p": p}``), ``"hamming"``, ``"jaccard"`` (binary rows), measured
  coordinate by coordinate. Every twin takes every metric except IVF (the first three).

Twins
-----
- CPU, :func:`exact_knn` (:mod:`.exact`): blocked BLAS products and a numba
  selection; host numpy in and out. The reference every other twin is tested against.
- CPU, :func:`nndescent_knn` (:mod:`.nndescent`): RP-tree start and NN-descent,
  approximate, self-join only, reproducible for a seed whatever the thread count.
- CPU, :func:`nearest_neighbors` (:mod:`.router`): the stage UMAP and t-SNE share,
  exact below a size threshold and NN-descent above.
- GPU, ``exact_knn_gpu`` (:mod:`.gpu`, host driver; :mod:`.cuda`, the numba.cuda
  selection kernel; :mod:`.consts`, its sizes, importable without CUDA): numpy or
  cupy in, cupy out (numpy under numba's CUDA simulator), k at most ``consts.KMAX``.
- GPU or CPU, ``ivf_knn`` (:mod:`.ivf`): an IVF-flat index written once for cupy and
  numpy, output on the input's array module; only which neighbours are found is
  approximate.

Parity: tests/test_knn.py checks the CPU twins against brute force;
tests/cudasim/knn_check.py runs ``exact_knn_gpu`` in the CUDA simulator against
:func:`exact_knn` (driven by tests/test_gpu_twins.py, which also compiles the kernel
to PTX and, on a GPU, runs ``test_knn_gpu_parity_on_device``); tests/test_knn_ivf.py
checks ``ivf_knn``'s contract and recall against :func:`exact_knn`. The GPU modules
are not imported here: importing this package loads neither numba.cuda nor cupy.
"""

from __future__ import annotations

from embedscope.kernels.knn.exact import exact_knn
from embedscope.kernels.knn.metrics import METRICS, check_metric, prepare
from embedscope.kernels.knn.nndescent import nndescent_knn
from embedscope.kernels.knn.router import nearest_neighbors

__all__ = [
    "METRICS",
    "check_metric",
    "exact_knn",
    "nearest_neighbors",
    "nndescent_knn",
    "prepare",
]
