"""Accounting: how many items each source put in, how many ended kept or rejected, and what the kept documents are
made of (languages, domains, lengths, fetch dates, duplicates), counted from the version's files.

The gate (``data_contracts.corpus``) checks that, per source, inputs = kept + rejected: every submission, WARC
record and text document read ended in exactly one place. The dataset card (``flows.dataset_card``) draws the rest.
"""
from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq

from gptcore.corpus.records import N_CHARS
from gptcore.corpus.steps import EXTRACT_DIR, LINK_REJECTS, LINKS, LINKS_DIR

# Document lengths in characters are counted in bins with these lower edges (1-2-5 steps read well on a log axis).
LENGTH_BIN_EDGES = tuple(m * 10 ** e for e in range(1, 8) for m in (1, 2, 5))
TOP_DOMAINS = 20


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
                                   where r.source = 'reddit' and r.step != 'links'""").fetchall()[0][0]
        # A capped link is not in links.parquet: its submissions are the dumps' kept rows of it, less the repeats
        # the merge rejected for themselves (counted in ``own``).
        per_dump = [str(p) for p in sorted((work / LINKS_DIR).glob("*.parquet")) if not p.name.endswith(".rejects.parquet")]
        with_link += con.execute("""
            with capped as (select doc_id from rejects where source = 'reddit' and reason = 'over_max_links')
            select (select count(*) from read_parquet($kept) where doc_id in (from capped))
                 - (select count(*) from read_parquet($merged) where reason = 'duplicate_submission'
                    and doc_id in (from capped))""", {"kept": per_dump, "merged": str(work / LINK_REJECTS)}).fetchall()[0][0]
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


def document_statistics(out: Path, top_domains: int = TOP_DOMAINS) -> dict:
    """What the kept documents of a version folder are made of, for the manifest and the dataset card.

    ``chars``: total characters; ``languages``: documents per language, most first; ``top_domains``: the
    ``top_domains`` domains with most documents (documents, characters); ``lengths``: documents per length bin
    (``LENGTH_BIN_EDGES``; the first bin also holds shorter ones); ``fetched_at``: per source, the first and last
    fetch time (ISO 8601); ``dedup``: duplicates dropped per reason, and per corpus version whose copy was kept
    (``"this version"`` for duplicates inside the build).
    """
    con = duckdb.connect()
    con.execute(f"create view docs as select * from read_parquet('{out}/data/*.parquet')")
    con.execute(f"create view rejects as select * from read_parquet('{out}/rejects/*.parquet')")

    def rows(sql: str) -> list[tuple]:
        return con.execute(sql).fetchall()

    def utc(time: dt.datetime) -> str:  # duckdb hands timestamps with time zone back in the local one
        return time.astimezone(dt.timezone.utc).isoformat()

    lengths = np.asarray(con.execute(f"select {N_CHARS} from docs").fetchnumpy()[N_CHARS], dtype=np.int64)
    bins = np.bincount(np.maximum(np.searchsorted(LENGTH_BIN_EDGES, lengths, side="right") - 1, 0),
                       minlength=len(LENGTH_BIN_EDGES))
    filled = np.flatnonzero(bins)  # the bins from the shortest document's to the longest's
    first, last = (int(filled[0]), int(filled[-1])) if len(filled) else (0, -1)
    return {
        "chars": int(lengths.sum()),
        "languages": dict(rows("select lang, count(*) from docs group by 1 order by 2 desc, 1")),
        "top_domains": [{"domain": d, "documents": n, "chars": int(c)} for d, n, c in rows(
            f"""select domain, count(*), sum({N_CHARS}) from docs where domain is not null group by 1
                order by 2 desc, 1 limit {int(top_domains)}""")],
        "lengths": [{"min_chars": LENGTH_BIN_EDGES[i], "documents": int(bins[i])} for i in range(first, last + 1)],
        "fetched_at": {source: [utc(first), utc(last)] for source, first, last in rows(
            "select source, min(fetched_at), max(fetched_at) from docs where fetched_at is not null group by 1 order by 1")},
        "dedup": {
            "by_reason": dict(rows("select reason, count(*) from rejects where step = 'dedup' group by 1 order by 1")),
            "by_kept_version": dict(rows(
                """select coalesce(nullif(regexp_extract(detail, 'of corpus version (\\S+)', 1), ''), 'this version'),
                          count(*) from rejects where step = 'dedup' group by 1 order by 1""")),
        },
    }
