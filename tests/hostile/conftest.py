"""The hostile table's closing count, printed at the end of every test run.

Cases record their outcome in the process that ran them; each test's report carries its
outcomes (``user_properties``), so the count is made from the reports, which also reach
the main process when pytest-xdist runs the tests in workers.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.hostile.harness import OUTCOMES

_KEY = "hostile_outcome"
_SEEN: list[tuple[str, str]] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    before = len(OUTCOMES)
    yield
    item.user_properties.extend((_KEY, entry) for entry in OUTCOMES[before:])


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _SEEN.extend(tuple(value) for key, value in report.user_properties if key == _KEY)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not _SEEN:
        return
    counts = Counter(outcome for _, outcome in _SEEN)
    terminalreporter.write_sep("-", "hostile cases (tests/hostile)")
    terminalreporter.write_line(
        f"{len(_SEEN)} tried: {counts['refused clearly']} refused clearly, "
        f"{counts['handled right']} handled right, {counts['failed']} failed "
        "(a failure is a traceback, a hang, a kill, a wrong exit code or message, or a changed user file)")
