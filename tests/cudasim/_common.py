"""What the simulator check scripts share (they run as scripts, this directory on sys.path)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


class _Collect(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self._lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self._lines.append(record.getMessage())


@contextmanager
def embedscope_log_lines() -> Iterator[list[str]]:
    """The messages embedscope logs inside the block (its progress lines)."""
    lines: list[str] = []
    handler = _Collect(lines)
    logger = logging.getLogger("embedscope")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
