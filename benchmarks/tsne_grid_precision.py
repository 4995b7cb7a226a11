"""Float32 vs float64 charge grids for the t-SNE grid repulsion, on the CPU twin.

The GPU twin spreads charges with float32 atomics into a float32 grid. This measures
what that costs in accuracy, with the CPU twin's spread (a serial float32 sum, the
same rounding per add as an atomic one, in a worse order: one long running sum per
node): forces and Z from a float32 grid against a float64 grid, next to the
interpolation's own error (against the exact sums on a subsample).

    PYTHONPATH=. python benchmarks/tsne_grid_precision.py [n]
"""

from __future__ import annotations

import sys

import numpy as np

from embedscope.kernels.tsne import exact_repulsion, fft


def main(n: int = 1_000_000) -> None:
    rng = np.random.default_rng(0)
    for label, scale in (("narrow (early)", 2.0), ("wide (late)", 40.0)):
        Y = rng.normal(size=(n, 2)) * scale
        Y[: n // 4] *= 0.05  # a dense core: many charges on the same nodes
        rep = fft.FFTRepulsion()
        lo, hi = fft._bounds(Y)
        layout = rep._layout(lo, hi, 2)
        results = {}
        for dtype in (np.float32, np.float64):
            rep.grid_dtype = dtype
            results[dtype] = rep._evaluate(Y, None, lo, *layout)
        (r32, z32), (r64, z64) = results[np.float32], results[np.float64]
        sub = rng.choice(n, 3000, replace=False)
        ex, _ = exact_repulsion(Y[sub])
        small, _ = fft.FFTRepulsion()(Y[sub])
        f_err = np.linalg.norm(r32 - r64) / np.linalg.norm(r64)
        interp = np.linalg.norm(small - ex) / np.linalg.norm(ex)
        print(f"{label}: n={n:,} grid {layout[0] * 3} nodes/axis; float32 vs float64 grid: forces "
              f"{f_err:.2e} relative, Z {abs(z32 - z64) / z64:.2e}; interpolation error (3k points "
              f"vs exact) {interp:.2e}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
