"""A loopback HTTP server for the demo site, with the misbehaving endpoints a web crawl meets.

Besides the site's pages it serves: robots.txt disallowing /private/, fixed error statuses, a flaky page, redirect
chains and a redirect loop, a response slower than any sane read timeout, non-HTML content, a page larger than a
fetcher should accept, a gzip bomb, and pages in legacy encodings with and without a declared charset. A second
instance with `delay_s` plays a slow host.

In-process: `with DemoServer(site_dir) as server: server.base_url`. As its own process (for the local Prefect stack):
`python -m flows.demo.server --root SITE_DIR --port 8765`. Port 0 (the default) picks a free port; since document ids
hash the URL, port included, whoever needs the same ids on every run (tests) passes a fixed host and port.
"""
from __future__ import annotations

import argparse
import re
import signal
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from flows.demo.site import page_html_without_charset, read_site

DEFAULT_SLOW_S = 30.0  # /slow answers after this: far beyond the demo fetcher's read timeout
DEFAULT_HUGE_BYTES = 32 * 2**20  # /huge body: larger than any fetcher's max body size should be
DEFAULT_BOMB_BYTES = 1 * 2**30  # /bomb decoded size; about 1 MiB on the wire
REDIRECT = re.compile(r"/redirect/(\d+)")
STATUS = re.compile(r"/status/([1-5]\d\d)")
ROBOTS_TXT = b"User-agent: *\nDisallow: /private/\n"


def _png() -> bytes:
    """A valid 1x1 PNG, built rather than stored."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)  # 1x1, 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00\x00")) + chunk(b"IEND", b"")


BINARIES = {  # path -> (content type, body): real headers of each format, short bodies
    "/image.png": ("image/png", _png()),
    "/download": ("application/octet-stream", b"PK\x03\x04" + bytes(range(256)) * 4),
    "/files/report.pdf": ("application/pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"),
    "/img/cat.jpg": ("image/jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"),
}


class DemoServer:
    """A threaded HTTP server on 127.0.0.1 (or another loopback ``host``) serving a built demo site (see flows.demo.site) and the noise endpoints."""

    def __init__(self, root: Path, port: int = 0, *, delay_s: float = 0.0, slow_s: float = DEFAULT_SLOW_S,
                 huge_bytes: int = DEFAULT_HUGE_BYTES, bomb_bytes: int = DEFAULT_BOMB_BYTES, host: str = "127.0.0.1"):
        self.root = Path(root).resolve()
        endpoints = {p.endpoint: p for p in read_site(self.root) if p.kind == "endpoint"}
        self.redirect_target = "/" + endpoints["redirect"].path
        self.flaky_html = (self.root / endpoints["flaky"].path).read_bytes()
        self.latin1_html = page_html_without_charset(self.root, endpoints["latin1"]).encode("iso-8859-1", "xmlcharrefreplace")
        self.cp1252_html = page_html_without_charset(self.root, endpoints["nocharset"]).encode("cp1252", "xmlcharrefreplace")
        self.delay_s, self.slow_s, self.huge_bytes, self.bomb_bytes = delay_s, slow_s, huge_bytes, bomb_bytes
        self.stopping = threading.Event()  # wakes handlers that are sleeping, so stop() is prompt
        self._flaky_lock = threading.Lock()
        self._flaky_failed = False
        try:
            self._httpd = ThreadingHTTPServer((host, port), _Handler)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot serve the demo site on {host}:{port}: {exc.strerror}; another process "
                          "(an earlier run of the same test?) may hold it: stop it, or pass another host or port "
                          "(every 127.0.0.N is loopback)") from exc
        self._httpd.daemon_threads = True
        self._httpd.demo = self  # type: ignore[attr-defined]  # the handler's way back to this configuration
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}"

    def start(self) -> DemoServer:
        """Serve in a background thread."""
        # a short poll interval: stop() waits for the serving loop to notice, and tests start many servers
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"demo-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def flaky_fails_now(self) -> bool:
        """True the first time only: /flaky fails once per server, then succeeds."""
        with self._flaky_lock:
            failed_before, self._flaky_failed = self._flaky_failed, True
            return not failed_before


class _Handler(BaseHTTPRequestHandler):
    server_version = "DemoWeb/1.0"
    # HTTP/1.0 (the default): the connection closes after each response, so bodies may end without a Content-Length

    @property
    def demo(self) -> DemoServer:
        return self.server.demo  # type: ignore[attr-defined]

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's signature
        """Quiet: a crawl makes hundreds of requests and tests read their own assertions, not an access log."""

    def do_GET(self) -> None:
        if self.demo.delay_s and self.demo.stopping.wait(self.demo.delay_s):
            return
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        try:
            self._route(path)
        except ConnectionError:
            pass  # the client gave up (too large, too slow): what these endpoints are for

    def _route(self, path: str) -> None:
        demo = self.demo
        if path == "/robots.txt":
            return self._send(200, "text/plain; charset=utf-8", ROBOTS_TXT)
        if m := STATUS.fullmatch(path):
            return self._send_error_page(int(m.group(1)))
        if m := REDIRECT.fullmatch(path):
            hops = int(m.group(1))
            return self._redirect(f"/redirect/{hops - 1}" if hops > 1 else demo.redirect_target)
        if path == "/loop":
            return self._redirect("/loop/again")
        if path == "/loop/again":
            return self._redirect("/loop")
        if path == "/flaky":
            if demo.flaky_fails_now():
                return self._send_error_page(500)
            return self._send(200, "text/html; charset=utf-8", demo.flaky_html)
        if path == "/slow":
            if not demo.stopping.wait(demo.slow_s):
                self._send(200, "text/html; charset=utf-8", demo.flaky_html)
            return None
        if path in BINARIES:
            return self._send(200, *BINARIES[path])
        if path == "/huge":
            return self._stream_huge()
        if path == "/bomb":
            return self._stream_bomb()
        if path == "/latin1":
            return self._send(200, "text/html; charset=ISO-8859-1", demo.latin1_html)
        if path == "/nocharset":
            return self._send(200, "text/html", demo.cp1252_html)
        return self._send_file(path)

    def _send(self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_error_page(self, status: int) -> None:
        reason = self.responses.get(status, ("Error",))[0]
        body = f"<html><head><title>{status} {reason}</title></head><body><h1>{status} {reason}</h1><hr><p>{self.server_version}</p></body></html>\n"
        self._send(status, "text/html; charset=utf-8", body.encode())

    def _redirect(self, location: str) -> None:
        self._send(302, "text/html; charset=utf-8", f'<a href="{location}">Found</a>\n'.encode(), {"Location": location})

    def _send_file(self, path: str) -> None:
        """A site page: /x/ serves /x/index.html; only .html below the root, never outside it."""
        relative = path.lstrip("/") + ("index.html" if path.endswith("/") else "")
        file = (self.demo.root / relative).resolve()
        if file.suffix != ".html" or not file.is_relative_to(self.demo.root) or not file.is_file():
            return self._send_error_page(404)
        self._send(200, "text/html; charset=utf-8", file.read_bytes())

    def _stream_huge(self) -> None:
        """Real page text repeated past huge_bytes, in chunks, with no Content-Length to check up front."""
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        chunk = self.demo.flaky_html
        for _ in range(0, self.demo.huge_bytes, len(chunk)):
            self.wfile.write(chunk)

    def _stream_bomb(self) -> None:
        """gzip of bomb_bytes of HTML whitespace, compressed as it is sent: ~1000:1, so the wire size looks harmless."""
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        gzip = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        self.wfile.write(gzip.compress(b"<!DOCTYPE html>\n<html><head><title>Loading</title></head><body><p>"))
        block = b" " * 2**20
        for _ in range(self.demo.bomb_bytes // len(block)):
            self.wfile.write(gzip.compress(block))
        self.wfile.write(gzip.compress(b"</p></body></html>\n") + gzip.flush())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a built demo site on 127.0.0.1 until interrupted.")
    parser.add_argument("--root", type=Path, required=True, help="site folder written by flows.demo.site.build_site")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--delay-s", type=float, default=0.0, help="delay every response (a slow host)")
    parser.add_argument("--slow-s", type=float, default=DEFAULT_SLOW_S, help="how long /slow takes")
    args = parser.parse_args(argv)
    server = DemoServer(args.root, args.port, delay_s=args.delay_s, slow_s=args.slow_s).start()
    interrupted = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: interrupted.set())
    print(f"serving {server.root} at {server.base_url}", flush=True)
    interrupted.wait()
    server.stop()


if __name__ == "__main__":
    main()
