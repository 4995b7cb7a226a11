"""Cluster labels: regions per zoom level, their names, and no overlaps."""

from __future__ import annotations

import numpy as np
import pytest

from embedscope.viz.labels import find_labels

# Sixteen blobs in four groups, each blob well apart from its neighbours: the full view
# names every blob by itself, never a group by two of its names.
GROUPS = {"animals": ((0, 0), ["cat", "dog", "horse", "cow"]),
          "vehicles": ((24, 0), ["car", "bus", "train", "bike"]),
          "food": ((0, 24), ["bread", "apple", "cheese", "rice"]),
          "tools": ((24, 24), ["saw", "drill", "hammer", "axe"])}


@pytest.fixture(scope="module")
def layout():
    """Three groups of three blobs each; a category and a text column per point."""
    rng = np.random.default_rng(0)
    xs, ys, cats, texts = [], [], [], []
    for group, ((cx, cy), names) in GROUPS.items():
        for j, name in enumerate(names):
            angle = 2 * np.pi * j / 4
            m = 1500
            xs.append(rng.normal(cx + 4 * np.cos(angle), 0.8, m))
            ys.append(rng.normal(cy + 4 * np.sin(angle), 0.8, m))
            cats += [name] * m
            texts += [f"a {name} of the {group} {rng.choice(['thing', 'stuff', 'item'])}" for _ in range(m)]
    # A little uniform noise everywhere: not a region, never a label.
    noise = 300
    xs.append(rng.uniform(-10, 34, noise))
    ys.append(rng.uniform(-10, 34, noise))
    cats += ["noise"] * noise
    texts += ["zzz"] * noise
    return np.concatenate(xs), np.concatenate(ys), np.array(cats), np.array(texts, dtype=object)


def _group_of(name: str) -> str:
    return next(g for g, (_, names) in GROUPS.items() if name in names)


def test_coarse_regions_at_full_view_and_fine_ones_zoomed(layout):
    x, y, cats, _ = layout
    labels = find_labels(x, y, cats, column="word", levels=3)
    assert labels.kind == "category" and labels.column == "word"
    coarse = labels.at_level(0)
    assert len(coarse) == 16
    # Each coarse label is one blob's own name and sits on that blob.
    for lab in coarse:
        (cx, cy), names = GROUPS[_group_of(lab.text)]
        angle = 2 * np.pi * names.index(lab.text) / 4
        assert np.hypot(lab.x - cx - 4 * np.cos(angle), lab.y - cy - 4 * np.sin(angle)) < 1
    # Zoomed in (level 2: a quarter of the width), every blob is its own region.
    fine = labels.at_level(2)
    assert sorted(lab.text for lab in fine) == sorted(n for _, names in GROUPS.values() for n in names)
    assert all(lab.share > 0.9 for lab in fine)
    assert len(coarse) <= len(labels.at_level(1)) <= len(fine)
    assert "noise" not in {lab.text for lab in labels.labels}


def test_labels_never_overlap_at_their_level(layout):
    x, y, cats, _ = layout
    # A narrow view makes boxes wide in data units: some labels must then be dropped.
    for width in (800, 40):
        labels = find_labels(x, y, cats, levels=3, width=width)
        for level in range(3):
            boxes = [labels.box(lab) for lab in labels.at_level(level)]
            for i, a in enumerate(boxes):
                for b in boxes[i + 1:]:
                    assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])
    assert len(labels.at_level(2)) < 16  # the overlap test did drop labels at width 40


def test_text_columns_are_named_by_distinctive_terms(layout):
    x, y, _, texts = layout
    labels = find_labels(x, y, texts, levels=2, kind="text")
    coarse = {frozenset(lab.text.split(" · ")) for lab in labels.at_level(0)}
    # The group word is what sets a coarse region apart from the others; the filler
    # words shared by all ("thing", "of", "the") never win.
    assert {next(iter(s & set(GROUPS))) for s in coarse if s & set(GROUPS)} == set(GROUPS)
    for lab in labels.labels:
        assert not {"thing", "stuff", "item", "the", "of"} & set(lab.text.split(" · "))
    fine = {lab.text.split(" · ")[0] for lab in labels.at_level(1)}
    assert fine <= {n for _, names in GROUPS.values() for n in names} | set(GROUPS)


def test_auto_kind():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2, 3000))
    free = np.array([" ".join(rng.choice(list("abcdefgh"), 6)) + f" {i}" for i in range(3000)], dtype=object)
    assert find_labels(x, y, free).kind == "text"
    assert find_labels(x, y, rng.integers(0, 5, 3000)).kind == "category"
    assert find_labels(x, y, rng.choice(["a", "b"], 3000)).kind == "category"


def test_view_picks_the_level_of_its_zoom(layout):
    x, y, cats, _ = layout
    labels = find_labels(x, y, cats, levels=3)
    assert {lab.level for lab in labels.for_view(labels.x_range, labels.y_range)} == {0}
    span = (labels.x_range[1] - labels.x_range[0]) / 4
    view = labels.for_view((-8, -8 + span), (-8, -8 + span))
    assert view and {lab.level for lab in view} == {2}
    assert all(-8 <= lab.x <= -8 + span for lab in view)


def test_bad_input_is_one_line(layout):
    x, y, cats, _ = layout
    with pytest.raises(ValueError, match="same length"):
        find_labels(x, y[:10], cats)
    with pytest.raises(ValueError, match="holds numbers"):
        find_labels(x, y, np.linspace(0, 1, x.size))
    with pytest.raises(ValueError, match="levels"):
        find_labels(x, y, cats, levels=0)
    with pytest.raises(ValueError, match="no finite point"):
        find_labels(np.full(5, np.nan), np.zeros(5), np.array(list("abcde")))


def test_png_export_writes_the_labels(layout, tmp_path):
    import pandas as pd
    from PIL import Image

    from embedscope.cli import main

    x, y, cats, _ = layout
    groups = np.array([_group_of(c) if c != "noise" else "noise" for c in cats])
    frame = pd.DataFrame({"x": x, "y": y, "group": groups})
    frame.to_parquet(tmp_path / "coords.parquet")
    plain, labelled = tmp_path / "plain.png", tmp_path / "labelled.png"
    common = ["plot", str(tmp_path / "coords.parquet"), "--width", "400", "--height", "300", "--quiet"]
    assert main([*common, "--out", str(plain)]) == 0
    assert main([*common, "--out", str(labelled), "--labels-from", "group"]) == 0
    a = np.asarray(Image.open(plain).convert("RGB")).astype(int)
    b = np.asarray(Image.open(labelled).convert("RGB")).astype(int)
    # Text is drawn black with a white halo: new near-black pixels appear, over the
    # groups, never in the legend column on the right.
    new_dark = (b.sum(axis=2) < 150) & (a.sum(axis=2) >= 150)
    assert new_dark.sum() > 50
    assert not new_dark[:, 400:].any()
    assert main([*common, "--out", str(tmp_path / "bad.png"), "--labels-from", "nope"]) == 2


def test_labels_by_the_edge_are_moved_inside_the_view():
    rng = np.random.default_rng(1)
    # a long name on a blob at the left edge of the view
    x = np.concatenate([rng.normal(0.3, 0.2, 3000), rng.normal(10, 0.5, 3000)])
    y = np.concatenate([rng.normal(5, 0.5, 3000), rng.normal(5, 0.5, 3000)])
    names = np.array(["a rather long category name"] * 3000 + ["b"] * 3000)
    found = find_labels(x, y, names, levels=1, width=400, x_range=(0.0, 11.0), y_range=(0.0, 10.0))
    (edge,) = [lab for lab in found.labels if lab.text.startswith("a rather")]
    x0, _, x1, _ = found.box(edge)
    assert x0 >= 0.0 and x1 <= 11.0
    assert edge.x > 1.0  # its points' median (0.3) would have put half the text outside


@pytest.fixture(scope="module")
def fifty_blobs():
    """50 well-separated round blobs (centres at least 9 sd apart), one topic each (#19)."""
    rng = np.random.default_rng(3)
    centres: list[np.ndarray] = []
    while len(centres) < 50:
        c = rng.uniform(-45, 45, 2)
        if all(np.hypot(*(c - d)) > 9 for d in centres):
            centres.append(c)
    topic = np.repeat(np.arange(50), 200)
    xy = np.array(centres)[topic] + rng.normal(size=(topic.size, 2))
    names = np.array([f"topic {i:02d}" for i in range(50)], dtype=object)
    found = find_labels(xy[:, 0], xy[:, 1], names[topic], levels=4, width=900)
    return np.array(centres), names, found


def _blob_of(centres: np.ndarray, lab) -> int:
    return int(np.argmin(np.hypot(centres[:, 0] - lab.x, centres[:, 1] - lab.y)))


def test_full_view_names_each_of_fifty_blobs_by_itself(fifty_blobs):
    centres, names, found = fifty_blobs
    full = found.at_level(0)
    # The old merge to at most 12 regions drew 4 labels here, one of them "topic 00, topic 02".
    assert len(full) >= 40
    assert len({lab.text for lab in full}) == len(full)
    for lab in full:
        blob = _blob_of(centres, lab)
        assert lab.text == names[blob], lab
        assert np.hypot(*(centres[blob] - (lab.x, lab.y))) < 1.0, lab
        assert lab.share > 0.95


def test_fifty_blobs_labels_never_overlap_and_never_repeat_inside_a_blob(fifty_blobs):
    centres, names, found = fifty_blobs
    before = {(lab.text, lab.x, lab.y) for lab in found.at_level(0)}
    for level in range(found.levels):
        labels = found.at_level(level)
        boxes = [found.box(lab) for lab in labels]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), level
        # one name per blob: a finer level does not split a round blob into pieces that
        # repeat its name
        per_blob = np.bincount([_blob_of(centres, lab) for lab in labels], minlength=50)
        assert per_blob.max() <= 1, (level, per_blob)
        assert all(lab.text == names[_blob_of(centres, lab)] for lab in labels)
        # what the level above showed is still shown, where it was
        now = {(lab.text, lab.x, lab.y) for lab in labels}
        assert before <= now, level
        before = now
    assert len(found.at_level(found.levels - 1)) == 50  # zoomed in, every blob is named


def test_touching_clusters_keep_their_names_and_mixed_ones_share_a_label():
    rng = np.random.default_rng(4)
    m = 3000
    # "left" and "right" touch (3 sd apart: one density island at the full view);
    # "red" and "blue" are one blob, their points mixed; "far" stands alone.
    x = np.concatenate([rng.normal(0, 1, m), rng.normal(3, 1, m), rng.normal(20, 1, 2 * m), rng.normal(10, 1, m)])
    y = np.concatenate([rng.normal(0, 1, m), rng.normal(0, 1, m), rng.normal(0, 1, 2 * m), rng.normal(15, 1, m)])
    names = np.array(["left"] * m + ["right"] * m + list(rng.choice(["red", "blue"], 2 * m)) + ["far"] * m)
    found = find_labels(x, y, names, levels=1, width=900)
    texts = sorted(lab.text for lab in found.at_level(0))
    mixed = [t for t in texts if "," in t]
    assert len(mixed) == 1 and set(mixed[0].split(", ")) == {"red", "blue"}, texts
    assert sorted(t for t in texts if "," not in t) == ["far", "left", "right"], texts


def test_a_name_is_not_repeated_within_a_view_at_any_level():
    rng = np.random.default_rng(5)
    m = 600
    # a sparse uniform strip (density islands split it) and two round blobs
    x = np.concatenate([rng.uniform(0, 12, m), rng.normal(3, 0.6, m), rng.normal(9, 0.6, m)])
    y = np.concatenate([rng.normal(0, 0.25, m), rng.normal(6, 0.6, m), rng.normal(-6, 0.6, m)])
    names = np.array(["long"] * m + ["up"] * m + ["down"] * m)
    found = find_labels(x, y, names, levels=4, width=600)
    assert sorted(lab.text for lab in found.at_level(0)) == ["down", "long", "up"]
    full = found.x_range[1] - found.x_range[0]
    for level in range(4):
        labels = found.at_level(level)
        # the blobs keep one name each; the strip's pieces never share a view's width
        # (the old per-level islands named "up" 8 times at level 3)
        assert [lab.text for lab in labels].count("up") == 1 and [lab.text for lab in labels].count("down") == 1
        strip = [lab for lab in labels if lab.text == "long"]
        assert all(np.hypot(a.x - b.x, a.y - b.y) >= full / 2**level
                   for i, a in enumerate(strip) for b in strip[i + 1:]), (level, strip)
