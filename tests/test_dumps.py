"""Reading Pushshift submission dumps and keeping WebText's links."""
from __future__ import annotations

import gzip
import random
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from gptcore.corpus import dump_lines, dumps
from gptcore.corpus.dump_lines import DumpReadError
from gptcore.corpus.dumps import (
    LINK_SCHEMA, REASONS, KeptSubmission, LinkFilterConfig, classify_record, filter_dump, merge_links,
)
from gptcore.corpus.records import REJECT_SCHEMA, doc_id_for
from flows.demo.dumpgen import submission_record as submission, write_dump


def _reasons_by_item(result: dumps.DumpResult) -> dict[str, str]:
    return dict(zip(result.rejects["item"].to_pylist(), result.rejects["reason"].to_pylist()))


def _assert_every_record_accounted(result: dumps.DumpResult) -> None:
    counts = result.counts
    record_rejects = result.rejects.num_rows - counts["truncated_dump"]
    assert counts["kept_submissions"] + record_rejects == counts["records_read"]
    assert sum(counts[reason] for reason in REASONS) == result.rejects.num_rows
    assert sum(result.links["n_submissions"].to_pylist()) == counts["kept_submissions"]


# one record per reason: (record, expected reason); ids say what they test
REJECTED = [
    (b"{not json", "malformed_json"),
    (b'["a", "list"]', "malformed_json"),
    ({"url": "https://example.com/no-id", "score": 5, "created_utc": 1}, "missing_field"),
    ({"id": "noscore", "url": "https://example.com/", "created_utc": 1}, "missing_field"),
    ({"id": "nourl", "score": 5, "created_utc": 1}, "missing_field"),
    ({**submission("nullscore", "https://example.com/"), "score": None}, "missing_field"),
    ({**submission("listscore", "https://example.com/"), "score": [5]}, "bad_field_type"),
    ({**submission("floatscore", "https://example.com/"), "score": 5.5}, "bad_field_type"),
    ({**submission("wordscore", "https://example.com/"), "score": "many"}, "bad_field_type"),
    ({**submission("boolscore", "https://example.com/"), "score": True}, "bad_field_type"),
    ({**submission("hugescore", "https://example.com/"), "score": 2**63}, "bad_field_type"),
    ({**submission("numurl", "https://example.com/"), "url": 12}, "bad_field_type"),
    ({**submission("yesself", "https://example.com/"), "is_self": "yes"}, "bad_field_type"),
    (submission("self1", "https://www.reddit.com/r/x/comments/self1/", is_self=True), "self_post"),
    (submission("nsfw1", "https://example.com/nsfw", over_18=True), "nsfw"),
    (submission("low1", "https://example.com/low", score=2), "low_score"),
    (submission("ftp1", "ftp://example.com/file"), "bad_url"),
    (submission("wiki1", "https://en.wikipedia.org/wiki/Reddit"), "blocked_domain"),
    (submission("imgur1", "https://i.imgur.com/abc.jpg"), "blocked_domain"),
    (submission("jpg1", "https://example.com/photo.jpg"), "non_page_extension"),
]


def test_each_rejected_record_gets_its_reason_and_every_record_is_accounted(tmp_path: Path) -> None:
    records = [record for record, _ in REJECTED] + [submission("keep1", "https://example.com/story", score=3)]
    result = filter_dump(write_dump(tmp_path / "RS_test.zst", records))

    reasons = _reasons_by_item(result)
    assert reasons["RS_test.zst:1"] == "malformed_json"  # no id: the item names file and line
    assert reasons["RS_test.zst:2"] == "malformed_json"
    assert reasons["RS_test.zst:3"] == "missing_field"
    for record, reason in REJECTED[3:]:
        assert reasons[record["id"]] == reason, record["id"]
    assert result.links["submission_ids"].to_pylist() == [["keep1"]]  # score 3 is enough: ">= 3 karma"
    assert result.counts["records_read"] == len(records)
    assert {reason: result.counts[reason] for reason in REASONS} == {
        reason: sum(1 for _, r in REJECTED if r == reason) for reason in REASONS}
    assert result.rejects.schema == REJECT_SCHEMA
    assert set(result.rejects["step"].to_pylist()) == {"links"}
    assert set(result.rejects["source"].to_pylist()) == {"reddit"}
    _assert_every_record_accounted(result)


def test_rejects_name_the_failing_field_or_value(tmp_path: Path) -> None:
    result = filter_dump(write_dump(tmp_path / "RS_d.zst", [
        {**submission("listscore", "https://example.com/"), "score": [5]},
        submission("low1", "https://example.com/", score=1),
        {"id": "noscore", "url": "https://example.com/", "created_utc": 1},
    ]))
    details = dict(zip(result.rejects["item"].to_pylist(), result.rejects["detail"].to_pylist()))
    assert "score" in details["listscore"]
    assert details["low1"] == "score 1 < 3"
    assert details["noscore"] == "no 'score'"


def test_integers_written_as_strings_or_integral_floats_are_accepted(tmp_path: Path) -> None:
    result = filter_dump(write_dump(tmp_path / "RS_d.zst", [
        {**submission("strscore", "https://example.com/a"), "score": "12"},
        {**submission("floattime", "https://example.com/b"), "created_utc": 1_700_000_000.0},
        {**submission("strtime", "https://example.com/c"), "created_utc": "1700000000"},
    ]))
    assert sorted(result.links["submission_ids"].to_pylist()) == [["floattime"], ["strscore"], ["strtime"]]
    assert result.links.filter(pa.compute.equal(result.links["url"], "https://example.com/a"))["score_max"][0].as_py() == 12


def test_missing_flags_count_as_false_and_missing_texts_as_empty(tmp_path: Path) -> None:
    record = {"id": "bare", "url": "https://example.com/bare", "score": 4, "created_utc": 5}
    result = filter_dump(write_dump(tmp_path / "RS_d.zst", [record]))
    assert result.links.to_pylist()[0] | {"doc_id": None} == {
        "doc_id": None, "url": "https://example.com/bare", "domain": "example.com", "submission_ids": ["bare"],
        "subreddits": [], "score_max": 4, "score_sum": 4, "n_submissions": 1, "created_utc_min": 5, "title": "",
        "inputs": ["RS_d.zst"]}


def test_date_range_is_half_open_on_created_utc(tmp_path: Path) -> None:
    records = [submission(f"t{t}", f"https://example.com/{t}", created_utc=t) for t in (99, 100, 150, 199, 200)]
    # created_utc 100 and 200
    config = LinkFilterConfig(start_date="1970-01-01T00:01:40", end_date="1970-01-01T00:03:20")
    result = filter_dump(write_dump(tmp_path / "RS_d.zst", records), config)
    assert sorted(i for ids in result.links["submission_ids"].to_pylist() for i in ids) == ["t100", "t150", "t199"]
    assert _reasons_by_item(result) == {"t99": "out_of_date_range", "t200": "out_of_date_range"}


def test_config_can_allow_nsfw_lower_the_score_bar_and_block_more_domains(tmp_path: Path) -> None:
    path = write_dump(tmp_path / "RS_d.zst", [
        submission("nsfw1", "https://example.com/a", over_18=True), submission("low1", "https://example.com/b", score=1),
        submission("blog1", "https://blog.example.org/c"),
    ])
    config = LinkFilterConfig(allow_nsfw=True, min_score=1, extra_blocked_domains=("example.org",))
    result = filter_dump(path, config)
    assert sorted(result.links["url"].to_pylist()) == ["https://example.com/a", "https://example.com/b"]
    assert _reasons_by_item(result) == {"blog1": "blocked_domain"}


def test_config_rejects_an_empty_date_range() -> None:
    with pytest.raises(ValueError, match="start_date"):
        LinkFilterConfig(start_date="2019-01-01", end_date="2019-01-01")


def test_the_same_page_linked_many_times_becomes_one_link(tmp_path: Path) -> None:
    result = filter_dump(write_dump(tmp_path / "RS_d.zst", [
        submission("a", "https://News.example.com/story?id=7&utm_source=reddit", score=5, subreddit="news",
                   created_utc=300, title="five"),
        submission("b", "https://news.example.com/story?id=7#comments", score=40, subreddit="worldnews",
                   created_utc=200, title="forty"),
        submission("c", "https://news.example.com/story?id=7&amp;fbclid=x", score=10, subreddit="news",
                   created_utc=100, title="ten"),
        submission("d", "https://news.example.com/other", score=3),
    ]))
    assert result.links.schema == LINK_SCHEMA
    assert result.counts["unique_links"] == 2
    story = [row for row in result.links.to_pylist() if row["url"] == "https://news.example.com/story?id=7"][0]
    assert story == {
        "doc_id": doc_id_for("https://news.example.com/story?id=7"), "url": "https://news.example.com/story?id=7",
        "domain": "news.example.com", "submission_ids": ["a", "b", "c"], "subreddits": ["news", "worldnews"],
        "score_max": 40, "score_sum": 55, "n_submissions": 3, "created_utc_min": 100, "title": "forty",
        "inputs": ["RS_d.zst"]}
    assert result.links["doc_id"].to_pylist() == sorted(result.links["doc_id"].to_pylist())


def _mixed_records(n: int, seed: int) -> list[dict | bytes]:
    """Regular records of every kind, with irregular lines sprinkled in."""
    rng = random.Random(seed)
    out: list[dict | bytes] = []
    for i in range(n):
        url = rng.choice(["https://example.com/a?utm_source=x", "https://example.com/a", "https://i.redd.it/x.png",
                          "https://site.org/p.pdf", "ftp://site.org/", "https://blog.site.org/post/" + str(i % 50)])
        record = submission(f"r{i}", url, score=rng.choice([0, 1, 2, 3, 4, 100]), is_self=rng.random() < 0.3,
                            over_18=rng.random() < 0.1, created_utc=1000 + i, subreddit=rng.choice(["a", "b"]),
                            title=rng.choice(["plain", "caf\u00e9 \"quoted\"", "back\\slash", ""]))
        odd = rng.random()
        if odd < 0.03:
            out.append(b"{broken json")
        elif odd < 0.05:
            out.append({**record, "score": str(record["score"])})
        elif odd < 0.07:
            out.append({k: v for k, v in record.items() if k != "url"})
        elif odd < 0.08:
            out.append(b"")  # a blank line is not a record
        elif odd < 0.09:
            out.append({**record, "over_18": None, "subreddit": None})
        else:
            out.append(record)
    return out


def _expected_decisions(records: list[dict | bytes], config: LinkFilterConfig, name: str) -> tuple[dict, set]:
    """What orjson + classify_record decide, line by line: reasons by item, and the kept (id, url) pairs."""
    expected_reasons, expected_kept = {}, set()
    for line_no, record in enumerate(records, start=1):
        if isinstance(record, bytes) and not record.strip():
            continue
        try:
            decision = classify_record(orjson.loads(record) if isinstance(record, bytes) else record, config)
        except orjson.JSONDecodeError:
            expected_reasons[f"{name}:{line_no}"] = "malformed_json"
            continue
        if isinstance(decision, KeptSubmission):
            expected_kept.add((decision.id, decision.url))
        else:
            expected_reasons[decision.id or f"{name}:{line_no}"] = decision.reason
    return expected_reasons, expected_kept


def _kept_pairs(result: dumps.DumpResult) -> set[tuple[str, str]]:
    return {(i, url) for url, ids in zip(result.links["url"].to_pylist(), result.links["submission_ids"].to_pylist())
            for i in ids}


@pytest.mark.parametrize("workers", [1, 2])  # 2: decoded in a second process
def test_fast_path_decides_exactly_like_classify_record_line_by_line(tmp_path: Path, monkeypatch, workers: int) -> None:
    monkeypatch.setattr(dump_lines, "CHUNK_BYTES", 16_384)  # many chunks: exercises chunk edges and line numbering
    monkeypatch.setattr(dump_lines, "SEPARATE_PROCESS_MIN_BYTES", 0)
    records = _mixed_records(3000, seed=1)
    config = LinkFilterConfig(start_date="1970-01-01T00:18:20", end_date="1970-01-01T01:05:00")  # 1100, 3900
    result = filter_dump(write_dump(tmp_path / "RS_mix.zst", records), config, workers=workers)

    expected_reasons, expected_kept = _expected_decisions(records, config, "RS_mix.zst")
    assert _kept_pairs(result) == expected_kept
    assert _reasons_by_item(result) == expected_reasons
    assert result.counts["records_read"] == sum(1 for r in records if r != b"")
    _assert_every_record_accounted(result)


_PLAIN = orjson.dumps(submission("X", "https://example.com/x", score=5))[1:-1]  # its fields, without the braces
# Lines msgspec could read differently from orjson: damage in fields the rules do not read, escapes in keys.
ODD_LINES = [
    b'{' + _PLAIN + b', "extra": [1,]}', b'{' + _PLAIN + b', "extra": "bad \\x escape \\q"}',
    b'{' + _PLAIN + b', "extra": "\xff\xfe not utf-8"}', b'{' + _PLAIN + b', "extra": "\xed\xa0\x80 surrogate"}',
    b'{' + _PLAIN + b', "extra": 01}', b'{' + _PLAIN + b', "extra": NaN}', b'{' + _PLAIN + b', "extra": "tab\there"}',
    b'{' + _PLAIN + b', "extra": ' + b'[' * 1010 + b']' * 1010 + b'}', b'{' + _PLAIN + b'} trailing',
    b'{' + _PLAIN.replace(b'"is_self":false', b'"is_s\\u0065lf":true') + b'}',
    b'{' + _PLAIN.replace(b'"score":5', b'"score":5.0') + b'}', b'{' + _PLAIN.replace(b'"score":5', b'"score":-0') + b'}',
    b'{' + _PLAIN.replace(b'"id":"X"', b'"id":""') + b'}', b'{' + _PLAIN.replace(b'"id":"X"', b'"\\u0069d":"X"') + b'}',
    b'\t \r', b'\x0c', b'{' + _PLAIN + b'}\r',
]


@pytest.mark.parametrize("workers", [1, 2])
def test_lines_msgspec_could_read_otherwise_are_decided_like_classify_record(tmp_path: Path, monkeypatch,
                                                                            workers: int) -> None:
    monkeypatch.setattr(dump_lines, "SEPARATE_PROCESS_MIN_BYTES", 0)
    records: list[dict | bytes] = []
    for i, odd in enumerate(ODD_LINES):  # each odd line among plain ones, its id made unique
        records += [submission(f"p{i}", f"https://example.com/{i}"), odd.replace(b'"X"', f'"odd{i}"'.encode())]
    result = filter_dump(write_dump(tmp_path / "RS_odd.zst", records), workers=workers)

    expected_reasons, expected_kept = _expected_decisions(records, LinkFilterConfig(), "RS_odd.zst")
    assert _kept_pairs(result) == expected_kept
    assert _reasons_by_item(result) == expected_reasons
    _assert_every_record_accounted(result)


@pytest.mark.parametrize("workers", [1, 2])
def test_two_records_on_one_line_or_one_record_over_two_lines_are_malformed(tmp_path: Path, monkeypatch,
                                                                           workers: int) -> None:
    """Read as one stream of values, these lines hold as many records as lines (3); read line by line, none."""
    monkeypatch.setattr(dump_lines, "SEPARATE_PROCESS_MIN_BYTES", 0)
    a, b, c = (orjson.dumps(submission(i, f"https://example.com/{i}")) for i in ("a", "b", "c"))
    first, rest = c.split(b',"url"', 1)
    lines = [a + b" " + b, first, b',"url"' + rest, orjson.dumps(submission("d", "https://example.com/d"))]
    result = filter_dump(write_dump(tmp_path / "RS_odd.zst", lines), workers=workers)

    assert _kept_pairs(result) == {("d", "https://example.com/d")}
    assert _reasons_by_item(result) == {f"RS_odd.zst:{n}": "malformed_json" for n in (1, 2, 3)}
    assert result.counts["records_read"] == 4
    _assert_every_record_accounted(result)


def test_worker_count_does_not_change_the_result(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(dump_lines, "CHUNK_BYTES", 8192)
    monkeypatch.setattr(dump_lines, "SEPARATE_PROCESS_MIN_BYTES", 0)  # workers > 1: decoded in a second process
    path = write_dump(tmp_path / "RS_mix.zst", _mixed_records(1000, seed=2))
    one, three = filter_dump(path, workers=1), filter_dump(path, workers=3)
    assert one.links.equals(three.links)
    assert one.rejects.sort_by("item").equals(three.rejects.sort_by("item"))
    assert one.counts == three.counts


def test_invalid_utf8_line_is_malformed_and_its_neighbours_are_still_read(tmp_path: Path) -> None:
    result = filter_dump(write_dump(tmp_path / "RS_d.zst", [
        submission("k1", "https://example.com/1"), b'{"id": "bad\xff", "url": "https://example.com/"}',
        submission("k2", "https://example.com/2"),
    ]))
    assert _reasons_by_item(result) == {"RS_d.zst:2": "malformed_json"}
    assert result.counts["kept_submissions"] == 2


def test_gzip_and_plain_ndjson_read_like_zstd(tmp_path: Path) -> None:
    records = _mixed_records(300, seed=3)
    lines = b"".join((r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for r in records)
    zst = filter_dump(write_dump(tmp_path / "RS.zst", records))
    (tmp_path / "RS.gz").write_bytes(gzip.compress(lines))
    (tmp_path / "RS.ndjson").write_bytes(lines)
    (tmp_path / "RS.jsonl").write_bytes(lines.rstrip(b"\n"))  # no newline after the last record
    for name in ("RS.gz", "RS.ndjson", "RS.jsonl"):
        other = filter_dump(tmp_path / name)
        assert other.counts == zst.counts, name
        assert other.links.drop_columns(["inputs"]).equals(zst.links.drop_columns(["inputs"])), name
        assert other.links["inputs"].to_pylist()[0] == [name]


def test_long_window_zstd_and_concatenated_frames_are_read(tmp_path: Path) -> None:
    first = write_dump(tmp_path / "a.zst", [submission("a1", "https://example.com/a")])
    second = write_dump(tmp_path / "b.zst", [submission("b1", "https://example.com/b")], long_window=False)
    both = tmp_path / "RS_both.zst"
    both.write_bytes(first.read_bytes() + second.read_bytes())
    assert filter_dump(both).counts["kept_submissions"] == 2


@pytest.mark.parametrize("workers", [1, 2])
def test_truncated_zstd_keeps_records_before_the_cut_and_adds_one_reject(tmp_path: Path, monkeypatch,
                                                                         workers: int) -> None:
    monkeypatch.setattr(dump_lines, "SEPARATE_PROCESS_MIN_BYTES", 0)
    records = [submission(f"s{i}", f"https://example.com/{i}", title=f"title {i} " + "x" * (i % 97))
               for i in range(20_000)]
    full = write_dump(tmp_path / "full.zst", records)
    cut = tmp_path / "RS_cut.zst"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])

    result = filter_dump(cut, workers=workers)

    assert 0 < result.counts["kept_submissions"] < len(records)
    assert result.counts["truncated_dump"] == 1
    damage = result.rejects.filter(pa.compute.equal(result.rejects["reason"], "truncated_dump")).to_pylist()
    assert len(damage) == 1 and damage[0]["item"] == "RS_cut.zst"
    assert "RS_cut.zst" in damage[0]["detail"] and "re-download" in damage[0]["detail"]
    assert str(cut.stat().st_size) in damage[0]["detail"]
    kept_ids = [i for ids in result.links["submission_ids"].to_pylist() for i in ids]
    assert sorted(kept_ids, key=lambda i: int(i[1:])) == [f"s{i}" for i in range(len(kept_ids))]  # a clean prefix
    _assert_every_record_accounted(result)


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_zstd_keeps_records_before_the_damage(tmp_path: Path, monkeypatch, workers: int) -> None:
    monkeypatch.setattr(dump_lines, "SEPARATE_PROCESS_MIN_BYTES", 0)
    records = [submission(f"s{i}", f"https://example.com/{i}", title=f"{i}" * (i % 50)) for i in range(20_000)]
    data = bytearray(write_dump(tmp_path / "full.zst", records).read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)
    damaged = tmp_path / "RS_bad.zst"
    damaged.write_bytes(bytes(data))

    result = filter_dump(damaged, workers=workers)

    assert result.counts["truncated_dump"] == 1
    assert 0 < result.counts["kept_submissions"] < len(records)
    detail = result.rejects.filter(pa.compute.equal(result.rejects["reason"], "truncated_dump"))["detail"][0].as_py()
    assert "compressed bytes" in detail and "zstd -t --long=31" in detail
    _assert_every_record_accounted(result)


def test_truncated_gzip_keeps_records_before_the_cut(tmp_path: Path) -> None:
    lines = b"".join(orjson.dumps(submission(f"s{i}", f"https://example.com/{i}", title=str(i) * 30)) + b"\n"
                     for i in range(5000))
    data = gzip.compress(lines)
    cut = tmp_path / "RS_cut.gz"
    cut.write_bytes(data[: len(data) // 2])
    result = filter_dump(cut)
    assert result.counts["truncated_dump"] == 1
    assert 0 < result.counts["kept_submissions"] < 5000
    _assert_every_record_accounted(result)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("RS_missing.zst", None, "cannot open dump"),
    ("RS_text.zst", b"this is not zstd at all\n", "not a zstd file"),
    ("RS_empty.zst", b"", "is empty"),
    ("RS_text.gz", b"this is not gzip at all\n", "not a gzip file"),
    ("RS_data.csv", b"id,url\n", "unknown dump type '.csv'"),
])
def test_unreadable_files_raise_with_the_file_and_what_to_do(tmp_path: Path, name: str, content: bytes | None,
                                                             message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DumpReadError, match=message) as error:
        filter_dump(path)
    assert name in str(error.value)
    assert any(advice in str(error.value) for advice in ("check", "re-download", "expected"))


def test_merge_links_unions_the_same_page_across_dumps(tmp_path: Path) -> None:
    january = filter_dump(write_dump(tmp_path / "RS_2019-01.zst", [
        submission("j1", "https://example.com/story?utm_medium=x", score=7, subreddit="news", created_utc=200,
                   title="january"),
        submission("j2", "https://example.com/only-january", score=3),
    ]))
    february = filter_dump(write_dump(tmp_path / "RS_2019-02.zst", [
        submission("f1", "https://EXAMPLE.com/story", score=30, subreddit="science", created_utc=300, title="february"),
        submission("f2", "https://example.com/story#top", score=4, subreddit="news", created_utc=400),
    ]))

    merged = merge_links([february.links, january.links])

    assert merged.schema == LINK_SCHEMA
    assert merged["doc_id"].to_pylist() == sorted(merged["doc_id"].to_pylist())
    story = [row for row in merged.to_pylist() if row["url"] == "https://example.com/story"][0]
    assert story["submission_ids"] == ["f1", "f2", "j1"]
    assert story["subreddits"] == ["news", "science"]
    assert (story["score_max"], story["score_sum"], story["n_submissions"]) == (30, 41, 3)
    assert story["created_utc_min"] == 200
    assert story["title"] == "february"
    assert story["inputs"] == ["RS_2019-01.zst", "RS_2019-02.zst"]
    assert merged.num_rows == 2
    assert merge_links([january.links, february.links]).equals(merged)  # order of inputs does not matter


def test_merge_links_of_nothing_is_an_empty_link_table() -> None:
    assert merge_links([]).schema == LINK_SCHEMA
    assert merge_links([]).num_rows == 0


def test_a_submission_kept_twice_in_one_dump_is_kept_once_and_the_repeat_rejected(tmp_path: Path) -> None:
    result = filter_dump(write_dump(tmp_path / "RS_d.zst", [
        submission("a", "https://example.com/a", score=5), submission("low", "https://example.com/l", score=1),
        submission("a", "https://example.com/a", score=9, title="re-scraped"),
        submission("low", "https://example.com/l", score=1), submission("c", "https://example.com/a", score=4),
    ]))
    assert [(r["item"], r["reason"]) for r in result.rejects.sort_by("reason").to_pylist()] == [
        ("a", "duplicate_submission"), ("low", "low_score"), ("low", "low_score")]
    details = dict(zip(result.rejects["reason"].to_pylist(), result.rejects["detail"].to_pylist()))
    assert "submission a was kept already from earlier in RS_d.zst" in details["duplicate_submission"]
    (link,) = result.links.to_pylist()
    assert (link["submission_ids"], link["score_sum"], link["n_submissions"]) == (["a", "c"], 9, 2)  # the first a
    assert result.counts["kept_submissions"] == 2 and result.counts["duplicate_submission"] == 1
    _assert_every_record_accounted(result)


def test_merge_dump_links_keeps_each_submission_once_naming_the_input_that_kept_it(tmp_path: Path) -> None:
    records = [submission("j1", "https://example.com/story", score=7), submission("j2", "https://example.com/other")]
    january = filter_dump(write_dump(tmp_path / "RS_2019-01.zst", records))
    again = filter_dump(write_dump(tmp_path / "RS_copy.zst", records + [submission("n1", "https://example.com/story")]))

    merged, repeated = dumps.merge_dump_links([january.submissions, again.submissions], ["RS_2019-01.zst", "RS_copy.zst"])

    rows = {row["url"]: row for row in merged.to_pylist()}
    story, other = rows["https://example.com/story"], rows["https://example.com/other"]
    assert (story["submission_ids"], story["score_sum"], story["inputs"]) == (["j1", "n1"], 17, ["RS_2019-01.zst", "RS_copy.zst"])
    assert (other["submission_ids"], other["score_sum"], other["inputs"]) == (["j2"], 10, ["RS_2019-01.zst"])
    assert repeated.schema == REJECT_SCHEMA
    assert sorted(repeated["item"].to_pylist()) == ["j1", "j2"]
    assert set(repeated["reason"].to_pylist()) == {"duplicate_submission"}
    assert set(repeated["input"].to_pylist()) == {"RS_copy.zst"}
    assert all("kept already from input 1 of 2 (RS_2019-01.zst)" in d for d in repeated["detail"].to_pylist())
