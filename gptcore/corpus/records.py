"""The corpus schema, one declaration for the writer, the gate and every reader: documents, rejects, stable ids.

Every input item (a submission, a page, a text file) ends either as a row of DOC_SCHEMA or as a row of
REJECT_SCHEMA, never both and never neither. Later stages read documents by the column names below (DOC_ID, TEXT,
N_CHARS), not by string literals of their own.

``input`` says where an item's bytes are, as the version's manifest names them, so that it still holds when the
data root is copied and the build's work folder is long gone:

- a file published in the version: its path inside the version folder, ``warc/00000.warc.gz`` (WARC_DIR) for a
  page the fetcher stored (``input_offset``: the byte offset of its record, a gzip member: seek there and read one
  record) or ``fetch_log.parquet`` (FETCH_LOG) for a fetch that stored no page;
- a file given to build-corpus and not copied (a dump, a WARC file, a text file): its absolute path with symlinks
  resolved (``source_path``), which is the ``path`` of its entry in the manifest's ``upstream``.

Either way ``version_folder / input`` is the file. WARC files given as inputs also fill ``input_offset``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

SOURCES = ("reddit", "warc", "text")  # a Reddit-linked page, a WARC record, a local text file
# The published files an ``input`` can name (see the module docstring); the version folder's layout is in ``assemble``.
WARC_DIR, FETCH_LOG = "warc", "fetch_log.parquet"


def source_path(path: str | Path) -> str:
    """How ``input`` (and the manifest's upstream) names an input file that is not published: absolute, resolved."""
    return str(Path(path).resolve())


def utc_timestamp(text: str | None) -> dt.datetime | None:
    """An ISO 8601 time (WARC-Date, the fetch log's fetched_at) as an aware UTC datetime; a time without a zone is
    UTC (WARC dates are). None when it is missing or not ISO 8601: a bad date in someone's WARC is no reason to
    drop the page."""
    try:
        parsed = dt.datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    if parsed is None:
        return None
    return parsed.replace(tzinfo=dt.timezone.utc) if parsed.tzinfo is None else parsed.astimezone(dt.timezone.utc)


def doc_id_for(key: str) -> str:
    """Stable 16-hex id of a normalized URL or a source path: the same input keeps its id across versions."""
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


@dataclass(slots=True)
class Page:
    """One raw page to extract: from the fetcher's WARC, a WARC source file, or a local text file."""

    doc_id: str
    url: str
    body: bytes
    content_type: str | None  # full Content-Type header value, charset included when sent
    source: str  # one of SOURCES
    fetched_at: dt.datetime | None = None  # UTC
    http_status: int | None = None
    input: str = ""  # where its bytes are (see the module docstring)
    input_offset: int | None = None  # of its WARC record


REJECT_SCHEMA = pa.schema(
    [
        ("item", pa.string()),  # submission id, URL or file path: what the user would look for
        ("doc_id", pa.string()),  # when the item had become a document candidate
        ("source", pa.string()),  # reddit | warc | text
        ("step", pa.string()),  # links | fetch | extract | lang | quality | dedup
        ("reason", pa.string()),  # short stable code, e.g. "low_score", "http_404", "near_duplicate"
        ("detail", pa.string()),  # human-readable specifics
        ("input", pa.string()),  # where its bytes are (see the module docstring)
    ]
)


def reject(item: str, source: str, step: str, reason: str, detail: str = "", input: str = "", doc_id: str | None = None) -> dict:
    """One REJECT_SCHEMA row."""
    return {"item": item, "doc_id": doc_id, "source": source, "step": step, "reason": reason, "detail": detail, "input": input}


# The document columns other stages read by name.
DOC_ID, TEXT, N_CHARS = "doc_id", "text", "n_chars"

DOC_SCHEMA = pa.schema(
    [
        (DOC_ID, pa.string()),  # doc_id_for(normalized URL or source path)
        ("url", pa.string()),
        ("domain", pa.string()),  # the URL's host (urls.host_of), as the link table's; null for file:// URLs
        ("source", pa.string()),  # one of SOURCES
        ("title", pa.string()),
        (TEXT, pa.string()),
        (N_CHARS, pa.int64()),
        ("n_words", pa.int64()),
        ("lang", pa.string()),
        ("lang_score", pa.float64()),
        ("text_hash", pa.string()),
        ("submission_ids", pa.list_(pa.string())),
        ("subreddits", pa.list_(pa.string())),
        ("score", pa.int64()),
        ("fetched_at", pa.timestamp("us", tz="UTC")),  # WARC-Date or the fetch log's time; null for text files
        ("http_status", pa.int32()),
        ("input", pa.string()),  # where its bytes are (see the module docstring)
        ("input_offset", pa.int64()),  # byte offset of its WARC record in ``input``; null for text files
    ]
)

# Never null in a published corpus (the gate checks it); the others are null where they do not apply (a text file
# has no submission ids, a WARC record no Reddit score).
REQUIRED_DOC_COLUMNS = (DOC_ID, "url", "source", "title", TEXT, N_CHARS, "lang", "text_hash")
