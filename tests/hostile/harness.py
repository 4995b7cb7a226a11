"""Run the ``embedscope`` command as a hostile or careless user would, and check it held.

Every hostile case runs the real command in a subprocess with a wall-clock timeout and
an address-space limit, so a hang or a runaway allocation fails the test instead of the
machine. What a case checks:

- the exit code (2: refused, 0: handled);
- a refusal is one line on stderr, naming the cause, with no traceback;
- no file the user owns changed (content, mode and symlink target), except the
  declared outputs.

Set ``EMBEDSCOPE_HOSTILE_REPORT=path.jsonl`` to append one JSON line per case (its
outcome), from which the closing counts of the hostile table are made.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

EMBEDSCOPE = [sys.executable, "-m", "embedscope.cli"]
GIB = 1 << 30


@dataclass
class Result:
    """What one run of the command did."""

    args: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool

    @property
    def error_lines(self) -> list[str]:
        """Lines of stderr that are not progress lines (``[embedscope] ...``)."""
        return [line for line in self.stderr.splitlines()
                if line.strip() and not line.startswith("[embedscope]")]


def _limits(memory_bytes: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        # A runaway writer must not fill the disk either.
        resource.setrlimit(resource.RLIMIT_FSIZE, (8 * GIB, 8 * GIB))
        os.setsid()

    return apply


def run_cli(args: Sequence[str], *, cwd: Path, timeout: float = 90.0, memory_gb: float = 4.0,
            env: dict[str, str] | None = None, stdin: int | None = subprocess.DEVNULL) -> Result:
    """Run ``embedscope ARGS`` in ``cwd`` under a timeout and an address-space limit."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    start = time.perf_counter()
    proc = subprocess.Popen([*EMBEDSCOPE, *args], cwd=cwd, env=full_env, stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_limits(int(memory_gb * GIB)))
    try:
        out, err = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        timed_out = True
    return Result(list(args), None if timed_out else proc.returncode, out, err,
                  time.perf_counter() - start, timed_out)


def snapshot(root: Path) -> dict[str, tuple]:
    """Content hash, mode and link target of everything under ``root`` (links not followed)."""
    state: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(info.st_mode):
            state[rel] = ("link", os.readlink(path))
        elif stat.S_ISREG(info.st_mode):
            state[rel] = ("file", stat.S_IMODE(info.st_mode), hashlib.sha256(path.read_bytes()).hexdigest())
        elif stat.S_ISDIR(info.st_mode):
            state[rel] = ("dir", stat.S_IMODE(info.st_mode))
        else:
            state[rel] = ("special", stat.S_IFMT(info.st_mode))
    return state


def changed(before: dict[str, tuple], after: dict[str, tuple], allowed: Sequence[str] = ()) -> list[str]:
    """Paths created, removed or altered between two snapshots, less ``allowed`` ones."""
    keys = set(before) | set(after)
    allow = set(allowed)
    return sorted(k for k in keys if before.get(k) != after.get(k)
                  and k not in allow and not any(k.startswith(a.rstrip("/") + "/") for a in allow))


_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s+File \".*\", line \d+", re.M)


@dataclass
class Case:
    """One hostile or careless use of the command and what must come of it.

    ``args`` may use ``{d}`` for the case's working folder. ``setup`` prepares files in
    that folder. ``expect`` is ``"refuse"`` (exit 2, one line matching ``message``) or
    ``"handle"`` (exit 0; ``message``, if given, must appear in stderr). ``outputs``
    are the paths (relative to the folder) the run may create or change.
    """

    id: str
    args: list[str]
    expect: str = "refuse"
    message: str = ""
    setup: Callable[[Path], None] | None = None
    outputs: list[str] = field(default_factory=list)
    timeout: float = 90.0
    memory_gb: float = 4.0
    check: Callable[[Path, Result], None] | None = None
    env: dict[str, str] | None = None


#: (case id, outcome) of every case run in this process, for the closing summary.
OUTCOMES: list[tuple[str, str]] = []


def _report(case: Case, outcome: str, result: Result | None) -> None:
    OUTCOMES.append((case.id, outcome))
    path = os.environ.get("EMBEDSCOPE_HOSTILE_REPORT")
    if not path:
        return
    record = {"id": case.id, "expect": case.expect, "outcome": outcome,
              "seconds": round(result.seconds, 2) if result else None,
              "stderr_tail": result.stderr.strip().splitlines()[-1:] if result else []}
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def run_case(case: Case, folder: Path) -> Result:
    """Set up, run and check one case; raise AssertionError naming what failed."""
    folder.mkdir(parents=True, exist_ok=True)
    if case.setup is not None:
        case.setup(folder)
    before = snapshot(folder)
    args = [a.replace("{d}", str(folder)) for a in case.args]
    result = run_cli(args, cwd=folder, timeout=case.timeout, memory_gb=case.memory_gb, env=case.env)
    try:
        assert not result.timed_out, f"{case.id}: hung (killed after {case.timeout} s)"
        assert result.returncode is not None and result.returncode >= 0, (
            f"{case.id}: killed by signal {-(result.returncode or 0)}\n{result.stderr[-3000:]}")
        assert not _TRACEBACK.search(result.stderr), f"{case.id}: traceback\n{result.stderr[-3000:]}"
        if case.expect == "refuse":
            assert result.returncode == 2, (
                f"{case.id}: exit {result.returncode}, expected a refusal (2)\n{result.stderr[-3000:]}")
            lines = result.error_lines
            assert len(lines) == 1, f"{case.id}: error is not one line: {lines}"
            assert re.search(case.message, lines[0], re.I), (
                f"{case.id}: message {lines[0]!r} does not match {case.message!r}")
        else:
            assert result.returncode == 0, f"{case.id}: exit {result.returncode}\n{result.stderr[-3000:]}"
            if case.message:
                assert re.search(case.message, result.stderr, re.I), (
                    f"{case.id}: stderr lacks {case.message!r}\n{result.stderr[-3000:]}")
        lost = changed(before, snapshot(folder), case.outputs)
        assert not lost, f"{case.id}: user files changed: {lost}"
        if case.check is not None:
            case.check(folder, result)
    except AssertionError:
        _report(case, "failed", result)
        raise
    _report(case, "refused clearly" if case.expect == "refuse" else "handled right", result)
    return result
