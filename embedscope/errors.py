"""Errors a user can meet, at the bottom of the package so every layer can raise them."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """Input vectors or metadata that cannot be used, with the reason."""
