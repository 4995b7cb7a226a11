"""Hostile uses of ``embedscope serve``: bad addresses, foreign Host headers, Panel's
components route, too many sessions, a truncated input, huge search strings, FIFOs.

Servers bind 127.0.0.1 (one case 0.0.0.0, for a few seconds) on a free port, every
wait is bounded, and every server is stopped.
"""

from __future__ import annotations

import html
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest

from tests.hostile.harness import Case, run_case

HOSTILE = '<img src=x onerror="window.__xss=1">'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _coords(folder):
    rng = np.random.default_rng(0)
    pd.DataFrame({"x": rng.normal(size=300), "y": rng.normal(size=300),
                  "word": [HOSTILE, *(f"w{i}" for i in range(299))]}).to_parquet(folder / "c.parquet")


def _fifo(name):
    def setup(folder):
        _coords(folder)
        os.mkfifo(folder / name)
    return setup


CASES = [
    Case("port-negative", ["serve", "c.parquet", "--port", "-1"], message=r"--port -1: .*1 to 65535", setup=_coords),
    Case("port-too-big", ["serve", "c.parquet", "--port", "70000"], message=r"--port 70000: .*1 to 65535",
         setup=_coords),
    Case("unknown-host", ["serve", "c.parquet", "--host", "no-such-host.invalid"], message=r"unknown host",
         setup=_coords),
    Case("foreign-address", ["serve", "c.parquet", "--host", "192.0.2.1", "--port", "0"],
         message=r"not an address of this machine", setup=_coords),
    Case("no-sessions", ["serve", "c.parquet", "--max-sessions", "0"], message=r"--max-sessions 0", setup=_coords),
    Case("fifo-input", ["serve", "v.npy", "--port", "0"], message=r"not a regular file", setup=_fifo("v.npy"),
         timeout=60),
    Case("fifo-parquet-input", ["serve", "p.parquet", "--port", "0"], message=r"not a regular file",
         setup=_fifo("p.parquet"), timeout=60),
    Case("fifo-meta", ["serve", "c.parquet", "--meta", "m.csv", "--port", "0"], message=r"--meta .*not a regular file",
         setup=_fifo("m.csv"), timeout=60),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case(case, tmp_path):
    run_case(case, tmp_path / "work")


def test_port_in_use_is_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        case = Case("port-in-use", ["serve", "c.parquet", "--port", str(port)], message=rf"127\.0\.0\.1:{port}.*in use",
                    setup=_coords)
        run_case(case, tmp_path / "work")


# ---------------------------------------------------------------------------- live server


class Server:
    """``embedscope serve ARGS`` on a free port; stopped by ``stop`` (always called)."""

    def __init__(self, *args: str, host: str = "127.0.0.1", ready_host: str = "127.0.0.1") -> None:
        self.port = _free_port()
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-m", "embedscope.cli", "serve", *args, "--host", host,
                                      "--port", str(self.port)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.output()}")
            try:  # the icon makes no session
                with urllib.request.urlopen(f"http://{ready_host}:{self.port}/favicon.ico", timeout=5):
                    return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise AssertionError(f"server did not answer within 120 s:\n{self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)

    def request(self, path: str, host: str, extra: str = "") -> tuple[int, str]:
        """Raw HTTP/1.1 request with a chosen Host header: (status, body)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n".encode())
            data = b""
            while len(data) < 1 << 22:  # the server closes after the response
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body.decode(errors="replace")

    def websocket(self, host: str, origin: str, token: str = "x") -> int:
        """Status of a websocket upgrade of Bokeh's /ws."""
        extra = (f"Origin: http://{origin}\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                 f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: bokeh, {token}\r\n")
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as s:
            s.sendall(f"GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n{extra}\r\n".encode())
            return int(s.recv(200).split(b" ", 2)[1])


@pytest.fixture(scope="module")
def coords_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    _coords(folder)
    return folder / "c.parquet"


def _token(page: str) -> str:
    match = re.search(r'"token":\s*"([^"]+)"', page)
    assert match, "no session token in the page"
    return match.group(1)


def test_foreign_host_is_refused_on_http_and_websocket(coords_file):
    server = Server(str(coords_file), "--quiet", "--max-sessions", "3")
    try:
        port = server.port
        status, page = server.request("/", f"127.0.0.1:{port}")  # session 1
        assert status == 200
        token = _token(page)
        # the rebinding attack: Host and Origin both name the attacker's domain
        for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}", ""):
            status, body = server.request("/", host)
            assert status in (400, 403), (host, status)
            assert server.websocket(host or "evil.example", host or "evil.example", token) in (400, 403), host
        assert "host name" in server.request("/", f"evil.example:{port}")[1]
        # negative control: the same token over the server's own name is accepted
        assert server.websocket(f"127.0.0.1:{port}", f"127.0.0.1:{port}", token) == 101
        # and Bokeh's origin check still holds for a good Host with a foreign Origin
        assert server.websocket(f"127.0.0.1:{port}", "evil.example", token) == 403

        # Panel's components route would import any module named in the URL
        for path in ("/components/os/path/__css__/x.css", "/components/panel/widgets/Button/_css/x.css",
                     "/components/embedscope/cli/__css__/x"):
            assert server.request(path, f"127.0.0.1:{port}")[0] == 404, path
        assert server.request("/favicon.ico", f"127.0.0.1:{port}")[0] == 200  # a route that exists

        # sessions are bounded (3): sessions 2 and 3 load, the next is refused politely. (Bokeh
        # drops an unused session after 15 s; a slow machine may free session 1 meanwhile.)
        statuses = [server.request("/", f"127.0.0.1:{port}")[0] for _ in range(4)]
        assert statuses[0] == 200 and 503 in statuses, statuses
        status, body = server.request("/", f"127.0.0.1:{port}")
        assert status == 503 and "--max-sessions" in body and "Traceback" not in body
    finally:
        server.stop()
    assert "Traceback" not in server.output()


def test_wildcard_host_warns_and_lists_real_addresses(coords_file):
    server = Server(str(coords_file), "--max-sessions", "2", host="0.0.0.0")
    try:
        time.sleep(1)
        out = server.output()
        assert "reachable from the network" in out
        assert f"http://127.0.0.1:{server.port}/" in out and "0.0.0.0" not in out.split("warning")[-1].split("\n", 1)[1]
        assert server.request("/", f"127.0.0.1:{server.port}")[0] == 200
        assert server.request("/", f"evil.example:{server.port}")[0] == 403
    finally:
        server.stop()


def test_loopback_bind_says_nothing_about_the_network(coords_file):
    server = Server(str(coords_file), "--max-sessions", "2")
    try:
        time.sleep(1)
        out = server.output()
        assert "reachable from the network" not in out and f"http://127.0.0.1:{server.port}/" in out
    finally:
        server.stop()


# --------------------------------------------------------------------- without a server

TRUNCATE_SCRIPT = """
import os, sys
import numpy as np
path = sys.argv[1]
if sys.argv[2] == "memmap":  # the negative control: what serving from a mapping did
    data = np.load(path, mmap_mode="r")
    os.truncate(path, 128)
    print(float(np.asarray(data[-1]).sum()))
    sys.exit(0)
from embedscope.viz.app import AppData, Explorer
data = AppData(path, method="pca", verbose=False)
assert data.wait(120) and data.error is None, data.error
explorer = Explorer(data)
os.truncate(path, 128)
explorer._on_tap(x=float(data.frame["x"][5]), y=float(data.frame["y"][5]))
print(explorer.neighbour_title.object)
print(len(explorer.neighbour_table.object))
"""


def test_truncated_npy_does_not_kill_the_server(tmp_path):
    rng = np.random.default_rng(0)
    for mode, expect in (("memmap", -7), ("app", 0)):
        path = tmp_path / f"{mode}.npy"
        np.save(path, rng.normal(size=(20000, 64)).astype(np.float32))
        result = subprocess.run([sys.executable, "-c", TRUNCATE_SCRIPT, str(path), mode], capture_output=True,
                                text=True, timeout=240)
        assert result.returncode == expect, (mode, result.returncode, result.stderr[-2000:])
    assert "Nearest neighbours of row 5" in result.stdout and "original vector space" in result.stdout
    assert result.stdout.split()[-1] == "10"


@pytest.fixture(scope="module")
def hostile_data(tmp_path_factory):
    from embedscope.viz.app import AppData

    folder = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(1)
    words = [HOSTILE, "[a](javascript:alert(1)) **b** `c`", *(f"w{i}" for i in range(198))]
    pd.DataFrame({"x": rng.normal(size=200), "y": rng.normal(size=200), "word": words,
                  HOSTILE: rng.integers(0, 3, 200)}).to_parquet(folder / f"{HOSTILE[:8]}.parquet")
    return AppData(str(folder / f"{HOSTILE[:8]}.parquet"), text_column="word", verbose=False)


def test_metadata_never_reaches_a_pane_as_markup(hostile_data):
    from embedscope.viz.app import Explorer, safe_text

    for value in (HOSTILE, "[a](javascript:alert(1))", "**b** _c_ `d` # e", "a\nb\tc", "&lt;img&gt;"):
        shown = safe_text(value)
        assert not set("<>[]()*_`#&") & set(re.sub(r"&#\d+;", "", shown)), shown
        assert html.unescape(shown) == " ".join(value.split())  # the text itself survives
    assert safe_text("x" * 1000).endswith("\u2026") and len(html.unescape(safe_text("x" * 1000))) == 120

    explorer = Explorer(hostile_data)
    for row in (0, 1):
        explorer._on_tap(x=float(hostile_data.frame["x"][row]), y=float(hostile_data.frame["y"][row]))
        title = explorer.neighbour_title.object
        assert f"row {row}" in title and "<" not in title and "](" not in title
    explorer._on_tap(x=float("nan"), y=0.0)  # hand-made tap events are ignored, not an IndexError
    explorer._search(HOSTILE)
    assert "<" not in explorer.selection_info.object and "1 match" in explorer.selection_info.object
    # the neighbour table: pandas escapes cells and column names
    table = explorer.neighbour_table
    assert table.escape
    page = table.object.to_html(escape=table.escape)
    assert "<img" not in page and "&lt;img" in page
    sidebar = explorer.layout[0][0].object  # the file name is hostile too
    assert "<img" not in sidebar and "&#60;img" in sidebar


def test_huge_search_string_is_refused_in_the_page(hostile_data):
    from embedscope.viz.app import MAX_SEARCH_CHARS, Explorer

    explorer = Explorer(hostile_data)
    explorer._search("w1")
    assert explorer.plot.selected.size > 1
    explorer._search("a" * 8_000_000)  # was ArrowInvalid on the server
    assert f"limit is {MAX_SEARCH_CHARS}" in explorer.selection_info.object
    assert explorer.search.max_length == MAX_SEARCH_CHARS
    explorer._search("w1" + " " * 10)  # a short one still searches
    assert "match" in explorer.selection_info.object


def test_session_gate_counts_and_releases():
    from embedscope.viz.server import SessionGate

    gate = SessionGate(2)
    assert gate.acquire() and gate.acquire() and not gate.acquire() and gate.full
    gate.release()
    assert not gate.full and gate.acquire()
    with pytest.raises(ValueError, match="max-sessions"):
        SessionGate(0)


def test_make_session_past_the_limit_is_a_notice(hostile_data):
    import panel as pn

    from embedscope.viz.app import make_session
    from embedscope.viz.server import SessionGate

    gate = SessionGate(1)
    assert isinstance(make_session(hostile_data, gate), pn.Row) and gate.live == 1
    notice = make_session(hostile_data, gate)
    assert isinstance(notice, pn.pane.Markdown) and "--max-sessions" in notice.object and gate.live == 1


def test_allowed_hosts_and_urls():
    from embedscope.viz.server import allowed_hosts, host_allowed, page_urls

    local = allowed_hosts("127.0.0.1", 5006)
    assert {"127.0.0.1:5006", "localhost:5006"} <= set(local)
    assert host_allowed("LOCALHOST:5006", local) and host_allowed("localhost.:5006", local)
    assert not host_allowed("evil.example:5006", local) and not host_allowed(None, local)
    assert not host_allowed("localhost:5007", local) and not host_allowed("localhost", local)
    assert host_allowed("proxy.example", allowed_hosts("127.0.0.1", 5006, ["proxy.example:80"]))
    assert host_allowed("proxy.example:5006", allowed_hosts("127.0.0.1", 5006, ["proxy.example"]))
    urls = page_urls("0.0.0.0", 5006)
    assert "http://127.0.0.1:5006/" in urls and not any("0.0.0.0" in u for u in urls)
    assert page_urls("127.0.0.1", 80) == ["http://127.0.0.1:80/"]
    assert all(u.startswith("http://[") for u in page_urls("::", 5006))  # tornado binds '::' as IPv6 only


def test_a_discarded_session_gives_its_slot_back(coords_file):
    server = Server(str(coords_file), "--quiet", "--max-sessions", "1")
    try:
        host = f"127.0.0.1:{server.port}"
        assert server.request("/", host)[0] == 200
        assert server.request("/", host)[0] == 503
        # Bokeh discards a session no browser connected to after 15 s; then the slot is free
        deadline = time.monotonic() + 90
        while server.request("/", host)[0] != 200:
            assert time.monotonic() < deadline, "the slot never came back"
            time.sleep(2)
    finally:
        server.stop()
