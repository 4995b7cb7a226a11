"""Two layouts side by side: pairing rows, refusing mismatches, the moved layer, the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embedscope.errors import DataError
from embedscope.viz.compare import align_layouts


@pytest.fixture(scope="module")
def layouts():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(300, 2))
    meta = pd.DataFrame({"id": [f"item{i}" for i in range(300)], "label": rng.integers(0, 3, 300)})
    return A, meta


def test_rows_pair_by_id_or_by_order(layouts):
    A, meta = layouts
    order = np.random.default_rng(1).permutation(300)
    B, b_meta = A[order] * 2, meta.iloc[order].reset_index(drop=True).assign(extra=np.arange(300))
    got_a, got_b, joined = align_layouts(A, meta, B, b_meta, on="id")
    np.testing.assert_array_equal(got_a, A)
    np.testing.assert_array_equal(got_b, A * 2)  # B put back into A's order
    assert list(joined.columns) == ["id", "label", "extra"]
    np.testing.assert_array_equal(joined["extra"].to_numpy()[order], np.arange(300))
    # By row order the shuffled layout pairs different items: nothing is reordered.
    _, by_order, _ = align_layouts(A, meta, B, b_meta)
    np.testing.assert_array_equal(by_order, B)


def test_mismatches_are_named(layouts):
    A, meta = layouts
    with pytest.raises(DataError, match=r"300 rows and .* 299; pair them by an id column"):
        align_layouts(A, meta, A[:299], meta.iloc[:299])
    with pytest.raises(DataError, match="no column 'key'"):
        align_layouts(A, meta, A, meta, on="key")
    dup = meta.copy()
    dup.loc[5, "id"] = "item4"
    with pytest.raises(DataError, match="not unique"):
        align_layouts(A, meta, A, dup, on="id")
    other = meta.copy()
    other.loc[7, "id"] = "stranger"
    with pytest.raises(DataError, match=r"ids differ: 1 only in .*'item7'"):
        align_layouts(A, meta, A, other, on="id")


def test_cli_compare_draws_both_and_logs_the_moved_layer(layouts, tmp_path, capsys):
    from PIL import Image

    from embedscope.cli import main

    A, meta = layouts
    order = np.random.default_rng(2).permutation(300)
    pd.DataFrame({"x": A[:, 0], "y": A[:, 1], **meta}).to_parquet(tmp_path / "a.parquet")
    B = A[order] @ np.array([[0.0, -1.0], [1.0, 0.0]])  # the same layout, rotated and shuffled
    pd.DataFrame({"x": B[:, 0], "y": B[:, 1], **meta.iloc[order].reset_index(drop=True)}).to_parquet(
        tmp_path / "b.parquet")
    out = tmp_path / "cmp.png"
    args = ["compare", str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet"), "--width", "200",
            "--height", "150", "--out", str(out)]
    assert main([*args, "--on", "id"]) == 0
    assert "median 0.000, 0.0% of points above 0.5" in capsys.readouterr().err  # nothing moved
    with Image.open(out) as image:
        assert image.size[0] >= 2 * 200 and image.size[1] == 150 + 40
        pixels = np.asarray(image.convert("RGB"))
    assert (pixels[40:, :200] != 255).any() and (pixels[40:, 208:408] != 255).any()  # both panels drawn
    # Paired by row order instead, the shuffle looks like every point moved.
    assert main([*args, "--force"]) == 0
    import re

    share = float(re.search(r"([\d.]+)% of points above 0.5", capsys.readouterr().err).group(1))
    assert share > 90
    assert main([*args, "--on", "id", "--color", "label", "--force"]) == 0
    assert main([*args, "--on", "nope", "--force"]) == 2
    assert "no column 'nope'" in capsys.readouterr().err
