"""Packaging stays consistent: one version, environment.yml mirrors pyproject's minimums,
and every CUDA-specific requirement names the same CUDA major."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import embedscope

ROOT = Path(__file__).resolve().parents[1]

# pyproject names -> conda names where they differ (CUDA-specific wheels, extras).
CONDA_NAME = {"cupy-cuda12x": "cupy", "cuml-cu12": "cuml", "openTSNE": "opentsne"}
# Wheels that carry CUDA toolchain pieces (nvidia-*); conda has them as cuda-* packages
# whose versions follow environment.yml's cuda-version pin.
PIP_ONLY_PREFIX = "nvidia-"
# NVIDIA packages whose version is the CUDA version (no -cuXX in the name).
CUDA_VERSIONED = {"cuda-toolkit", "cuda-bindings", "cuda-python", "cuda-version"}


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
    missing = sorted(name for name in set(wanted) - set(conda) if not name.startswith(PIP_ONLY_PREFIX))
    assert not missing, f"in pyproject.toml but not environment.yml: {missing}"
    differ = {name: (wanted[name], conda[name]) for name in wanted if name in conda and wanted[name] != conda[name]}
    assert not differ, f"minimum versions differ (pyproject, environment.yml): {differ}"


def test_minimum_parsing_sees_extras_and_renames() -> None:
    # The comparison above is only as good as this parse: extras stripped, CUDA wheel
    # names mapped to conda's, and a requirement without a minimum refused.
    assert _minimums(["dask[array,dataframe]>=2024.4", "cupy-cuda12x>=13.0"]) == {"dask": "2024.4", "cupy": "13.0"}
    with pytest.raises(AssertionError, match="without a minimum"):
        _minimums(["numpy"])


def _cuda_majors(text: str) -> set[int]:
    """The CUDA majors a requirement is built for: empty for CUDA-agnostic ones.

    Read from the name (cupy-cuda12x, cuml-cu12, nvidia-cuda-nvcc-cu12), an extra
    (numba-cuda[cu12]) or, for NVIDIA's unsuffixed toolkit wheels (nvidia-nvvm >= 13,
    cuda-toolkit, cuda-bindings, conda's cuda-version), the lower bound of the version.
    """
    match = re.match(r"^([A-Za-z0-9_.-]+)\s*(?:\[([^]]*)\])?\s*(.*)$", text.strip())
    assert match, text
    name, extras, spec = match.group(1).lower(), match.group(2) or "", match.group(3)
    majors = {int(m) for m in re.findall(r"-cu(?:da)?(\d+)x?$", name)}
    majors |= {int(m) for m in re.findall(r"\bcu(\d+)\b", extras)}
    if not majors and (name in CUDA_VERSIONED or name.startswith("nvidia-")):
        bound = re.search(r"(?:>=|==|~=)\s*(\d+)", spec)
        assert bound, f"a CUDA toolkit requirement without a lower bound: {text!r}"
        majors.add(int(bound.group(1)))
    return majors


def _cuda_disagreement(extras: dict[str, list[str]], conda: list[str]) -> str | None:
    """Why the extras (and environment.yml) do not name one CUDA major, or None."""
    found = {name: set().union(*map(_cuda_majors, reqs)) for name, reqs in extras.items()}
    found["environment.yml"] = set().union(*map(_cuda_majors, conda))
    empty = [name for name, majors in found.items() if not majors]
    if empty:
        # dev must carry the toolchain for CI's PTX compile check; gpu and cuml must pin
        # a CUDA-specific cupy; environment.yml must pin cuda-version.
        return f"no CUDA-specific requirement in {empty}"
    if len(set().union(*found.values())) != 1:
        return f"CUDA majors differ: {found}"
    return None


def test_gpu_cuml_and_dev_extras_agree_on_the_cuda_major() -> None:
    # The PTX compile check in CI must use the CUDA major that users of `pip install
    # embedscope[gpu]` run: a kernel that compiles with CUDA 13's NVVM only is a bug there.
    extras = _pyproject()["project"]["optional-dependencies"]
    yaml = pytest.importorskip("yaml")
    spec = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [item for item in spec["dependencies"] if isinstance(item, str)]
    problem = _cuda_disagreement({name: extras[name] for name in ("gpu", "cuml", "dev")}, conda)
    assert problem is None, problem


def test_cuda_major_parsing_and_a_mismatch_fails() -> None:
    assert _cuda_majors("cupy-cuda12x>=13.0") == {12}
    assert _cuda_majors("cuml-cu12>=24.6") == {12}
    assert _cuda_majors("numba-cuda[cu13]>=0.20") == {13}
    assert _cuda_majors("nvidia-cuda-nvcc-cu12>=12.4") == {12}
    assert _cuda_majors("nvidia-nvvm>=13,<14") == {13}
    assert _cuda_majors("cuda-version>=12.0,<13") == {12}
    assert _cuda_majors("numba-cuda>=0.20") == _cuda_majors("dask[array]>=2024.4") == set()
    gpu = ["cupy-cuda12x>=13.0", "numba-cuda[cu12]>=0.20"]
    conda = ["cuda-version>=12.0,<13"]
    assert _cuda_disagreement({"gpu": gpu, "dev": ["numba-cuda[cu12]>=0.20"]}, conda) is None
    # what pyproject had before: cupy for CUDA 12, the PTX toolchain from CUDA 13
    old_dev = ["numba-cuda>=0.20", "nvidia-nvvm>=13,<14", "nvidia-cuda-nvrtc>=13,<14"]
    assert "differ" in _cuda_disagreement({"gpu": gpu, "dev": old_dev}, conda)
    assert "no CUDA-specific" in _cuda_disagreement({"gpu": gpu, "dev": ["pytest>=7.4"]}, conda)
