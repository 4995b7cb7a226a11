"""densMAP on the CPU: ours against umap-learn's, on how well each keeps local density.

    python benchmarks/densmap_cpu.py                      # spread4, spread20k and the words
    python benchmarks/densmap_cpu.py --datasets spread4   # one dataset
    python benchmarks/densmap_cpu.py --seeds 0 1 2        # more seeds (medians)
    python benchmarks/densmap_cpu.py --skip-umap-learn    # ours only

Datasets:

- ``spread4``: four 8-D Gaussian clusters of 300 points, standard deviations 0.25, 0.5,
  1 and 2 (the fixture of ``tests/test_umap_densmap.py``), 200 epochs;
- ``spread20k``: 20 clusters of 1,000 points in 30-D, standard deviations log-spaced
  from 0.25 to 4, centres 20 apart;
- ``words``: the 30,000 x 384 word vectors in ../shared/data/words (cosine).

Both libraries run ``densmap=True, output_dens=True`` with their defaults otherwise
(``dens_lambda=2, dens_frac=0.3, dens_var_shift=0.1``, PCA init for both so that the
start is comparable). ``corr`` is the Pearson correlation of the log local radii in the
data and in the layout, each library's own ``rad_orig`` / ``rad_emb`` (the same
definition in both: ``log(eps + sum_j w_ij d_ij^2 / sum_j w_ij)``, graph weights in the
data, ``1 / (1 + a d^2b)`` in the layout); ``trust`` is trustworthiness@15 on a 5,000-point
sample. A plain UMAP fit of ours (``output_dens=True`` without ``densmap``) is the
negative control. ``fit_s`` is the second fit in the process (the first, on the same
data, compiles). Medians over ``--seeds``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, write_results

WORDS = next((p / "shared" / "data" / "words" for p in Path(__file__).resolve().parents[2:4]
              if (p / "shared" / "data" / "words").is_dir()),
             Path(__file__).resolve().parents[2] / "shared" / "data" / "words")
DATASETS = ("spread4", "spread20k", "words")


def load(name: str) -> tuple[np.ndarray, str, dict[str, Any]]:
    """The data, its metric and extra settings for both libraries."""
    if name == "spread4":
        rng = np.random.default_rng(0)
        X = np.concatenate([rng.standard_normal((300, 8)) * s + 12 * i for i, s in enumerate((0.25, 0.5, 1.0, 2.0))])
        return X.astype(np.float32), "euclidean", {"n_epochs": 200}
    if name == "spread20k":
        rng = np.random.default_rng(1)
        stds = np.geomspace(0.25, 4.0, 20)
        centres = rng.standard_normal((20, 30)) * 20.0
        X = np.concatenate([rng.standard_normal((1000, 30)) * s + c for s, c in zip(stds, centres, strict=True)])
        return X.astype(np.float32), "euclidean", {}
    if name == "words":
        return np.load(WORDS / "vectors.npy").astype(np.float32), "cosine", {}
    raise SystemExit(f"unknown dataset {name!r}")


def quality(X: np.ndarray, Y: np.ndarray, r_orig: np.ndarray, r_emb: np.ndarray, metric: str) -> dict[str, float]:
    from embedscope.engine.metrics import trustworthiness

    return {"corr": float(np.corrcoef(r_orig, r_emb)[0, 1]),
            "trust": float(trustworthiness(X, Y, n_neighbors=15, metric=metric, sample_size=5000))}


def fit_ours(X: np.ndarray, metric: str, seed: int, extra: dict[str, Any], densmap: bool) -> dict[str, Any]:
    from embedscope import UMAP

    def once() -> tuple[Any, float]:
        model = UMAP(metric=metric, init="pca", random_state=seed, backend="cpu", densmap=densmap,
                     output_dens=True, **extra)
        began = time.perf_counter()
        out = model.fit_transform(X)
        return out, time.perf_counter() - began

    once()
    (Y, r_orig, r_emb), seconds = once()
    return {"fit_s": seconds, **quality(X, Y, r_orig, r_emb, metric)}


def fit_umap_learn(X: np.ndarray, metric: str, seed: int, extra: dict[str, Any]) -> dict[str, Any]:
    import umap

    def once() -> tuple[Any, float]:
        began = time.perf_counter()
        out = umap.UMAP(metric=metric, init="pca", random_state=seed, densmap=True, output_dens=True,
                        **extra).fit_transform(X)
        return out, time.perf_counter() - began

    once()
    (Y, r_orig, r_emb), seconds = once()
    return {"fit_s": seconds, **quality(X, Y, r_orig, r_emb, metric)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--skip-umap-learn", action="store_true")
    parser.add_argument("--name", default="densmap_cpu", help="results file name (default densmap_cpu)")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for name in args.datasets:
        if name == "words" and not (WORDS / "vectors.npy").is_file():
            print(f"skipping words: {WORDS} not found", file=sys.stderr)
            continue
        X, metric, extra = load(name)
        libs = ["embedscope densmap", "embedscope plain"] + ([] if args.skip_umap_learn else ["umap-learn densmap"])
        for lib in libs:
            if lib == "umap-learn densmap":
                runs = [fit_umap_learn(X, metric, seed, extra) for seed in args.seeds]
            else:
                runs = [fit_ours(X, metric, seed, extra, lib == "embedscope densmap") for seed in args.seeds]
            row = {"dataset": f"{name} ({X.shape[0]} x {X.shape[1]})", "library": lib}
            for key in ("fit_s", "corr", "trust"):
                row[key] = round(statistics.median(r[key] for r in runs), 4)
            row["corr per seed"] = " ".join(f"{r['corr']:.3f}" for r in runs)
            rows.append(row)
            print(row, file=sys.stderr)
    table = markdown_table(rows, ["dataset", "library", "fit_s", "corr", "trust", "corr per seed"])
    note = (f"\n\nMedians over seeds {args.seeds}; corr = Pearson correlation of log local radii "
            "(data vs layout), trust = trustworthiness@15 on 5,000 points.")
    print(table + note)
    write_results(args.name, {"machine": machine(), "seeds": args.seeds, "results": rows}, table + note)


if __name__ == "__main__":
    main()
