"""The hostile table's closing count, printed at the end of every test run."""

from __future__ import annotations

from collections import Counter

from tests.hostile.harness import OUTCOMES


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not OUTCOMES:
        return
    counts = Counter(outcome for _, outcome in OUTCOMES)
    terminalreporter.write_sep("-", "hostile cases (tests/hostile)")
    terminalreporter.write_line(
        f"{len(OUTCOMES)} tried: {counts['refused clearly']} refused clearly, "
        f"{counts['handled right']} handled right, {counts['failed']} failed "
        "(a failure is a traceback, a hang, a kill, a wrong exit code or message, or a changed user file)")
