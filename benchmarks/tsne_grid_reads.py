"""The GPU grid twin's layout policy (bounds read every few steps, with a margin) on the CPU.

:class:`~embedscope.kernels.tsne.gpu.FFTRepulsionGPU` reads the embedding's bounds
only now and then and lays its grid out ahead of the points. Its arithmetic is
checked against the CPU twin in tests/cudasim; what this script measures is the
policy over a whole fit: the CPU backend's t-SNE with its grid repulsion evaluated on
the grids the GPU twin would lay out (the CPU twin's ``_evaluate``, the same grid
arithmetic), against the plain CPU fit. Reports KL, trustworthiness, reads of the
bounds, spectra builds and how many point-steps fell outside the grid.

    PYTHONPATH=. python benchmarks/tsne_grid_reads.py [n] [n_iter]
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from embedscope import TSNE, make_mixture, trustworthiness
from embedscope.backends import cpu as cpu_backend
from embedscope.kernels.tsne import fft
from embedscope.kernels.tsne.gpu import FFTRepulsionGPU, Grid


class PolicyOnHost(FFTRepulsionGPU):
    """The GPU twin's bounds reads and layouts, evaluated by the CPU twin on the host."""

    outside_total = 0

    def _evaluate_device(self, S: Any, T: Any, grid: Grid, xp: Any) -> tuple[Any, Any]:
        lo = np.array(grid.lo)
        out = ((S < lo) | (S > lo + grid.n_boxes * grid.box_width)).any(axis=1).sum()
        self._outside[0] += out
        PolicyOnHost.outside_total += int(out)
        rep, z = fft.FFTRepulsion._evaluate(self, S, T, lo, grid.n_boxes, grid.box_width, grid.fft_len)
        return rep, z


def main(n: int = 20_000, n_iter: int = 750) -> None:
    X, _ = make_mixture(n, 50, 20, random_state=0)
    builds = {"n": 0}
    spectra = fft.FFTRepulsion._kernel_spectra

    def counting(self: Any, *key: Any) -> Any:
        builds["n"] += tuple(key) != self._cache_key
        return spectra(self, *key)

    fft.FFTRepulsion._kernel_spectra = counting  # type: ignore[method-assign]
    plain = cpu_backend.tsne_repulsion
    made: list[PolicyOnHost] = []

    def policy(n_points: int, dim: int, dof: float) -> Any:
        routine, name = plain(n_points, dim, dof)
        if name != "fft":
            return routine, name
        made.append(PolicyOnHost(dof=dof))
        return made[-1], name

    for label in ("cpu grid", "gpu policy"):
        cpu_backend.tsne_repulsion = plain if label == "cpu grid" else policy
        cpu_backend.kernels.cache_clear()  # the kernel table reads the module's routine
        builds["n"] = 0
        start = time.perf_counter()
        est = TSNE(backend="cpu", n_iter=n_iter, random_state=0, verbose=False).fit(X)
        seconds = time.perf_counter() - start
        trust = trustworthiness(X[:5000], est.embedding_[:5000], 15)
        extra = ""
        if made:
            extra = (f", bounds read {made[-1].syncs_} times in {est.n_iter_ + 1} calls, "
                     f"point-steps outside the grid {PolicyOnHost.outside_total}")
        print(f"{label}: n={n:,} KL {est.kl_divergence_:.4f}, trust {trust:.4f}, spectra builds "
              f"{builds['n']}, {seconds:.1f} s{extra}", flush=True)
    cpu_backend.tsne_repulsion = plain
    cpu_backend.kernels.cache_clear()


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
