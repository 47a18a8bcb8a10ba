"""The embedded demo web: a pydoc-built site, its loopback server with noise endpoints, and a noisy dump."""
from __future__ import annotations

import difflib
import gzip
import io
import sysconfig
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import zstandard

from flows.demo.dump import ENDPOINT_PATHS, MIN_SCORE, write_demo_dump
from flows.demo.server import DemoServer
from flows.demo.site import build_site, read_site, write_demo_texts
from tests import webhosts

N_PAGES = 20
STDLIB = sysconfig.get_paths()["stdlib"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    build_site(root, N_PAGES)
    return root


@pytest.fixture(scope="module")
def server(site):
    with DemoServer(site, slow_s=60, huge_bytes=3_000_000, bomb_bytes=64 * 2**20) as server:
        yield server


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- site -------------------------------------------------------------------------------------------------------------

def test_site_has_the_requested_pages_near_duplicates_and_endpoint_pages(site):
    pages = read_site(site)
    kinds = [p.kind for p in pages]
    assert kinds.count("page") == N_PAGES
    assert kinds.count("near_duplicate") == 2
    assert sorted(p.endpoint for p in pages if p.kind == "endpoint") == ["flaky", "latin1", "nocharset", "private", "redirect"]
    assert len({p.path for p in pages}) == len(pages)
    assert all((site / p.path).is_file() for p in pages)


def test_site_is_byte_identical_when_built_again(site, tmp_path):
    build_site(tmp_path, N_PAGES)
    assert files_of(tmp_path) == files_of(site)


def test_page_wraps_pydoc_text_in_site_boilerplate(site):
    page = next(p for p in read_site(site) if p.kind == "page")
    html = (site / page.path).read_text(encoding="utf-8")
    assert f"<title>{page.title.split(' — ')[0]}" in html
    for boilerplate in ('class="main-nav"', 'class="sidebar"', "Privacy policy", "Cookie settings", "All rights reserved"):
        assert boilerplate in html
    assert 'class="heading"' in html and "Module Reference" in html  # pydoc's own markup
    assert "at&nbsp;0x" not in html and STDLIB not in html  # nothing that differs between machines or runs


def test_near_duplicate_is_almost_but_not_exactly_its_original(site):
    for dup in (p for p in read_site(site) if p.kind == "near_duplicate"):
        copy = (site / dup.path).read_text(encoding="utf-8")
        original = (site / dup.duplicate_of).read_text(encoding="utf-8")
        assert copy != original
        assert difflib.SequenceMatcher(None, copy, original, autojunk=False).quick_ratio() > 0.95


# --- server -----------------------------------------------------------------------------------------------------------

def test_server_serves_site_pages_as_utf8_html(site, server):
    page = read_site(site)[0]
    response = httpx.get(f"{server.base_url}/{page.path}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.content == (site / page.path).read_bytes()
    assert urlsplit(server.base_url).hostname == "127.0.0.1"


def test_server_answers_missing_pages_and_status_endpoints_with_their_status(server):
    assert httpx.get(f"{server.base_url}/docs/no-such-module.html").status_code == 404
    assert httpx.get(f"{server.base_url}/../../etc/passwd").status_code == 404
    assert httpx.get(f"{server.base_url}/status/404").status_code == 404
    assert httpx.get(f"{server.base_url}/status/500").status_code == 500


def test_robots_txt_disallows_private(server):
    assert "Disallow: /private/" in httpx.get(f"{server.base_url}/robots.txt").text


def test_redirect_chain_ends_at_a_real_page(site, server):
    response = httpx.get(f"{server.base_url}/redirect/3", follow_redirects=True)
    target = next(p for p in read_site(site) if p.endpoint == "redirect")
    assert [r.status_code for r in response.history] == [302, 302, 302]
    assert response.status_code == 200 and response.url.path == "/" + target.path


def test_redirect_loop_never_ends(server):
    with pytest.raises(httpx.TooManyRedirects):
        httpx.get(f"{server.base_url}/loop", follow_redirects=True)


def test_flaky_fails_once_then_succeeds(site):
    with DemoServer(site) as fresh:
        assert [httpx.get(f"{fresh.base_url}/flaky").status_code for _ in range(3)] == [500, 200, 200]


def test_slow_outlasts_a_read_timeout(server):
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{server.base_url}/slow", timeout=httpx.Timeout(5.0, read=0.2))


def test_non_html_endpoints_declare_their_types(server):
    png = httpx.get(f"{server.base_url}/image.png")
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert httpx.get(f"{server.base_url}/download").headers["content-type"] == "application/octet-stream"


def test_huge_streams_past_its_size_without_content_length(server):
    with httpx.stream("GET", f"{server.base_url}/huge") as response:
        assert "content-length" not in response.headers
        assert sum(len(chunk) for chunk in response.iter_bytes()) >= 3_000_000


def test_bomb_is_small_on_the_wire_and_huge_decoded(server):
    with httpx.stream("GET", f"{server.base_url}/bomb") as response:
        assert response.headers["content-encoding"] == "gzip"
        wire = b"".join(response.iter_raw())
    assert len(wire) < 200_000
    with gzip.GzipFile(fileobj=io.BytesIO(wire)) as decoded:
        assert sum(len(block) for block in iter(lambda: decoded.read(2**20), b"")) > 64 * 2**20


def test_legacy_encodings_are_served_with_and_without_charset(site, server):
    latin1 = httpx.get(f"{server.base_url}/latin1")
    assert latin1.headers["content-type"] == "text/html; charset=ISO-8859-1"
    assert "© 2019" in latin1.content.decode("iso-8859-1")
    nocharset = httpx.get(f"{server.base_url}/nocharset")
    assert nocharset.headers["content-type"] == "text/html"
    assert "“" in nocharset.content.decode("cp1252")
    with pytest.raises(UnicodeDecodeError):
        nocharset.content.decode("utf-8")


def test_slow_host_delays_every_response_and_still_answers(site):
    with DemoServer(site, delay_s=0.05) as slow_host:
        assert httpx.get(f"{slow_host.base_url}/robots.txt").status_code == 200


def test_a_fixed_address_gives_the_same_urls_every_run_and_a_busy_one_is_a_clear_error(site):
    with DemoServer(site, webhosts.PAGES_PORT, host=webhosts.DEMO) as server:
        assert server.base_url == f"http://{webhosts.DEMO}:{webhosts.PAGES_PORT}"
        assert httpx.get(f"{server.base_url}/robots.txt").status_code == 200
        with pytest.raises(OSError, match=rf"{webhosts.DEMO}:{webhosts.PAGES_PORT}: .*another host or port"):
            DemoServer(site, webhosts.PAGES_PORT, host=webhosts.DEMO)


# --- dump -------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dump(site, tmp_path_factory):
    path = tmp_path_factory.mktemp("dump") / "RS_2019-06.zst"
    summary = write_demo_dump(path, "http://127.0.0.1:8000", read_site(site), seed=7, slow_base_url="http://127.0.0.1:8001")
    return path, summary


def dump_lines(path: Path) -> list[bytes]:
    with open(path, "rb") as fh:
        return zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(fh).read().splitlines()


def test_dump_decodes_only_with_a_long_window(dump):
    path, _ = dump
    with open(path, "rb") as fh, pytest.raises(zstandard.ZstdError):
        zstandard.ZstdDecompressor().stream_reader(fh).read()
    assert dump_lines(path)


def test_dump_plants_each_kind_of_noise_as_counted(site, dump):
    path, summary = dump
    lines = dump_lines(path)
    assert len(lines) == summary.n_lines
    records = {}
    for line in lines:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        records[record["id"]] = record
    counts = summary.counts
    assert counts["page"] == N_PAGES and counts["near_duplicate"] == 2 and counts["private"] == 1
    assert len(lines) - len(records) == counts["broken_json"] == 1
    assert counts["endpoint"] == len(ENDPOINT_PATHS) and counts["slow_host"] == 3
    by_kind = {kind: [records.get(id) for id in ids] for kind, ids in summary.ids_by_kind.items()}
    assert all(r["score"] >= MIN_SCORE for kind in ("page", "near_duplicate", "url_variant", "endpoint") for r in by_kind[kind])
    assert all(r["score"] < MIN_SCORE for r in by_kind["low_score"])
    assert all(r["is_self"] for r in by_kind["self_post"]) and all(r["over_18"] for r in by_kind["nsfw"])
    assert {urlsplit(r["url"]).hostname for r in by_kind["blocked_domain"]} == {
        "en.wikipedia.org", "i.imgur.com", "www.youtube.com", "www.reddit.com"}
    assert all("url" not in r for r in by_kind["missing_url"])
    assert all(isinstance(r["score"], str) for r in by_kind["bad_score"])
    assert {urlsplit(r["url"]).path for r in by_kind["endpoint"]} == set(ENDPOINT_PATHS)
    assert all(r["url"].startswith("http://127.0.0.1:8001/") for r in by_kind["slow_host"])


def test_url_variants_normalize_back_to_a_linked_page(dump):
    path, summary = dump
    records = {r["id"]: r for r in map(orjson.loads, filter(lambda l: l.endswith(b"}"), dump_lines(path)))}
    page_urls = {records[id]["url"] for id in summary.ids_by_kind["page"]}
    variants = [records[id]["url"] for id in summary.ids_by_kind["url_variant"]]
    assert not page_urls & set(variants)
    for url in variants:
        parts = urlsplit(url)
        assert f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path}" in page_urls
    assert any("utm_source=" in u for u in variants) and any("fbclid=" in u for u in variants)
    assert any("#" in u for u in variants) and any(u.startswith("HTTP://") for u in variants)


def test_dump_is_reproducible_from_its_seed(site, dump, tmp_path):
    path, _ = dump
    pages = read_site(site)
    write_demo_dump(tmp_path / "same.zst", "http://127.0.0.1:8000", pages, seed=7, slow_base_url="http://127.0.0.1:8001")
    write_demo_dump(tmp_path / "other.zst", "http://127.0.0.1:8000", pages, seed=8, slow_base_url="http://127.0.0.1:8001")
    assert dump_lines(tmp_path / "same.zst") == dump_lines(path)
    assert dump_lines(tmp_path / "other.zst") != dump_lines(path)


def test_demo_texts_are_real_text_from_this_python(tmp_path):
    paths = write_demo_texts(tmp_path)
    assert len(paths) >= 2
    for path in paths:
        text = path.read_text(encoding="utf-8")
        assert len(text) > 3_000 and STDLIB not in text and " at 0x" not in text


# --- held-out tasks ---------------------------------------------------------------------------------------------------

def test_test_items_come_from_held_out_pages_and_train_items_from_other_pages(site, tmp_path):
    from flows.demo.tasks import MAX_ANSWER_BYTES, page_texts, write_demo_tasks

    pages = [p for p in read_site(site) if p.kind == "page"]
    held, linked = pages[-8:], pages[-12:-8]
    texts, linked_texts = page_texts(site, held), page_texts(site, linked)
    paths = write_demo_tasks(texts, tmp_path / "tasks", linked_texts)
    read = {name: [orjson.loads(line) for line in Path(path).read_text().splitlines()] for name, path in paths.items()}
    assert read["next_train"] and read["next_test"] and read["last_word"]
    assert all(len(r["choices"]) == 4 and 0 <= r["label"] < 4 for r in read["next_train"] + read["next_test"])
    assert all(len(c.encode()) <= MAX_ANSWER_BYTES for r in read["next_train"] + read["next_test"] for c in r["choices"])
    test_words, train_words = (" ".join(" ".join(pages).split()) for pages in (texts[0::2], texts[1::2] + linked_texts))
    linked_words = " ".join(" ".join(linked_texts).split())
    assert any(" ".join(r["choices"][r["label"]].split()) in linked_words for r in read["next_train"]), \
        "training items come from the linked pages too"
    assert all(" ".join(r["choices"][r["label"]].split()) in test_words for r in read["next_test"]), \
        "test answers are sentences of the test pages"
    for name, words in (("next_train", train_words), ("next_test", test_words)):  # distractors too
        assert all(" ".join(c.split()) in words for r in read[name] for c in r["choices"]), f"{name}: other pages"


def test_the_summary_gives_an_accuracy_its_standard_error_and_distance_from_chance():
    from flows.app.demo import above_chance

    assert above_chance({"accuracy": 0.4, "n": 100}, 0.25) == \
        " (chance 0.25; 0.400 ± 0.049 over 100 items, 3.1 SE above)"
    assert above_chance({"acc": 0.25, "examples": 48, "chance": 0.25}, 0.25).endswith("0.0 SE above)")
    assert above_chance({"perplexity": 12.0}, 0.25) == " (chance 0.25)"
    assert above_chance({"accuracy": 0.4, "n": 100}, None) == ""
