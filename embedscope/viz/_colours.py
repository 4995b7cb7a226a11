"""Colour helpers shared by the static figure and the live view (a leaf module: it imports nothing of viz)."""

from __future__ import annotations


def hex_rgb(colour: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` as three 0-255 integers."""
    value = colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
