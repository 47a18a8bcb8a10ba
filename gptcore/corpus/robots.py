"""robots.txt for the fetcher: fetched once per origin (scheme, host, port) per run, through the guarded client.

What an unavailable robots.txt means follows Google's documented behaviour
(https://developers.google.com/search/docs/crawling-indexing/robots/robots_txt):

- 2xx: parsed with ``urllib.robotparser`` (the first 500 KiB, Google's limit); rules for our user-agent token apply.
- 4xx (404, 401, 403, …) or more redirects than allowed: no robots.txt, everything is allowed.
- 429 or 5xx: the site may be in trouble, so the whole origin is treated as disallowed for this run rather than
  guessed at (``robots_disallowed``).
- a timeout or a connection failure: the origin is unreachable, and its pages are logged with that error
  (``timeout``, ``connect_error``) rather than as a robots refusal, so dead hosts stay visible as such.

robots.txt is fetched once, without retries: one failed answer settles the origin for the run. An answer that
cannot be used (broken HTTP, a redirect to nowhere, a corrupt body, or anything else that raises) is treated like a
5xx: the origin is disallowed, and the detail says why. Nothing a robots.txt server sends raises out of here.

A host the SSRF guard refuses raises BlockedAddressError to the caller, so the page is logged as ``blocked_address``
rather than as a robots refusal.
"""
from __future__ import annotations

import asyncio
import urllib.robotparser
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx

from gptcore.corpus.httpbody import read_capped
from gptcore.corpus.netguard import BlockedAddressError

ROBOTS_MAX_BYTES = 500 * 1024
# Lines the fetcher has no use for (it paces by per-origin concurrency) and on which urllib.robotparser crashes:
# it checks str.isdigit() and then calls int(), and int() refuses digits such as "²".
_IGNORED_DIRECTIVES = frozenset({"crawl-delay", "request-rate"})

OriginSlot = Callable[[httpx.URL], AbstractAsyncContextManager[object]]


def origin_of(url: httpx.URL) -> tuple[str, str, int]:
    """(scheme, host, port) with the default port filled in: the unit of robots.txt and of per-host concurrency."""
    port = url.port or (443 if url.scheme == "https" else 80)
    return url.scheme, url.host, port


class _Verdict:
    """What one origin's robots.txt says: a parsed rule set, or a blanket answer with the reason for it."""

    def __init__(
        self,
        parser: urllib.robotparser.RobotFileParser | None,
        allow_all: bool,
        why: str,
        code: str = "robots_disallowed",
    ) -> None:
        self._parser, self._allow_all, self.why, self.code = parser, allow_all, why, code

    def disallows(self, url: httpx.URL, user_agent: str) -> bool:
        if self._parser is not None:
            return not self._parser.can_fetch(user_agent, str(url))
        return not self._allow_all


class RobotsCache:
    """Answers "may this URL be fetched?" from each origin's robots.txt, fetching each one at most once."""

    def __init__(self, client: httpx.AsyncClient, user_agent: str, slot: OriginSlot) -> None:
        self._client, self._user_agent, self._slot = client, user_agent, slot
        self._verdicts: dict[tuple[str, str, int], asyncio.Task[_Verdict]] = {}

    async def refusal(self, url: httpx.URL) -> tuple[str, str] | None:
        """None when ``url`` may be fetched, else the fetch log's (error code, detail) saying why not."""
        origin = origin_of(url)
        task = self._verdicts.get(origin)
        if task is None:
            robots_url = url.copy_with(path="/robots.txt", query=None, fragment=None)
            task = self._verdicts[origin] = asyncio.create_task(self._fetch(robots_url))
        # Shielded: the page fetch that started it may hit its deadline; other pages of the origin still need it.
        verdict = await asyncio.shield(task)
        if verdict.disallows(url, self._user_agent):
            return verdict.code, verdict.why
        return None

    async def _fetch(self, robots_url: httpx.URL) -> _Verdict:
        try:
            return await self._fetch_and_parse(robots_url)
        except BlockedAddressError:
            raise  # the page is logged as blocked_address (see the module docstring)
        except Exception as exc:  # last resort: whatever the answer did, it settles this origin, never the shard
            why = f"{robots_url} unusable ({type(exc).__name__}: {exc}), origin treated as disallowed"
            return _Verdict(None, False, why)

    async def _fetch_and_parse(self, robots_url: httpx.URL) -> _Verdict:
        try:
            async with self._slot(robots_url):
                async with self._client.stream("GET", robots_url, follow_redirects=True) as response:
                    if response.status_code >= 400:
                        return self._unavailable_or_absent(robots_url, response.status_code)
                    if not response.is_success:
                        return _Verdict(None, True, f"{robots_url} answered HTTP {response.status_code}")
                    text = await _read_robots_text(response)
        except httpx.TooManyRedirects:
            return _Verdict(None, True, f"{robots_url} redirects too often, treated as absent")
        except httpx.TimeoutException as exc:
            return _Verdict(None, False, f"{robots_url}: {type(exc).__name__}: {exc}", code="timeout")
        except httpx.ConnectError as exc:
            return _Verdict(None, False, f"{robots_url}: {exc}", code="connect_error")
        parser = urllib.robotparser.RobotFileParser(str(robots_url))
        parser.parse([line for line in text.splitlines() if _directive(line) not in _IGNORED_DIRECTIVES])
        return _Verdict(parser, True, f"{robots_url} disallows it for user-agent {self._user_agent!r}")

    @staticmethod
    def _unavailable_or_absent(robots_url: httpx.URL, status: int) -> _Verdict:
        if status == 429 or status >= 500:
            return _Verdict(None, False, f"{robots_url} answered HTTP {status}, origin treated as disallowed")
        return _Verdict(None, True, f"{robots_url} answered HTTP {status}, treated as absent")


def _directive(line: str) -> str:
    """``"Crawl-delay: 5 # slow"`` -> ``"crawl-delay"``, read the way urllib.robotparser reads it."""
    return line.split("#", 1)[0].split(":", 1)[0].strip().lower()


async def _read_robots_text(response: httpx.Response) -> str:
    """The first ROBOTS_MAX_BYTES of robots.txt as text; rules past Google's limit are ignored, as Google does."""
    encoding = response.headers.get("content-encoding")
    body = await read_capped(response.aiter_raw(), encoding, ROBOTS_MAX_BYTES, truncate=True)
    return body.decode("utf-8", errors="replace")
