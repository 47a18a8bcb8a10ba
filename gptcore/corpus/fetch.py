"""Fetch the pages behind a list of links into one WARC file, with a fetch log row for every link.

``fetch_to_warc`` is a plain synchronous function (it runs its own asyncio loop around ``httpx.AsyncClient``), so a
flow task or a test calls it directly. What it guarantees:

- every input ``(doc_id, url)`` pair gets exactly one fetch log row (FETCH_LOG_SCHEMA); ``error`` is null exactly
  for the pages written to the WARC, otherwise a stable code from ERROR_CODES;
- no connection is ever opened to a non-public address unless ``FetchConfig.allow_hosts`` says so (netguard.py),
  on the first request and on every redirect hop;
- politeness: robots.txt (robots.py), at most ``per_host_concurrency`` requests in flight per origin, retries with
  exponential backoff that honour ``Retry-After``, and pacing: a paced origin gets one request at a time, each
  starting at least ``min_delay_s`` after the previous one ended (robots.txt included, across all workers), or the
  origin's robots.txt ``Crawl-delay`` for our user-agent when that is longer, capped at ``max_crawl_delay_s`` (a
  site asking for an hour between requests gets the cap, not a shard that never ends); so the server sees the
  starts of any two requests at least that far apart;
- robots.txt asked once per origin: with ``robots_dir``, each answer is kept there and read back before any
  request, so the other shards of an origin and a rerun ask the server nothing (robots.RobotsStore);
- each host resolved once per call, and every address connected to vetted (netguard.py);
- bounded cost per URL: connect/read timeouts, a total deadline, a cap on the decoded body size (httpbody.py). The
  deadline counts the work on the URL, not its wait for a slot or a paced turn at its origin: a shard of many links
  on one slow origin takes long, but its last links are still fetched rather than timed out unasked;
- whatever a server sends (broken framing, garbled headers, redirects to nowhere), the URL ends in its row: each
  known cause has its own code, and anything unforeseen becomes ``fetch_error`` naming the exception, so one
  server can never fail a shard (or every rerun of it).
"""
from __future__ import annotations

import asyncio
import email.utils
import random
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pyarrow as pa

from gptcore.corpus.httpbody import ACCEPT_ENCODING, BodyDecodeError, BodyTooLarge, media_type, read_capped
from gptcore.corpus.netguard import AddressPolicy, BlockedAddressError, GuardedTransport
from gptcore.corpus.robots import RobotsCache, RobotsStore, RobotsStoreError, origin_of
from gptcore.corpus.warc import HTML_MEDIA_TYPES, FetchedPage, WarcPageWriter

try:
    _VERSION = version("gptforge")
except PackageNotFoundError:  # running from a source tree that was never installed
    _VERSION = "0.0.0"

USER_AGENT = f"gptforge/{_VERSION} (WebText-style corpus builder; honours robots.txt)"
"""Sent with every request; robots.txt rules for the token ``gptforge`` apply to it."""

ERROR_CODES = {
    "http_<status>": "the final answer was not 200 (e.g. http_404, http_503 after the retries)",
    "timeout": "connect or read timeout (after the retries), or the per-URL deadline ran out",
    "connect_error": "DNS failure, refused or reset connection, TLS failure (after the retries)",
    "read_error": "the connection broke while reading the answer (after the retries)",
    "protocol_error": "the server's answer was not valid HTTP (status line, headers, framing, truncated body)",
    "too_many_redirects": "more than max_redirects redirects",
    "redirect_loop": "a redirect led back to a URL already visited",
    "too_large": "the decoded body is larger than max_body_bytes",
    "not_html": "the Content-Type is missing or not one of content_types",
    "robots_disallowed": "robots.txt forbids it, or answered 429/5xx (see robots.py)",
    "blocked_address": "the host (or a redirect target) resolves to a non-public address",
    "bad_url": "not a parsable http(s) URL with a valid host and a port in 1-65535",
    "bad_redirect": "a 301/302/303/307/308 whose Location is missing, conflicting, or not such a URL",
    "decode_error": "unsupported Content-Encoding, or a corrupt or truncated compressed body",
    "fetch_error": "an exception nobody foresaw; the detail names its type (please report it)",
}

FETCH_LOG_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("url", pa.string()),  # as given
        ("final_url", pa.string()),  # the URL that gave the last answer (after redirects); null when none did
        ("status", pa.int32()),  # HTTP status of the last answer; null when none came
        ("bytes", pa.int64()),  # decoded body bytes kept (written to the WARC); null when no body was kept
        ("elapsed_s", pa.float64()),  # wall time for this URL, waits for free slots and retries included
        ("attempts", pa.int32()),  # requests sent for this URL: redirect hops and retries included, robots.txt not
        ("redirects", pa.int32()),  # redirects followed
        ("content_type", pa.string()),  # Content-Type of the last answer
        ("fetched_at", pa.string()),  # ISO 8601 UTC time of the last answer (or of giving up)
        ("error", pa.string()),  # null when the page is in the WARC, else a code from ERROR_CODES
        ("detail", pa.string()),  # human-readable specifics of the error
    ]
)

_RETRYABLE_STATUS = frozenset({429}) | frozenset(range(500, 600))
# The 3xx answers that mean "go there" (RFC 9110 15.4); other 3xx (300, 304, ...) end as http_<status>.
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
_ASCII_DIGITS = re.compile(r"[0-9]+")  # str.isdigit() also takes "²" (float() refuses it) and "٣" (no HTTP digit)
_HOST = re.compile(r"[A-Za-z0-9._:-]+")  # a hostname after IDNA encoding, an IPv4 or an IPv6 address


@dataclass(frozen=True)
class FetchConfig:
    """How politely and how far the fetcher goes. Defaults suit a crawl of many hosts from one machine."""

    concurrency: int = 64  # URLs in flight at once, across all hosts
    per_host_concurrency: int = 4  # requests in flight per origin (scheme, host, port)
    connect_timeout_s: float = 10.0  # DNS resolution + TCP (+ TLS) handshake
    read_timeout_s: float = 20.0  # longest silence while waiting for bytes
    deadline_s: float = 60.0  # everything for one URL but its waits for its origin's turn: robots.txt, retries...
    retries: int = 3  # extra attempts per URL on 429, 5xx, connect errors, timeouts, broken connections
    backoff_base_s: float = 1.0  # retry n waits base * 2**n plus up to base of jitter...
    max_retry_wait_s: float = 30.0  # ...at most this; a longer Retry-After is not waited for (the URL fails)
    max_redirects: int = 5
    max_body_bytes: int = 5 * 1024 * 1024  # decoded size: also what stops compression bombs
    content_types: tuple[str, ...] = HTML_MEDIA_TYPES
    respect_robots: bool = True
    user_agent: str = USER_AGENT
    allow_hosts: tuple[str, ...] = ()  # hostnames, IPs or CIDRs that may resolve to non-public addresses
    min_delay_s: float = 0.0  # > 0: one request at a time per origin, each this long after the previous one ended
    max_crawl_delay_s: float = 10.0  # a longer robots.txt Crawl-delay is cut to this

    def __post_init__(self) -> None:
        for name in ("concurrency", "per_host_concurrency", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"FetchConfig.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("retries", "max_redirects", "backoff_base_s", "max_retry_wait_s", "min_delay_s",
                     "max_crawl_delay_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"FetchConfig.{name} must not be negative, got {getattr(self, name)}")
        for name in ("connect_timeout_s", "read_timeout_s", "deadline_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"FetchConfig.{name} must be positive, got {getattr(self, name)}")


def fetch_to_warc(urls: Sequence[tuple[str, str]], warc_path: Path, config: FetchConfig = FetchConfig(),
                  robots_dir: Path | None = None, pace_from_start: bool = False) -> pa.Table:
    """Fetch ``(doc_id, url)`` pairs; write usable pages to the gzip WARC ``warc_path``; return the fetch log.

    The WARC appears at ``warc_path`` only when every URL has been dealt with (temporary name + rename). The log has
    one row per input pair, in input order. ``robots_dir`` (shared by the shards of a corpus version) keeps each
    origin's robots.txt answer, one file per origin (robots.robots_table reads them). With ``pace_from_start``, a
    paced origin's first request waits its gap as though a request had just ended (another call may have asked it
    a moment ago). Call it from synchronous code (it runs its own event loop).
    """
    store = RobotsStore(Path(robots_dir)) if robots_dir is not None else None
    with WarcPageWriter(Path(warc_path), software=config.user_agent) as warc:
        rows = asyncio.run(_fetch_all(list(urls), config, warc, store, pace_from_start))
    return pa.Table.from_pylist(rows, schema=FETCH_LOG_SCHEMA)


async def _fetch_all(urls: list[tuple[str, str]], config: FetchConfig, warc: WarcPageWriter,
                     store: RobotsStore | None, pace_from_start: bool) -> list[dict]:
    timeout = httpx.Timeout(connect=config.connect_timeout_s, read=config.read_timeout_s,
                            write=config.read_timeout_s, pool=None)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=config.concurrency)
    headers = {
        "User-Agent": config.user_agent,
        "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
        "Accept-Encoding": ACCEPT_ENCODING,
    }
    transport = GuardedTransport(AddressPolicy.from_allow_hosts(config.allow_hosts), limits)
    # The hook vets a redirect's Location before httpx builds its next request from it: httpx raises assorted
    # exceptions (InvalidURL, IDNAError, OverflowError, ...) on Locations it cannot use, even when not following.
    async with httpx.AsyncClient(transport=transport, timeout=timeout, headers=headers,
                                 max_redirects=config.max_redirects,
                                 event_hooks={"response": [_vet_redirect]}) as client:
        fetcher = _Fetcher(config, client, warc, store, time.monotonic() if pace_from_start else None)
        rows: list[dict] = [{} for _ in urls]
        pending = iter(_interleaved_by_origin(urls))

        async def worker() -> None:
            for index in pending:  # one shared iterator: each index is taken by exactly one worker
                rows[index] = await fetcher.fetch(*urls[index])

        await asyncio.gather(*(worker() for _ in range(min(config.concurrency, len(urls)))))
    return rows


def _interleaved_by_origin(urls: list[tuple[str, str]]) -> list[int]:
    """Input indices reordered round-robin over origins.

    Links often come grouped by site; taken in that order, most workers would queue on one site's per-host limit
    while other sites wait. Round-robin order keeps them spread out.
    """
    seen_per_origin: dict[str, int] = {}
    origin_rank: dict[str, int] = {}
    keys = []
    for index, (_, url) in enumerate(urls):
        try:
            parts = urlsplit(url)
            origin = f"{parts.scheme}://{parts.netloc}".lower()
        except (TypeError, ValueError, AttributeError):  # not a string, or unparsable: bad_url when its turn comes
            origin = ""
        origin_rank.setdefault(origin, len(origin_rank))
        turn = seen_per_origin.get(origin, 0)
        seen_per_origin[origin] = turn + 1
        keys.append((turn, origin_rank[origin], index))
    return [index for _, _, index in sorted(keys)]


class _Failed(Exception):
    """Ends the work on one URL with a fetch log error code (and the answer that caused it, when there was one)."""

    def __init__(self, code: str, detail: str, response: httpx.Response | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail, self.response = code, detail, response


@dataclass
class _Outcome:
    """The fetch log row of one URL, filled in as the fetch goes."""

    doc_id: str
    url: str
    final_url: str | None = None
    status: int | None = None
    bytes: int | None = None
    elapsed_s: float = 0.0
    attempts: int = 0
    redirects: int = 0
    content_type: str | None = None
    fetched_at: str | None = None
    error: str | None = None
    detail: str | None = None
    started: float = field(default_factory=time.monotonic, repr=False)
    deadline: asyncio.Timeout | None = field(default=None, repr=False)  # paused while the URL waits for its turn

    def row(self) -> dict:
        return {name: getattr(self, name) for name in FETCH_LOG_SCHEMA.names}


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Fetcher:
    """Fetches one URL at a time for a worker: robots.txt, redirects, retries, body, WARC record."""

    def __init__(self, config: FetchConfig, client: httpx.AsyncClient, warc: WarcPageWriter,
                 store: RobotsStore | None, paced_since: float | None = None) -> None:
        self._config, self._client, self._warc = config, client, warc
        self._paced_since = paced_since  # monotonic time taken as every origin's last request end, if not None
        self._origin_slots: dict[tuple[str, str, int], asyncio.Semaphore] = {}
        self._origin_turns: dict[tuple[str, str, int], asyncio.Lock] = {}  # paced origins: one request at a time
        self._last_end: dict[tuple[str, str, int], float] = {}  # monotonic time the origin's latest paced request ended
        self._robots = RobotsCache(client, config.user_agent, self._slot, store) if config.respect_robots else None

    @asynccontextmanager
    async def _slot(self, url: httpx.URL, outcome: _Outcome | None = None) -> AsyncIterator[None]:
        """Hold one of the origin's per_host_concurrency request slots and, when the origin is paced, its turn.

        While it waits, ``outcome``'s deadline is paused: it bounds the URL's own work (module docstring).
        """
        origin = origin_of(url)
        semaphore = self._origin_slots.get(origin)
        if semaphore is None:
            semaphore = self._origin_slots[origin] = asyncio.Semaphore(self._config.per_host_concurrency)
            self._origin_turns[origin] = asyncio.Lock()
        turn = self._origin_turns[origin]
        async with _deadline_paused(outcome.deadline if outcome is not None else None):
            await semaphore.acquire()
            try:
                paced = await self._paced_turn(origin, turn)
            except BaseException:
                semaphore.release()
                raise
        try:
            yield
        finally:
            if paced:
                self._last_end[origin] = time.monotonic()
                turn.release()
            semaphore.release()

    def _gap_s(self, origin: tuple[str, str, int]) -> float:
        gap = self._config.min_delay_s
        delay = self._robots.crawl_delay_s(origin) if self._robots is not None else None
        if delay is not None:
            gap = max(gap, min(delay, self._config.max_crawl_delay_s))
        return gap

    async def _paced_turn(self, origin: tuple[str, str, int], turn: asyncio.Lock) -> bool:
        """For a paced origin, take its turn: one request at a time, each starting ``gap`` after the previous one
        ended. Returns whether the turn is held (released when the request ends).

        Measured from the previous request's end, the gap holds as the server sees it, between the starts of any
        two requests, whatever delays the client's event loop or connection set-up add: a request cannot end
        before the server saw it start. The gap is read once the turn is held: robots.txt is an origin's first
        request, so its Crawl-delay is known for every page.
        """
        if self._gap_s(origin) <= 0:
            return False
        await turn.acquire()
        try:
            last = self._last_end.get(origin, self._paced_since)
            wait = 0.0 if last is None else last + self._gap_s(origin) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        except BaseException:
            turn.release()
            raise
        return True

    async def fetch(self, doc_id: str, url: str) -> dict:
        """The fetch log row for one URL; a usable page is written to the WARC on the way."""
        outcome = _Outcome(doc_id, url)
        try:
            async with asyncio.timeout(self._config.deadline_s) as outcome.deadline:
                page = await self._follow(outcome)
        except RobotsStoreError:
            raise  # the shard's failure, like a WARC that cannot be written
        except _Failed as failure:
            outcome.error, outcome.detail = failure.code, failure.detail
        except BlockedAddressError as exc:
            outcome.error, outcome.detail = "blocked_address", str(exc)
        except TimeoutError:
            outcome.error = "timeout"
            outcome.detail = f"no usable answer within the {self._config.deadline_s} s deadline for one URL"
        except Exception as exc:  # last resort; CancelledError and KeyboardInterrupt are not Exceptions and go on up
            outcome.error = "fetch_error"
            outcome.detail = f"{type(exc).__name__} while fetching {url!r}: {exc}"
        else:
            # Outside the net above: a WARC that cannot be written (disk full) is the shard's failure, not the URL's.
            self._warc.write(page)
        outcome.elapsed_s = round(time.monotonic() - outcome.started, 4)
        outcome.fetched_at = outcome.fetched_at or _utc_now()
        return outcome.row()

    async def _follow(self, outcome: _Outcome) -> FetchedPage:
        """Follow redirects from outcome.url to a usable page, or raise _Failed."""
        url = _http_url(outcome.url)
        visited = {url}
        while True:
            if self._robots is not None:
                refusal = await self._robots.refusal(url)
                if refusal is not None:
                    raise _Failed(*refusal)
            page, target = await self._request_with_retries(url, outcome)
            if page is not None:
                return page
            if outcome.redirects >= self._config.max_redirects:
                limit = self._config.max_redirects
                raise _Failed("too_many_redirects", f"more than {limit} redirects, the next one from {url} to {target}")
            if target in visited:
                raise _Failed("redirect_loop", f"{url} redirects back to {target}")
            visited.add(target)
            outcome.redirects += 1
            url = target

    async def _request_with_retries(
        self, url: httpx.URL, outcome: _Outcome
    ) -> tuple[FetchedPage, None] | tuple[None, httpx.URL]:
        """One hop: (page, None) for a usable page, (None, target) for a redirect, else raises _Failed."""
        retry = 0
        while True:
            outcome.attempts += 1
            retry_after = None
            try:
                async with self._slot(url, outcome):
                    return await self._request_once(url, outcome)
            except _Failed as failure:
                if failure.response is not None:  # refused by _vet_redirect before _request_once saw the answer
                    _record_answer(outcome, url, failure.response)
                raise
            except _RetryableStatus as answer:
                failure, retry_after = _Failed(f"http_{answer.status}", answer.detail), answer.retry_after
            except httpx.TimeoutException as exc:
                failure = _Failed("timeout", f"{type(exc).__name__} from {url}: {exc}")
            except httpx.ConnectError as exc:
                failure = _Failed("connect_error", f"{url}: {exc}")
            except (httpx.ReadError, httpx.WriteError) as exc:
                failure = _Failed("read_error", f"{url}: {exc}")
            except httpx.ProtocolError as exc:  # includes "server disconnected without sending a response"
                failure = _Failed("protocol_error", f"{url}: {exc}")
            except httpx.UnsupportedProtocol as exc:
                raise _Failed("bad_url", f"{url}: {exc}") from exc
            except httpx.InvalidURL as exc:  # ``url`` itself was vetted, so this comes from a redirect's Location
                raise _Failed("bad_redirect", f"{url} redirects to an unusable URL: {exc}") from exc
            wait = self._retry_wait(retry, retry_after)
            remaining = outcome.deadline.when() - asyncio.get_running_loop().time()
            if retry >= self._config.retries or wait is None or wait >= remaining:
                raise failure
            retry += 1
            await asyncio.sleep(wait)

    def _retry_wait(self, retry: int, retry_after: str | None) -> float | None:
        """Seconds to wait before retry number ``retry + 1``; None when the server asks for more than we wait."""
        base = self._config.backoff_base_s
        wait = min(base * 2**retry + random.uniform(0, base), self._config.max_retry_wait_s)
        if retry_after is not None:
            asked = _retry_after_seconds(retry_after)
            if asked is not None:
                if asked > self._config.max_retry_wait_s:
                    return None
                wait = max(wait, asked)
        return wait

    async def _request_once(
        self, url: httpx.URL, outcome: _Outcome
    ) -> tuple[FetchedPage, None] | tuple[None, httpx.URL]:
        request = self._client.build_request("GET", url)
        response = await self._client.send(request, stream=True)
        try:
            _record_answer(outcome, url, response)
            if response.status_code in _REDIRECT_STATUS:
                return None, _redirect_target(response)
            if response.status_code in _RETRYABLE_STATUS:
                raise _RetryableStatus(response)
            if response.status_code != 200:
                detail = f"{url} answered HTTP {response.status_code} {response.reason_phrase}"
                raise _Failed(f"http_{response.status_code}", detail)
            body = await self._read_html_body(url, response)
            outcome.bytes = len(body)
            return _fetched_page(outcome, request, response, body), None
        finally:
            await response.aclose()

    async def _read_html_body(self, url: httpx.URL, response: httpx.Response) -> bytes:
        content_type = response.headers.get("content-type")
        if media_type(content_type) not in self._config.content_types:
            raise _Failed("not_html", f"{url} has Content-Type {content_type!r}")
        limit = self._config.max_body_bytes
        declared = response.headers.get("content-length", "").strip()
        if _ASCII_DIGITS.fullmatch(declared) and int(declared) > limit:
            raise _Failed("too_large", f"{url} declares Content-Length {declared} > max_body_bytes {limit}")
        try:
            return await read_capped(response.aiter_raw(), response.headers.get("content-encoding"), limit)
        except BodyTooLarge as exc:
            raise _Failed("too_large", f"{url}: {exc} (max_body_bytes)") from exc
        except BodyDecodeError as exc:
            raise _Failed("decode_error", f"{url}: {exc}") from exc


@asynccontextmanager
async def _deadline_paused(deadline: asyncio.Timeout | None) -> AsyncIterator[None]:
    """Stop ``deadline``'s clock for the block, then move it on by the time the block took."""
    if deadline is None or deadline.expired() or deadline.when() is None:
        yield
        return
    loop = asyncio.get_running_loop()
    due, paused_at = deadline.when(), loop.time()
    deadline.reschedule(None)
    try:
        yield
    finally:
        deadline.reschedule(due + loop.time() - paused_at)


class _RetryableStatus(Exception):
    """A 429 or 5xx answer: retried like a network error, reported as http_<status> when retries run out."""

    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.retry_after = response.headers.get("retry-after")
        self.detail = f"{response.url} answered HTTP {self.status} {response.reason_phrase}"
        if self.retry_after is not None:
            self.detail += f" (Retry-After: {self.retry_after})"
        super().__init__(self.detail)


def _record_answer(outcome: _Outcome, url: httpx.URL, response: httpx.Response) -> None:
    outcome.final_url, outcome.status = str(url), response.status_code
    outcome.content_type = response.headers.get("content-type")
    outcome.fetched_at = _utc_now()


async def _vet_redirect(response: httpx.Response) -> None:
    """httpx response hook: raise _Failed("bad_redirect") for a redirect whose Location cannot be followed."""
    if response.status_code in _REDIRECT_STATUS:
        _redirect_target(response)


def _redirect_target(response: httpx.Response) -> httpx.URL:
    """Where a 301/302/303/307/308 answer points, or raise _Failed("bad_redirect")."""
    url, status = response.request.url, response.status_code
    locations = list(dict.fromkeys(response.headers.get_list("location")))
    if not locations:
        raise _Failed("bad_redirect", f"{url} answered HTTP {status} without a Location header", response)
    if len(locations) > 1:
        detail = f"{url} answered HTTP {status} with conflicting Locations {locations!r}"
        raise _Failed("bad_redirect", detail, response)
    try:
        return _http_url(locations[0], base=url)
    except _Failed as failure:
        raise _Failed("bad_redirect", failure.detail, response) from failure


def _retry_after_seconds(value: str) -> float | None:
    """A Retry-After header (delta-seconds or HTTP date) in seconds from now; None when unparsable."""
    value = value.strip()
    if _ASCII_DIGITS.fullmatch(value):
        return float(value)  # float("9" * 400) is inf: more than anyone waits for
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _http_url(text: str, base: httpx.URL | None = None) -> httpx.URL:
    """Parse an http(s) URL with a host (a redirect's Location relative to ``base``), or raise _Failed("bad_url").

    Stricter than httpx.URL, which keeps ports such as -1 or 99999 and hosts such as ``a%20b`` that only fail
    (with a misleading error) when connecting.
    """
    context = f"redirect from {base} to " if base is not None else ""
    try:
        url = base.join(text) if base is not None else httpx.URL(text)
        url = url.copy_with(fragment=None)  # fragments are never sent; without them a loop is seen as one
        host = url.host  # decodes IDNA: "xn--" parses, and fails only here
    except (httpx.InvalidURL, TypeError, ValueError) as exc:  # IDNA errors are ValueErrors
        raise _Failed("bad_url", f"{context}{text!r}: {exc}") from exc
    if url.scheme not in ("http", "https") or not host:
        raise _Failed("bad_url", f"{context}{text!r} is not an http(s) URL with a host")
    if not _HOST.fullmatch(url.raw_host.decode("ascii", errors="replace")):
        raise _Failed("bad_url", f"{context}{text!r} has the malformed host {host!r}")
    if url.port is not None and not 0 < url.port < 65536:
        raise _Failed("bad_url", f"{context}{text!r} has the port {url.port}, outside 1-65535")
    return url


def _fetched_page(outcome: _Outcome, request: httpx.Request, response: httpx.Response, body: bytes) -> FetchedPage:
    server_address = None
    stream = response.extensions.get("network_stream")
    if stream is not None:
        peer = stream.get_extra_info("server_addr")
        server_address = peer[0] if peer else None
    return FetchedPage(
        doc_id=outcome.doc_id,
        url=str(response.url),
        request_headers=list(request.headers.multi_items()),
        http_version=response.http_version,
        status=response.status_code,
        reason=response.reason_phrase,
        response_headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw],
        body=body,
        fetched_at=outcome.fetched_at or _utc_now(),
        ip_address=server_address,
    )
