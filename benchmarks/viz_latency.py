"""Latency of ``embedscope serve`` in a real browser: wheel step (or drag, recolour, search) -> new image on screen.

    .venv/bin/python benchmarks/viz_latency.py [--n 1000000] [--steps 8] [--width 1500 --height 1100]
    .venv/bin/python benchmarks/viz_latency.py --action pan        # or recolour, search
    .venv/bin/python benchmarks/viz_latency.py --compare   # 'serve a b': two linked panels, zoom in the first

Starts ``embedscope serve`` on generated clusters (a subprocess whose renders are timed),
opens it in headless chromium (Playwright, Debian's /usr/bin/chromium) and, per wheel
step, records in one clock (epoch milliseconds, browser and server on this machine):

- ``wheel``: the wheel event reaches the page;
- ``ranges``: the page sends the new ranges (Bokeh's RangesUpdate event);
- ``render``: the server's ``EmbeddingPlot.render`` (base image) start and end, and the
  highlight layer's render;
- ``received``: the first message larger than 100 kB the page receives after the render
  (the new image), and its size;
- ``source``: the image's data source holds the new image;
- ``frame``: the next animation frame after that (the new image painted).

Prints each step and the medians of the intervals; writes
benchmarks/results/viz_latency.json and .md. Absolute times depend on the machine's
load; the split says where a step's time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
CHROMIUM = os.environ.get("EMBEDSCOPE_CHROMIUM") or "/usr/bin/chromium"

# The server, with EmbeddingPlot.render and the highlight layer timed to stderr.
TIMED_SERVER = """
import sys, time
from embedscope.viz import figure

def timed(name, fn):
    def wrapper(self, *args, **kwargs):
        start = time.time()
        try:
            return fn(self, *args, **kwargs)
        finally:
            print(f"TIMING {name} {start * 1000:.1f} {time.time() * 1000:.1f}", file=sys.stderr, flush=True)
    return wrapper

figure.EmbeddingPlot.render = timed("render", figure.EmbeddingPlot.render)
figure.EmbeddingPlot._highlight_image = timed("highlight", figure.EmbeddingPlot._highlight_image)
from embedscope.viz.cli import main
sys.exit(main(sys.argv[1:]))
"""

# Timestamps of websocket traffic, installed before the page's scripts run.
WS_PROBE = """
(() => {
  const now = () => performance.timeOrigin + performance.now();
  window.__ws = [];
  const Native = window.WebSocket;
  window.WebSocket = function (...args) {
    const ws = new Native(...args);
    ws.addEventListener('message', (ev) => {
      const size = typeof ev.data === 'string' ? ev.data.length : (ev.data.byteLength || ev.data.size || 0);
      window.__ws.push(['recv', now(), size]);
    });
    const send = ws.send.bind(ws);
    ws.send = (data) => {
      const text = typeof data === 'string' ? data : '';
      window.__ws.push([text.includes('rangesupdate') ? 'ranges' : 'send', now(), text.length || data.byteLength]);
      return send(data);
    };
    return ws;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
  window.__wheel = [];
  window.addEventListener('wheel', () => window.__wheel.push(now()), {capture: true});
  // the other actions: a drag's release (pointerup: Bokeh ends the pan there, before mouseup),
  // Enter in a text box (a select's change stays inside the widget's shadow DOM: the
  // recolour step stamps its own start, a few ms early)
  window.__pan = []; window.__recolour = []; window.__search = [];
  window.addEventListener('pointerup', () => window.__pan.push(now()), {capture: true});
  window.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') window.__search.push(now()); }, {capture: true});
})();
"""

# Stamps each change of an image layer's data source to a full-size image (the base
# image; the highlight layer once it shows points: a 1 x 1 image when it shows none),
# and the frame painted after it. A recolour replaces the figure: its new image layers
# are found by a poll every animation frame (``RECOLOUR_JS``).
WATCH_JS = """() => {
  const now = () => performance.timeOrigin + performance.now();
  function* walk(v) { yield v; const kids = v.children ? [...v.children()] : (v.child_views || []);
                      for (const k of kids) yield* walk(k); }
  window.__source = window.__source || [];
  window.__frame = window.__frame || [];
  let found = false;
  for (const root of Bokeh.index.roots) for (const v of walk(root)) {
    if (v.model.type === 'GlyphRenderer' && v.model.glyph.type === 'ImageRGBA') {
      found = true;
      const source = v.model.data_source;
      if (source.__watched) continue;
      source.__watched = true;
      source.change.connect(() => {
        const image = source.data.image && source.data.image[0];
        if (image == null || image.length < 100000) return;
        window.__source.push(now());
        requestAnimationFrame(() => requestAnimationFrame(() => window.__frame.push(now())));
      });
    }
  }
  return found;
}"""

# After a recolour: every animation frame, look for a figure other than `old` whose image
# layer holds a full-size image; stamp that frame (the new plot drawn) and the next.
RECOLOUR_JS = """(old) => {
  const now = () => performance.timeOrigin + performance.now();
  function* walk(v) { yield v; const kids = v.children ? [...v.children()] : (v.child_views || []);
                      for (const k of kids) yield* walk(k); }
  const ready = () => {
    for (const root of Bokeh.index.roots) for (const v of walk(root)) {
      if (v.model.type !== 'Figure' || v.model.id === old) continue;
      for (const r of v.model.renderers) {
        const image = r.glyph && r.glyph.type === 'ImageRGBA' && r.data_source.data.image
        if (image && image[0] && image[0].length >= 100000) return true;
      }
    }
    return false;
  };
  const start = now();
  const poll = () => {  // (a tree that recolours in place keeps its figure: WATCH_JS sees its image)
    if (ready()) { window.__source.push(now()); requestAnimationFrame(() => window.__frame.push(now())); }
    else if (now() - start < 3000) requestAnimationFrame(poll);
  };
  requestAnimationFrame(poll);
}"""

FIGURE_JS = """() => {
  function* walk(v) { yield v; const kids = v.children ? [...v.children()] : (v.child_views || []);
                      for (const k of kids) yield* walk(k); }
  for (const root of Bokeh.index.roots) for (const v of walk(root)) if (v.model.type === 'Figure') {
    const r = v.canvas_view.el.getBoundingClientRect(), f = v.frame.bbox;
    return {id: v.model.id, x: r.left + f.left + f.width / 2, y: r.top + f.top + f.height / 2, w: f.width, h: f.height};
  }
  return null;
}"""


def _data(n: int, categories: int, path: Path) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10, size=(categories, 2))
    label = rng.integers(0, categories, n)
    xy = (centres[label] + rng.normal(size=(n, 2))).astype(np.float32)
    pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "label": pd.Categorical([f"c{k}" for k in label]),
                  "word": [f"w{i}" for i in range(n)] if n <= 2_000_000 else np.arange(n)}).to_parquet(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _first_after(times: list[float], t: float, until: float = float("inf")) -> float | None:
    later = [x for x in times if t <= x <= until]
    return min(later) if later else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--categories", type=int, default=20)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--width", type=int, default=1500)
    parser.add_argument("--height", type=int, default=1100)
    parser.add_argument("--color", default="label", help="colour column ('' for density)")
    parser.add_argument("--pause", type=float, default=3.0, help="seconds between steps")
    parser.add_argument("--action", choices=["wheel", "pan", "recolour", "search"], default="wheel",
                        help="each step: a wheel step (in, out, ...), a drag of the plot by 150 px (right, left, ...), "
                             "a new 'Colour by' (density, the colour column, ...), or a search (Enter) for another "
                             "label, whose points the highlight layer draws")
    parser.add_argument("--compare", action="store_true",
                        help="serve two layouts of the points (b: a turned, shuffled, paired by id) in linked panels, "
                             "coloured by the moved layer; the wheel zooms the first panel")
    parser.add_argument("--name", default=None,
                        help="results/NAME.json and .md (default viz_latency, or viz_latency_compare)")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="embedscope-latency-"))
    _data(args.n, args.categories, work / "points.parquet")
    (work / "server.py").write_text(TIMED_SERVER)
    port = _free_port()
    log = open(work / "server.log", "w+")
    color = ["--color", args.color] if args.color else []
    inputs = [str(work / "points.parquet")]
    if args.compare:
        points = pd.read_parquet(work / "points.parquet")
        order = np.random.default_rng(1).permutation(len(points))
        turned = points.iloc[order].reset_index(drop=True)
        turned = turned.assign(x=turned["y"], y=-turned["x"], id=order)[["x", "y", "id"]]
        turned.to_parquet(work / "turned.parquet")
        points.assign(id=np.arange(len(points))).to_parquet(work / "points.parquet")
        inputs += [str(work / "turned.parquet"), "--on", "id"]
        color = ["--color", "moved"]
    server = subprocess.Popen([sys.executable, str(work / "server.py"), "serve", *inputs, *color,
                               "--port", str(port), "--quiet"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    steps = []
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server did not start: {(work / 'server.log').read_text()[-2000:]}") from None
                time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.add_init_script(WS_PROBE)
            page.goto(url, timeout=300_000)
            page.wait_for_function(f"() => window.Bokeh && Bokeh.index && ({FIGURE_JS})() !== null", timeout=300_000)
            page.wait_for_timeout(3000)
            page.wait_for_function(WATCH_JS)
            fig = page.evaluate(FIGURE_JS)
            page.mouse.move(fig["x"], fig["y"])
            box = page.locator("input[placeholder='text to find']").first if args.action == "search" else None
            for step in range(args.steps):
                log.flush()
                if args.action == "wheel":
                    page.mouse.wheel(0, -200 if step % 2 == 0 else 200)
                elif args.action == "pan":
                    page.mouse.down()
                    shift = 150 if step % 2 == 0 else -150
                    for k in range(1, 7):  # a drag in six moves, released where it stops
                        page.mouse.move(fig["x"] + (shift * k / 6 if step % 2 == 0 else 150 + shift * k / 6), fig["y"])
                    page.mouse.up()
                elif args.action == "recolour":
                    fig = page.evaluate(FIGURE_JS)
                    page.evaluate(RECOLOUR_JS, fig["id"])
                    page.evaluate("() => window.__recolour.push(performance.timeOrigin + performance.now())")
                    page.locator("select").first.select_option("(density)" if step % 2 == 0 else args.color)
                else:
                    assert box is not None
                    box.fill(f"c{step % 10}")  # the label column is the one searched: ~5% of the points
                    box.press("Enter")
                page.wait_for_timeout(int(args.pause * 1000))
                if args.action == "recolour":
                    page.wait_for_function(WATCH_JS)
            traffic = page.evaluate("() => window.__ws")
            wheels = page.evaluate(f"() => window.__{args.action}")
            sources = page.evaluate("() => window.__source")
            frames = page.evaluate("() => window.__frame")
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    timings = [line.split() for line in (work / "server.log").read_text().splitlines() if line.startswith("TIMING")]
    renders = [(float(a), float(b)) for _, name, a, b in timings if name == "render"]
    highlights = [(float(a), float(b)) for _, name, a, b in timings if name == "highlight"]
    # what the page sends first: the view's new ranges (wheel, drag), else the widget's change
    sent = [t for kind, t, _ in traffic if kind == ("ranges" if args.action in ("wheel", "pan") else "send")]
    if args.action == "search":  # the highlight layer is what changes; it is rendered after the base image
        renders = highlights
    for i, wheel in enumerate(wheels):
        until = wheels[i + 1] if i + 1 < len(wheels) else float("inf")
        row: dict = {"wheel": 0.0}
        t_sent = _first_after(sent, wheel, until)
        render = next(((a, b) for a, b in renders if wheel <= a <= until), None)
        highlight = next(((a, b) for a, b in highlights if wheel <= a <= until), None)
        after = render[1] if render else wheel
        big = [(t, size) for kind, t, size in traffic if kind == "recv" and size > 100_000 and after <= t <= until]
        t_source = _first_after(sources, big[0][0] if big else wheel, until)
        t_frame = _first_after(frames, t_source, until) if t_source else None
        for name, t in (("ranges", t_sent), ("render_start", render and render[0]), ("render_end", render and render[1]),
                        ("highlight_start", highlight and highlight[0]), ("highlight_end", highlight and highlight[1]),
                        ("received", big[0][0] if big else None), ("source", t_source), ("frame", t_frame)):
            row[name] = None if t is None else round(t - wheel, 1)
        row["image_bytes"] = big[0][1] if big else None
        row["big_messages"] = len(big)
        steps.append(row)
        print(json.dumps(row))
    keys = ["ranges", "render_start", "render_end", "highlight_start", "highlight_end", "received", "source", "frame"]
    medians = {k: statistics.median([r[k] for r in steps if r[k] is not None]) for k in keys
               if any(r[k] is not None for r in steps)}
    print(f"median ms after the {args.action} event:", json.dumps(medians))
    RESULTS.mkdir(exist_ok=True)
    name = args.name or ("viz_latency_compare" if args.compare else "viz_latency")
    out = {"n": args.n, "compare": args.compare, "action": args.action, "width": args.width, "height": args.height,
           "color": args.color, "steps": steps, "median_ms_after_event": medians}
    out["load_average_1_5_15"] = [round(v, 2) for v in os.getloadavg()]
    _write(RESULTS / f"{name}.json", json.dumps(out, indent=1))
    what = (f"two linked panels of {args.n:,} points each (serve a b), zoom in the first, colour moved" if args.compare
            else f"{args.n:,} points, colour {args.color or 'density'}")
    title = {"wheel": "Zoom", "pan": "Pan", "recolour": "Recolour", "search": "Search"}[args.action]
    lines = [f"# {title} latency: {what}, {args.width} x {args.height} window",
             f"`benchmarks/viz_latency.py {' '.join(sys.argv[1:])}`; "
             f"load average {[round(v, 2) for v in os.getloadavg()]} on {os.cpu_count()} CPUs",
             "", f"ms after the {args.action} event (median of the steps)"
             + ("; render = the highlight layer's render" if args.action == "search" else ""),
             "", "| stage | ms |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in medians.items()]
    _write(RESULTS / f"{name}.md", "\n".join(lines) + "\n")


def _write(path: Path, text: str) -> None:
    """``text`` to a temporary file beside ``path``, then renamed: no half-written result."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


if __name__ == "__main__":
    main()
