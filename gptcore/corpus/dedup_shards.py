"""Deduplication of a whole corpus version in three sharded steps, so no step sees every document at once.

    per unit (extraction shard, earlier version's index):  keys/b<bucket>/<unit>.parquet   fingerprints by bucket
    per bucket:                                            collisions/b<bucket>.parquet     keys shared by ≥ 2 rows
    once, over the collisions only:                        rejects.parquet + keep.parquet   who is dropped, and why

Each fingerprint (the text hash, each of the LSH bands) of each document is one *key*; a key goes to bucket
``hi mod n_buckets``, so a bucket task sees every document that could share its keys and nothing else. What leaves a
bucket is only the keys that at least two documents share (a few percent of the input), and the final step decides
those in priority order with `gptcore.corpus.dedup.settle` — the same decisions as `deduplicate` on the whole
table, hence the same corpus (tested). It is deliberately not union-find clustering: a document is dropped only
for resembling a *kept* one, which `settle` decides over the shared keys alone.

A row is named by its *member* id: ``unit << 32 | row``, units numbered earlier versions first (in the order they
were built), then the extraction units in file-name order. Priority: earlier versions' documents first (all kept),
then candidates by score descending, doc_id ascending, member ascending — the order `deduplicate` is given.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gptcore.corpus.dedup import (STEP, Collisions, band_matrix, collisions, detail_of, fingerprint_keys, read_index_file,
                                reason_of, settle)
from gptcore.corpus.minhash import MinHashConfig
from gptcore.corpus.records import REJECT_SCHEMA, reject
from gptcore.files import atomic_write_table

KEYS = "keys"
COLLISIONS = "collisions"
REJECTS = "rejects.parquet"
KEEP = "keep.parquet"
_UNIT_SHIFT = 32
_KEY_SCHEMA = pa.schema([("column", pa.int16()), ("hi", pa.uint64()), ("lo", pa.uint64()), ("member", pa.int64())])
_COLLISION_SCHEMA = pa.schema([("column", pa.int16()), ("group", pa.int64()), ("member", pa.int64())])


@dataclass(frozen=True)
class Unit:
    """One input of dedup: an extraction unit's documents (``version`` None) or an earlier version's index."""

    number: int
    path: str  # local path, or an fsspec URL for an earlier version's index
    version: str | None = None

    @property
    def is_prior(self) -> bool:
        return self.version is not None


def plan_units(prior_indexes: list[tuple[str, str]], unit_files: list[Path]) -> list[Unit]:
    """Number the inputs: earlier versions' index files ((path, version) in build order), then extraction units."""
    return [Unit(i, path, version) for i, (path, version) in enumerate(prior_indexes)] \
        + [Unit(len(prior_indexes) + i, str(p)) for i, p in enumerate(unit_files)]


def _read_fingerprints(unit: Unit, config: MinHashConfig) -> pa.Table:
    if unit.is_prior:
        return read_index_file(unit.path, unit.version, config)
    return pq.read_table(unit.path, columns=["doc_id", "text_hash", "bands"])


def write_unit_keys(unit: Unit, folder: Path, n_buckets: int, config: MinHashConfig) -> list[Path]:
    """Step 1: one unit's keys, split by bucket into ``folder/keys/b<bucket>/<unit>.parquet`` (skipped when done)."""
    paths = [folder / KEYS / f"b{bucket:04d}" / f"{unit.number:06d}.parquet" for bucket in range(n_buckets)]
    if all(p.exists() for p in paths):
        return paths
    table = _read_fingerprints(unit, config)
    if table.num_rows and table.column("text_hash").null_count:
        raise ValueError(f"dedup: {unit.path} has documents without a text_hash; re-extract it")
    keys = fingerprint_keys(table.column("text_hash"), band_matrix(table.column("bands"), config, what=unit.path))
    member = (np.int64(unit.number) << _UNIT_SHIFT) + keys.row
    bucket = (keys.hi % np.uint64(n_buckets)).astype(np.int64)
    for b, path in enumerate(paths):
        at = np.flatnonzero(bucket == b)
        atomic_write_table(path, pa.table([keys.column[at], keys.hi[at], keys.lo[at], member[at]], schema=_KEY_SCHEMA))
    return paths


def find_bucket_collisions(folder: Path, bucket: int) -> Path:
    """Step 2: the keys of one bucket shared by at least two documents, into ``folder/collisions/b<bucket>.parquet``."""
    out = folder / COLLISIONS / f"b{bucket:04d}.parquet"
    if out.exists():
        return out
    files = sorted((folder / KEYS / f"b{bucket:04d}").glob("*.parquet"))
    keys = pa.concat_tables([pq.read_table(p) for p in files]) if files else _KEY_SCHEMA.empty_table()
    found = _collide(keys)
    atomic_write_table(out, pa.table([found.column, found.group, found.member], schema=_COLLISION_SCHEMA))
    return out


def _collide(keys: pa.Table) -> Collisions:
    def numpy(name: str) -> np.ndarray:
        return keys.column(name).to_numpy()

    return collisions(numpy("column"), numpy("hi"), numpy("lo"), numpy("member"))


def resolve(folder: Path, units: list[Unit], n_buckets: int, config: MinHashConfig) -> dict:
    """Step 3: decide the colliding documents; write ``rejects.parquet`` (REJECT_SCHEMA, in priority order) and
    ``keep.parquet`` (doc_ids kept, in unit order). Returns counts."""
    found = Collisions.concat([_read_collisions(folder / COLLISIONS / f"b{b:04d}.parquet") for b in range(n_buckets)])
    members = np.unique(found.member)
    facts = _member_facts(members, units, config)
    n_prior = sum(1 for f in facts if f["version"] is not None)
    by_priority = sorted(range(len(members)), key=lambda i: _priority(facts[i]))
    rank_of_index = np.empty(len(members), dtype=np.int64)
    rank_of_index[by_priority] = np.arange(len(members))
    dropped = settle(found, rank=rank_of_index[np.searchsorted(members, found.member)], n_prior=n_prior)
    ranked = [facts[i] for i in by_priority]
    rejects = [_reject_row(ranked[rank], column, ranked[owner]) for rank, column, owner in dropped.rows()]
    atomic_write_table(folder / REJECTS, pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA))
    dropped_members = {ranked[rank]["member"] for rank in dropped.rank.tolist()}
    keep = []
    for unit in (u for u in units if not u.is_prior):
        doc_ids = pq.read_table(unit.path, columns=["doc_id"]).column("doc_id").to_pylist()
        base = unit.number << _UNIT_SHIFT
        keep += [doc_id for row, doc_id in enumerate(doc_ids) if base + row not in dropped_members]
    atomic_write_table(folder / KEEP, pa.table({"doc_id": pa.array(keep, pa.string())}))
    return {"kept": len(keep), "dropped": len(rejects), "colliding_documents": len(members)}


def read_result(folder: Path) -> tuple[list[str], pa.Table]:
    """The kept doc_ids and the dedup rejects written by `resolve`."""
    return pq.read_table(folder / KEEP).column("doc_id").to_pylist(), pq.read_table(folder / REJECTS)


def _read_collisions(path: Path) -> Collisions:
    table = pq.read_table(path)
    return Collisions(*(table.column(name).to_numpy() for name in ("column", "group", "member")))


def _member_facts(members: np.ndarray, units: list[Unit], config: MinHashConfig) -> list[dict]:
    """doc_id, score, corpus version and reject columns of each colliding member, in `members` order (ascending)."""
    facts: list[dict] = []
    unit_of = members >> _UNIT_SHIFT
    for number in np.unique(unit_of).tolist():
        unit = units[number]
        rows = members[unit_of == number] - (number << _UNIT_SHIFT)
        if unit.is_prior:
            table = read_index_file(unit.path, unit.version, config).select(["doc_id"])
        else:
            table = pq.read_table(unit.path, columns=["doc_id", "score", "url", "source", "input"])
        for row, values in zip(rows.tolist(), table.take(pa.array(rows)).to_pylist()):
            facts.append({"member": (number << _UNIT_SHIFT) + row, "version": unit.version, **values})
    return facts


def _priority(fact: dict) -> tuple:
    """Earlier versions first (in build order), then candidates best first: the order `deduplicate` is given."""
    if fact["version"] is not None:
        return (0, 0, "", fact["member"])
    return (1, -(fact["score"] or 0), fact["doc_id"], fact["member"])


def _reject_row(fact: dict, column: int, owner: dict) -> dict:
    kept = f"doc {owner['doc_id']}" + (f" of corpus version {owner['version']}" if owner["version"] is not None else "")
    return reject(item=fact["url"] or fact["doc_id"], source=fact["source"] or "", step=STEP, reason=reason_of(column),
                  detail=detail_of(column, kept), input=fact["input"] or "", doc_id=fact["doc_id"])
