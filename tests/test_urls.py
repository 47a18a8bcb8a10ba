"""URL normalization and the WebText link rules."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptcore.corpus import urls
from gptcore.corpus.urls import (
    DEFAULT_BLOCKED_DOMAINS, has_non_page_extension, host_of, is_blocked_domain, is_non_page_path, normalize_link,
    normalize_url, normalize_url_by_urlsplit,
)


@pytest.mark.parametrize(("raw", "normalized"), [
    ("HTTP://Example.COM/Path", "http://example.com/Path"),  # scheme and host lowercased, path kept
    ("https://example.com", "https://example.com/"),  # empty path becomes "/"
    ("http://example.com:80/a", "http://example.com/a"),  # default ports dropped
    ("https://example.com:443/a", "https://example.com/a"),
    ("https://example.com:8443/a", "https://example.com:8443/a"),  # other ports kept
    ("http://example.com:443/a", "http://example.com:443/a"),  # 443 is not http's default
    ("https://example.com/a#section-2", "https://example.com/a"),  # fragment dropped
    ("  https://example.com/a \n", "https://example.com/a"),  # surrounding whitespace stripped
    ("https://bücher.de/straße", "https://xn--bcher-kva.de/straße"),  # IDNA host
    ("https://user:secret@example.com/a", "https://example.com/a"),  # user info dropped
    ("https://example.com./a", "https://example.com/a"),  # trailing dot of the host
    ("http://[2001:db8::1]:8080/a", "http://[2001:db8::1]:8080/a"),  # IPv6 literal
])
def test_normalize_url_canonical_forms(raw: str, normalized: str) -> None:
    assert normalize_url(raw) == normalized


def test_normalize_url_drops_tracking_parameters_and_keeps_the_others_in_order() -> None:
    url = "https://example.com/a?z=1&utm_source=reddit&b=2&fbclid=x&UTM_Medium=y&gclid=1&a=&_ga=2&igshid=3&c=3"
    assert normalize_url(url) == "https://example.com/a?z=1&b=2&a=&c=3"


def test_normalize_url_drops_the_query_mark_when_only_tracking_parameters_were_there() -> None:
    assert normalize_url("https://example.com/a?utm_source=x&mc_cid=1&mc_eid=2") == "https://example.com/a"


def test_normalize_url_reads_reddits_html_escaped_ampersands() -> None:
    assert normalize_url("https://example.com/a?x=1&amp;utm_source=r&amp;y=2") == "https://example.com/a?x=1&y=2"


def test_urls_differing_only_in_tracking_case_and_fragment_normalize_alike() -> None:
    variants = ["https://News.example.com/story?id=7", "https://news.example.com:443/story?id=7#comments",
                "https://news.example.com/story?id=7&utm_campaign=c", "https://news.example.com/story?fbclid=1&id=7"]
    assert {normalize_url(v) for v in variants} == {"https://news.example.com/story?id=7"}


@pytest.mark.parametrize("raw", [
    "ftp://example.com/file", "javascript:alert(1)", "mailto:someone@example.com", "/r/programming/comments/x",
    "https:///no-host", "http://[::1", "https://example.com:99999/", "http://exa mple.com/", "http://a..b/", "",
    "self.programming",
])
def test_normalize_url_returns_none_for_what_is_not_an_http_url_with_a_host(raw: str) -> None:
    assert normalize_url(raw) is None


def test_host_of_gives_the_lowercase_host_without_port() -> None:
    assert host_of("https://WWW.Example.com:8080/a") == "www.example.com"
    assert host_of("not a url") == ""


@pytest.mark.parametrize("host", ["wikipedia.org", "en.wikipedia.org", "en.m.wikipedia.org", "commons.wikimedia.org",
                                  "en.wiktionary.org", "i.imgur.com", "i.redd.it", "v.redd.it", "www.youtube.com",
                                  "youtu.be", "www.reddit.com", "old.reddit.com", "gfycat.com", "EN.WIKIPEDIA.ORG"])
def test_default_blocklist_covers_wikipedia_media_hosts_and_reddit(host: str) -> None:
    assert is_blocked_domain(host, DEFAULT_BLOCKED_DOMAINS)


@pytest.mark.parametrize("host", ["notwikipedia.org", "wikipedia.org.evil.com", "nytimes.com", "myimgur.com",
                                  "reddit.com.example.net"])
def test_blocking_matches_whole_labels_only(host: str) -> None:
    assert not is_blocked_domain(host, DEFAULT_BLOCKED_DOMAINS)


def test_blocking_accepts_a_custom_set() -> None:
    assert is_blocked_domain("blog.example.com", frozenset({"example.com"}))
    assert not is_blocked_domain("en.wikipedia.org", frozenset({"example.com"}))


@pytest.mark.parametrize("url", ["https://x.com/cat.jpg", "https://x.com/a/b/CAT.PNG?size=large", "https://x.com/v.gifv",
                                 "https://x.com/paper.pdf#page=2", "https://x.com/archive.tar.gz", "https://x.com/s.docx",
                                 "https://x.com/film%2Emp4"])
def test_non_page_extensions_are_recognized_on_the_path(url: str) -> None:
    assert has_non_page_extension(url)


@pytest.mark.parametrize("url", ["https://x.com/", "https://x.com/article.html", "https://x.com/story?img=cat.jpg",
                                 "https://images.jpg.example.com/page", "https://x.com/post-about-.png-files/",
                                 "https://x.com/a.php"])
def test_pages_and_extensions_outside_the_path_are_not_flagged(url: str) -> None:
    assert not has_non_page_extension(url)


# URL-ish text that probes where the fast path and urlsplit could part: case, ports, user info, dots, brackets,
# percent escapes, &amp;, tracking keys, whitespace and controls, non-ASCII (the Kelvin sign lowercases to "k").
_SCHEMES = st.sampled_from(["http", "https", "HTTPS", "hTtP", "ftp", "", "http:", "https:/"])
_HOSTS = st.lists(st.sampled_from(["example", "com", "WWW", "a-b", "_x", "1", "", "bücher", "\u212a", "xn--bcher-kva",
                                   "[::1]", "user@", ":80", ":443", ":x", ".", " ", "\t"]), min_size=1, max_size=4)
_PIECES = st.lists(st.sampled_from(["/", "a", "B", ".", ".jpg", ".jpg #", ".PDF", "%2E", "%", "?", "#", "&", "&amp;", "amp;", "=", "id=7",
                                    "utm_source=x", "UTM_Medium=y", "fbclid=1", "%75tm_x=1", " ", "\t", "\n", "\x00",
                                    "\x7f", "é", "\u212a", "@", ":", "[", "]", "\\", ";", "~"]), max_size=12)


@settings(max_examples=3000)
@given(_SCHEMES, _HOSTS, _PIECES, st.sampled_from(["", " ", "\n"]))
def test_normalize_link_agrees_with_the_urlsplit_definition(scheme: str, host: list[str], rest: list[str],
                                                            around: str) -> None:
    url = f"{around}{scheme}://{'.'.join(host)}{''.join(rest)}{around}"
    link, expected = normalize_link(url), normalize_url_by_urlsplit(url)
    assert (link and link.url) == expected
    if expected is not None:
        assert link.host == host_of(expected)
        assert is_non_page_path(link.path) == has_non_page_extension(expected)


def test_common_urls_are_normalized_without_urlsplit(monkeypatch) -> None:
    def no_urlsplit(url):
        raise AssertionError(f"urlsplit called for {url!r}")

    monkeypatch.setattr(urls, "urlsplit", no_urlsplit)
    assert normalize_link("https://WWW.Example.com/2023/a-b.html?id=7&utm_source=r&amp;x=1#top") == (
        "https://www.example.com/2023/a-b.html?id=7&x=1", "www.example.com", "/2023/a-b.html")
    assert normalize_url("http://example.com?q") == "http://example.com/?q"
