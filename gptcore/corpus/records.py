"""The corpus schema, one declaration for the writer, the gate and every reader: documents, rejects, stable ids.

Every input item (a submission, a page, a text file) ends either as a row of DOC_SCHEMA or as a row of
REJECT_SCHEMA, never both and never neither. Later stages read documents by the column names below (DOC_ID, TEXT,
N_CHARS), not by string literals of their own.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pyarrow as pa

SOURCES = ("reddit", "warc", "text")  # a Reddit-linked page, a WARC record, a local text file


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
    fetched_at: str | None = None  # ISO 8601 UTC
    http_status: int | None = None
    input: str = ""  # the file it came from, for provenance and error messages


REJECT_SCHEMA = pa.schema(
    [
        ("item", pa.string()),  # submission id, URL or file path: what the user would look for
        ("doc_id", pa.string()),  # when the item had become a document candidate
        ("source", pa.string()),  # reddit | warc | text
        ("step", pa.string()),  # links | fetch | extract | lang | quality | dedup
        ("reason", pa.string()),  # short stable code, e.g. "low_score", "http_404", "near_duplicate"
        ("detail", pa.string()),  # human-readable specifics
        ("input", pa.string()),  # input file (and line) it came from
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
        ("fetched_at", pa.string()),
        ("http_status", pa.int32()),
        ("input", pa.string()),
    ]
)

# Never null in a published corpus (the gate checks it); the others are null where they do not apply (a text file
# has no submission ids, a WARC record no Reddit score).
REQUIRED_DOC_COLUMNS = (DOC_ID, "url", "source", "title", TEXT, N_CHARS, "lang", "text_hash")
