"""Fetch shards planned by origin: the per-origin limits hold for the whole build, on any number of Dask workers.

Served by a few dozen loopback origins (distinct 127.0.2.N addresses at one fixed port, so doc ids are the same on
every run), one of them with more pages than a shard holds. What is asserted is counted on the server side.
"""
from __future__ import annotations

import json
import random
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from flows.demo.dumpgen import submission_record, write_dump
from gptcore.corpus.dumps import LinkFilterConfig
from gptcore.corpus.fetch import FetchConfig
from gptcore.corpus.minhash import MinHashConfig
from gptcore.corpus.process import ProcessConfig
from gptcore.corpus.steps import (FETCH_PLAN, LINKS, SHARDS_DIR, extract_fetched, fetch_shard, fetch_shards,
                                  fetch_waves, filter_links, merge_link_tables, origin_key, origin_keys,
                                  plan_fetch_shards)

PORT = 18790
HOSTS = [f"127.0.2.{i}" for i in range(1, 25)]  # 24 origins; nothing else in the tests serves on 127.0.2.0/24
BIG_PAGES, SHARD_SIZE, PER_HOST = 25, 10, 2  # the first origin needs three shards, hence three waves
PAGE_DELAY_S = 0.05  # each page answer is held this long, so that requests to one origin overlap
ROBOTS = b"User-agent: *\nDisallow: /private/\n"


def pages_of(index: int) -> list[str]:
    return [f"/page/{p}" for p in range(BIG_PAGES if index == 0 else 1 + index % 3)]


def page_html(host: str, path: str) -> bytes:
    words = " ".join(random.Random(f"{host}{path}").choices(
        ["river", "stone", "garden", "letter", "window", "market", "winter", "bridge", "candle", "harbour"], k=60))
    return f"<html><head><title>{path}</title></head><body><article><p>The {path} of {host}: {words}.</p>" \
           f"</article></body></html>".encode()


class Origin:
    """One loopback origin: its pages and robots.txt, with the hits per path and the most requests in flight.

    A request counts as in flight from its arrival until just before its answer is sent, a span inside the one the
    client sees, so the server never counts more requests in flight than the client had."""

    def __init__(self, host: str, paths: list[str]) -> None:
        self.host, self.pages = host, {path: page_html(host, path) for path in paths}
        self.hits: Counter[str] = Counter()
        self.max_in_flight = self._in_flight = 0
        self._lock, self._release = threading.Lock(), threading.Event()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (stdlib name)
                origin.answer(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, PORT), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?", 1)[0]
        with self._lock:
            self.hits[path] += 1
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if path == "/robots.txt":
                status, body, kind = 200, ROBOTS, "text/plain"
            else:
                self._release.wait(PAGE_DELAY_S)
                status, kind = (200, "text/html; charset=utf-8") if path in self.pages else (404, "text/html")
                body = self.pages.get(path, b"<html>not here</html>")
        finally:
            with self._lock:
                self._in_flight -= 1
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{PORT}{path}"

    def __enter__(self) -> Origin:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


def dump_of(path: Path, urls: list[str]) -> Path:
    return write_dump(path, [submission_record(f"s{i}", url, score=10 + i % 7) for i, url in enumerate(urls)])


@pytest.fixture(scope="module")
def web():
    origins = [Origin(host, pages_of(i)) for i, host in enumerate(HOSTS)]
    for origin in origins:
        origin.__enter__()
    try:
        yield origins
    finally:
        for origin in origins:
            origin.__exit__()


@pytest.fixture(scope="module")
def built(web, prefect_harness, tmp_path_factory):
    """One build on a 2-worker Dask cluster: the version folder and its work folder's fetch plan."""
    from flows.build_corpus import build_corpus

    folder = tmp_path_factory.mktemp("politeness")
    dump = dump_of(folder / "RS_2020-01.zst", [o.url(p) for o in web for p in o.pages])
    out = Path(build_corpus(
        dumps=[str(dump)], version="p1", data_root=str(folder / "data"), shard_size=SHARD_SIZE,
        fetch={"allow_hosts": ["127.0.2.0/24"], "per_host_concurrency": PER_HOST, "concurrency": 8,
               "connect_timeout_s": 5.0, "read_timeout_s": 5.0, "retries": 0},
        process={"quality": {"min_words": 1, "languages": ["en"]}}, task_runner="dask", workers=2))
    return out


def test_no_origin_ever_has_more_requests_in_flight_than_its_limit(web, built):
    assert {o.host: o.max_in_flight for o in web if o.max_in_flight > PER_HOST} == {}
    assert web[0].max_in_flight >= 1


def test_robots_txt_is_asked_once_per_origin_and_every_page_once(web, built):
    assert {o.host: o.hits["/robots.txt"] for o in web} == {o.host: 1 for o in web}
    assert {(o.host, p): n for o in web for p, n in o.hits.items() if p != "/robots.txt"} == \
        {(o.host, p): 1 for o in web for p in o.pages}


def test_every_url_has_one_fetch_log_row_and_the_robots_answers_are_published(web, built):
    log = duckdb.sql(f"select url, count(*) from read_parquet('{built}/fetch_log.parquet') group by 1").fetchall()
    assert dict(log) == {o.url(p): 1 for o in web for p in o.pages}
    robots = pq.read_table(built / "robots.parquet").to_pylist()
    assert sorted(r["origin"] for r in robots) == sorted(f"http://{o.host}:{PORT}" for o in web)
    manifest = json.loads((built / "manifest.json").read_text())
    assert "robots.parquet" in manifest["outputs"]
    reddit = manifest["counts"]["accounting"]["reddit"]
    assert reddit["inputs"] == reddit["kept"] + reddit["rejected"] == sum(len(o.pages) for o in web)


# --- the planner -------------------------------------------------------------------------------------------------


def check_plan(origins: list[str], shard_size: int) -> tuple[np.ndarray, list[dict]]:
    shard_of, shards = plan_fetch_shards(origins, shard_size)
    assert len(shard_of) == len(origins) and all(0 <= s < len(shards) for s in shard_of)  # each link in one shard
    assert [s["links"] for s in shards] == np.bincount(shard_of, minlength=len(shards)).tolist()
    assert all(0 < s["links"] <= shard_size for s in shards)
    assert [s["wave"] for s in shards] == sorted(s["wave"] for s in shards)  # numbered wave by wave
    count = Counter(origins)
    shards_of: dict[str, list[int]] = {}
    for origin, shard in zip(origins, shard_of.tolist()):
        if shard not in shards_of.setdefault(origin, []):
            shards_of[origin].append(shard)
    for origin, used in shards_of.items():
        assert len(used) == -(-count[origin] // shard_size), origin  # one shard, or one per chunk
        waves = [shards[s]["wave"] for s in used]
        assert sorted(waves) == list(range(len(used))), origin  # chunk k in wave k: never two in one wave
    assert sum(s["origins"] for s in shards) == sum(len(u) for u in shards_of.values())
    return shard_of, shards


def test_the_plan_keeps_origins_whole_and_puts_the_chunks_of_a_large_one_in_successive_waves():
    _, shards = check_plan(["a"] * 25 + ["b"] * 3 + ["c"] * 7 + [""], 10)
    assert [(s["wave"], s["links"]) for s in shards] == [(0, 10), (0, 10), (0, 1), (1, 10), (2, 5)]
    rng = random.Random(7)
    skewed = [f"http://h{min(int(rng.paretovariate(0.8)), 500)}.example:80" for _ in range(5000)]
    shard_of, shards = check_plan(skewed, 100)
    assert len(shards) < 5000 / 100 * 1.3  # packed, not one shard per origin
    assert check_plan(list(reversed(skewed)), 100)[1] == plan_fetch_shards(list(reversed(skewed)), 100)[1]
    assert plan_fetch_shards(skewed, 100)[0].tolist() == shard_of.tolist()  # the same links, the same plan
    with pytest.raises(ValueError, match="shard_size"):
        plan_fetch_shards(["a"], 0)


def test_origin_keys_are_the_fetchers_origins():
    urls = ["HTTP://Example.COM/a?b", "https://example.com:443/x", "https://example.com:8443", "http://u@h.org/",
            "not a url", "http://xn--bcher-kva.example/"]
    assert origin_keys(urls) == [origin_key(u) for u in urls]
    assert origin_keys(urls)[:4] == ["http://example.com:80", "https://example.com:443", "https://example.com:8443",
                                     "http://h.org:80"]


@pytest.fixture
def merged(tmp_path) -> Path:
    """A work folder with merged links to 10 origins on 127.0.3.N, where nothing listens (each fetch fails fast)."""
    urls = [f"http://127.0.3.{1 + i % 10}:{PORT}/page/{i}" for i in range(40)]
    urls += [f"http://127.0.3.1:{PORT}/more/{i}" for i in range(12)]  # the first origin: 16 links, two chunks
    dump = dump_of(tmp_path / "RS_2020-02.zst", urls)
    filter_links(tmp_path, 0, str(dump), LinkFilterConfig(), workers=1)
    merge_link_tables(tmp_path, [str(dump)], None, 8)
    return tmp_path


def test_the_shard_files_together_are_the_merged_links_and_the_plan_says_what_each_holds(merged):
    plan = json.loads((merged / FETCH_PLAN).read_text())
    files = [merged / SHARDS_DIR / f"{s:05d}.parquet" for s in range(len(plan["shards"]))]
    assert sorted(p.name for p in (merged / SHARDS_DIR).iterdir()) == [p.name for p in files]
    tables = [pq.read_table(p) for p in files]
    assert [t.num_rows for t in tables] == [s["links"] for s in plan["shards"]]
    for table, entry in zip(tables, plan["shards"]):
        assert table["doc_id"].to_pylist() == sorted(table["doc_id"].to_pylist())
        assert len(set(origin_keys(table["url"].to_pylist()))) == entry["origins"]
    rows = sorted((r for t in tables for r in t.to_pylist()), key=lambda r: r["doc_id"])
    assert rows == pq.read_table(merged / LINKS).to_pylist()
    assert fetch_waves(plan) == [[s for s, e in enumerate(plan["shards"]) if e["wave"] == w] for w in (0, 1)]
    assert merge_link_tables(merged, [], None, 8) == plan  # done: a rerun reads nothing but the plan


def test_the_shards_of_a_wave_fetched_at_once_end_as_each_alone_would(merged):
    plan = json.loads((merged / FETCH_PLAN).read_text())
    config = FetchConfig(allow_hosts=("127.0.3.0/24",), retries=0, connect_timeout_s=5.0)
    [first, second] = fetch_waves(plan)
    summaries = fetch_shards(merged, first, config) + fetch_shards(merged, second, config, later_wave=True)
    assert [s["shard"] for s in summaries] == first + second  # in the order asked
    assert [s["urls"] for s in summaries] == [plan["shards"][s]["links"] for s in first + second]
    assert fetch_shards(merged, first, config) == summaries[:len(first)]  # done: read back, not fetched again


def test_fetch_shards_fetches_at_once_shards_at_a_time_and_answers_in_shard_order(tmp_path, monkeypatch):
    from gptcore.corpus import steps

    meet = threading.Barrier(3, timeout=120)  # passed only when three shards fetch at the same time
    too_many = threading.Barrier(4)  # passed only when four do
    four_at_once: list[int] = []

    def fetching(work, shard, config, later_wave):
        meet.wait()
        try:
            too_many.wait(timeout=1.0)  # with at most three at a time it always breaks (after 1 s, once)
            four_at_once.append(shard)
        except threading.BrokenBarrierError:
            pass
        return {"shard": shard, "later_wave": later_wave}

    monkeypatch.setattr(steps, "fetch_shard", fetching)
    summaries = fetch_shards(tmp_path, [5, 3, 1, 0, 2, 4], FetchConfig(), later_wave=True, at_once=3)
    assert summaries == [{"shard": s, "later_wave": True} for s in [5, 3, 1, 0, 2, 4]]
    assert four_at_once == []  # never more than at_once
    with pytest.raises(ValueError, match="at_once=0"):
        fetch_shards(tmp_path, [0], FetchConfig(), at_once=0)


def test_fetch_and_extraction_read_their_shard_only_never_the_whole_link_table(merged, monkeypatch):
    plan = json.loads((merged / FETCH_PLAN).read_text())
    (merged / LINKS).rename(merged / "moved-away.parquet")  # a step that opened it would fail
    read: list[str] = []
    real = pq.read_table

    def recording(source, *args, **kwargs):
        read.append(Path(source).name if isinstance(source, (str, Path)) else repr(source))
        return real(source, *args, **kwargs)

    monkeypatch.setattr(pq, "read_table", recording)
    config = FetchConfig(allow_hosts=("127.0.3.0/24",), retries=0, connect_timeout_s=5.0)
    process, minhash = ProcessConfig(), MinHashConfig()
    for shard in range(len(plan["shards"])):
        read.clear()
        assert fetch_shard(merged, shard, config)["urls"] == plan["shards"][shard]["links"]
        extract_fetched(merged, shard, process, minhash, workers=1)
        assert sorted(set(read)) == sorted({f"{shard:05d}.parquet", f"{shard:05d}.log.parquet"}), read
