"""Memory of ``embedscope serve`` per browser session.

    .venv/bin/python benchmarks/serve_memory.py [--n 200000] [--sessions 10] [--color word]

Writes coordinates with a text column (one distinct word per point, the case that cost
~65 MB per page load at 1M points), starts ``embedscope serve`` on 127.0.0.1 and a free
port, then loads the page ``--sessions`` times. Each ``GET /`` makes Bokeh build one
session (the widgets and the first render of the plot), which stays alive for Bokeh's
unused-session lifetime (15 s), well past the measurement. The server's resident
memory (RSS, from /proc via psutil) is read after start-up, after a warm-up load, and
after every load; the growth per session is the slope past the warm-up. The last
line is one JSON record.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import psutil


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(proc: psutil.Process) -> float:
    return proc.memory_info().rss / 2**20


def _settled_rss(proc: psutil.Process, wait: float = 1.5) -> float:
    """RSS once the session's first render has landed (it can finish after the response)."""
    time.sleep(wait)
    return _rss_mb(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="points (default 200000)")
    parser.add_argument("--sessions", type=int, default=10, help="page loads measured (default 10)")
    parser.add_argument("--color", default=None, help="column to colour by (label or word; default density)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    folder = Path(tempfile.mkdtemp(prefix="embedscope-serve-mem-"))
    frame = pd.DataFrame({"x": rng.normal(size=args.n).astype(np.float32),
                          "y": rng.normal(size=args.n).astype(np.float32),
                          "label": rng.integers(0, 20, args.n).astype(str),
                          "word": [f"word-{i:08d}-{rng.integers(1 << 30):x}" for i in range(args.n)]})
    frame.to_parquet(folder / "coords.parquet", index=False)
    del frame

    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-m", "embedscope.cli", "serve", str(folder / "coords.parquet"), "--port", str(port),
               "--quiet", "--text-column", "word", "--max-sessions", str(args.sessions + 5)]
    if args.color:
        command += ["--color", args.color]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        proc = psutil.Process(server.pid)
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                raise SystemExit(f"server exited: {server.stderr.read().decode()[-2000:]}")
            try:  # any answer means it listens; the icon makes no session
                urllib.request.urlopen(f"{url}favicon.ico", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("server did not answer within 300 s") from None
                time.sleep(0.5)
        start = _settled_rss(proc, 0.5)
        with urllib.request.urlopen(url, timeout=300) as response:  # warm-up: imports, numba, first render
            response.read()
        warm = _settled_rss(proc)
        readings = []
        for i in range(args.sessions):
            t0 = time.perf_counter()
            with urllib.request.urlopen(url, timeout=300) as response:
                response.read()
            seconds = time.perf_counter() - t0
            readings.append(_settled_rss(proc))
            print(f"load {i + 1:3d}: RSS {readings[-1]:8.1f} MB  (+{readings[-1] - warm:7.1f} since warm-up)  "
                  f"page in {seconds:.2f} s", flush=True)
        slope = float(np.polyfit(np.arange(1, len(readings) + 1), readings, 1)[0]) if len(readings) > 1 else float("nan")
        record = {"n": args.n, "color": args.color, "sessions": args.sessions, "rss_start_mb": round(start, 1),
                  "rss_after_first_load_mb": round(warm, 1), "rss_end_mb": round(readings[-1], 1),
                  "per_session_mb": round(slope, 2)}
        print(f"start {start:.1f} MB, after first load {warm:.1f} MB, after {args.sessions} more "
              f"{readings[-1]:.1f} MB: {slope:.2f} MB per session")
        print(json.dumps(record))
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
