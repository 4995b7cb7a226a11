"""Writing results without ever leaving a user's file half-written, overwritten or lost.

:func:`write_coords` writes an embedding (a parquet file, an ``.npy`` file, or a
folder of parquet shards for Dask coordinates); :func:`coords_frame` is the one
builder of its coordinate table.

Every output goes through :func:`atomic_output` (one file) or :func:`atomic_output_dir`
(a folder of shards): the result is written to a temporary name beside the destination
and renamed into place only when complete. On top of that:

- an output never replaces an input: paths registered with :func:`protect_inputs`
  (the CLI registers every file and folder it reads) are refused as destinations,
  even with ``force``, whether named directly, through a symlink or as a folder
  holding them;
- an existing destination is replaced only with ``force``, and keeps its permission
  bits; a symlink at the destination (even a dangling one) counts as existing;
- temporary files left by a killed run are removed by the next write to the same
  destination (their names carry the writer's process id);
- file-system failures (read-only folder, a path under an existing file, disk full)
  become one :class:`OutputError` naming the path and the cause.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embedscope._array import dask_modules, is_dask, to_host

COORD_NAMES = ("x", "y", "z")

# Files a folder of our parquet shards may hold; any other file makes it "not ours".
_SHARD_FILE = re.compile(r"(part\.\d+\.parquet|.*\.parquet|_metadata|_common_metadata|_SUCCESS)$")

_PROTECTED: set[Path] = set()


class OutputExists(FileExistsError):
    """The output path exists and overwriting was not asked for."""


class OutputError(OSError):
    """An output cannot be written where it was asked for (the message says why)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "cannot write the output"


def _resolve(path: str | os.PathLike) -> Path:
    # strict=False: the output usually does not exist yet; a symlink loop is refused
    # by the caller's checks rather than raised from here.
    try:
        return Path(os.path.realpath(path))
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def protect_inputs(*paths: str | os.PathLike | Iterable[str | os.PathLike] | None) -> None:
    """Register files or folders that were read, so no output may replace them.

    Parameters
    ----------
    *paths : path, iterable of paths, or None
        Inputs of this run (vectors, metadata, shard files or their folder). ``None``
        and names that are not files on disk (``builtin:...``, globs) are ignored.
    """
    for item in paths:
        if item is None:
            continue
        if isinstance(item, (str, os.PathLike)):
            if os.path.lexists(item):
                _PROTECTED.add(_resolve(item))
        else:
            protect_inputs(*item)


def clear_protected() -> None:
    """Forget every registered input (for long-lived processes and tests)."""
    _PROTECTED.clear()


def _is_within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_not_input(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse ``path`` as an output if it is, contains or lies inside an input.

    Parameters
    ----------
    path : str or path
        The intended output (file or folder).
    inputs : iterable of paths, optional
        Inputs beside the registered ones (:func:`protect_inputs`).

    Raises
    ------
    OutputError
        Naming the input that the output would replace.
    """
    target = _resolve(path)
    protected = set(_PROTECTED) | {_resolve(p) for p in inputs if p is not None and os.path.lexists(p)}
    for source in sorted(protected):
        if _is_within(source, target) or (source.is_dir() and _is_within(target, source)
                                          and target != source and _is_shard_of(target, source)):
            raise OutputError(f"{path} would replace the input {source}; write the output somewhere else "
                              "(an output never replaces an input, even with --force)")


def _is_shard_of(target: Path, folder: Path) -> bool:
    # Writing a new file inside an input folder of shards would add a shard to it.
    return target.parent == folder


def _existing(path: Path) -> bool:
    return os.path.lexists(path)


def _mode_for(final: Path) -> int:
    """Permission bits the output gets: the replaced file's, else what open() would give."""
    try:
        info = final.stat()
        return stat.S_IMODE(info.st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _clean_stale(folder: Path, name: str) -> None:
    """Remove temporaries of ``name`` whose writing process no longer runs."""
    pattern = re.compile(rf"^\.{re.escape(name)}\.(\d+)\.[^/]*\.tmp")
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        match = pattern.match(entry.name)
        if not match:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_output(path: str | os.PathLike, *, force: bool = False) -> None:
    """Refuse an output path before any work: an input, or existing without ``force``.

    Commands call this before a long fit so a refusal comes at once; the writers
    check again when they write.

    Parameters
    ----------
    path : str or path
    force : bool, default=False

    Raises
    ------
    OutputError
        ``path`` is, holds or lies in an input (:func:`check_not_input`).
    OutputExists
        ``path`` exists (a symlink too, even a dangling one) and ``force`` is false.
    """
    final = Path(path)
    check_not_input(final)
    if _existing(final) and not force:
        kind = " (a dangling symlink)" if final.is_symlink() and not final.exists() else ""
        raise OutputExists(f"{final} exists{kind}; pass --force (force=True) to replace it")


def _prepare_destination(final: Path, force: bool, what: str) -> None:
    check_output(final, force=force)
    if _existing(final):
        if final.is_dir() and not final.is_symlink() and what == "file":
            raise OutputExists(f"{final} is a directory")
    parent = final.parent
    for ancestor in [parent, *parent.parents]:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise OutputError(f"cannot write {final}: {ancestor} is a file, not a folder")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder {parent}: {exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to the folder {parent}: permission denied")


def _nearly_full(folder: Path) -> bool:
    try:
        info = os.statvfs(folder)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < (1 << 20)


def _write_error(final: Path, exc: OSError) -> OutputError:
    reasons = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
               errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
               errno.EPERM: "operation not permitted", errno.EFBIG: "file too large"}
    reason = reasons.get(exc.errno or -1, exc.strerror or str(exc))
    if exc.errno is None and _nearly_full(final.parent):
        # numpy reports a short write without an errno ("N requested and M written").
        reason = reasons[errno.ENOSPC]
    return OutputError(f"cannot write {final}: {reason}; nothing was written")


@contextmanager
def _as_output_error(final: Path) -> Iterator[None]:
    """Turn a file-system failure while writing ``final`` into one :class:`OutputError`."""
    try:
        yield
    except (OutputError, OutputExists):
        raise
    except OSError as exc:
        raise _write_error(final, exc) from None


@contextmanager
def atomic_output(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place on success.

    The temporary file sits in the destination folder (same file system, so the
    rename is atomic) and is removed if the block raises. An existing ``path``
    (a symlink too, even a dangling one) is a :class:`OutputExists` error unless
    ``force``; a replaced file keeps its permission bits. A path that resolves to an
    input registered with :func:`protect_inputs` is refused even with ``force``.

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

    Raises
    ------
    OutputExists
        ``path`` exists and ``force`` is false, or it is a directory.
    OutputError
        ``path`` is an input, its folder cannot be written, or writing failed
        (disk full, read-only file system).
    """
    final = Path(path)
    _prepare_destination(final, force, "file")
    _clean_stale(final.parent, final.name)
    mode = _mode_for(final)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.{os.getpid()}.",
                                        suffix=f".tmp{final.suffix}", dir=final.parent)
    except OSError as exc:
        raise _write_error(final, exc) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _as_output_error(final):
            yield tmp
            os.chmod(tmp, mode)
            os.replace(tmp, final)
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()


@contextmanager
def atomic_output_dir(path: str | os.PathLike, *, force: bool = False, marker: str | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; rename it into place on success.

    As :func:`atomic_output`, for a folder of shards. An existing folder is replaced
    only with ``force``, and only if it holds nothing but parquet shards (so a folder
    of the user's other files is never deleted); it keeps its permission bits.

    Parameters
    ----------
    path : str or path
        Final folder.
    force : bool, default=False
        Replace an existing folder of shards.
    marker : str, optional
        The name of a file this writer leaves in every folder it makes (a tile site's
        manifest): an existing folder holding it may be replaced with ``force``,
        whatever else it holds, since it is an earlier output of the same writer.

    Yields
    ------
    Path
        An empty temporary folder to write into.
    """
    final = Path(path)
    _prepare_destination(final, force, "dir")
    if _existing(final) and final.is_dir() and not final.is_symlink():
        ours = marker is not None and (final / marker).is_file()
        strangers = [] if ours else [p.name for p in final.iterdir()
                                     if not (p.is_file() and _SHARD_FILE.match(p.name))]
        if strangers:
            raise OutputError(f"{final} holds files that are not parquet shards ({strangers[:3]}); "
                              "refusing to replace it, even with --force")
    _clean_stale(final.parent, final.name)
    umask = os.umask(0)
    os.umask(umask)
    mode = stat.S_IMODE(final.stat().st_mode) if final.is_dir() else 0o777 & ~umask
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{os.getpid()}.", suffix=".tmp", dir=final.parent))
    except OSError as exc:
        raise _write_error(final, exc) from None
    old: Path | None = None
    try:
        with _as_output_error(final):
            yield tmp
            os.chmod(tmp, mode)
            if _existing(final):
                # Two renames, not one: a folder cannot replace a non-empty folder.
                old = Path(tempfile.mkdtemp(prefix=f".{final.name}.{os.getpid()}.", suffix=".tmp-old",
                                            dir=final.parent))
                os.rmdir(old)
                os.replace(final, old)
                try:
                    os.replace(tmp, final)
                except OSError:
                    os.replace(old, final)  # put the user's folder back before failing
                    old = None
                    raise
            else:
                os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and os.path.lexists(old):
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()


def coord_names(n_components: int) -> list[str]:
    """Column names of ``n_components`` coordinates: x, y[, z], or c0..cN past three.

    Parameters
    ----------
    n_components : int

    Returns
    -------
    list of str
    """
    if n_components <= len(COORD_NAMES):
        return list(COORD_NAMES[:n_components])
    return [f"c{i}" for i in range(n_components)]


def _without_clashes(meta: Any, names: list[str]) -> Any:
    """``meta`` with columns named like a coordinate renamed ``meta_<name>``, so none is lost."""
    clash = [c for c in meta.columns if c in names]
    return meta.rename(columns={c: f"meta_{c}" for c in clash}) if clash else meta


def coords_frame(coords: Any, meta: Any = None) -> Any:
    """The table of an embedding: coordinate columns, then the metadata columns.

    The one builder of coordinate tables: :func:`write_coords` writes it, and plots
    build theirs on it. Coordinates are named by :func:`coord_names`; a metadata
    column named like one of them becomes ``meta_<name>``.

    Parameters
    ----------
    coords : array of shape (n, c)
        numpy or cupy (a pandas DataFrame is returned), or a ``dask.array`` (a
        ``dask.dataframe`` is returned, nothing is computed).
    meta : DataFrame or dask DataFrame, optional
        One row per point, joined row for row.

    Returns
    -------
    pandas.DataFrame or dask.dataframe.DataFrame
    """
    names = coord_names(coords.shape[1])
    if is_dask(coords):
        return _dask_coords_frame(coords, meta, names)
    coords = to_host(coords)
    frame = pd.DataFrame({name: coords[:, i] for i, name in enumerate(names)})
    if meta is not None:
        frame = pd.concat([frame, _without_clashes(meta, names).reset_index(drop=True)], axis=1)
    return frame


def _dask_coords_frame(coords: Any, meta: Any, names: list[str]) -> Any:
    _, _, dd = dask_modules()
    frame = dd.from_dask_array(coords, columns=names)
    if meta is None:
        return frame
    if is_dask(meta):
        meta = _without_clashes(meta, names).reset_index(drop=True)
        frame = frame.reset_index(drop=True)
        lengths = coords.chunks[0]
        if meta.npartitions != len(lengths):
            meta = meta.repartition(npartitions=len(lengths))
        return dd.concat([frame, meta], axis=1, ignore_unknown_divisions=True)
    meta = _without_clashes(pd.DataFrame(meta), names).reset_index(drop=True)
    return dd.concat([frame, dd.from_pandas(meta, npartitions=frame.npartitions)], axis=1)


#: Key of the parquet schema metadata that says how a layout was made (JSON).
LAYOUT_KEY = b"embedscope"


def _jsonable(value: Any) -> bool:
    import json

    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        return False
    return True


def layout_info(method: str, reducer: Any) -> dict[str, Any]:
    """How a layout was made, for :func:`write_coords`: the method and the reducer's
    parameters that JSON can hold (a callback or an array is left out), and the backend
    it ran on.

    Parameters
    ----------
    method : str
        The reducer's name (``"umap"``, ``"tsne"``, ``"pacmap"``, ``"pca"``).
    reducer : estimator
        The fitted reducer.

    Returns
    -------
    dict
    """
    params = reducer.get_params() if hasattr(reducer, "get_params") else {}
    return {"method": str(method), "params": {str(k): v for k, v in params.items() if _jsonable(v)},
            "backend": getattr(reducer, "backend_", None)}


def read_layout_info(path: str | os.PathLike) -> dict[str, Any] | None:
    """What :func:`write_coords` recorded about how a parquet layout was made; None when
    the file is not parquet, holds no record, or the record is unreadable. For a folder
    of parquet shards, the record of its first shard (each holds the same)."""
    import json

    if Path(path).is_dir():
        shards = sorted(p for p in Path(path).iterdir() if p.suffix.lower() in (".parquet", ".pq") and p.is_file())
        path = shards[0] if shards else path
    if Path(path).suffix.lower() not in (".parquet", ".pq") or not Path(path).is_file():
        return None
    import pyarrow.parquet as pq

    try:
        raw = (pq.read_schema(path).metadata or {}).get(LAYOUT_KEY)
        info = json.loads(raw) if raw else None
    except Exception:  # a title is not worth failing over; the plot draws without it
        return None
    return info if isinstance(info, dict) and isinstance(info.get("method"), str) else None


def write_coords(path: str | os.PathLike, coords: Any, meta: Any = None, *, force: bool = False,
                 info: dict[str, Any] | None = None) -> Path:
    """Write an embedding: ``.parquet`` (coordinates plus metadata) or ``.npy``, or for
    Dask coordinates a folder of parquet shards.

    Every output is written under a temporary name and renamed into place
    (:func:`atomic_output`, :func:`atomic_output_dir`), never over an input.

    Parameters
    ----------
    path : str or path
        Destination; the suffix picks the format. For a ``dask.array`` of coordinates,
        the folder of shards (see :func:`write_parquet_dir`).
    coords : array of shape (n, c)
        numpy, cupy or dask.
    meta : DataFrame or dask DataFrame, optional
        Written beside the coordinates (parquet only; ignored for ``.npy``).
    force : bool, default=False
        Replace an existing file (or folder of shards).
    info : dict, optional
        How the layout was made (:func:`layout_info`), stored as JSON in the parquet
        schema metadata under ``embedscope`` (of the file, or of every shard of a
        folder; not in ``.npy``), where plots read it back for their titles
        (:func:`read_layout_info`).

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        A file name that does not end in ``.parquet`` or ``.npy``.
    OutputExists, OutputError
        As :func:`atomic_output`.
    """
    if is_dask(coords):
        return write_parquet_dir(coords_frame(coords, meta), path, force=force, info=info)
    final = Path(path)
    suffix = final.suffix.lower()
    if suffix not in (".parquet", ".pq", ".npy"):
        raise ValueError(f"{final}: output must end in .parquet or .npy")
    with atomic_output(final, force=force) as tmp:
        if suffix == ".npy":
            np.save(tmp, to_host(coords), allow_pickle=False)
        elif info is None:
            coords_frame(coords, meta).to_parquet(tmp, index=False)
        else:
            import json

            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(coords_frame(coords, meta), preserve_index=False)
            schema_meta = {**(table.schema.metadata or {}), LAYOUT_KEY: json.dumps(info).encode("utf-8")}
            pq.write_table(table.replace_schema_metadata(schema_meta), tmp)
    return final


def write_parquet_dir(frame: Any, out: str | os.PathLike, *, force: bool = False,
                      info: dict[str, Any] | None = None) -> Path:
    """Write a dask.dataframe as parquet shards into a new folder, renamed into place.

    The folder is written under a temporary name and swapped in when complete
    (:func:`atomic_output_dir`): an existing folder is replaced only with ``force``
    and only if it holds nothing but parquet shards, and never when it is (or holds)
    an input of this run.

    Parameters
    ----------
    frame : dask.dataframe.DataFrame
        Such as :func:`coords_frame` of Dask coordinates.
    out : str or path
        The folder.
    force : bool, default=False
    info : dict, optional
        How the layout was made (:func:`layout_info`), stored as JSON under
        ``embedscope`` in the schema metadata of every shard, as :func:`write_coords`
        does for one file: any shard then says how the whole was made.

    Returns
    -------
    Path
    """
    import json

    final = Path(out)
    custom = {LAYOUT_KEY: json.dumps(info).encode("utf-8")} if info is not None else None
    with atomic_output_dir(final, force=force) as tmp:
        frame.to_parquet(str(tmp), write_index=False, custom_metadata=custom)
    return final
