"""A simulated web on loopback for benchmarks, and a Pushshift-style dump whose links point at it.

    origin i  = http://127.1.<i // 250>.<i % 250 + 1>:8080     (all of 127.0.0.0/8 is loopback on Linux)
    control   = http://127.1.255.254:8080/_stats  (per-origin politeness figures, JSON)  /_reset  (zero them)

One asyncio process serves every origin (one listening socket per address). What an origin is like follows from its
number alone (``origin_profile``), so the benchmark knows what each one did without asking:

- size: links go to origins by a Zipf law over their numbers (origin 0 gets ~1/9 of the links: thousands of pages
  at the largest size; most of the thousands of origins get one or two);
- latency: ~5-40 ms per answer, a few tail origins 0.5-1.5 s;
- faults, decided per URL and attempt (not by the order requests arrive in, so every run, local or on Dask,
  meets the same ones): flaky (a 503 for the first attempt at one page in six, for every attempt at one in sixty),
  rate-limited (a 429 with Retry-After: 1 for the first attempt at one page in seven), dead (every page a 500);
- robots.txt: most have none (404), some Disallow /private/ (some links go there), a few Crawl-delay: 1, a few
  forbid the whole site to our user agent;
- pages: HTML assembled per article number from real sentences of the two Austen novels in the shared data, in one
  of four site layouts with navigation, sidebar, cookie banner and footer boilerplate; docs mirrors serve the real
  Python documentation pages (exact duplicates across mirrors); one article in twenty is another's text syndicated
  on another origin (exact duplicate), one in twenty a lightly edited copy (near duplicate); some links are stale
  (404), moved (301), PDFs, or paywall stubs with no text (the quality filters' work).

The server records per origin: page requests, the most page requests in flight at once, the smallest gap between
two page requests' starts, and robots.txt hits, plus how often and how long its own event loop stalled (over 5 ms:
a stall delays the timestamps, so gaps shorter than it say nothing); /_stats returns them, SIGTERM writes them to
``--stats``.

    .venv/bin/python bench/simweb.py --origins 3000 --stats bench/out/simweb_stats.json   # serve until SIGTERM
"""
from __future__ import annotations

import argparse
import asyncio
import bisect
import hashlib
import io
import itertools
import json
import os
import random
import re
import resource
import signal
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GPTFORGE_SHARED_DATA", REPO.parent / "shared" / "data"))
PORT = 8080
CONTROL = "127.1.255.254"
ZIPF_EXPONENT = 1.0
CRAWL_DELAY_S = 1.0
FAULT_STATUS = {"flaky": 503, "limited": 429, "dead": 500}
STALL_TICK_S, STALL_S = 0.005, 0.005


def origin_address(i: int) -> str:
    return f"127.1.{i // 250}.{i % 250 + 1}"


def origin_number(address: str) -> int:
    _, _, third, fourth = address.split(".")
    return int(third) * 250 + int(fourth) - 1


@dataclass(frozen=True)
class OriginProfile:
    number: int
    latency_s: float
    fault: str  # none, flaky, limited, dead
    robots: str  # none (404), private (Disallow: /private/), crawl_delay, forbid (Disallow: / for gptforge)
    layout: int
    docs_mirror: bool


@cache
def origin_profile(i: int) -> OriginProfile:
    """What origin ``i`` is like. The head (i < 50) is well behaved apart from robots rules: slow, dead and
    crawl-delayed sites are small ones, as on the web, and they would otherwise dominate the wall time."""
    rng = random.Random(f"origin-{i}")
    tail = i >= 50
    latency = rng.uniform(0.5, 1.5) if tail and rng.random() < 0.03 else rng.uniform(0.005, 0.04)
    fault = rng.choices(["none", "flaky", "limited", "dead"], [88, 6, 4, 2 if tail else 0])[0]
    robots = rng.choices(["none", "private", "crawl_delay", "forbid"], [70, 24, 4 if tail else 0, 2])[0]
    return OriginProfile(i, round(latency, 4), fault, robots, rng.randrange(4), tail and rng.random() < 0.02)


def _stable_fraction(text: str) -> float:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") / 2**64


@cache
def _zipf_cdf(n_origins: int) -> list[float]:
    weights = list(itertools.accumulate(1 / (r + 1) ** ZIPF_EXPONENT for r in range(n_origins)))
    return [w / weights[-1] for w in weights]


def article_origin(article: int, n_origins: int) -> int:
    """The origin an article lives on: Zipf-distributed, the same for every dump size."""
    return min(bisect.bisect_left(_zipf_cdf(n_origins), _stable_fraction(f"article-{article}")), n_origins - 1)


def article_url(article: int, n_origins: int, rest: str = "") -> str:
    """The simulated URL of an article (``rest``: the query and fragment the submission carried)."""
    private = "/private" if article % 13 == 0 else ""
    host = origin_address(article_origin(article, n_origins))
    return f"http://{host}:{PORT}{private}/2023/01/article-{article}{rest}"


# ---------------------------------------------------------------------------------------------------------------------
# The dump: bench_links.py's generator, its article links moved onto the simulated origins


_SITE_LINK = re.compile(r"https://www\.site\d+\.com/2023/01/article-(\d+)(\?.*)?$", re.S)


def simweb_dump(n_records: int, n_origins: int, out: Path) -> Path:
    """``RS_simweb_<n>_<origins>.zst``: bench_links' dump of ``n_records`` with article links on the simulated web."""
    import orjson
    import zstandard

    from bench_links import ensure_dump
    from flows.demo.dumpgen import write_dump

    path = out / f"RS_simweb_{n_records}_{n_origins}.zst"
    if path.exists():
        return path
    source = ensure_dump(n_records)

    def records():
        with open(source, "rb") as fh, zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(fh) as reader:
            for line in io.BufferedReader(reader, 1 << 20):
                record = orjson.loads(line)
                match = _SITE_LINK.match(record["url"])
                if match:
                    record["url"] = article_url(int(match.group(1)), n_origins, match.group(2) or "")
                    record["domain"] = record["url"].split("/")[2].split(":")[0]
                yield record

    partial = path.with_suffix(".partial")
    write_dump(partial, records())
    partial.rename(path)
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Pages


_SENTENCE_END = re.compile(r'(?:(?<=[.!?])|(?<=[.!?]["\']))\s+(?=["\'A-Z])')


@cache
def sentences() -> list[str]:
    """Every sentence of the two novels, in reading order (runs of them make paragraphs that read as prose)."""
    found = []
    for book in sorted((SHARED / "books").glob("*.txt")):
        for paragraph in re.split(r"\n\s*\n", book.read_text(encoding="utf-8")):
            text = " ".join(paragraph.split()).replace("_", "")
            if len(text) < 40 or text.lower().startswith("chapter"):
                continue
            found += [s for s in _SENTENCE_END.split(text) if len(s) > 15]
    if not found:
        sys.exit(f"no books under {SHARED / 'books'}: set GPTFORGE_SHARED_DATA to the shared data folder")
    return found


@cache
def docs_pages() -> list[bytes]:
    return [p.read_bytes() for p in sorted((SHARED / "web" / "html").rglob("*.html"))]


def article_text(seed: int, edited: bool = False) -> tuple[str, list[str]]:
    """(title, paragraphs) of an article: 3-14 paragraphs, each a run of 2-6 consecutive sentences."""
    rng, pool = random.Random(seed), sentences()
    title = " ".join(pool[rng.randrange(len(pool))].split()[:rng.randint(5, 10)]).strip(",;:\"'")
    paragraphs = []
    for _ in range(rng.randint(3, 14)):
        start = rng.randrange(len(pool) - 6)
        paragraphs.append(" ".join(pool[start:start + rng.randint(2, 6)]))
    if edited:  # a near duplicate: one paragraph rewritten, an editor's note added
        edit = random.Random(-seed)
        paragraphs[edit.randrange(len(paragraphs))] = pool[edit.randrange(len(pool))]
        paragraphs.append("Editor's note: this article was updated after publication to correct an error.")
    return title, paragraphs


NAV = ["Home", "World", "Politics", "Business", "Science", "Technology", "Culture", "Sport", "Opinion", "Contact"]


def layout_html(profile: OriginProfile, title: str, paragraphs: list[str]) -> str:
    """An article in one of four site layouts, with the boilerplate that extraction has to leave out."""
    site = f"The Daily {profile.number}"
    nav = "".join(f'<li><a href="/{n.lower()}/">{n}</a></li>' for n in NAV)
    related = "".join(f'<li><a href="/2023/01/article-{profile.number * 7 + k}">More from {site}: story {k}</a></li>'
                      for k in range(5))
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    footer = (f"<footer><p>&copy; 2023 {site}. All rights reserved.</p><p><a href='/privacy'>Privacy</a> | "
              f"<a href='/terms'>Terms</a> | <a href='/about'>About us</a></p></footer>")
    cookie = '<div class="cookie-banner">We use cookies to improve your experience. <a href="/cookies">Accept</a></div>'
    head = f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title} | {site}</title></head><body>"
    if profile.layout == 0:
        page = (f"<header><h2>{site}</h2><nav><ul>{nav}</ul></nav></header><main><article><h1>{title}</h1>"
                f"<p class='byline'>By Staff Writer, January 2023</p>{body}</article></main>"
                f"<aside><h3>Related</h3><ul>{related}</ul></aside>{footer}")
    elif profile.layout == 1:
        page = (f"{cookie}<div id='top'><div class='logo'>{site}</div><ul class='menu'>{nav}</ul></div>"
                f"<div id='content'><div class='post'><h1 class='entry-title'>{title}</h1>"
                f"<div class='entry-content'>{body}</div></div><div id='sidebar'><ul>{related}</ul></div></div>"
                f"<div id='footer'>{footer}</div>")
    elif profile.layout == 2:
        page = (f"<div class='wrapper'><nav class='navbar'><ul>{nav}</ul></nav><section class='story'><h1>{title}</h1>"
                f"{body}<div class='share'>Share this: <a href='#'>Twitter</a> <a href='#'>Facebook</a></div></section>"
                f"<section class='comments'><h3>Comments</h3><p>Log in to comment.</p></section></div>{footer}")
    else:
        page = (f"<table width='100%'><tr><td class='nav'><ul>{nav}</ul></td><td class='main'><h1>{title}</h1>"
                f"{body}</td><td class='side'><ul>{related}</ul></td></tr></table>{cookie}{footer}")
    return head + page + "</body></html>"


def page_answer(profile: OriginProfile, path: str) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) for a page path of an origin."""
    match = re.fullmatch(r"(?:/private)?/(?:2023/01/article-|story/)(\d+)(?:\.html)?", path)
    if match is None:
        return 404, {"Content-Type": "text/html"}, b"<html><body><h1>Not found</h1></body></html>"
    article = int(match.group(1))
    html = {"Content-Type": "text/html; charset=utf-8"}
    if article % 29 == 0:
        return 404, html, b"<html><body><h1>Page not found</h1><p>The story you are looking for has moved.</p></body>"
    if article % 31 == 0 and "/story/" not in path:
        return 301, {**html, "Location": f"/story/{article}.html"}, b""
    if article % 53 == 0:
        return 200, {"Content-Type": "application/pdf"}, b"%PDF-1.4\n% a scanned print edition\n"
    if profile.docs_mirror:
        return 200, html, docs_pages()[article % len(docs_pages())]
    if article % 23 == 0:
        return 200, html, layout_html(profile, "Subscribe to read", ["This article is for subscribers only."]).encode()
    seed, edited = {1: (article - 1, False), 2: (article - 2, True)}.get(article % 20, (article, False))
    title, paragraphs = article_text(seed, edited)
    return 200, html, layout_html(profile, title, paragraphs).encode()


def robots_answer(profile: OriginProfile) -> tuple[int, dict[str, str], bytes]:
    text = {"private": "User-agent: *\nDisallow: /private/\n",
            "crawl_delay": f"User-agent: *\nCrawl-delay: {CRAWL_DELAY_S:g}\nDisallow: /private/\n",
            "forbid": "User-agent: gptforge\nDisallow: /\n\nUser-agent: *\nDisallow:\n"}.get(profile.robots)
    if text is None:
        return 404, {"Content-Type": "text/plain"}, b"no robots.txt here"
    return 200, {"Content-Type": "text/plain"}, text.encode()


# ---------------------------------------------------------------------------------------------------------------------
# The server


class OriginStats:
    __slots__ = ("requests", "robots_hits", "in_flight", "max_in_flight", "last_start", "min_gap_s", "statuses")

    def __init__(self) -> None:
        self.requests = self.robots_hits = self.in_flight = self.max_in_flight = 0
        self.last_start: float | None = None
        self.min_gap_s: float | None = None
        self.statuses: dict[int, int] = {}

    def as_dict(self) -> dict:
        return {"requests": self.requests, "robots_hits": self.robots_hits, "max_in_flight": self.max_in_flight,
                "min_gap_s": self.min_gap_s, "statuses": self.statuses}


class SimWeb:
    def __init__(self, n_origins: int) -> None:
        self.n_origins = n_origins
        self.stats: dict[int, OriginStats] = {}
        self.stalls = [0, 0.0]  # loop stalls over STALL_S seen, the longest (s)
        self.attempts: dict[tuple[int, str], int] = {}  # (origin, path) → page requests so far, faulty origins only

    def reset(self) -> None:
        self.stats, self.stalls, self.attempts = {}, [0, 0.0], {}

    def snapshot(self) -> dict:
        return {"origins": {origin_address(i): s.as_dict() for i, s in sorted(self.stats.items())},
                "loop_stalls": self.stalls[0], "longest_loop_stall_s": self.stalls[1]}

    async def watch_loop(self) -> None:
        """Count the times this process did not run for over STALL_S: a request start it timestamps late can make
        a gap look shorter than the client left it (on a loaded machine, by up to the stall)."""
        while True:
            before = time.monotonic()
            await asyncio.sleep(STALL_TICK_S)
            late = time.monotonic() - before - STALL_TICK_S
            if late > STALL_S:
                self.stalls[0] += 1
                self.stalls[1] = max(self.stalls[1], late)

    async def answer(self, address: str, target: str) -> tuple[int, dict[str, str], bytes]:
        path = target.split("?", 1)[0].split("#", 1)[0]
        if address == CONTROL:
            if path == "/_reset":
                self.reset()
            return 200, {"Content-Type": "application/json"}, json.dumps(self.snapshot()).encode()
        number = origin_number(address)
        profile, stats = origin_profile(number), self.stats.setdefault(number, OriginStats())
        if path == "/robots.txt":
            stats.robots_hits += 1
            await asyncio.sleep(profile.latency_s)
            return robots_answer(profile)
        now = time.monotonic()
        if stats.last_start is not None:
            gap = now - stats.last_start
            stats.min_gap_s = gap if stats.min_gap_s is None else min(stats.min_gap_s, gap)
        stats.last_start = now
        stats.requests += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            await asyncio.sleep(profile.latency_s)
            if self._fault(profile, path):
                status = FAULT_STATUS[profile.fault]
                headers = {"Content-Type": "text/html", **({"Retry-After": "1"} if status == 429 else {})}
                answer = status, headers, b"<html><body>Service unavailable, try again later</body></html>"
            else:
                answer = page_answer(profile, path)
        finally:
            stats.in_flight -= 1
        stats.statuses[answer[0]] = stats.statuses.get(answer[0], 0) + 1
        return answer

    def _fault(self, profile: OriginProfile, path: str) -> bool:
        """Whether this page request gets the origin's fault answer (module docstring)."""
        if profile.fault in ("none", "dead"):
            return profile.fault == "dead"
        key = profile.number, path
        attempt = self.attempts[key] = self.attempts.get(key, 0) + 1
        share = _stable_fraction(f"fault {profile.number} {path}")
        if profile.fault == "flaky":
            return share < 1 / 60 or (share < 1 / 6 and attempt == 1)
        return share < 1 / 7 and attempt == 1

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("sockname")[0]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                target = request_line.split(" ")[1]
                status, headers, body = await self.answer(address, target)
                close = any(h.lower().replace(" ", "") == "connection:close" for h in header_lines)
                lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}", f"Content-Length: {len(body)}",
                         *(f"{k}: {v}" for k, v in headers.items()), f"Connection: {'close' if close else 'keep-alive'}"]
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, IndexError):
            pass  # the client hung up (keep-alive connections end this way) or sent something that is not HTTP
        finally:
            writer.close()


_REASONS = {200: "OK", 301: "Moved Permanently", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable"}


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            sys.exit(f"{needed} file descriptors needed for the origins' sockets and connections; hard limit {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def serve(n_origins: int, stats_path: Path | None, ready_path: Path | None) -> None:
    raise_fd_limit(n_origins + 4096)  # one listening socket per origin, plus the connections
    sentences(), docs_pages()  # load the text before the first request
    web = SimWeb(n_origins)
    hosts = [origin_address(i) for i in range(n_origins)] + [CONTROL]
    server = await asyncio.start_server(web.handle, host=hosts, port=PORT, backlog=512, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready_path is not None:
        ready_path.write_text(str(os.getpid()))
    watcher = asyncio.create_task(web.watch_loop())
    async with server:
        await stop.wait()
    watcher.cancel()
    if stats_path is not None:
        stats_path.write_text(json.dumps(web.snapshot()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--origins", type=int, default=3000)
    parser.add_argument("--stats", type=Path, help="write the per-origin figures here on SIGTERM")
    parser.add_argument("--ready", type=Path, help="written (with the pid) once every socket listens")
    args = parser.parse_args()
    if not 0 < args.origins <= 250 * 255:
        sys.exit(f"--origins must be in 1..{250 * 255}")
    asyncio.run(serve(args.origins, args.stats, args.ready))


if __name__ == "__main__":
    main()
