"""What every ``embedscope`` command shares: the Dask cluster flags, the reducer's
parameter flags (``reduce`` and ``serve``), and running a command so that every error
reaches the user as one line.

The main CLI (:mod:`embedscope.cli`) and the plot / serve commands
(:mod:`embedscope.viz.cli`, also runnable as ``python -m embedscope.viz.cli``) both
build on it; it sits below them so that neither imports the other's module. Importing
it is cheap (argparse only): the errors it names load when a command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Any

__all__ = ["PARAM_FLAGS", "add_cluster_flags", "add_reducer_flags", "cluster_flags", "given_reducer_flags",
           "one_line", "reducer_params", "run_command"]


# Reducer parameters exposed as flags; each is passed only when given and only to a
# reducer whose __init__ has it (so --perplexity with --method umap is an error).
PARAM_FLAGS: list[tuple[str, Any, str]] = [
    ("n_neighbors", int, "neighbours per point (umap, pacmap)"),
    ("min_dist", float, "minimum distance between embedded points (umap)"),
    ("spread", float, "scale of embedded points (umap)"),
    ("metric", str, "euclidean, cosine, inner_product, manhattan (l1), chebyshev (linf), minkowski "
                    "(p: --param metric_kwds='{\"p\": 3}'), correlation, hamming, jaccard or precomputed"),
    ("n_epochs", int, "optimisation epochs (umap)"),
    ("learning_rate", None, "learning rate (umap, pacmap: float; tsne: float or 'auto')"),
    ("init", str, "initialisation: spectral (umap), pca or random"),
    ("negative_sample_rate", int, "negative samples per edge (umap)"),
    ("perplexity", float, "perplexity (tsne)"),
    ("early_exaggeration", float, "early exaggeration factor (tsne)"),
    ("n_iter", int, "gradient-descent iterations (tsne)"),
    ("dof", float, "degrees of freedom of the Student-t kernel (tsne)"),
    ("svd_solver", str, "auto, full, randomized or covariance (pca)"),
    ("random_state", int, "seed; a seeded run is reproducible on the same backend"),
]


def _number_or_text(text: str) -> Any:
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        return text


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--param needs KEY=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.replace("-", "_"), parsed


def add_reducer_flags(parser: Any) -> None:
    """Add the reducer's parameters as flags (:data:`PARAM_FLAGS`) and ``--param KEY=VALUE``.

    ``reduce`` and ``serve`` (vectors reduced at start) register the same table here,
    so a flag reads and checks the same in both.

    Parameters
    ----------
    parser : argparse.ArgumentParser or argument group
    """
    for name, kind, text in PARAM_FLAGS:
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind or _number_or_text, default=None,
                            help=text)
    parser.add_argument("--param", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                        help="any other reducer parameter (value read as JSON), repeatable")


def given_reducer_flags(args: argparse.Namespace) -> list[str]:
    """The reducer flags of :func:`add_reducer_flags` that were given, as typed (``--n-neighbors``)."""
    given = [f"--{name.replace('_', '-')}" for name, _, _ in PARAM_FLAGS if getattr(args, name, None) is not None]
    return given + (["--param"] if getattr(args, "param", None) else [])


def reducer_params(args: argparse.Namespace, cls: type, **base: Any) -> dict[str, Any]:
    """Constructor parameters of ``cls`` from the flags given, over ``base``.

    Each flag given is checked against ``cls`` (``--perplexity`` with UMAP is an error
    naming both), and so is every ``--param`` key.

    Raises
    ------
    ValueError
        A flag or key the reducer does not take.
    """
    accepted = set(cls._param_names())  # type: ignore[attr-defined]
    method = getattr(args, "method", None) or cls.__name__.lower()
    params: dict[str, Any] = dict(base)
    for name, _, _ in PARAM_FLAGS:
        value = getattr(args, name, None)
        if value is None:
            continue
        if name not in accepted:
            raise ValueError(f"--{name.replace('_', '-')} does not apply to --method {method}")
        params[name] = value
    params.update(dict(getattr(args, "param", None) or []))
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(f"{cls.__name__} has no parameter(s) {unknown}")
    return params


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
