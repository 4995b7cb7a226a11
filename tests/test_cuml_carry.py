"""benchmarks/cuml_carry.sh: wheels split into chunks, checked chunk by chunk, joined back.

The fetch needs network and the install a GPU machine; the split, the per-call check
and the join are plain shell and run here on stand-in wheels (a few MiB of random bytes).
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "cuml_carry.sh"

pytestmark = pytest.mark.skipif(shutil.which("split") is None or shutil.which("sha256sum") is None,
                                reason="needs coreutils split and sha256sum")


def _run(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(tmp / "benchmarks" / "cuml_carry.sh"), *args], cwd=tmp,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **env})


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    shutil.copy(SCRIPT, tmp_path / "benchmarks")
    whl = tmp_path / ".cuml" / "whl"
    whl.mkdir(parents=True)
    rng = np.random.default_rng(0)
    wheels = {name: rng.bytes(size) for name, size in [("a-1-py3-none-any.whl", 1_500_000),
                                                         ("b-2-py3-none-any.whl", 900_000)]}
    for name, data in wheels.items():
        (whl / name).write_bytes(data)
    return tmp_path, wheels


def test_split_have_and_join(tree):
    tmp, wheels = tree
    done = _run(tmp, "--split", CHUNK_MIB="1")
    assert done.returncode == 0, done.stdout + done.stderr
    chunks = sorted(p.name for p in (tmp / ".cuml").glob("chunk.*"))
    assert chunks == ["chunk.000", "chunk.001", "chunk.002"] and "3 chunks" in done.stdout
    assert all((tmp / ".cuml" / c).stat().st_size <= 2**20 for c in chunks)
    have = _run(tmp, "--have")
    assert have.returncode == 0 and "0 missing" in have.stdout
    joined = tmp / "joined.tar"
    joined.write_bytes(b"".join((tmp / ".cuml" / c).read_bytes() for c in chunks))
    with tarfile.open(joined) as tar:
        for name, data in wheels.items():
            assert tar.extractfile(f"./{name}").read() == data


def test_have_names_lost_and_corrupt_chunks(tree):
    tmp, _ = tree
    _run(tmp, "--split", CHUNK_MIB="1")
    (tmp / ".cuml" / "chunk.001").unlink()
    with open(tmp / ".cuml" / "chunk.002", "r+b") as f:
        f.write(b"x")
    have = _run(tmp, "--have")
    assert have.returncode == 2 and "missing chunk.001" in have.stdout and "missing chunk.002" in have.stdout
    assert "have    chunk.000" in have.stdout
    refused = _run(tmp, "--install-and-test")
    assert refused.returncode == 1 and "nothing installed" in refused.stdout


def test_split_refuses_a_carry_of_too_many_calls(tree):
    tmp, _ = tree
    done = _run(tmp, "--split", CHUNK_MIB="1", MAX_CHUNKS="2")
    assert done.returncode == 3 and "too many" in done.stdout
