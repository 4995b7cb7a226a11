"""Metadata as inert text for the app's panes (a leaf module: the 2-D and 3-D apps share it)."""

from __future__ import annotations

from typing import Any

#: Longest metadata value shown in a title; the table and the export keep the whole value.
MAX_LABEL_CHARS = 120

# Characters that HTML or Markdown would read as markup. Each is written as a numeric
# character reference, which both show as the literal character and neither interprets.
_MARKUP = set("<>&\"'`*_[](){}#+-.!|~=:$\\/")


def safe_text(value: Any, limit: int = MAX_LABEL_CHARS) -> str:
    """``value`` as inert text for a Markdown or HTML pane: no tag, link or emphasis survives.

    Metadata comes from the user's files and search text from the browser, so neither
    may reach a pane as markup (a value ``<img src=x onerror=...>`` would run in every
    browser that shows it). Whitespace runs become one space and long values are cut.
    """
    text = " ".join(str(value).split())
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return "".join(f"&#{ord(c)};" if c in _MARKUP or ord(c) < 32 else c for c in text)
