"""robots.txt for the fetcher: asked once per origin (scheme, host, port), through the guarded client.

What an unavailable robots.txt means follows Google's documented behaviour
(https://developers.google.com/search/docs/crawling-indexing/robots/robots_txt):

- 2xx: parsed with ``urllib.robotparser`` (the first 500 KiB, Google's limit); rules for our user-agent token apply.
- 4xx (404, 401, 403, …) or more redirects than allowed: no robots.txt, everything is allowed.
- 429 or 5xx: the site may be in trouble, so the whole origin is treated as disallowed rather than guessed at
  (``robots_disallowed``).
- a timeout or a connection failure: the origin is unreachable, and its pages are logged with that error
  (``timeout``, ``connect_error``) rather than as a robots refusal, so dead hosts stay visible as such.

robots.txt is asked for once, without retries: one failed answer settles the origin. An answer that cannot be used
(broken HTTP, a redirect to nowhere, a corrupt body, or anything else that raises) is treated like a 5xx: the origin
is disallowed, and the detail says why. Nothing a robots.txt server sends raises out of here.

``Crawl-delay`` (for our user-agent's group, else the ``*`` group) is read as seconds in ASCII decimal (``5``,
``0.5``); anything else (``²``, ``1e3``, ``-1``, ``soon``) is ignored. The fetcher paces the origin by it
(FetchConfig.max_crawl_delay_s caps it). ``Request-rate`` is ignored.

With a RobotsStore, each origin's answer (RobotsAnswer: the status or the failure, the body, when) is kept as one
small JSON file and read back before any request, so every shard and every rerun of a corpus version sees the same
robots.txt and the server is asked once per version. Timeouts and connection failures are kept too: an origin that
was unreachable stays so for the version (the same rows on a rerun, and N shards of a dead host do not each wait
for it); a new version asks again. Only a refusal by the SSRF guard is not kept (it is our policy, not the
server's answer): it raises BlockedAddressError to the caller, so the page is logged as ``blocked_address``.
``robots_table`` reads the folder for publishing.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
import urllib.robotparser
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pyarrow as pa

from gptcore.corpus.httpbody import read_capped
from gptcore.corpus.netguard import BlockedAddressError
from gptcore.files import atomic_write_json

ROBOTS_MAX_BYTES = 500 * 1024

OUTCOMES = {
    "answer": "an HTTP answer came: ``status`` says which, ``body`` is the text of a 2xx (the first 500 KiB)",
    "too_many_redirects": "the redirects ran past the client's limit (robots.txt treated as absent)",
    "timeout": "connect or read timeout",
    "connect_error": "DNS failure, refused or reset connection, TLS failure",
    "unusable": "the answer could not be read (broken HTTP, bad redirect, corrupt body); ``detail`` says how",
}

ROBOTS_SCHEMA = pa.schema(
    [
        ("origin", pa.string()),  # scheme://host:port, lower-case (origin_name)
        ("robots_url", pa.string()),
        ("outcome", pa.string()),  # a key of OUTCOMES
        ("status", pa.int32()),  # HTTP status of the final answer; null unless outcome is "answer"
        ("detail", pa.string()),  # what went wrong; null for an answer
        ("body", pa.string()),  # robots.txt text (UTF-8, undecodable bytes replaced); null unless a 2xx answer
        ("fetched_at", pa.string()),  # ISO 8601 UTC, like the fetch log's
    ]
)

_CRAWL_DELAY = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")  # ASCII only: str.isdigit() also takes "²" and "٣"
_LONGEST_DELAY_S = 86400.0  # longer values are as good as infinite, and "9" * 400 would overflow int()

OriginSlot = Callable[[httpx.URL], AbstractAsyncContextManager[object]]


def origin_of(url: httpx.URL) -> tuple[str, str, int]:
    """(scheme, host, port) with the default port filled in: the unit of robots.txt, pacing and per-host limits."""
    port = url.port or (443 if url.scheme == "https" else 80)
    return url.scheme, url.host, port


def origin_name(origin: tuple[str, str, int]) -> str:
    """``scheme://host:port``, lower-case: how an origin is named in tables and file names."""
    scheme, host, port = origin
    return f"{scheme}://{host}:{port}".lower()


def crawl_delay_seconds(value: str) -> float | None:
    """A Crawl-delay value in seconds (``"5"``, ``"0.5"``, ``" 10 "``), or None when it is not ASCII decimal."""
    value = value.strip()
    if not _CRAWL_DELAY.fullmatch(value):
        return None
    return min(float(value), _LONGEST_DELAY_S)


@dataclass(frozen=True)
class RobotsAnswer:
    """What asking one origin for robots.txt gave: one row of ROBOTS_SCHEMA, and one file in a RobotsStore."""

    origin: str
    robots_url: str
    outcome: str
    status: int | None = None
    detail: str | None = None
    body: str | None = None
    fetched_at: str = ""


class RobotsStoreError(Exception):
    """The RobotsStore cannot be read or written: the shard's failure (like a full disk for its WARC)."""


class RobotsStore:
    """One JSON file per origin in ``folder`` (named by the sha1 of origin_name), written atomically."""

    def __init__(self, folder: Path) -> None:
        self._folder = Path(folder)

    def path(self, origin: str) -> Path:
        return self._folder / f"{hashlib.sha1(origin.encode()).hexdigest()}.json"

    def load(self, origin: str) -> RobotsAnswer | None:
        """The stored answer for ``origin``; None when there is none, or the file does not hold one (asked again)."""
        try:
            answer = _answer_from_json(self.path(origin).read_bytes())
        except (FileNotFoundError, ValueError, TypeError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            return None
        except OSError as exc:
            raise RobotsStoreError(f"cannot read robots.txt of {origin} from {self._folder}: {exc}") from exc
        return answer if answer.origin == origin else None

    def save(self, answer: RobotsAnswer) -> None:
        try:
            atomic_write_json(self.path(answer.origin), dataclasses.asdict(answer))
        except OSError as exc:
            raise RobotsStoreError(f"cannot store robots.txt of {answer.origin} in {self._folder}: {exc}") from exc


def robots_table(robots_dir: Path) -> pa.Table:
    """Every answer stored in ``robots_dir`` (ROBOTS_SCHEMA), ordered by origin; files that hold none are skipped."""
    answers = []
    for path in sorted(Path(robots_dir).glob("*.json")):
        try:
            answers.append(_answer_from_json(path.read_bytes()))
        except (ValueError, TypeError):
            continue
    answers.sort(key=lambda answer: answer.origin)
    return pa.Table.from_pylist([dataclasses.asdict(answer) for answer in answers], schema=ROBOTS_SCHEMA)


def _answer_from_json(data: bytes) -> RobotsAnswer:
    fields = json.loads(data)
    if not isinstance(fields, dict):
        raise ValueError("not a JSON object")
    answer = RobotsAnswer(**fields)  # TypeError on missing or unknown fields
    if answer.outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {answer.outcome!r}")
    return answer


class _Verdict:
    """What one origin's robots.txt says: a parsed rule set, or a blanket answer with the reason for it."""

    def __init__(
        self,
        parser: urllib.robotparser.RobotFileParser | None,
        allow_all: bool,
        why: str,
        code: str = "robots_disallowed",
        crawl_delay_s: float | None = None,
    ) -> None:
        self._parser, self._allow_all, self.why, self.code = parser, allow_all, why, code
        self.crawl_delay_s = crawl_delay_s

    def disallows(self, url: httpx.URL, user_agent: str) -> bool:
        if self._parser is not None:
            return not self._parser.can_fetch(user_agent, str(url))
        return not self._allow_all


class RobotsCache:
    """Answers "may this URL be fetched?" from each origin's robots.txt, asking each origin at most once."""

    def __init__(self, client: httpx.AsyncClient, user_agent: str, slot: OriginSlot,
                 store: RobotsStore | None = None) -> None:
        self._client, self._user_agent, self._slot, self._store = client, user_agent, slot, store
        self._verdicts: dict[tuple[str, str, int], asyncio.Task[_Verdict]] = {}

    async def refusal(self, url: httpx.URL) -> tuple[str, str] | None:
        """None when ``url`` may be fetched, else the fetch log's (error code, detail) saying why not."""
        origin = origin_of(url)
        task = self._verdicts.get(origin)
        if task is None:
            robots_url = url.copy_with(path="/robots.txt", query=None, fragment=None)
            task = self._verdicts[origin] = asyncio.create_task(self._verdict(origin_name(origin), robots_url))
        # Shielded: the page fetch that started it may hit its deadline; other pages of the origin still need it.
        verdict = await asyncio.shield(task)
        if verdict.disallows(url, self._user_agent):
            return verdict.code, verdict.why
        return None

    def crawl_delay_s(self, origin: tuple[str, str, int]) -> float | None:
        """The origin's Crawl-delay for our user-agent once its robots.txt is settled; None before, or without one."""
        task = self._verdicts.get(origin)
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            return None
        return task.result().crawl_delay_s

    async def _verdict(self, origin: str, robots_url: httpx.URL) -> _Verdict:
        answer = self._store.load(origin) if self._store is not None else None
        if answer is None:
            answer = await self._ask(origin, robots_url)  # BlockedAddressError goes up, unstored (module docstring)
            if self._store is not None:
                self._store.save(answer)
        try:
            return _verdict_of(answer, self._user_agent)
        except Exception as exc:  # last resort: whatever the text holds, it settles this origin, never the shard
            why = f"{answer.robots_url} unusable ({type(exc).__name__}: {exc}), origin treated as disallowed"
            return _Verdict(None, False, why)

    async def _ask(self, origin: str, robots_url: httpx.URL) -> RobotsAnswer:
        """One request for robots.txt, whatever comes back as a RobotsAnswer."""

        def failed(outcome: str, detail: str) -> RobotsAnswer:
            return RobotsAnswer(origin, str(robots_url), outcome, detail=detail, fetched_at=_utc_now())

        try:
            async with self._slot(robots_url):
                async with self._client.stream("GET", robots_url, follow_redirects=True) as response:
                    body = await _read_robots_text(response) if response.is_success else None
                    return RobotsAnswer(origin, str(robots_url), "answer", status=response.status_code, body=body,
                                        fetched_at=_utc_now())
        except BlockedAddressError:
            raise
        except httpx.TooManyRedirects as exc:
            return failed("too_many_redirects", f"{robots_url}: {exc}")
        except httpx.TimeoutException as exc:
            return failed("timeout", f"{robots_url}: {type(exc).__name__}: {exc}")
        except httpx.ConnectError as exc:
            return failed("connect_error", f"{robots_url}: {exc}")
        except Exception as exc:  # last resort: whatever the answer did, it settles this origin, never the shard
            return failed("unusable", f"{robots_url} unusable ({type(exc).__name__}: {exc})")


def _verdict_of(answer: RobotsAnswer, user_agent: str) -> _Verdict:
    """The verdict an answer gives, the same whether it just came or was read from a RobotsStore."""
    robots_url, status = answer.robots_url, answer.status
    if answer.outcome == "too_many_redirects":
        return _Verdict(None, True, f"{robots_url} redirects too often, treated as absent")
    if answer.outcome in ("timeout", "connect_error"):
        return _Verdict(None, False, answer.detail or robots_url, code=answer.outcome)
    if answer.outcome != "answer" or status is None:
        return _Verdict(None, False, f"{answer.detail or robots_url}, origin treated as disallowed")
    if status == 429 or status >= 500:
        return _Verdict(None, False, f"{robots_url} answered HTTP {status}, origin treated as disallowed")
    if status >= 400:
        return _Verdict(None, True, f"{robots_url} answered HTTP {status}, treated as absent")
    if not 200 <= status < 300 or answer.body is None:
        return _Verdict(None, True, f"{robots_url} answered HTTP {status}")
    parser = urllib.robotparser.RobotFileParser(robots_url)
    parser.parse([_robotparser_safe(line) for line in answer.body.splitlines()])
    delay_ms = parser.crawl_delay(user_agent)
    return _Verdict(parser, True, f"{robots_url} disallows it for user-agent {user_agent!r}",
                    crawl_delay_s=None if delay_ms is None else delay_ms / 1000)


def _robotparser_safe(line: str) -> str:
    """A robots.txt line urllib.robotparser can take, with a Crawl-delay in integer milliseconds.

    robotparser crashes on Crawl-delay and Request-rate values such as "²" (it checks str.isdigit(), then int()
    refuses them) and reads only integer seconds. Lines are rewritten rather than dropped: each of these lines ends
    a group's user-agent list in its grouping, and robotparser's grouping is what picks our group's delay. An empty
    value is one it ignores.
    """
    directive, colon, value = line.split("#", 1)[0].partition(":")
    directive = directive.strip().lower()
    if not colon:  # not a directive to robotparser either
        return line
    if directive == "crawl-delay":
        seconds = crawl_delay_seconds(value)
        return f"Crawl-delay: {'' if seconds is None else round(seconds * 1000)}"
    if directive == "request-rate":
        return "Request-rate:"
    return line


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _read_robots_text(response: httpx.Response) -> str:
    """The first ROBOTS_MAX_BYTES of robots.txt as text; rules past Google's limit are ignored, as Google does."""
    encoding = response.headers.get("content-encoding")
    body = await read_capped(response.aiter_raw(), encoding, ROBOTS_MAX_BYTES, truncate=True)
    return body.decode("utf-8", errors="replace")
