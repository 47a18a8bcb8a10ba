"""The demo's Pushshift-style dump: one submission per demo page, plus the noise a real month of Reddit carries.

Noise planted, each kind counted in the summary so tests can predict every outcome:
low-score links, self posts, NSFW posts, blocked domains, the same page under URLs that differ only by tracking
parameters / fragment / case, non-page extensions, one link to each of the server's misbehaving endpoints, pages
on a slow host, and malformed lines. Everything is drawn from `seed`; real dumps are ordered by time with ids that
grow with it, and so is this one.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import orjson

from flows.demo.dumpgen import submission_record, write_dump
from flows.demo.site import SitePage

MONTH_START, MONTH_END = 1_559_347_200, 1_561_939_200  # June 2019, UTC: the dump is RS_2019-06
FIRST_ID = int("bvb000", 36)  # submission ids of June 2019 are six base-36 digits around here
MIN_SCORE = 3  # WebText's karma threshold: the page links get at least this
SUBREDDITS = ("programming", "Python", "learnpython", "coding", "compsci", "learnprogramming", "linux")
BLOCKED_URLS = (
    "https://en.wikipedia.org/wiki/Python_(programming_language)",
    "https://en.wikipedia.org/wiki/Guido_van_Rossum",
    "https://i.imgur.com/Xk3vQ9b",
    "https://www.youtube.com/watch?v=kqtD5dpn9C8",
    "https://www.reddit.com/r/Python/comments/bm2x7c/whats_everyone_working_on_this_week/",
)
NON_PAGE_PATHS = ("/files/report.pdf", "/img/cat.jpg")
ENDPOINT_PATHS = ("/status/404", "/status/500", "/flaky", "/redirect/3", "/loop", "/slow", "/image.png", "/download",
                  "/huge", "/bomb", "/latin1", "/nocharset")
SLOW_HOST_PAGES = 3  # pages linked again on the slow host (same content as on the main host)
# URL variants of an already linked page; each must normalize back to that page's URL
URL_VARIANTS: tuple[Callable[[str], str], ...] = (
    lambda url: url + "?utm_source=reddit&utm_medium=social&utm_campaign=share",
    lambda url: url + "?utm_source=facebook&fbclid=IwAR2xQ7d0_c1Jk9TzvDemoLinkB8pHqW3",
    lambda url: url + "#functions",
    lambda url: _upper_scheme_and_host(url),  # an IP literal has no case: the scheme changes case too
)


@dataclass(frozen=True)
class DemoDumpSummary:
    """What write_demo_dump planted: submission ids per kind (each line of the dump is in exactly one kind)."""

    path: Path
    ids_by_kind: dict[str, list[str]] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return {kind: len(ids) for kind, ids in self.ids_by_kind.items()}

    @property
    def n_lines(self) -> int:
        return sum(self.counts.values())


def write_demo_dump(path: Path, base_url: str, pages: list[SitePage], seed: int = 0,
                    slow_base_url: str | None = None) -> DemoDumpSummary:
    """Write the demo dump for a site served at base_url (and optionally a slow copy at slow_base_url).

    Kinds (keys of the summary): page, near_duplicate, private (robots-disallowed page), url_variant, low_score,
    self_post, nsfw, blocked_domain, non_page_extension, endpoint, slow_host, broken_json, missing_url, bad_score.
    """
    rng = random.Random(seed)
    base_url = base_url.rstrip("/")
    linked = [p for p in pages if p.kind in ("page", "near_duplicate")]
    regular = [p for p in pages if p.kind == "page"]
    private = [p for p in pages if p.endpoint == "private"]
    if not regular:
        raise ValueError("write_demo_dump needs the pages of a built site (flows.demo.site.build_site); got no regular pages")

    def page_link(url: str, title: str) -> Callable[[str], dict]:
        return lambda id: _submission(rng, id, url, title)

    planned: list[tuple[str, Callable[[str], dict]]] = []  # (kind, make the record from its id)
    planned += [(p.kind, page_link(f"{base_url}/{p.path}", p.title)) for p in linked]
    planned += [("private", page_link(f"{base_url}/{p.path}", p.title)) for p in private]
    n_variants = min(len(regular), max(len(URL_VARIANTS), len(regular) // 10))
    for i, page in enumerate(sorted(rng.sample(regular, n_variants), key=lambda p: p.path)):
        planned.append(("url_variant", page_link(URL_VARIANTS[i % len(URL_VARIANTS)](f"{base_url}/{page.path}"), page.title)))
    for i in range(max(3, len(regular) // 10)):
        planned.append(("low_score", lambda id, i=i: _submission(rng, id, f"{base_url}/blog/2019/06/note-{i}.html",
                                                                  f"Quick note {i}", score=rng.randint(-4, MIN_SCORE - 1))))
    for i in range(3):
        planned.append(("self_post", lambda id, i=i: _self_post(rng, id, i)))
    for i in range(2):
        planned.append(("nsfw", lambda id, i=i: _submission(rng, id, f"{base_url}/blog/2019/06/after-dark-{i}.html",
                                                             "NSFW: code you should not look at", over_18=True)))
    planned += [("blocked_domain", page_link(url, "Worth a look")) for url in BLOCKED_URLS]
    planned += [("non_page_extension", page_link(base_url + p, "Download: " + p.rsplit("/", 1)[-1])) for p in NON_PAGE_PATHS]
    planned += [("endpoint", page_link(base_url + p, "Check this out")) for p in ENDPOINT_PATHS]
    if slow_base_url:
        planned += [("slow_host", page_link(f"{slow_base_url.rstrip('/')}/{p.path}", p.title)) for p in regular[:SLOW_HOST_PAGES]]
    planned.append(("broken_json", page_link(f"{base_url}/{regular[0].path}", regular[0].title)))  # cut short below
    planned.append(("missing_url", lambda id: {k: v for k, v in _submission(rng, id, "", "No link").items() if k != "url"}))
    planned.append(("bad_score", lambda id: _submission(rng, id, f"{base_url}/blog/2019/06/scored.html", "Score?") | {"score": "unknown"}))

    times = sorted(rng.randrange(MONTH_START, MONTH_END) for _ in planned)
    order = list(range(len(planned)))
    rng.shuffle(order)
    summary = DemoDumpSummary(Path(path))
    lines: list[dict | bytes] = []
    for n, (created_utc, index) in enumerate(zip(times, order)):
        kind, make = planned[index]
        id = _base36(FIRST_ID + n * 7 + rng.randrange(7))
        record = make(id)
        record["created_utc"], record["retrieved_on"] = created_utc, created_utc + 86_400 * 30
        lines.append(orjson.dumps(record)[:-37] if kind == "broken_json" else record)  # as if the writer died mid-line
        summary.ids_by_kind.setdefault(kind, []).append(id)
    write_dump(path, lines)
    return summary


def _submission(rng: random.Random, id: str, url: str, title: str, score: int | None = None, **extra) -> dict:
    return submission_record(id, url, score=_good_score(rng) if score is None else score,
                             subreddit=rng.choice(SUBREDDITS), title=title, **extra)


def _self_post(rng: random.Random, id: str, i: int) -> dict:
    """A text post: real dumps give it its own permalink as url."""
    subreddit = rng.choice(SUBREDDITS)
    return submission_record(id, f"https://www.reddit.com/r/{subreddit}/comments/{id}/question_{i}/", score=_good_score(rng),
                             subreddit=subreddit, is_self=True, title=f"Question about packaging ({i})")


def _good_score(rng: random.Random) -> int:
    """Scores above the threshold with Reddit's long tail: most links a few points, a few in the hundreds."""
    return min(MIN_SCORE + int(rng.paretovariate(1.3) * 4) - 4, 40_000)


def _upper_scheme_and_host(url: str) -> str:
    scheme, rest = url.split("://", 1)
    host, _, path = rest.partition("/")
    return f"{scheme.upper()}://{host.upper()}/{path}"


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while number:
        number, digit = divmod(number, 36)
        out = digits[digit] + out
    return out or "0"

