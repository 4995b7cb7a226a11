"""Plots of embeddings: datashader rasters, HoloViews views, static export, the app.

Submodules load on first use, so ``embedscope --help`` does not import HoloViews.

>>> from embedscope.viz import plot, raster, save_png
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["EmbeddingPlot", "plot", "raster", "save_html", "save_png", "shade"]

_WHERE = {
    "EmbeddingPlot": "embedscope.viz.figure",
    "plot": "embedscope.viz.figure",
    "raster": "embedscope.viz.aggregate",
    "shade": "embedscope.viz.aggregate",
    "save_html": "embedscope.viz.export",
    "save_png": "embedscope.viz.export",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'embedscope.viz' has no attribute {name!r}")
