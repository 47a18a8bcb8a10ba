"""The per-shard steps of a corpus build, over its work folder: each writes its outputs atomically and returns a small
summary, and skips what is already there, so a rerun after a kill resumes where the last one stopped.

    links/<dump>.parquet, .rejects.parquet, .counts.json     filter_links: one dump's kept submissions, rejects, counts
    links/shards/<shard>.parquet, links/plan.json            merge_link_tables: the fetch shards, planned by origin
    links.parquet, links.rejects.parquet                     … and one row per URL (+ repeats, the cap), written last
    fetch/<shard>.warc.gz, fetch/<shard>.log.parquet         fetch_shard: raw responses and the fetch log (log last)
    robots/                                                  fetch_shard: each origin's robots.txt answer, asked once
    extract/<unit>.rejects.parquet, .counts.json, .parquet   extract_*: documents with text_hash and bands (docs last)
    dedup/                                                   dedup_keys → dedup_bucket → dedup_resolve (dedup_shards)

Fetch shards are planned by origin (scheme, host, port) when the links are merged: an origin's links share one
shard, and one with more than ``shard_size`` links is cut into chunks of that size, chunk k in *wave* k. The flow
runs the waves one after another, so no two shards of one origin ever fetch at the same time, on any number of
workers: the per-origin limits of the fetcher hold for the whole build. Each shard's links are its own file, read by
its fetch and extraction alone (no step reads the whole link table per shard).

An extraction *unit* is a fetch shard, a WARC file or the set of text files; each records how many items it read
apart from its outputs, so the accounting can check that every item ended as a document or a reject.
"""
from __future__ import annotations

import heapq
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gptcore.corpus.dedup_shards import Unit, find_bucket_collisions, plan_units, resolve, write_unit_keys
from gptcore.corpus.dumps import LinkFilterConfig, filter_dump, merge_dump_links
from gptcore.corpus.fetch import FetchConfig, fetch_to_warc
from gptcore.corpus.minhash import MinHashConfig, fingerprint_table
from gptcore.corpus.process import ProcessConfig, process_pages_parallel
from gptcore.corpus.records import DOC_SCHEMA, FETCH_LOG, REJECT_SCHEMA, WARC_DIR, source_path, utc_timestamp
from gptcore.corpus.robots import origin_name, origin_of
from gptcore.corpus.textfiles import iter_text_documents
from gptcore.corpus.urls import host_of
from gptcore.corpus.warc import read_warc
from gptcore.files import atomic_write_json, atomic_write_table

LINKS_DIR, LINKS, LINK_REJECTS = "links", "links.parquet", "links.rejects.parquet"
SHARDS_DIR, FETCH_PLAN = f"{LINKS_DIR}/shards", f"{LINKS_DIR}/plan.json"
FETCH_DIR, EXTRACT_DIR, DEDUP_DIR, ROBOTS_DIR = "fetch", "extract", "dedup", "robots"
DEDUP_BUCKETS = 16  # bucket tasks of near-duplicate detection; the result does not depend on it


def dump_key(index: int, dump: str) -> str:
    """Work-file name of a dump: its position keeps two dumps with the same file name apart."""
    return f"{index:04d}-{Path(dump).name}"


def filter_links(work: Path, index: int, dump: str, config: LinkFilterConfig, workers: int | None = None) -> dict:
    """Link filtering of one dump into ``links/<dump>.parquet`` (+ rejects, counts) unless it is already there."""
    key = dump_key(index, dump)
    out, rejected = work / LINKS_DIR / f"{key}.parquet", work / LINKS_DIR / f"{key}.rejects.parquet"
    counts_file = work / LINKS_DIR / f"{key}.counts.json"
    if not out.exists():
        result = filter_dump(dump, config, workers)
        name = source_path(dump)  # the dump reader names the file only; records.py: inputs are named by their path
        atomic_write_table(rejected, result.rejects.set_column(
            result.rejects.schema.get_field_index("input"), "input", pa.repeat(name, result.rejects.num_rows)))
        atomic_write_json(counts_file, result.counts)
        submissions = result.submissions  # per submission: merge-links keeps each submission once
        inputs = pa.array([[name]] * submissions.num_rows, submissions.schema.field("inputs").type)
        atomic_write_table(out, submissions.set_column(submissions.schema.get_field_index("inputs"), "inputs", inputs))
    return json.loads(counts_file.read_text())


def merge_link_tables(work: Path, dumps: list[str], max_links: int | None, shard_size: int) -> dict:
    """One row per normalized URL across all dumps, each submission kept once (a repeat in a later dump becomes a
    ``duplicate_submission`` reject); links over ``max_links`` (lowest scores) become rejects. The links are cut
    into fetch shards by origin (`plan_fetch_shards`), one file each. Returns the fetch plan (`FETCH_PLAN`)."""
    out = work / LINKS
    if not out.exists():
        tables = [pq.read_table(work / LINKS_DIR / f"{dump_key(i, d)}.parquet") for i, d in enumerate(dumps)]
        merged, rejects = merge_dump_links(tables, [source_path(d) for d in dumps], max_links)
        atomic_write_table(work / LINK_REJECTS, name_one_dump_per_capped_link(rejects, tables))
        write_fetch_shards(work, merged, shard_size)
        atomic_write_table(out, merged)  # last: its presence says the merge and the plan are done
    return json.loads((work / FETCH_PLAN).read_text())


def name_one_dump_per_capped_link(rejects: pa.Table, tables: list[pa.Table]) -> pa.Table:
    """``over_max_links`` rejects get the first (by path) of the dumps that named the link as their ``input``: the
    merge joins them all with commas, and an input is one path."""
    capped = pc.equal(rejects["reason"], "over_max_links")
    if not pc.any(capped).as_py():
        return rejects
    firsts = pa.concat_tables([pa.table({"doc_id": t["doc_id"], "input": pc.list_element(t["inputs"], 0)})
                               for t in tables]).group_by("doc_id").aggregate([("input", "min")])
    first_of = dict(zip(firsts["doc_id"].to_pylist(), firsts["input_min"].to_pylist()))
    inputs = [first_of[d] if c else i for d, c, i in zip(rejects["doc_id"].to_pylist(), capped.to_pylist(),
                                                             rejects["input"].to_pylist())]
    return rejects.set_column(rejects.schema.get_field_index("input"), "input", pa.array(inputs, pa.string()))


# ---------------------------------------------------------------------------------------------------------------------
# Fetch shards, planned by origin


_AUTHORITY = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")  # scheme://authority: all an origin depends on


def origin_key(url: str) -> str:
    """``scheme://host:port`` of a link, lower-cased: the origin robots.txt and the fetcher's per-origin limits
    apply to (robots.origin_of, origin_name). ``""`` for a URL that does not parse; the fetcher logs it as bad_url."""
    try:
        return origin_name(origin_of(httpx.URL(url)))
    except (httpx.InvalidURL, TypeError, ValueError):  # IDNA errors are ValueErrors
        return ""


def origin_keys(urls: Iterable[str]) -> list[str]:
    """`origin_key` of each URL, parsed once per distinct scheme and authority (httpx takes ~20 µs a URL)."""
    known: dict[str, str] = {}
    keys = []
    for url in urls:
        match = _AUTHORITY.match(url)
        prefix = match.group() if match else url
        key = known.get(prefix)
        if key is None:
            key = known[prefix] = origin_key(prefix)
        keys.append(key)
    return keys


def plan_fetch_shards(origins: list[str], shard_size: int) -> tuple[np.ndarray, list[dict]]:
    """The shard of each link (given by its origin), and per shard its ``wave``, ``links`` and ``origins``.

    An origin's links go to one shard; an origin with more than ``shard_size`` is cut (in link order) into chunks of
    ``shard_size``, chunk k in wave k, so two chunks of an origin are never in one wave. Within a wave, chunks are
    packed largest first (ties: by origin) into the shard with the most room left, a new one when none has room
    (worst-fit decreasing: small origins fill up the shards of large ones). Shards are numbered wave by wave. Only
    the links' origins decide it, never timing: the same links always give the same plan.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    rows_of: dict[str, list[int]] = {}
    for row, origin in enumerate(origins):
        rows_of.setdefault(origin, []).append(row)
    waves: dict[int, list[tuple[int, str, list[int]]]] = {}
    for origin, rows in rows_of.items():
        for k, start in enumerate(range(0, len(rows), shard_size)):
            chunk = rows[start:start + shard_size]
            waves.setdefault(k, []).append((-len(chunk), origin, chunk))
    shard_of, shards = np.empty(len(origins), dtype=np.int64), []
    for wave in sorted(waves):
        room: list[tuple[int, int]] = []  # (-links it can still take, shard): a heap, most room first
        for size, _, rows in sorted(waves[wave], key=lambda chunk: chunk[:2]):
            size = -size
            if room and -room[0][0] >= size:
                left, shard = heapq.heappop(room)
                left = -left
            else:
                left, shard = shard_size, len(shards)
                shards.append({"wave": wave, "links": 0, "origins": 0})
            shard_of[rows] = shard
            shards[shard]["links"] += size
            shards[shard]["origins"] += 1
            if left > size:
                heapq.heappush(room, (size - left, shard))
    return shard_of, shards


def write_fetch_shards(work: Path, links: pa.Table, shard_size: int) -> dict:
    """``links/shards/<shard>.parquet`` (each in doc_id order, as ``links`` is) and the plan ``links/plan.json``."""
    shard_of, shards = plan_fetch_shards(origin_keys(links["url"].to_pylist()), shard_size)
    order = np.argsort(shard_of, kind="stable")  # stable: doc_id order within a shard
    grouped, start = links.take(pa.array(order)), 0
    for shard, entry in enumerate(shards):
        atomic_write_table(work / SHARDS_DIR / f"{shard:05d}.parquet", grouped.slice(start, entry["links"]))
        start += entry["links"]
    plan = {"shard_size": shard_size, "links": links.num_rows, "shards": shards}
    atomic_write_json(work / FETCH_PLAN, plan)
    return plan


def fetch_waves(plan: dict) -> list[list[int]]:
    """The plan's shard numbers wave by wave: every shard of a wave must finish before the next wave starts."""
    waves: dict[int, list[int]] = {}
    for shard, entry in enumerate(plan["shards"]):
        waves.setdefault(entry["wave"], []).append(shard)
    return [waves[w] for w in sorted(waves)]


def shard_links(work: Path, shard: int, columns: list[str] | None = None) -> pa.Table:
    """The links of one fetch shard: its own file, in doc_id order."""
    return pq.read_table(work / SHARDS_DIR / f"{shard:05d}.parquet", columns=columns)


def fetch_shard(work: Path, shard: int, config: FetchConfig, later_wave: bool = False) -> dict:
    """Fetch one shard's links into ``fetch/<shard>.warc.gz`` with its log (one row per link) unless it is there.

    robots.txt answers are kept in ``robots/``, one per origin, so another shard or a resumed run reuses them. In a
    ``later_wave`` (after the first), an origin's previous chunk may have ended just before, in another process:
    each paced origin's first request then waits its gap too (fetch_to_warc's ``pace_from_start``)."""
    log_path, warc_path = work / FETCH_DIR / f"{shard:05d}.log.parquet", work / FETCH_DIR / f"{shard:05d}.warc.gz"
    if not log_path.exists():
        links = shard_links(work, shard, columns=["doc_id", "url"])
        log = fetch_to_warc(list(zip(links["doc_id"].to_pylist(), links["url"].to_pylist())), warc_path, config,
                            robots_dir=work / ROBOTS_DIR, pace_from_start=later_wave)
        atomic_write_table(log_path, log)
    errors = pq.read_table(log_path, columns=["error"])["error"]
    return {"shard": shard, "urls": len(errors), "ok": errors.null_count}


def fetch_shards(work: Path, shards: list[int], config: FetchConfig, later_wave: bool = False,
                 at_once: int = 8) -> list[dict]:
    """`fetch_shard` for each of ``shards`` (of one wave), ``at_once`` at a time in threads; summaries in ``shards``
    order.

    A shard lasts as long as its slowest origin (50 links behind a 1 s Crawl-delay take 50 s), and the shards of a
    wave share no origin: fetched together, their waits overlap instead of adding up, as politely. A thread takes
    the next shard as soon as its last one is done."""
    if at_once < 1:
        raise ValueError(f"at_once={at_once}: at least 1 fetch shard must run at a time, e.g. 8")
    with ThreadPoolExecutor(max_workers=max(1, min(at_once, len(shards)))) as pool:
        return list(pool.map(lambda shard: fetch_shard(work, shard, config, later_wave), shards))


# ---------------------------------------------------------------------------------------------------------------------
# Extraction units


def unit_schema(bands: int) -> pa.Schema:
    """Documents of one extraction unit: the corpus schema plus the MinHash band keys used by dedup."""
    return DOC_SCHEMA.append(pa.field("bands", pa.list_(pa.uint64(), bands)))


def unit_files(work: Path) -> list[Path]:
    """The extracted documents of every unit (fetch shard, WARC file, text set), in unit-name order."""
    return sorted(p for p in (work / EXTRACT_DIR).glob("*.parquet") if not p.name.endswith(".rejects.parquet"))


def fetch_rejects(log: pa.Table) -> pa.Table:
    """Fetch log rows with an error become rejects of step ``fetch``; the published fetch log holds their row."""
    failed = log.filter(pc.is_valid(log["error"])).to_pylist()
    return pa.Table.from_pylist([{"item": r["url"], "doc_id": r["doc_id"], "source": "reddit", "step": "fetch",
                                  "reason": r["error"], "detail": r.get("detail") or "", "input": FETCH_LOG}
                                 for r in failed], schema=REJECT_SCHEMA)


def add_reddit_provenance(docs: list[dict], links: pa.Table, log: pa.Table) -> list[dict]:
    """Attach submission ids, subreddits and score (from the link table) and fetch facts (from the fetch log)."""
    by_link = {r["doc_id"]: r for r in links.select(["doc_id", "url", "submission_ids", "subreddits", "score_max"]).to_pylist()}
    by_fetch = {r["doc_id"]: r for r in log.select(["doc_id", "status", "fetched_at"]).to_pylist()}
    for doc in docs:
        link, fetched = by_link[doc["doc_id"]], by_fetch.get(doc["doc_id"], {})
        doc.update(url=link["url"], submission_ids=link["submission_ids"], subreddits=link["subreddits"],
                   score=link["score_max"], http_status=fetched.get("status"),
                   fetched_at=utc_timestamp(fetched.get("fetched_at")))
    return docs


def extract_unit(work: Path, unit: str, source: str, pages: Iterable, config: ProcessConfig, minhash: MinHashConfig,
                 workers: int, extra_rejects: pa.Table | None = None,
                 provenance: Callable[[list[dict]], list[dict]] | None = None) -> dict:
    """Extract one unit of pages into ``extract/<unit>.parquet`` (+ rejects) unless it is already there.

    The number of input items read (pages and reject rows from the reader) is recorded apart from the outputs, so
    the accounting can check that every item read ended as a document or a reject.
    """
    out, rejected = work / EXTRACT_DIR / f"{unit}.parquet", work / EXTRACT_DIR / f"{unit}.rejects.parquet"
    if not out.exists():
        read = Counter()

        def counted(items):
            for item in items:
                read[source] += 1
                yield item

        docs, rejects = process_pages_parallel(counted(pages), config, workers=workers)
        atomic_write_json(work / EXTRACT_DIR / f"{unit}.counts.json", {"source": source, "inputs": read[source]})
        prints = fingerprint_table([d["doc_id"] for d in docs], [d["text"] for d in docs], minhash)
        for doc, text_hash, bands in zip(docs, prints["text_hash"].to_pylist(), prints["bands"].to_pylist()):
            doc.update(text_hash=text_hash, bands=bands)
        if provenance is not None:
            docs = provenance(docs)
        for doc in docs:  # after provenance: a Reddit page's url is its link's, not the one it was served from
            doc["domain"] = host_of(doc["url"]) or None
        table = pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA)
        if extra_rejects is not None:
            table = pa.concat_tables([extra_rejects.cast(REJECT_SCHEMA), table])
        atomic_write_table(rejected, table)
        atomic_write_table(out, pa.Table.from_pylist(docs, schema=unit_schema(minhash.bands)))
    return {"unit": unit, "documents": pq.read_metadata(out).num_rows, "rejects": pq.read_metadata(rejected).num_rows}


def extract_fetched(work: Path, shard: int, config: ProcessConfig, minhash: MinHashConfig, workers: int) -> dict:
    """One fetch shard's pages, with their submissions' provenance; its fetch failures become its rejects."""
    log = pq.read_table(work / FETCH_DIR / f"{shard:05d}.log.parquet")
    links = shard_links(work, shard)
    warc = work / FETCH_DIR / f"{shard:05d}.warc.gz"
    pages = read_warc(warc, source="reddit", input_name=f"{WARC_DIR}/{warc.name}") if warc.exists() else iter(())
    return extract_unit(work, f"fetch-{shard:05d}", "reddit", pages, config, minhash, workers,
                        extra_rejects=fetch_rejects(log),
                        provenance=lambda docs: add_reddit_provenance(docs, links, log))


def extract_warc(work: Path, index: int, path: str, config: ProcessConfig, minhash: MinHashConfig, workers: int) -> dict:
    """The pages of one WARC file given as an input."""
    return extract_unit(work, f"warc-{index:05d}", "warc", read_warc(path, source="warc"), config, minhash, workers)


def extract_texts(work: Path, paths: list[str], split: str, config: ProcessConfig, minhash: MinHashConfig,
                  workers: int) -> dict:
    """Every text file given (folders expanded), one unit."""
    return extract_unit(work, "text", "text", iter_text_documents(paths, split=split), config, minhash, workers)


# ---------------------------------------------------------------------------------------------------------------------
# Deduplication over the units (the algorithm: gptcore.corpus.dedup_shards)


def plan_dedup(work: Path, prior_indexes: list[tuple[str, str]]) -> list[Unit]:
    """The dedup inputs: earlier versions' verified index files ((path, version), in build order), then every unit."""
    return plan_units(prior_indexes, unit_files(work))


def dedup_keys(work: Path, unit: Unit, minhash: MinHashConfig) -> int:
    """One unit's fingerprints, split by bucket (skipped when done)."""
    write_unit_keys(unit, work / DEDUP_DIR, DEDUP_BUCKETS, minhash)
    return unit.number


def dedup_bucket(work: Path, bucket: int) -> str:
    """The fingerprints of one bucket that two or more documents share."""
    return str(find_bucket_collisions(work / DEDUP_DIR, bucket))


def dedup_resolve(work: Path, units: list[Unit], minhash: MinHashConfig) -> dict:
    """Exact and near-duplicate decisions over the shared fingerprints only; highest score wins."""
    return resolve(work / DEDUP_DIR, units, DEDUP_BUCKETS, minhash)
