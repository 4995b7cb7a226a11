"""``embedscope plot`` and ``embedscope serve``: registered into the main CLI.

Importing this module is cheap (argparse only); HoloViews, Panel and datashader load
when a command runs.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

__all__ = ["main", "register"]

PLOT_EXAMPLE = """example:
  embedscope reduce builtin:mixture --method umap --out coords.parquet
  embedscope plot coords.parquet --color label --out plot.png
  embedscope plot coords.parquet --color label --out plot.html   # static page, no re-aggregation
  embedscope plot coords/ --color label --local-cluster 4 --out plot.png   # parquet shards, aggregated on Dask
  embedscope plot coords3d.parquet --color label --out view.html   # 3-D coordinates: a rotatable 3-D view
"""

SERVE_EXAMPLE = """example:
  embedscope serve coords.parquet                    # coordinates written by 'embedscope reduce'
  embedscope serve vectors.npy --meta meta.csv --method pca --port 5006
  embedscope serve umap.parquet tsne.parquet --on id   # two layouts side by side, linked
  embedscope serve vectors.npy --method tsne --live     # watch the layout while it optimises
  embedscope serve coords3d.parquet                  # 3-D coordinates: a rotatable 3-D view
  then open http://127.0.0.1:5006 (the server binds to 127.0.0.1 unless --host says otherwise)
"""


def _serve_command(args: Any) -> str:
    parts = ["embedscope", "serve", args.input]
    if getattr(args, "meta", None):
        parts += ["--meta", args.meta]
    if getattr(args, "color", None):
        parts += ["--color", args.color]
    return shlex.join(parts)


def _check_plot_size(args: argparse.Namespace) -> None:
    """Refuse --width / --height past the bounds, before any input is read."""
    from embedscope.viz.aggregate import check_raster_size

    try:
        check_raster_size(args.width, args.height, budget=None)
    except ValueError as exc:
        raise ValueError(str(exc).replace("width", "--width").replace("height", "--height")) from None


def _require_xy(source: str) -> None:
    """A parquet file to plot must name its coordinates ``x`` and ``y`` (as the Dask path requires).

    Any other 2 or 3 numeric columns would otherwise be drawn as coordinates, silently.
    """
    from pathlib import Path

    suffixes = [s.lower() for s in Path(source).suffixes]
    if not ((".parquet" in suffixes or ".pq" in suffixes) and Path(source).is_file()):
        return
    import pyarrow.parquet as pq

    from embedscope.errors import DataError

    try:
        names = pq.read_schema(source).names
    except Exception as exc:
        raise DataError(f"{source} is not a readable parquet file: {exc}") from None
    if not {"x", "y"} <= set(names):
        raise DataError(f"{source} has no x and y columns (columns: {names[:12]}); "
                        f"run 'embedscope reduce {source} --out coords.parquet' first")


def _cmd_plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from embedscope._progress import Progress
    from embedscope.engine.command import cluster_flags
    from embedscope.errors import DataError

    scheduler, workers = cluster_flags(args)
    out = Path(args.out)
    suffix = out.suffix.lower()
    if args.max_points is not None:
        from embedscope.viz.view3d import MAX_POINTS_BOUND

        if args.tiles or scheduler is not None or workers is not None or suffix == ".png":
            raise ValueError("--max-points applies to 3-D views (.html of 3-D coordinates); a 2-D map draws every point")
        if not 1 <= args.max_points <= MAX_POINTS_BOUND:
            raise ValueError(f"--max-points must be in [1, {MAX_POINTS_BOUND:,}]; got {args.max_points:,}")
    if args.tiles:
        return _plot_tiles(args, out)
    if args.max_zoom is not None:
        raise ValueError("--max-zoom applies only with --tiles")
    if suffix not in (".png", ".html", ".htm"):
        raise ValueError(f"--out {out}: give a .png or .html file name (or a folder with --tiles)")
    _check_plot_size(args)
    from embedscope.io.write import check_output, protect_inputs

    protect_inputs(args.input, getattr(args, "meta", None))
    check_output(out, force=args.force)
    if scheduler is not None or workers is not None:
        return _plot_on_dask(args, out, scheduler, workers)
    progress = Progress(not args.quiet, "plot")
    array, meta = _load_coords(args.input, args.meta, progress, drop_z=args.drop_z, html_3d=suffix != ".png")
    if array.shape[1] == 3 and not args.drop_z:
        return _plot_3d(args, out, array, meta, progress)
    if args.max_points is not None:
        raise ValueError("--max-points applies to 3-D views (.html of 3-D coordinates); a 2-D map draws every point")
    from embedscope.viz.layers import default_color

    args.color = default_color(meta, args.color)  # a 'quality' column colours the map unless told otherwise
    if args.color is not None and (meta is None or args.color not in meta.columns):
        known = [] if meta is None else list(meta.columns)
        raise DataError(f"no column {args.color!r} to colour by; metadata columns: {known}")
    from embedscope.viz.export import save_html, save_png

    serve_hint = _serve_command(args)
    options = {"width": args.width, "height": args.height, "how": args.how, "spread": args.spread,
               "legend": args.legend, "title": _title(args, named=suffix != ".png"), "force": args.force}
    if args.labels_from is not None:
        if meta is None or args.labels_from not in meta.columns:
            known = [] if meta is None else list(meta.columns)
            raise DataError(f"no column {args.labels_from!r} to label the map from; metadata columns: {known}")
    if suffix == ".png":
        save_png(array, out, meta, args.color, labels=args.labels_from, **options)
    else:
        save_html(array, out, meta, args.color, serve_hint=serve_hint, labels=args.labels_from, **options)
    print(out)
    if not args.quiet:
        print(f"explore it live (re-aggregates on zoom): {serve_hint}", file=sys.stderr)
    return 0


def _title(args: argparse.Namespace, *, named: bool = True) -> str | None:
    """``--title``, else the method and main parameters ``reduce`` recorded in the input,
    and its name. ``named=False`` (a PNG, which had no title): None without a record."""
    from pathlib import Path

    from embedscope.io.write import read_layout_info
    from embedscope.viz._input import layout_title

    if args.title:
        return str(args.title)
    recorded = read_layout_info(args.input)
    if recorded is None and not named:
        return None
    return layout_title(recorded, Path(args.input).name)


def _plot_3d(args: argparse.Namespace, out: Any, array: Any, meta: Any, progress: Any) -> int:
    """``plot`` of 3-D coordinates to .html: the rotatable 3-D view (Plotly, inlined)."""
    from embedscope.errors import DataError
    from embedscope.viz.layers import default_color
    from embedscope.viz.view3d import DEFAULT_MAX_POINTS, save_html_3d

    if args.labels_from is not None:
        raise ValueError("--labels-from names the regions of a 2-D map; a 3-D view has none "
                         "(give --drop-z to draw x and y with labels)")
    color = default_color(meta, args.color)
    if color is not None and (meta is None or color not in meta.columns):
        known = [] if meta is None else list(meta.columns)
        raise DataError(f"no column {color!r} to colour by; metadata columns: {known}")
    max_points = DEFAULT_MAX_POINTS if args.max_points is None else args.max_points
    with progress.stage("view3d", f"{array.shape[0]:,} points in 3-D -> {out}"):
        info = save_html_3d(array, out, meta, color, max_points=max_points, title=_title(args), legend=args.legend,
                            force=args.force)
    if info["note"]:
        progress.log(info["note"] + " (--max-points sets how many)")
    progress.log(f"{info['bytes'] / 2**20:.1f} MiB page, plotly.js inlined (opens offline)")
    print(out)
    return 0


def _load_coords(source: str, meta_path: str | None, progress: Any, *, drop_z: bool = False,
                 html_3d: bool = False) -> tuple[Any, Any]:
    """Coordinates and metadata to draw; vectors are refused, and 3-D too unless ``drop_z``
    or ``html_3d`` (the output is an HTML page, which shows 3-D coordinates in 3-D)."""
    from embedscope.errors import DataError
    from embedscope.viz.app import load_input

    _require_xy(source)
    array, meta, is_coords = load_input(source, meta_path)
    if not is_coords:
        raise DataError(f"{source} holds {array.shape[1]}-dimensional vectors, not 2-D coordinates; "
                        f"run 'embedscope reduce {source} --out coords.parquet' first")
    if array.shape[1] == 3 and not drop_z and not html_3d:
        # A 2-D image of 3-D coordinates hides z: the user says so, or reduces to 2-D.
        raise DataError(f"{source} holds 3-D coordinates; plot draws 2-D images (.png, --tiles): give --drop-z to "
                        f"draw x and y only, --out NAME.html for a rotatable 3-D view, or reduce with --n-components 2")
    if array.shape[1] == 3 and drop_z:
        progress.log(f"{source} holds 3-D coordinates; drawing x and y (z is not shown, --drop-z)")
        array = array[:, :2]
    return array, meta


def _plot_tiles(args: argparse.Namespace, out: Any) -> int:
    """``plot --tiles``: a static zoomable site (tile pyramid + page) in the folder ``out``."""

    from embedscope._progress import Progress
    from embedscope.engine.command import cluster_flags
    from embedscope.io.write import protect_inputs
    from embedscope.viz.tiles import write_tile_site

    if any(v is not None for v in cluster_flags(args)):
        raise ValueError("--tiles runs on this machine; drop the Dask flags")
    if out.suffix.lower() in (".png", ".html", ".htm"):
        raise ValueError(f"--out {out}: --tiles writes a folder (index.html and tiles/); give a folder name")
    protect_inputs(args.input, getattr(args, "meta", None))
    progress = Progress(not args.quiet, "tiles")
    array, meta = _load_coords(args.input, args.meta, progress, drop_z=args.drop_z)
    max_zoom = 5 if args.max_zoom is None else args.max_zoom
    with progress.stage("site", f"{array.shape[0]:,} points, levels 0-{max_zoom} -> {out}"):
        info = write_tile_site(array, out, meta, args.color, max_zoom=max_zoom, labels=args.labels_from,
                               title=_title(args), force=args.force, log=progress.log)
    progress.log(f"{info['tiles']:,} tiles, {info['bytes'] / 2**20:.1f} MiB, in {info['seconds']:.1f} s; "
                 f"open {out / 'index.html'} (no server needed)")
    print(out / "index.html")
    return 0


def _parquet_coords(source: str, color: str | None, *, drop_z: bool = False) -> tuple[list[str], list[str]]:
    """The parquet files of ``source`` and the columns to read, checked from the schema alone.

    Everything that can be refused without data is refused here, before a cluster starts.
    """
    import pyarrow.parquet as pq

    from embedscope.errors import DataError
    from embedscope.io.shards import shard_files

    files = shard_files(source)
    if files[0].suffix.lower() != ".parquet":
        raise DataError(f"{source}: --scheduler / --local-cluster plot parquet coordinates (a file, or a folder "
                        f"or glob of the shards 'embedscope reduce' writes); found {files[0].suffix} files")
    try:
        names = pq.read_schema(files[0]).names
    except Exception as exc:
        raise DataError(f"{files[0]} is not a readable parquet file: {exc}") from None
    if not {"x", "y"} <= set(names):
        raise DataError(f"{source} has no x and y columns (columns: {names[:12]}); "
                        f"run 'embedscope reduce {source} --out coords/' first")
    if "z" in names and not drop_z:
        # as on one machine: a 2-D image of 3-D coordinates would hide z
        raise DataError(f"{source} holds 3-D coordinates (a z column); plot draws 2-D images: give --drop-z to "
                        "draw x and y only, or plot one parquet file without --local-cluster / --scheduler "
                        "to --out NAME.html for a rotatable 3-D view")
    meta_columns = [c for c in names if c not in ("x", "y", "z")]
    if color is not None and color not in meta_columns:
        raise DataError(f"no column {color!r} to colour by; metadata columns: {meta_columns}")
    # z only decides the coordinate dtype, as it does on the single-machine path.
    columns = ["x", "y", *(["z"] if "z" in names else []), *([color] if color else [])]
    return [str(f) for f in files], columns


def _category_values(series: Any) -> Any:
    """The values a colour column's categories are made of, as ``with_color`` makes them."""
    import pandas as pd

    if isinstance(series.dtype, pd.CategoricalDtype):
        return series
    return series.astype(str) if series.dtype.kind == "O" else series


def _named_categories(series: Any, categories: Any, plan: Any) -> Any:
    """One partition of a colour column as a categorical over the global categories, named
    and grouped by ``plan`` (a :class:`embedscope.viz.aggregate.CategoryPlan`)."""
    import pandas as pd

    codes = pd.Categorical(_category_values(series), categories=categories).codes
    return pd.Series(pd.Categorical.from_codes(plan.recode(codes), plan.names), index=series.index, name=series.name)


def _render_lazy(frame: Any, color: str | None, *, width: int, height: int, how: str,
                 spread: int = 2) -> tuple[Any, dict[str, Any]]:
    """``render_image`` for a lazy dask.dataframe: checks and aggregation run on the workers.

    Only reductions (counts, extents, the distinct categories) and the raster come back
    here, and the result draws the same pixels as ``render_image`` of the same points.
    """
    import dask
    import numpy as np
    import pandas as pd

    from embedscope.errors import DataError
    from embedscope.viz._input import MAX_INT_CATEGORIES, color_kind, note_missing_values
    from embedscope.viz.aggregate import plan_categories, raster, shade
    from embedscope.viz.export import _padded

    coords = [c for c in ("x", "y", "z") if c in frame.columns]
    # plot_frame keeps float64 coordinates and makes everything else float32; do the same
    # so both paths bin identical values.
    dtype = np.float64 if np.result_type(*[frame[c].dtype for c in coords]) == np.float64 else np.float32
    frame = frame.assign(x=frame["x"].astype(dtype), y=frame["y"].astype(dtype))
    x, y = frame["x"], frame["y"]
    kind = None
    if color is not None:
        column = frame[color]
        if column.dtype.kind in "iu":
            # color_kind counts distinct integers; on a lazy column that is one pass.
            kind = "category" if int(column.nunique().compute()) <= MAX_INT_CATEGORIES else "value"
        else:
            kind = color_kind(pd.Series([], dtype=column.dtype))
    checks: dict[str, Any] = {"n": x.size, "bad": (~(np.isfinite(x) & np.isfinite(y))).sum(),
                              "x": (x.min(), x.max()), "y": (y.min(), y.max())}
    # A categorical column with known categories keeps their order, as with_color keeps it;
    # otherwise the categories are the sorted distinct values, found on the workers. Their
    # counts decide which keep a colour of their own (plan_categories) before any raster.
    known = (kind == "category" and isinstance(frame[color].dtype, pd.CategoricalDtype)
             and frame[color].cat.known)
    if kind == "category":
        checks["counts"] = frame[color].value_counts(dropna=False)
    elif kind == "value":
        checks["inf"] = np.isinf(frame[color].astype(np.float64)).sum()
        checks["nan"] = frame[color].isna().sum()
    (stats,) = dask.compute(checks)
    if int(stats["n"]) == 0:
        raise DataError("there are no points to plot")
    if int(stats["bad"]):
        raise DataError(f"{int(stats['bad'])} point(s) have NaN or inf coordinates; drop them before plotting")
    if int(stats.get("inf", 0)):
        raise DataError(f"column {color!r} holds inf values; cannot colour by it")
    if kind == "value":
        note_missing_values(color, int(stats["nan"]), int(stats["n"]))
    color_key = None
    if kind == "category":
        found = stats["counts"]
        values = found.index.to_series(index=np.arange(len(found)))
        categories = (frame[color].cat.categories if known
                      else pd.Categorical(_category_values(values)).categories)
        # Distinct values can name one category (1 and "1" both become "1"): add them up.
        per_category = pd.Series(found.to_numpy(), index=pd.Categorical(_category_values(values),
                                                                         categories=categories).codes)
        counts = per_category[per_category.index >= 0].groupby(level=0).sum().reindex(
            range(len(categories)), fill_value=0).to_numpy()
        plan = plan_categories([str(c) for c in categories], counts, color)
        meta = pd.Series(pd.Categorical([], categories=plan.names), name=color)
        frame = frame.assign(**{color: frame[color].map_partitions(_named_categories, categories, plan, meta=meta)})
        color_key = plan.colors()
    agg = raster(frame[["x", "y", *([color] if color else [])]],
                 by=color if kind == "category" else None, value=color if kind == "value" else None,
                 width=width, height=height, x_range=_padded(np.asarray(stats["x"])),
                 y_range=_padded(np.asarray(stats["y"])))
    info: dict[str, Any] = {"n_points": int(stats["n"]), "x_range": agg.attrs["x_range"],
                            "y_range": agg.attrs["y_range"], "color": color, "kind": kind}
    if color_key is not None:
        info["colors"] = color_key
        info["note"] = plan.note
    return shade(agg, how=how, color_key=color_key, spread=spread), info


def _plot_on_dask(args: argparse.Namespace, out: Any, scheduler: str | None, workers: int | None) -> int:
    """``plot`` with ``--scheduler`` / ``--local-cluster``: parquet read lazily, aggregated on the cluster."""
    from pathlib import Path

    from embedscope._array import dask_modules
    from embedscope._progress import Progress
    from embedscope.engine import distributed as dist
    from embedscope.io.write import atomic_output
    from embedscope.viz.export import _legend_image, _titled_image

    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {out}: with --scheduler / --local-cluster, plot writes .png only")
    if args.meta:
        raise ValueError("--meta is not supported with --scheduler / --local-cluster; "
                         "put metadata columns in the parquet shards")
    files, columns = _parquet_coords(args.input, args.color, drop_z=args.drop_z)
    progress = Progress(not args.quiet, "plot")
    _, _, dd = dask_modules()
    with dist.cluster(scheduler, workers, verbose=not args.quiet) as client:
        address = client.scheduler_info()["address"]
        progress.log(f"aggregating on the Dask scheduler at {address}"
                     + ("" if scheduler else f" (a local cluster of {workers} worker processes)"))
        frame = dd.read_parquet(files, columns=columns)
        with progress.stage("aggregate", f"{args.input}: {len(files)} parquet file(s) in "
                                         f"{frame.npartitions} partition(s), {args.width} x {args.height} px"):
            image, info = _render_lazy(frame, args.color, width=args.width, height=args.height, how=args.how,
                                       spread=args.spread)
    pil = _legend_image(image.to_pil(), info) if args.legend else image.to_pil()
    if args.title:
        pil = _titled_image(pil, args.title)
    with atomic_output(out, force=args.force) as tmp:
        pil.save(tmp, format="PNG")
    progress.log(f"{info['n_points']:,} points -> {out}")
    print(out)
    # serve reads one file into memory; a folder of shards has no single-file command to suggest.
    if not args.quiet and Path(args.input).is_file():
        print(f"explore it live (re-aggregates on zoom): {_serve_command(args)}", file=sys.stderr)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from embedscope._progress import Progress
    from embedscope.errors import DataError
    from embedscope.io.write import check_output, protect_inputs
    from embedscope.viz.app import load_input
    from embedscope.viz.compare import align_layouts, save_compare_png

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {out}: give a .png file name")
    if not 1 <= args.width <= 4096 or not 1 <= args.height <= 4096:
        raise ValueError("--width and --height must be between 1 and 4096 pixels per panel")
    protect_inputs(args.first, args.second)
    check_output(out, force=args.force)
    layouts = []
    for source in (args.first, args.second):
        _require_xy(source)
        array, meta, is_coords = load_input(source)
        if not is_coords:
            raise DataError(f"{source} holds {array.shape[1]}-dimensional vectors, not coordinates; "
                            f"run 'embedscope reduce {source} --out coords.parquet' first")
        if array.shape[1] == 3:
            # two 2-D panels (and 'moved' measured on them) would hide z
            raise DataError(f"{source} holds 3-D coordinates; compare draws 2-D maps: give 2-D layouts "
                            "(reduce with --n-components 2), or plot each to --out NAME.html for a 3-D view")
        layouts.append((array, meta))
    names = (Path(args.first).name, Path(args.second).name)
    A, B, meta = align_layouts(layouts[0][0], layouts[0][1], layouts[1][0], layouts[1][1], on=args.on, names=names)
    progress = Progress(not args.quiet, "compare")
    with progress.stage("figure", f"{A.shape[0]:,} paired points, colour {args.color or 'density'}"):
        info = save_compare_png(A, B, out, meta, None if args.color == "none" else args.color, names=names,
                                k=args.k, width=args.width, height=args.height, labels=args.labels_from,
                                force=args.force)
    if "moved_median" in info:
        progress.log(f"moved (k={args.k}): median {info['moved_median']:.3f}, "
                     f"{info['moved_share_over_half']:.1%} of points above 0.5")
    print(out)
    return 0


def _serve_reducer_params(args: argparse.Namespace) -> dict[str, Any]:
    """The reducer flags given to ``serve``, checked against the reducer they go to."""
    from embedscope.engine.command import given_reducer_flags, reducer_params

    if not given_reducer_flags(args):
        return {}
    from embedscope.engine.reduce import reducer_class
    from embedscope.viz.app import default_method

    method = args.method or default_method()
    return reducer_params(argparse.Namespace(**{**vars(args), "method": method}), reducer_class(method))


def _cmd_serve(args: argparse.Namespace) -> int:
    if getattr(args, "second", None) is not None:  # two layouts in linked panels
        if args.live:
            raise ValueError("--live draws one reducer's layout while it optimises; give one vectors file")
        from embedscope.engine.command import given_reducer_flags
        from embedscope.viz.compare_app import serve_compare

        for flag, value in (("--labels-from", args.labels_from), ("--vectors", args.vectors)):
            if value is not None:
                raise ValueError(f"{flag} applies to one layout, not two compared")
        if given_reducer_flags(args) or args.n_components != 2:
            flag = given_reducer_flags(args)[0] if given_reducer_flags(args) else "--n-components"
            raise ValueError(f"{flag} applies to vectors reduced at start, not two layouts")

        return serve_compare(args)
    if args.on is not None or args.k is not None:
        flag = "--on" if args.on is not None else "--k"
        raise ValueError(f"{flag} applies to two layouts compared: give a second input (serve A B {flag} ...)")
    from pathlib import Path

    from embedscope._progress import Progress
    from embedscope.viz.app import AppData, serve
    from embedscope.viz.server import SessionGate, check_listen, is_loopback, page_urls

    # Everything about the address is checked before the data loads (which can take minutes).
    SessionGate(args.max_sessions)
    check_listen(args.host, args.port)
    if not is_loopback(args.host):
        # Always said, even with --quiet: the data is open to anyone who can reach the port.
        print(f"embedscope serve: warning: --host {args.host} makes the app reachable from the network, "
              "without a login, by anyone who can reach this machine", file=sys.stderr)
    Progress(not args.quiet, "serve").log(f"loading {args.input}")
    data = AppData(args.input, args.meta, args.method, color=args.color, text_column=args.text_column,
                   labels_from=args.labels_from, vectors=args.vectors, reducer_params=_serve_reducer_params(args),
                   verbose=not args.quiet, live=args.live, n_components=args.n_components)
    if data.is_3d:  # said even with --quiet: the page is not the 2-D explorer
        what = "holds 3-D coordinates" if data.vectors is None else "is reduced to 3-D"
        print(f"embedscope serve: note: {Path(args.input).name} {what}; the page shows a rotatable 3-D view "
              "without the 2-D explorer's search, selection, labels and neighbours", file=sys.stderr)

    def ready(port: int) -> None:
        if not args.quiet:
            urls = "\n       ".join(page_urls(args.host, port))
            print(f"embedscope serve: {data.note}\n  open {urls}\n  (Ctrl-C stops)", file=sys.stderr, flush=True)

    serve(data, port=args.port, host=args.host, show=args.show, allow_hosts=args.allow_host,
          max_sessions=args.max_sessions, on_ready=ready)
    return 0


def register(sub: Any) -> None:
    """Add the ``plot`` and ``serve`` sub-commands to an argparse sub-parsers object."""
    from embedscope.engine.command import add_cluster_flags, add_reducer_flags
    from embedscope.viz.server import DEFAULT_MAX_SESSIONS

    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("plot", help="draw coordinates to a PNG (datashader) or a static HTML page",
                       epilog=PLOT_EXAMPLE, formatter_class=fmt)
    p.add_argument("input", help="coordinates: parquet with x, y columns (from 'embedscope reduce'), .npy n x 2, ...")
    p.add_argument("--out", required=True, help="output file: .png or .html")
    p.add_argument("--color", help="metadata column to colour by (categories or numbers)")
    p.add_argument("--meta", help="metadata file with one row per point (csv, tsv, parquet)")
    p.add_argument("--width", type=int, default=1200, help="raster width in pixels (default 1200)")
    p.add_argument("--height", type=int, default=900, help="raster height in pixels (default 900)")
    p.add_argument("--how", default="eq_hist", choices=["eq_hist", "log", "cbrt", "linear"],
                   help="colour normalisation (default eq_hist)")
    p.add_argument("--spread", type=int, default=2, metavar="PX",
                   help="grow isolated points up to PX pixels so sparse ones stay visible (0-32, default 2)")
    p.add_argument("--title", help="title of the plot (default: the method and its parameters recorded by "
                                   "'embedscope reduce', and the file name)")
    p.add_argument("--no-legend", dest="legend", action="store_false", help="leave the colour legend out")
    p.add_argument("--drop-z", action="store_true",
                   help="draw x and y of 3-D coordinates as a 2-D map (without it, .html is a rotatable 3-D view "
                        "and .png and --tiles are refused: a 2-D image would hide z)")
    p.add_argument("--max-points", type=int, default=None, metavar="N",
                   help="3-D views: most points drawn (default 200,000; above it a seeded uniform sample, "
                        "said in the title)")
    p.add_argument("--labels-from", metavar="COLUMN",
                   help="write the names of the map's regions from this column (categories: the dominant "
                        "one; text: the most distinctive terms); .html and --tiles pages show finer ones "
                        "as you zoom")
    p.add_argument("--tiles", action="store_true",
                   help="write a static zoomable site into the folder --out: a tile pyramid and index.html "
                        "that pans and zooms it with no server (file:// or any static host)")
    p.add_argument("--max-zoom", type=int, default=None, metavar="N",
                   help="deepest tile level with --tiles (0-10, default 5: 32 x 32 tiles of 256 px)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--quiet", action="store_true", help="print only the written path")
    dist = p.add_argument_group("Dask (parquet coordinates: a file, or a folder or glob of shards; .png only)")
    add_cluster_flags(dist, local_note=" to aggregate on")
    p.set_defaults(func=_cmd_plot)

    c = sub.add_parser("compare", help="two layouts of the same items side by side, and which points moved",
                       description="Draw two layouts of the same items (UMAP vs t-SNE, two seeds, two models) "
                                   "side by side in one PNG, coloured alike: by a metadata column, or by how "
                                   "much each point's neighbourhood changed between them (the default).",
                       formatter_class=fmt)
    c.add_argument("first", help="coordinates: parquet with x, y (from 'embedscope reduce'), or .npy n x 2")
    c.add_argument("second", help="coordinates of the same items")
    c.add_argument("--out", required=True, help="output .png")
    c.add_argument("--on", metavar="ID", help="id column present in both to pair rows by (default: row order)")
    c.add_argument("--color", default="moved",
                   help="'moved' (default: Jaccard distance of each point's k nearest neighbours in the two "
                        "layouts), a metadata column, or 'none'")
    c.add_argument("--k", type=int, default=15, help="neighbours of the moved layer (default 15)")
    c.add_argument("--labels-from", metavar="COLUMN", help="write the names of each panel's regions from this column")
    c.add_argument("--width", type=int, default=700, help="pixels per panel (default 700)")
    c.add_argument("--height", type=int, default=600, help="pixels per panel (default 600)")
    c.add_argument("--force", action="store_true", help="replace an existing output file")
    c.add_argument("--quiet", action="store_true", help="print only the written path")
    c.set_defaults(func=_cmd_compare)

    s = sub.add_parser("serve", help="explore an embedding in the browser (Bokeh server)",
                       epilog=SERVE_EXAMPLE, formatter_class=fmt)
    s.add_argument("input", help="coordinates (parquet with x, y; .npy n x 2) or vectors to reduce first")
    s.add_argument("second", nargs="?", help="a second layout of the same items: both side by side in linked "
                                             "panels, with the 'moved' layer (see 'embedscope compare')")
    s.add_argument("--on", metavar="ID", help="with two layouts: id column to pair their rows by (default: row order)")
    s.add_argument("--k", type=int, default=None, help="with two layouts: neighbours of the moved layer (default 15)")
    s.add_argument("--meta", help="metadata file with one row per point")
    s.add_argument("--method", choices=["umap", "tsne", "pca", "pacmap"],
                   help="reducer for vectors input (default umap when installed, else pca)")
    s.add_argument("--color", help="metadata column to colour by at start")
    s.add_argument("--live", action="store_true",
                   help="vectors input: open the page at once and draw the layout while the reducer optimises "
                        "(umap, tsne, pacmap), with a progress bar and a Stop button that keeps it")
    s.add_argument("--text-column", help="metadata column the search box matches (default: first text column)")
    s.add_argument("--labels-from", metavar="COLUMN",
                   help="name the map's regions from this column (categories or text), finer as you zoom; "
                        "a toggle in the app shows or hides them")
    s.add_argument("--vectors", metavar="FILE",
                   help="with coordinates: the original vectors (one row per point), so a click lists its "
                        "neighbours in that space (metric and k chosen in the app)")
    reducer = s.add_argument_group("reducer (vectors input, reduced at start; as in 'embedscope reduce')")
    reducer.add_argument("--n-components", type=int, choices=(2, 3), default=2,
                         help="2 (default): the 2-D explorer; 3: a rotatable 3-D view")
    add_reducer_flags(reducer)
    s.add_argument("--port", type=int, default=5006, help="port (default 5006; 0 picks a free one)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--allow-host", action="append", default=[], metavar="NAME[:PORT]",
                   help="another host name browsers may use to reach the server (a reverse proxy's or DNS "
                        "name); requests addressed to any other name are refused (repeatable)")
    s.add_argument("--max-sessions", type=int, default=DEFAULT_MAX_SESSIONS,
                   help=f"browser sessions served at once (default {DEFAULT_MAX_SESSIONS}); "
                        "more get a 'too many sessions' page")
    s.add_argument("--show", action="store_true", help="open a browser tab")
    s.add_argument("--quiet", action="store_true", help="no progress on stderr")
    s.set_defaults(func=_cmd_serve)


def main(argv: list[str] | None = None) -> int:
    """Run ``plot`` / ``serve`` without the main CLI (``python -m embedscope.viz.cli``).

    Errors read as in the main CLI (one line, exit code 2): both run their commands
    through :func:`embedscope.engine.command.run_command`.
    """
    from embedscope.engine.command import run_command

    parser = argparse.ArgumentParser(prog="embedscope", description="Plot and explore embeddings.")
    register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_command(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
