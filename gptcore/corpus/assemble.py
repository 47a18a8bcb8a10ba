"""Assembling a corpus version folder from the work folder the steps (``gptcore.corpus.steps``) filled.

    data/part-*.parquet      kept documents (the corpus schema), in doc_id order
    rejects/part-*.parquet   every reject: link filtering, the link cap, fetch, extraction, quality, dedup
    links.parquet            the merged links (dump inputs only)
    fetch_log.parquet, warc/ one log row per link, the raw responses
    robots.parquet           each origin's robots.txt answer the fetch went by (dump inputs only)
    dedup_index.parquet      the kept documents' fingerprints, which later versions deduplicate against

The dataset card (``README.md``, ``images/``), the manifest and the gate come after, in the flow.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from gptcore.corpus.dedup import write_dedup_index
from gptcore.corpus.dedup_shards import read_result
from gptcore.corpus.minhash import MinHashConfig
from gptcore.corpus.records import FETCH_LOG, REJECT_SCHEMA, WARC_DIR
from gptcore.corpus.robots import robots_table
from gptcore.corpus.steps import (DEDUP_DIR, EXTRACT_DIR, FETCH_DIR, LINK_REJECTS, LINKS, LINKS_DIR, ROBOTS_DIR,
                                  unit_files, unit_schema)
from gptcore.files import atomic_write_table

DEDUP_INDEX, ROBOTS = "dedup_index.parquet", "robots.parquet"


def read_tables(paths: list[Path], schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    """Concatenate Parquet files (``schema`` gives the shape of the empty result)."""
    tables = [pq.read_table(p, columns=columns) for p in paths]
    if not tables:
        return schema.empty_table().select(columns or schema.names)
    return pa.concat_tables(tables, promote_options="default")


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def write_version_folder(work: Path, out: Path, version: str, minhash: MinHashConfig,
                         docs_per_part: int = 50_000) -> dict:
    """Rebuild ``out/`` from the work folder: the documents dedup kept in doc_id order, all rejects, links, fetch log,
    WARCs, robots.txt answers, and the dedup index of the kept documents (named for ``version``).

    Returns the counts for the manifest. Idempotent: ``out/`` is recreated from scratch on every call.
    """
    keep, dedup_rejects = read_result(work / DEDUP_DIR)
    if out.exists():
        shutil.rmtree(out)
    (out / "data").mkdir(parents=True)
    (out / "rejects").mkdir()
    units = unit_files(work)
    con = duckdb.connect()
    con.register("keep", pa.table({"doc_id": pa.array(keep, pa.string())}))
    # One read of the units: the kept documents with their fingerprints, for the data files and the dedup index.
    unit_docs = unit_schema(minhash.bands)
    kept = con.sql("select d.* from read_parquet($files) d semi join keep using (doc_id) order by d.doc_id",
                   params={"files": [str(p) for p in units]}).to_arrow_table() if units else unit_docs.empty_table()
    kept = kept.cast(unit_docs) if kept.num_rows else unit_docs.empty_table()
    write_dedup_index(out / DEDUP_INDEX, version, kept["doc_id"], kept["text_hash"], kept["bands"], minhash)
    kept = kept.drop_columns(["bands"])
    for i, start in enumerate(range(0, max(kept.num_rows, 1), docs_per_part)):
        atomic_write_table(out / "data" / f"part-{i:05d}.parquet", kept.slice(start, docs_per_part))

    reject_files = sorted(work.glob(f"{LINKS_DIR}/*.rejects.parquet")) + [work / LINK_REJECTS] \
        + sorted((work / EXTRACT_DIR).glob("*.rejects.parquet"))
    rejects = read_tables([p for p in reject_files if p.exists()], REJECT_SCHEMA)
    rejects = pa.concat_tables([rejects.cast(REJECT_SCHEMA), dedup_rejects.cast(REJECT_SCHEMA)])
    atomic_write_table(out / "rejects" / "part-00000.parquet", rejects)
    con.register("rejects", rejects)

    if (work / LINKS).exists():
        link_or_copy(work / LINKS, out / LINKS)
    logs = sorted((work / FETCH_DIR).glob("*.log.parquet"))
    if logs:
        atomic_write_table(out / FETCH_LOG, pa.concat_tables([pq.read_table(p) for p in logs]))
    for warc in sorted((work / FETCH_DIR).glob("*.warc.gz")):
        link_or_copy(warc, out / WARC_DIR / warc.name)
    if (work / ROBOTS_DIR).is_dir():  # one small file per origin in the work folder, one table in the version
        atomic_write_table(out / ROBOTS, robots_table(work / ROBOTS_DIR))

    return {"documents": kept.num_rows, "rejects": rejects.num_rows,
            "rejects_by_reason": dict(sorted(con.sql("select step || ':' || reason, count(*) from rejects group by 1")
                                             .fetchall()))}
