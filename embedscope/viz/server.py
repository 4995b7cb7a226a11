"""The Bokeh server behind ``embedscope serve``, with the checks Bokeh and Panel leave out.

- **Host allow-list on every request.** Bokeh checks the websocket ``Origin`` against
  its allow-list, but tornado skips that check when ``Origin`` equals ``Host``, and plain
  HTTP requests are never checked. A page on ``evil.example`` whose name was rebound to
  127.0.0.1 (DNS rebinding) sends both as ``evil.example:PORT`` and would be served.
  Here every request (HTTP and websocket upgrade) whose ``Host`` is not a name of this
  server is refused with 403 before any handler runs.
- **No ``/components/`` route.** Panel's component-resource route imports any installed
  module named in the URL; the app needs none of it, so it answers 404.
- **A bound on sessions.** Each page load builds a session; past ``max_sessions`` live
  ones a new page gets a short 503 page instead of another copy of the widgets.
- **One-line errors** for ports and addresses that cannot be listened on.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["DEFAULT_MAX_SESSIONS", "ServeError", "SessionGate", "allowed_hosts", "check_listen",
           "interface_addresses", "is_loopback", "page_urls", "run_server"]

#: Live browser sessions served at once unless ``--max-sessions`` says otherwise.
DEFAULT_MAX_SESSIONS = 16
BLOCKED_PREFIXES = ("/components/",)


class ServeError(OSError):
    """The server cannot listen where it was asked to; the message says why."""


def check_port(port: int) -> int:
    """``port`` if it is a TCP port number (0 picks a free one), else ValueError."""
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"--port {port}: a port is a number from 1 to 65535 (0 picks a free one)")
    return int(port)


def is_loopback(host: str) -> bool:
    """True when ``host`` names only this machine (127.x, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::", "[::]", "*")


def interface_addresses() -> list[str]:
    """The IP addresses of this machine's network interfaces (loopback first)."""
    found: list[str] = []
    try:
        import psutil

        for addrs in psutil.net_if_addrs().values():
            for addr in addrs:
                if addr.family in (socket.AF_INET, socket.AF_INET6):
                    found.append(addr.address.split("%")[0])  # drop an IPv6 zone id
    except Exception:  # psutil missing or refused: the resolver is the fallback
        try:
            found = [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)]
        except OSError:
            found = []
    found = [a for a in dict.fromkeys(found) if not a.startswith("fe80:")]  # link-local needs a zone id
    return sorted(found, key=lambda a: (not is_loopback(a), ":" in a, a))


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def page_urls(host: str, port: int) -> list[str]:
    """The addresses a browser can open for a server bound to ``host:port``.

    A wildcard host (``0.0.0.0``, ``::``) lists this machine's interface addresses
    instead of the wildcard, which no browser can open.
    """
    if _is_wildcard(host):
        # tornado binds '::' as IPv6 only and '0.0.0.0' as IPv4 only; '' binds both.
        family = "6" if ":" in host else "4" if host == "0.0.0.0" else ""
        names = [a for a in interface_addresses()
                 if not family or (":" in a) == (family == "6")] or ["localhost"]
    else:
        names = [host]
    return [f"http://{_host_port(name, port)}/" for name in names]


def allowed_hosts(host: str, port: int, extra: Sequence[str] = ()) -> list[str]:
    """``name:port`` values a request's ``Host`` header (and websocket ``Origin``) may carry.

    The bound address and, for loopback, ``localhost`` / ``127.0.0.1``; for a wildcard
    bind every interface address and this machine's names; plus ``extra`` (names a
    reverse proxy or DNS gives the server; ``name`` or ``name:port``).
    """
    names = [host]
    if is_loopback(host) or _is_wildcard(host):
        names += ["localhost", "127.0.0.1", "::1"]
    if _is_wildcard(host):
        names = [n for n in names if not _is_wildcard(n)] + interface_addresses()
        names += [socket.gethostname(), socket.getfqdn()]
    out = [_host_port(n, port).lower() for n in dict.fromkeys(names) if n]
    for name in extra:
        name = name.strip().lower()
        if not name:
            continue
        has_port = name.rsplit(":", 1)[-1].isdigit() and (not name.count(":") > 1 or name.startswith("["))
        out.append(name if has_port else _host_port(name, port))
    return list(dict.fromkeys(out))


def host_allowed(host_header: str | None, allowlist: Sequence[str]) -> bool:
    """Whether a request's ``Host`` header names this server."""
    if not host_header:
        return False
    value = host_header.strip().lower()
    if value.endswith("."):  # 'localhost.' is the same name; browsers may send it
        value = value[:-1]
    if ":" not in value.rsplit("]", 1)[-1]:
        value += ":80"
    return value in allowlist or value.replace(".:", ":") in allowlist


def check_listen(host: str, port: int) -> None:
    """Bind ``host:port`` once and let go, so a bad address fails before data loads.

    Raises
    ------
    ValueError
        ``port`` outside 0..65535.
    ServeError
        The name does not resolve, the address is not this machine's, the port is in
        use or needs privileges.
    """
    from tornado import netutil

    check_port(port)
    try:
        sockets = netutil.bind_sockets(port, address=host or None)
    except OSError as exc:
        raise _listen_error(host, port, exc) from None
    except OverflowError:  # defensive: check_port already bounds it
        raise ValueError(f"--port {port}: a port is a number from 1 to 65535") from None
    for s in sockets:
        s.close()


def _listen_error(host: str, port: int, exc: OSError) -> ServeError:
    where = _host_port(host, port)
    if isinstance(exc, socket.gaierror):
        return ServeError(f"--host {host}: unknown host name or address ({exc.strerror or exc})")
    if exc.errno == errno.EADDRINUSE:
        return ServeError(f"cannot listen on {where}: the port is in use (choose another with --port, "
                          "or --port 0 for a free one)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ServeError(f"cannot listen on {where}: {host} is not an address of this machine")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ServeError(f"cannot listen on {where}: permission denied (ports below 1024 need privileges)")
    return ServeError(f"cannot listen on {where}: {exc.strerror or exc}")


class SessionGate:
    """Counts live browser sessions and says when one more would pass ``limit``."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"--max-sessions {limit}: allow at least 1 session")
        self.limit = int(limit)
        self.live = 0
        self._lock = threading.Lock()

    @property
    def full(self) -> bool:
        return self.live >= self.limit

    def acquire(self) -> bool:
        """Take a slot; False when all ``limit`` are taken."""
        with self._lock:
            if self.live >= self.limit:
                return False
            self.live += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.live = max(self.live - 1, 0)


def _refusal_handler() -> type:
    from tornado.web import RequestHandler

    class Refusal(RequestHandler):
        """Answers every method with a fixed status and a one-line text body."""

        def initialize(self, status: int, text: str) -> None:
            self._refusal = (status, text)

        def prepare(self) -> None:
            status, text = self._refusal
            self.set_status(status)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(text + "\n")

        def check_xsrf_cookie(self) -> None:  # a refusal has no side effect to protect
            pass

    return Refusal


def guard_application(app: Any, allowlist: Sequence[str], gate: SessionGate | None = None,
                      app_paths: Sequence[str] = ("/",)) -> None:
    """Make tornado ``app`` refuse foreign hosts, the components route and extra sessions.

    Wraps ``app.find_handler``, which tornado calls for every request before choosing
    a handler (websocket upgrades included), so no handler of Bokeh or Panel runs for
    a refused request.
    """
    refusal = _refusal_handler()
    allow = [a.lower() for a in allowlist]
    original: Callable[..., Any] = app.find_handler

    def find_handler(request: Any, **kwargs: Any) -> Any:
        if not host_allowed(request.headers.get("Host"), allow):
            return app.get_handler_delegate(request, refusal, {
                "status": 403, "text": "embedscope: this server does not answer to that host name "
                                       "(start it with --allow-host NAME to add one)"})
        path = request.path or "/"
        if path.startswith(BLOCKED_PREFIXES):
            return app.get_handler_delegate(request, refusal, {"status": 404, "text": "Not Found"})
        if gate is not None and request.method == "GET" and path in app_paths and gate.full:
            return app.get_handler_delegate(request, refusal, {
                "status": 503, "text": f"embedscope: {gate.limit} sessions are open, the most this server "
                                       "allows (--max-sessions); close a tab and reload in a minute"})
        return original(request, **kwargs)

    app.find_handler = find_handler


def run_server(app_factory: Callable[[], Any], *, host: str, port: int, allow: Sequence[str] = (),
               gate: SessionGate | None = None, show: bool = False, title: str = "embedscope",
               on_ready: Callable[[int], None] | None = None) -> None:
    """Serve ``app_factory`` (one call per session) until interrupted.

    Parameters
    ----------
    app_factory : callable
        Returns the Panel object of one browser session.
    host, port : str, int
        Where to listen; port 0 picks a free one.
    allow : sequence of str
        Extra host names (``name`` or ``name:port``) requests may address.
    gate : SessionGate, optional
        Bound on live sessions; GET of the page is refused with 503 when it is full.
    show : bool
        Open a browser tab.
    on_ready : callable, optional
        Called with the bound port once listening (before the loop runs).
    """
    import panel as pn
    from panel.io.server import get_server

    check_port(port)
    pn.extension()
    try:
        # A placeholder origin: Bokeh's parser of this list rejects IPv6 literals, and the
        # port is not known before binding with --port 0. The real list is set below.
        server = get_server({"/": app_factory}, port=port, address=host, show=show, start=False,
                            title=title, verbose=False, websocket_origin=[f"localhost:{port or 80}"],
                            # Look for abandoned sessions every 5 s (Bokeh: 17 s), so a closed tab's
                            # slot under --max-sessions comes back soon after its 15 s grace.
                            check_unused_sessions_milliseconds=5000)
    except OSError as exc:
        raise _listen_error(host, port, exc) from None
    hosts = allowed_hosts(host, server.port, allow)
    origins = server._tornado.websocket_origins  # the live set Bokeh's websocket check reads
    origins.clear()
    origins.update(hosts)
    guard_application(server._tornado, hosts, gate)
    bound = server.port
    if on_ready is not None:
        on_ready(bound)
    server.start()
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        sys.stderr.flush()
