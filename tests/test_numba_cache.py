"""numba's compile cache finds a writable home when the package and HOME are not writable.

The package is copied to a temporary folder and made unwritable there: every
``__pycache__`` is replaced by a plain file, so numba's ``makedirs`` fails even for
root (CI runs as root, and root ignores permission bits), and the tree is also made
read-only for a normal user. ``HOME`` points at a file, so ``~/.cache`` cannot be made
either. Each subprocess imports the copy, never the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import embedscope
from embedscope.kernels import _cache

PACKAGE = Path(embedscope.__file__).parent

# Compiles one small cached kernel (the counter hash the kernels share) and reports
# where numba put the cache and whether the compiled code came from it.
PROBE = """
import json, os
import numpy as np
import embedscope
from embedscope.kernels import _random
from numba.core import config
value = int(_random.mix64(np.uint64(7)))
print(json.dumps({"env": os.environ.get("NUMBA_CACHE_DIR"), "config": config.CACHE_DIR,
                  "package": embedscope.__file__, "hits": int(sum(_random.mix64.stats.cache_hits.values())),
                  "path": _random.mix64._cache._cache_path, "value": value}))
"""

# The same decorator in a module of the unwritable copy, without embedscope's help:
# shows the setup really leaves numba nowhere to cache (the test's negative control).
BARE = """
import numba
@numba.njit(cache=True)
def twice(x):
    return 2 * x
"""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ro")
    copy = root / "site" / "embedscope"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (copy.parent / "bare_probe.py").write_text(BARE)  # beside the package, not in it
    for folder in [copy.parent, copy, *(p for p in copy.rglob("*") if p.is_dir())]:
        (folder / "__pycache__").write_text("not a folder\n")
    for path in [copy.parent, *copy.parent.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    home = root / "home-is-a-file"
    home.write_text("")
    tmp = root / "tmp"
    tmp.mkdir()
    # Python's own bytecode goes elsewhere, so that each process does not re-read the
    # package from source (numba ignores this prefix).
    yield {"site": root / "site", "home": home, "tmp": tmp, "pyc": root / "pyc"}
    for path in [copy.parent, *copy.parent.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)  # so pytest can clean up


def _run(hostile: dict[str, Path], code: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH")}
    env.update(PYTHONPATH=str(hostile["site"]), HOME=str(hostile["home"]), TMPDIR=str(hostile["tmp"]),
               PYTHONPYCACHEPREFIX=str(hostile["pyc"]), **extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, cwd=str(hostile["tmp"]))


def test_bare_numba_has_no_cache_home_in_this_setup(hostile: dict[str, Path]) -> None:
    result = _run(hostile, "import bare_probe")
    assert result.returncode != 0
    assert "no locator available" in result.stderr


def test_unwritable_package_and_home_cache_in_private_tmp_dir(hostile: dict[str, Path]) -> None:
    first = _run(hostile, PROBE)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout.strip().splitlines()[-1])
    expected = hostile["tmp"] / f"embedscope-numba-{os.getuid()}"
    assert Path(report["package"]).is_relative_to(hostile["site"])  # the copy ran, not the checkout
    assert report["env"] == report["config"] == str(expected)
    assert Path(report["path"]).is_relative_to(expected)
    assert stat.S_IMODE(expected.stat().st_mode) == 0o700
    assert any(expected.rglob("*.nbi")), "nothing was cached"
    assert report["hits"] == 0
    second = _run(hostile, PROBE)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout.strip().splitlines()[-1])
    assert again["hits"] >= 1, "the second process compiled again instead of loading the cache"
    assert again["value"] == report["value"]


def test_users_numba_cache_dir_is_kept(tmp_path: Path) -> None:
    from numba.core import config

    real = _cache._writable
    mine = str(tmp_path / "mine")
    with pytest.MonkeyPatch.context() as patch:
        # as if neither the package's __pycache__ nor numba's user folder were writable
        patch.setattr(_cache, "_writable", lambda path: "embedscope-numba" in path and real(path))
        patch.setattr(_cache.tempfile, "gettempdir", lambda: str(tmp_path))
        patch.setenv("NUMBA_CACHE_DIR", mine)
        assert _cache.configure_numba_cache() is None
        assert os.environ["NUMBA_CACHE_DIR"] == mine
        # the control: the same state without the user's setting does move the cache
        patch.delenv("NUMBA_CACHE_DIR")
        assert _cache.configure_numba_cache() == str(tmp_path / f"embedscope-numba-{os.getuid()}")
    config.reload_config()  # back to this process's own setting
    assert config.CACHE_DIR == os.environ.get("NUMBA_CACHE_DIR", "")


def test_writable_package_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    assert _cache.configure_numba_cache() is None  # the checkout's __pycache__ serves
    assert "NUMBA_CACHE_DIR" not in os.environ


def test_private_dir_refuses_one_open_to_others_or_a_link(tmp_path: Path) -> None:
    name = f"embedscope-numba-{os.getuid()}"
    open_dir = tmp_path / "open"
    (open_dir / name).mkdir(parents=True)
    (open_dir / name).chmod(0o755)
    assert _cache.private_cache_dir(str(open_dir)) is None
    linked = tmp_path / "linked"
    linked.mkdir()
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (linked / name).symlink_to(target)
    assert _cache.private_cache_dir(str(linked)) is None
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    made = _cache.private_cache_dir(str(fresh))
    assert made == str(fresh / name)
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700
