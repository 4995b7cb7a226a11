"""Benchmark datasets: generated at any size, or subsampled from a user's file.

The swiss roll lives here and is exposed to users as ``builtin:swissroll:NxD`` through
:func:`embedscope.engine.data.load_builtin`. A benchmark dataset is a *spec* (what the
user typed after ``--data``) plus a size: generators are re-run at each size with the
same seed; fixed data (a file, digits) is subsampled with a seeded choice of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["BenchData", "load_bench_data", "make_swiss_roll", "parse_size", "parse_sizes"]

#: Built-ins generated at any size (the others are fixed and subsampled).
GENERATED = ("mixture", "swissroll")
#: Roll positions are cut into this many bins for the ``label`` column.
SWISSROLL_BINS = 10


def make_swiss_roll(
    n_samples: int = 10_000,
    n_features: int = 100,
    *,
    noise: float = 0.05,
    random_state: int | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A swiss roll (a rolled-up 2-D sheet) isometrically placed in ``n_features`` dims.

    The sheet coordinate along the roll, ``t`` in ``[1.5 pi, 4.5 pi]``, and a height
    in ``[0, 21]`` give 3-D points ``(t cos t, height, t sin t)``; a random orthonormal
    basis carries them into ``n_features`` dimensions and isotropic Gaussian noise is
    added in every dimension. Neighbouring turns of the roll are about ``2 pi`` apart,
    far more than the noise, so a reducer that keeps global structure unrolls it into
    a strip ordered by ``t``; one that tears or folds it shows up in kNN label accuracy.

    Parameters
    ----------
    n_samples : int, default=10000
    n_features : int, default=100
        At least 3.
    noise : float, default=0.05
        Standard deviation of the noise in each dimension.
    random_state : int or None, default=0

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float32
    t : ndarray of shape (n_samples,), float32
        Position along the roll (colour by it, or bin it into labels).
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be positive; got {n_samples}")
    if n_features < 3:
        raise ValueError(f"n_features must be at least 3 for a swiss roll; got {n_features}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0; got {noise}")
    rng = np.random.default_rng(random_state)
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.random(n_samples))
    height = 21.0 * rng.random(n_samples)
    sheet = np.column_stack([t * np.cos(t), height, t * np.sin(t)])
    basis, _ = np.linalg.qr(rng.standard_normal((n_features, 3)))  # orthonormal columns
    X = np.empty((n_samples, n_features), dtype=np.float32)
    step = max(1, (1 << 24) // n_features)  # blocks bound the float64 temporaries
    for start in range(0, n_samples, step):
        block = sheet[start : start + step] @ basis.T
        block += noise * rng.standard_normal(block.shape)
        X[start : start + step] = block
    return X, t.astype(np.float32)


def swissroll_labels(t: np.ndarray, bins: int = SWISSROLL_BINS) -> np.ndarray:
    """Equal-width bins of the roll position ``t`` as int32 labels ``0 .. bins-1``."""
    lo, hi = 1.5 * np.pi, 4.5 * np.pi
    return np.clip(((t - lo) / (hi - lo) * bins).astype(np.int32), 0, bins - 1)


def parse_size(text: str) -> int:
    """``"10k"`` -> 10000, ``"1M"`` -> 1000000, ``"2500"`` -> 2500, ``"1.5k"`` -> 1500.

    The same rule as ``builtin:mixture:NxD`` (:func:`embedscope.engine.data.parse_count`);
    errors are ``DataError``, a ``ValueError``.
    """
    from embedscope.engine.data import parse_count

    return parse_count(text)


def parse_sizes(text: str | None) -> list[int]:
    """A comma-separated size list, in the order given, duplicates dropped."""
    if text is None or not str(text).strip():
        return []
    sizes: list[int] = []
    for part in str(text).split(","):
        if part.strip():
            size = parse_size(part)
            if size not in sizes:
                sizes.append(size)
    return sizes


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
    from embedscope.engine.data import _parse_size

    body = spec[len("builtin:"):] if spec.startswith("builtin:") else spec
    base, _, size = body.partition(":")
    if not size:
        return base, None, None
    if size.lower().startswith("x"):  # "x100": dimensions only
        return base, None, _parse_size("1" + size)[1]
    n, d = _parse_size(size)
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
    from embedscope.engine.data import DataError, load_builtin, load_vectors

    note = ""
    if is_builtin(spec):
        base, n, d = _split_builtin(spec)
        if base in GENERATED:
            n = size or n or 10_000
            d = d or (100 if base == "swissroll" else 50)
            name = f"{base}:{n}x{d}"
            X, frame = load_builtin(name, random_state=random_state)
        else:
            X, frame = load_builtin(base, random_state=random_state)
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
