"""Read Pushshift submission dumps (RS_*.zst) and keep the outbound links WebText would fetch.

GPT-2's WebText: every outbound link from a Reddit submission with at least 3 karma, Wikipedia removed. Each record
read ends either as a kept submission, merged into one row per normalized URL (LINK_SCHEMA), or as exactly one reject
row with a stable reason code. The checks run in this order, and a record takes the reason of the first one it fails:

    malformed_json      the line is not JSON, or not a JSON object
    missing_field       `id`, `url`, `score` or `created_utc` is absent or null (or `id` is "")
    bad_field_type      a field has a type no dump writer produces (e.g. `score` as a list, `is_self` as "yes")
    self_post           `is_self`: a text post, no outbound link
    out_of_date_range   `created_utc` outside the configured half-open range [start_date, end_date)
    nsfw                `over_18`, unless allow_nsfw
    low_score           `score` < min_score (3: GPT-2's "at least 3 karma")
    bad_url             the URL does not normalize (not http(s), no host, unparseable)
    blocked_domain      Wikipedia and siblings, image / video hosts, Reddit itself (urls.DEFAULT_BLOCKED_DOMAINS)
    non_page_extension  the URL path names an image, video, archive, PDF, ... (urls.NON_PAGE_EXTENSIONS)

and, outside the per-record rules:

    line_too_long         a line over max_line_bytes (1 MiB; real submissions are a few KB): never held whole, its
                          bytes are skipped up to the next newline (item = file:line, detail = its length)
    duplicate_submission  a submission id kept before, earlier in the file or in an earlier dump (merge_dump_links):
                          the first kept record wins, so a submission is kept once and its link's counts count it once
    over_max_links        a link past the max_links highest-scored ones of a trial run (merge_dump_links): one reject
                          row per link, standing for all of its submissions
    truncated_dump        the compressed data breaks off (a damaged block, a truncated download): every record
                          decoded before the damage is decided as usual, and the lost tail, from the line the damage
                          cut to the end of the file, is this one file-level reject (item = the file name), counted
                          as one input item; detail: the compressed byte range and the line where the loss begins

Record-level facts come first, the most common rejections (self posts, low scores) among them; URL checks need the
normalized URL and run last. Integers may also come as integral floats or decimal strings ("12"): older Pushshift
dumps and some re-exports write `created_utc` that way; values outside int64 are bad_field_type. Missing or null
`is_self` / `over_18` count as false, missing `subreddit` / `title` as empty. Blank lines are not records. Records
with a duplicated top-level key are undefined input.

Speed: a second process decompresses and cuts the stream into chunks of whole lines (gptcore/corpus/dump_lines.py,
which also bounds memory against lines and blocks that decode to gigabytes), writing them straight into memory shared
with this one, which classifies the chunk before meanwhile; it also counts each chunk's lines and checks that each is
one `{...}`. Such a chunk is read by msgspec as one stream into the eight fields the rules need, skipping the rest
without building it, and checking their types; it counts as read line by line when it yields one record per line
(LineChunk.braced says why that is exact: else two records on one line and one record over two lines could pass for
two lines). numpy applies the record-level rules (self post, date range, NSFW, low score) to the whole chunk at once.
Other chunks are read line by line, and lines that do not decode as a plainly typed record go through
`classify_record`, the reference implementation of the rules, one line at a time; the few candidate links go through
the same URL checks, with one verdict per distinct URL (cached). The one difference from orjson + classify_record: a
number beyond the float range (1e400, valid JSON that orjson refuses) in a field the rules do not read leaves the
line a record. Memory: a --long=31 stream needs up to 2 GiB of decoder window (the last 2 GiB of output), plus a few
chunks in flight, plus the decisions so far: kept links as Arrow rows and rejects as (item, reason, detail) only
(~35 B each); the constant reject columns are added once the decoder is freed.
"""
from __future__ import annotations

import datetime as dt
import functools
import operator
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated

import duckdb
import msgspec
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from gptcore.corpus.dump_lines import DumpDamaged, LineChunk, line_chunks
from gptcore.corpus.records import REJECT_SCHEMA, doc_id_for, reject
from gptcore.corpus.urls import DEFAULT_BLOCKED_DOMAINS, Link, is_blocked_domain, is_non_page_path, normalize_link

REASONS = (
    "malformed_json", "missing_field", "bad_field_type", "self_post", "out_of_date_range", "nsfw", "low_score",
    "bad_url", "blocked_domain", "non_page_extension", "line_too_long", "duplicate_submission", "truncated_dump",
)
REQUIRED_FIELDS = ("id", "url", "score", "created_utc")

_INT64 = (-(2**63), 2**63 - 1)

LINK_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),  # records.doc_id_for(url)
        ("url", pa.string()),  # normalized
        ("domain", pa.string()),  # host of the normalized URL
        ("submission_ids", pa.list_(pa.string())),  # sorted, unique
        ("subreddits", pa.list_(pa.string())),  # sorted, unique
        ("score_max", pa.int64()),
        ("score_sum", pa.int64()),
        ("n_submissions", pa.int64()),  # distinct submission ids
        ("created_utc_min", pa.int64()),
        ("title", pa.string()),  # of the highest-scored submission
        ("inputs", pa.list_(pa.string())),  # dump file names, sorted, unique
    ]
)


def _utc_seconds(date: str | None, name: str = "date") -> int | None:
    """Seconds since the epoch of an ISO 8601 date or date-time (``2019-01-01``, ``2019-01-01T12:00``), read as UTC."""
    if date is None:
        return None
    try:
        return int(dt.datetime.fromisoformat(date).replace(tzinfo=dt.timezone.utc).timestamp())
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an ISO date like 2019-01-01 (or 2019-01-01T12:00), got {date!r}") from None


@dataclass(frozen=True)
class LinkFilterConfig:
    """Which submissions' links to keep. Defaults follow GPT-2's WebText.

    ``blocked_domains`` replaces the default block list (Wikipedia, image/video hosts, Reddit);
    ``extra_blocked_domains`` adds to it.
    """

    min_score: int = 3  # "at least 3 karma" (Radford et al. 2019, section 2.2)
    allow_nsfw: bool = False
    start_date: str | None = None  # ISO, UTC; half-open range [start_date, end_date) on created_utc; None = unbounded
    end_date: str | None = None
    blocked_domains: tuple[str, ...] = DEFAULT_BLOCKED_DOMAINS
    extra_blocked_domains: tuple[str, ...] = ()
    # Longer lines are rejected unread: a real submission is a few KB, and a line is held whole to be parsed.
    max_line_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        start, end = self.start_utc, self.end_utc  # parsed here, so a bad date fails when the config is made
        if start is not None and end is not None and start >= end:
            raise ValueError(f"empty date range: start_date={self.start_date!r} must be before end_date={self.end_date!r}")
        if self.max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be >= 1, got {self.max_line_bytes}")

    @cached_property
    def start_utc(self) -> int | None:
        return _utc_seconds(self.start_date, "start_date")

    @cached_property
    def end_utc(self) -> int | None:
        return _utc_seconds(self.end_date, "end_date")

    @cached_property
    def blocked(self) -> frozenset[str]:
        """All blocked domains, as urls.is_blocked_domain wants them."""
        return frozenset(d.lower().rstrip(".") for d in (*self.blocked_domains, *self.extra_blocked_domains))

    @cached_property
    def range_text(self) -> str:
        start = "-inf" if self.start_utc is None else str(self.start_utc)
        end = "+inf" if self.end_utc is None else str(self.end_utc)
        return f"[{start}, {end})"


@dataclass
class DumpResult:
    links: pa.Table  # LINK_SCHEMA, one row per normalized URL, sorted by doc_id
    submissions: pa.Table  # LINK_SCHEMA, one row per kept submission in file order: what merge_dump_links takes
    rejects: pa.Table  # REJECT_SCHEMA, one row per rejected record, repeats included (+ one truncated_dump row for a damaged file)
    counts: dict[str, int]  # records_read, kept_submissions, unique_links, and one count per reason in REASONS


@dataclass(frozen=True, slots=True)
class KeptSubmission:
    """A submission whose link passed every rule."""

    id: str
    url: str  # normalized
    domain: str
    subreddit: str
    score: int
    created_utc: int
    title: str


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str  # one of REASONS
    detail: str
    id: str | None  # the submission id when the record had a usable one


# ---------------------------------------------------------------------------------------------------------------------
# The rules, one record at a time (the reference every faster path must agree with)


def _as_int(value: object) -> int | None:
    """An int64 from an int, an integral float or a decimal string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = int(value) if value.is_integer() else None
    elif isinstance(value, str):
        text = value.strip()
        value = int(text) if text.lstrip("-").isdigit() and text.isascii() else None
    return value if isinstance(value, int) and _INT64[0] <= value <= _INT64[1] else None


def _check_link(submission_id: str, url: str, subreddit: str, score: int, created_utc: int, title: str,
                config: LinkFilterConfig) -> KeptSubmission | Rejected:
    """The URL rules, for a record that passed the record-level ones."""
    verdict = _link_verdict(url, config.blocked)
    if isinstance(verdict, Link):
        return KeptSubmission(submission_id, verdict.url, verdict.host, subreddit, score, created_utc, title)
    reason, detail = verdict
    return Rejected(reason, detail, submission_id)


@functools.lru_cache(maxsize=1 << 15)  # the same URL is submitted many times
def _link_verdict(url: str, blocked: frozenset[str]) -> Link | tuple[str, str]:
    """The normalized link, or why it is not kept: (reason, detail)."""
    link = normalize_link(url)
    if link is None:
        return "bad_url", f"not an http(s) URL with a host: {url[:200]!r}"
    if is_blocked_domain(link.host, blocked):
        return "blocked_domain", link.host
    if is_non_page_path(link.path):
        return "non_page_extension", link.url[:200]
    return link


def classify_record(record: object, config: LinkFilterConfig) -> KeptSubmission | Rejected:
    """Apply the link rules (module docstring, in that order) to one parsed dump record."""
    if not isinstance(record, dict):
        return Rejected("malformed_json", f"a JSON {type(record).__name__}, not an object", None)
    raw_id = record.get("id")
    submission_id = raw_id if isinstance(raw_id, str) and raw_id else None
    for name in REQUIRED_FIELDS:
        if record.get(name) is None or (name == "id" and raw_id == ""):
            return Rejected("missing_field", f"no {name!r}", submission_id)
    if submission_id is None:
        return Rejected("bad_field_type", f"'id' is {type(raw_id).__name__}, not a string", None)
    url, score, created_utc = record["url"], _as_int(record["score"]), _as_int(record["created_utc"])
    flags = {name: record.get(name) for name in ("is_self", "over_18")}
    texts = {name: record.get(name) for name in ("subreddit", "title")}
    problems = [] if isinstance(url, str) else [f"'url' is {type(url).__name__}"]
    problems += [f"{n!r} is {record[n]!r:.40}" for n, v in (("score", score), ("created_utc", created_utc)) if v is None]
    problems += [f"{n!r} is {v!r:.40}" for n, v in flags.items() if v is not None and not isinstance(v, bool)]
    problems += [f"{n!r} is {type(v).__name__}" for n, v in texts.items() if v is not None and not isinstance(v, str)]
    if problems:
        return Rejected("bad_field_type", "; ".join(problems), submission_id)
    if flags["is_self"]:
        return Rejected("self_post", "", submission_id)
    if (config.start_utc is not None and created_utc < config.start_utc) or \
            (config.end_utc is not None and created_utc >= config.end_utc):
        return Rejected("out_of_date_range", f"created_utc {created_utc} outside {config.range_text}", submission_id)
    if flags["over_18"] and not config.allow_nsfw:
        return Rejected("nsfw", "", submission_id)
    if score < config.min_score:
        return Rejected("low_score", f"score {score} < {config.min_score}", submission_id)
    return _check_link(submission_id, url, texts["subreddit"] or "", score, created_utc, texts["title"] or "", config)


# ---------------------------------------------------------------------------------------------------------------------
# Classifying a chunk of lines: msgspec and numpy for the plainly typed records, classify_record for the rest

_Int64 = Annotated[int, msgspec.Meta(ge=_INT64[0], le=_INT64[1])]


class PlainRecord(msgspec.Struct, gc=False):
    """The fields the rules read, with the JSON types dump writers use. A line that decodes into this (msgspec skips
    the other ~100 fields without building them) passes classify_record's missing_field and bad_field_type checks, so
    _decide_plain_records decides it; every other line (malformed, another type, a missing field, an empty id) goes
    to classify_record."""

    id: Annotated[str, msgspec.Meta(min_length=1)]
    url: str
    score: _Int64
    created_utc: _Int64
    is_self: bool | None = None
    over_18: bool | None = None
    subreddit: str | None = None
    title: str | None = None


_PLAIN = msgspec.json.Decoder(PlainRecord)
_NOT_PLAIN = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)  # RecursionError: nested > ~1000 deep
# classify_record's record-level reasons in its order, by code (0: none, the URL rules decide)
_RECORD_REASONS = pa.array(["", "self_post", "out_of_date_range", "nsfw", "low_score"])
_ID, _SCORE, _CREATED, _IS_SELF, _OVER_18 = map(operator.attrgetter, ("id", "score", "created_utc", "is_self", "over_18"))


@dataclass
class _Decisions:
    """What became of the lines of one chunk. Line numbers are known only once the chunks before it are counted, so
    rejects of records without an id get their `file:line` item in number_lines()."""

    input_name: str
    n_lines: int = 0  # physical lines, blank ones included
    records: int = 0
    kept: list[tuple[int, KeptSubmission]] = field(default_factory=list)  # (line index in chunk, submission)
    links: pa.Table | None = None  # the kept submissions as LINK_SCHEMA rows, once compact() has run
    reject_rows: list[dict] = field(default_factory=list)  # _REASON_SCHEMA rows
    reject_tables: list[pa.Table] = field(default_factory=list)  # _REASON_SCHEMA
    unnamed_rows: list[tuple[int, int]] = field(default_factory=list)  # (row in reject_rows, line index in chunk)

    def add(self, decision: KeptSubmission | Rejected, line_index: int) -> None:
        if isinstance(decision, KeptSubmission):
            self.kept.append((line_index, decision))
            return
        if decision.id is None:
            self.unnamed_rows.append((len(self.reject_rows), line_index))
        self.reject_rows.append({"item": decision.id or "", "reason": decision.reason, "detail": decision.detail})

    def compact(self) -> _Decisions:
        """Trade the kept submissions' Python objects for Arrow rows (several times smaller) while many chunks wait.
        The rows are in line order, so that the first of two records of one submission is the first kept."""
        kept = [submission for _, submission in sorted(self.kept, key=lambda pair: pair[0])]
        self.links, self.kept = _submission_links(kept, self.input_name), []
        return self

    def add_long_line(self, length: int, max_line: int) -> None:
        """A line after this chunk's lines, over the cap: one record, rejected unread."""
        self.records += 1
        self.add(Rejected("line_too_long", f"{length:,} bytes > max_line_bytes={max_line:,}", None), self.n_lines)
        self.n_lines += 1

    def number_lines(self, first_line: int) -> None:
        for row, line_index in self.unnamed_rows:
            item = f"{self.input_name}:{first_line + line_index}"
            self.reject_rows[row]["item"] = item
            if self.reject_rows[row]["reason"] == "line_too_long":
                self.reject_rows[row]["detail"] = (
                    f"line {first_line + line_index} of {self.input_name} is {self.reject_rows[row]['detail']}: not "
                    f"read (a submission is a few KB; the file may be damaged or not a dump). Raise max_line_bytes "
                    f"if such lines are real")

    def rejects(self) -> list[pa.Table]:
        return [*self.reject_tables, pa.Table.from_pylist(self.reject_rows, schema=_REASON_SCHEMA)]


def _line_offsets(data: bytes | memoryview) -> np.ndarray:
    """offsets[i]:offsets[i + 1] is line i of data, its newline included (JSON readers skip it as whitespace)."""
    newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    offsets = np.empty(len(newlines) + 1, np.int64)
    offsets[0], offsets[1:] = 0, newlines + 1
    return offsets


def _classify_lines(data: bytes | memoryview, offsets: np.ndarray, indices, decisions: _Decisions,
                    config: LinkFilterConfig) -> None:
    """The reference path: parse each line with orjson and apply classify_record. Blank lines are not records."""
    for i in indices:
        line = bytes(data[offsets[i]:offsets[i + 1]])
        if not line.strip():
            continue
        decisions.records += 1
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            decisions.add(Rejected("malformed_json", str(error)[:200], None), int(i))
            continue
        decisions.add(classify_record(record, config), int(i))


# A reject while the dump is read: the columns of REJECT_SCHEMA that differ from row to row (see _reject_table).
_REASON_SCHEMA = pa.schema([("item", pa.string()), ("reason", pa.string()), ("detail", pa.string())])


def _reject_table(reasons: pa.Table, input_name: str) -> pa.Table:
    """REJECT_SCHEMA rows from _REASON_SCHEMA ones, adding the columns that are the same for every reject of a dump."""
    n = reasons.num_rows
    return pa.table({
        "item": reasons["item"], "doc_id": pa.nulls(n, pa.string()), "source": pa.repeat("reddit", n),
        "step": pa.repeat("links", n), "reason": reasons["reason"], "detail": reasons["detail"],
        "input": pa.repeat(input_name, n),
    }, schema=REJECT_SCHEMA)


def _classify_chunk(chunk: LineChunk, input_name: str, config: LinkFilterConfig) -> _Decisions:
    """Classify every line of the chunk, and reject the too-long line after them, if any."""
    decisions = _classify_chunk_lines(chunk, input_name, config) if chunk.data else _Decisions(input_name)
    if chunk.long_line is not None:
        decisions.add_long_line(chunk.long_line, config.max_line_bytes)
    return decisions.compact()


def _classify_chunk_lines(chunk: LineChunk, input_name: str, config: LinkFilterConfig) -> _Decisions:
    """All lines at once when each line is one plain record (the common case); else line by line."""
    data = chunk.data
    n_lines = chunk.lines if chunk.lines is not None else int(np.count_nonzero(np.frombuffer(data, np.uint8) == 10))
    decisions = _Decisions(input_name, n_lines)
    if chunk.braced:  # then n_lines records from decode_lines are one per line (LineChunk.braced)
        # msgspec checks the UTF-8 of the fields it reads, not of those it skips: check it all first, as orjson would.
        try:
            pa.LargeStringArray.from_buffers(1, pa.py_buffer(np.array([0, len(data)], np.int64)),
                                             pa.py_buffer(data)).validate(full=True)
            records = _PLAIN.decode_lines(data)
        except (pa.ArrowInvalid, *_NOT_PLAIN):
            records = None
        if records is not None and len(records) == n_lines:
            _decide_plain_records(records, range(n_lines), decisions, config)  # all have ids: no line numbers needed
            return decisions
    _classify_lines_one_by_one(data, decisions, config)
    return decisions


def _classify_lines_one_by_one(data: bytes | memoryview, decisions: _Decisions, config: LinkFilterConfig) -> None:
    """A line is plain when it is UTF-8 and decodes into PlainRecord; classify_record decides the others."""
    offsets = _line_offsets(data)
    plain, positions, others = [], [], []
    for i in range(decisions.n_lines):
        line = bytes(data[offsets[i]:offsets[i + 1]])
        try:
            line.decode()
            plain.append(_PLAIN.decode(line))
            positions.append(i)
        except (UnicodeDecodeError, *_NOT_PLAIN):
            others.append(i)
    _classify_lines(data, offsets, others, decisions, config)
    _decide_plain_records(plain, positions, decisions, config)


def _decide_plain_records(records: list[PlainRecord], positions, decisions: _Decisions,
                          config: LinkFilterConfig) -> None:
    """classify_record for plain records: the record-level rules as array operations, then the URL rules for the
    few that pass them. positions[i] orders records[i] among the chunk's lines."""
    n = len(records)
    decisions.records += n
    score = np.fromiter(map(_SCORE, records), np.int64, n)
    created = np.fromiter(map(_CREATED, records), np.int64, n)
    out_of_range = np.zeros(n, np.bool_)
    if config.start_utc is not None:
        out_of_range |= created < config.start_utc
    if config.end_utc is not None:
        out_of_range |= created >= config.end_utc
    nsfw = np.fromiter(map(_OVER_18, records), np.bool_, n) & (not config.allow_nsfw)  # None (null): False
    is_self = np.fromiter(map(_IS_SELF, records), np.bool_, n)
    code = np.select([is_self, out_of_range, nsfw, score < config.min_score], [1, 2, 3, 4], 0)  # the first that holds
    rejected = pa.array(np.flatnonzero(code))
    reason_code = pa.array(code).take(rejected)
    score_text = pc.binary_join_element_wise("score ", pc.cast(pa.array(score).take(rejected), pa.string()),
                                             f" < {config.min_score}", "")
    date_text = pc.binary_join_element_wise("created_utc ", pc.cast(pa.array(created).take(rejected), pa.string()),
                                            f" outside {config.range_text}", "")
    decisions.reject_tables.append(pa.table({
        "item": pa.array(list(map(_ID, records)), pa.string()).take(rejected),
        "reason": _RECORD_REASONS.take(reason_code),
        "detail": pc.if_else(pc.equal(reason_code, 4), score_text, pc.if_else(pc.equal(reason_code, 2), date_text, "")),
    }, schema=_REASON_SCHEMA))
    for i in np.flatnonzero(code == 0):
        r = records[i]
        decisions.add(_check_link(r.id, r.url, r.subreddit or "", r.score, r.created_utc, r.title or "", config),
                      int(positions[i]))


# ---------------------------------------------------------------------------------------------------------------------
# Links: one row per normalized URL

_MERGE_SQL = """
SELECT doc_id,
    min(url) AS url,
    min(domain) AS domain,
    list_sort(list_distinct(flatten(list(submission_ids)))) AS submission_ids,
    list_sort(list_distinct(flatten(list(subreddits)))) AS subreddits,
    max(score_max) AS score_max,
    sum(score_sum)::BIGINT AS score_sum,
    len(list_distinct(flatten(list(submission_ids))))::BIGINT AS n_submissions,
    min(created_utc_min) AS created_utc_min,
    first(title ORDER BY score_max DESC, created_utc_min, title) AS title,
    list_sort(list_distinct(flatten(list(inputs)))) AS inputs
FROM links
GROUP BY doc_id
ORDER BY doc_id
"""


def merge_links(tables: list[pa.Table]) -> pa.Table:
    """Merge LINK_SCHEMA tables (e.g. one per dump file) into one row per normalized URL, sorted by doc_id.

    Submission ids, subreddits and inputs are unioned; score_max is the max, score_sum the sum (monthly dumps hold
    each submission once), created_utc_min the min; the title is that of the highest-scored submission (ties: the
    earliest, then the smallest title).
    """
    links = pa.concat_tables([table.select(LINK_SCHEMA.names).cast(LINK_SCHEMA) for table in tables]) if tables \
        else LINK_SCHEMA.empty_table()
    with duckdb.connect(config={"threads": 1}) as con:
        con.register("links", links)
        return con.sql(_MERGE_SQL).to_arrow_table().cast(LINK_SCHEMA)


def _submission_links(kept: list[KeptSubmission], input_name: str) -> pa.Table:
    """One LINK_SCHEMA row per kept submission, before deduplication."""
    return pa.table({
        "doc_id": [doc_id_for(s.url) for s in kept],
        "url": [s.url for s in kept],
        "domain": [s.domain for s in kept],
        "submission_ids": [[s.id] for s in kept],
        "subreddits": [[s.subreddit] if s.subreddit else [] for s in kept],
        "score_max": [s.score for s in kept],
        "score_sum": [s.score for s in kept],
        "n_submissions": [1] * len(kept),
        "created_utc_min": [s.created_utc for s in kept],
        "title": [s.title for s in kept],
        "inputs": [[input_name]] * len(kept),
    }, schema=LINK_SCHEMA)


def drop_repeated_submissions(tables: list[pa.Table], inputs: list[str]) -> tuple[pa.Table, pa.Table]:
    """Per-submission LINK_SCHEMA rows, table after table (inputs[i] names table i) → the first row of each submission
    id, and one `duplicate_submission` reject (REJECT_SCHEMA) for every later row, naming the input that kept it."""
    rows = pa.concat_tables([t.select(LINK_SCHEMA.names).cast(LINK_SCHEMA) for t in tables]) if tables \
        else LINK_SCHEMA.empty_table()
    ids = pc.list_flatten(rows["submission_ids"]).combine_chunks()  # one id per row
    first = pc.index_in(ids, value_set=ids).to_numpy()  # the row that holds each id first
    repeated = first != np.arange(len(first))
    if not repeated.any():
        return rows, _reject_table(_REASON_SCHEMA.empty_table(), "")
    table_of_row = np.repeat(np.arange(len(tables)), [t.num_rows for t in tables])
    repeats = rows.filter(pa.array(repeated))
    where = [f"input {i + 1} of {len(inputs)} ({inputs[i]})" if len(inputs) > 1 else f"earlier in {inputs[i]}"
             for i in table_of_row[first[repeated]]]
    details = [f"submission {sid} was kept already from {w}; a submission is kept once (the first record wins): "
               f"pass each dump once, and not dumps that overlap, to avoid this"
               for sid, w in zip(pc.list_flatten(repeats["submission_ids"]).to_pylist(), where)]
    rejects = pa.table({
        "item": pc.list_flatten(repeats["submission_ids"]), "doc_id": repeats["doc_id"],
        "source": pa.repeat("reddit", repeats.num_rows), "step": pa.repeat("links", repeats.num_rows),
        "reason": pa.repeat("duplicate_submission", repeats.num_rows), "detail": pa.array(details, pa.string()),
        "input": pa.array([inputs[i] for i in table_of_row[repeated]], pa.string()),
    }, schema=REJECT_SCHEMA)
    return rows.filter(pa.array(~repeated)), rejects


def merge_dump_links(tables: list[pa.Table], inputs: list[str], max_links: int | None = None) -> tuple[pa.Table, pa.Table]:
    """The links of several dumps (each filter_dump's `submissions`, in the order given) → one row per normalized URL
    (merge_links), and the rejects: `duplicate_submission` for submissions an earlier dump kept already, then
    `over_max_links` for the links past the ``max_links`` highest-scored (ties: smaller doc_id first), if any."""
    unique, repeated = drop_repeated_submissions(tables, inputs)
    merged, over = merge_links([unique]), []
    if max_links is not None and merged.num_rows > max_links:
        ranked = merged.take(pc.sort_indices(merged, [("score_max", "descending"), ("doc_id", "ascending")]))
        over = ranked.slice(max_links).to_pylist()
        merged = ranked.slice(0, max_links).sort_by("doc_id")
    capped = pa.Table.from_pylist([reject(r["url"], "reddit", "links", "over_max_links",
                                          f"score {r['score_max']}; max_links={max_links}", ",".join(r["inputs"]),
                                          r["doc_id"]) for r in over], schema=REJECT_SCHEMA)
    return merged, pa.concat_tables([repeated, capped])


# ---------------------------------------------------------------------------------------------------------------------
# The step


def filter_dump(path: str | Path, config: LinkFilterConfig | None = None, workers: int | None = None) -> DumpResult:
    """Read one dump (.zst, .gz or plain NDJSON) and keep the links of the submissions that pass the rules.

    ``workers``: 1 decodes and classifies in this process; 2 or more decode in a second process while this one
    classifies (dump_lines.line_chunks), which is all that two cores can do for one zstd frame. Default: 2 when there
    are two cores. The result does not depend on it. Raises dump_lines.DumpReadError when the file cannot be read at
    all. A file damaged part-way keeps what was decoded before the damage and adds one `truncated_dump` reject for
    the lost tail.
    """
    path, config = Path(path), config or LinkFilterConfig()
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    name = path.name
    chunk_results: list[_Decisions] = []
    damage: DumpDamaged | None = None
    try:
        for chunk in line_chunks(path, config.max_line_bytes, separate_process=workers > 1):
            chunk_results.append(_classify_chunk(chunk, name, config))
    except DumpDamaged as error:
        damage = error
    first_line = 1
    for result in chunk_results:
        result.number_lines(first_line)
        first_line += result.n_lines
    rejects = [table for result in chunk_results for table in result.rejects()]
    if damage is not None:
        rejects.append(pa.Table.from_pylist([{"item": name, "reason": "truncated_dump",
                                              "detail": _damage_detail(damage, first_line)}], schema=_REASON_SCHEMA))
    submissions, repeated = drop_repeated_submissions(
        [pa.concat_tables([result.links for result in chunk_results]) if chunk_results else LINK_SCHEMA.empty_table()],
        [name])
    rejects_table = pa.concat_tables([
        _reject_table(pa.concat_tables(rejects) if rejects else _REASON_SCHEMA.empty_table(), name), repeated])
    links = merge_links([submissions])
    reason_counts = pc.value_counts(rejects_table["reason"]).to_pylist() if rejects_table.num_rows else []
    counts = {"records_read": sum(result.records for result in chunk_results), "kept_submissions": submissions.num_rows,
              "unique_links": links.num_rows, **dict.fromkeys(REASONS, 0)}
    counts.update({entry["values"]: entry["counts"] for entry in reason_counts})
    return DumpResult(links=links, submissions=submissions, rejects=rejects_table, counts=counts)


def _damage_detail(damage: DumpDamaged, line: int) -> str:
    name = damage.path.name
    cut = f"the {damage.open_line:,} decoded bytes of line {line} and " if damage.open_line else ""
    return (f"{name}: compressed bytes {damage.offset}-{damage.size} of {damage.size} cannot be decoded "
            f"({damage.cause}); lost from line {line} on: {cut}every record after it (how many is unknown). Records "
            f"before line {line} were kept or rejected as usual; re-download the file or check it with {damage.check}")
