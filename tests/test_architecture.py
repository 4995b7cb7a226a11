"""Layering rules the backend registry (issue #15) relies on, checked on the source.

- The list of backends is written once, in ``embedscope/backends/``: nothing else in
  the package compares a backend name with a string literal or spells several names.
- Kernel modules import nothing above them (engine, backends, viz, bench, cli).
- Importing the registry or the kNN kernels loads no GPU library.

Each scanner is checked on small samples first (negative controls), so a scanner that
stopped matching anything fails instead of passing vacuously.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

from .conftest import gpu_modules_loaded_by

PACKAGE = Path(__file__).resolve().parents[1] / "embedscope"

# ----------------------------------------------------------------------------- backend names

_NAME = r"(?:cpu|cuda|cuml)"
_LIT = rf"""['"]{_NAME}['"]"""
# "auto" is the selection mode, not a backend: `backend != "auto"` names no backend.
_NOT_AUTO = r"""['"](?!auto['"])"""
BACKEND_COMPARISON = re.compile("|".join([
    rf"(?:==|!=)\s*{_LIT}",                                  # x == "cuda"
    rf"{_LIT}\s*(?:==|!=)",                                  # "cuda" == x
    rf"\bin\s*[(\[{{]?\s*{_LIT}",                            # x in "cuda", x in ("cpu", ...)
    rf"{_LIT}\s+(?:not\s+)?in\b",                            # "cuda" in names
    rf"(?:\bbackend_?|\.\s*name)\s*(?:==|!=)\s*{_NOT_AUTO}",   # backend == "<any>", x.name == "<any>"
    rf"{_NOT_AUTO}[^'\"]*['\"]\s*(?:==|!=)\s*(?:\w+\s*\.\s*)*(?:backend_?|name)\b",
    rf"{_LIT}\s*[,:]\s*(?:[^,]*,\s*)*?{_LIT}",               # ("cpu", "cuda"), {"cuda": ..., "cuml": ...}
]))


def code_lines(source: str) -> list[tuple[int, str]]:
    """Logical lines of ``source`` (first line number, text) without comments or docstrings.

    Tokens are joined with spaces, so a tuple written over several lines is one line
    here; a statement made only of string literals (a docstring) is dropped.
    """
    lines: list[tuple[int, str]] = []
    tokens: list[tokenize.TokenInfo] = []
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in skip:
            continue
        if tok.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
            if tokens and not all(t.type == tokenize.STRING for t in tokens):
                lines.append((tokens[0].start[0], " ".join(t.string for t in tokens)))
            tokens = []
            continue
        tokens.append(tok)
    return lines


def backend_name_hits(source: str) -> list[tuple[int, str]]:
    """(line, code) of every logical line of ``source`` that compares or lists backend names."""
    return [(line, text) for line, text in code_lines(source) if BACKEND_COMPARISON.search(text)]


@pytest.mark.parametrize("sample", [
    'if backend.name == "cuda":\n    pass\n',
    "if est.backend_ != 'cpu':\n    pass\n",
    'if backend == "cuml":\n    pass\n',
    'if "cuda" == resolved.name:\n    pass\n',
    'use_gpu = name in ("cuda", "cuml")\n',
    'use_gpu = name not in {"cpu"}\n',
    'if "cuml" in chosen:\n    pass\n',
    'peer = "cuda" if impl == "cuml" else "cpu"\n',
    'ORDER = (\n    "cuml",\n    "cuda",\n    "cpu",\n)\n',
    'XP = {"cuda": 1, "cuml": 2}\n',
    'if spec.name == "toy":\n    pass\n',
])
def test_backend_name_scanner_flags_comparisons(sample):
    assert backend_name_hits(sample), sample


@pytest.mark.parametrize("sample", [
    'def f(backend="auto"):\n    """backend : {"auto", "cpu", "cuda", "cuml"}"""\n',
    '# if backend.name == "cuda": the old way\nx = 1\n',
    'on_gpu = args.backend != "auto" and get_spec(args.backend).gpu\n',
    'if spec.gpu and path.suffix == ".npy":\n    pass\n',
    'kernels = resolve_backend(name).kernels\n',
    'label = f"{method} on {backend.name}"\n',
])
def test_backend_name_scanner_passes_code_that_asks_the_registry(sample):
    assert backend_name_hits(sample) == [], sample


def _package_backend_name_hits() -> list[tuple[str, int, str]]:
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent)
        if rel.parts[:2] == ("embedscope", "backends"):
            continue
        for line, text in backend_name_hits(path.read_text(encoding="utf-8")):
            hits.append((rel.as_posix(), line, text))
    return hits


def test_no_backend_name_comparison_outside_the_registry():
    assert [f"{path}:{line}: {text}" for path, line, text in _package_backend_name_hits()] == []


# ----------------------------------------------------------------------------- kernel imports

_ABOVE_KERNELS = ("embedscope.engine", "embedscope.backends", "embedscope.viz", "embedscope.bench",
                  "embedscope.cli")


def imported_modules(source: str, module: str) -> set[str]:
    """Every module ``source`` (the module ``module``) imports, anywhere, relative ones resolved."""
    package = module.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join([*parts, base]) if base else ".".join(parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def upward_imports(source: str, module: str) -> list[str]:
    return sorted(name for name in imported_modules(source, module)
                  if any(name == top or name.startswith(top + ".") for top in _ABOVE_KERNELS))


@pytest.mark.parametrize(("source", "module"), [
    ("from embedscope.engine import stages\n", "embedscope.kernels.affinity"),
    ("def f():\n    import embedscope.backends.cuda\n", "embedscope.kernels.pca"),
    ("from ...engine.base import check_int\n", "embedscope.kernels.knn.exact"),
    ("from ... import cli\n", "embedscope.kernels.knn.exact"),
    ("from embedscope import viz\n", "embedscope.kernels.raster"),
])
def test_import_scanner_flags_an_upward_import(source, module):
    assert upward_imports(source, module), source


def test_import_scanner_passes_imports_within_kernels():
    source = "from embedscope.kernels.knn import exact_knn\nfrom . import consts\nimport numpy as np\n"
    assert upward_imports(source, "embedscope.kernels.knn.cuda") == []


def test_no_kernel_module_imports_a_layer_above_it():
    kernels = sorted((PACKAGE / "kernels").rglob("*.py"))
    assert len(kernels) > 10  # the scan found the kernel modules
    offenders = {}
    for path in kernels:
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if path.name == "__init__.py":
            module += ".__init__"  # relative imports resolve against the package itself
        found = upward_imports(path.read_text(encoding="utf-8"), module)
        if found:
            offenders[path.relative_to(PACKAGE.parent).as_posix()] = found
    assert offenders == {}


# ----------------------------------------------------------------------------- GPU libraries

def test_gpu_module_probe_sees_a_gpu_import():
    # negative control for the two checks below: the helper does see numba.cuda load
    pytest.importorskip("numba_cuda")
    assert any(name.startswith("numba.cuda") for name in gpu_modules_loaded_by("import numba.cuda"))


@pytest.mark.parametrize("statement", [
    "import embedscope.backends",
    "import embedscope.kernels.knn",
])
def test_registry_and_knn_kernels_load_no_gpu_library(statement):
    assert gpu_modules_loaded_by(statement) == []


# ----------------------------------------------------------------------------- import circles


def import_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import one another in a circle (strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in edges.get(node, ()):
                cycles.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return cycles


def test_cycle_finder_finds_a_circle():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_circle_in_the_package():
    # Every import counts, function-level ones too (the layer contract checks direction
    # between layers; this catches circles inside one layer, e.g. engine.data <-> engine.distributed).
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("embedscope")
    edges = {module: set(graph.find_modules_directly_imported_by(module)) for module in graph.modules}
    assert import_cycles(edges) == []
