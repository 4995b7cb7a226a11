"""Hostile cases of the ``reduce`` command that already held before #14 (the table grows per area)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.hostile.harness import Case, run_case


def _vectors(folder):
    np.save(folder / "v.npy", np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32))


CASES = [
    Case("missing-input", ["reduce", "nope.npy", "--method", "pca", "--out", "o.npy"], message="no such file"),
    Case("pca-to-npy", ["reduce", "v.npy", "--method", "pca", "--out", "o.npy", "--quiet"],
         expect="handle", setup=_vectors, outputs=["o.npy"]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case(case, tmp_path):
    run_case(case, tmp_path / "work")
