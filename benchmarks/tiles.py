"""The static tile site (``embedscope plot --tiles``): time and size on disk.

    python benchmarks/tiles.py                      # 10,000,000 points, levels 0-5
    python benchmarks/tiles.py --n 1000000 --max-zoom 6

The layout is a seeded 2-D mixture of 50 labelled clusters (the shape of a UMAP map),
coloured by label with region labels. Writes benchmarks/results/tiles.json and .md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, peak_rss_bytes, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--max-zoom", type=int, default=5)
    parser.add_argument("--name", default="tiles")
    args = parser.parse_args()

    import pandas as pd

    from embedscope.viz.tiles import write_tile_site

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 50, args.n)
    centres = rng.uniform(-30, 30, size=(50, 2))
    xy = centres[labels] + rng.normal(size=(args.n, 2)) * rng.uniform(0.5, 2.5, 50)[labels, None]
    meta = pd.DataFrame({"label": pd.Categorical.from_codes(labels, [f"cluster {i}" for i in range(50)])})
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        info = write_tile_site(xy, Path(tmp) / "site", meta, "label", max_zoom=args.max_zoom, labels="label")
        seconds = time.perf_counter() - start
        page = (Path(tmp) / "site" / "index.html").stat().st_size
    row = {"points": args.n, "max zoom": args.max_zoom, "tiles": info["tiles"], "seconds": seconds,
           "tiles MiB": info["bytes"] / 2**20, "page MiB": page / 2**20, "peak RSS MiB": peak_rss_bytes() / 2**20}
    table = markdown_table([row], list(row))
    print(table)
    write_results(args.name, {"machine": machine(), "rows": [row]}, table)


if __name__ == "__main__":
    main()
