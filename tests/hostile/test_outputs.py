"""Hostile cases of outputs: nothing the user owns is replaced, lost or left behind (#14).

Each case runs the real command (tests/hostile/harness.py): inputs unchanged, one-line
refusals, permissions kept, no partial or temporary file left behind.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedscope.io import write
from tests.hostile.harness import Case, run_case


def _vectors(folder: Path) -> None:
    np.save(folder / "v.npy", np.random.default_rng(0).standard_normal((120, 6)).astype(np.float32))


def _shards(folder: Path) -> None:
    (folder / "shards").mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        np.save(folder / "shards" / f"part-{i}.npy", rng.standard_normal((60, 6)).astype(np.float32))


def _meta(folder: Path) -> None:
    _vectors(folder)
    (folder / "meta.csv").write_text("name\n" + "".join(f"w{i}\n" for i in range(120)))


def _link_to_input(folder: Path) -> None:
    _vectors(folder)
    os.symlink("v.npy", folder / "out.npy")


def _private_output(folder: Path) -> None:
    _vectors(folder)
    (folder / "o.npy").write_bytes(b"old")
    os.chmod(folder / "o.npy", 0o600)


def _dangling(folder: Path) -> None:
    _vectors(folder)
    os.symlink("nowhere/at/all.npy", folder / "o.npy")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _stale_temp(folder: Path) -> None:
    _vectors(folder)
    (folder / f".o.npy.{_dead_pid()}.abcd.tmp.npy").write_bytes(b"left by a killed run")


def _file_in_the_way(folder: Path) -> None:
    _vectors(folder)
    (folder / "afile").write_text("not a folder")


def _foreign_folder(folder: Path) -> None:
    _shards(folder)
    (folder / "coords").mkdir()
    (folder / "coords" / "notes.txt").write_text("the user's own notes")


def _coords(folder: Path) -> None:
    import pandas as pd

    rng = np.random.default_rng(2)
    pd.DataFrame({"x": rng.standard_normal(50), "y": rng.standard_normal(50)}).to_parquet(folder / "c.parquet")
    os.symlink("c.parquet", folder / "plot.png")


def _mode_kept(folder: Path, result) -> None:
    assert stat.S_IMODE((folder / "o.npy").stat().st_mode) == 0o600
    assert np.load(folder / "o.npy").shape == (120, 2)


def _stale_gone(folder: Path, result) -> None:
    assert not [p for p in folder.iterdir() if ".tmp" in p.name], list(folder.iterdir())


PCA = ["--method", "pca", "--quiet"]
CASES = [
    Case("out-is-input-force", ["reduce", "v.npy", *PCA, "--out", "v.npy", "--force"],
         setup=_vectors, message=r"would replace the input .*v\.npy"),
    Case("out-is-meta-force", ["reduce", "v.npy", "--meta", "meta.csv", *PCA, "--out", "meta.csv", "--force"],
         setup=_meta, message=r"must end in \.parquet or \.npy"),
    Case("out-symlink-to-input-force", ["reduce", "v.npy", *PCA, "--out", "out.npy", "--force"],
         setup=_link_to_input, message=r"would replace the input .*v\.npy"),
    Case("out-is-shard-folder-force", ["reduce", "shards", *PCA, "--out", "shards", "--force"],
         setup=_shards, message=r"would replace the input"),
    Case("out-inside-shard-folder", ["reduce", "shards", *PCA, "--out", "shards/coords", "--force"],
         setup=_shards, message=r"would replace the input"),
    Case("force-keeps-mode", ["reduce", "v.npy", *PCA, "--out", "o.npy", "--force"],
         expect="handle", setup=_private_output, outputs=["o.npy"], check=_mode_kept),
    Case("dangling-symlink-needs-force", ["reduce", "v.npy", *PCA, "--out", "o.npy"],
         setup=_dangling, message=r"exists \(a dangling symlink\); pass --force"),
    Case("stale-temp-cleaned", ["reduce", "v.npy", *PCA, "--out", "o.npy"],
         expect="handle", setup=_stale_temp, outputs=["o.npy"], check=_stale_gone,
         # the stale temporary is expected to go
         ),
    Case("out-under-a-file", ["reduce", "v.npy", *PCA, "--out", "afile/o.npy"],
         setup=_file_in_the_way, message=r"afile is a file, not a folder"),
    Case("replace-foreign-folder", ["reduce", "shards", *PCA, "--out", "coords", "--force"],
         setup=_foreign_folder, message=r"holds files that are not parquet shards"),
    Case("plot-over-symlinked-input", ["plot", "c.parquet", "--out", "plot.png", "--force"],
         setup=_coords, message=r"would replace the input .*c\.parquet"),
]
# The stale temporary file is the one change the stale-temp case must make.
CASES[7].outputs.append(".o.npy.")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case(case: Case, tmp_path: Path) -> None:
    if case.id == "stale-temp-cleaned":
        case.outputs[:] = ["o.npy"]
        folder = tmp_path / "work"
        folder.mkdir()
        case.setup(folder)
        stale = [p.name for p in folder.iterdir() if ".tmp" in p.name]
        case.outputs.extend(stale)
        setup, case.setup = case.setup, None
        try:
            run_case(case, folder)
        finally:
            case.setup = setup
        return
    run_case(case, tmp_path / "work")


@pytest.fixture
def small_mount(tmp_path: Path):
    """A 256 KiB tmpfs (root only): a real full disk and, remounted, a read-only one."""
    point = tmp_path / "mnt"
    point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield point
    subprocess.run(["umount", "-l", str(point)], check=False)


def test_disk_full_is_one_line_and_leaves_nothing(small_mount: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.zeros((40_000, 4), np.float32))  # 640 KB of coordinates > 256 KiB
    case = Case("disk-full", ["reduce", str(tmp_path / "v.npy"), "--method", "pca", "--n-components", "4",
                              "--quiet", "--out", str(small_mount / "o.npy")],
                message=r"cannot write .*o\.npy: no space left on the device")
    run_case(case, small_mount)
    assert list(small_mount.iterdir()) == []


def test_read_only_folder_is_one_line(small_mount: Path, tmp_path: Path) -> None:
    _vectors(tmp_path)
    subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], check=True)
    case = Case("read-only-folder", ["reduce", str(tmp_path / "v.npy"), *PCA, "--out", str(small_mount / "o.npy")],
                message=r"cannot write .*o\.npy: read-only file system|cannot write to the folder")
    run_case(case, small_mount)


# ----------------------------------------------------------------------------- API level


def test_atomic_output_maps_enospc_and_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "o.bin"
    with pytest.raises(write.OutputError, match="no space left on the device; nothing was written"):
        with write.atomic_output(target) as tmp:
            tmp.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_protected_input_is_refused_even_with_force(tmp_path: Path) -> None:
    source = tmp_path / "in.npy"
    source.write_bytes(b"precious")
    write.protect_inputs(str(source))
    try:
        with pytest.raises(write.OutputError, match="would replace the input"):
            with write.atomic_output(source, force=True) as tmp:
                tmp.write_bytes(b"overwrite")
        assert source.read_bytes() == b"precious"
        # A negative control: an unrelated output beside it is fine.
        with write.atomic_output(tmp_path / "other.npy") as tmp:
            tmp.write_bytes(b"ok")
        assert (tmp_path / "other.npy").read_bytes() == b"ok"
    finally:
        write.clear_protected()


def test_live_writer_temporaries_are_kept(tmp_path: Path) -> None:
    live = tmp_path / f".o.npy.{os.getppid()}.zz.tmp.npy"  # the parent (pytest's runner) is alive
    live.write_bytes(b"someone is writing")
    with write.atomic_output(tmp_path / "o.npy") as tmp:
        tmp.write_bytes(b"x")
    assert live.exists()


def test_replaced_folder_keeps_mode_and_new_folder_is_not_private(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    with write.atomic_output_dir(fresh) as tmp:
        (tmp / "part.0.parquet").write_bytes(b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o777 & ~umask
    os.chmod(fresh, 0o750)
    with write.atomic_output_dir(fresh, force=True) as tmp:
        (tmp / "part.0.parquet").write_bytes(b"y")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o750
    assert (fresh / "part.0.parquet").read_bytes() == b"y"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh"]


def test_failed_folder_swap_puts_the_old_folder_back(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "coords"
    target.mkdir()
    (target / "part.0.parquet").write_bytes(b"old shards")
    real_replace = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if Path(dst) == target and ".tmp" in Path(src).name and not Path(src).name.endswith("-old"):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_replace(src, dst)

    monkeypatch.setattr(write.os, "replace", failing_replace)
    with pytest.raises(write.OutputError, match=r"cannot write .*coords"):
        with write.atomic_output_dir(target, force=True) as tmp:
            (tmp / "part.0.parquet").write_bytes(b"new shards")
    assert (target / "part.0.parquet").read_bytes() == b"old shards"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coords"]
    assert len(calls) == 3  # aside, the failed swap, and back
