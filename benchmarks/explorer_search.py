"""The explorer's search (substring, exact, regex) at 1M and 10M rows against pandas,
and the time to find and name the map's region labels at 1M points.

    python benchmarks/explorer_search.py                       # 1M and 10M rows, labels at 1M
    python benchmarks/explorer_search.py --sizes 100000 --label-n 100000   # a quick run

Rows are short texts of two words from a 2,000-word vocabulary and a number
("tiger lamp 8812"), the shape of a title or caption column. Ours is
:func:`embedscope.viz.search.search_rows` on the Arrow array the app makes once per
server (:func:`~embedscope.viz.search.text_array`, timed apart). The pandas baseline
is what the app ran before, in the same process on the same column as pandas reads it
(pandas 3: its default ``str`` dtype): ``str.contains(case=False, regex=False)`` for a
substring, ``==`` for exact, ``str.contains(case=False, regex=True)`` for a regex.
Each figure is the median of ``--repeat`` runs after one warm-up run, and the match
counts of both sides are checked equal. Writes benchmarks/results/explorer_search.json
and .md.
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
from _common import machine, markdown_table, peak_rss_bytes, write_results

#: ~1 row in 1,000 holds "lamp"; ~1 in 20,000 matches the pattern; exact: one row's whole text.
QUERIES = {"substring": "lamp", "exact": None, "regex": r"^tiger (?:lamp|\w{4}) 8\d{3}$"}


def _texts(n: int, seed: int = 0) -> Any:
    """``n`` seeded texts as an Arrow string array, built without Python strings per row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = pa.array(["".join(rng.choice(letters, rng.integers(3, 9))) for _ in range(2000)])
    vocab = pc.if_else(pc.equal(pa.array(np.arange(2000)), 0), "tiger", vocab)
    vocab = pc.if_else(pc.equal(pa.array(np.arange(2000)), 1), "lamp", vocab)
    first = vocab.take(pa.array(rng.integers(0, 2000, n)))
    second = vocab.take(pa.array(rng.integers(0, 2000, n)))
    number = pc.cast(pa.array(rng.integers(0, 10_000, n)), pa.string())
    return pc.binary_join_element_wise(first, second, number, " ")


def _median_time(fn: Any, repeat: int) -> tuple[float, Any]:
    result = fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench_search(n: int, repeat: int) -> list[dict[str, Any]]:
    from embedscope.viz.search import search_rows, text_array

    texts = _texts(n)
    series = texts.to_pandas()  # as the app's frame holds the column
    start = time.perf_counter()
    values = text_array(series)
    build_s = time.perf_counter() - start
    exact = str(series.iloc[n // 2])
    rows = []
    for mode, needle in QUERIES.items():
        needle = needle or exact
        ours_s, ours = _median_time(lambda: search_rows(values, needle, mode), repeat)  # noqa: B023
        if mode == "substring":
            def baseline() -> Any:
                return np.flatnonzero(series.astype(str).str.contains(needle, case=False, regex=False).to_numpy())  # noqa: B023
        elif mode == "exact":
            def baseline() -> Any:
                return np.flatnonzero((series == needle).to_numpy())  # noqa: B023
        else:
            def baseline() -> Any:
                return np.flatnonzero(series.str.contains(needle, case=False, regex=True).to_numpy())  # noqa: B023
        pandas_s, theirs = _median_time(baseline, repeat)
        if not np.array_equal(ours, theirs):
            raise AssertionError(f"{mode} at {n:,}: {ours.size} matches, pandas {theirs.size}")
        rows.append({"rows": n, "mode": mode, "matches": int(ours.size), "ours_s": ours_s, "pandas_s": pandas_s,
                     "speedup": pandas_s / ours_s if ours_s else None, "arrow_build_s": build_s,
                     "pandas_dtype": str(series.dtype)})
        print(f"{n:>11,} {mode:<9} {ours.size:>8,} matches  ours {ours_s * 1e3:8.1f} ms  "
              f"pandas {pandas_s * 1e3:8.1f} ms", flush=True)
    return rows


def bench_labels(n: int) -> list[dict[str, Any]]:
    """find_labels on ``n`` points in 50 clusters, named by a category and by a text column."""
    from embedscope.viz.labels import find_labels

    rng = np.random.default_rng(1)
    centres = rng.uniform(-40, 40, size=(50, 2))
    topic = rng.integers(0, 50, n)
    xy = centres[topic] + rng.normal(size=(n, 2))
    names = np.array([f"topic {i:02d}" for i in range(50)], dtype=object)[topic]
    texts = _texts(n, seed=2).to_pandas().to_numpy(dtype=object)
    rows = []
    for kind, values in (("category", names), ("text", texts)):
        find_labels(xy[:2000, 0], xy[:2000, 1], values[:2000], kind=kind, levels=4)  # warm-up (imports)
        start = time.perf_counter()
        found = find_labels(xy[:, 0], xy[:, 1], values, kind=kind, levels=4)
        seconds = time.perf_counter() - start
        rows.append({"rows": n, "kind": kind, "levels": 4, "labels": len(found.labels), "seconds": seconds})
        print(f"labels {kind:<8} {n:>11,} points: {len(found.labels)} labels over 4 levels in {seconds:.2f} s",
              flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,10000000", help="comma-separated row counts")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--label-n", type=int, default=1_000_000)
    parser.add_argument("--name", default="explorer_search")
    args = parser.parse_args()
    search = [row for n in map(int, args.sizes.split(",")) for row in bench_search(n, args.repeat)]
    labels = bench_labels(args.label_n) if args.label_n else []
    table = markdown_table(search, ["rows", "mode", "matches", "ours_s", "pandas_s", "speedup", "arrow_build_s",
                                    "pandas_dtype"])
    if labels:
        table += "\n\n" + markdown_table(labels, ["rows", "kind", "levels", "labels", "seconds"])
    print(table)
    write_results(args.name, {"machine": machine(), "search": search, "labels": labels,
                              "peak_rss_mb": peak_rss_bytes() / 2**20}, table)


if __name__ == "__main__":
    main()
