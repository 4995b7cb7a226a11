"""Built-in datasets and the one rule for reading sizes.

The generators (:func:`make_mixture`, :func:`make_swiss_roll`) make seeded data at any
size; :func:`make_builtin` turns a name such as ``"mixture:100kx50"`` into vectors and
their labels. ``builtin:NAME`` inputs of :func:`embedscope.load_vectors` and the
``embedscope bench`` datasets both come from here, so a name means the same data
everywhere.

Every size a user types (``builtin:mixture:NxD``, ``bench --sizes``) is read by
:func:`parse_size`. This module sits below the readers (``embedscope.io``): it returns
plain arrays and frames, and the loader wraps them into its ``Vectors``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from embedscope._memory import host_memory_budget
from embedscope.errors import DataError

__all__ = [
    "GENERATED_SHAPES",
    "SWISSROLL_BINS",
    "make_builtin",
    "make_mixture",
    "make_swiss_roll",
    "parse_shape",
    "parse_size",
    "parse_sizes",
    "swissroll_labels",
]

#: Built-ins generated at any size, with the (rows, dims) they have when none is given.
#: The others (digits) are fixed data.
GENERATED_SHAPES = {"mixture": (10_000, 50), "swissroll": (10_000, 100)}
#: Roll positions are cut into this many bins for the swiss roll's ``label`` column.
SWISSROLL_BINS = 10


# ----------------------------------------------------------------------------- sizes


def parse_size(text: str) -> int:
    """A positive whole number as people write sizes: ``2500``, ``10_000``, ``10k``, ``1.5M``, ``1e6``.

    The one rule for every size embedscope reads (``builtin:mixture:NxD``, ``bench
    --sizes``).

    Parameters
    ----------
    text : str

    Returns
    -------
    int

    Raises
    ------
    DataError
        Not a number, not positive, or not whole (``1.2345k``).
    """
    raw = str(text).strip().lower().replace("_", "")
    mult = {"k": 1_000, "m": 1_000_000}.get(raw[-1:], 1)
    try:
        value = float(raw[:-1] if mult > 1 else raw) * mult
    except ValueError:
        raise DataError(f"cannot read size {text!r}; write e.g. 2500, 10k, 1.5M or 1e6") from None
    if not (1 <= value < float("inf")) or value != int(value):
        raise DataError(f"size {text!r} must be a positive whole number")
    return int(value)


def parse_sizes(text: str | None) -> list[int]:
    """A comma-separated list of sizes (each read by :func:`parse_size`), in the order
    given, duplicates dropped; ``None`` or blank text is the empty list.

    Parameters
    ----------
    text : str or None

    Returns
    -------
    list of int

    Raises
    ------
    DataError
        An item :func:`parse_size` refuses.
    """
    if text is None or not str(text).strip():
        return []
    sizes: list[int] = []
    for part in str(text).split(","):
        if part.strip():
            size = parse_size(part)
            if size not in sizes:
                sizes.append(size)
    return sizes


def parse_shape(spec: str) -> tuple[int, int | None]:
    """``"NxD"`` or ``"N"`` as (rows, dims or None), each read by :func:`parse_size`.

    Parameters
    ----------
    spec : str

    Returns
    -------
    rows : int
    dims : int or None

    Raises
    ------
    DataError
        More than one ``x``, an empty side, or a side :func:`parse_size` refuses.
    """
    parts = spec.lower().split("x")
    if len(parts) > 2 or not all(part.strip() for part in parts):
        raise DataError(f"cannot read size {spec!r}; write e.g. 100000x50 or 100kx50")
    return parse_size(parts[0]), (parse_size(parts[1]) if len(parts) > 1 else None)


# ----------------------------------------------------------------------------- generators


def make_mixture(
    n_samples: int = 10_000,
    n_features: int = 50,
    n_clusters: int = 20,
    *,
    cluster_std: float = 1.0,
    center_box: float = 10.0,
    random_state: int | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded Gaussian mixture with labels, at any size.

    Cluster sizes vary (Dirichlet weights) and each cluster has its own scale, so
    the data is not a grid of identical blobs.

    Parameters
    ----------
    n_samples, n_features, n_clusters : int
        Size of the data and the number of mixture components.
    cluster_std : float, default=1.0
        Typical per-cluster standard deviation.
    center_box : float, default=10.0
        Centres are uniform in ``[-center_box, center_box]^n_features``.
    random_state : int or None, default=0

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float32
    labels : ndarray of shape (n_samples,), int32
    """
    if n_samples < 1 or n_features < 1 or n_clusters < 1:
        raise ValueError("n_samples, n_features and n_clusters must be positive")
    rng = np.random.default_rng(random_state)
    centers = rng.uniform(-center_box, center_box, size=(n_clusters, n_features))
    scales = cluster_std * rng.uniform(0.5, 1.5, size=n_clusters)
    weights = rng.dirichlet(np.full(n_clusters, 5.0))
    labels = rng.choice(n_clusters, size=n_samples, p=weights).astype(np.int32)
    X = np.empty((n_samples, n_features), dtype=np.float32)
    step = max(1, (1 << 24) // n_features)  # generate in blocks to bound float64 temporaries
    for start in range(0, n_samples, step):
        lab = labels[start : start + step]
        noise = rng.standard_normal((len(lab), n_features))
        X[start : start + step] = centers[lab] + noise * scales[lab, None]
    return X, labels


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
    """Equal-width bins of the roll position ``t`` as int32 labels ``0 .. bins-1``.

    Parameters
    ----------
    t : ndarray
        Positions along the roll, as :func:`make_swiss_roll` returns them.
    bins : int, default=SWISSROLL_BINS

    Returns
    -------
    ndarray of int32
    """
    lo, hi = 1.5 * np.pi, 4.5 * np.pi
    return np.clip(((t - lo) / (hi - lo) * bins).astype(np.int32), 0, bins - 1)


# ----------------------------------------------------------------------------- built-ins


def _check_fits(what: str, n: int, d: int, bytes_per_row: int) -> None:
    """Refuse a generated dataset that cannot fit in memory, before allocating it."""
    need = n * bytes_per_row
    have = host_memory_budget()
    if have is not None and need > have:
        raise DataError(f"{what} needs {_size_text(need)} of memory ({n:,} x {d:,} float32 and its labels); "
                        f"{_size_text(have)} is available: ask for fewer rows or dimensions")


def _size_text(nbytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if nbytes < 1000 or unit == "PB":
            return f"{nbytes:,.0f} {unit}" if unit == "bytes" or nbytes >= 100 else f"{nbytes:.3g} {unit}"
        nbytes /= 1000
    raise AssertionError("unreachable")


def make_builtin(name: str, *, random_state: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """A built-in dataset: its vectors and a metadata frame with a ``label`` column.

    :func:`embedscope.load_builtin` returns the same as a ``Vectors`` pair.

    Parameters
    ----------
    name : str
        ``"mixture"`` (10,000 x 50, 20 clusters), ``"mixture:NxD"`` for any size
        (``"mixture:100kx50"``), ``"swissroll"`` / ``"swissroll:NxD"`` (a noisy swiss
        roll placed in D dimensions, 10,000 x 100 by default; ``label`` bins the
        position along the roll, ``t`` is the position itself), or ``"digits"``
        (scikit-learn's 1,797 8x8 digits; needs scikit-learn).
    random_state : int, default=0

    Returns
    -------
    X : ndarray of shape (n, d), float32
    meta : DataFrame
        One row per vector.

    Raises
    ------
    DataError
        An unknown name, a size :func:`parse_shape` refuses, or a generated dataset
        larger than the memory this process may still use (checked before allocating).
    """
    base, _, size = name.partition(":")
    if base in GENERATED_SHAPES:
        default_n, default_d = GENERATED_SHAPES[base]
        n, given_d = parse_shape(size) if size else (default_n, default_d)
        d = given_d or default_d
    if base == "mixture":
        # float32 values plus the int64 draw of the labels and their int32 copy
        _check_fits(f"builtin:{name}", n, d, 4 * d + 12)
        X, labels = make_mixture(n, d, random_state=random_state)
    elif base == "swissroll":
        # float32 values plus five float64 columns (position, height, the 3-D sheet)
        _check_fits(f"builtin:{name}", n, d, 4 * d + 40)
        X, t = make_swiss_roll(n, d, random_state=random_state)
        return X, pd.DataFrame({"label": swissroll_labels(t), "t": t})
    elif base == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise DataError("builtin:digits needs scikit-learn: pip install scikit-learn") from None
        digits = load_digits()
        X, labels = digits.data.astype(np.float32), digits.target.astype(np.int32)
    else:
        raise DataError(f"unknown built-in dataset {name!r}; choose mixture[:NxD], swissroll[:NxD] or digits")
    return X, pd.DataFrame({"label": labels})
