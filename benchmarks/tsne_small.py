"""Small 2-D t-SNE fits on the CPU: the grid (FFT) repulsion against Barnes-Hut, whole fits.

    python benchmarks/tsne_small.py                    # 3,000, 8,000 and 14,000 points
    python benchmarks/tsne_small.py --sizes 20000 50000

Measures where ``embedscope.backends.cpu.TSNE_BH_2D_MAX`` belongs: below it 2-D fits
take Barnes-Hut. Each size is ``make_mixture(n, 50, 20, random_state=0)``; each fit is
warm (the kernels compiled by a short fit first) and seeded, in one process, the rule
switched by setting ``TSNE_BH_2D_MAX``. Reports fit and optimise seconds, the final KL
divergence and trustworthiness@15.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[3000, 8000, 14000])
    parser.add_argument("--name", default="tsne_small", help="results file name (default tsne_small)")
    args = parser.parse_args()
    import embedscope
    from embedscope.backends import cpu as cpu_backend
    from embedscope.datasets import make_mixture
    from embedscope.engine.metrics import trustworthiness

    rows: list[dict[str, Any]] = []
    for n in args.sizes:
        X, _ = make_mixture(n, 50, 20, random_state=0)
        for rule in ("grid", "tree"):
            cpu_backend.TSNE_BH_2D_MAX = n + 1 if rule == "tree" else 0
            embedscope.TSNE(random_state=0, n_iter=250).fit(X[:2000])  # compile outside the timing
            model = embedscope.TSNE(random_state=0)
            began = time.perf_counter()
            Y = model.fit_transform(X)
            rows.append({"points": n, "repulsion": model.repulsion_, "fit_s": round(time.perf_counter() - began, 2),
                         "optimise_s": round(model.timings_["optimise"], 2), "kl": round(model.kl_divergence_, 4),
                         "trust": round(trustworthiness(X, Y, 15), 4)})
            print(rows[-1], file=sys.stderr, flush=True)
    table = markdown_table(rows, ["points", "repulsion", "fit_s", "optimise_s", "kl", "trust"])
    print(table)
    write_results(args.name, {"machine": machine(), "rows": rows}, table)


if __name__ == "__main__":
    main()
