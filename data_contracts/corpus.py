"""The corpus gate: what a built corpus version must satisfy before it is published.

Validated on a metadata frame (the corpus schema's required columns, the text only as present or absent, computed
with DuckDB) and on the manifest's counts: every data file has the corpus schema (column names and Arrow types, so a
reader never meets a ``fetched_at`` string in one shard and a timestamp in another), required columns non-null,
``doc_id``/``url``/``text_hash`` unique, text length within bounds, no blocked domain, known sources, and the files
hold exactly the counts the manifest claims, with every input item accounted for.
"""
from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from data_contracts.gate import Check, GateReport, run_gate, expectations as gxe, pandas as pd
from gptcore.corpus import DOC_ID, DOC_SCHEMA, N_CHARS, REQUIRED_DOC_COLUMNS, SOURCES, TEXT


def blocked_host_regex(blocked_domains: list[str]) -> str:
    """Matches a host equal to, or a subdomain of, any blocked domain."""
    alternatives = "|".join(re.escape(d.lower().strip(".")) for d in sorted(blocked_domains))
    return rf"^(?:.*\.)?(?:{alternatives})$"


def metadata_frame(parquet_files: list[Path]) -> pd.DataFrame:
    """Per-document metadata without the text (cheap to validate even for millions of documents)."""
    if not parquet_files:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in (*REQUIRED_DOC_COLUMNS, "host")})
    files = [str(p) for p in parquet_files]
    columns = ", ".join(f"case when {TEXT} is null then null else 'present' end as {TEXT}" if c == TEXT else c
                        for c in REQUIRED_DOC_COLUMNS)
    return duckdb.sql(
        f"""select {columns}, lower(regexp_extract(url, '^[a-zA-Z][a-zA-Z0-9+.-]*://([^/:?#]*)', 1)) as host
            from read_parquet($files)""", params={"files": files}).df()


def schema_frame(parquet_files: list[Path]) -> pd.DataFrame:
    """Per data file, how its columns differ from DOC_SCHEMA (None when they do not), read from the Parquet footers."""
    expected = [(f.name, f.type) for f in DOC_SCHEMA]  # types compare equal whatever a list's item is called
    rows = []
    for path in parquet_files:
        found = [(f.name, f.type) for f in pq.read_schema(path)]
        problem = None if found == expected else (
            f"{path.name} has columns {_named([c for c in found if c not in expected])} where the corpus schema has "
            f"{_named([c for c in expected if c not in found])}: it was written by other code; rebuild the version")
        rows.append({"file": path.name, "problem": problem})
    return pd.DataFrame(rows, columns=["file", "problem"])


def _named(columns: list[tuple]) -> list[tuple[str, str]]:
    return [(name, str(type_)) for name, type_ in columns]


def accounting_frame(manifest: dict) -> pd.DataFrame:
    """Per source: inputs, kept, rejected — from the manifest, recounted from the files by the checks — and, when they
    do not add up, the problem in words (the gate's failure message shows it)."""
    rows = [{"source": source, **counts, "accounted": counts["kept"] + counts["rejected"],
             "problem": accounting_problem(source, counts["inputs"], counts["kept"], counts["rejected"])}
            for source, counts in sorted(manifest["counts"]["accounting"].items())]
    return pd.DataFrame(rows, columns=["source", "inputs", "kept", "rejected", "accounted", "problem"])


def accounting_problem(source: str, inputs: int, kept: int, rejected: int) -> str | None:
    """Why the items of one source do not add up, and where to look; None when every item read ended in one place."""
    extra = kept + rejected - inputs
    if extra == 0:
        return None
    tally = f"{source}: {inputs} items read, but {kept} kept + {rejected} rejected = {kept + rejected}"
    if extra > 0:
        return (f"{tally}: {extra} more than read, so some item ended in two places (in the documents and the "
                f"rejects, or twice in the rejects); look for an item id in both rejects/*.parquet and data/*.parquet "
                f"(submission_ids for reddit); this is a bug in the step that wrote the second one: report it")
    return (f"{tally}: {-extra} items ended neither kept nor rejected; rejects/*.parquet should hold a row with a "
            f"reason for each; compare the manifest's link_filter and rejects_by_reason counts to find the step that "
            f"dropped them: this is a bug in that step: report it")


def corpus_checks(doc_files: list[Path], reject_files: list[Path], manifest: dict, blocked_domains: list[str],
                  min_chars: int, max_chars: int) -> list[Check]:
    meta = metadata_frame(doc_files)
    counts = manifest["counts"]
    n_rejects = int(duckdb.sql("select count(*) from read_parquet($f)", params={"f": [str(p) for p in reject_files]})
                    .fetchall()[0][0]) if reject_files else 0
    documents = [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in REQUIRED_DOC_COLUMNS]
    documents += [gxe.ExpectColumnValuesToBeUnique(column=c) for c in (DOC_ID, "url", "text_hash")]
    documents += [
        gxe.ExpectColumnValuesToBeBetween(column=N_CHARS, min_value=min_chars, max_value=max_chars),
        gxe.ExpectColumnValuesToBeInSet(column="source", value_set=list(SOURCES)),
        gxe.ExpectTableRowCountToEqual(value=int(counts["documents"])),
    ]
    if blocked_domains:
        documents.append(gxe.ExpectColumnValuesToNotMatchRegex(column="host", regex=blocked_host_regex(blocked_domains)))
    totals = pd.DataFrame([{"rejects_in_files": n_rejects, "rejects_in_manifest": int(counts["rejects"])}])
    return [
        Check("schema", schema_frame(doc_files), [gxe.ExpectColumnValuesToBeNull(column="problem")]),
        Check("documents", meta, documents),
        Check("rejects", totals, [gxe.ExpectColumnPairValuesToBeEqual(column_A="rejects_in_files",
                                                                      column_B="rejects_in_manifest")]),
        Check("accounting", accounting_frame(manifest), [gxe.ExpectColumnValuesToBeNull(column="problem")]),
    ]


def validate_corpus(folder: Path, manifest: dict, blocked_domains: list[str], min_chars: int = 1,
                    max_chars: int = 10_000_000) -> GateReport:
    """Run the corpus gate on a corpus folder (``data/*.parquet``, ``rejects/*.parquet``) and its manifest."""
    docs = sorted((folder / "data").glob("*.parquet"))
    rejects = sorted((folder / "rejects").glob("*.parquet"))
    return run_gate("corpus", corpus_checks(docs, rejects, manifest, blocked_domains, min_chars, max_chars))
