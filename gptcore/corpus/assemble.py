"""Assembling a corpus version from per-shard outputs: provenance joins, final layout and accounting.

Plain functions over files in the version's work folder; the build-corpus flow calls them in order.
Work folder layout (every file written atomically, so a rerun skips what exists):

    links/<dump>.parquet, links/<dump>.rejects.parquet     per-dump link filtering
    links.parquet, links.rejects.parquet                    merged link table (+ links over the cap)
    fetch/<shard>.warc.gz, fetch/<shard>.log.parquet        raw responses and the fetch log (log written last)
    extract/<unit>.rejects.parquet, extract/<unit>.parquet  documents with text_hash and bands (docs written last)
    dedup.parquet                                           doc_id → kept / reject reason
    out/                                                    the version folder, rebuilt from the above, then published
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gptcore.corpus.records import DOC_SCHEMA, REJECT_SCHEMA
from gptcore.files import atomic_write_table


def read_tables(paths: list[Path], schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    """Concatenate Parquet files (``schema`` gives the shape of the empty result)."""
    tables = [pq.read_table(p, columns=columns) for p in paths]
    if not tables:
        return schema.empty_table().select(columns or schema.names)
    return pa.concat_tables(tables, promote_options="default")


def unit_schema(bands: int) -> pa.Schema:
    """Documents of one extraction unit: the corpus schema plus the MinHash band keys used by dedup."""
    return DOC_SCHEMA.append(pa.field("bands", pa.list_(pa.uint64(), bands)))


def rejects_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=REJECT_SCHEMA)


def fetch_rejects(log: pa.Table, input_name: str) -> pa.Table:
    """Fetch log rows with an error become rejects of step ``fetch``."""
    failed = log.filter(pc.is_valid(log["error"])).to_pylist()
    return rejects_table([{"item": r["url"], "doc_id": r["doc_id"], "source": "reddit", "step": "fetch",
                           "reason": r["error"], "detail": r.get("detail") or "", "input": input_name} for r in failed])


def add_reddit_provenance(docs: list[dict], links: pa.Table, log: pa.Table) -> list[dict]:
    """Attach submission ids, subreddits and score (from the link table) and fetch facts (from the fetch log)."""
    by_link = {r["doc_id"]: r for r in links.select(["doc_id", "url", "submission_ids", "subreddits", "score_max"]).to_pylist()}
    by_fetch = {r["doc_id"]: r for r in log.select(["doc_id", "status", "fetched_at"]).to_pylist()}
    for doc in docs:
        link, fetched = by_link[doc["doc_id"]], by_fetch.get(doc["doc_id"], {})
        doc.update(url=link["url"], submission_ids=link["submission_ids"], subreddits=link["subreddits"],
                   score=link["score_max"], http_status=fetched.get("status"), fetched_at=fetched.get("fetched_at"))
    return docs


def docs_table(docs: list[dict], bands: int) -> pa.Table:
    return pa.Table.from_pylist(docs, schema=unit_schema(bands))


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def unit_files(work: Path) -> list[Path]:
    """The extracted documents of every unit (fetch shard, WARC file, text set)."""
    return sorted(p for p in (work / "extract").glob("*.parquet") if not p.name.endswith(".rejects.parquet"))


def write_version_folder(work: Path, out: Path, keep: list[str], dedup_rejects: pa.Table, docs_per_part: int = 50_000) -> dict:
    """Rebuild ``out/`` from the work folder: kept documents in doc_id order, all rejects, links, fetch log, WARCs.

    Returns the counts for the manifest. Idempotent: ``out/`` is recreated from scratch on every call.
    """
    if out.exists():
        shutil.rmtree(out)
    (out / "data").mkdir(parents=True)
    (out / "rejects").mkdir()
    units = unit_files(work)
    con = duckdb.connect()
    con.register("keep", pa.table({"doc_id": pa.array(keep, pa.string())}))
    kept = con.sql("select d.* exclude (bands) from read_parquet($files) d semi join keep using (doc_id) order by d.doc_id",
                   params={"files": [str(p) for p in units]}).to_arrow_table() if units else DOC_SCHEMA.empty_table()
    kept = kept.cast(DOC_SCHEMA) if kept.num_rows else DOC_SCHEMA.empty_table()
    for i, start in enumerate(range(0, max(kept.num_rows, 1), docs_per_part)):
        atomic_write_table(out / "data" / f"part-{i:05d}.parquet", kept.slice(start, docs_per_part))

    reject_files = sorted(work.glob("links/*.rejects.parquet")) + [work / "links.rejects.parquet"] \
        + sorted((work / "extract").glob("*.rejects.parquet"))
    rejects = read_tables([p for p in reject_files if p.exists()], REJECT_SCHEMA)
    rejects = pa.concat_tables([rejects.cast(REJECT_SCHEMA), dedup_rejects.cast(REJECT_SCHEMA)])
    atomic_write_table(out / "rejects" / "part-00000.parquet", rejects)
    con.register("rejects", rejects)

    if (work / "links.parquet").exists():
        link_or_copy(work / "links.parquet", out / "links.parquet")
    logs = sorted((work / "fetch").glob("*.log.parquet"))
    if logs:
        atomic_write_table(out / "fetch_log.parquet", pa.concat_tables([pq.read_table(p) for p in logs]))
    for warc in sorted((work / "fetch").glob("*.warc.gz")):
        link_or_copy(warc, out / "warc" / warc.name)
    return {"documents": kept.num_rows, "rejects": rejects.num_rows,
            "rejects_by_reason": dict(sorted(con.sql("select step || ':' || reason, count(*) from rejects group by 1")
                                             .fetchall()))}
