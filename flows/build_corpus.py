"""build-corpus: Reddit-linked pages (WebText), WARC files and text files → a validated, deduplicated corpus version.

    dumps ─► filter links ─► merge ─► fetch shards (WARC + log) ─┐
    warcs ───────────────────────────────────────────────────────┼─► extract + clean + filter ─► dedup ─► write ─► card ─► gate ─► publish
    texts ───────────────────────────────────────────────────────┘

Only wiring: every step is a plain function of ``gptcore.corpus`` (its docstring lists them), each task below is
one of them. Every step writes its per-shard outputs atomically into the version's work folder and skips what
exists, so killing the flow and running it again with the same version finishes the same corpus without duplicates.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from data_contracts.corpus import validate_corpus
from flows.dataset_card import dataset_card
from flows.lineage import input_file, upstream_version, write_manifest
from flows.runners import check_runner, run_tasks, shard_runner
from flows.stage import artifact_key, finish_version, start_version, upstream_asset_keys
from flows.store import DataRoot
from gptcore import corpus
from gptcore.corpus import FetchConfig, LinkFilterConfig, MinHashConfig, ProcessConfig

STAGE = "corpus"

filter_links = task(corpus.filter_links, name="filter-links")
merge_link_tables = task(corpus.merge_link_tables, name="merge-links")
fetch_shards = task(corpus.fetch_shards, name="fetch-shards", retries=2, retry_delay_seconds=5)
extract_fetched = task(corpus.extract_fetched, name="extract-fetched")
extract_warc = task(corpus.extract_warc, name="extract-warc")
extract_texts = task(corpus.extract_texts, name="extract-texts")
dedup_keys = task(corpus.dedup_keys, name="dedup-keys")
dedup_bucket = task(corpus.dedup_bucket, name="dedup-bucket")
dedup_resolve = task(corpus.dedup_resolve, name="dedup-resolve")


@flow(name="build-corpus", log_prints=True)
def build_corpus(
    dumps: list[str] | None = None,
    warcs: list[str] | None = None,
    texts: list[str] | None = None,
    text_split: str = "file",
    version: str | None = None,
    data_root: str | None = None,
    links: LinkFilterConfig | None = None,
    fetch: FetchConfig | None = None,
    process: ProcessConfig | None = None,
    max_links: int | None = None,
    shard_size: int = 1000,
    dedup_against_earlier: bool = True,
    workers: int | None = None,
    fetch_shards_at_once: int = 8,
    task_runner: str = "local",
    dask_address: str | None = None,
) -> str:
    """Build a corpus version from any mix of Pushshift dumps, WARC files and text files; returns its folder URL.

    ``links``, ``fetch`` and ``process`` are the library's configs (``LinkFilterConfig``, ``FetchConfig``,
    ``ProcessConfig`` with its ``quality``: the Gopher/C4 limits), given as objects or as dicts of the fields to
    change, e.g. ``fetch={"allow_hosts": ["127.0.0.1"]}``. ``max_links`` keeps the highest-scored links for a trial
    run; a fetch shard holds at most ``shard_size`` links, of whole origins (an origin with more is cut into
    chunks fetched one after another). ``fetch_shards_at_once`` shards of a wave fetch at once, in threads
    (their origins are disjoint, so politeness still holds): locally in the flow's process, on Dask in each
    worker. ``task_runner="dask"`` runs the fetch, extraction and dedup shards as tasks
    on a Dask cluster (``dask_address``, or a temporary local one of ``workers`` processes) with the same result
    (see ``flows/runners.py``).
    """
    check_runner(task_runner, dask_address)
    logger = get_run_logger()
    dumps, warcs, texts = list(dumps or []), list(warcs or []), list(texts or [])
    if not (dumps or warcs or texts):
        raise ValueError("build-corpus needs at least one input: dumps=[RS_*.zst …], warcs=[*.warc.gz …] or texts=[files or folders]")
    if shard_size < 1 or (max_links is not None and max_links < 1):  # refused before any input is read
        raise ValueError(f"shard_size={shard_size}, max_links={max_links}: a fetch shard holds at least 1 link and "
                         f"max_links (when given) keeps at least 1; e.g. shard_size=1000, max_links=100000")
    if fetch_shards_at_once < 1:
        raise ValueError(f"fetch_shards_at_once={fetch_shards_at_once}: at least 1 fetch shard must run, e.g. 8")
    for path in dumps + warcs + texts:
        if not Path(path).exists():
            raise FileNotFoundError(f"input {path} does not exist: check the path (relative paths are resolved from {os.getcwd()})")
    workers = workers or os.cpu_count() or 1
    links, fetch, process, minhash = links or LinkFilterConfig(), fetch or FetchConfig(), process or ProcessConfig(), MinHashConfig()
    parameters = json.loads(json.dumps({
        "dumps": [str(Path(p).resolve()) for p in dumps], "warcs": [str(Path(p).resolve()) for p in warcs],
        "texts": [str(Path(p).resolve()) for p in texts], "text_split": text_split, "links": asdict(links),
        "fetch": asdict(fetch), "process": asdict(process), "minhash": asdict(minhash),
        "max_links": max_links, "shard_size": shard_size}, default=list))
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
        extract = {"work": work, "config": process, "minhash": minhash, "workers": per_task}
        if dumps:
            for i, dump in enumerate(dumps):
                filter_links(work, i, dump, links, workers)
            plan = merge_link_tables(work, dumps, max_links, shard_size)
            # Wave by wave: the shards of one origin are in different waves, so they never fetch at the same time.
            # Within a wave fetch_shards_at_once shards fetch at once, in threads: locally the whole wave is one
            # task; on Dask each task takes that many (a worker runs one task at a time).
            for number, wave in enumerate(corpus.fetch_waves(plan)):
                group = max(1, len(wave)) if runner is None else fetch_shards_at_once
                groups = [wave[i:i + group] for i in range(0, len(wave), group)]
                run_tasks(runner, fetch_shards, [{"work": work, "shards": shards, "config": fetch, "later_wave": number > 0,
                                                  "at_once": fetch_shards_at_once} for shards in groups])
            run_tasks(runner, extract_fetched, [{**extract, "shard": s} for s in range(len(plan["shards"]))])
        run_tasks(runner, extract_warc, [{**extract, "index": i, "path": path} for i, path in enumerate(warcs)])
        if texts:
            extract_texts(work, texts, text_split, process, minhash, workers)
        units = corpus.plan_dedup(work, [(root.verify_file(STAGE, v, corpus.DEDUP_INDEX), v) for v in earlier])
        run_tasks(runner, dedup_keys, [{"work": work, "unit": u, "minhash": minhash} for u in units])
        run_tasks(runner, dedup_bucket, [{"work": work, "bucket": b} for b in range(corpus.DEDUP_BUCKETS)])
        dedup_resolve(work, units, minhash)

    out = started.out
    counts = corpus.write_version_folder(work, out, version, minhash) | corpus.input_counts(work, out)
    counts["statistics"] = corpus.document_statistics(out)
    upstream = [input_file(p, "dump") for p in dumps] + [input_file(p, "warc") for p in warcs] \
        + [input_file(p, "text") for p in corpus.text_files(texts)] + [upstream_version(root, STAGE, v) for v in earlier]
    card = dataset_card(version, parameters, upstream, counts)
    card.write(out)  # before the manifest, which lists it like every other file
    manifest = write_manifest(out, STAGE, version, parameters, upstream, counts)
    report = validate_corpus(out, manifest, sorted(links.blocked), min_chars=1)
    create_markdown_artifact(card.artifact, key=artifact_key(STAGE, version, "dataset-card"),
                             description=f"Dataset card of corpus {version} (its README.md)")
    url = finish_version(root, started, manifest, report, corpus.counts_table(counts),
                         asset_deps=upstream_asset_keys(root, upstream), description="WebText-style corpus version")
    logger.info("corpus %s: %d documents, %d rejects → %s", version, counts["documents"], counts["rejects"], url)
    return url
