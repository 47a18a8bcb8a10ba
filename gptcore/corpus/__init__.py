"""Corpus building as plain functions (no Prefect): what the build-corpus flow wires together, in this order.

    filter_links        one Pushshift dump → its kept submissions and rejects            (dumps, urls)
    merge_link_tables   all dumps → one row per normalized URL, capped at max_links, cut (dumps)
                          into fetch shards of whole origins (plan_fetch_shards)
    fetch_waves         the shards in waves: an origin's chunks are in different waves
    fetch_shard         one shard of the links → a WARC and a fetch log row per link     (fetch, netguard, robots)
    fetch_shards          … several shards of one wave at once, in threads
    extract_fetched,    one unit of pages (a fetch shard, a WARC file, the text files)   (process: extract, clean,
    extract_warc,         → documents with fingerprints, and rejects                       langid, quality; minhash)
    extract_texts
    plan_dedup,         exact and near-duplicate removal, within the version and         (dedup_shards, dedup)
    dedup_keys,           against earlier versions, in sharded steps
    dedup_bucket,
    dedup_resolve
    write_version_folder  the work folder → the version folder, with its dedup index     (assemble)
    input_counts          items in, kept and rejected per source, for the gate           (accounting)
    document_statistics   languages, domains, lengths, dates, duplicates: the card's      (accounting)

Each step reads and writes the build's work folder (layout in ``steps``) and skips what is already there. The
configs say what the steps keep: LinkFilterConfig, FetchConfig, ProcessConfig (ExtractConfig, QualityConfig) and
MinHashConfig. The corpus schema (``records``) is the one every stage reads documents by.

Names load on first use (PEP 562): the token and tokenizer stages import the schema from ``records`` without
paying for the fetcher, extraction and duckdb (~0.5 s and ~40 MB in every training process).
"""
from __future__ import annotations

import importlib

# public name → the module that defines it
_API = {
    "counts_table": "accounting",
    "document_statistics": "accounting",
    "input_counts": "accounting",
    "DEDUP_INDEX": "assemble",
    "write_version_folder": "assemble",
    "LinkFilterConfig": "dumps",
    "ExtractConfig": "extract",
    "FetchConfig": "fetch",
    "MinHashConfig": "minhash",
    "ProcessConfig": "process",
    "QualityConfig": "quality",
    "DOC_ID": "records",
    "DOC_SCHEMA": "records",
    "N_CHARS": "records",
    "REJECT_SCHEMA": "records",
    "REQUIRED_DOC_COLUMNS": "records",
    "SOURCES": "records",
    "TEXT": "records",
    "doc_id_for": "records",
    "reject": "records",
    "DEDUP_BUCKETS": "steps",
    "dedup_bucket": "steps",
    "dedup_keys": "steps",
    "dedup_resolve": "steps",
    "extract_fetched": "steps",
    "extract_texts": "steps",
    "extract_warc": "steps",
    "fetch_shard": "steps",
    "fetch_shards": "steps",
    "fetch_waves": "steps",
    "filter_links": "steps",
    "merge_link_tables": "steps",
    "plan_dedup": "steps",
    "plan_fetch_shards": "steps",
    "text_files": "textfiles",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
