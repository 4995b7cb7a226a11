"""The live view's GPU twin (view_grid_gpu) in numba's CUDA simulator against view_grid.

Invoked by tests/test_gpu_twins.py with NUMBA_ENABLE_CUDASIM=1 (the twin's arrays are
numpy there). Few threads and blocks: the simulator runs one Python thread per CUDA
thread, and the grid-stride loop covers the rest. Exits non-zero on a failure.
"""

from __future__ import annotations

import numpy as np

from embedscope.kernels import view_raster
from embedscope.kernels.view_raster import view_grid, view_grid_gpu

THREADS = 16
PALETTE = np.array([[230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48]], dtype=np.float32)


def _points(n: int, dtype: type, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n).astype(dtype)
    y = rng.normal(size=n).astype(dtype)
    x[:40], y[:40] = x[40:80], y[40:80]  # duplicates: a tie the lowest row id must win
    x[80], y[80] = 2.0, 1.5  # on the upper edges: the last pixel
    x[81] = np.nan
    x[82] = 7.0  # outside the view
    codes = rng.integers(-1, 5, size=n)  # -1 and 4 (no colour) are not drawn
    values = rng.normal(size=n)
    values[::17] = np.nan
    return x, y, codes, values


def _same(got, ref, what: str) -> None:
    np.testing.assert_array_equal(got.count, ref.count, err_msg=what)
    assert got.count.dtype == np.uint32 and got.count.sum() > 0
    for name in ("rgb_sum", "value_sum"):
        a, b = getattr(got, name), getattr(ref, name)
        assert (a is None) == (b is None), (what, name)
        if a is not None:
            assert a.dtype == b.dtype, (what, name)
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9, err_msg=f"{what} {name}")
    if ref.index is None:
        assert got.index is None
    else:
        np.testing.assert_array_equal(got.index, ref.index, err_msg=what)


def main() -> None:
    view_raster.GPU_MAX_BLOCKS = 2  # 64 simulated threads, each looping over many points
    ranges = ((-2.0, 2.0), (-2.0, 1.5))
    for dtype in (np.float32, np.float64):
        x, y, codes, values = _points(400, dtype, seed=0)
        cases = {
            "density": {},
            "categories": dict(codes=codes, palette=PALETTE),
            "values, no pick": dict(values=values, pick=False),
        }
        for what, extra in cases.items():
            ref = view_grid(x, y, *ranges, 23, 17, **extra)
            got = view_grid_gpu(x, y, *ranges, 23, 17, threads=THREADS, **extra)
            _same(got, ref, f"{dtype.__name__} {what}")
        # the tie: rows 0-39 repeat rows 40-79, so no pixel may report a row of 40-79
        ref = view_grid(x, y, *ranges, 23, 17)
        assert not np.isin(ref.index, np.arange(40, 80)).any()
    # the same pixels as view_grid, so a shifted view must not match (negative control)
    shifted = view_grid_gpu(x, y, (-1.9, 2.1), ranges[1], 23, 17, threads=THREADS)
    assert not np.array_equal(shifted.count, view_grid(x, y, *ranges, 23, 17).count)
    try:
        view_grid_gpu(x, y, *ranges, 10, 10, codes=codes[:5], palette=PALETTE)
    except ValueError as exc:
        assert "codes has 5 entries" in str(exc)
    else:
        raise AssertionError("codes of the wrong length were accepted")
    check_plot_wiring()
    print("view_grid_gpu ok")


class _Device(np.ndarray):
    """Stands for a device array: the simulator's device arrays are numpy ones."""


def check_plot_wiring() -> None:
    """EmbeddingPlot with device coordinates renders through the GPU twin, to the same image.

    The simulator's device arrays are numpy, so ``aggregate_view`` is told they are
    device arrays; a twin that was never called would leave ``calls`` at 0.
    """
    import pandas as pd

    from embedscope.viz.figure import EmbeddingPlot

    calls = []
    twin = view_raster.view_grid_gpu

    def counted(*args, **kwargs):
        calls.append(1)
        return twin(*args, threads=THREADS, **kwargs)

    view_raster.view_grid_gpu = counted
    view_raster.is_cupy = lambda x: isinstance(x, _Device)
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.normal(size=300).astype(np.float32), "y": rng.normal(size=300).astype(np.float32),
                          "kind": pd.Categorical(rng.choice(["a", "b", "c"], 300))})
    xy = tuple(np.array(frame[c]).view(_Device) for c in "xy")
    for color in (None, "kind"):
        host = EmbeddingPlot(frame, color=color, _prepared=True, width=64, height=48)
        device = EmbeddingPlot(frame, color=color, _prepared=True, _device_xy=xy, width=64, height=48)
        before = len(calls)
        a, b = host.render((-2.0, 2.0), (-1.5, 1.5)), device.render((-2.0, 2.0), (-1.5, 1.5))
        assert len(calls) == before + 1, "the device plot did not aggregate on the device"
        for band in ("R", "G", "B", "A", "__index__"):
            np.testing.assert_array_equal(np.asarray(a.data[band]), np.asarray(b.data[band]), err_msg=band)
    print("EmbeddingPlot on device coordinates renders through view_grid_gpu")


if __name__ == "__main__":
    main()
