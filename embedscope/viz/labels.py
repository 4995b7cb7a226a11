"""Cluster labels for a map: find the regions of a 2-D layout and name them from a column.

Regions are density islands of the layout, found on a grid (the same binning a
datashader aggregate does): the point counts are smoothed, thresholded and split into
connected components, with narrower smoothing and a higher threshold at each finer
zoom level. This costs O(n log n) for the binning and grouping and O(grid^2) for the
rest (1M points: a few seconds), where a point clustering (HDBSCAN) of a million points
takes minutes.

A category column gives one candidate label per category and island: the island's
points of that category, where that category forms a patch of its own (most of its
points lie in cells of a coarse grid where it is the most frequent category). So
clusters that touch, or that one smoothing joins, keep their own names; two names share
one label ("a, b") only where their points are mixed in the same cells. A text column
gives one candidate per island, named by its most distinctive terms, scored by
class-based TF-IDF (the texts of an island form one document; a term scores by its
frequency in the island times the log of how rare it is across islands).

Each level keeps the labels of the level above (a label shown stays shown as one zooms
in), then adds candidates, largest first, whose text box (estimated from a character
size in pixels, at that level's scale: the full view doubled per level) misses those
already kept. A candidate is not added where its name is already given to the same
place: most of its points named by a label of the same text, or a label of the same
text already kept in the same island of the level above. So labels never overlap at the
zoom they are shown at, and a finer level adds names for the parts that differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LabelSet", "MapLabel", "add_bokeh_labels", "find_labels"]

#: Pixels of one character and of a line of label text, for the overlap test.
CHAR_PX = 7.0
LINE_PX = 16.0
#: A label needs this share of all points at the full view (halved per finer level):
#: below it a patch is noise at that zoom. 0.5 % lets 200 equal clusters all be named.
MIN_SHARE = 0.005
#: Smoothing of the full view's density, in grid cells per 256 (halved per level): wide
#: enough that a cluster is one island, narrow enough that separate ones are not.
COARSE_SIGMA = 4.0
#: ... and at least this many times the points' spacing were they spread over the whole
#: grid (grid / sqrt(n)): a few thousand points leave gaps of several cells inside one
#: cluster, which split it (the digits' "5" was named twice at 4 cells).
SPARSE_SIGMA = 1.5
#: Cells per side of the grid a category's patch is found on (grid / PATCH_DIVISOR):
#: coarse enough that a cell holds several points, so "most frequent here" means something.
PATCH_DIVISOR = 4
#: A name is not repeated closer than this share of the view's width at its level, so one
#: view rarely shows a name twice: two labels of one name on one screen read as one
#: cluster named twice (the digits' "5", one sparse elongated cluster in two islands,
#: showed two "5" a fifth of a screen apart; a uniform strip, two "long" at 0.8 of one).
REPEAT_SPAN = 1.0
#: A category names a patch when most of its points (this share) lie in cells it leads.
MIN_OWN_SHARE = 0.5
#: Two categories share a label ("a, b") when, in the cells the first leads, the second
#: has at least this fraction of the first's points: they are mixed, one region.
MIXED_RATIO = 0.6
#: Rows whose texts are read to name regions (seeded sample above it).
MAX_TEXT_ROWS = 200_000
#: Above this share of distinct values a text/object column is treated as free text.
TEXT_UNIQUE_SHARE = 0.2


@dataclass(frozen=True)
class MapLabel:
    """One label: its text, where it sits, and at which zoom level it is shown (a label
    shown at one level is repeated, same text and place, at each finer one)."""

    text: str
    x: float
    y: float
    level: int
    size: int
    """Points in the region."""
    share: float
    """Share of the points in the cells its category leads that hold that category: how
    pure its patch is (NaN for text)."""


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
             min_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Density islands on the grid: (island per point (-1 none), sizes)."""
    from scipy import ndimage

    counts = np.bincount(cells[valid], minlength=grid * grid).reshape(grid, grid).astype(np.float64)
    # Zero outside the grid: a reflecting edge would pile density up at the border.
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
    return point_region, sizes[keep]


@dataclass
class _Patches:
    """Which category leads each cell of a coarse grid, made once for every level."""

    cell: np.ndarray
    """Coarse cell of each point (-1 outside the view)."""
    table: Any
    """Sparse (cells, categories) point counts."""
    own: np.ndarray
    """Per point: whether its category is the most frequent one in its cell."""
    totals: np.ndarray
    """Points per category in the view."""


def _patches(codes: np.ndarray, cells: np.ndarray, valid: np.ndarray, grid: int) -> _Patches:
    import scipy.sparse as sp

    side = max(grid // PATCH_DIVISOR, 4)
    pcell = np.full(cells.shape[0], -1, dtype=np.int64)
    pcell[valid] = (cells[valid] // grid * side // grid) * side + (cells[valid] % grid * side // grid)
    ok = (pcell >= 0) & (codes >= 0)
    n_codes = int(codes.max()) + 1 if codes.size and codes.max() >= 0 else 1
    table = sp.csr_matrix((np.ones(int(ok.sum()), dtype=np.int64), (pcell[ok], codes[ok])),
                          shape=(side * side, n_codes))
    table.sum_duplicates()
    leader = np.asarray(table.argmax(axis=1)).ravel()
    own = np.zeros(cells.shape[0], dtype=bool)
    own[ok] = leader[pcell[ok]] == codes[ok]
    return _Patches(pcell, table, own, np.asarray(table.sum(axis=0)).ravel())


def _category_candidates(codes: np.ndarray, uniques: Any, region: np.ndarray, patches: _Patches,
                         min_points: int) -> list[tuple[str, float, np.ndarray]]:
    """(name, share, member rows) per (island, category) patch of at least ``min_points``.

    A category scattered through an island (leading few of the cells its points are in)
    names nothing there; one mixed with another in the same cells shares its label.
    """
    rows = np.flatnonzero((region >= 0) & (codes >= 0))
    if not rows.size:
        return []
    n_codes = len(uniques)
    keys = region[rows] * n_codes + codes[rows]
    order = np.argsort(keys, kind="stable")
    rows, keys = rows[order], keys[order]
    unique_keys, starts, counts = np.unique(keys, return_index=True, return_counts=True)
    out = []
    for key, start, count in zip(unique_keys, starts, counts, strict=True):
        if count < min_points:
            continue
        members = rows[start:start + count]
        own = patches.own[members]
        if own.mean() < MIN_OWN_SHARE:
            continue
        code = int(key % n_codes)
        # The categories in the cells this one leads: a close second means the two are
        # mixed there (one region, both names); a far one is a neighbour's edge.
        in_cells = np.asarray(patches.table[np.unique(patches.cell[members[own]])].sum(axis=0)).ravel()
        total = in_cells.sum()
        mine = in_cells[code]
        in_cells[code] = -1
        second = int(np.argmax(in_cells)) if in_cells.size > 1 else -1
        text = str(uniques[code])
        if second >= 0 and in_cells[second] >= MIXED_RATIO * mine:
            # Each of the two may make this label; the larger category first names it
            # the same either way.
            first, other = (code, second) if patches.totals[code] >= patches.totals[second] else (second, code)
            text = f"{uniques[first]}, {uniques[other]}"
        out.append((text, float(mine / max(total, 1)), members))
    return out


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


class _Chosen:
    """The labels kept at one level, and what they already name."""

    def __init__(self, found: LabelSet, n: int, names: dict[str, int], parent_region: np.ndarray | None,
                 repeat_span: float) -> None:
        self.found, self.names, self.parent_region = found, names, parent_region
        self.repeat_span = repeat_span
        self.kept: list[tuple[MapLabel, np.ndarray]] = []
        self.boxes: list[tuple[float, float, float, float]] = []
        # Per point, the name (an id in ``names``) a kept label gives it; per name, the
        # islands of the level above it is given in.
        self.named = np.full(n, -1, dtype=np.int64)
        self.given_in: dict[str, set[int]] = {}

    def parent_of(self, members: np.ndarray) -> int:
        """The island of the level above holding most of ``members`` (-1: none)."""
        if self.parent_region is None:
            return -1
        above = self.parent_region[members]
        above = above[above >= 0]
        return int(np.bincount(above).argmax()) if above.size else -1

    def names_already(self, text: str, members: np.ndarray, x: float, y: float) -> bool:
        """Whether ``text`` is already given to these points, to their island above, or
        to a label near ``(x, y)`` (within ``repeat_span``)."""
        if text in self.names and np.mean(self.named[members] == self.names[text]) >= 0.5:
            return True
        if any(label.text == text and np.hypot(label.x - x, label.y - y) < self.repeat_span
               for label, _ in self.kept):
            return True
        return self.parent_of(members) in self.given_in.get(text, set()) - {-1}

    def overlaps(self, box: tuple[float, float, float, float]) -> bool:
        return any(box[0] < k[2] and k[0] < box[2] and box[1] < k[3] and k[1] < box[3] for k in self.boxes)

    def keep(self, label: MapLabel, members: np.ndarray) -> None:
        self.kept.append((label, members))
        self.boxes.append(self.found.box(label))
        self.named[members] = self.names.setdefault(label.text, len(self.names))
        self.given_in.setdefault(label.text, set()).add(self.parent_of(members))


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
        Zoom levels: 0 is the full view, one label per island or category patch that
        fits; each next level (the view zoomed twice) keeps those and names the finer
        parts that differ.
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
    patches = _patches(codes, cells, valid, grid) if kind == "category" else None
    sigma0 = max(COARSE_SIGMA * grid / 256, SPARSE_SIGMA * grid / np.sqrt(max(int(valid.sum()), 1)))
    names: dict[str, int] = {}
    # (label, member rows) shown at the level above; carried into each finer level.
    shown: list[tuple[MapLabel, np.ndarray]] = []
    parent_region: np.ndarray | None = None
    for level in range(levels):
        sigma = max(sigma0 / 2.0**level, 0.75)
        quantile = 0.15 + 0.35 * level / max(levels - 1, 1)
        min_points = max(5, int(MIN_SHARE * n / 2.0**level))
        region, sizes = _regions(cells, valid, grid, sigma, quantile, min_points)
        if patches is not None:
            found = _category_candidates(codes, uniques, region, patches, min_points) if sizes.size else []
        elif sizes.size:
            order = np.argsort(region, kind="stable")
            starts = np.searchsorted(region[order], np.arange(sizes.size + 1))
            found = [(text, share, order[starts[r]:starts[r + 1]])
                     for r, (text, share, _) in enumerate(_text_names(terms, region, sizes.size))]
        else:
            found = []
        found.sort(key=lambda item: -item[2].size)
        chosen = _Chosen(result, n, names, parent_region, REPEAT_SPAN * (x_range[1] - x_range[0]) / 2.0**level)
        # Boxes shrink by half per level around the same centres, so the labels of the
        # level above still miss each other here.
        for label, members in shown:
            chosen.keep(MapLabel(label.text, label.x, label.y, level, label.size, label.share), members)
        for text, share, members in found:
            if not text or not members.size:
                continue
            # A label sits at the median of the points it names: on them, where a
            # density peak of the island may not be.
            lx, ly = float(np.median(x[members])), float(np.median(y[members]))
            label = MapLabel(text, lx, ly, level, int(members.size), share)
            # A label by the edge of the full view is moved inwards until its box fits:
            # centred on its points there, half of its text was cut off by the frame.
            # (A hair more than half the box: x0 + half - half can round to just below x0.)
            bx0, by0, bx1, by1 = result.box(label)
            half_w, half_h = (bx1 - bx0) / 2 * (1 + 1e-9), (by1 - by0) / 2 * (1 + 1e-9)
            lx = min(max(lx, x_range[0] + half_w), x_range[1] - half_w)
            ly = min(max(ly, y_range[0] + half_h), y_range[1] - half_h)
            label = MapLabel(text, lx, ly, level, int(members.size), share)
            if not chosen.names_already(text, members, lx, ly) and not chosen.overlaps(result.box(label)):
                chosen.keep(label, members)
        result.labels.extend(label for label, _ in chosen.kept)
        shown, parent_region = chosen.kept, region
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
