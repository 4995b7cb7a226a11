"""The ``embedscope`` command: reduce, info, and (when viz is installed) plot and serve."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from embedscope.engine.command import (
    add_cluster_flags,
    add_reducer_flags,
    cluster_flags,
    reducer_params,
    run_command,
)

REDUCE_EXAMPLE = """examples:
  embedscope reduce vectors.npy --method umap --out coords.parquet
  embedscope reduce vectors.tsv --meta metadata.tsv --method tsne --perplexity 50 --out coords.parquet
  embedscope reduce emb.parquet --columns embedding --method pca --n-components 3 --out pcs.npy --force
  embedscope reduce builtin:mixture:100kx50 --method umap --random-state 0 --out mix.parquet
  embedscope reduce shards/ --method umap --local-cluster 4 --sample-size 200000 --out coords-parquet/
"""

INFO_EXAMPLE = """example:
  embedscope info      # backends usable here, GPU name and memory, library versions
"""

def _add_reduce(sub: Any) -> None:
    from embedscope.backends import backend_names
    from embedscope.engine.reduce import METHODS

    p = sub.add_parser(
        "reduce",
        help="reduce vectors to 2-D/3-D coordinates and write them",
        description="Reduce a vector set and write coordinates (x, y[, z] plus metadata) to parquet or .npy. "
        "The file is written to a temporary name and renamed into place.",
        epilog=REDUCE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help=".npy/.npz/.parquet/.csv/.tsv file, or builtin:mixture[:NxD] / builtin:digits")
    p.add_argument("--method", default="umap", choices=sorted(METHODS), help="reducer (default: umap)")
    p.add_argument("--out", required=True, help="output .parquet (coordinates + metadata) or .npy")
    p.add_argument("--meta", help="metadata file (csv/tsv/parquet) with one row per vector")
    p.add_argument("--columns", help="comma-separated vector column(s) of a table input")
    p.add_argument("--key", help="array name inside an .npz file")
    p.add_argument("--backend", default="auto", choices=backend_names(),
                   help="auto (default: cuml, else cuda, else cpu, whichever runs here) or a backend name")
    p.add_argument("--n-components", type=int, default=2, help="output dimensions (default: 2)")
    add_reducer_flags(p)
    dist = p.add_argument_group("Dask (a directory or glob of shards, or a cluster)")
    add_cluster_flags(dist, local_note=" (with --backend cuda: one per GPU)")
    dist.add_argument("--sample-size", type=int, default=None,
                      help="UMAP/t-SNE on Dask: rows of the seeded sample the model is fitted on (default 100000)")
    p.add_argument("--quality", action="store_true",
                   help="add a 'quality' column: per point, the share of its k nearest neighbours in the "
                        "vectors that stay among its k nearest on the map (parquet output)")
    p.add_argument("--quality-k", type=int, default=None, metavar="K",
                   help="k of --quality (default: the fit's own neighbours where it kept its kNN graph, "
                        "UMAP: n_neighbors - 1, so no second search; else 15)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=_cmd_reduce)


def _shard_inputs(source: str) -> list[str]:
    """The shard files a directory or glob input names (to protect them from the output)."""
    import glob

    if os.path.isdir(source):
        return [os.path.join(source, name) for name in os.listdir(source)]
    return glob.glob(source) if any(c in source for c in "*?[") else []


def _cmd_reduce(args: argparse.Namespace) -> int:
    from embedscope._progress import Progress
    from embedscope.engine.reduce import reducer_class
    from embedscope.io.load import load_vectors
    from embedscope.io.readers import is_shard_source
    from embedscope.io.write import check_output, layout_info, protect_inputs, write_coords

    scheduler, workers = cluster_flags(args)
    distributed = scheduler is not None or workers is not None or is_shard_source(args.input)
    out_path = args.out
    if not distributed and not out_path.lower().endswith((".parquet", ".pq", ".npy")):
        raise ValueError(f"--out {out_path}: must end in .parquet or .npy")
    if args.quality and (distributed or not out_path.lower().endswith((".parquet", ".pq"))):
        raise ValueError("--quality writes a column: give a single input and a .parquet --out "
                         "(a .npy holds coordinates only; sharded input is reduced on a sample)")
    if args.quality_k is not None and not args.quality:
        raise ValueError("--quality-k applies only with --quality")
    # Checked before the (possibly long) fit, and again by the writer: the output must
    # not be (or hold) an input, and must not exist unless --force.
    protect_inputs(args.input, args.meta, _shard_inputs(args.input) if distributed else None)
    check_output(out_path, force=args.force)
    cls = reducer_class(args.method)
    params = reducer_params(args, cls, backend=args.backend, n_components=args.n_components, verbose=not args.quiet)
    progress = Progress(not args.quiet)
    start = time.perf_counter()
    columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
    if distributed:
        return _reduce_distributed(args, cls(**params), columns, progress, start)
    with progress.stage("load", str(args.input)):
        X, meta = load_vectors(args.input, args.meta, columns=columns, key=args.key)
    progress.log(f"{X.shape[0]:,} vectors x {X.shape[1]:,} dims ({X.dtype})"
                 + (f", metadata columns {list(meta.columns)}" if meta is not None else ""))
    if args.quality and meta is not None and "quality" in meta.columns:
        raise ValueError("the metadata already has a 'quality' column; rename it to use --quality")
    reducer = cls(**params)
    coords = reducer.fit_transform(X)
    if args.quality:
        meta = _with_quality(X, coords, meta, reducer, args.quality_k, progress)
    with progress.stage("write", out_path):
        write_coords(out_path, coords, meta, force=args.force, info=layout_info(args.method, reducer))
    progress.log(f"{args.method} on {getattr(reducer, 'backend_', '?')} backend: "
                 f"{X.shape[0]:,} points -> {out_path} in {time.perf_counter() - start:.1f} s")
    return 0


def _with_quality(X: Any, coords: Any, meta: Any, reducer: Any, k: int | None, progress: Any) -> Any:
    """``meta`` with a ``quality`` column (per-point neighbourhood preservation)."""
    import numpy as np
    import pandas as pd

    from embedscope.engine.metrics import neighborhood_preservation

    graph = getattr(reducer, "knn_indices_", None), getattr(reducer, "knn_distances_", None)
    kept = graph[0].shape[1] if graph[0] is not None and graph[1] is not None else 0
    k = k if k is not None else (kept or 15)
    # The fit's own kNN graph is reused when it holds k neighbours: no second search.
    knn = graph if kept >= k else None
    metric = getattr(reducer, "metric", "euclidean")
    quality = neighborhood_preservation(None if knn else X, coords, k, metric=metric, knn=knn,
                                        backend=getattr(reducer, "backend_", "auto"), verbose=progress.verbose,
                                        metric_kwds=getattr(reducer, "metric_kwds", None))
    source = " (from the fit's kNN graph)" if knn else ""
    progress.log(f"quality@{k}{source}: mean {quality.mean():.3f}, "
                 f"{(quality < 0.5).mean():.1%} of points below 0.5")
    frame = meta if meta is not None else pd.DataFrame(index=np.arange(len(quality)))
    return frame.assign(quality=quality)


def _reduce_distributed(args: argparse.Namespace, reducer: Any, columns: list[str] | None,
                        progress: Any, start: float) -> int:
    """The Dask path of ``reduce``: shards or a cluster in, a folder of parquet shards out."""
    from contextlib import nullcontext

    from embedscope.engine import distributed as dist
    from embedscope.io.load import load_vectors
    from embedscope.io.write import layout_info, write_coords

    if args.meta:
        raise ValueError("--meta is not supported with sharded input; put metadata columns in the parquet shards")
    scheduler, workers = cluster_flags(args)
    use_cluster = scheduler is not None or workers is not None
    from embedscope.backends import get_spec

    on_gpu = args.backend != "auto" and get_spec(args.backend).gpu  # a dask-cuda cluster then
    context = dist.cluster(scheduler, workers, gpu=on_gpu,
                           verbose=not args.quiet) if use_cluster else nullcontext()
    with context:
        with progress.stage("load", f"{args.input} (lazy, dask)"):
            X, meta = load_vectors(args.input, columns=columns)
            X = dist.as_dask_array(X)  # a single file or a built-in, split into row blocks
        progress.log(f"{X.shape[0]:,} vectors x {X.shape[1]:,} dims in {X.numblocks[0]} blocks")
        if args.method == "pca":
            coords = reducer.fit_transform(X)
            info = layout_info(args.method, reducer)
        else:
            sampled = dist.SampledReducer(reducer, sample_size=args.sample_size or dist.DEFAULT_SAMPLE,
                                          verbose=not args.quiet)
            coords = sampled.fit_transform(X)
            # The record the single-file path writes, plus the sample the model saw.
            info = {**layout_info(args.method, reducer),
                    "sample": {"rows": int(sampled.sample_rows_.size), "of": int(sampled.n_samples_seen_),
                               "random_state": sampled.random_state}}
        with progress.stage("transform+write", f"{args.out} (parquet shards)"):
            write_coords(args.out, coords, meta, force=args.force, info=info)
    progress.log(f"{args.method} on dask: {X.shape[0]:,} points -> {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cmd_info(args: argparse.Namespace) -> int:
    from embedscope import __version__
    from embedscope.backends import available_backends, resolve_backend

    print(f"embedscope {__version__}  (python {sys.version.split()[0]})")
    print("backends:")
    for name, (ok, detail) in available_backends().items():
        print(f"  {name:5s} {'yes' if ok else 'no ':3s}  {detail}")
    print(f"auto picks: {resolve_backend('auto')}")
    print("libraries:")
    # cupy and cuml ship under CUDA-specific distribution names; report whichever is there.
    aliases = {"cupy": ("cupy", "cupy-cuda12x", "cupy-cuda13x", "cupy-cuda11x"),
               "cuml": ("cuml", "cuml-cu12", "cuml-cu13", "cuml-cu11"),
               "numba-cuda": ("numba-cuda",)}
    for name in ("numpy", "numba", "numba-cuda", "scipy", "pandas", "pyarrow", "cupy", "cuml", "datashader",
                 "holoviews", "bokeh", "panel", "dask", "scikit-learn", "umap-learn", "openTSNE"):
        found = [(dist, _version(dist)) for dist in aliases.get(name, (name,))]
        installed = [f"{v} ({d})" if d != name else v for d, v in found if v != "not installed"]
        if installed or name in ("numpy", "numba", "datashader", "cupy", "cuml"):
            print(f"  {name:14s} {installed[0] if installed else 'not installed'}")
    return 0


def _add_info(sub: Any) -> None:
    p = sub.add_parser("info", help="backends available here and why others are not; versions",
                       epilog=INFO_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=_cmd_info)


# Sub-commands living in optional parts of the package register themselves here.
_OPTIONAL_COMMANDS = ("embedscope.viz.cli", "embedscope.bench.cli")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``embedscope`` command."""
    parser = argparse.ArgumentParser(
        prog="embedscope",
        description="Dimensionality reduction (PCA, UMAP, t-SNE) and plots for millions of embedding vectors.",
        epilog="Run 'embedscope COMMAND --help' for each command's options and examples.",
    )
    from embedscope import __version__

    parser.add_argument("--version", action="version", version=f"embedscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_reduce(sub)
    _add_info(sub)
    for module_name in _OPTIONAL_COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that part of the package is not there
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``embedscope`` command; returns the exit code.

    Every error reaches the user as one line on stderr and exit code 2 (130 when
    interrupted); set ``EMBEDSCOPE_DEBUG=1`` to see the traceback of an unexpected one
    (see :func:`embedscope.engine.command.run_command`).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_command(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
