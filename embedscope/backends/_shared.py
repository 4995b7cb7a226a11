"""Choices the CPU and GPU kernel tables make alike."""

from __future__ import annotations

#: Up to this many points the t-SNE repulsion is computed exactly (O(N^2) per step);
#: above it, grid-interpolated (FFT) or Barnes-Hut.
TSNE_EXACT_MAX = 1500
#: Up to this many points ``knn_method="auto"`` on the GPU searches exactly, above it
#: by IVF (:func:`embedscope.kernels.knn.ivf.ivf_knn`). Exact search costs N^2: 11-16 s
#: at 1M x 50 (k=15) on an H200, so ~1 min at 2M but ~25 min at 10M; up to 2M the
#: exact graph is worth its minute. UMAP and t-SNE both follow this rule.
GPU_EXACT_MAX_POINTS = 2_000_000
