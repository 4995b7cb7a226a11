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
"""

SERVE_EXAMPLE = """example:
  embedscope serve coords.parquet                    # coordinates written by 'embedscope reduce'
  embedscope serve vectors.npy --meta meta.csv --method pca --port 5006
  then open http://127.0.0.1:5006 (the server binds to 127.0.0.1 unless --host says otherwise)
"""


def _serve_command(args: Any) -> str:
    parts = ["embedscope", "serve", args.input]
    if getattr(args, "meta", None):
        parts += ["--meta", args.meta]
    if getattr(args, "color", None):
        parts += ["--color", args.color]
    return shlex.join(parts)


def _cmd_plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from embedscope.engine.data import DataError
    from embedscope.viz.app import load_input

    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".html", ".htm"):
        raise ValueError(f"--out {out}: give a .png or .html file name")
    if out.exists() and not args.force:
        from embedscope.engine.io import OutputExists

        raise OutputExists(f"{out} exists; pass --force to replace it")
    array, meta, is_coords = load_input(args.input, args.meta)
    if not is_coords:
        raise DataError(f"{args.input} holds {array.shape[1]}-dimensional vectors, not 2-D coordinates; "
                        f"run 'embedscope reduce {args.input} --out coords.parquet' first")
    if args.color is not None and (meta is None or args.color not in meta.columns):
        known = [] if meta is None else list(meta.columns)
        raise DataError(f"no column {args.color!r} to colour by; metadata columns: {known}")
    from embedscope.viz.export import save_html, save_png

    serve_hint = _serve_command(args)
    options = {"width": args.width, "height": args.height, "how": args.how, "force": args.force}
    if suffix == ".png":
        save_png(array, out, meta, args.color, **options)
    else:
        save_html(array, out, meta, args.color, title=Path(args.input).name, serve_hint=serve_hint, **options)
    print(out)
    if not args.quiet:
        print(f"explore it live (re-aggregates on zoom): {serve_hint}", file=sys.stderr)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from embedscope.viz.app import AppData, serve

    if not args.quiet:
        print(f"embedscope serve: loading {args.input}", file=sys.stderr)
    data = AppData(args.input, args.meta, args.method, color=args.color, text_column=args.text_column,
                   verbose=not args.quiet)
    if not args.quiet:
        print(f"embedscope serve: {data.note}\n  open http://{args.host}:{args.port}/  (Ctrl-C stops)", file=sys.stderr)
    serve(data, port=args.port, host=args.host, show=args.show)
    return 0


def register(sub: Any) -> None:
    """Add the ``plot`` and ``serve`` sub-commands to an argparse sub-parsers object."""
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
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--quiet", action="store_true", help="print only the written path")
    p.set_defaults(func=_cmd_plot)

    s = sub.add_parser("serve", help="explore an embedding in the browser (Bokeh server)",
                       epilog=SERVE_EXAMPLE, formatter_class=fmt)
    s.add_argument("input", help="coordinates (parquet with x, y; .npy n x 2) or vectors to reduce first")
    s.add_argument("--meta", help="metadata file with one row per point")
    s.add_argument("--method", choices=["umap", "tsne", "pca"],
                   help="reducer for vectors input (default umap when installed, else pca)")
    s.add_argument("--color", help="metadata column to colour by at start")
    s.add_argument("--text-column", help="metadata column the search box matches (default: first text column)")
    s.add_argument("--port", type=int, default=5006, help="port (default 5006)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--show", action="store_true", help="open a browser tab")
    s.add_argument("--quiet", action="store_true", help="no progress on stderr")
    s.set_defaults(func=_cmd_serve)


def main(argv: list[str] | None = None) -> int:
    """Run ``plot`` / ``serve`` without the main CLI (``python -m embedscope.viz.cli``)."""
    from embedscope.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
