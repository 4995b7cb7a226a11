"""Where numba's on-disk cache of compiled kernels goes, when numba alone would have nowhere.

Every hot kernel is ``@numba.njit(cache=True)``, and numba picks the cache directory
when the decorator runs, at import: ``NUMBA_CACHE_DIR`` if set, else ``__pycache__``
beside the source if writable, else its user-wide directory (``$XDG_CACHE_HOME/numba``
or ``~/.cache/numba``). Checked with numba 0.68 on a copy of the package that could not
be written: it falls back to ``~/.cache/numba`` by itself, but with ``HOME`` unwritable
too (a service account, a container run as an arbitrary uid) the decorator raises
``RuntimeError: cannot cache function ...: no locator available`` and ``import
embedscope`` fails. Only that last case is handled here: the cache then goes to a
private per-user directory under the temporary directory. A ``NUMBA_CACHE_DIR`` the
user set is never overridden, and nothing changes where numba already has a place.

numba is not imported unless the package directory is unwritable, so a normal
``import embedscope`` pays two ``stat`` calls and one temporary file here.
"""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import sys
import tempfile

__all__ = ["configure_numba_cache", "private_cache_dir"]

_ENV = "NUMBA_CACHE_DIR"


def _writable(path: str) -> bool:
    """numba's own test for a cache directory: create it, then a temporary file in it."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def _numba_user_dir() -> str:
    # numba's user-wide locator uses its vendored appdirs; asking it keeps us in step
    # with XDG_CACHE_HOME and the macOS / Windows locations.
    from numba.misc.appdirs import AppDirs

    return str(AppDirs(appname="numba", appauthor=False).user_cache_dir)


def _user_tag() -> str:
    getuid = getattr(os, "getuid", None)
    if getuid is not None:
        return str(getuid())
    import getpass

    return getpass.getuser()


def private_cache_dir(parent: str) -> str | None:
    """``parent/embedscope-numba-<uid>``, made mode 0700, or None if it is not safely ours.

    The name is predictable, so in a shared ``/tmp`` another user could create it first:
    an existing one is used only if it is a real directory (not a link) owned by us and
    closed to others, since numba loads code from its cache.
    """
    path = os.path.join(parent, f"embedscope-numba-{_user_tag()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or stat.S_IMODE(info.st_mode) & 0o077:
        return None
    getuid = getattr(os, "getuid", None)
    if getuid is not None and info.st_uid != getuid():
        return None
    return path if _writable(path) else None


def configure_numba_cache() -> str | None:
    """Give numba a writable cache directory where it has none; return it, or None.

    None: the user's ``NUMBA_CACHE_DIR``, the package's ``__pycache__`` or numba's
    user-wide directory serves, and nothing was changed. Otherwise sets
    ``NUMBA_CACHE_DIR`` (so child processes agree) to a private directory under the
    temporary directory, or, if that is taken by someone else, to a fresh one removed
    at exit (kernels then compile on every run, but they run).
    """
    if os.environ.get(_ENV):
        return None
    if _writable(os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__")):
        return None
    if _writable(_numba_user_dir()):
        return None
    chosen = private_cache_dir(tempfile.gettempdir())
    if chosen is None:
        try:
            chosen = tempfile.mkdtemp(prefix="embedscope-numba-")
        except OSError:
            return None  # nowhere at all: numba's own error says so at the decorator
        atexit.register(shutil.rmtree, chosen, ignore_errors=True)
    os.environ[_ENV] = chosen
    if "numba.core.config" in sys.modules:
        # numba read the environment at import; its reload re-reads what changed
        from numba.core import config

        config.reload_config()
    return chosen
