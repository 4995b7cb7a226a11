"""PaCMAP kernels: pair choice and the Adam optimiser; CPU twin and GPU twin.

Contract
--------
Pairs (chosen once per fit; :mod:`.pairs` on the CPU, ``sample_pairs_gpu`` in :mod:`.gpu`)
    ``sample_pairs(data, indices, distances, metric_code, n_neighbors, n_mid_near,
    n_further, seed)`` -> ``(nb, mn, fp)``, int32 arrays (n, count), -1 for an empty
    slot. ``data``: the prepared float32 rows the kNN search ran on; ``indices`` /
    ``distances``: the enlarged kNN list (``n_neighbors`` + 50, self excluded,
    ascending). Draws hash ``(seed, point, slot, draw)``, so both twins choose the
    same pairs for a seed (a mid-near draw may differ where two of its 6 distances tie
    within float rounding, which the two devices sum in different orders).
Lists
    ``symmetric_lists(pairs, both=True)`` -> CSR ``(indptr int64, partners int32)``:
    row ``i`` holds its own partners in column order, then (``both``, a fit) every
    ``s`` whose pairs name ``i``, by ``s`` ascending. The GPU twin builds the same
    CSR on the device.
Optimiser
    ``optimize_layout(layout, lists, n_iters, learning_rate=, reference=, callback=,
    log=)``: float32 (n, dim) in, the final float32 layout out; ``lists`` is
    ``(nb_ptr, nb_idx, mn_ptr, mn_idx, fp_ptr, fp_idx)``; ``reference`` is the fixed
    fitted layout for ``transform`` (None for a fit). CPU (:mod:`.cpu`): host numpy.
    GPU (``optimize_layout_gpu`` in :mod:`.gpu`, kernels in :mod:`.cuda`, one thread
    per point): host or device in, a device array out (cupy; numpy under the
    simulator); the callback sees the live device array.

Every point's gradient is summed from its own lists in a fixed order, so a seeded
layout is the same for any thread count, and the GPU agrees up to float rounding.

Parity: tests/cudasim/pacmap_check.py (driven by tests/test_gpu_twins.py, which also
compiles :mod:`.cuda` to PTX). The GPU modules are not imported here.
"""

from __future__ import annotations

from embedscope.kernels.pacmap.cpu import adam_rate, adam_step, optimize_layout, weights
from embedscope.kernels.pacmap.pairs import (
    EXTRA_NEIGHBORS,
    further_pairs,
    has_scale,
    mid_near_pairs,
    neighbor_pairs,
    pair_lists,
    sample_pairs,
    scale_sigmas,
    symmetric_lists,
)

__all__ = [
    "EXTRA_NEIGHBORS",
    "adam_rate",
    "adam_step",
    "further_pairs",
    "has_scale",
    "mid_near_pairs",
    "neighbor_pairs",
    "optimize_layout",
    "pair_lists",
    "sample_pairs",
    "scale_sigmas",
    "symmetric_lists",
    "weights",
]
