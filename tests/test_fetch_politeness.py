"""The fetcher's pacing per origin, robots.txt Crawl-delay, robots.txt kept across calls, and one DNS lookup per host.

Gaps are measured on the server side, between the times requests arrive, so a loaded machine can stretch them but
shrinks them only by the jitter of one request's way in, which GAP_TOLERANCE_S allows for. The first request of a
call is the exception: it arrives late by the start-up of the whole call (measured: 40 ms idle, 250 ms with the cores
busy), so the gap after it (robots.txt -> first page, mostly) is not asserted here. Unpaced, the gaps are ~0.
"""
from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpcore
import pytest

from gptcore.corpus import netguard
from gptcore.corpus.fetch import FetchConfig, fetch_to_warc
from gptcore.corpus.netguard import AddressPolicy, BlockedAddressError, GuardedNetworkBackend
from gptcore.corpus.robots import ROBOTS_SCHEMA, RobotsStore, RobotsStoreError, crawl_delay_seconds, robots_table
from tests.loopback_site import RecordingBackend, Site

HTML = b"<html><body><p>Hello from a paced site.</p></body></html>"
GAP_TOLERANCE_S = 0.05
FAST = FetchConfig(allow_hosts=("127.0.0.1",), connect_timeout_s=5.0, read_timeout_s=5.0, deadline_s=20.0,
                   retries=0, concurrency=8, per_host_concurrency=4, max_body_bytes=64 * 1024)


class TimedSite(Site):
    """A loopback site that also keeps the arrival time of every request, robots.txt included."""

    def __init__(self) -> None:
        super().__init__()
        self.starts: list[float] = []

    def record_hit(self, path: str) -> None:
        self.starts.append(time.monotonic())
        super().record_hit(path)

    def gaps(self) -> list[float]:
        """Gaps between the arrivals after the first one of the call (module docstring)."""
        starts = sorted(self.starts)[1:]
        return [later - earlier for earlier, later in zip(starts, starts[1:])]


@pytest.fixture
def site() -> Iterator[TimedSite]:
    with TimedSite() as running:
        running.routes["/page"] = lambda h: h.reply(200, HTML)
        yield running


def robots(text: str):
    return lambda h: h.reply(200, text.encode(), "text/plain")


def pages(site: Site, n: int) -> list[tuple[str, str]]:
    return [(f"d{i}", site.url(f"/page?i={i}")) for i in range(n)]


def fetch(tmp_path: Path, urls: list[tuple[str, str]], config: FetchConfig = FAST, robots_dir: Path | None = None,
          name: str = "pages") -> list[dict]:
    return fetch_to_warc(urls, tmp_path / f"{name}.warc.gz", config, robots_dir).to_pylist()


def details(rows: list[dict]) -> list[str | None]:
    return [row["detail"] for row in rows]


def assert_paced(site: TimedSite, gap: float, requests: int) -> None:
    gaps = site.gaps()
    assert len(gaps) == requests - 2
    assert min(gaps) >= gap - GAP_TOLERANCE_S, gaps
    assert sum(gaps) >= (requests - 2) * gap - GAP_TOLERANCE_S, gaps


# --- pacing -------------------------------------------------------------------------------------------------------


def test_min_delay_spaces_the_request_starts_to_one_origin_across_all_workers(site, tmp_path):
    config = dataclasses.replace(FAST, min_delay_s=0.2)

    rows = fetch(tmp_path, pages(site, 5), config)

    assert [r["error"] for r in rows] == [None] * 5, details(rows)
    assert site.hits["/robots.txt"] == 1
    assert_paced(site, 0.2, requests=6)


def test_crawl_delay_of_our_group_raises_the_gap_and_other_groups_do_not_apply(site, tmp_path):
    site.routes["/robots.txt"] = robots("User-agent: otherbot\nCrawl-delay: 100\nDisallow: /\n\n"
                                        "User-agent: *\nCrawl-delay: 0.3\n")
    config = dataclasses.replace(FAST, min_delay_s=0.0)

    rows = fetch(tmp_path, pages(site, 4), config)

    assert [r["error"] for r in rows] == [None] * 4, details(rows)  # otherbot's Disallow is not ours
    assert_paced(site, 0.3, requests=5)


def test_a_crawl_delay_longer_than_max_crawl_delay_is_cut_to_it(site, tmp_path):
    site.routes["/robots.txt"] = robots("User-agent: gptforge\nCrawl-delay: 100\n")
    config = dataclasses.replace(FAST, max_crawl_delay_s=0.2)

    rows = fetch(tmp_path, pages(site, 4), config)

    assert [r["error"] for r in rows] == [None] * 4, details(rows)
    assert_paced(site, 0.2, requests=5)


def test_waiting_for_a_paced_turn_does_not_count_against_the_per_url_deadline(site, tmp_path):
    # The last page starts about 2 s in, past the deadline: only time spent on the URL itself counts.
    config = dataclasses.replace(FAST, min_delay_s=0.4, deadline_s=1.5)

    rows = fetch(tmp_path, pages(site, 5), config)

    assert [r["error"] for r in rows] == [None] * 5, details(rows)
    assert_paced(site, 0.4, requests=6)


@pytest.mark.parametrize("value", ["²", "٣", "1e3", "-1", "soon", "", "0x10", "1.2.3", "9" * 400 + "x"])
def test_a_garbage_crawl_delay_is_ignored_and_the_rules_after_it_still_apply(site, tmp_path, value):
    site.routes["/robots.txt"] = robots(f"User-agent: *\nCrawl-delay: {value}\nRequest-rate: ²/٣\n"
                                        "Disallow: /private\n")

    rows = fetch(tmp_path, [("a", site.url("/page")), ("b", site.url("/private"))])

    assert [r["error"] for r in rows] == [None, "robots_disallowed"]
    assert crawl_delay_seconds(value) is None


@pytest.mark.parametrize(("value", "seconds"), [("5", 5.0), (" 0.5 ", 0.5), ("2.", 2.0), (".25", 0.25),
                                                ("0", 0.0), ("9" * 400, 86400.0)])
def test_crawl_delay_values_in_ascii_decimal_are_seconds(value, seconds):
    assert crawl_delay_seconds(value) == seconds


@pytest.mark.parametrize("field", ["min_delay_s", "max_crawl_delay_s"])
def test_negative_delays_are_refused(field):
    with pytest.raises(ValueError, match=field):
        FetchConfig(**{field: -0.1})


# --- robots.txt kept in robots_dir ---------------------------------------------------------------------------------


def test_with_robots_dir_a_second_call_on_the_origin_asks_nothing_and_gets_the_same_verdict(site, tmp_path):
    site.routes["/robots.txt"] = robots("User-agent: gptforge\nDisallow: /private\n")
    site.routes["/private"] = lambda h: h.reply(200, HTML)
    urls = [("a", site.url("/page")), ("b", site.url("/private"))]
    robots_dir = tmp_path / "robots"

    first = fetch(tmp_path, urls, robots_dir=robots_dir, name="shard-0")
    second = fetch(tmp_path, urls, robots_dir=robots_dir, name="shard-1")

    assert [r["error"] for r in first] == [r["error"] for r in second] == [None, "robots_disallowed"]
    assert site.hits["/robots.txt"] == 1 and site.hits["/private"] == 0
    [stored] = robots_dir.iterdir()
    assert stored.suffix == ".json" and len(stored.stem) == 40  # sha1 of the origin: a safe name for any host
    table = robots_table(robots_dir)
    assert table.schema.equals(ROBOTS_SCHEMA)
    [row] = table.to_pylist()
    assert (row["origin"], row["outcome"], row["status"]) == (f"http://127.0.0.1:{site.port}", "answer", 200)
    assert row["body"] == "User-agent: gptforge\nDisallow: /private\n" and row["fetched_at"].endswith("Z")


def test_a_stored_crawl_delay_paces_the_next_call_without_asking_again(site, tmp_path):
    site.routes["/robots.txt"] = robots("User-agent: *\nCrawl-delay: 0.2\n")
    robots_dir = tmp_path / "robots"
    fetch(tmp_path, pages(site, 1), robots_dir=robots_dir, name="shard-0")
    site.starts.clear()

    rows = fetch(tmp_path, pages(site, 4), robots_dir=robots_dir, name="shard-1")

    assert [r["error"] for r in rows] == [None] * 4 and site.hits["/robots.txt"] == 1
    assert_paced(site, 0.2, requests=4)


def test_pace_from_start_keeps_the_gap_after_the_previous_call_on_the_origin(site, tmp_path):
    # The next wave's chunk of an origin starts right after the last one ended: a 1 s gap is far more than a call's
    # start-up (module docstring), so without pace_from_start its first page would arrive too soon.
    config = dataclasses.replace(FAST, min_delay_s=1.0)
    robots_dir = tmp_path / "robots"
    fetch(tmp_path, pages(site, 1), config, robots_dir=robots_dir, name="wave-0")
    ended = max(site.starts)

    rows = fetch_to_warc(pages(site, 2), tmp_path / "wave-1.warc.gz", config, robots_dir,
                         pace_from_start=True).to_pylist()

    assert [r["error"] for r in rows] == [None] * 2 and site.hits["/robots.txt"] == 1
    first, second = sorted(start for start in site.starts if start > ended)
    assert first - ended >= 1.0 - GAP_TOLERANCE_S and second - first >= 1.0 - GAP_TOLERANCE_S


def test_a_robots_dir_that_cannot_be_written_fails_the_call_and_leaves_no_warc(site, tmp_path):
    (tmp_path / "robots").write_text("a file, not a folder")

    with pytest.raises(RobotsStoreError, match="robots.txt of http://127.0.0.1"):
        fetch(tmp_path, [("a", site.url("/page"))], robots_dir=tmp_path / "robots")

    assert not (tmp_path / "pages.warc.gz").exists()


def test_an_unreachable_origin_is_kept_too_so_a_rerun_does_not_even_resolve_it(tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    urls = [("a", f"http://127.0.0.1:{port}/page")]
    robots_dir = tmp_path / "robots"
    lookups = count_lookups(monkeypatch)

    first = fetch(tmp_path, urls, robots_dir=robots_dir, name="first")
    looked_up = sum(lookups.values())
    second = fetch(tmp_path, urls, robots_dir=robots_dir, name="second")

    assert [r["error"] for r in first] == [r["error"] for r in second] == ["connect_error"]
    assert looked_up == 1 and sum(lookups.values()) == 1
    [row] = robots_table(robots_dir).to_pylist()
    assert (row["outcome"], row["status"], row["body"]) == ("connect_error", None, None)


def test_a_stored_file_that_holds_no_answer_is_asked_again_and_replaced(site, tmp_path):
    robots_dir = tmp_path / "robots"
    store = RobotsStore(robots_dir)
    robots_dir.mkdir()
    store.path(f"http://127.0.0.1:{site.port}").write_text("{not json")

    rows = fetch(tmp_path, [("a", site.url("/page"))], robots_dir=robots_dir)

    assert rows[0]["error"] is None and site.hits["/robots.txt"] == 1
    assert robots_table(robots_dir).column("status").to_pylist() == [404]


def test_with_respect_robots_off_robots_txt_is_not_asked_and_robots_dir_stays_empty(site, tmp_path):
    config = dataclasses.replace(FAST, respect_robots=False)

    fetch(tmp_path, [("a", site.url("/page"))], config, robots_dir=tmp_path / "robots")

    assert site.hits["/robots.txt"] == 0 and not (tmp_path / "robots").exists()
    assert robots_table(tmp_path / "robots").num_rows == 0


# --- DNS: once per host and port, every address still vetted --------------------------------------------------------


def count_lookups(monkeypatch) -> Counter[tuple[str, int]]:
    lookups: Counter[tuple[str, int]] = Counter()
    real = netguard.resolve

    async def counting(host: str, port: int, timeout: float | None):
        lookups[(host, port)] += 1
        return await real(host, port, timeout)

    monkeypatch.setattr(netguard, "resolve", counting)
    return lookups


def test_each_host_is_resolved_once_however_many_connections_it_gets(site, tmp_path, monkeypatch):
    site.routes["/page"] = lambda h: h.reply(200, HTML, headers={"Connection": "close"})  # a new connection each
    lookups = count_lookups(monkeypatch)
    config = dataclasses.replace(FAST, allow_hosts=("127.0.0.1", "localhost"))
    urls = pages(site, 8) + [(f"l{i}", site.url(f"/page?l={i}", host="localhost")) for i in range(4)]

    rows = fetch(tmp_path, urls, config)

    assert [r["error"] for r in rows] == [None] * 12, details(rows)
    assert lookups == {("127.0.0.1", site.port): 1, ("localhost", site.port): 1}


def test_cached_addresses_are_the_vetted_ones_and_a_refused_host_is_vetted_again_each_time(monkeypatch):
    answers = {"mixed.example": ["10.0.0.1", "93.184.215.14"], "private.example": ["10.0.0.2"]}
    lookups: Counter[str] = Counter()

    async def fake_resolve(host, port, timeout):
        lookups[host] += 1
        return [ipaddress.ip_address(ip) for ip in answers[host]]

    monkeypatch.setattr(netguard, "resolve", fake_resolve)
    inner = RecordingBackend()
    backend = GuardedNetworkBackend(AddressPolicy.from_allow_hosts(()), inner)

    async def connect_twice_each() -> None:
        for host in ("mixed.example", "mixed.example", "private.example", "private.example"):
            with pytest.raises((httpcore.ConnectError, BlockedAddressError)):
                await backend.connect_tcp(host, 80, timeout=1)

    asyncio.run(connect_twice_each())

    assert inner.connected_to == ["93.184.215.14", "93.184.215.14"]  # never the private one, cached or not
    assert lookups == {"mixed.example": 1, "private.example": 2}
