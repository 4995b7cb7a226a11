"""The explorer's search: substring, exact or regular-expression matching of a text
column, and the columns the explorer starts on.

Matching runs on an Arrow string array with pyarrow's compute kernels, made once per
server: a substring or exact test of 10M short strings takes well under a second,
several times faster than pandas' ``str`` methods over Python objects
(``benchmarks/explorer_search.py``). Regular expressions are RE2's (pyarrow's engine):
matching time is linear in the text, with no backtracking, so no pattern a browser
sends can stall the server; patterns RE2 refuses (back-references, look-arounds) are
a one-line error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MAX_SEARCH_CHARS", "MODES", "CategoricalText", "default_color_column", "default_text_column",
           "search_rows", "text_array"]

#: Longest search text or pattern accepted: pyarrow's string kernels fail on
#: multi-megabyte patterns, and a search needs no more.
MAX_SEARCH_CHARS = 200
MODES = ("substring", "exact", "regex")
#: A colour column by default needs at least 2 and at most this many categories.
MAX_DEFAULT_CATEGORIES = 64
#: Rows read to decide what a column holds (a seeded sample above it).
SAMPLE_ROWS = 10_000


class CategoricalText:
    """A categorical column for :func:`search_rows`: its categories as Arrow strings, and
    each row's code (-1: missing). A search tests the few categories and maps the codes,
    where the column spelt out row by row took ~3 s to build at 10M rows and each search
    ~0.5 s (``benchmarks/viz_latency.py --action search``)."""

    def __init__(self, categories: Any, codes: np.ndarray) -> None:
        self.categories = categories
        self.codes = codes


def _arrow_strings(series: pd.Series) -> Any:
    import pyarrow as pa

    if series.dtype.kind not in "OSU" and not isinstance(series.dtype, pd.StringDtype):
        series = series.astype(str)
    array = pa.array(series, from_pandas=True)
    if not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
        array = array.cast(pa.string())
    return array


def text_array(values: Any) -> Any:
    """A column as one Arrow string array (missing values stay null), or for a categorical
    column a :class:`CategoricalText`, for :func:`search_rows`."""
    series = pd.Series(values)
    if isinstance(series.dtype, pd.CategoricalDtype):
        categories = pd.Series(series.cat.categories)
        if categories.dtype.kind not in "OSU":
            categories = categories.astype(object)
        return CategoricalText(_arrow_strings(categories), series.cat.codes.to_numpy())
    return _arrow_strings(series)


def search_rows(values: Any, needle: str, mode: str = "substring") -> np.ndarray:
    """Row ids whose value matches ``needle``.

    Parameters
    ----------
    values : pyarrow string array or CategoricalText
        From :func:`text_array`.
    needle : str
        The text (substring, exact) or the RE2 pattern (regex); at most
        :data:`MAX_SEARCH_CHARS` characters.
    mode : {"substring", "exact", "regex"}, default="substring"
        ``substring`` and ``regex`` ignore case; ``exact`` is the whole value, case
        and all.

    Returns
    -------
    ndarray of int64

    Raises
    ------
    ValueError
        An unknown mode, an empty or too long needle, or a pattern RE2 cannot compile.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if mode not in MODES:
        raise ValueError(f"search mode must be one of {list(MODES)}; got {mode!r}")
    if not needle:
        raise ValueError("the search text is empty")
    if len(needle) > MAX_SEARCH_CHARS:
        raise ValueError(f"the search text is {len(needle):,} characters; the limit is {MAX_SEARCH_CHARS}")
    table = values.categories if isinstance(values, CategoricalText) else values
    try:
        if mode == "substring":
            hit = pc.match_substring(table, needle, ignore_case=True)
        elif mode == "exact":
            hit = pc.equal(table, pa.scalar(needle, type=table.type))
        else:
            hit = pc.match_substring_regex(table, needle, ignore_case=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"cannot search for {needle[:40]!r} ({mode}): {reason}") from None
    matched = hit.fill_null(False).to_numpy(zero_copy_only=False)
    if isinstance(values, CategoricalText):
        # one flag per category, and False at the end for the missing rows' code -1
        flags = np.append(matched, False)
        return np.flatnonzero(flags[values.codes]).astype(np.int64)
    return np.flatnonzero(matched).astype(np.int64)


def _sample(series: pd.Series) -> pd.Series:
    if len(series) <= SAMPLE_ROWS:
        return series
    return series.sample(SAMPLE_ROWS, random_state=0)


def _is_string(series: pd.Series) -> bool:
    return series.dtype.kind in "OSU" or isinstance(series.dtype, (pd.StringDtype, pd.CategoricalDtype))


def _looks_like_id(name: str, sample: pd.Series) -> bool:
    """An identifier: named like one, or one token per row, every row different."""
    lowered = name.lower()
    if lowered in ("id", "key", "uuid", "index") or lowered.endswith(("_id", "-id", " id")):
        return True
    text = sample.dropna().astype(str)
    return bool(len(text)) and text.is_unique and not text.str.contains(r"\s", regex=True).any()


def default_text_column(meta: pd.DataFrame | None) -> str | None:
    """The column search matches by default: the first text column that is not an id.

    Free text (values holding spaces) comes first, then other string columns that are
    not identifiers, then identifiers; None without a string column.
    """
    if meta is None:
        return None
    ranked: list[tuple[int, int, str]] = []
    for position, column in enumerate(meta.columns):
        series = meta[column]
        if not _is_string(series):
            continue
        sample = _sample(series).dropna().astype(str)
        words = bool(len(sample)) and sample.str.contains(r"\s", regex=True).mean() > 0.5
        rank = 0 if words and not _looks_like_id(str(column), sample) else (
            2 if _looks_like_id(str(column), sample) else 1)
        ranked.append((rank, position, str(column)))
    return min(ranked)[2] if ranked else None


def default_color_column(meta: pd.DataFrame | None, exclude: tuple[str | None, ...] = ()) -> str | None:
    """The first category column (strings, categories, integers or booleans) with between
    2 and :data:`MAX_DEFAULT_CATEGORIES` distinct values; None if none. Identifiers and
    free text have far more values, so they never qualify."""
    if meta is None:
        return None
    for column in meta.columns:
        if column in exclude:
            continue
        series = meta[column]
        if not (_is_string(series) or series.dtype.kind in "biu"):
            continue
        # a sample first: counting the distinct values of 10M free-text rows takes seconds
        if _sample(series).nunique(dropna=True) > MAX_DEFAULT_CATEGORIES:
            continue
        if 2 <= series.nunique(dropna=True) <= MAX_DEFAULT_CATEGORIES:
            return str(column)
    return None
