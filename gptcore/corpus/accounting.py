"""Accounting: how many items each source put in, and how many ended kept or rejected, counted from the files.

The gate (``data_contracts.corpus``) checks that, per source, inputs = kept + rejected: every submission, WARC
record and text document read ended in exactly one place.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from gptcore.corpus.steps import EXTRACT_DIR, LINKS, LINKS_DIR


def input_counts(work: Path, out: Path) -> dict:
    """The manifest's input counts: ``links`` (merged), ``accounting`` (per source: inputs, kept, rejected) and
    ``link_filter`` (the link filter's counts, summed over the dumps).

    WARC records and text documents are counted as the extraction read them. A submission is kept when it is in a
    kept document's ``submission_ids``; it is rejected either by link filtering (its own reject row) or together with
    its link (one reject row per link from fetch, extraction, quality, dedup or the link cap, counting all the
    link's submissions). A damaged dump tail is one input item and one reject.
    """
    filter_counts = [json.loads(p.read_text()) for p in sorted((work / LINKS_DIR).glob("*.counts.json"))]
    con = duckdb.connect()
    con.execute(f"create view docs as select * from read_parquet('{out}/data/*.parquet')")
    con.execute(f"create view rejects as select * from read_parquet('{out}/rejects/*.parquet')")
    counts = {}
    read = Counter()
    for unit in (work / EXTRACT_DIR).glob("*.counts.json"):
        entry = json.loads(unit.read_text())
        read[entry["source"]] += entry["inputs"]
    for source in ("warc", "text"):
        if source in read:
            kept = con.execute("select count(*) from docs where source = ?", [source]).fetchall()[0][0]
            rejected = con.execute("select count(*) from rejects where source = ?", [source]).fetchall()[0][0]
            counts[source] = {"inputs": read[source], "kept": kept, "rejected": rejected}
    if filter_counts:
        con.execute(f"create view links as select * from read_parquet('{work / LINKS}')")
        kept = con.execute("select coalesce(sum(len(submission_ids)), 0) from docs where source = 'reddit'").fetchall()[0][0]
        with_link = con.execute("""select coalesce(sum(l.n_submissions), 0) from rejects r join links l using (doc_id)
                                   where r.source = 'reddit' and (r.step != 'links' or r.reason = 'over_max_links')""").fetchall()[0][0]
        own = con.execute("""select count(*) from rejects where source = 'reddit' and step = 'links'
                             and reason != 'over_max_links'""").fetchall()[0][0]
        inputs = sum(c["records_read"] + c.get("truncated_dump", 0) for c in filter_counts)
        counts["reddit"] = {"inputs": int(inputs), "kept": int(kept), "rejected": int(with_link + own)}
    return {"links": pq.read_metadata(work / LINKS).num_rows if filter_counts else 0, "accounting": counts,
            "link_filter": dict(sum((Counter(c) for c in filter_counts), Counter()))}


def counts_table(counts: dict) -> list[dict]:
    """The manifest's counts as (what, count) rows, for the flow's table artifact."""
    rows = [{"what": "documents", "count": counts["documents"]}, {"what": "rejects", "count": counts["rejects"]}]
    rows += [{"what": f"reject {k}", "count": v} for k, v in counts["rejects_by_reason"].items()]
    return rows + [{"what": f"{src} {k}", "count": v} for src, c in counts["accounting"].items() for k, v in c.items()]
