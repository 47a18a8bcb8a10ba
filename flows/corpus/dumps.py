"""Read Pushshift submission dumps (RS_*.zst) and keep the outbound links WebText would fetch.

GPT-2's WebText: every outbound link from a Reddit submission with at least 3 karma, Wikipedia removed. Each record
read ends either as a kept submission, merged into one row per normalized URL (LINK_SCHEMA), or as exactly one reject
row with a stable reason code. The checks run in this order, and a record takes the reason of the first one it fails:

    malformed_json      the line is not JSON, or not a JSON object
    missing_field       `id`, `url`, `score` or `created_utc` is absent or null (or `id` is "")
    bad_field_type      a field has a type no dump writer produces (e.g. `score` as a list, `is_self` as "yes")
    self_post           `is_self`: a text post, no outbound link
    out_of_date_range   `created_utc` outside the configured half-open range [start_utc, end_utc)
    nsfw                `over_18`, unless allow_nsfw
    low_score           `score` < min_score (3: GPT-2's "at least 3 karma")
    bad_url             the URL does not normalize (not http(s), no host, unparseable)
    blocked_domain      Wikipedia and siblings, image / video hosts, Reddit itself (urls.DEFAULT_BLOCKED_DOMAINS)
    non_page_extension  the URL path names an image, video, archive, PDF, ... (urls.NON_PAGE_EXTENSIONS)

Record-level facts come first, the most common rejections (self posts, low scores) among them; URL checks need the
normalized URL and run last. Integers may also come as integral floats or decimal strings ("12"): older Pushshift
dumps and some re-exports write `created_utc` that way; values outside int64 are bad_field_type. Missing or null
`is_self` / `over_18` count as false, missing `subreddit` / `title` as empty. Blank lines are not records. A damaged
compressed file keeps the records decoded before the damage and adds one file-level `truncated_dump` reject
(item = the file name), which is not a record. Records with a duplicated top-level key are undefined input.

Speed: the main thread decompresses (zstandard releases the GIL) and cuts the stream into chunks of whole lines;
worker threads let DuckDB's JSON functions (yyjson, GIL released) pull the few fields needed from every line and
decide the common cases (self post, date range, NSFW, low score) in SQL. Lines DuckDB cannot read as a plainly typed
record go through `classify_record`, the reference implementation of the rules, one line at a time; the few
candidate links go through the same URL checks. Memory: a --long=31 stream needs up to 2 GiB of decoder window (the
last 2 GiB of output), plus a few chunks in flight, plus the decisions so far: kept links as Arrow rows and rejects as
(item, reason, detail) only (~35 B each); the constant reject columns are added once the decoder is freed.
"""
from __future__ import annotations

import os
import threading
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterator

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import zstandard

from flows.corpus.records import REJECT_SCHEMA, doc_id_for
from flows.corpus.urls import DEFAULT_BLOCKED_DOMAINS, has_non_page_extension, host_of, is_blocked_domain, normalize_url

REASONS = (
    "malformed_json", "missing_field", "bad_field_type", "self_post", "out_of_date_range", "nsfw", "low_score",
    "bad_url", "blocked_domain", "non_page_extension", "truncated_dump",
)
REQUIRED_FIELDS = ("id", "url", "score", "created_utc")
ZSTD_MAX_WINDOW = 2**31  # real dumps are written with `zstd --long=31`
PLAIN_SUFFIXES = (".ndjson", ".jsonl", ".json")

_INT64 = (-(2**63), 2**63 - 1)
_COMPRESSED_READ = 1 << 16  # 64 KiB of compressed input per step: small enough that little is lost to damage
# Lines handed to a worker at once: planning the DuckDB query costs ~5 ms, so smaller chunks spend much of their
# time there; larger ones than 16 MiB go past glibc's largest mmap threshold and pay page faults for every chunk.
_CHUNK_BYTES = 16 << 20

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


@dataclass(frozen=True)
class LinkFilterConfig:
    """Which submissions' links to keep. Defaults follow GPT-2's WebText."""

    min_score: int = 3  # "at least 3 karma" (Radford et al. 2019, section 2.2)
    allow_nsfw: bool = False
    start_utc: int | None = None  # half-open range [start_utc, end_utc) on created_utc; None = unbounded
    end_utc: int | None = None
    blocked_domains: tuple[str, ...] = DEFAULT_BLOCKED_DOMAINS
    extra_blocked_domains: tuple[str, ...] = ()
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)  # threads classifying lines

    def __post_init__(self) -> None:
        if self.start_utc is not None and self.end_utc is not None and self.start_utc >= self.end_utc:
            raise ValueError(f"empty date range: start_utc={self.start_utc} must be < end_utc={self.end_utc}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")

    @cached_property
    def blocked(self) -> frozenset[str]:
        """All blocked domains, as urls.is_blocked_domain wants them."""
        return frozenset(d.lower().rstrip(".") for d in (*self.blocked_domains, *self.extra_blocked_domains))

    @cached_property
    def range_text(self) -> str:
        start = "-inf" if self.start_utc is None else str(self.start_utc)
        end = "+inf" if self.end_utc is None else str(self.end_utc)
        return f"[{start}, {end})"


class DumpReadError(Exception):
    """A dump file that cannot be read at all: missing, not the compression its name says, unknown type."""


@dataclass
class DumpResult:
    links: pa.Table  # LINK_SCHEMA, one row per normalized URL, sorted by doc_id
    rejects: pa.Table  # REJECT_SCHEMA, one row per rejected record (+ one truncated_dump row for a damaged file)
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
    normalized = normalize_url(url)
    if normalized is None:
        return Rejected("bad_url", f"not an http(s) URL with a host: {url[:200]!r}", submission_id)
    domain = host_of(normalized)
    if is_blocked_domain(domain, config.blocked):
        return Rejected("blocked_domain", domain, submission_id)
    if has_non_page_extension(normalized):
        return Rejected("non_page_extension", normalized[:200], submission_id)
    return KeptSubmission(submission_id, normalized, domain, subreddit, score, created_utc, title)


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
# Readers: decompressed blocks of a dump, in order, with bounded memory


class _DumpDamaged(Exception):
    """The compressed stream broke off after some data was decoded: keep what came before, report the rest."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _open(path: Path):
    try:
        return open(path, "rb")
    except OSError as error:
        raise DumpReadError(f"cannot open dump {path}: {error.strerror or error}; check the path and permissions") from error


def _zstd_blocks(path: Path) -> Iterator[bytes]:
    """Decode a zstd file (one or more frames) allowing the 2 GiB window of `zstd --long=31`."""
    decompressor = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    with _open(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        try:
            zstandard.get_frame_parameters(fh.read(18))  # 18 bytes: the longest frame header
        except zstandard.ZstdError as error:
            raise DumpReadError(f"{path} is {'empty' if size == 0 else 'not a zstd file'} ({error}); check that it is "
                                f"a Pushshift RS_*.zst dump and re-download it") from error
        fh.seek(0)
        yield from _decode_stream(path, fh, size, decompressor.decompressobj, zstandard.ZstdError,
                                  f"`zstd -t --long=31 {path.name}`")


def _gzip_blocks(path: Path) -> Iterator[bytes]:
    """Decode a gzip file (one or more members)."""
    with _open(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if fh.read(2) != b"\x1f\x8b":
            raise DumpReadError(f"{path} is not a gzip file (no gzip magic bytes); check the file or its name")
        fh.seek(0)
        yield from _decode_stream(path, fh, size, lambda: zlib.decompressobj(wbits=31), zlib.error,
                                  f"`gzip -t {path.name}`")


def _decode_stream(path: Path, fh, size: int, new_decoder, decode_error: type[Exception], check: str) -> Iterator[bytes]:
    """Feed a compressed file through a zstd or zlib decoder object, frame after frame (concatenated files are valid
    in both formats). Raises _DumpDamaged where the data breaks off, after yielding what came before."""
    advice = f"records decoded before it were kept; re-download the file or check it with {check}"
    decoder, in_frame = new_decoder(), False
    while compressed := fh.read(_COMPRESSED_READ):
        start = fh.tell() - len(compressed)
        try:
            while compressed:
                block = decoder.decompress(compressed)
                compressed, in_frame = b"", True
                if decoder.eof:  # the next frame may start in the same read
                    compressed, decoder, in_frame = decoder.unused_data, new_decoder(), False
                if block:
                    yield block
        except decode_error as error:
            raise _DumpDamaged(f"{path.name}: data corrupt in compressed bytes {start}-{fh.tell()} of {size} "
                               f"({error}); {advice}") from error
    if in_frame:
        raise _DumpDamaged(f"{path.name}: stream ends mid-frame at compressed byte {size} (truncated download?); "
                           f"{advice}")


def _plain_blocks(path: Path) -> Iterator[bytes]:
    with _open(path) as fh:
        while block := fh.read(_CHUNK_BYTES):
            yield block


def _decompressed_blocks(path: Path) -> Iterator[bytes]:
    """Blocks of the decoded dump; raises DumpReadError up front when the file cannot be read at all."""
    suffix = path.suffix.lower()
    if suffix in (".zst", ".zstd"):
        return _zstd_blocks(path)
    if suffix == ".gz":
        return _gzip_blocks(path)
    if suffix in PLAIN_SUFFIXES:
        return _plain_blocks(path)
    raise DumpReadError(f"{path}: unknown dump type {suffix!r}; expected .zst, .gz or one of {', '.join(PLAIN_SUFFIXES)}")


def _line_chunks(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """Chunks of whole lines, each about _CHUNK_BYTES, with one copy of the data. A final line without a newline is
    completed; when the blocks end in damage (_DumpDamaged), the partial line before it is dropped with the exception."""
    pending: list[bytes] = []
    pending_bytes = 0
    try:
        for block in blocks:
            pending.append(block)
            pending_bytes += len(block)
            cut = block.rfind(b"\n") + 1
            if pending_bytes < _CHUNK_BYTES or cut == 0:
                continue
            yield b"".join([*pending[:-1], block[:cut]])
            pending, pending_bytes = [block[cut:]], len(block) - cut
    except _DumpDamaged:
        data = b"".join(pending)
        if cut := data.rfind(b"\n") + 1:
            yield data[:cut]
        raise
    data = b"".join(pending)
    if data:
        yield data if data.endswith(b"\n") else data + b"\n"


# ---------------------------------------------------------------------------------------------------------------------
# Classifying a chunk of lines: DuckDB for the plainly typed records, classify_record for the rest

# Mirrors classify_record for records whose fields have the plain JSON types (a non-empty string id, string url,
# integer score and created_utc, boolean-or-absent flags, string-or-absent subreddit and title). `regular` is false
# for every other line (not an object, missing fields, other types, blank): those go to classify_record. Types are
# read off the raw JSON text of each field (f[i]; NULL when the key is absent), which is cheaper than asking DuckDB.
_FIELDS = "json_extract(line, ['$.id', '$.url', '$.score', '$.created_utc', '$.is_self', '$.over_18', '$.subreddit', '$.title'])"
_CLASSIFY_SQL = """
WITH fields AS (
    SELECT {fields} AS f FROM lines
), checked AS (
    SELECT f,
        coalesce(f[1] LIKE '"%' AND f[1] <> '""' AND f[2] LIKE '"%'
                 AND json_type(f[3]) IN ('BIGINT', 'UBIGINT') AND json_type(f[4]) IN ('BIGINT', 'UBIGINT')
                 AND coalesce(f[5] IN ('true', 'false', 'null'), true) AND coalesce(f[6] IN ('true', 'false', 'null'), true)
                 AND coalesce(f[7] = 'null' OR f[7] LIKE '"%', true) AND coalesce(f[8] = 'null' OR f[8] LIKE '"%', true),
                 false) AS well_typed,
        TRY_CAST(f[3] AS BIGINT) AS score,  -- NULL beyond int64
        TRY_CAST(f[4] AS BIGINT) AS created_utc
    FROM fields
), decided AS (
    SELECT *,
        CASE WHEN NOT regular THEN NULL
             WHEN f[5] = 'true' THEN 'self_post'
             WHEN created_utc < $start_utc OR created_utc >= $end_utc THEN 'out_of_date_range'
             WHEN f[6] = 'true' AND NOT $allow_nsfw THEN 'nsfw'
             WHEN score < $min_score THEN 'low_score'
        END AS reason
    FROM (SELECT *, well_typed AND score IS NOT NULL AND created_utc IS NOT NULL AS regular FROM checked)
)
SELECT regular, reason, score, created_utc,
    CASE WHEN regular THEN json_extract_string(f[1], '$') END AS id,
    CASE WHEN regular AND reason IS NULL THEN json_extract_string(f[2], '$') END AS url,
    CASE WHEN regular AND reason IS NULL THEN coalesce(json_extract_string(f[7], '$'), '') END AS subreddit,
    CASE WHEN regular AND reason IS NULL THEN coalesce(json_extract_string(f[8], '$'), '') END AS title,
    CASE reason WHEN 'low_score' THEN 'score ' || score || ' < ' || $min_score
                WHEN 'out_of_date_range' THEN 'created_utc ' || created_utc || ' outside ' || $range_text
                ELSE '' END AS detail
FROM decided
"""


@dataclass
class _Decisions:
    """What became of the lines of one chunk. Line numbers are known only once the chunks before it are counted, so
    rejects of records without an id get their `file:line` item in number_lines()."""

    input_name: str
    n_lines: int = 0  # physical lines, blank ones included
    records: int = 0
    kept: list[KeptSubmission] = field(default_factory=list)
    links: pa.Table | None = None  # the kept submissions as LINK_SCHEMA rows, once compact() has run
    reject_rows: list[dict] = field(default_factory=list)  # _REASON_SCHEMA rows
    reject_tables: list[pa.Table] = field(default_factory=list)  # _REASON_SCHEMA
    unnamed_rows: list[tuple[int, int]] = field(default_factory=list)  # (row in reject_rows, line index in chunk)

    def add(self, decision: KeptSubmission | Rejected, line_index: int) -> None:
        if isinstance(decision, KeptSubmission):
            self.kept.append(decision)
            return
        if decision.id is None:
            self.unnamed_rows.append((len(self.reject_rows), line_index))
        self.reject_rows.append({"item": decision.id or "", "reason": decision.reason, "detail": decision.detail})

    def compact(self) -> _Decisions:
        """Trade the kept submissions' Python objects for Arrow rows (several times smaller) while many chunks wait."""
        self.links, self.kept = _submission_links(self.kept, self.input_name), []
        return self

    def number_lines(self, first_line: int) -> None:
        for row, line_index in self.unnamed_rows:
            self.reject_rows[row]["item"] = f"{self.input_name}:{first_line + line_index}"

    def rejects(self) -> list[pa.Table]:
        return [*self.reject_tables, pa.Table.from_pylist(self.reject_rows, schema=_REASON_SCHEMA)]


_connections = threading.local()


def _duckdb() -> duckdb.DuckDBPyConnection:
    """One single-threaded DuckDB per worker thread: the parallelism comes from the workers."""
    if not hasattr(_connections, "con"):
        _connections.con = duckdb.connect(config={"threads": 1})
    return _connections.con


def _line_offsets(data: bytes) -> np.ndarray:
    """offsets[i]:offsets[i + 1] is line i of data, its newline included (JSON readers skip it as whitespace)."""
    newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    offsets = np.empty(len(newlines) + 1, np.int64)
    offsets[0], offsets[1:] = 0, newlines + 1
    return offsets


def _classify_lines(data: bytes, offsets: np.ndarray, indices, decisions: _Decisions, config: LinkFilterConfig) -> None:
    """The reference path: parse each line with orjson and apply classify_record. Blank lines are not records."""
    for i in indices:
        line = data[offsets[i]:offsets[i + 1]]
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


def _decide_in_duckdb(lines: pa.Table, config: LinkFilterConfig) -> pa.Table:
    """Run _CLASSIFY_SQL over the lines: first optimistically (a malformed line fails the whole query), then, for
    chunks that hold one, validating each line first."""
    con = _duckdb()
    params = {"start_utc": config.start_utc, "end_utc": config.end_utc, "allow_nsfw": config.allow_nsfw,
              "min_score": config.min_score, "range_text": config.range_text}
    con.register("lines", lines)
    try:
        return con.sql(_CLASSIFY_SQL.format(fields=_FIELDS), params=params).to_arrow_table()
    except duckdb.InvalidInputException:
        guarded = f"CASE WHEN json_valid(line) THEN {_FIELDS} END"
        return con.sql(_CLASSIFY_SQL.format(fields=guarded), params=params).to_arrow_table()
    finally:
        con.unregister("lines")


def _classify_chunk(data: bytes, input_name: str, config: LinkFilterConfig) -> _Decisions:
    """Classify every line of data (whole lines, each ending in a newline)."""
    return _classify_chunk_lines(data, input_name, config).compact()


def _classify_chunk_lines(data: bytes, input_name: str, config: LinkFilterConfig) -> _Decisions:
    offsets = _line_offsets(data)
    n_lines = len(offsets) - 1
    decisions = _Decisions(input_name, n_lines)
    lines = pa.LargeStringArray.from_buffers(n_lines, pa.py_buffer(offsets), pa.py_buffer(data))
    try:
        lines.validate(full=True)
    except pa.ArrowInvalid:  # not UTF-8 somewhere: the reference path rejects the bad lines one by one
        _classify_lines(data, offsets, range(n_lines), decisions, config)
        return decisions
    decided = _decide_in_duckdb(pa.table({"line": lines}), config)
    regular = decided["regular"].to_numpy(zero_copy_only=False)
    _classify_lines(data, offsets, np.flatnonzero(~regular), decisions, config)
    decisions.records += int(regular.sum())
    fast_rejects = decided.filter(pc.is_valid(decided["reason"])).select(["id", "reason", "detail"])
    decisions.reject_tables.append(fast_rejects.rename_columns(_REASON_SCHEMA.names).cast(_REASON_SCHEMA))
    candidates = decided.filter(pc.and_(decided["regular"], pc.is_null(decided["reason"])))
    for row in candidates.select(["id", "url", "subreddit", "score", "created_utc", "title"]).to_pylist():
        decision = _check_link(row["id"], row["url"], row["subreddit"], row["score"], row["created_utc"], row["title"],
                               config)
        decisions.add(decision, 0)  # regular records have an id, so the line number is never shown
    return decisions


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


# ---------------------------------------------------------------------------------------------------------------------
# The step


def filter_dump(path: str | Path, config: LinkFilterConfig | None = None) -> DumpResult:
    """Read one dump (.zst, .gz or plain NDJSON) and keep the links of the submissions that pass the rules.

    Raises DumpReadError when the file cannot be read at all. A file damaged part-way keeps what was decoded before
    the damage and adds one `truncated_dump` reject naming the byte offset.
    """
    path, config = Path(path), config or LinkFilterConfig()
    name = path.name
    blocks = _decompressed_blocks(path)
    chunk_results: list[_Decisions] = []
    damage: _DumpDamaged | None = None
    with ThreadPoolExecutor(config.workers, thread_name_prefix="dump-lines") as pool:
        in_flight: deque = deque()
        try:
            for data in _line_chunks(blocks):
                in_flight.append(pool.submit(_classify_chunk, data, name, config))
                while len(in_flight) > config.workers:  # bounded memory: at most workers + 1 chunks decoded
                    chunk_results.append(in_flight.popleft().result())
        except _DumpDamaged as error:
            damage = error
        chunk_results.extend(future.result() for future in in_flight)
    first_line = 1
    for result in chunk_results:
        result.number_lines(first_line)
        first_line += result.n_lines
    rejects = [table for result in chunk_results for table in result.rejects()]
    if damage is not None:
        rejects.append(pa.Table.from_pylist([{"item": name, "reason": "truncated_dump", "detail": damage.detail}],
                                            schema=_REASON_SCHEMA))
    rejects_table = _reject_table(pa.concat_tables(rejects) if rejects else _REASON_SCHEMA.empty_table(), name)
    submission_links = [result.links for result in chunk_results]
    links = merge_links(submission_links)
    reason_counts = pc.value_counts(rejects_table["reason"]).to_pylist() if rejects_table.num_rows else []
    kept_submissions = sum(table.num_rows for table in submission_links)
    counts = {"records_read": sum(result.records for result in chunk_results), "kept_submissions": kept_submissions,
              "unique_links": links.num_rows, **dict.fromkeys(REASONS, 0)}
    counts.update({entry["values"]: entry["counts"] for entry in reason_counts})
    return DumpResult(links=links, rejects=rejects_table, counts=counts)
