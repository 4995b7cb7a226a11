"""Writing results without ever leaving a user's file half-written or overwritten."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embedscope.engine.dispatch import to_host

COORD_NAMES = ("x", "y", "z")


class OutputExists(FileExistsError):
    """The output path exists and overwriting was not asked for."""


@contextmanager
def atomic_output(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place on success.

    The temporary file sits in the destination folder (same file system, so the
    rename is atomic) and is removed if the block raises. An existing ``path`` is a
    :class:`OutputExists` error unless ``force``.

    Parameters
    ----------
    path : str or path
        Final destination.
    force : bool, default=False
        Replace an existing file.

    Yields
    ------
    Path
        Where to write; it keeps ``path``'s suffix so writers that look at the
        extension behave.
    """
    final = Path(path)
    if final.is_dir():
        raise OutputExists(f"{final} is a directory")
    if final.exists() and not force:
        raise OutputExists(f"{final} exists; pass --force (force=True) to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".tmp{final.suffix}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give it the permissions a plain
        # open() would have, under the user's umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def coords_frame(coords: Any, meta: pd.DataFrame | None = None) -> pd.DataFrame:
    """A DataFrame of x, y[, z] (or c0..cN for more dimensions) plus metadata columns."""
    coords = to_host(coords)
    names = list(COORD_NAMES[: coords.shape[1]]) if coords.shape[1] <= 3 else [f"c{i}" for i in range(coords.shape[1])]
    frame = pd.DataFrame({name: coords[:, i] for i, name in enumerate(names)})
    if meta is not None:
        clash = [c for c in meta.columns if c in frame.columns]
        meta = meta.rename(columns={c: f"meta_{c}" for c in clash})
        frame = pd.concat([frame, meta.reset_index(drop=True)], axis=1)
    return frame


def write_coords(path: str | os.PathLike, coords: Any, meta: pd.DataFrame | None = None, *, force: bool = False) -> Path:
    """Write an embedding to ``.parquet`` (coordinates plus metadata) or ``.npy``.

    Parameters
    ----------
    path : str or path
        Destination; the suffix picks the format.
    coords : array of shape (n, c)
    meta : DataFrame, optional
        Written beside the coordinates (parquet only; ignored for ``.npy``).
    force : bool, default=False
        Replace an existing file.

    Returns
    -------
    Path
    """
    final = Path(path)
    suffix = final.suffix.lower()
    if suffix not in (".parquet", ".pq", ".npy"):
        raise ValueError(f"{final}: output must end in .parquet or .npy")
    with atomic_output(final, force=force) as tmp:
        if suffix == ".npy":
            np.save(tmp, to_host(coords), allow_pickle=False)
        else:
            coords_frame(coords, meta).to_parquet(tmp, index=False)
    return final
