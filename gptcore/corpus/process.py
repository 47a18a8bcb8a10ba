"""The per-shard unit of the corpus flow: raw pages → document rows and reject rows.

For each page: decode (`extract.decode_body`), extract the main text and title from HTML (text/plain pages skip
this), clean (`clean.clean_text`), identify the language (`langid.detect_language`) and apply the quality filters
(`quality`). Every page becomes exactly one document row or one reject row:

| step | reason | when |
|---|---|---|
| extract | empty_body | the page has no bytes |
| extract | unsupported_content_type | neither HTML nor plain text (PDF, images, …) |
| extract | extract_error | the parser failed on the page (detail: the error) |
| extract | no_text | nothing is left after extraction and cleaning |
| lang | lang_not_allowed, lang_low_score | see `quality.language_failure` |
| quality | the filter's code | see the table in `quality` |

Order: the word-count filter first (language id is unreliable on a few words: a title page is "too short", not
"Frisian"), then language, then the other quality filters, because some of them (stop words) assume English: a
German page should be counted as "not English", not as "few stop words".
"""
from __future__ import annotations

import math
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from typing import Iterable

from threadpoolctl import threadpool_limits

from gptcore.corpus.clean import clean_text
from gptcore.corpus.extract import ExtractConfig, decode_body, extract_main_text
from gptcore.corpus.langid import detect_language, load_language_model
from gptcore.corpus.quality import QualityConfig, count_words, language_failure, length_failure, quality_failure
from gptcore.corpus.records import Page, reject

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "application/xml", "text/xml", ""})
TEXT_TYPES = frozenset({"text/plain"})
_TITLE_MAX_CHARS = 300
# Chunks small enough to keep every worker busy to the end, large enough that pickling stays a small overhead.
_MAX_CHUNK = 64


@dataclass(frozen=True, slots=True)
class ProcessConfig:
    """Everything that decides what a page becomes: extraction options and quality + language filters."""

    extract: ExtractConfig = ExtractConfig()
    quality: QualityConfig = QualityConfig()


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _first_line(text: str) -> str | None:
    """Title of a plain-text document: its first line (a book's title, a chapter's heading)."""
    line = text.split("\n", 1)[0].strip()
    return line[:_TITLE_MAX_CHARS] or None


def process_page(page: Page, config: ProcessConfig = ProcessConfig()) -> tuple[dict | None, dict | None]:
    """(document row, None) or (None, reject row) for one page."""
    def rejected(step: str, reason: str, detail: str = "") -> tuple[None, dict]:
        return None, reject(page.url, page.source, step, reason, detail, input=page.input, doc_id=page.doc_id)

    if not page.body:
        return rejected("extract", "empty_body", "the response body is empty")
    media_type = _media_type(page.content_type)
    if media_type not in HTML_TYPES and media_type not in TEXT_TYPES:
        return rejected("extract", "unsupported_content_type", f"content type {page.content_type!r}")
    try:
        decoded = decode_body(page.body, page.content_type)
        if media_type in TEXT_TYPES:
            title, text = None, decoded
        else:
            extracted = extract_main_text(decoded, config.extract)
            title, text = extracted.title, extracted.text
        text = clean_text(text)
        title = clean_text(title) if title else _first_line(text)
    except Exception as error:  # one malformed page must not stop a shard: it is counted and kept for inspection
        return rejected("extract", "extract_error", f"{type(error).__name__}: {error}")
    if not text:
        return rejected("extract", "no_text", f"no text left after extraction and cleaning ({len(page.body)} bytes)")

    n_words = count_words(text)
    if failure := length_failure(n_words, config.quality):
        return rejected("quality", failure.reason, failure.detail)
    language, language_score = detect_language(text)
    if failure := language_failure(language, language_score, config.quality):
        return rejected("lang", failure.reason, failure.detail)
    if failure := quality_failure(text, config.quality):
        return rejected("quality", failure.reason, failure.detail)

    return {
        "doc_id": page.doc_id, "url": page.url, "source": page.source, "title": title or None, "text": text,
        "n_chars": len(text), "n_words": n_words, "lang": language, "lang_score": language_score,
        "fetched_at": page.fetched_at, "http_status": page.http_status, "input": page.input,
        "input_offset": page.input_offset,
    }, None


def _as_page(item: Page | dict) -> Page | dict:
    """Pages pass as they are; dicts are reject rows (they have a "reason") or a Page's fields."""
    if isinstance(item, Page) or "reason" in item:
        return item
    return Page(**item)


def process_pages(pages: Iterable[Page | dict], config: ProcessConfig = ProcessConfig()) -> tuple[list[dict], list[dict]]:
    """(document rows, reject rows) in input order; reject rows given as input pass through unchanged.

    Document rows have the DOC_SCHEMA columns except domain, text_hash, submission_ids, subreddits and score, which
    `steps.extract_unit` adds (the fingerprints, the final URL's host, and for Reddit pages the join with their
    submissions).
    """
    documents: list[dict] = []
    rejects: list[dict] = []
    for item in map(_as_page, pages):
        if isinstance(item, dict):
            rejects.append(item)
            continue
        document, rejected = process_page(item, config)
        if document is not None:
            documents.append(document)
        else:
            rejects.append(rejected)
    return documents, rejects


def _process_chunk(chunk: list[Page | dict], config: ProcessConfig) -> tuple[list[dict], list[dict]]:
    return process_pages(chunk, config)


def _init_worker() -> None:
    """One BLAS thread per worker: the language model's small matrix products gain nothing from more, and with a
    BLAS thread pool in every worker the workers fight over the cores (measured: 1.5x slower on 2 cores)."""
    threadpool_limits(limits=1)


def _worker_context() -> multiprocessing.context.BaseContext:
    """How to start the pool's workers.

    A single-threaded caller forks: the workers inherit the imported libraries and the language model (loaded here
    first, ~0.5 s, once per process), so a pool starts in a fraction of a second. Forking a process that runs other
    threads (the Prefect engine does) can deadlock on locks those threads hold, so then a fork server is used: it
    imports this module once, and each worker loads the language model itself.
    """
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        load_language_model()
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def process_pages_parallel(pages: Iterable[Page | dict], config: ProcessConfig = ProcessConfig(),
                           workers: int | None = None) -> tuple[list[dict], list[dict]]:
    """`process_pages` on a process pool: the same rows in the same order, whatever the number of workers.

    Pages are sent in chunks and the chunks' results concatenated in input order; each page's result depends only on
    the page and the config, so the output does not depend on how the work was split.
    """
    items = list(pages)
    workers = min(workers or os.cpu_count() or 1, max(1, len(items)))
    if workers == 1:
        return process_pages(items, config)
    chunk_size = max(1, min(_MAX_CHUNK, math.ceil(len(items) / (workers * 4))))
    chunks = [items[start:start + chunk_size] for start in range(0, len(items), chunk_size)]
    documents: list[dict] = []
    rejects: list[dict] = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=_worker_context(), initializer=_init_worker) as pool:
        for chunk_documents, chunk_rejects in pool.map(_process_chunk, chunks, repeat(config)):
            documents.extend(chunk_documents)
            rejects.extend(chunk_rejects)
    return documents, rejects
