"""Cluster labels for a map: find the regions of a 2-D layout and name them from a column.

Regions are density islands of the layout, found on a grid (the same binning a
datashader aggregate does): the point counts are smoothed, thresholded and split into
connected components. Coarser smoothing gives a few large regions for the full view,
finer smoothing the sub-regions shown as one zooms in. This costs O(n) for the binning
and O(grid^2) for the rest, whatever the number of points (1M points: well under a
second), where a point clustering (HDBSCAN) of a million points takes minutes.

Each region is named from a metadata column: a category column by its dominant value
(two values where none holds 40 %), a text column by its most distinctive terms,
scored by class-based TF-IDF (the texts of a region form one document; a term scores
by its frequency in the region times the log of how rare it is across regions).

Labels never overlap at the zoom they are shown at: each level keeps, largest region
first, only the labels whose text box (estimated from a character size in pixels)
misses those already kept, at that level's scale (the full view doubled per level).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LabelSet", "MapLabel", "add_bokeh_labels", "find_labels"]

#: Pixels of one character and of a line of label text, for the overlap test.
CHAR_PX = 7.0
LINE_PX = 16.0
#: A region needs this share of all points (coarsest level; halved per finer level).
MIN_SHARE = 0.01
#: Most regions at the full view: the coarsest smoothing is the narrowest that leaves
#: at most this many (neighbouring islands merge until they do).
MAX_COARSE = 12
#: Rows whose texts are read to name regions (seeded sample above it).
MAX_TEXT_ROWS = 200_000
#: Above this share of distinct values a text/object column is treated as free text.
TEXT_UNIQUE_SHARE = 0.2


@dataclass(frozen=True)
class MapLabel:
    """One label: its text, where it sits, and at which zoom level it is shown."""

    text: str
    x: float
    y: float
    level: int
    size: int
    """Points in the region."""
    share: float
    """Share of the region's points holding its category (NaN for text)."""


@dataclass
class LabelSet:
    """The labels of a map at every zoom level.

    Attributes
    ----------
    labels : list of MapLabel
    column : str
    kind : {"category", "text"}
    levels : int
    width : int
        Pixels of the full view the overlap test assumed.
    x_range, y_range : tuple of float
        The full view.
    """

    labels: list[MapLabel]
    column: str
    kind: str
    levels: int
    width: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    meta: dict[str, Any] = field(default_factory=dict)

    def at_level(self, level: int) -> list[MapLabel]:
        """The labels shown at zoom ``level`` (0 = full view; clipped to the finest)."""
        level = min(max(int(level), 0), self.levels - 1)
        return [lab for lab in self.labels if lab.level == level]

    def for_view(self, x_range: tuple[float, float], y_range: tuple[float, float]) -> list[MapLabel]:
        """The labels of the level matching a view's zoom, inside the view."""
        full = self.x_range[1] - self.x_range[0]
        span = max(x_range[1] - x_range[0], 1e-300)
        level = int(np.floor(np.log2(max(full / span, 1.0)) + 1e-9))
        return [lab for lab in self.at_level(level)
                if x_range[0] <= lab.x <= x_range[1] and y_range[0] <= lab.y <= y_range[1]]

    def box(self, label: MapLabel, level: int | None = None) -> tuple[float, float, float, float]:
        """The label's text box (x0, y0, x1, y1) in data units at zoom ``level``."""
        level = label.level if level is None else level
        scale_x = (self.x_range[1] - self.x_range[0]) / self.width / 2.0**level
        height = self.width * (self.y_range[1] - self.y_range[0]) / max(self.x_range[1] - self.x_range[0], 1e-300)
        scale_y = (self.y_range[1] - self.y_range[0]) / max(height, 1.0) / 2.0**level
        half_w, half_h = (CHAR_PX * len(label.text) + 6) / 2 * scale_x, LINE_PX / 2 * scale_y
        return label.x - half_w, label.y - half_h, label.x + half_w, label.y + half_h


def _robust_range(values: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(values, [0.1, 99.9]) if values.size > 1000 else (values.min(), values.max())
    pad = (hi - lo) * 0.1 or 1.0
    return float(lo - pad), float(hi + pad)


def _kind_of(values: Any) -> str:
    import pandas as pd

    series = pd.Series(values)
    if isinstance(series.dtype, pd.CategoricalDtype) or series.dtype.kind in "biu":
        return "category"
    if series.dtype.kind == "f":
        raise ValueError("labels need a category or text column; this one holds numbers")
    unique = series.nunique(dropna=True)
    return "category" if unique <= max(50, TEXT_UNIQUE_SHARE * len(series)) else "text"


def _regions(cells: np.ndarray, valid: np.ndarray, grid: int, sigma: float, quantile: float,
             min_points: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Density islands on the grid: (label per point (-1 none), sizes, peak cell per region)."""
    from scipy import ndimage

    counts = np.bincount(cells[valid], minlength=grid * grid).reshape(grid, grid).astype(np.float64)
    # Zero outside the grid: a reflecting edge would pile density up at the border and
    # pull the peaks (where labels sit) out of their regions.
    density = ndimage.gaussian_filter(counts, sigma, mode="constant")
    occupied = density[counts > 0]
    threshold = np.quantile(occupied, quantile) if occupied.size else 0.0
    components, found = ndimage.label(density > threshold)
    point_region = np.full(cells.shape[0], -1, dtype=np.int64)
    point_region[valid] = components.ravel()[cells[valid]] - 1
    sizes = np.bincount(point_region[point_region >= 0], minlength=found)
    keep = np.flatnonzero(sizes >= min_points)
    remap = np.full(found + 1, -1, dtype=np.int64)
    remap[keep] = np.arange(keep.size)
    point_region = np.where(point_region >= 0, remap[np.maximum(point_region, 0)], -1)
    peaks = ndimage.maximum_position(density, components, index=keep + 1) if keep.size else []
    return point_region, sizes[keep], [(int(r), int(c)) for r, c in peaks]


def _category_names(codes: np.ndarray, uniques: Any, region: np.ndarray,
                    n_regions: int) -> list[tuple[str, float, int]]:
    """Each region's dominant category (two where none holds 40 %), its share and code."""
    import scipy.sparse as sp

    ok = (region >= 0) & (codes >= 0)
    table = sp.csr_matrix((np.ones(int(ok.sum()), dtype=np.int64), (region[ok], codes[ok])),
                          shape=(n_regions, len(uniques)))
    names = []
    for r in range(n_regions):
        row = table.getrow(r)
        if row.nnz == 0:
            names.append(("", 0.0, -1))
            continue
        order = np.argsort(-row.data, kind="stable")
        top = row.indices[order]
        share = float(row.data[order[0]] / row.data.sum())
        text = str(uniques[top[0]])
        if share < 0.4 and top.size > 1:
            text = f"{text}, {uniques[top[1]]}"
        names.append((text, share, int(top[0])))
    return names


def _term_counts(values: Any, valid: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Any, Any]:
    """(sampled rows, their term counts, the vocabulary), made once for every level.

    Vectorising is most of a text column's labelling time; each level re-used to do it
    on its own sample (4 levels of 1M texts: 4 passes of CountVectorizer).
    """
    from sklearn.feature_extraction.text import CountVectorizer

    rows = np.flatnonzero(valid)
    if rows.size > MAX_TEXT_ROWS:
        rows = np.sort(rng.choice(rows, MAX_TEXT_ROWS, replace=False))
    texts = np.asarray(values, dtype=object)[rows]
    texts = np.array(["" if t is None or t != t else str(t) for t in texts], dtype=object)
    try:
        vectorizer = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[^\W\d_]{2,}\b",
                                     max_features=50_000)
        counts = vectorizer.fit_transform(texts)
    except ValueError:  # no words at all (empty vocabulary)
        return rows, None, None
    return rows, counts, vectorizer.get_feature_names_out()


def _text_names(terms: tuple[np.ndarray, Any, Any], region: np.ndarray, n_regions: int, *,
                top: int = 2) -> list[tuple[str, float, int]]:
    import scipy.sparse as sp

    rows, counts, vocab = terms
    if counts is None:
        return [("", float("nan"), -1)] * n_regions
    inside = region[rows] >= 0
    member = sp.csr_matrix((np.ones(int(inside.sum())), (region[rows][inside], np.flatnonzero(inside))),
                           shape=(n_regions, rows.size))
    per_region = (member @ counts).toarray()  # (regions, terms): a region is one document
    words = per_region.sum(axis=1, keepdims=True)
    tf = per_region / np.maximum(words, 1)
    # Rare across regions scores high: log(1 + mean words per region / term total).
    idf = np.log1p(words.mean() / np.maximum(per_region.sum(axis=0), 1))
    score = tf * idf
    names = []
    for r in range(n_regions):
        best = [i for i in np.argsort(-score[r])[:top] if score[r, i] > 0]
        names.append((" · ".join(vocab[i] for i in best), float("nan"), -1))
    return names


def find_labels(
    x: Any,
    y: Any,
    values: Any,
    *,
    column: str = "label",
    kind: str = "auto",
    levels: int = 3,
    grid: int = 256,
    width: int = 800,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    random_state: int | None = 0,
) -> LabelSet:
    """Find the regions of a 2-D layout at several zoom levels and name them.

    Parameters
    ----------
    x, y : arrays of shape (n,)
        The layout.
    values : array-like of shape (n,)
        The column the names come from: categories or free text.
    column : str, default="label"
        Its name (kept for the legend and the page).
    kind : {"auto", "category", "text"}, default="auto"
        How to name a region: its dominant category, or its most distinctive terms.
        ``auto`` takes a category dtype, integers or a column of few distinct values
        as categories, other strings as text.
    levels : int, default=3
        Zoom levels: 0 is the full view with a few coarse regions; each next level
        (the view zoomed twice) splits them finer.
    grid : int, default=256
        Cells per side of the density grid.
    width : int, default=800
        Pixels of the full view, for the overlap test of the label boxes.
    x_range, y_range : tuple of float, optional
        The full view (default: the points' range without the outer 0.1 % of each
        coordinate, padded by 10 %). An image passes its own, so the boxes tested are
        the boxes drawn.
    random_state : int or None, default=0
        Seed of the sample of texts read for naming.

    Returns
    -------
    LabelSet

    Raises
    ------
    ValueError
        Lengths differ, no finite point, a numeric column, or a bad parameter.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = x.shape[0]
    if y.shape != (n,) or len(values) != n:
        raise ValueError(f"x, y and the label column must have the same length; got {n}, {y.shape[0]}, {len(values)}")
    if not isinstance(levels, (int, np.integer)) or not 1 <= levels <= 8:
        raise ValueError(f"levels must be an integer in [1, 8]; got {levels!r}")
    if not isinstance(grid, (int, np.integer)) or not 16 <= grid <= 4096:
        raise ValueError(f"grid must be an integer in [16, 4096]; got {grid!r}")
    if kind not in ("auto", "category", "text"):
        raise ValueError(f"kind must be 'auto', 'category' or 'text'; got {kind!r}")
    finite = np.isfinite(x) & np.isfinite(y)
    if not finite.any():
        raise ValueError("the layout has no finite point to label")
    kind = _kind_of(values) if kind == "auto" else kind
    if kind == "category":
        import pandas as pd

        # Integer codes once: each level then counts (region, code) pairs, no strings.
        codes, uniques = pd.factorize(pd.Series(values), use_na_sentinel=True)
    x_range = _robust_range(x[finite]) if x_range is None else (float(x_range[0]), float(x_range[1]))
    y_range = _robust_range(y[finite]) if y_range is None else (float(y_range[0]), float(y_range[1]))
    if not (x_range[1] > x_range[0] and y_range[1] > y_range[0]):
        raise ValueError(f"the view must have a positive extent; got x {x_range}, y {y_range}")
    col = np.floor((x - x_range[0]) / (x_range[1] - x_range[0]) * grid)
    row = np.floor((y - y_range[0]) / (y_range[1] - y_range[0]) * grid)
    valid = finite & (col >= 0) & (col < grid) & (row >= 0) & (row < grid)
    cells = np.zeros(n, dtype=np.int64)
    cells[valid] = row[valid].astype(np.int64) * grid + col[valid].astype(np.int64)
    rng = np.random.default_rng(random_state)
    terms = _term_counts(values, valid, rng) if kind == "text" else None
    result = LabelSet([], column, kind, int(levels), int(width), x_range, y_range)
    # The full view's smoothing: the narrowest (from 1/64 of the grid, doubling) that
    # leaves at most MAX_COARSE regions; each finer level halves it and raises the
    # density threshold, splitting regions as the view zooms in.
    coarse = grid / 64
    while coarse < grid / 4:
        _, sizes, _ = _regions(cells, valid, grid, coarse, 0.15, max(5, int(MIN_SHARE * n)))
        if sizes.size <= MAX_COARSE:
            break
        coarse *= 2
    for level in range(levels):
        sigma = max(coarse / 2.0**level, 0.75)
        quantile = 0.15 + 0.35 * level / max(levels - 1, 1)
        min_points = max(5, int(MIN_SHARE * n / 2.0**level))
        region, sizes, peaks = _regions(cells, valid, grid, sigma, quantile, min_points)
        if not sizes.size:
            continue
        if kind == "category":
            names = _category_names(codes, uniques, region, sizes.size)
        else:
            names = _text_names(terms, region, sizes.size)
        # A label sits at the median of the points it names (the region's points of its
        # dominant category): on them, where a density peak of a merged region may not be.
        order = np.argsort(region, kind="stable")
        starts = np.searchsorted(region[order], np.arange(sizes.size + 1))
        candidates = []
        for r in np.argsort(-sizes, kind="stable"):
            text, share, top = names[r]
            if not text:
                continue
            members = order[starts[r]:starts[r + 1]]
            if top >= 0:
                members = members[codes[members] == top]
            if members.size:
                lx, ly = float(np.median(x[members])), float(np.median(y[members]))
            else:
                prow, pcol = peaks[r]
                lx = x_range[0] + (pcol + 0.5) / grid * (x_range[1] - x_range[0])
                ly = y_range[0] + (prow + 0.5) / grid * (y_range[1] - y_range[0])
            label = MapLabel(text, lx, ly, level, int(sizes[r]), share)
            # A label by the edge of the full view is moved inwards until its box fits:
            # centred on its points there, half of its text was cut off by the frame.
            bx0, by0, bx1, by1 = result.box(label)
            lx += max(x_range[0] - bx0, 0.0) - max(bx1 - x_range[1], 0.0)
            ly += max(y_range[0] - by0, 0.0) - max(by1 - y_range[1], 0.0)
            candidates.append(MapLabel(text, lx, ly, level, int(sizes[r]), share))
        kept: list[tuple[float, float, float, float]] = []
        for label in candidates:
            box = result.box(label)
            if any(box[0] < k[2] and k[0] < box[2] and box[1] < k[3] and k[1] < box[3] for k in kept):
                continue
            kept.append(box)
            result.labels.append(label)
    return result


#: Picks the labels of the zoom level in view, in the browser (no server): the level is
#: the number of halvings of the full view's width, as :meth:`LabelSet.for_view` counts.
_PICK_LEVEL_JS = """
const level = Math.min(levels - 1, Math.max(0, Math.floor(Math.log2(full / (xr.end - xr.start)) + 1e-9)));
const keep = all.level.map((l) => l === level);
const pick = (name) => all[name].filter((_, i) => keep[i]);
shown.data = {x: pick("x"), y: pick("y"), text: pick("text"), level: pick("level")};
"""


def add_bokeh_labels(fig: Any, found: LabelSet, transform: Any = None) -> Any:
    """Draw ``found`` on a Bokeh figure, the level of the zoom in view, switched in the page.

    Used by the static outputs (the HTML export, the tile site): the figure's x range
    picks the level in JavaScript, so the labels follow the zoom without a server.

    Parameters
    ----------
    fig : bokeh.plotting.figure
    found : LabelSet
    transform : callable, optional
        ``(x, y) -> (x', y')`` from the layout's coordinates to the figure's (the tile
        site's web-mercator square); identity when None.

    Returns
    -------
    bokeh.models.ColumnDataSource or None
        The source of the labels shown (None when there are no labels).
    """
    from bokeh.models import ColumnDataSource, CustomJS

    if not found.labels:
        return None
    lx = np.array([lab.x for lab in found.labels])
    ly = np.array([lab.y for lab in found.labels])
    ends = np.array(found.x_range, dtype=np.float64)
    if transform is not None:
        lx, ly = transform(lx, ly)
        ends = transform(ends, np.array(found.y_range, dtype=np.float64))[0]
    everything = {"x": np.asarray(lx).tolist(), "y": np.asarray(ly).tolist(),
                  "text": [lab.text for lab in found.labels], "level": [lab.level for lab in found.labels]}
    shown = ColumnDataSource({k: [v for v, lev in zip(vals, everything["level"], strict=True) if lev == 0]
                              for k, vals in everything.items()})
    # Bokeh's text glyph writes its text as text (canvas), never as markup.
    fig.text("x", "y", text="text", source=shown, text_align="center", text_baseline="middle",
             text_font_size="13px", text_color="black", background_fill_color="white",
             background_fill_alpha=0.7)
    pick = CustomJS(args={"shown": shown, "xr": fig.x_range, "levels": found.levels, "all": everything,
                          "full": float(ends[1] - ends[0])}, code=_PICK_LEVEL_JS)
    fig.x_range.js_on_change("end", pick)
    return shown
