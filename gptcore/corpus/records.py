"""Record shapes shared by the corpus steps: stable ids, rejects and the corpus document schema.

Every input item (a submission, a page, a text file) ends either as a row of DOC_SCHEMA or as a row of
REJECT_SCHEMA, never both and never neither.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pyarrow as pa


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
    source: str  # "reddit" | "warc" | "text"
    fetched_at: str | None = None  # ISO 8601 UTC
    http_status: int | None = None
    input: str = ""  # the file it came from, for provenance and error messages


REJECT_SCHEMA = pa.schema(
    [
        ("item", pa.string()),  # submission id, URL or file path: what the user would look for
        ("doc_id", pa.string()),  # when the item had become a document candidate
        ("source", pa.string()),  # reddit | warc | text
        ("step", pa.string()),  # links | fetch | extract | quality | dedup
        ("reason", pa.string()),  # short stable code, e.g. "low_score", "http_404", "near_duplicate"
        ("detail", pa.string()),  # human-readable specifics
        ("input", pa.string()),  # input file (and line) it came from
    ]
)


def reject(item: str, source: str, step: str, reason: str, detail: str = "", input: str = "", doc_id: str | None = None) -> dict:
    """One REJECT_SCHEMA row."""
    return {"item": item, "doc_id": doc_id, "source": source, "step": step, "reason": reason, "detail": detail, "input": input}


DOC_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("url", pa.string()),
        ("source", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("n_chars", pa.int64()),
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
