"""The benchmark's outputs: results JSON with its manifest, a markdown table, a grid
of datashaded panels (one per run, the same colours everywhere) and an HTML report.

Panels are drawn by :func:`embedscope.viz.export.render_image` (datashader), so the
bench shades exactly as ``embedscope plot`` does. Every panel gets the same category
list, hence the same colour for the same label.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from embedscope.io.write import atomic_output

__all__ = ["markdown_table", "rebuild_report", "render_grid", "stage_table", "table_rows", "write_report"]

PANEL = 280  # pixels per side of one panel
TITLE = 34  # pixels of the caption strip above a panel
COLUMNS = [("dataset", "data"), ("method", "method"), ("who", "implementation"), ("status", "status"),
           ("compile_s", "compile s"), ("fit_s", "fit s"), ("vs_ours", "fit / ours"),
           ("peak_rss_mib", "peak RSS MiB"), ("peak_gpu_mib", "peak GPU MiB"),
           ("trustworthiness", "trust@15"), ("random_triplet_accuracy", "triplet acc"),
           ("knn_recall", "recall@15"), ("knn_accuracy", "kNN acc"), ("kl_divergence", "KL")]


def _who(run: dict[str, Any]) -> str:
    return f"embedscope[{run['backend']}]" if run["impl"] == "embedscope" else run["impl"]


def table_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per run, with MiB and the fit time as a ratio to ours on the CPU."""
    ours = {(r["dataset"], r["method"]): r["fit_s"] for r in runs
            if r["impl"] == "embedscope" and not r.get("gpu") and r.get("status") == "ok"}
    rows = []
    for run in runs:
        row = dict(run)
        row["who"] = _who(run)
        status = run.get("status", "?")
        row["status"] = status if status == "ok" else f"{status}: {run.get('error', '')}".rstrip(": ")
        for key in ("peak_rss", "peak_gpu"):
            value = run.get(f"{key}_bytes")
            row[f"{key}_mib"] = None if value is None else value / 2**20
        base = ours.get((run["dataset"], run["method"]))
        if run.get("status") == "ok" and base:
            row["vs_ours"] = run["fit_s"] / base
        rows.append(row)
    return rows


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(runs: list[dict[str, Any]]) -> str:
    """The results as a markdown table (one line per run)."""
    rows = table_rows(runs)
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(row.get(key)) for key, _ in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def stage_table(runs: list[dict[str, Any]]) -> str:
    """Seconds per stage of each successful run that reports stages (ours do)."""
    timed = [r for r in runs if r.get("status") == "ok" and r.get("stages")]
    if not timed:
        return ""
    stages = list(dict.fromkeys(name for r in timed for name in r["stages"]))
    lines = ["| data | method | implementation | compile s | " + " | ".join(stages) + " | fit s |",
             "|" + "---|" * (len(stages) + 5)]
    for run in timed:
        cells = [_cell(run["stages"].get(name)) for name in stages]
        lines.append(f"| {run['dataset']} | {run['method']} | {_who(run)} | {_cell(run.get('compile_s'))} | "
                     + " | ".join(cells) + f" | {_cell(run['fit_s'])} |")
    return "\n".join(lines)


def _triplet_note(quality: dict[str, Any]) -> str:
    """How the triplet accuracy was measured (results written before it existed have none)."""
    if "n_triplets" not in quality:
        return ""
    return (f"; triplet acc: share of {quality['n_triplets']:,} seeded random triplets of all points whose "
            "distance order the embedding keeps (0.5 is chance)")


def _manifest_lines(manifest: dict[str, Any]) -> list[str]:
    machine = manifest["machine"]
    gpu = "; ".join(f"{name}: {'yes' if b['available'] else 'no'} ({b['detail']})"
                    for name, b in machine["backends"].items())
    libs = ", ".join(f"{k} {v}" for k, v in manifest["libraries"].items() if v != "not installed")
    repeats = int(manifest.get("repeats", 1))  # results written before --repeats have none
    return [
        f"Command: `{manifest['command']}`",
        f"Date: {manifest['date_utc']}; budget {manifest['budget_s']:g} s per run; seed {manifest['seed']}",
        f"Machine: {machine['cpu']}, {machine['cpus_usable']} usable of {machine['cpu_count']} CPUs, "
        f"{(machine['memory_bytes'] or 0) / 2**30:.0f} GiB RAM; {machine['os']}; Python {machine['python']}",
        "Datasets: " + "; ".join(f"{d['name']} ({d['n']:,} x {d['d']}"
                                  + (f", {d['n_labels']} labels" if d["n_labels"] else "")
                                  + (f"; {d['note']}" if d["note"] else "") + ")"
                                  for d in manifest["datasets"]),
        f"Backends: {gpu}",
        f"Libraries: {libs}",
        f"Quality: k={manifest['quality']['k']}, on a seeded subsample of at most "
        f"{manifest['quality']['sample_size']:,} points, measured by the parent on every embedding alike"
        + _triplet_note(manifest["quality"]),
        "compile s: the warm-up fit on the first "
        f"{manifest['warmup_rows']:,} rows in the same process (JIT compilation or cache loading); "
        + (f"fit s: the median of {repeats} timed fits (same seed) after it; " if repeats > 1
           else "fit s: the timed fit after it; ")
        + "peak RSS: VmHWM of the run's process (data, warm-up and fit); "
        "KL: as each library reports it for its own P",
    ]


def _panel(run: dict[str, Any], out_dir: Path, labels: np.ndarray | None,
           names: list[str] | None) -> tuple[Any, dict[str, str]]:
    """One PIL panel (the shaded embedding with a caption, or a grey card for a failure)
    and the colour of each label drawn in it."""
    import pandas as pd
    from PIL import Image, ImageDraw

    panel = Image.new("RGB", (PANEL, PANEL + TITLE), "white")
    draw = ImageDraw.Draw(panel)
    caption = f"{run['method']} / {_who(run)}"
    colors: dict[str, str] = {}
    if run.get("status") == "ok":
        from embedscope.viz.export import render_image

        Y = np.load(out_dir / run["embedding"])
        meta = None
        if labels is not None:
            meta = pd.DataFrame({"label": pd.Categorical.from_codes(labels, names)})
        image, info = render_image(Y, meta, "label" if meta is not None else None,
                                   width=PANEL, height=PANEL, spread=1)
        colors = {str(k): v for k, v in (info.get("colors") or {}).items()}
        panel.paste(image.to_pil().convert("RGB"), (0, TITLE))
        detail = f"n={run['n']:,}  fit {run['fit_s']:.3g} s  T={run['trustworthiness']:.3f}"
    else:
        draw.rectangle([0, TITLE, PANEL, PANEL + TITLE], fill=(225, 225, 225))
        message = f"{run.get('status')}: {run.get('error', '')}"
        for i in range(0, min(len(message), 6 * 40), 40):
            draw.text((8, TITLE + 12 + 16 * (i // 40)), message[i:i + 40], fill="black")
        detail = f"n={run['n']:,}"
    draw.text((6, 4), caption, fill="black")
    draw.text((6, 18), detail, fill=(80, 80, 80))
    return panel, colors


LEGEND_ROW = 16  # pixels per legend entry
LEGEND_ENTRY = 150  # pixels per legend column


def _legend_strip(colors: dict[str, str], width: int) -> Any:
    """A strip of colour swatches and label names, as many columns as fit ``width``."""
    from PIL import Image, ImageDraw

    per_row = max(1, width // LEGEND_ENTRY)
    rows = -(-len(colors) // per_row)
    strip = Image.new("RGB", (width, 24 + rows * LEGEND_ROW), "white")
    draw = ImageDraw.Draw(strip)
    draw.text((6, 4), "label", fill="black")
    for i, (name, color) in enumerate(colors.items()):
        left, top = 6 + (i % per_row) * LEGEND_ENTRY, 22 + (i // per_row) * LEGEND_ROW
        draw.rectangle([left, top, left + 11, top + 11], fill=color)
        draw.text((left + 16, top), name[:20], fill="black")
    return strip


def render_grid(runs: list[dict[str, Any]], out_dir: Path,
                label_sets: dict[str, tuple[np.ndarray | None, list[str] | None]]) -> Any:
    """A grid of panels: one row per (dataset, method), one column per implementation,
    and a colour legend of the labels under it.

    Runs that never started (missing peer, unavailable backend) get no panel.
    Returns a PIL image, or None when no run was attempted.
    """
    from PIL import Image

    attempted = [r for r in runs if r.get("status") in ("ok", "failed", "timeout")]
    if not attempted:
        return None
    columns = list(dict.fromkeys(_who(r) for r in attempted))
    rows = list(dict.fromkeys((r["dataset"], r["method"]) for r in attempted))
    width, height = len(columns) * (PANEL + 4), len(rows) * (PANEL + TITLE + 4)
    grid = Image.new("RGB", (width, height), "white")
    # Every panel gets the same category list, hence the same colours: one legend serves all.
    legend: dict[str, str] = {}
    for run in attempted:
        labels, names = label_sets.get(run["dataset"], (None, None))
        panel, colors = _panel(run, out_dir, labels, names)
        legend = legend or colors
        grid.paste(panel, (columns.index(_who(run)) * (PANEL + 4),
                           rows.index((run["dataset"], run["method"])) * (PANEL + TITLE + 4)))
    if not legend:
        return grid
    strip = _legend_strip(legend, max(width, LEGEND_ENTRY + 12))
    framed = Image.new("RGB", (strip.width, height + strip.height), "white")
    framed.paste(grid, (0, 0))
    framed.paste(strip, (0, height))
    return framed


def _html(payload: dict[str, Any], grid_png: bytes | None) -> str:
    rows = table_rows(payload["runs"])
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(row.get(key)))}</td>" for key, _ in COLUMNS) + "</tr>"
                   for row in rows)
    stage_rows = [line.strip("|").split(" | ") for line in stage_table(payload["runs"]).splitlines()]
    stages = ""
    if stage_rows:
        stages = ("<h2>Seconds per stage of the timed fit</h2><table><tr>"
                  + "".join(f"<th>{html.escape(c.strip())}</th>" for c in stage_rows[0]) + "</tr>"
                  + "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in row) + "</tr>"
                            for row in stage_rows[2:]) + "</table>")
    notes = "".join(f"<li>{html.escape(line).replace('`', '')}</li>" for line in _manifest_lines(payload["manifest"]))
    picture = ("<h2>Embeddings</h2><p>One panel per run, coloured by label with the same colours everywhere "
               "(datashader, eq_hist).</p>"
               f'<img alt="grid of embeddings" src="data:image/png;base64,{base64.b64encode(grid_png).decode()}">'
               if grid_png else "<p>No run produced an embedding.</p>")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>embedscope bench</title><style>"
            "body{font-family:sans-serif;margin:2em} table{border-collapse:collapse;font-size:90%}"
            "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right} td:nth-child(-n+4){text-align:left}"
            "</style></head><body><h1>embedscope bench</h1>"
            f"<ul>{notes}</ul><table><tr>{head}</tr>{body}</table>{stages}{picture}</body></html>\n")


def rebuild_report(out_dir: str | Path) -> dict[str, Path]:
    """Write the report again from ``out_dir/results.json`` and the saved embeddings.

    Labels (colours, legends) are regenerated from the manifest's data settings, so the
    dataset must still be reachable (built-ins always are).
    """
    from embedscope.bench.datasets import load_bench_data

    out = Path(out_dir)
    payload = json.loads((out / "results.json").read_text())
    manifest = payload["manifest"]
    label_sets = {}
    for size in manifest["sizes"]:
        bench = load_bench_data(manifest["data"], size, labels=manifest.get("labels"), meta=manifest.get("meta"),
                                random_state=manifest["seed"])
        label_sets[bench.name] = (bench.labels, bench.label_names)
    return write_report(payload, out, label_sets)


def write_report(payload: dict[str, Any], out_dir: str | Path,
                 label_sets: dict[str, tuple[np.ndarray | None, list[str] | None]]) -> dict[str, Path]:
    """Write ``results.json``, ``results.md``, ``grid.png`` and ``report.html`` into ``out_dir``.

    Returns
    -------
    dict
        Kind -> path of each file written.
    """
    import io

    out = Path(out_dir)
    written: dict[str, Path] = {}
    with atomic_output(out / "results.json", force=True) as tmp:
        tmp.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    written["json"] = out / "results.json"
    grid = render_grid(payload["runs"], out, label_sets)
    grid_png = None
    if grid is not None:
        buffer = io.BytesIO()
        grid.save(buffer, format="PNG", optimize=True)
        grid_png = buffer.getvalue()
        with atomic_output(out / "grid.png", force=True) as tmp:
            tmp.write_bytes(grid_png)
        written["grid"] = out / "grid.png"
    lines = ["# embedscope bench", "", *(f"- {line}" for line in _manifest_lines(payload["manifest"])), "",
             markdown_table(payload["runs"]), ""]
    stages = stage_table(payload["runs"])
    if stages:
        lines += ["Seconds per stage of the timed fit:", "", stages, ""]
    if grid_png:
        lines += ["![one panel per run](grid.png)", ""]
    with atomic_output(out / "results.md", force=True) as tmp:
        tmp.write_text("\n".join(lines))
    written["markdown"] = out / "results.md"
    with atomic_output(out / "report.html", force=True) as tmp:
        tmp.write_text(_html(payload, grid_png), encoding="utf-8")
    written["html"] = out / "report.html"
    return written
