"""No reference counting inside the hot loops of the CPU kernels.

numba counts references to arrays with atomic operations on counters that every thread
shares. A helper that takes arrays, inlined by numba (``inline="always"``) into a row
kernel's loop, can leave a pair of them per call there (they cost NN-descent's leaf
joins half their speed; see ``knn.nndescent._push``). The kernels below are compiled
in a fresh process with an empty cache (so their LLVM can be read), and each loop of
their code is searched for calls into numba's reference counting. A kernel written the
old way is the negative control: the same search finds the calls in its loop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

_CHILD = textwrap.dedent(
    r'''
    import json, re
    import numpy as np

    from embedscope.kernels.knn import exact, nndescent
    from embedscope.kernels.umap_sgd import cpu as sgd
    from negative_control import bad_rows, good_rows


    def loop_refcounts(ir: str) -> int:
        """Calls to NRT_incref / NRT_decref in blocks on a cycle, in each function of a
        kernel's module (its own, a parfor's body, inlined callees) but the wrappers."""
        total = 0
        for body in ir.split("\ndefine ")[1:]:
            symbol = re.search(r"@([^\s(]+)\(", body).group(1)
            if not symbol.startswith(("_ZN7cpython", "cfunc", "NRT_")):
                total += _loop_refcounts(body)
        return total


    def _loop_refcounts(body: str) -> int:
        blocks, order, label = {"entry": []}, ["entry"], "entry"
        for line in body.splitlines()[1:]:
            m = re.match(r"^([A-Za-z_.0-9]+):", line)
            if m:
                label = m.group(1)
                blocks[label] = []
                order.append(label)
            else:
                blocks[label].append(line)
        succ = {b: set(re.findall(r"label %([A-Za-z_.0-9]+)", "\n".join(lines))) for b, lines in blocks.items()}
        # a block is in a loop when it reaches itself
        in_loop = set()
        for start in order:
            seen, todo = set(), list(succ[start])
            while todo:
                b = todo.pop()
                if b == start:
                    in_loop.add(start)
                    break
                if b not in seen and b in succ:
                    seen.add(b)
                    todo.extend(succ[b])
        return sum(sum(l.count("@NRT_incref") + l.count("@NRT_decref") for l in blocks[b]) for b in in_loop)


    rng = np.random.default_rng(0)
    data = rng.normal(size=(600, 8)).astype(np.float32)
    nndescent.nndescent_knn(data, 10, random_state=0, target_recall=None)
    # the direct metrics' specialisations, and their exact scan and re-measure
    nndescent.nndescent_knn(data, 10, "manhattan", random_state=0, target_recall=None)
    exact.exact_knn(data, 10, "chebyshev")
    # one 3-D epoch (sgd_rows: layouts other than 2-D)
    n, k = 200, 5
    head = rng.normal(size=(n, 3)).astype(np.float32)
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    indices = rng.integers(0, n, n * k).astype(np.int32)
    eps = np.ones(n * k, dtype=np.float32)
    scratch, picks = sgd.sgd_buffers(1, 3)
    sgd.sgd_rows(0, n, head, head.copy(), indptr, indices, eps, np.zeros(n * k, np.float32),
                 np.zeros(n * k, np.float32), 5, 1.58, 0.9, 1.0, 0, 7, True, scratch[0], picks[0])
    heap = np.zeros((4, 6), np.float32)
    bad_rows(0, 4, heap, heap.copy())
    good_rows(0, 4, heap, heap.copy())
    found = {}
    for kernel in (nndescent._leaf_join, nndescent._bucket_apply, nndescent._random_fill, exact._direct_topk,
                   exact._exact_direct, sgd.sgd_rows, bad_rows, good_rows):
        found[kernel.py_func.__name__] = sum(loop_refcounts(ir) for ir in kernel.inspect_llvm().values())
    print(json.dumps(found))
    '''
)

_NEGATIVE_CONTROL = textwrap.dedent(
    '''
    import numba


    @numba.njit(inline="always")
    def _bump_inlined(a, b, i):
        if a[i, 0] > 10.0:
            return 0
        a[i, 0] += b[i, 0]
        return 1


    @numba.njit(forceinline=True, _nrt=False)
    def _bump_apart(a, b, i):
        if a[i, 0] > 10.0:
            return 0
        a[i, 0] += b[i, 0]
        return 1


    @numba.njit(nogil=True)
    def bad_rows(start, stop, a, b):
        for i in range(start, stop):
            for _ in range(3):
                _bump_inlined(a, b, i)


    @numba.njit(nogil=True)
    def good_rows(start, stop, a, b):
        for i in range(start, stop):
            for _ in range(3):
                _bump_apart(a, b, i)
    '''
)


def test_row_kernels_count_no_references_in_their_loops(tmp_path: Path) -> None:
    (tmp_path / "negative_control.py").write_text(_NEGATIVE_CONTROL)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "EMBEDSCOPE_PRECOMPILE": "0",
           "PYTHONPATH": os.pathsep.join([str(root), str(tmp_path)])}
    env.pop("NUMBA_DISABLE_JIT", None)
    proc = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["bad_rows"] > 0, "the search no longer finds numba's reference counting (negative control)"
    assert found["good_rows"] == 0
    assert {k: v for k, v in found.items() if k not in ("bad_rows", "good_rows")} == {
        "_leaf_join": 0, "_bucket_apply": 0, "_random_fill": 0, "_direct_topk": 0, "_exact_direct": 0, "sgd_rows": 0}
