"""Benchmark datasets: generated at any size, or subsampled from a user's file.

The generators and the size rule are :mod:`embedscope.datasets`, shared with
``builtin:NAME`` inputs. A benchmark dataset is a *spec* (what the user typed after
``--data``) plus a size: generators are re-run at each size with the same seed; fixed
data (a file, digits) is subsampled with a seeded choice of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from embedscope.datasets import GENERATED_SHAPES, make_builtin, parse_shape
from embedscope.errors import DataError

__all__ = ["BenchData", "is_builtin", "load_bench_data"]

#: Built-ins generated at any size (the others are fixed and subsampled).
GENERATED = tuple(GENERATED_SHAPES)


@dataclass
class BenchData:
    """One benchmark dataset at one size."""

    name: str
    """How it is named in tables, e.g. ``mixture:10000x50``."""
    X: np.ndarray
    labels: np.ndarray | None
    """Integer-coded labels for kNN accuracy and panel colours, or None."""
    label_names: list[str] | None
    """Label value of each code, for legends."""
    note: str = ""


def _split_builtin(spec: str) -> tuple[str, int | None, int | None]:
    body = spec[len("builtin:"):] if spec.startswith("builtin:") else spec
    base, _, size = body.partition(":")
    if not size:
        return base, None, None
    if size.lower().startswith("x"):  # "x100": dimensions only
        return base, None, parse_shape("1" + size)[1]
    n, d = parse_shape(size)
    return base, n, d


def is_builtin(spec: str) -> bool:
    """Whether ``spec`` names a built-in dataset (``mixture``, ``builtin:digits``, ...)."""
    base = (spec[len("builtin:"):] if spec.startswith("builtin:") else spec).partition(":")[0]
    return spec.startswith("builtin:") or base in (*GENERATED, "digits")


def _encode(values: Any) -> tuple[np.ndarray, list[str]]:
    codes, uniques = pd.factorize(pd.Series(values), sort=True)
    if (codes < 0).any():
        raise ValueError("the labels column has missing values")
    return codes.astype(np.int32), [str(u) for u in uniques]


def load_bench_data(
    spec: str,
    size: int | None,
    *,
    labels: str | None = None,
    meta: str | None = None,
    random_state: int = 0,
) -> BenchData:
    """The dataset ``spec`` at ``size`` points, with integer labels where there are any.

    Parameters
    ----------
    spec : str
        ``mixture[:NxD | :xD]``, ``swissroll[:NxD | :xD]``, ``digits`` (with or without
        the ``builtin:`` prefix), or any path :func:`embedscope.load_vectors` reads.
    size : int or None
        Number of points; None keeps the spec's own size. Generators make exactly
        this many; fixed data takes a seeded random subset (all rows when ``size``
        is larger, said in ``note``).
    labels : str, optional
        Metadata column to use as labels; ``label`` by default where it exists.
    meta : str, optional
        Metadata file for a vector file (one row per vector).
    random_state : int, default=0
    """
    from embedscope.io.load import load_vectors

    note = ""
    if is_builtin(spec):
        base, n, d = _split_builtin(spec)
        if base in GENERATED:
            default_n, default_d = GENERATED_SHAPES[base]
            n = size or n or default_n
            d = d or default_d
            name = f"{base}:{n}x{d}"
            X, frame = make_builtin(name, random_state=random_state)
        else:
            X, frame = make_builtin(base, random_state=random_state)
            name = base
    else:
        X, frame = load_vectors(spec, meta)
        name = str(spec)
    column = labels if labels is not None else ("label" if frame is not None and "label" in frame else None)
    if column is not None and (frame is None or column not in frame):
        known = [] if frame is None else list(frame.columns)
        raise DataError(f"labels column {column!r} not found; metadata columns are {known}")
    if size is not None and not (is_builtin(spec) and _split_builtin(spec)[0] in GENERATED):
        if size < X.shape[0]:
            rows = np.sort(np.random.default_rng(random_state).choice(X.shape[0], size, replace=False))
            X = X[rows]
            frame = None if frame is None else frame.iloc[rows].reset_index(drop=True)
            name = f"{name}[{size}]"
        elif size > X.shape[0]:
            note = f"asked for {size:,} points; the data has {X.shape[0]:,}, all used"
    X = np.ascontiguousarray(X, dtype=np.float32)
    codes, names = _encode(frame[column]) if column is not None else (None, None)
    return BenchData(name, X, codes, names, note)
