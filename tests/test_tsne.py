"""t-SNE: gradient kernels against exact references, quality floors, 3-D, transform, bad input.

Tests taking the ``backend`` fixture run on every registered backend that can run here
(cpu; cuda and cuml on a GPU machine, where they carry the ``gpu`` mark); the CPU
tests pin backend="cpu" where they check CPU specifics, the others run on whatever
"auto" picks. The cuda backend is also checked end to end in numba's CUDA simulator by
tests/cudasim/tsne_check.py.
"""

from __future__ import annotations

import itertools
import re

import numba
import numpy as np
import pytest
import scipy.fft as sfft

from embedscope import DataError, Unsupported, knn_accuracy, trustworthiness
from embedscope._array import array_module
from embedscope.backends import cpu as cpu_backend
from embedscope.backends import get_spec
from embedscope.engine import tsne as tsne_engine
from embedscope.engine.base import GRAPH_STAGES, NotFittedError
from embedscope.engine.tsne import TSNE
from embedscope.kernels import tsne as ktsne
from embedscope.kernels.knn import exact_knn
from embedscope.kernels.tsne.bh import BarnesHutRepulsion
from embedscope.kernels.tsne.fft import FFTRepulsion, pruned_irfftn, pruned_rfftn

from .conftest import gpu_modules_loaded_by, host

# Floors = openTSNE 1.0.4's trustworthiness@15 (defaults, n_jobs=2, random_state=0) - 0.02,
# measured with `python benchmarks/tsne_cpu.py --floors`:
#   mixture 5000 x 50 (20 clusters, seed 0): 0.9851  -> floor 0.965
#   words[:5000] (384-d):                    0.8883  -> floor 0.868
MIXTURE_FLOOR = 0.965
WORDS_FLOOR = 0.868


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def fitted_mixture(mixture_5k):
    """The cpu fit of the mixture: the reference every backend is held to."""
    X = mixture_5k[0]
    est = TSNE(random_state=0, backend="cpu")
    return est, host(est.fit_transform(X))


@pytest.fixture(scope="module")
def fitted_mixture_on(backend, mixture_5k, fitted_mixture):
    """The same fit on ``backend`` (the cpu reference itself on cpu)."""
    if backend == fitted_mixture[0].backend_:
        return fitted_mixture
    est = TSNE(random_state=0, backend=backend)
    return est, host(est.fit_transform(mixture_5k[0]))



# ----------------------------------------------------------------------------- kernels
def test_affinities_hit_the_perplexity():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 10)).astype(np.float32)
    idx, dist = exact_knn(X, 90)
    P, missed = ktsne.conditional_affinities(dist, 30.0)
    assert missed == 0
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-5)
    entropy = -(P * np.log(np.maximum(P, 1e-30))).sum(axis=1)
    np.testing.assert_allclose(np.exp(entropy), 30.0, rtol=1e-3)
    joint = ktsne.joint_probabilities(idx, P, 500)
    assert abs(joint.sum() - 1.0) < 1e-5
    assert abs(joint - joint.T).max() < 1e-7


@pytest.mark.parametrize("builder", ["scipy", "kernels"])
def test_joint_matches_a_dense_symmetrisation_with_holes_repeats_and_one_way_links(builder, monkeypatch):
    # A brute-force P = (C + C^T) / sum from a dense (n, n) matrix against the in-place
    # build: missing entries (-1, self), a neighbour listed twice (summed), zero
    # probabilities left out, one-way and mutual links, rows with a large in-degree.
    from embedscope.kernels.tsne import affinity

    monkeypatch.setattr(affinity, "SCIPY_JOINT_MAX", 10**9 if builder == "scipy" else 0)
    rng = np.random.default_rng(4)
    n, k = 120, 12
    idx = rng.integers(0, n, size=(n, k)).astype(np.int32)
    idx[:, 0] = 7  # a hub: every row lists 7
    idx[3, 5], idx[4, 2], idx[5, 1] = -1, 4, idx[5, 6]
    cond = rng.random((n, k)).astype(np.float32)
    cond[8, 3] = 0.0
    dense = np.zeros((n, n))
    for i in range(n):
        for a in range(k):
            j = idx[i, a]
            if j >= 0 and j != i:
                dense[i, j] += cond[i, a]
    dense = dense + dense.T
    dense /= dense.sum()
    P = ktsne.joint_probabilities(idx, cond, n)
    assert P.data.dtype == np.float32 and P.indices.dtype == np.int32 and P.has_sorted_indices
    assert P.nnz == np.count_nonzero(dense)
    np.testing.assert_allclose(P.toarray(), dense, rtol=1e-6, atol=1e-12)
    # negative control: one value changed is seen
    cond[10, 4] += 0.5
    assert np.abs(ktsne.joint_probabilities(idx, cond, n).toarray() - dense).max() > 1e-4


def test_joint_builders_give_the_same_matrix_bit_for_bit():
    # Small fits build P with scipy, large ones with the kernels: a layout must not
    # depend on which, so the two agree exactly (structure, dtypes and every value).
    from embedscope.kernels.tsne import affinity

    rng = np.random.default_rng(8)
    for n, k in [(3000, 90), (400, 12), (30, 5)]:
        idx = np.array([rng.choice(n, k, replace=False) for _ in range(n)], dtype=np.int32)
        idx[rng.random((n, k)) < 0.02] = -1
        idx[:5, 0] = np.arange(5)  # the row itself
        idx[6, 1] = idx[6, 2]  # a repeat
        val = rng.random((n, k)).astype(np.float32)
        val[rng.random((n, k)) < 0.05] = 0.0
        A = affinity._joint_scipy(idx.copy(), val.copy(), n)
        B = affinity._joint_kernels(idx.copy(), val.copy(), n)
        for name in ("indptr", "indices", "data"):
            a, b = getattr(A, name), getattr(B, name)
            assert a.dtype == b.dtype and np.array_equal(a, b), (n, name)
        # negative control: one probability changed by one float32 step shows
        val[7, 3] = np.nextafter(val[7, 3], np.float32(2))
        C = affinity._joint_scipy(idx.copy(), val.copy(), n)
        assert not np.array_equal(C.data, B.data)


def test_joint_overwrite_uses_the_knn_arrays_and_gives_the_same_p():
    rng = np.random.default_rng(6)
    n, k = 400, 15
    idx = rng.integers(-1, n, size=(n, k)).astype(np.int32)
    dist = np.sort(rng.random((n, k)).astype(np.float32), axis=1)
    keep_idx, keep_dist = idx.copy(), dist.copy()
    P, missed = ktsne.knn_joint_probabilities(idx, dist, n, 5.0)
    assert np.array_equal(idx, keep_idx) and np.array_equal(dist, keep_dist)  # default: untouched
    Q, missed_q = ktsne.knn_joint_probabilities(idx, dist, n, 5.0, overwrite=True)
    assert missed == missed_q and (P != Q).nnz == 0
    assert not np.array_equal(dist, keep_dist)  # the distances became scratch


def test_joint_does_not_depend_on_the_thread_count():
    rng = np.random.default_rng(5)
    n, k = 5000, 20
    idx = rng.integers(0, n, size=(n, k)).astype(np.int32)
    dist = np.sort(rng.random((n, k)).astype(np.float32), axis=1)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        P1, _ = ktsne.knn_joint_probabilities(idx, dist, n, 6.0)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        P2, _ = ktsne.knn_joint_probabilities(idx, dist, n, 6.0)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(P1.indptr, P2.indptr) and np.array_equal(P1.indices, P2.indices)
    assert np.array_equal(P1.data, P2.data)


@pytest.mark.parametrize("m", [0, 1, 2, 15, 16, 17, 33, 90, 271, 5000])
def test_row_sort_orders_keys_like_numpy(m):
    # the joint P's rows are sorted by this quicksort (numba's own took 1 s to compile)
    from embedscope.kernels.tsne.affinity import _sort_keys

    rng = np.random.default_rng(m)
    stack = np.empty(128, dtype=np.int64)
    cases = [rng.integers(-(2**40), 2**40, m), rng.integers(0, 3, m), np.arange(m), np.arange(m)[::-1].copy(),
             np.full(m, 7)]
    for keys in cases:
        keys = np.concatenate([keys.astype(np.int64), [-5, 99]])  # entries past m stay put
        got = keys.copy()
        _sort_keys(got[:m], stack)
        np.testing.assert_array_equal(got[:m], np.sort(keys[:m]))
        np.testing.assert_array_equal(got[m:], keys[m:])


def test_affinities_of_duplicates_are_uniform_not_nan():
    P, _ = ktsne.conditional_affinities(np.zeros((3, 10), dtype=np.float32), 5.0)
    np.testing.assert_allclose(P, 0.1)


def test_attractive_forces_match_dense_reference():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    idx, dist = exact_knn(X, 30)
    P = ktsne.joint_probabilities(idx, ktsne.conditional_affinities(dist, 10.0)[0], 300)
    Y = rng.normal(size=(300, 2)) * 3
    for dof in (1.0, 0.5):
        out = np.empty_like(Y)
        ktsne.attractive_forces(P.indptr, P.indices, P.data, Y, Y, dof, out)
        diff = Y[:, None, :] - Y[None, :, :]
        w = 1.0 / (1.0 + (diff**2).sum(-1) / dof)
        expected = ((P.toarray() * w)[:, :, None] * diff).sum(axis=1)
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("dof", [1.0, 0.6])
def test_exact_repulsion_matches_dense_numpy(dof):
    rng = np.random.default_rng(2)
    Y = rng.normal(size=(200, 3)) * 4
    rep, z = ktsne.exact_repulsion(Y, dof)
    diff = Y[:, None, :] - Y[None, :, :]
    base = 1.0 + (diff**2).sum(-1) / dof
    w = base**-dof
    np.fill_diagonal(w, 0.0)
    np.testing.assert_allclose(z, w.sum(), rtol=1e-10)
    np.testing.assert_allclose(rep, ((w / base)[:, :, None] * diff).sum(axis=1), rtol=1e-8, atol=1e-12)


def test_fast_log_matches_libm():
    import numba

    from embedscope.kernels._fastpow import log_normal

    @numba.njit(fastmath=True)
    def logs(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = log_normal(x[i])
        return out

    x = np.concatenate([np.logspace(-300, 300, 200_001), 1.0 + np.logspace(-16, 0, 1001), [1.0, 2.0, 0.5]])
    exact = np.log(x)
    got = logs(x)
    assert np.max(np.abs(got - exact) / np.maximum(np.abs(exact), 1e-300)) < 5e-15 or \
        np.max(np.abs(got - exact)) < 1e-15
    assert logs(np.array([1.0]))[0] == 0.0
    special = logs(np.array([np.inf, np.nan]))
    assert special[0] == np.inf and np.isnan(special[1])  # passed through, never a finite number


@pytest.mark.parametrize("d, dof", [(2, 1.0), (3, 1.0), (2, 0.6), (4, 2.0)])
def test_kl_divergence_matches_dense_reference(d, dof):
    rng = np.random.default_rng(11)
    X = rng.normal(size=(80, 5)).astype(np.float32)
    idx, dist = exact_knn(X, 15)
    P = ktsne.joint_probabilities(idx, ktsne.conditional_affinities(dist, 5.0)[0], 80)
    Y = rng.normal(size=(80, d)) * 3.0
    Pd = P.toarray()
    d2 = ((Y[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
    w = (1.0 + d2 / dof) ** -dof
    np.fill_diagonal(w, 0.0)
    mask = Pd > 0

    def reference(Pd, mask):  # sum p log(p / q), with P's sum taken as 1 (float32 rounding)
        return float(np.sum(Pd[mask] * np.log(Pd[mask] / w[mask])) + np.log(w.sum()))

    expected = reference(Pd, mask)
    z = ktsne.exact_repulsion(Y, dof)[1]
    assert ktsne.kl_divergence(P, Y, z, dof) == pytest.approx(expected, rel=1e-12)
    # the cached p log p half follows the matrix: new values, new sum
    P2 = P.copy()
    P2.data = P2.data * 0.5
    P2.data[: P2.nnz // 2] *= 3.0
    P2.data /= P2.data.sum()
    Pd2 = P2.toarray()
    expected2 = reference(Pd2, Pd2 > 0)
    assert ktsne.kl_divergence(P2, Y, z, dof) == pytest.approx(expected2, rel=1e-12)
    assert ktsne.kl_divergence(P, Y, z, dof) == pytest.approx(expected, rel=1e-12)


def test_gradient_matches_finite_differences_of_kl():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    idx, dist = exact_knn(X, 20)
    P = ktsne.joint_probabilities(idx, ktsne.conditional_affinities(dist, 6.0)[0], 60)
    Y = rng.normal(size=(60, 2))

    def kl(Y):
        return ktsne.kl_divergence(P, Y, ktsne.exact_repulsion(Y)[1])

    attr = np.empty_like(Y)
    ktsne.attractive_forces(P.indptr, P.indices, P.data, Y, Y, 1.0, attr)
    rep, z = ktsne.exact_repulsion(Y)
    grad = 4.0 * (attr - rep / z)
    numeric = np.empty_like(Y)
    for i in range(60):
        for c in range(2):
            step = np.zeros_like(Y)
            step[i, c] = 1e-6
            numeric[i, c] = (kl(Y + step) - kl(Y - step)) / 2e-6
    assert _rel(grad, numeric) < 1e-4


@pytest.mark.parametrize("scale, tol", [(1.0, 1e-3), (15.0, 3e-2)])
def test_fft_repulsion_agrees_with_exact(scale, tol):
    rng = np.random.default_rng(4)
    Y = rng.normal(size=(2500, 2)) * scale
    Y[:800] *= 0.1  # a dense cluster inside a sparse cloud
    rep, z = ktsne.exact_repulsion(Y)
    rep_fft, z_fft = FFTRepulsion()(Y)
    assert _rel(rep_fft, rep) < tol
    assert abs(z_fft - z) / z < tol / 5
    # negative control: a grid too coarse for the kernel is measurably worse
    rep_coarse, _ = FFTRepulsion(n_interp=1, min_boxes=5, boxes_per_unit=0.1)(Y)
    assert _rel(rep_coarse, rep) > 2 * tol
    # new points against a fixed embedding (transform), per-target normaliser
    T = rng.normal(size=(50, 2)) * scale
    rep_t, z_t = ktsne.exact_repulsion(Y, targets=T)
    rep_tf, z_tf = FFTRepulsion(dof=1.0)(Y, T)
    assert _rel(rep_tf, rep_t) < tol
    np.testing.assert_allclose(z_tf, z_t, rtol=tol)


def test_2d_grid_sums_thrown_out_points_exactly_on_a_narrow_grid():
    rng = np.random.default_rng(9)
    Y = rng.normal(size=(4000, 2)) * 5
    Y[:3] = [[400.0, 5.0], [-350.0, 40.0], [10.0, 500.0]]  # a few points t-SNE threw out
    rep, z = ktsne.exact_repulsion(Y)
    grid = cpu_backend.tsne_repulsion(cpu_backend.TSNE_BH_2D_MAX, 2, 1.0)[0]  # the 2-D grid as fits use it
    rep_grid, z_grid = grid(Y)
    assert _rel(rep_grid, rep) < 1e-2 and abs(z_grid - z) / z < 1e-3
    assert _rel(rep_grid[:3], rep[:3]) < 1e-9  # the thrown-out points themselves: exact
    # the control: without the crop the grid spans the thrown-out points, with 10x
    # the boxes per axis, and coarser ones than the cropped grid gets
    wide = FFTRepulsion()
    rep_wide, _ = wide(Y)
    assert wide._cache_key[0] > 10 * grid._cache_key[0]
    assert _rel(rep_wide, rep) > 2 * _rel(rep_grid, rep)


def test_2d_grid_crops_only_when_it_narrows_the_grid():
    rng = np.random.default_rng(10)
    Y = rng.normal(size=(3000, 2)) * 20  # no point far out: nothing to crop
    cropping = FFTRepulsion(outliers=8)
    rep_a, z_a = cropping(Y)
    rep_b, z_b = FFTRepulsion()(Y)
    np.testing.assert_array_equal(rep_a, rep_b)
    assert z_a == z_b


def test_grid_of_fixed_boxes_is_kept_while_the_layout_fills_most_of_it():
    rng = np.random.default_rng(11)
    Y = rng.normal(size=(3000, 2)) * 40  # wider than min_boxes: boxes of one unit
    rep_obj = FFTRepulsion()
    rep_obj(Y)
    key = rep_obj._cache_key
    for shrink, kept in [(0.9, True), (1.0, True), (0.6, False)]:
        rep_obj(Y)  # back to the first grid
        if rep_obj._cache_key != key:
            rep_obj._cache_key = None
            rep_obj(Y)
        Z = Y * shrink
        rep_grid, z_grid = rep_obj(Z)
        assert (rep_obj._cache_key == key) == kept, shrink
        # the same boxes from the same origin, more of them: a fresh grid's result
        rep_fresh, z_fresh = FFTRepulsion()(Z)
        assert _rel(rep_grid, rep_fresh) < 1e-5 and abs(z_grid - z_fresh) / z_fresh < 1e-6
    rep_obj(Y * 1.5)  # a wider layout always gets a grid that spans it
    assert rep_obj._cache_key[0] > key[0]


@pytest.mark.parametrize("dim, dof", [(3, 1.0), (3, 0.5), (2, 1.0)])
def test_barnes_hut_agrees_with_exact(dim, dof):
    rng = np.random.default_rng(5)
    Y = rng.normal(size=(2000, dim)) * 5
    Y[:500] *= 0.1
    Y[7] = Y[8]  # exact duplicates share a leaf
    rep, z = ktsne.exact_repulsion(Y, dof)
    rep_bh, z_bh = BarnesHutRepulsion(dof=dof)(Y)
    assert _rel(rep_bh, rep) < 3e-2
    assert abs(z_bh - z) / z < 1e-2
    T = rng.normal(size=(40, dim)) * 5
    rep_t, z_t = ktsne.exact_repulsion(Y, dof, targets=T)
    rep_tb, z_tb = BarnesHutRepulsion(dof=dof)(Y, T)
    assert _rel(rep_tb, rep_t) < 3e-2
    np.testing.assert_allclose(z_tb, z_t, rtol=2e-2)


def test_barnes_hut_result_depends_on_its_input_alone():
    # The walk reuses the last call's sort order; ties (duplicates) are broken by index,
    # so a step's result is the same after any history and on any thread count.
    from embedscope.kernels.tsne import bh

    rng = np.random.default_rng(11)
    Y = rng.normal(size=(3000, 3)) * 8
    Y[100:140] = Y[3]  # one Morton cell, many rows
    fresh = BarnesHutRepulsion()(Y)
    walker = BarnesHutRepulsion()
    walker(Y[::-1].copy())
    walker(Y + rng.normal(size=Y.shape))
    again = walker(Y)
    np.testing.assert_array_equal(again[0], fresh[0])
    assert again[1] == fresh[1]
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = BarnesHutRepulsion()(Y)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(serial[0], fresh[0])
    codes = rng.integers(0, 50, size=5000)
    assert np.array_equal(bh._sort(codes, rng.permutation(5000)), np.argsort(codes, kind="stable"))
    # negative control: without the tie rule the order follows the previous one
    previous = rng.permutation(5000)
    assert not np.array_equal(previous[np.argsort(codes[previous], kind="stable")], np.argsort(codes, kind="stable"))


def test_barnes_hut_group_walk_is_at_least_the_point_walks_accuracy():
    # Each group's test implies the one-point test for its targets: on a clustered
    # layout the force error stays well under the classic walk's ~1% at theta = 0.5.
    rng = np.random.default_rng(12)
    centres = rng.uniform(-60, 60, size=(12, 3))
    Y = centres[rng.integers(12, size=6000)] + rng.normal(size=(6000, 3)) * rng.uniform(2, 8)
    rep, z = ktsne.exact_repulsion(Y)
    rep_bh, z_bh = BarnesHutRepulsion(theta=0.5)(Y)
    assert _rel(rep_bh, rep) < 4e-3 and abs(z_bh - z) / z < 2e-3
    with pytest.raises(ValueError, match="theta"):
        BarnesHutRepulsion(theta=0.6)(Y)


def test_pruned_fft_is_the_padded_fft():
    rng = np.random.default_rng(6)
    charges = rng.random((12, 12, 12)).astype(np.float32)
    full = sfft.rfftn(charges, s=(24, 24, 24))
    np.testing.assert_allclose(pruned_rfftn(charges, 24), full, rtol=0, atol=1e-4)
    spectra = np.stack([full, 2.0 * full]).astype(np.complex64)
    expected = sfft.irfftn(spectra, s=(24, 24, 24), axes=(1, 2, 3))[:, :12, :12, :12]
    np.testing.assert_allclose(pruned_irfftn(spectra, 24, 12), expected, rtol=0, atol=1e-3)
    # negative control: keeping the other corner of the cube is a different array
    assert np.abs(sfft.irfftn(spectra, s=(24, 24, 24), axes=(1, 2, 3))[:, 12:, :12, :12] - expected).max() > 1


@pytest.mark.parametrize("dof", [1.0, 0.5])
def test_cpu_3d_grid_repulsion_agrees_with_exact(dof):
    rng = np.random.default_rng(7)
    # 2 units wide: a layout the CPU's 3-D node cap resolves (node spacing ~0.05)
    Y = rng.normal(size=(2500, 3)) * 0.4
    Y[:800] *= 0.1  # a dense cluster inside a sparse cloud
    grid = cpu_backend.tsne_repulsion(cpu_backend.TSNE_GRID_3D_MIN, 3, dof)[0]
    assert isinstance(grid, FFTRepulsion)
    rep, z = ktsne.exact_repulsion(Y, dof)
    rep_grid, z_grid = grid(Y)
    assert _rel(rep_grid, rep) < 1e-3
    assert abs(z_grid - z) / z < 1e-4
    # bitwise the same on a second call (the parallel spread gives each node one writer)
    rep_again, z_again = grid(Y)
    np.testing.assert_array_equal(rep_again, rep_grid)
    assert z_again == z_grid
    # negative control: a grid too coarse for the kernel is measurably worse
    rep_coarse, _ = FFTRepulsion(dof=dof, n_interp=1, min_boxes=4, max_nodes=4)(Y)
    assert _rel(rep_coarse, rep) > 1e-2
    # new points against a fixed embedding (transform), per-target normaliser
    T = rng.normal(size=(40, 3)) * 0.4
    rep_t, z_t = ktsne.exact_repulsion(Y, dof, targets=T)
    rep_tg, z_tg = grid(Y, T)
    assert _rel(rep_tg, rep_t) < 1e-3
    np.testing.assert_allclose(z_tg, z_t, rtol=1e-3)


@pytest.mark.parametrize("dof", [1.0, 0.5])
def test_split_kernel_is_exact_and_smooth(dof):
    from embedscope.kernels.tsne.near import far_kernels

    d2 = np.linspace(0.0, 16.0, 1601)
    value, slope = far_kernels(d2, dof, 0.0)
    np.testing.assert_allclose(value, (1 + d2 / dof) ** -dof)
    far, far_slope = far_kernels(d2, dof, 2.0)
    np.testing.assert_array_equal(far[d2 >= 4.0], value[d2 >= 4.0])  # untouched beyond rc
    assert (far[d2 < 4.0] < value[d2 < 4.0]).all()  # the near part is what the peak adds
    # joined smoothly at rc: value and slope continuous; the near part is flatter
    np.testing.assert_allclose(far[399:402], value[399:402], rtol=1e-8)
    np.testing.assert_allclose(far_slope[399:402], slope[399:402], rtol=1e-6)
    assert np.abs(np.diff(far_slope)).max() < 0.5 * np.abs(np.diff(slope)).max()


def test_cpu_3d_grid_near_field_on_a_wide_layout():
    rng = np.random.default_rng(9)
    # ~45 units wide: 48 nodes are ~0.95 apart, coarser than the kernel's peak
    Y = rng.normal(size=(3000, 3)) * 7
    Y[:1000] = Y[:1000] * 0.1 + 5.0
    rep, z = ktsne.exact_repulsion(Y)
    grid = cpu_backend.tsne_repulsion(cpu_backend.TSNE_GRID_3D_MIN, 3, 1.0)[0]
    rep_grid, z_grid = grid(Y)
    assert _rel(rep_grid, rep) < 0.1 and abs(z_grid - z) / z < 0.02  # measured: 0.068
    T = rng.normal(size=(40, 3)) * 7
    rep_t, z_t = ktsne.exact_repulsion(Y, targets=T)
    rep_tg, z_tg = grid(Y, T)
    assert _rel(rep_tg, rep_t) < 0.2  # measured: 0.12 (no outlier crop for new points)
    np.testing.assert_allclose(z_tg, z_t, rtol=0.05)
    # negative control: the same grid with the whole kernel on it
    nodes = cpu_backend.TSNE_GRID_3D_NODES
    rep_unsplit, _ = FFTRepulsion(min_boxes=nodes // 3, max_nodes=nodes, outliers=8)(Y)
    assert _rel(rep_unsplit, rep) > 2 * _rel(rep_grid, rep)  # measured: 0.157 against 0.068


def test_cpu_3d_grid_sums_thrown_out_points_exactly():
    rng = np.random.default_rng(8)
    Y = rng.normal(size=(3000, 3)) * 0.4
    Y[:5] = rng.normal(size=(5, 3)) * 40  # a few points far out, as t-SNE leaves them
    rep, z = ktsne.exact_repulsion(Y)
    rep_grid, z_grid = cpu_backend.tsne_repulsion(cpu_backend.TSNE_GRID_3D_MIN, 3, 1.0)[0](Y)
    assert _rel(rep_grid, rep) < 1e-3 and abs(z_grid - z) / z < 1e-4
    assert _rel(rep_grid[:5], rep[:5]) < 1e-9  # the outliers themselves: exact sums
    # negative control: the same grid stretched over the outliers is far off
    nodes = cpu_backend.TSNE_GRID_3D_NODES
    rep_wide, z_wide = FFTRepulsion(min_boxes=nodes // 3, max_nodes=nodes)(Y)
    assert _rel(rep_wide, rep) > 0.3 and abs(z_wide - z) / z > 0.05


def test_cpu_3d_repulsion_rule():
    rule = cpu_backend.tsne_repulsion
    edge = cpu_backend.TSNE_GRID_3D_MIN
    assert rule(edge, 3, 1.0)[1] == "fft" and rule(edge + 1, 3, 1.0)[1] == "fft"
    assert rule(edge - 1, 3, 1.0)[1] == "barnes-hut"
    assert isinstance(rule(edge - 1, 3, 1.0)[0], BarnesHutRepulsion)
    assert rule(ktsne_exact_max(), 3, 1.0)[1] == "exact" and rule(edge - 1, 2, 1.0)[1] == "fft"
    assert "TSNE_GRID_3D_MIN" in rule(edge, 3, 1.0)[2] and "TSNE_GRID_3D_MIN" in rule(edge - 1, 3, 1.0)[2]


def test_cpu_2d_repulsion_rule():
    rule = cpu_backend.tsne_repulsion
    tree = cpu_backend.TSNE_BH_2D_MAX
    assert rule(ktsne_exact_max(), 2, 1.0)[1] == "exact"
    assert rule(ktsne_exact_max() + 1, 2, 1.0)[1] == "barnes-hut"
    assert isinstance(rule(tree - 1, 2, 1.0)[0], BarnesHutRepulsion)
    assert rule(tree, 2, 1.0)[1] == "fft" and isinstance(rule(tree, 2, 1.0)[0], FFTRepulsion)
    assert "TSNE_BH_2D_MAX" in rule(tree - 1, 2, 1.0)[2] and "TSNE_BH_2D_MAX" in rule(tree, 2, 1.0)[2]


def test_cpu_2d_barnes_hut_agrees_with_exact_and_beats_the_grid():
    """The reason small 2-D fits take the tree: its force error is well below the grid's."""
    rng = np.random.default_rng(3)
    Y = rng.normal(size=(3000, 2)) * 5
    Y[:1000] = Y[:1000] * 0.05 + 8  # a tight cluster beside a wide cloud, as t-SNE makes
    rep, z = ktsne.exact_repulsion(Y)
    rep_bh, z_bh = BarnesHutRepulsion()(Y)
    rep_grid, _ = FFTRepulsion(outliers=cpu_backend.TSNE_GRID_2D_OUTLIERS)(Y)
    assert _rel(rep_bh, rep) < 0.01 and abs(z_bh - z) / z < 1e-3
    assert _rel(rep_bh, rep) < _rel(rep_grid, rep)


def ktsne_exact_max() -> int:
    from embedscope.backends._shared import TSNE_EXACT_MAX

    return TSNE_EXACT_MAX


# ----------------------------------------------------------------------------- quality
#: The repulsion a 5,000-point 2-D fit takes (cpu: Barnes-Hut below TSNE_BH_2D_MAX).
REPULSION_5K = {"cpu": "barnes-hut", "cuda": "fft"}


def test_mixture_quality_above_floor(mixture_5k, fitted_mixture, fitted_mixture_on, backend):
    X, labels = mixture_5k
    est, Y = fitted_mixture_on
    assert Y.shape == (5000, 2) and Y.dtype == np.float32 and np.isfinite(Y).all()
    assert isinstance(est.embedding_, np.ndarray) and est.embedding_.dtype == np.float32
    assert est.repulsion_ == REPULSION_5K[backend] and est.backend_ == backend
    score = trustworthiness(X, Y, 15)
    assert score > MIXTURE_FLOOR
    assert knn_accuracy(Y, labels, 15) > 0.95
    assert 0 < est.kl_divergence_ < 3.0 and est.n_iter_ == 1000
    if get_spec(backend).kernels is not None:
        # our stages ran: the same stage keys and the cpu's quality
        assert tuple(est.timings_) == GRAPH_STAGES
        cpu_score = trustworthiness(X, fitted_mixture[1], 15)
        assert abs(score - cpu_score) < 0.01, (score, cpu_score)
    # negative control: a random layout fails the same bars
    Y_random = np.random.default_rng(0).normal(size=Y.shape)
    assert trustworthiness(X, Y_random, 15) < 0.7
    assert knn_accuracy(Y_random, labels, 15) < 0.2


def test_kl_divergence_decreases(fitted_mixture):
    est, _ = fitted_mixture
    its, kls = zip(*est.kl_history_, strict=True)
    assert its[0] == 50 and its[-1] == 1000 and est.n_iter_ == 1000
    normal = [kl for it, kl in est.kl_history_ if it > 250]
    assert all(b <= a + 1e-3 for a, b in itertools.pairwise(normal))
    assert est.kl_divergence_ < 0.6 * kls[0]
    assert 0 < est.kl_divergence_ < 3.0
    assert set(est.timings_) == {"preprocess", "knn", "affinities", "init", "optimise"}


@pytest.mark.words
def test_words_quality_above_floor(words):
    vectors, _ = words
    X = np.asarray(vectors[:5000], dtype=np.float32)
    # 750 iterations in all, as openTSNE's defaults (250 exaggerated + 500)
    Y = host(TSNE(n_iter=750, random_state=0, backend="cpu").fit_transform(X))
    assert trustworthiness(X, Y, 15) > WORDS_FLOOR


# The 3-D repulsion each backend runs; a backend not listed refuses 3-D (cuML is 2-D only).
REPULSION_3D = {"cpu": "barnes-hut", "cuda": "fft"}


def test_three_dimensions(mixture_5k, backend):
    X, labels = mixture_5k
    est = TSNE(n_components=3, n_iter=400, random_state=0, backend=backend)
    if backend not in REPULSION_3D:
        with pytest.raises(Unsupported, match="2-D only"):
            est.fit(X[:2500])
        return
    Y = host(est.fit_transform(X[:2500]))
    assert Y.shape == (2500, 3) and np.isfinite(Y).all()
    assert est.repulsion_ == REPULSION_3D[backend]
    assert trustworthiness(X[:2500], Y, 15) > 0.95
    assert knn_accuracy(Y, labels[:2500], 15) > 0.95


def test_three_dimensions_on_the_cpu_grid(mixture_5k, monkeypatch, capsys):
    X, labels = mixture_5k
    # the rule's threshold lowered so 1,600 points take the grid (its own test: above);
    # kept short: the grid's per-step cost is fixed, so small fits pay it in full
    monkeypatch.setattr(cpu_backend, "TSNE_GRID_3D_MIN", 1550)
    est = TSNE(n_components=3, n_iter=250, random_state=0, backend="cpu", verbose=True)
    Y = est.fit_transform(X[:1600])
    assert est.repulsion_ == "fft" and "TSNE_GRID_3D_MIN=1,550" in est.repulsion_reason_
    assert "fft repulsion (3-D, 1,600 points >= TSNE_GRID_3D_MIN=1,550)" in capsys.readouterr().err
    assert trustworthiness(X[:1600], Y, 15) > 0.95
    assert knn_accuracy(Y, labels[:1600], 15) > 0.95
    # negative control: a random 3-D layout fails the same bars
    Y_random = np.random.default_rng(0).normal(size=Y.shape)
    assert trustworthiness(X[:1600], Y_random, 15) < 0.7
    assert knn_accuracy(Y_random, labels[:1600], 15) < 0.2
    # seeded: the same again, bit for bit (a short fit suffices), and not for another seed
    short = [TSNE(n_components=3, n_iter=20, random_state=seed, backend="cpu", init="random")
             .fit_transform(X[:1550]) for seed in (3, 3, 4)]
    np.testing.assert_array_equal(short[0], short[1])
    assert not np.array_equal(short[0], short[2])


def test_transform_places_new_points_near_their_neighbours(mixture_5k, backend):
    X, labels = mixture_5k
    train, test = np.arange(4000), np.arange(4000, 5000)
    # input in the backend's array module (cupy on a GPU) comes back in it
    xp = get_spec(backend).array_module()
    est = TSNE(n_iter=500, random_state=0, backend=backend)
    Y = est.fit_transform(xp.asarray(X[train]))
    assert array_module(Y) is xp and Y.shape == (4000, 2)
    assert isinstance(est.embedding_, np.ndarray)
    np.testing.assert_array_equal(host(Y), est.embedding_)
    capabilities = get_spec(backend).capabilities
    if "tsne" not in capabilities.transform:  # cuML's t-SNE has no transform
        hint = capabilities.hints.get("transform=tsne", "cannot place new points")
        with pytest.raises(Unsupported, match=re.escape(hint)):
            est.transform(X[test])
        return
    placed = est.transform(xp.asarray(X[test]))  # cuda: placed on the CPU, returned as cupy
    assert array_module(placed) is xp
    assert isinstance(est.transform(X[test[:20]]), np.ndarray)  # numpy in, numpy out
    Y_new = host(placed)
    assert Y_new.shape == (1000, 2) and np.isfinite(Y_new).all()
    # label of each new point's nearest fitted points in the embedding
    idx, _ = exact_knn(est.embedding_, 10, queries=Y_new.astype(np.float32))
    votes = labels[train][idx]
    majority = np.array([np.bincount(v, minlength=20).argmax() for v in votes])
    assert (majority == labels[test]).mean() > 0.95
    # negative control: the same vote for random positions in the embedding's box
    lo, hi = est.embedding_.min(0), est.embedding_.max(0)
    Y_rand = np.random.default_rng(0).uniform(lo, hi, size=Y_new.shape).astype(np.float32)
    idx_r, _ = exact_knn(est.embedding_, 10, queries=Y_rand)
    majority_r = np.array([np.bincount(v, minlength=20).argmax() for v in labels[train][idx_r]])
    assert (majority_r == labels[test]).mean() < 0.3
    # a fitted point transformed again lands near where it is
    again = host(est.transform(X[:200]))
    spread = np.ptp(est.embedding_, axis=0).max()
    assert np.median(np.linalg.norm(again - est.embedding_[:200], axis=1)) < 0.02 * spread


# ----------------------------------------------------------------------------- contract
def test_same_seed_same_embedding_and_precomputed_knn(mixture_5k):
    X = mixture_5k[0][:600]
    a = TSNE(n_iter=120, random_state=3, backend="cpu").fit_transform(X)
    b = TSNE(n_iter=120, random_state=3, backend="cpu").fit_transform(X)
    np.testing.assert_array_equal(a, b)
    knn = exact_knn(X, 90)
    c = TSNE(n_iter=120, random_state=3, precomputed_knn=knn, backend="cpu").fit_transform(X)
    np.testing.assert_allclose(c, a, rtol=1e-5, atol=1e-5)


def test_params_roundtrip_and_callback_stops(mixture_5k):
    from sklearn.base import clone

    est = TSNE(perplexity=10.0, dof=0.7, n_iter=300)
    assert clone(est).get_params() == est.get_params()
    assert "perplexity=10.0" in repr(est)
    seen = []
    est.set_params(callback=lambda it, kl, Y: seen.append((it, kl, Y.shape)) or it >= 100, random_state=0)
    est.fit(mixture_5k[0][:400])
    assert [s[0] for s in seen] == [50, 100] and est.n_iter_ == 100
    assert all(np.isfinite(s[1]) for s in seen)


def test_verbose_logs_kl_every_50_iterations(capsys, mixture_5k):
    TSNE(n_iter=100, random_state=0, verbose=True).fit(mixture_5k[0][:300])
    err = capsys.readouterr().err
    assert "iteration 50: KL divergence" in err and "iteration 100: KL divergence" in err
    TSNE(n_iter=100, random_state=0).fit(mixture_5k[0][:300])
    assert capsys.readouterr().err == ""


def test_random_and_array_init_and_cosine(mixture_5k):
    X, labels = mixture_5k[0][:800], mixture_5k[1][:800]
    for init in ("random", np.random.default_rng(0).normal(size=(800, 2)) * 1e-4):
        Y = TSNE(init=init, n_iter=400, random_state=0).fit_transform(X)
        assert knn_accuracy(Y, labels, 15) > 0.9
    Y = TSNE(metric="cosine", n_iter=400, random_state=0).fit_transform(X)
    assert knn_accuracy(Y, labels, 15) > 0.9


# ----------------------------------------------------------------------------- bad input
def test_perplexity_too_large_is_clamped_with_a_warning():
    X = np.random.default_rng(0).normal(size=(40, 5))
    est = TSNE(perplexity=30.0, n_iter=100, random_state=0)
    with pytest.warns(UserWarning, match="perplexity=30 is too large for 40 points"):
        Y = est.fit_transform(X)
    assert est.perplexity_ == pytest.approx(13.0) and est.perplexity == 30.0
    assert np.isfinite(Y).all()


def test_duplicate_points_give_finite_output():
    rng = np.random.default_rng(0)
    X = np.repeat(rng.normal(size=(50, 8)), 4, axis=0)
    Y = TSNE(n_iter=200, random_state=0).fit_transform(X)
    assert np.isfinite(Y).all()


@pytest.mark.filterwarnings("ignore:perplexity=")
@pytest.mark.parametrize("X, match", [
    (np.zeros((3, 5)), "at least 4"),
    (np.ones((20, 5)), "identical"),
    (np.array([[0.0, np.nan]] * 10), "NaN"),
    (np.zeros(10), "2-D"),
])
def test_bad_data_is_a_clear_error(X, match):
    with pytest.raises(DataError, match=match):
        TSNE().fit(X)


@pytest.mark.filterwarnings("ignore:perplexity=")
@pytest.mark.parametrize("params, match", [
    ({"metric": "manhatan"}, "unknown metric 'manhatan'"),
    ({"n_components": 4}, "n_components=4"),
    ({"perplexity": 0}, "perplexity"),
    ({"perplexity": float("nan")}, "perplexity"),
    ({"early_exaggeration": 0.5}, "early_exaggeration"),
    ({"learning_rate": "fast"}, "learning_rate"),
    ({"learning_rate": -1.0}, "learning_rate"),
    ({"n_iter": 0}, "n_iter"),
    ({"dof": 0.0}, "dof"),
    ({"init": "spectral"}, "init="),
    ({"init": np.zeros((5, 2))}, "init array has shape"),
    ({"precomputed_knn": (np.zeros((50, 3), int), np.zeros((49, 3)))}, "precomputed_knn"),
    ({"precomputed_knn": (np.full((50, 3), 99), np.zeros((50, 3)))}, "precomputed_knn"),
    ({"callback": 3}, "callback"),
    ({"random_state": "x"}, "random_state"),
])
def test_bad_params_name_the_parameter(params, match):
    X = np.random.default_rng(0).normal(size=(50, 4))
    with pytest.raises(ValueError, match=match):
        TSNE(**params).fit(X)


def test_transform_needs_fit_and_matching_features(mixture_5k):
    with pytest.raises(NotFittedError):
        TSNE().transform(np.zeros((2, 3)))
    est = TSNE(n_iter=60, random_state=0, backend="cpu").fit(mixture_5k[0][:200])
    with pytest.raises(ValueError, match="features"):
        est.transform(np.zeros((2, 3)))
    with pytest.raises(DataError, match="NaN"):
        est.transform(np.full((2, 50), np.nan))


# ----------------------------------------------------------------------------- GPU backends
def test_tsne_import_loads_no_gpu_module():
    assert gpu_modules_loaded_by("from embedscope import TSNE; import embedscope.engine.tsne") == []


def test_cuda_backend_refuses_large_perplexity_before_any_work(monkeypatch):
    # The simulator makes "cuda" resolvable here; the refusal comes before any kernel runs.
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    monkeypatch.setattr(tsne_engine.TSNE, "_optimise", lambda *a: pytest.fail("work started"))
    X = np.random.default_rng(0).normal(size=(300, 5))
    with pytest.raises(Unsupported, match=r"at most 128 neighbours.*3 x perplexity = 150.*backend='cpu'"):
        TSNE(perplexity=50.0, backend="cuda").fit(X)


def test_auto_passes_over_a_gpu_that_would_refuse(fake_cuda_only):
    assert TSNE()._start((300, 5))[0].name == "cuda"
    backend, _ = TSNE(perplexity=50.0)._start((300, 5))
    assert backend.name == "cpu"
    est = TSNE(perplexity=50.0)
    est._start((300, 5))
    assert est.backend_ == "cpu" and "cuda: cannot run these settings (backend='cuda' finds at most 128" in est.backend_reason_
    # a graph given up front needs no GPU search
    knn = (np.zeros((300, 150), np.int32), np.zeros((300, 150), np.float32))
    assert TSNE(perplexity=50.0, precomputed_knn=knn)._start((300, 5))[0].name == "cuda"


@pytest.mark.filterwarnings("ignore:perplexity=")
@pytest.mark.parametrize("n_components", [2, 3])
def test_pca_init_of_one_feature_data(n_components):
    # one principal axis; the others start as small noise (was PCA's n_components error)
    X = np.random.default_rng(0).normal(size=(60, 1))
    Y = TSNE(n_components=n_components, init="pca", n_iter=100, random_state=0).fit_transform(X)
    assert Y.shape == (60, n_components) and np.isfinite(Y).all()
    assert (Y.std(axis=0) > 0).all()


# ----------------------------------------------------------------------------- locality
def test_locality_order_is_a_permutation_that_keeps_neighbours_close():
    from embedscope.kernels.locality import locality_order

    rng = np.random.default_rng(0)
    for dim in (2, 3):
        Y = rng.normal(size=(3000, dim)) * 50
        order = locality_order(Y)
        assert np.array_equal(np.sort(order), np.arange(3000))
        step = np.linalg.norm(np.diff(Y[order], axis=0), axis=1).mean()
        # negative control: the input order of random points steps ~the spread
        assert step < 0.2 * np.linalg.norm(np.diff(Y, axis=0), axis=1).mean()
        np.testing.assert_array_equal(locality_order(Y), order)  # deterministic
    with pytest.raises(ValueError, match="dimensions"):
        locality_order(rng.normal(size=(10, 4)))


def test_permute_csr_relabels_rows_and_columns_in_place():
    import scipy.sparse as sp

    from embedscope.kernels.locality import permute_csr

    rng = np.random.default_rng(1)
    P = sp.random(400, 400, density=0.05, random_state=1, format="csr", dtype=np.float32)
    P.indices = P.indices.astype(np.int32)
    order = rng.permutation(400)
    expected = P[order][:, order].toarray()
    Q = P.copy()
    permute_csr(Q, order)
    np.testing.assert_array_equal(Q.toarray(), expected)
    assert Q.indices.dtype == np.int32 and Q.data.dtype == np.float32
    # each row keeps its entries' order (so the attraction sums in the same order)
    r = 7
    np.testing.assert_array_equal(Q.data[Q.indptr[r]:Q.indptr[r + 1]], P.data[P.indptr[order[r]]:P.indptr[order[r] + 1]])
    wrong = P.copy()
    permute_csr(wrong, np.roll(order, 1))
    assert not np.array_equal(wrong.toarray(), expected)
    with pytest.raises(ValueError, match="order of its size"):
        permute_csr(P.copy(), order[:-1])


def test_permute_lists_owned_equals_permute_lists_and_replaces_the_slots():
    import scipy.sparse as sp

    from embedscope.kernels.locality import permute_lists, permute_lists_owned

    rng = np.random.default_rng(2)
    G = sp.random(300, 300, density=0.04, random_state=2, format="csr", dtype=np.float32)
    ptr, idx = G.indptr.astype(np.int64), G.indices.astype(np.int32)
    clock = rng.uniform(size=idx.size).astype(np.float32)
    order = rng.permutation(300)
    expected = permute_lists(ptr, idx, order, None, G.data, clock)
    arrays = [idx.copy(), G.data.copy(), clock.copy()]
    before = list(arrays)  # held here, so no new array can reuse an old one's address
    new_ptr = permute_lists_owned(ptr, arrays, order)
    np.testing.assert_array_equal(new_ptr, expected[0])
    for got, want in zip(arrays, expected[1:], strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype
    assert all(a is not b for a, b in zip(arrays, before, strict=True))  # new arrays in the slots
    # the relabelled lists are the graph G[order][:, order]
    H = sp.csr_matrix((arrays[1], arrays[0], new_ptr), shape=(300, 300))
    np.testing.assert_array_equal(H.toarray(), G[order][:, order].toarray())
    with pytest.raises(ValueError, match="order of 300 rows"):
        permute_lists_owned(ptr, [idx.copy()], order[:-1])


def test_reordered_fit_returns_rows_in_input_order(mixture_5k, monkeypatch):
    # The loop relabels the problem by layout position (REORDER_AT); the embedding,
    # the callback's copy and transform must still be in the user's row order.
    X = mixture_5k[0][:2000]
    plain = TSNE(n_iter=6, random_state=3, backend="cpu").fit(X)
    monkeypatch.setattr(cpu_backend, "TSNE_REORDER_MIN", 1)
    monkeypatch.setattr(tsne_engine, "REORDER_AT", frozenset({0, 2, 4}))
    seen = []
    est = TSNE(n_iter=6, random_state=3, backend="cpu", callbacks_every_iters=3,
               callback=lambda it, kl, Y: seen.append(Y.copy()) and False)
    est.fit(X)
    spread = float(np.ptp(plain.embedding_))
    # Only the grid's charge sums change order: a few steps agree to float rounding
    # (t-SNE is chaotic: by 30 steps of early exaggeration the two drift ~0.2% apart).
    np.testing.assert_allclose(est.embedding_, plain.embedding_, atol=1e-5 * spread)
    np.testing.assert_array_equal(seen[-1], est.embedding_)
    assert abs(est.kl_divergence_ - plain.kl_divergence_) < 1e-6
    # negative control: the layout in the relabelled order is far from the reference
    assert not np.allclose(est.embedding_[::-1], plain.embedding_, atol=1e-2 * spread)


def test_reordered_fit_has_the_same_quality(mixture_5k, monkeypatch):
    X, labels = mixture_5k[0][:2000], mixture_5k[1][:2000]
    plain = TSNE(n_iter=300, random_state=3, backend="cpu").fit(X)
    monkeypatch.setattr(cpu_backend, "TSNE_REORDER_MIN", 1)
    est = TSNE(n_iter=300, random_state=3, backend="cpu").fit(X)
    assert abs(est.kl_divergence_ / plain.kl_divergence_ - 1) < 0.02
    assert trustworthiness(X, est.embedding_, 15) > trustworthiness(X, plain.embedding_, 15) - 0.005
    assert knn_accuracy(est.embedding_, labels) > knn_accuracy(plain.embedding_, labels) - 0.01
