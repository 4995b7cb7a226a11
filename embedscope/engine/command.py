"""What every ``embedscope`` command shares: the Dask cluster flags, and running a
command so that every error reaches the user as one line.

The main CLI (:mod:`embedscope.cli`) and the plot / serve commands
(:mod:`embedscope.viz.cli`, also runnable as ``python -m embedscope.viz.cli``) both
build on it; it sits below them so that neither imports the other's module. Importing
it is cheap (argparse only): the errors it names load when a command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Any

__all__ = ["add_cluster_flags", "cluster_flags", "one_line", "run_command"]


def add_cluster_flags(group: Any, *, local_note: str = "") -> None:
    """Add ``--scheduler ADDRESS`` and ``--local-cluster N`` to a parser or argument group.

    Every command that can run on Dask registers the pair here, so the flags read the
    same everywhere; :func:`cluster_flags` checks what was given.

    Parameters
    ----------
    group : argparse.ArgumentParser or argument group
    local_note : str, default=""
        Appended to the help of ``--local-cluster`` (what a worker means for this command).
    """
    group.add_argument("--scheduler", metavar="ADDRESS", help="run on the Dask scheduler at ADDRESS (tcp://host:8786)")
    group.add_argument("--local-cluster", type=int, metavar="N",
                       help=f"start a local Dask cluster of N worker processes{local_note}")


def cluster_flags(args: argparse.Namespace) -> tuple[str | None, int | None]:
    """The validated ``(scheduler, local_workers)`` of :func:`add_cluster_flags`'s flags.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments; missing attributes count as not given.

    Returns
    -------
    scheduler : str or None
    local_workers : int or None
        At most one of the two is not None.

    Raises
    ------
    ValueError
        Both flags, an empty address, or fewer than one local worker.
    """
    scheduler = getattr(args, "scheduler", None)
    workers = getattr(args, "local_cluster", None)
    if scheduler is not None and workers is not None:
        raise ValueError("give --scheduler ADDRESS or --local-cluster N, not both")
    if scheduler is not None and not scheduler.strip():
        raise ValueError("--scheduler needs an address such as tcp://host:8786")
    if workers is not None and workers < 1:
        raise ValueError(f"--local-cluster {workers}: N must be at least 1")
    return (scheduler.strip() if scheduler is not None else None), workers


def one_line(exc: BaseException) -> str:
    """A one-line description of an error for the user.

    An operating-system error of Python or a library reads as its cause and file
    (``Permission denied: /x/y``); any other error as its message on one line.

    Parameters
    ----------
    exc : BaseException

    Returns
    -------
    str
    """
    if isinstance(exc, OSError) and not type(exc).__module__.startswith("embedscope") and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def run_command(args: argparse.Namespace) -> int:
    """Run the command parsed into ``args`` (its ``func``); return the exit code.

    Every error reaches the user as one line on stderr, ``embedscope COMMAND: error:
    ...``, and exit code 2 (130 when interrupted); set ``EMBEDSCOPE_DEBUG=1`` to see the
    traceback instead. Warnings are one line too, and the library's logged warnings
    reach stderr even with ``--quiet``, which silences only progress.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments with ``func`` (the command) and ``command`` (its name).

    Returns
    -------
    int
    """
    debug = os.environ.get("EMBEDSCOPE_DEBUG", "") not in ("", "0")
    # Warnings of the library's logger (categories grouped, points not drawn) reach the
    # user in the progress format even with --quiet, which silences only progress.
    from embedscope._progress import _ensure_handler

    _ensure_handler()
    saved_format = warnings.formatwarning
    if not debug:
        # A warning is one line too (Python's default adds the source line that raised it).
        warnings.formatwarning = lambda message, category, *rest, **kw: (
            f"embedscope {args.command}: warning: {' '.join(str(message).split())}\n")
    try:
        return _run(args, debug)
    finally:
        warnings.formatwarning = saved_format


def _run(args: argparse.Namespace, debug: bool) -> int:
    """Run the chosen command; every error becomes one line and exit code 2."""
    from embedscope.backends import BackendUnavailable
    from embedscope.errors import DataError
    from embedscope.io.write import OutputExists

    try:
        return int(args.func(args) or 0)
    except (DataError, OutputExists, BackendUnavailable, ValueError, OSError, ImportError) as exc:
        if debug:
            raise
        print(f"embedscope {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        if debug:
            raise
        print(f"embedscope {args.command}: error: out of memory; try a smaller input, "
              "a sample, or the Dask path (--local-cluster)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"embedscope {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # A failure nobody anticipated still reaches the user as one line that names
        # its type; the traceback is one environment variable away.
        if debug:
            raise
        print(f"embedscope {args.command}: error: unexpected {type(exc).__name__}: {one_line(exc)} "
              "(set EMBEDSCOPE_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2
