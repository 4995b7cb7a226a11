"""Stage logging shared by every reducer and the CLI.

Each long stage logs one line when it starts and one when it ends, naming the backend
and the sizes, so a person watching a 10-minute run knows where it is. Estimators pass
``verbose``; the CLI is verbose unless ``--quiet``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger("embedscope")


class _StderrHandler(logging.StreamHandler):
    """A handler that looks up ``sys.stderr`` at emit time (pytest swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


_handler: logging.Handler | None = None


def _ensure_handler() -> None:
    global _handler
    if _handler is None:
        _handler = _StderrHandler()
        _handler.setFormatter(logging.Formatter("[embedscope] %(message)s"))
        logger.addHandler(_handler)
        logger.propagate = False


class Progress:
    """Logs stages and records their wall times.

    Parameters
    ----------
    verbose : bool
        Print stage lines to stderr. When False, timings are still recorded.
    prefix : str
        Name of the reducer, put before every line.
    """

    def __init__(self, verbose: bool = False, prefix: str = "") -> None:
        self.verbose = bool(verbose)
        self.prefix = prefix
        self.timings: dict[str, float] = {}
        if self.verbose:
            _ensure_handler()
            if logger.level == logging.NOTSET or logger.level > logging.INFO:
                logger.setLevel(logging.INFO)

    def log(self, message: str) -> None:
        """Print one line (when verbose)."""
        if self.verbose:
            logger.info("%s%s", f"{self.prefix}: " if self.prefix else "", message)

    @contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[None]:
        """Time a stage; log its start and its duration."""
        self.log(f"{name} ... {detail}".rstrip())
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self.log(f"{name} failed after {time.perf_counter() - start:.2f} s")
            raise
        elapsed = time.perf_counter() - start
        self.timings[name] = self.timings.get(name, 0.0) + elapsed
        self.log(f"{name} done in {elapsed:.2f} s")
