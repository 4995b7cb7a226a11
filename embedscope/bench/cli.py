"""``embedscope bench``: reducers side by side, each run in a fresh process."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

__all__ = ["register"]

EXAMPLE = """examples:
  embedscope bench --data mixture:x50 --methods pca,umap,tsne --peers umap-learn,opentsne,sklearn \\
      --sizes 10k,100k --budget 600 --out bench-mixture
  embedscope bench --data swissroll --methods umap,tsne --sizes 20k --out bench-roll
  embedscope bench --data vectors.npy --meta meta.csv.gz --labels first_letter --methods umap \\
      --backends cpu,cuda,cuml --peers umap-learn,cuml --sizes 10k,30k --out bench-words
  embedscope bench --data digits --methods mypkg.reducers:MyUMAP,umap --out bench-mine

Each run (method x backend or peer x size) is a fresh process killed past --budget
seconds; a missing peer or an unavailable backend is recorded, not an error. DIR gets
results.json (runs + manifest), results.md, grid.png, report.html, embeddings/, logs/.
"""


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _command_of(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (every option spelled out)."""
    words = ["embedscope", "bench"]
    for name in ("data", "meta", "labels", "methods", "backends", "peers", "sizes", "budget", "seed",
                 "sample_size", "warmup_rows", "repeats", "out"):
        value = getattr(args, name)
        if value not in (None, ""):
            words += ["--" + name.replace("_", "-"), f"{value:g}" if isinstance(value, float) else str(value)]
    return " ".join(shlex.quote(w) for w in words)


def _cmd_bench(args: argparse.Namespace) -> int:
    from embedscope.bench.report import markdown_table
    from embedscope.bench.runner import run_bench
    from embedscope.datasets import parse_sizes
    from embedscope.io.write import protect_inputs

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for the results")
    # The report's files never replace a data or metadata file that was read.
    protect_inputs(args.data, args.meta)
    if (out / "results.json").exists() and not args.force:
        raise ValueError(f"{out} already holds results.json; pass --force to replace the results")
    sizes: list[int | None] = list(parse_sizes(args.sizes)) or [None]
    command = _command_of(args)
    payload = run_bench(
        args.data, methods=_list(args.methods), sizes=sizes, out_dir=out,
        backends=_list(args.backends), peers=_list(args.peers) if args.peers else [],
        budget=args.budget, labels=args.labels, meta=args.meta, seed=args.seed,
        sample_size=args.sample_size, warmup_rows=args.warmup_rows, repeats=args.repeats, command=command,
        verbose=not args.quiet,
    )
    if not args.quiet:
        print(markdown_table(payload["runs"]))
        print(f"\nwrote {out / 'results.json'}, results.md, grid.png, report.html")
    return 0


def register(sub: Any) -> None:
    """Add the ``bench`` sub-command to the ``embedscope`` parser."""
    p = sub.add_parser(
        "bench",
        help="time, memory and quality of reducers side by side, against peers",
        description="Benchmark reducers (ours on each backend, and peer libraries) on one dataset at "
                    "several sizes: wall time per stage and JIT time apart, peak RSS and GPU memory, "
                    "trustworthiness@15, random triplet accuracy, kNN recall@15, kNN label accuracy, "
                    "t-SNE KL.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True,
                   help="mixture[:NxD|:xD], swissroll[:NxD|:xD], digits (builtin: prefix optional), "
                        "or a vector file (.npy/.npz/.parquet/.csv/.tsv)")
    p.add_argument("--meta", help="metadata file for a vector file (one row per vector)")
    p.add_argument("--labels", help="metadata column for kNN label accuracy and colours (default: label)")
    p.add_argument("--methods", default="pca,umap,tsne", help="comma-separated: pca, umap, tsne, pacmap, module:Class")
    p.add_argument("--backends", default="cpu", help="our backends, comma-separated: cpu, cuda, cuml (default: cpu)")
    p.add_argument("--peers", default="", help="comma-separated: umap-learn, opentsne, sklearn, cuml, pacmap")
    p.add_argument("--sizes", help="comma-separated point counts, e.g. 10k,100k,1M (default: the data's size)")
    p.add_argument("--budget", type=float, default=600.0, help="seconds per run before it is killed (default: 600)")
    p.add_argument("--seed", type=int, default=0, help="seed of data, reducers and quality subsample (default: 0)")
    p.add_argument("--sample-size", type=int, default=10_000,
                   help="quality is measured on a seeded subsample of this many points (default: 10000)")
    p.add_argument("--warmup-rows", type=int, default=1000,
                   help="rows of the warm-up fit reported as compile time (default: 1000)")
    p.add_argument("--repeats", type=int, default=1,
                   help="timed fits per run with the same seed; the median is reported (default: 1)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--force", action="store_true", help="replace results already in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr and no table on stdout")
    p.set_defaults(func=_cmd_bench)
