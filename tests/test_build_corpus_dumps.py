"""build-corpus with dumps that overlap: each submission ends in exactly one place, and the gate passes."""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from flows.demo.dumpgen import submission_record as submission, write_dump
from tests import webhosts


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from flows.demo.server import DemoServer
    from flows.demo.site import build_site

    folder = tmp_path_factory.mktemp("site")
    pages = [p for p in build_site(folder, n_pages=3) if p.kind == "page"]
    with DemoServer(folder, webhosts.PAGES_PORT, host=webhosts.BUILD_CORPUS_DUMPS) as server:
        yield server.base_url, pages


def test_the_same_dump_passed_twice_keeps_each_submission_once_and_passes_the_gate(site, prefect_harness, tmp_path):
    from flows.build_corpus import build_corpus

    base_url, pages = site
    records = [submission(f"p{i}", f"{base_url}/{page.path}", score=5 + i) for i, page in enumerate(pages)]
    records += [submission("low", f"{base_url}/{pages[0].path}", score=1), b"{not json"]
    dump = write_dump(tmp_path / "RS_2019-06.zst", records)

    out = Path(build_corpus(dumps=[str(dump), str(dump)], version="twice", data_root=str(tmp_path / "data"),
                            fetch={"allow_hosts": [webhosts.BUILD_CORPUS_DUMPS], "respect_robots": False,
                                   "connect_timeout_s": 2.0, "read_timeout_s": 2.0},
                            process={"quality": {"min_words": 1, "languages": ["en"]}}))

    reddit = json.loads((out / "manifest.json").read_text())["counts"]["accounting"]["reddit"]
    assert reddit["inputs"] == 2 * len(records) == reddit["kept"] + reddit["rejected"]
    rejects = duckdb.sql(f"select item, reason, detail from read_parquet('{out}/rejects/*.parquet') "
                         "where step = 'links' order by item, reason").fetchall()
    by_reason = {}
    for item, reason, _ in rejects:
        by_reason.setdefault(reason, []).append(item)
    assert sorted(by_reason["duplicate_submission"]) == [f"p{i}" for i in range(len(pages))]  # each kept once
    assert by_reason["low_score"] == ["low", "low"]  # two records, each rejected for itself
    assert len(by_reason["malformed_json"]) == 2
    details = [d for _, reason, d in rejects if reason == "duplicate_submission"]
    assert all(f"kept already from input 1 of 2 ({dump})" in d for d in details)
    kept_ids = duckdb.sql(f"select unnest(submission_ids) from read_parquet('{out}/data/*.parquet')").fetchall()
    with_link = duckdb.sql(f"select count(*) from read_parquet('{out}/rejects/*.parquet') where step != 'links'")
    assert len(kept_ids) + with_link.fetchall()[0][0] == len(pages)  # every kept submission's page: a document or a reject


def test_links_over_max_links_are_rejected_with_all_their_submissions_and_name_one_dump(site, prefect_harness, tmp_path):
    from flows.build_corpus import build_corpus

    base_url, pages = site
    first = write_dump(tmp_path / "RS_2019-06.zst",
                       [submission(f"a{i}", f"{base_url}/{page.path}", score=10 * (i + 1)) for i, page in enumerate(pages)])
    second = write_dump(tmp_path / "RS_2019-07.zst",  # page 0 again, from another submission: its link has two
                        [submission("b0", f"{base_url}/{pages[0].path}", score=3), submission("a1", f"{base_url}/{pages[1].path}")])

    out = Path(build_corpus(dumps=[str(second), str(first)], max_links=1, version="capped",
                            data_root=str(tmp_path / "data"),
                            fetch={"allow_hosts": [webhosts.BUILD_CORPUS_DUMPS], "respect_robots": False},
                            process={"quality": {"min_words": 1, "languages": ["en"]}}))

    reddit = json.loads((out / "manifest.json").read_text())["counts"]["accounting"]["reddit"]
    assert reddit["inputs"] == 5 == reddit["kept"] + reddit["rejected"]
    capped = dict(duckdb.sql(f"select item, input from read_parquet('{out}/rejects/*.parquet') "
                             "where reason = 'over_max_links'").fetchall())
    # both dumps linked pages 0 and 1: the first of them by path names each
    assert capped == {f"{base_url}/{pages[i].path}": str(first.resolve()) for i in (0, 1)}
