"""Packaging stays consistent: one version, and environment.yml mirrors pyproject's minimums."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import embedscope

ROOT = Path(__file__).resolve().parents[1]

# pyproject names -> conda names where they differ (CUDA-specific wheels, extras).
CONDA_NAME = {"cupy-cuda12x": "cupy", "cuml-cu12": "cuml", "openTSNE": "opentsne"}
# Wheels that carry CUDA toolchain pieces for CI's PTX compile; conda has them under other names.
PIP_ONLY = {"nvidia-nvvm", "nvidia-cuda-nvrtc", "nvidia-cuda-runtime"}


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _minimums(requirements: list[str]) -> dict[str, str]:
    found = {}
    for text in requirements:
        match = re.match(r"^([A-Za-z0-9_.-]+)(\[[^]]*\])?\s*>=\s*([0-9][0-9.]*)", text)
        assert match, f"requirement without a minimum version: {text!r}"
        name = CONDA_NAME.get(match.group(1), match.group(1))
        found[name.lower()] = match.group(3)
    return found


def _conda_minimums() -> dict[str, str]:
    yaml = pytest.importorskip("yaml")
    spec = yaml.safe_load((ROOT / "environment.yml").read_text())
    found = {}
    for item in spec["dependencies"]:
        if not isinstance(item, str):
            continue
        match = re.match(r"^([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)", item)
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def test_version_is_single_sourced() -> None:
    project = _pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    attr = _pyproject()["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "embedscope.__version__"
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|rc\d+)?", embedscope.__version__)


def test_environment_yml_mirrors_pyproject_minimums() -> None:
    project = _pyproject()["project"]
    wanted = _minimums(project["dependencies"])
    for extra in ("gpu", "cuml", "dask", "bench", "dev"):
        for name, version in _minimums(project["optional-dependencies"][extra]).items():
            wanted.setdefault(name, version)
    conda = _conda_minimums()
    missing = sorted(set(wanted) - set(conda) - PIP_ONLY)
    assert not missing, f"in pyproject.toml but not environment.yml: {missing}"
    differ = {name: (wanted[name], conda[name]) for name in wanted if name in conda and wanted[name] != conda[name]}
    assert not differ, f"minimum versions differ (pyproject, environment.yml): {differ}"


def test_minimum_parsing_sees_extras_and_renames() -> None:
    # The comparison above is only as good as this parse: extras stripped, CUDA wheel
    # names mapped to conda's, and a requirement without a minimum refused.
    assert _minimums(["dask[array,dataframe]>=2024.4", "cupy-cuda12x>=13.0"]) == {"dask": "2024.4", "cupy": "13.0"}
    with pytest.raises(AssertionError, match="without a minimum"):
        _minimums(["numpy"])
