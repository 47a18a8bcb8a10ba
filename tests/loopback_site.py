"""A threaded loopback web site for tests: routes map a path to a handler; hits and requests in flight are counted.
And RecordingBackend, a network that only records where a client tried to connect."""
from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore

Route = Callable[["Handler"], None]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    site: Site

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        path = self.path.split("?", 1)[0]
        self.site.record_hit(path)
        try:
            self.site.routes.get(path, not_found)(self)
        finally:
            self.site.record_done()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def reply(self, status: int, body: bytes = b"", content_type: str = "text/html; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def not_found(handler: Handler) -> None:
    handler.reply(404, b"<html>not here</html>")


class Site:
    """A loopback web site: ``routes`` maps a path to a function answering it; hits and concurrency are counted."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.release = threading.Event()  # set at teardown so slow handlers stop waiting
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        handler = type("SiteHandler", (Handler,), {"site": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def record_hit(self, path: str) -> None:
        with self._lock:
            self.hits[path] += 1
            if path != "/robots.txt":
                self._in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def record_done(self) -> None:
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)

    def __enter__(self) -> Site:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Stands in for the real network: remembers where it was asked to connect."""

    def __init__(self) -> None:
        self.connected_to: list[str] = []

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        self.connected_to.append(host)
        raise httpcore.ConnectError("recording only")
