"""fetch_to_warc against a loopback web site the tests serve themselves (no other network)."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import gzip
import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path

import httpcore
import pytest

from gptcore.corpus.fetch import ERROR_CODES, FETCH_LOG_SCHEMA, USER_AGENT, FetchConfig, fetch_to_warc
from gptcore.corpus.netguard import AddressPolicy, BlockedAddressError, GuardedNetworkBackend, block_reason
from gptcore.corpus.warc import read_warc
from tests.loopback_site import Handler, RecordingBackend, Route, Site

HTML = b"<html><head><title>t</title></head><body><p>Hello from the loopback web.</p></body></html>"
LOOPBACK_ONLY = ("127.0.0.1",)
# Small limits and waits so every failure mode shows up in milliseconds.
FAST = FetchConfig(
    allow_hosts=LOOPBACK_ONLY,
    connect_timeout_s=2.0,
    read_timeout_s=0.3,
    deadline_s=10.0,
    retries=2,
    backoff_base_s=0.01,
    max_retry_wait_s=1.0,
    max_body_bytes=64 * 1024,
)


@pytest.fixture
def site() -> Iterator[Site]:
    with Site() as running:
        running.routes["/page"] = lambda h: h.reply(200, HTML)
        yield running


def fetch(tmp_path: Path, urls: list[tuple[str, str]], config: FetchConfig = FAST) -> list[dict]:
    return fetch_to_warc(urls, tmp_path / "pages.warc.gz", config).to_pylist()


def fetch_one(tmp_path: Path, url: str, config: FetchConfig = FAST) -> dict:
    [row] = fetch(tmp_path, [("d1", url)], config)
    return row


def pages_in(tmp_path: Path) -> list:
    return list(read_warc(tmp_path / "pages.warc.gz"))


# --- answers -----------------------------------------------------------------------------------------------------


def test_html_page_is_logged_without_error_and_written_to_the_warc(site, tmp_path):
    row = fetch_one(tmp_path, site.url("/page"))

    assert row["error"] is None and row["detail"] is None
    assert (row["status"], row["bytes"], row["attempts"], row["redirects"]) == (200, len(HTML), 1, 0)
    assert row["final_url"] == site.url("/page") and row["content_type"].startswith("text/html")
    assert row["fetched_at"].endswith("Z") and row["elapsed_s"] >= 0
    [page] = pages_in(tmp_path)
    assert (page.doc_id, page.url, page.body, page.http_status) == ("d1", site.url("/page"), HTML, 200)


def test_fetch_log_has_the_documented_schema_and_one_row_per_input_in_input_order(site, tmp_path):
    urls = [("a", site.url("/page")), ("b", site.url("/missing")), ("c", "not a url"), ("a", site.url("/page"))]

    table = fetch_to_warc(urls, tmp_path / "pages.warc.gz", FAST)

    assert table.schema.equals(FETCH_LOG_SCHEMA)
    assert [(r["doc_id"], r["url"]) for r in table.to_pylist()] == urls
    assert [r["error"] for r in table.to_pylist()] == [None, "http_404", "bad_url", None]


def test_404_is_logged_as_http_404_and_not_written(site, tmp_path):
    row = fetch_one(tmp_path, site.url("/missing"))

    assert (row["error"], row["status"], row["attempts"]) == ("http_404", 404, 1)
    assert pages_in(tmp_path) == []


def test_500_is_retried_and_a_later_success_is_kept(site, tmp_path):
    answers = iter([500, 503])
    site.routes["/flaky"] = lambda h: h.reply(next(answers, 200), HTML)

    row = fetch_one(tmp_path, site.url("/flaky"))

    assert (row["error"], row["status"], row["attempts"]) == (None, 200, 3)


def test_persistent_5xx_gives_http_status_error_after_all_retries(site, tmp_path):
    site.routes["/down"] = lambda h: h.reply(503, b"busy")

    row = fetch_one(tmp_path, site.url("/down"))

    assert (row["error"], row["status"], row["attempts"]) == ("http_503", 503, FAST.retries + 1)


def test_429_with_retry_after_is_retried(site, tmp_path):
    answers = iter([429])
    site.routes["/limited"] = lambda h: h.reply(next(answers, 200), HTML, headers={"Retry-After": "0"})

    row = fetch_one(tmp_path, site.url("/limited"))

    assert (row["error"], row["attempts"]) == (None, 2)


def test_429_asking_for_longer_than_max_retry_wait_is_not_waited_for(site, tmp_path):
    site.routes["/limited"] = lambda h: h.reply(429, b"", headers={"Retry-After": "3600"})

    row = fetch_one(tmp_path, site.url("/limited"))

    assert (row["error"], row["attempts"]) == ("http_429", 1)
    assert "Retry-After: 3600" in row["detail"]


def test_non_html_content_type_is_refused(site, tmp_path):
    site.routes["/image"] = lambda h: h.reply(200, b"\x89PNG....", content_type="image/png")

    row = fetch_one(tmp_path, site.url("/image"))

    assert (row["error"], row["status"], row["content_type"]) == ("not_html", 200, "image/png")


def test_bad_urls_are_logged_without_a_request(tmp_path):
    rows = fetch(tmp_path, [("a", "ftp://example.com/x"), ("b", "no scheme"), ("c", "http://"), ("d", "http://[::1")])

    assert [(r["error"], r["attempts"]) for r in rows] == [("bad_url", 0)] * 4


def test_empty_input_gives_an_empty_log_and_a_warc_without_pages(tmp_path):
    assert fetch(tmp_path, []) == []
    assert pages_in(tmp_path) == []


def test_warc_appears_atomically_even_when_nothing_was_usable(site, tmp_path):
    fetch_one(tmp_path, site.url("/missing"))

    assert [p.name for p in tmp_path.iterdir()] == ["pages.warc.gz"]
    assert pages_in(tmp_path) == []


# --- redirects ---------------------------------------------------------------------------------------------------


def redirect(to: str) -> Route:
    return lambda h: h.reply(302, b"", headers={"Location": to})


def test_redirect_chain_within_the_limit_is_followed(site, tmp_path):
    site.routes["/r1"] = redirect("/r2")
    site.routes["/r2"] = redirect(site.url("/page"))

    row = fetch_one(tmp_path, site.url("/r1"))

    assert (row["error"], row["redirects"], row["attempts"], row["final_url"]) == (None, 2, 3, site.url("/page"))
    [page] = pages_in(tmp_path)
    assert (page.doc_id, page.url) == ("d1", site.url("/page"))


def test_redirect_loop_is_detected(site, tmp_path):
    site.routes["/ping"] = redirect("/pong")
    site.routes["/pong"] = redirect("/ping")

    row = fetch_one(tmp_path, site.url("/ping"))

    assert row["error"] == "redirect_loop"
    assert site.hits["/ping"] == 1 and site.hits["/pong"] == 1


def test_more_redirects_than_max_redirects_fail(site, tmp_path):
    for hop in range(10):
        site.routes[f"/hop{hop}"] = redirect(f"/hop{hop + 1}")
    config = dataclasses.replace(FAST, max_redirects=3)

    row = fetch_one(tmp_path, site.url("/hop0"), config)

    assert (row["error"], row["redirects"]) == ("too_many_redirects", 3)
    assert site.hits["/hop4"] == 0


# --- size limits and timeouts --------------------------------------------------------------------------------------


def test_body_over_max_body_bytes_with_content_length_is_refused_before_reading(site, tmp_path):
    site.routes["/big"] = lambda h: h.reply(200, b"x" * (FAST.max_body_bytes + 1))

    row = fetch_one(tmp_path, site.url("/big"))

    assert row["error"] == "too_large" and "Content-Length" in row["detail"]


def send_chunked(handler: Handler, chunks: Iterator[bytes]) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    try:
        for chunk in chunks:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        handler.wfile.write(b"0\r\n\r\n")
    except OSError:  # the fetcher hung up, as it should
        pass


def test_chunked_body_without_length_is_cut_off_at_max_body_bytes(site, tmp_path):
    site.routes["/stream"] = lambda h: send_chunked(h, (b"y" * 16384 for _ in range(100)))

    row = fetch_one(tmp_path, site.url("/stream"))

    assert row["error"] == "too_large"
    assert pages_in(tmp_path) == []


GZIP_BOMB = gzip.compress(b"\0" * (32 * 1024 * 1024), compresslevel=9)  # ~32 KiB that inflate to 32 MiB


def test_gzip_compression_bomb_is_refused_at_max_body_bytes(site, tmp_path):
    site.routes["/bomb"] = lambda h: h.reply(200, GZIP_BOMB, headers={"Content-Encoding": "gzip"})

    row = fetch_one(tmp_path, site.url("/bomb"))

    assert len(GZIP_BOMB) < FAST.max_body_bytes  # small on the wire: only the decoded size can catch it
    assert row["error"] == "too_large"


def test_unsupported_content_encoding_is_a_decode_error(site, tmp_path):
    site.routes["/br"] = lambda h: h.reply(200, b"\x1b\x00", headers={"Content-Encoding": "br"})

    row = fetch_one(tmp_path, site.url("/br"))

    assert row["error"] == "decode_error"


def test_server_slower_than_read_timeout_gives_timeout(site, tmp_path):
    site.routes["/slow"] = lambda h: (site.release.wait(5), h.reply(200, HTML))
    config = dataclasses.replace(FAST, retries=0)

    row = fetch_one(tmp_path, site.url("/slow"), config)

    assert (row["error"], row["status"]) == ("timeout", None)
    assert "ReadTimeout" in row["detail"]


def test_total_deadline_bounds_a_url_whose_server_never_finishes(site, tmp_path):
    site.routes["/slow"] = lambda h: (site.release.wait(5), h.reply(200, HTML))
    config = dataclasses.replace(FAST, read_timeout_s=5.0, deadline_s=0.3)

    row = fetch_one(tmp_path, site.url("/slow"), config)

    assert row["error"] == "timeout" and "deadline" in row["detail"]


# --- robots.txt and politeness ------------------------------------------------------------------------------------


def test_robots_txt_disallow_is_respected_and_fetched_once_per_host(site, tmp_path):
    site.routes["/robots.txt"] = lambda h: h.reply(200, b"User-agent: gptforge\nDisallow: /private\n", "text/plain")
    site.routes["/private"] = lambda h: h.reply(200, HTML)

    rows = fetch(tmp_path, [("a", site.url("/private")), ("b", site.url("/page")), ("c", site.url("/private?x=1"))])

    assert [r["error"] for r in rows] == ["robots_disallowed", None, "robots_disallowed"]
    assert site.hits["/private"] == 0 and site.hits["/robots.txt"] == 1
    assert "gptforge" in USER_AGENT


def test_robots_txt_server_error_disallows_the_whole_host(site, tmp_path):
    site.routes["/robots.txt"] = lambda h: h.reply(503, b"")

    row = fetch_one(tmp_path, site.url("/page"))

    assert row["error"] == "robots_disallowed" and "503" in row["detail"]
    assert site.hits["/page"] == 0


def test_robots_txt_is_ignored_when_respect_robots_is_off(site, tmp_path):
    site.routes["/robots.txt"] = lambda h: h.reply(200, b"User-agent: *\nDisallow: /\n", "text/plain")
    config = dataclasses.replace(FAST, respect_robots=False)

    row = fetch_one(tmp_path, site.url("/page"), config)

    assert row["error"] is None and site.hits["/robots.txt"] == 0


def test_per_host_concurrency_is_never_exceeded(site, tmp_path):
    def slow_page(handler: Handler) -> None:
        time.sleep(0.05)
        handler.reply(200, HTML)

    site.routes["/slow-page"] = slow_page
    config = dataclasses.replace(FAST, per_host_concurrency=2, concurrency=8)

    rows = fetch(tmp_path, [(f"d{i}", site.url(f"/slow-page?i={i}")) for i in range(12)], config)

    assert all(r["error"] is None for r in rows)
    assert 1 <= site.max_in_flight <= 2


# --- SSRF guard ---------------------------------------------------------------------------------------------------

NO_ALLOW = dataclasses.replace(FAST, allow_hosts=())


def test_loopback_is_refused_unless_allowed(site, tmp_path):
    row = fetch_one(tmp_path, site.url("/page"), NO_ALLOW)

    assert (row["error"], row["attempts"]) == ("blocked_address", 0)
    assert "127.0.0.1" in row["detail"]
    assert sum(site.hits.values()) == 0


def test_localhost_name_is_refused_after_resolution(site, tmp_path):
    row = fetch_one(tmp_path, site.url("/page", host="localhost"), NO_ALLOW)

    assert row["error"] == "blocked_address" and "localhost" in row["detail"]
    assert sum(site.hits.values()) == 0


@pytest.mark.parametrize("host", ["[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "0.0.0.0", "127.1"])
def test_ipv6_loopback_and_ipv4_mapped_and_odd_loopback_spellings_are_refused(site, tmp_path, host):
    row = fetch_one(tmp_path, site.url("/page", host=host), NO_ALLOW)

    assert row["error"] == "blocked_address"


@pytest.mark.parametrize(
    "target", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[fd00::1]/"]
)
def test_redirect_from_an_allowed_host_to_a_private_address_is_refused(site, tmp_path, target):
    site.routes["/jump"] = redirect(target)

    row = fetch_one(tmp_path, site.url("/jump"))

    assert (row["error"], row["redirects"]) == ("blocked_address", 1)
    assert ipaddress.ip_address(target.split("/")[2].strip("[]")).compressed in row["detail"]


def test_a_host_listed_in_allow_hosts_may_use_a_private_address(site, tmp_path):
    config = dataclasses.replace(FAST, allow_hosts=("LocalHost",))

    row = fetch_one(tmp_path, site.url("/page", host="localhost"), config)

    assert row["error"] is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("169.254.169.254", "link_local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not_global"),  # carrier-grade NAT
        ("::1", "loopback"),
        ("fe80::1", "link_local"),
        ("fd00::1", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:a00:1::", "private"),  # 6to4 wrapping 10.0.0.1
        ("93.184.215.14", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:93.184.215.14", None),
    ],
)
def test_block_reason_names_what_makes_an_address_non_public(address, reason):
    assert block_reason(ipaddress.ip_address(address)) == reason


def test_guard_refuses_before_opening_any_connection():
    inner = RecordingBackend()
    backend = GuardedNetworkBackend(AddressPolicy.from_allow_hosts(()), inner)

    with pytest.raises(BlockedAddressError, match="10.0.0.1"):
        asyncio.run(backend.connect_tcp("10.0.0.1", 80, timeout=1))

    assert inner.connected_to == []


def test_guard_connects_to_the_vetted_ip_not_the_name_so_dns_cannot_change_it_in_between():
    inner = RecordingBackend()
    backend = GuardedNetworkBackend(AddressPolicy.from_allow_hosts(["127.0.0.0/8"]), inner)

    with pytest.raises(httpcore.ConnectError):
        asyncio.run(backend.connect_tcp("localhost", 80, timeout=1))

    assert inner.connected_to and all(ipaddress.ip_address(ip).is_loopback for ip in inner.connected_to)
    assert "localhost" not in inner.connected_to


# --- WARC round trip -----------------------------------------------------------------------------------------------


def test_fetched_pages_read_back_from_the_warc_with_their_bodies_and_doc_ids(site, tmp_path):
    latin1 = "<html><body>Café crème</body></html>".encode("latin-1")
    site.routes["/latin1"] = lambda h: h.reply(200, latin1, content_type="text/html; charset=iso-8859-1")
    site.routes["/gzipped"] = lambda h: h.reply(200, gzip.compress(HTML), headers={"Content-Encoding": "gzip"})
    site.routes["/chunked"] = lambda h: send_chunked(h, iter([HTML[:10], HTML[10:]]))
    urls = [("p", site.url("/page")), ("l", site.url("/latin1")), ("g", site.url("/gzipped")),
            ("c", site.url("/chunked")), ("x", site.url("/missing"))]

    rows = fetch(tmp_path, urls)

    assert [r["error"] for r in rows] == [None, None, None, None, "http_404"]
    pages = {page.doc_id: page for page in pages_in(tmp_path)}
    assert {doc_id: page.body for doc_id, page in pages.items()} == {"p": HTML, "l": latin1, "g": HTML, "c": HTML}
    assert pages["l"].content_type == "text/html; charset=iso-8859-1"
    assert all(page.source == "warc" and page.fetched_at.utcoffset() == dt.timedelta(0) for page in pages.values())


def test_error_codes_are_documented():
    assert {"timeout", "blocked_address", "robots_disallowed", "too_large", "not_html", "bad_url", "bad_redirect",
            "protocol_error", "decode_error", "fetch_error"} <= set(ERROR_CODES)
