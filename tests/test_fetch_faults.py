"""fetch_to_warc against servers that answer with broken HTTP: every URL still ends in exactly one fetch log row.

The server here writes raw bytes on a loopback socket, so it can send what no HTTP library would: bad status lines,
garbled or conflicting headers, bytes that are not latin-1, broken chunked framing, redirects to nowhere. Each case
names the error code its URL must end with; none may raise out of the fetcher.
"""
from __future__ import annotations

import gzip
import re
import socket
import tempfile
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptcore.corpus.fetch import ERROR_CODES, FETCH_LOG_SCHEMA, FetchConfig, fetch_to_warc
from gptcore.corpus.warc import read_warc

HTML = b"<html><head><title>t</title></head><body><p>Hello from a broken server.</p></body></html>"
# Short waits so each case takes milliseconds; no retries, so a case's code comes from its one answer.
FAST = FetchConfig(
    allow_hosts=("127.0.0.0/8",),
    connect_timeout_s=2.0,
    read_timeout_s=1.0,
    deadline_s=10.0,
    retries=0,
    backoff_base_s=0.01,
    max_retry_wait_s=1.0,
    max_body_bytes=64 * 1024,
)

def http(status: str = "200 OK", headers: list[tuple[bytes | str, bytes | str]] = (), body: bytes = HTML,
         length: bool = True) -> bytes:
    """A raw answer: status line, headers as given (str or raw bytes), Connection: close, and the body."""
    lines = [f"HTTP/1.1 {status}".encode("latin-1")]
    names = set()
    for name, value in headers:
        name = name.encode("latin-1") if isinstance(name, str) else name
        value = value.encode("utf-8") if isinstance(value, str) else value
        names.add(name.lower())
        lines.append(name + b": " + value)
    if b"content-type" not in names:
        lines.append(b"Content-Type: text/html; charset=utf-8")
    if length and b"content-length" not in names and b"transfer-encoding" not in names:
        lines.append(b"Content-Length: %d" % len(body))
    lines.append(b"Connection: close")  # the server hangs up after each answer; the client must not reuse it
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class RawSite:
    """A loopback server that answers each path with fixed raw bytes, then hangs up.

    ``answers`` maps a path to its bytes; unknown paths (robots.txt among them) get a plain 404. A connection that
    does not start like an HTTP request (a TLS handshake, after a redirect to https) is closed at once.
    """

    def __init__(self) -> None:
        self.answers: dict[str, bytes] = {}
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> RawSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                head = conn.recv(65536)
                while head[:1].isalpha() and b"\r\n\r\n" not in head:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    head += chunk
                if not head[:1].isalpha():
                    return
                path = head.split(b" ", 2)[1].decode("latin-1").split("?", 1)[0]
                conn.sendall(self.answers.get(path, http("404 Not Found", body=b"not here")))
                conn.shutdown(socket.SHUT_WR)
            except OSError:  # the fetcher hung up first, as it may on a bad answer
                pass


@pytest.fixture
def raw_site() -> Iterator[RawSite]:
    with RawSite() as running:
        yield running


def fetch(tmp_path: Path, urls: list[tuple[str, str]], config: FetchConfig = FAST) -> list[dict]:
    table = fetch_to_warc(urls, tmp_path / "pages.warc.gz", config)
    assert table.schema.equals(FETCH_LOG_SCHEMA)
    return table.to_pylist()


def is_documented(code: str | None) -> bool:
    return code is None or code in ERROR_CODES or re.fullmatch(r"http_[0-9]{3}", code) is not None


def redirect(location: str | bytes, status: str = "302 Found") -> bytes:
    return http(status, [("Location", location)], body=b"")


def gzipped(body: bytes) -> bytes:
    return gzip.compress(body, mtime=0)


# Each answer is served for /case; the URL must end with the code given, and nothing may raise.
MALFORMED_ANSWERS = [
    # status line
    ("no answer at all", b"", "protocol_error"),
    ("garbage instead of a status line", b"garbage\r\n\r\n", "protocol_error"),
    ("non-numeric status code", b"HTTP/1.1 abc OK\r\n\r\n", "protocol_error"),
    ("HTTP/2 status line on HTTP/1.1", b"HTTP/2 200\r\n\r\n", "protocol_error"),
    ("HTTP/0.9 style body without a head", HTML, "protocol_error"),
    ("status code below 100", http("099 Odd"), "protocol_error"),
    ("status code 999", http("999 Odd"), "http_999"),
    ("only a 100 Continue, then nothing", b"HTTP/1.1 100 Continue\r\n\r\n", "protocol_error"),
    ("101 Switching Protocols nobody asked for", http("101 Switching Protocols", [("Upgrade", "x")]), "protocol_error"),
    # headers
    ("header line without a colon", b"HTTP/1.1 200 OK\r\nNoColonHere\r\n\r\n", "protocol_error"),
    ("NUL byte in a header value", http(headers=[(b"X-Odd", b"\xff\x00x")]), "protocol_error"),
    ("non-ASCII byte in a header name", http(headers=[(b"X-\xff", b"v")]), "protocol_error"),
    ("non-latin-1 UTF-8 in Content-Type is kept", http(headers=[("Content-Type", "text/html; charset=日本")]), None),
    ("raw 0xff bytes in a header value are kept", http(headers=[(b"X-Odd", b"\xff\xfe")]), None),
    ("missing Content-Type", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc", "not_html"),
    ("duplicate Content-Type headers that disagree",
     http(headers=[("Content-Type", "text/html"), ("Content-Type", "image/png")]), "not_html"),
    # framing and bodies
    ("conflicting Content-Length headers", http(headers=[("Content-Length", "5"), ("Content-Length", "6")]),
     "protocol_error"),
    ("non-numeric Content-Length", http(headers=[("Content-Length", "abc")]), "protocol_error"),
    ("negative Content-Length", http(headers=[("Content-Length", "-1")]), "protocol_error"),
    ("Unicode-digit Content-Length", http(headers=[("Content-Length", "٣")]), "protocol_error"),
    ("superscript Content-Length", http(headers=[("Content-Length", "²")]), "protocol_error"),
    ("30-digit Content-Length", http(headers=[("Content-Length", "9" * 30)]), "protocol_error"),
    ("body shorter than its Content-Length", http(headers=[("Content-Length", "500")], body=b"short"),
     "protocol_error"),
    ("bad chunk size", http(headers=[("Transfer-Encoding", "chunked")], body=b"zz\r\nxx\r\n0\r\n\r\n"),
     "protocol_error"),
    ("chunked body cut off mid-chunk", http(headers=[("Transfer-Encoding", "chunked")], body=b"10\r\nabc"),
     "protocol_error"),
    ("Transfer-Encoding other than chunked", http(headers=[("Transfer-Encoding", "gzip")]), "protocol_error"),
    ("Content-Encoding br (not asked for)", http(headers=[("Content-Encoding", "br")]), "decode_error"),
    ("Content-Encoding that is not a name", http(headers=[("Content-Encoding", "été")]), "decode_error"),
    ("stacked Content-Encoding gzip, gzip", http(headers=[("Content-Encoding", "gzip, gzip")],
                                                 body=gzipped(gzipped(HTML))), "decode_error"),
    ("gzip that is not gzip", http(headers=[("Content-Encoding", "gzip")], body=b"not gzip"), "decode_error"),
    ("gzip stream cut off", http(headers=[("Content-Encoding", "gzip")], body=gzipped(HTML)[:20]), "decode_error"),
    ("deflate stream cut off", http(headers=[("Content-Encoding", "deflate")], body=zlib.compress(HTML)[:20]),
     "decode_error"),
    ("complete gzip is kept", http(headers=[("Content-Encoding", "gzip")], body=gzipped(HTML)), None),
    # redirects
    ("302 without Location", http("302 Found", body=b""), "bad_redirect"),
    ("301 without Location", http("301 Moved Permanently", body=b""), "bad_redirect"),
    ("304 Not Modified (nothing was cached)", http("304 Not Modified", body=b"", length=False), "http_304"),
    ("300 Multiple Choices without Location", http("300 Multiple Choices", body=b""), "http_300"),
    ("two Location headers that disagree",
     http("302 Found", [("Location", "/a"), ("Location", "/b")], body=b""), "bad_redirect"),
    ("empty Location points back at itself", redirect(""), "redirect_loop"),
    ("relative Location is followed", redirect("elsewhere"), "http_404"),
    ("UTF-8 path in Location is followed, percent-encoded", redirect("/café"), "http_404"),
    ("raw 0xff bytes in Location are followed", redirect(b"/\xff\xfe"), "http_404"),
    ("unterminated IPv6 host", redirect("http://[::1"), "bad_redirect"),
    ("port above 65535", redirect("http://127.0.0.1:99999/"), "bad_redirect"),
    ("port too big for a C long", redirect("http://127.0.0.1:99999999999999999999/"), "bad_redirect"),
    ("negative port", redirect("http://127.0.0.1:-1/"), "bad_redirect"),
    ("port 0", redirect("http://127.0.0.1:0/"), "bad_redirect"),
    ("ftp scheme", redirect("ftp://127.0.0.1/x"), "bad_redirect"),
    ("javascript: scheme", redirect("javascript:alert(1)"), "bad_redirect"),
    ("empty IDNA label", redirect("http://xn--/"), "bad_redirect"),
    ("space in the host", redirect("http://a b/"), "bad_redirect"),
    ("absolute URL without a host", redirect("http:///path"), "http_404"),
    ("308 to a private address", redirect("http://10.0.0.1/", "308 Permanent Redirect"), "blocked_address"),
    # Retry-After (retries are off: the code is the status; what matters is that parsing never raises)
    ("Retry-After in Arabic-Indic digits", http("503 Busy", [("Retry-After", "٣")]), "http_503"),
    ("Retry-After in superscript digits", http("503 Busy", [("Retry-After", "²")]), "http_503"),
    ("Retry-After as an HTTP date", http("503 Busy", [("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")]), "http_503"),
    ("Retry-After date in year 99999", http("503 Busy", [("Retry-After", "Wed, 21 Oct 99999 07:28:00 GMT")]),
     "http_503"),
    ("Retry-After that is a word", http("429 Slow Down", [("Retry-After", "soon")]), "http_429"),
    ("negative Retry-After", http("429 Slow Down", [("Retry-After", "-5")]), "http_429"),
    ("400-digit Retry-After", http("429 Slow Down", [("Retry-After", "9" * 400)]), "http_429"),
]


@pytest.mark.parametrize(("answer", "code"), [case[1:] for case in MALFORMED_ANSWERS],
                         ids=[case[0] for case in MALFORMED_ANSWERS])
def test_each_malformed_answer_ends_in_one_row_with_its_code_and_the_next_url_is_still_fetched(
        raw_site, tmp_path, answer, code):
    raw_site.answers["/case"] = answer
    raw_site.answers["/good"] = http()

    rows = fetch(tmp_path, [("bad", raw_site.url("/case")), ("good", raw_site.url("/good"))])

    assert [(r["doc_id"], r["error"]) for r in rows] == [("bad", code), ("good", None)], rows[0]["detail"]
    assert (rows[0]["detail"] is None) == (code is None)
    assert sorted(page.doc_id for page in read_warc(tmp_path / "pages.warc.gz")) == (
        ["bad", "good"] if code is None else ["good"])


def test_a_bad_redirect_row_keeps_the_status_and_url_of_the_answer_that_carried_it(raw_site, tmp_path):
    raw_site.answers["/case"] = redirect("http://127.0.0.1:99999/")

    [row] = fetch(tmp_path, [("d", raw_site.url("/case"))])

    assert (row["error"], row["status"], row["final_url"], row["attempts"]) == (
        "bad_redirect", 302, raw_site.url("/case"), 1)
    assert "99999" in row["detail"] and "1-65535" in row["detail"]


ROBOTS_TXT = [("Content-Type", "text/plain")]
# Each answer is served for /robots.txt; the page behind it must end with the code given.
MALFORMED_ROBOTS = [
    ("garbage instead of a status line", b"garbage\r\n\r\n", "robots_disallowed"),
    ("body shorter than its Content-Length", http(headers=ROBOTS_TXT + [("Content-Length", "500")], body=b"User"),
     "robots_disallowed"),
    ("corrupt gzip", http(headers=ROBOTS_TXT + [("Content-Encoding", "gzip")], body=b"not gzip"),
     "robots_disallowed"),
    ("302 without Location", http("302 Found", body=b""), "robots_disallowed"),
    ("redirect to a port above 65535", redirect("http://127.0.0.1:99999/robots.txt"), "robots_disallowed"),
    ("redirect to javascript:", redirect("javascript:alert(1)"), "robots_disallowed"),
    ("redirect to an empty IDNA label", redirect("http://xn--/robots.txt"), "robots_disallowed"),
    ("redirect to itself, forever", redirect("/robots.txt"), None),  # too many redirects: absent (Google's rule)
    ("redirect to a private address", redirect("http://10.0.0.1/robots.txt"), "blocked_address"),
    ("Crawl-delay and Request-rate in superscript digits",
     http(headers=ROBOTS_TXT, body="User-agent: *\nCrawl-delay: ²\nRequest-rate: ²/٣\nDisallow: /x\n".encode()),
     None),
    ("Crawl-delay in Unicode digits does not hide the Disallow after it",
     http(headers=ROBOTS_TXT, body="User-agent: *\nCrawl-delay: ٣\nDisallow: /\n".encode()), "robots_disallowed"),
    ("NUL and invalid UTF-8 bytes", http(headers=ROBOTS_TXT, body=b"\xff\xfe\x00User-agent: *\nAllow: /\x00\n"), None),
    ("304 Not Modified", http("304 Not Modified", body=b"", length=False), None),
    ("503 with a superscript Retry-After", http("503 Busy", [("Retry-After", "²")]), "robots_disallowed"),
]


@pytest.mark.parametrize(("answer", "code"), [case[1:] for case in MALFORMED_ROBOTS],
                         ids=[case[0] for case in MALFORMED_ROBOTS])
def test_each_malformed_robots_txt_answer_settles_its_origin_without_raising(raw_site, tmp_path, answer, code):
    raw_site.answers["/robots.txt"] = answer
    raw_site.answers["/page"] = http()

    rows = fetch(tmp_path, [("a", raw_site.url("/page")), ("b", raw_site.url("/page?again"))])

    assert [r["error"] for r in rows] == [code, code], rows[0]["detail"]


@pytest.mark.parametrize("url", [None, "http://127.0.0.1:0/", "http://127.0.0.1:65536/", "http://xn--/",
                                 "http://a b/", "http://127.0.0.1%2e/"])
def test_input_urls_that_cannot_be_fetched_are_bad_url_rows_without_a_request(tmp_path, url):
    [row] = fetch(tmp_path, [("d", url)])

    assert (row["url"], row["error"], row["attempts"]) == (url, "bad_url", 0)


@pytest.mark.parametrize(("injected", "code"), [(RuntimeError("injected"), "fetch_error"),
                                                (ValueError("injected"), "fetch_error")])
def test_an_exception_nobody_foresaw_becomes_a_fetch_error_row_naming_it(raw_site, tmp_path, monkeypatch,
                                                                         injected, code):
    async def broken_body(self, chunk_size=None):
        raise injected
        yield b""  # an async generator, like the real aiter_raw

    monkeypatch.setattr(httpx.Response, "aiter_raw", broken_body)  # only a 200 body is read; a 404's is not
    raw_site.answers["/page"] = http()

    rows = fetch(tmp_path, [("a", raw_site.url("/page")), ("b", raw_site.url("/missing"))])

    assert [r["error"] for r in rows] == [code, "http_404"]
    assert type(injected).__name__ in rows[0]["detail"] and raw_site.url("/page") in rows[0]["detail"]


def test_a_keyboard_interrupt_is_not_recorded_as_a_fetch_error_and_leaves_no_warc(raw_site, tmp_path, monkeypatch):
    async def interrupted_body(self, chunk_size=None):
        raise KeyboardInterrupt
        yield b""

    monkeypatch.setattr(httpx.Response, "aiter_raw", interrupted_body)
    raw_site.answers["/page"] = http()

    with pytest.raises(KeyboardInterrupt):
        fetch_to_warc([("a", raw_site.url("/page"))], tmp_path / "pages.warc.gz", FAST)

    assert not (tmp_path / "pages.warc.gz").exists()


# --- property: whatever the headers say, one documented row per URL -----------------------------------------------

# Header values: some that broke parsers before, arbitrary text (sent as UTF-8) and arbitrary bytes; never CR or LF,
# which would end the header rather than garble it.
HEADER_VALUE = st.one_of(
    st.sampled_from(["", " ", "0", "-1", "²", "٣", "1e3", "9" * 30, "text/html", "gzip", "deflate", "identity",
                     "x-gzip", "Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 99999 23:59:59 GMT"]),
    st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=24),
    st.binary(max_size=24).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b"")),
)
# Redirect targets stay on loopback or are unusable: none may name a host that would need DNS.
PATH = st.text(st.characters(codec="utf-8", exclude_characters="\r\n/\\:"), max_size=16)
LOCATION = st.one_of(
    st.builds(
        "{}{}{}/{}".format,
        st.sampled_from(["http://", "https://", "HTTP://", "ftp://", "javascript:", "//", "http:", ""]),
        st.sampled_from(["127.0.0.1", "127.0.0.2", "[::1]", "[::1", "xn--", "a b", "", "127.0.0.1%2e"]),
        st.sampled_from(["", ":{port}", ":0", ":-1", ":65536", ":99999", ":" + "9" * 25, ":x", ":"]),
        PATH,
    ),
    PATH,
    PATH.map("/{}".format),
)
STATUS = st.sampled_from(["200 OK", "301 Moved", "302 Found", "303 See Other", "307 Temporary", "308 Permanent",
                          "300 Choices", "304 Not Modified", "404 Not Found", "429 Slow Down", "503 Busy"])
BODY = st.sampled_from([HTML, gzipped(HTML), gzipped(HTML)[:20], b"", b"\x1f\x8b\x08garbage"])


@pytest.fixture(scope="module")
def shared_site() -> Iterator[RawSite]:
    with RawSite() as running:
        yield running


@settings(max_examples=80, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    served_as=st.sampled_from(["page", "robots.txt"]),
    status=STATUS,
    location=st.none() | LOCATION,
    headers=st.dictionaries(
        st.sampled_from(["Retry-After", "Content-Type", "Content-Encoding", "Content-Length", "Location"]),
        HEADER_VALUE, max_size=5),
    body=BODY,
)
def test_any_header_values_and_redirect_targets_give_exactly_one_documented_row(
        shared_site, served_as, status, location, headers, body):
    headers = dict(headers)
    if location is not None:
        headers["Location"] = location.replace("{port}", str(shared_site.port))
    answer = http(status, list(headers.items()), body=body)
    shared_site.answers.clear()
    shared_site.answers["/page" if served_as == "page" else "/robots.txt"] = answer
    shared_site.answers.setdefault("/page", http())

    with tempfile.TemporaryDirectory() as folder:
        rows = fetch(Path(folder), [("d", shared_site.url("/page"))])
        pages = list(read_warc(Path(folder) / "pages.warc.gz"))

    [row] = rows
    assert row["url"] == shared_site.url("/page")
    assert is_documented(row["error"]) and row["error"] != "fetch_error", (row["error"], row["detail"])
    assert len(pages) == (row["error"] is None)
