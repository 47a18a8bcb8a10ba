"""build-corpus: Reddit-linked pages (WebText), WARC files and text files → a validated, deduplicated corpus version.

    dumps ─► filter links ─► merge ─► fetch shards (WARC + log) ─┐
    warcs ───────────────────────────────────────────────────────┼─► extract + clean + filter ─► dedup ─► write ─► gate ─► publish
    texts ───────────────────────────────────────────────────────┘

Every step writes its per-shard outputs atomically into the version's work folder and skips what exists, so killing
the flow and running it again with the same version finishes the same corpus without duplicates.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import flow, task
from prefect.logging import get_run_logger
from prefect.task_runners import TaskRunner

from data_contracts.corpus import validate_corpus
from gptcore.corpus import assemble
from gptcore.corpus.dedup import write_dedup_index
from gptcore.corpus.dedup_shards import Unit, find_bucket_collisions, plan_units, read_result, resolve, write_unit_keys
from gptcore.corpus.minhash import MinHashConfig, fingerprint_table
from gptcore.corpus.dumps import LinkFilterConfig, filter_dump, merge_dump_links
from gptcore.corpus.fetch import FetchConfig, fetch_to_warc
from gptcore.corpus.process import ProcessConfig, process_pages_parallel
from gptcore.corpus.quality import QualityConfig
from gptcore.corpus.records import REJECT_SCHEMA, reject
from gptcore.corpus.textfiles import iter_text_documents, text_files
from gptcore.corpus.urls import DEFAULT_BLOCKED_DOMAINS
from gptcore.corpus.warc import read_warc
from flows.lineage import input_file, upstream_version, write_manifest
from flows.runners import check_runner, run_tasks, shard_runner
from flows.stage import finish_version, start_version
from flows.store import DataRoot
from gptcore.files import atomic_write_json, atomic_write_table

STAGE = "corpus"
DEDUP_INDEX = "dedup_index.parquet"


def _utc(date: str | None) -> int | None:
    return None if date is None else int(dt.datetime.fromisoformat(date).replace(tzinfo=dt.timezone.utc).timestamp())


def _tuples(options: dict) -> dict:
    """JSON parameters arrive as lists; the frozen config dataclasses hold tuples."""
    return {k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
            for k, v in options.items()}


def _dump_key(index: int, dump: str) -> str:
    """Work-file name of a dump: its position keeps two dumps with the same file name apart."""
    return f"{index:04d}-{Path(dump).name}"


@task(name="filter-links")
def filter_links(index: int, dump: str, work: Path, config: LinkFilterConfig) -> dict:
    """Link filtering of one dump into ``links/<dump>.parquet`` (+ rejects, counts) unless it is already there."""
    key = _dump_key(index, dump)
    out, rejected = work / "links" / f"{key}.parquet", work / "links" / f"{key}.rejects.parquet"
    counts_file = work / "links" / f"{key}.counts.json"
    if not out.exists():
        result = filter_dump(dump, config)
        atomic_write_table(rejected, result.rejects)
        atomic_write_json(counts_file, result.counts)
        atomic_write_table(out, result.submissions)  # per submission: merge-links keeps each submission once
    return json.loads(counts_file.read_text())


@task(name="merge-links")
def merge_link_tables(work: Path, dumps: list[str], max_links: int | None) -> int:
    """One row per normalized URL across all dumps, each submission kept once (a repeat in a later dump becomes a
    ``duplicate_submission`` reject); links over ``max_links`` (lowest scores) become rejects."""
    out = work / "links.parquet"
    if not out.exists():
        merged, repeated = merge_dump_links(
            [pq.read_table(work / "links" / f"{_dump_key(i, d)}.parquet") for i, d in enumerate(dumps)], dumps)
        over = []
        if max_links is not None and merged.num_rows > max_links:
            ranked = merged.take(pc.sort_indices(merged, [("score_max", "descending"), ("doc_id", "ascending")]))
            over = ranked.slice(max_links).to_pylist()
            merged = ranked.slice(0, max_links).sort_by("doc_id")
        atomic_write_table(work / "links.rejects.parquet", pa.concat_tables([repeated, assemble.rejects_table(
            [reject(r["url"], "reddit", "links", "over_max_links", f"score {r['score_max']}; max_links={max_links}",
                    ",".join(r["inputs"]), r["doc_id"]) for r in over])]))
        atomic_write_table(out, merged)
    return pq.read_metadata(out).num_rows


def _shard_links(work: Path, shard: int, shard_size: int, columns: list[str] | None = None) -> pa.Table:
    """The links of one fetch shard (links.parquet is sorted by doc_id; shard i holds rows i·size … (i+1)·size)."""
    return pq.read_table(work / "links.parquet", columns=columns).slice(shard * shard_size, shard_size)


@task(name="fetch-shard", retries=2, retry_delay_seconds=5)
def fetch_shard(work: Path, shard: int, shard_size: int, config: FetchConfig) -> dict:
    log_path, warc_path = work / "fetch" / f"{shard:05d}.log.parquet", work / "fetch" / f"{shard:05d}.warc.gz"
    if not log_path.exists():
        links = _shard_links(work, shard, shard_size, columns=["doc_id", "url"])
        log = fetch_to_warc(list(zip(links["doc_id"].to_pylist(), links["url"].to_pylist())), warc_path, config)
        atomic_write_table(log_path, log)
    errors = pq.read_table(log_path, columns=["error"])["error"]
    return {"shard": shard, "urls": len(errors), "ok": errors.null_count}


def _extract_unit(work: Path, unit: str, source: str, pages, config: ProcessConfig, minhash: MinHashConfig,
                  workers: int, extra_rejects: pa.Table | None = None, provenance=None) -> dict:
    """Extract one unit of pages into ``extract/<unit>.parquet`` (+ rejects) unless it is already there.

    The number of input items read (pages and reject rows from the reader) is recorded apart from the outputs, so
    the gate can check that every item read ended as a document or a reject.
    """
    out, rejected = work / "extract" / f"{unit}.parquet", work / "extract" / f"{unit}.rejects.parquet"
    if not out.exists():
        read = Counter()

        def counted(items):
            for item in items:
                read[source] += 1
                yield item

        docs, rejects = process_pages_parallel(counted(pages), config, workers=workers)
        atomic_write_json(work / "extract" / f"{unit}.counts.json", {"source": source, "inputs": read[source]})
        prints = fingerprint_table([d["doc_id"] for d in docs], [d["text"] for d in docs], minhash)
        for doc, text_hash, bands in zip(docs, prints["text_hash"].to_pylist(), prints["bands"].to_pylist()):
            doc.update(text_hash=text_hash, bands=bands)
        if provenance is not None:
            docs = provenance(docs)
        table = assemble.rejects_table(rejects)
        if extra_rejects is not None:
            table = pa.concat_tables([extra_rejects.cast(REJECT_SCHEMA), table])
        atomic_write_table(rejected, table)
        atomic_write_table(out, assemble.docs_table(docs, minhash.bands))
    return {"unit": unit, "documents": pq.read_metadata(out).num_rows, "rejects": pq.read_metadata(rejected).num_rows}


@task(name="extract-fetched")
def extract_fetched(work: Path, shard: int, shard_size: int, config: ProcessConfig, minhash: MinHashConfig,
                    workers: int) -> dict:
    log = pq.read_table(work / "fetch" / f"{shard:05d}.log.parquet")
    links = _shard_links(work, shard, shard_size)
    warc = work / "fetch" / f"{shard:05d}.warc.gz"
    pages = read_warc(warc, source="reddit") if warc.exists() else iter(())
    return _extract_unit(work, f"fetch-{shard:05d}", "reddit", pages, config, minhash, workers,
                         extra_rejects=assemble.fetch_rejects(log, warc.name),
                         provenance=lambda docs: assemble.add_reddit_provenance(docs, links, log))


@task(name="extract-warc")
def extract_warc(work: Path, index: int, path: str, config: ProcessConfig, minhash: MinHashConfig, workers: int) -> dict:
    return _extract_unit(work, f"warc-{index:05d}", "warc", read_warc(path, source="warc"), config, minhash, workers)


@task(name="extract-texts")
def extract_texts(work: Path, paths: list[str], split: str, config: ProcessConfig, minhash: MinHashConfig, workers: int) -> dict:
    return _extract_unit(work, "text", "text", iter_text_documents(paths, split=split), config, minhash, workers)


DEDUP_BUCKETS = 16  # bucket tasks of near-duplicate detection; the result does not depend on it


@task(name="dedup-keys")
def dedup_keys(unit: Unit, folder: Path, n_buckets: int, minhash: MinHashConfig) -> int:
    """One unit's fingerprints, split by bucket (skipped when done)."""
    write_unit_keys(unit, folder, n_buckets, minhash)
    return unit.number


@task(name="dedup-bucket")
def dedup_bucket(folder: Path, bucket: int) -> str:
    """The fingerprints of one bucket that two or more documents share."""
    return str(find_bucket_collisions(folder, bucket))


@task(name="dedup-resolve")
def dedup_resolve(folder: Path, units: list[Unit], n_buckets: int, minhash: MinHashConfig) -> dict:
    """Exact and near-duplicate decisions over the shared fingerprints only; highest score wins."""
    return resolve(folder, units, n_buckets, minhash)


def deduplicate_documents(runner: TaskRunner | None, root: DataRoot, work: Path, earlier: list[str],
                          minhash: MinHashConfig) -> tuple[list[str], pa.Table]:
    """Exact and near-duplicate removal within the version and against earlier versions (gptcore/corpus/dedup_shards.py)."""
    units = plan_units([(root.verify_file(STAGE, v, DEDUP_INDEX), v) for v in earlier], assemble.unit_files(work))
    folder = work / "dedup"
    run_tasks(runner, dedup_keys, [{"unit": u, "folder": folder, "n_buckets": DEDUP_BUCKETS, "minhash": minhash}
                                   for u in units])
    run_tasks(runner, dedup_bucket, [{"folder": folder, "bucket": b} for b in range(DEDUP_BUCKETS)])
    dedup_resolve(folder, units, DEDUP_BUCKETS, minhash)
    return read_result(folder)


def _accounting(work: Path, out: Path, filter_counts: list[dict]) -> dict:
    """Per source: input items, kept and rejected — counted from the files, so the gate can check they add up.

    WARC records and text documents are counted as the extraction read them. A submission is kept when it is in a
    kept document's ``submission_ids``; it is rejected either by link filtering (its own reject row) or together with
    its link (one reject row per link from fetch, extraction, quality, dedup or the link cap, counting all the
    link's submissions). A damaged dump tail is one input item and one reject.
    """
    import duckdb

    con = duckdb.connect()
    con.execute(f"create view docs as select * from read_parquet('{out}/data/*.parquet')")
    con.execute(f"create view rejects as select * from read_parquet('{out}/rejects/*.parquet')")
    counts = {}
    read = Counter()
    for unit in (work / "extract").glob("*.counts.json"):
        entry = json.loads(unit.read_text())
        read[entry["source"]] += entry["inputs"]
    for source in ("warc", "text"):
        if source in read:
            kept = con.execute("select count(*) from docs where source = ?", [source]).fetchall()[0][0]
            rejected = con.execute("select count(*) from rejects where source = ?", [source]).fetchall()[0][0]
            counts[source] = {"inputs": read[source], "kept": kept, "rejected": rejected}
    if filter_counts:
        con.execute(f"create view links as select * from read_parquet('{work}/links.parquet')")
        kept = con.execute("select coalesce(sum(len(submission_ids)), 0) from docs where source = 'reddit'").fetchall()[0][0]
        with_link = con.execute("""select coalesce(sum(l.n_submissions), 0) from rejects r join links l using (doc_id)
                                   where r.source = 'reddit' and (r.step != 'links' or r.reason = 'over_max_links')""").fetchall()[0][0]
        own = con.execute("""select count(*) from rejects where source = 'reddit' and step = 'links'
                             and reason != 'over_max_links'""").fetchall()[0][0]
        inputs = sum(c["records_read"] + c.get("truncated_dump", 0) for c in filter_counts)
        counts["reddit"] = {"inputs": int(inputs), "kept": int(kept), "rejected": int(with_link + own)}
    return counts


def _counts_table(counts: dict) -> list[dict]:
    rows = [{"what": "documents", "count": counts["documents"]}, {"what": "rejects", "count": counts["rejects"]}]
    rows += [{"what": f"reject {k}", "count": v} for k, v in counts["rejects_by_reason"].items()]
    return rows + [{"what": f"{src} {k}", "count": v} for src, c in counts["accounting"].items() for k, v in c.items()]


@flow(name="build-corpus", log_prints=True)
def build_corpus(
    dumps: list[str] | None = None,
    warcs: list[str] | None = None,
    texts: list[str] | None = None,
    text_split: str = "file",
    version: str | None = None,
    data_root: str | None = None,
    min_score: int = 3,
    allow_nsfw: bool = False,
    start_date: str | None = None,
    end_date: str | None = None,
    blocked_domains: list[str] | None = None,
    extra_blocked_domains: list[str] | None = None,
    max_links: int | None = None,
    shard_size: int = 1000,
    allow_hosts: list[str] | None = None,
    respect_robots: bool = True,
    concurrency: int = 64,
    per_host_concurrency: int = 4,
    connect_timeout_s: float = 10.0,
    read_timeout_s: float = 20.0,
    max_page_bytes: int = 5 * 1024 * 1024,
    languages: list[str] | None = None,
    min_words: int = 50,
    quality: dict | None = None,
    dedup_against_earlier: bool = True,
    workers: int | None = None,
    task_runner: str = "local",
    dask_address: str | None = None,
) -> str:
    """Build a corpus version from any mix of Pushshift dumps, WARC files and text files; returns its folder URL.

    Dates are ISO (``2019-01-01``), the range half-open. ``blocked_domains`` replaces the default block list
    (Wikipedia, image/video hosts, Reddit); ``extra_blocked_domains`` adds to it. ``allow_hosts`` lets the fetcher reach
    private or loopback hosts (off by default). ``max_links`` keeps the highest-scored links for a trial run.
    ``quality`` overrides fields of ``gptcore.corpus.quality.QualityConfig`` (the Gopher/C4 filter limits).
    ``task_runner="dask"`` runs the fetch, extraction and dedup shards as tasks on a Dask cluster (``dask_address``,
    or a temporary local one of ``workers`` processes) with the same result (see ``flows/runners.py``).
    """
    check_runner(task_runner, dask_address)
    logger = get_run_logger()
    dumps, warcs, texts = list(dumps or []), list(warcs or []), list(texts or [])
    if not (dumps or warcs or texts):
        raise ValueError("build-corpus needs at least one input: dumps=[RS_*.zst …], warcs=[*.warc.gz …] or texts=[files or folders]")
    for path in dumps + warcs + texts:
        if not Path(path).exists():
            raise FileNotFoundError(f"input {path} does not exist: check the path (relative paths are resolved from {os.getcwd()})")
    workers = workers or os.cpu_count() or 1
    blocked = list(DEFAULT_BLOCKED_DOMAINS if blocked_domains is None else blocked_domains) + list(extra_blocked_domains or [])
    link_config = LinkFilterConfig(min_score=min_score, allow_nsfw=allow_nsfw, start_utc=_utc(start_date),
                                   end_utc=_utc(end_date), blocked_domains=tuple(blocked), workers=workers)
    fetch_config = FetchConfig(concurrency=concurrency, per_host_concurrency=per_host_concurrency,
                               connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s,
                               max_body_bytes=max_page_bytes, respect_robots=respect_robots,
                               allow_hosts=tuple(allow_hosts or ()))
    process_config = ProcessConfig(quality=QualityConfig(
        **{"min_words": min_words, "languages": tuple(languages) if languages else ("en",)} | _tuples(quality or {})))
    minhash = MinHashConfig()
    parameters = {
        "dumps": [str(Path(p).resolve()) for p in dumps], "warcs": [str(Path(p).resolve()) for p in warcs],
        "texts": [str(Path(p).resolve()) for p in texts], "text_split": text_split, "links": asdict(link_config) | {"workers": None},
        "fetch": asdict(fetch_config), "process": asdict(process_config), "minhash": asdict(minhash),
        "max_links": max_links, "shard_size": shard_size,
    }
    parameters = json.loads(json.dumps(parameters, default=list))
    root = DataRoot.from_env(data_root)
    started = start_version(root, STAGE, version, parameters,
                            frozen={"earlier_versions": root.versions(STAGE) if dedup_against_earlier else []})
    if started.published:  # an earlier run published it and was killed before its cleanup
        return started.published
    version, work, earlier = started.name, started.work, started.plan["earlier_versions"]
    logger.info("building corpus %s in %s (dedup against earlier versions: %s)", version, work, earlier or "none")

    with shard_runner(task_runner, dask_address, work, workers) as runner:
        # On Dask every shard task is one worker process; locally each uses a process pool over the cores.
        per_task = 1 if runner is not None else workers
        filter_counts, n_links = [], 0
        if dumps:
            filter_counts = [filter_links(i, d, work, link_config) for i, d in enumerate(dumps)]
            n_links = merge_link_tables(work, dumps, max_links)
            shards = range((n_links + shard_size - 1) // shard_size)
            common = {"work": work, "shard_size": shard_size}
            run_tasks(runner, fetch_shard, [{**common, "shard": s, "config": fetch_config} for s in shards])
            run_tasks(runner, extract_fetched, [{**common, "shard": s, "config": process_config, "minhash": minhash,
                                                 "workers": per_task} for s in shards])
        run_tasks(runner, extract_warc, [{"work": work, "index": i, "path": path, "config": process_config,
                                          "minhash": minhash, "workers": per_task} for i, path in enumerate(warcs)])
        if texts:
            extract_texts(work, texts, text_split, process_config, minhash, workers)
        keep, dedup_rejects = deduplicate_documents(runner, root, work, earlier, minhash)
    out = started.out
    counts = assemble.write_version_folder(work, out, keep, dedup_rejects)
    kept = assemble.read_tables(assemble.unit_files(work), assemble.unit_schema(minhash.bands), columns=["doc_id", "text_hash", "bands"])
    kept = kept.filter(pc.is_in(kept["doc_id"], pa.array(keep, pa.string())))
    write_dedup_index(out / DEDUP_INDEX, version, kept["doc_id"].to_pylist(), kept["text_hash"].to_pylist(),
                      kept["bands"], minhash)
    counts.update(links=n_links, accounting=_accounting(work, out, filter_counts),
                  link_filter=dict(sum((Counter(c) for c in filter_counts), Counter())))
    upstream = [input_file(p, "dump") for p in dumps] + [input_file(p, "warc") for p in warcs] \
        + [input_file(p, "text") for p in text_files(texts)] + [upstream_version(root, STAGE, v) for v in earlier]
    manifest = write_manifest(out, STAGE, version, parameters, upstream, counts)

    report = validate_corpus(out, manifest, blocked, min_chars=1)
    url = finish_version(root, started, manifest, report, _counts_table(counts),
                         asset_deps=[Path(p).resolve().as_uri() for p in dumps + warcs + texts],
                         description="WebText-style corpus version")
    logger.info("corpus %s: %d documents, %d rejects → %s", version, counts["documents"], counts["rejects"], url)
    return url
