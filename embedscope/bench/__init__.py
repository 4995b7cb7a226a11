"""``embedscope bench``: reducers side by side on time, memory and quality.

>>> from embedscope.bench import run_bench
>>> payload = run_bench("mixture:x50", methods=["pca", "umap"], sizes=[10_000],
...                     peers=["umap-learn"], out_dir="bench-out")  # doctest: +SKIP

See :func:`embedscope.bench.runner.run_bench`; each run is a fresh
``python -m embedscope.bench.worker`` process under a time budget.
"""

from __future__ import annotations

from embedscope.bench.datasets import load_bench_data
from embedscope.bench.measure import peak_rss_bytes
from embedscope.bench.runner import run_bench
from embedscope.datasets import make_swiss_roll, parse_sizes

__all__ = ["load_bench_data", "make_swiss_roll", "parse_sizes", "peak_rss_bytes", "run_bench"]
