"""Deduplicate corpus documents: exact duplicates (same normalized-text hash) and near duplicates (MinHash LSH band
collisions, FineWeb's 14 bands × 8 rows over word 5-grams), within a corpus version and against the documents kept
by earlier corpus versions (their `DedupIndex` files).

Which document survives is decided by priority order alone: the caller sorts the candidates (best first) and a
candidate is dropped when its text hash or any band key equals that of a document already **kept** (or kept by an
earlier version). Unlike FineWeb's union-find clustering this is not transitive through dropped documents: if B
duplicates kept A, and C only resembles B, C is kept. That keeps each decision explainable by one named kept
document, never drops a document for resembling one that was itself dropped (chains A~B~C~D drift until A and D
share little), and gives the same result for the same input order. The fingerprints (`text_hash`, band keys) come from `gptcore.corpus.minhash`.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gptcore.corpus.minhash import MinHashConfig, bands_to_arrow
from gptcore.corpus.records import REJECT_SCHEMA, reject

STEP = "dedup"
EXACT_DUPLICATE = "exact_duplicate"
NEAR_DUPLICATE = "near_duplicate"
_INDEX_VERSION_KEY = b"gptforge.dedup_index.version"

__all__ = ["Collisions", "DedupIndex", "DedupResult", "Dropped", "FingerprintKeys", "collisions", "deduplicate",
           "band_matrix", "detail_of", "fingerprint_keys", "read_index_file", "reason_of", "settle",
           "write_dedup_index"]


@dataclass(slots=True)
class DedupResult:
    """`keep`: doc_ids that survive, in candidate order. `rejects`: one REJECT_SCHEMA row per dropped candidate."""

    keep: list[str] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)

    def rejects_table(self) -> pa.Table:
        return pa.Table.from_pylist(self.rejects, schema=REJECT_SCHEMA)


def deduplicate(candidates: pa.Table, prior: DedupIndex | None = None, config: MinHashConfig = MinHashConfig()) -> DedupResult:
    """Split candidates (best first) into kept doc_ids and `exact_duplicate` / `near_duplicate` rejects.

    `candidates` needs columns `doc_id`, `text_hash` and `bands` (list of `config.bands` uint64, from
    `fingerprint_table`); optional `url`, `source` and `input` columns fill the reject rows' `item`, `source` and
    `input`. A candidate is dropped when its text hash (reason `exact_duplicate`, checked first) or any band key
    (`near_duplicate`) equals that of a document kept before it or kept by an earlier version in `prior`; the
    reject's detail names that document (and its corpus version). Every candidate ends in exactly one of the two.

    This is the in-memory form of the sharded pipeline in `gptcore.corpus.dedup_shards` (the same `collisions` and
    `settle`, with one bucket): a sort per fingerprint column, then a Python loop only over rows that share a
    fingerprint with another row.
    """
    missing = {"doc_id", "text_hash", "bands"} - set(candidates.column_names)
    if missing:
        raise ValueError(f"deduplicate: candidates lack columns {sorted(missing)}; build them with fingerprint_table")
    prior = prior if prior is not None else DedupIndex.empty(config)
    if prior.config != config:
        raise ValueError(f"deduplicate: prior index uses {prior.config}, this run {config}; band keys would never match")
    n_prior, n_candidates = len(prior), candidates.num_rows
    if n_candidates and candidates.column("text_hash").null_count:
        raise ValueError("deduplicate: candidates have null text_hash values; compute one per document with text_hash()")

    # Rows 0..n_prior-1 are the earlier versions' documents (all kept), then the candidates in priority order: a
    # row's index is both its member id and its rank.
    keys = fingerprint_keys(
        pa.concat_arrays([_string_array(prior.table, "text_hash"), _string_array(candidates, "text_hash")]),
        np.concatenate([band_matrix(prior.table.column("bands"), config, what="prior dedup index"),
                        band_matrix(candidates.column("bands"), config, what="deduplicate candidates")]),
    )
    found = collisions(keys.column, keys.hi, keys.lo, keys.row)
    dropped = settle(found, rank=found.member, n_prior=n_prior)
    doc_ids = candidates.column("doc_id").to_pylist()
    describe = _KeptDocNamer(prior, doc_ids)
    rows = [(rank - n_prior, reason_of(column), detail_of(column, describe(owner)))
            for rank, column, owner in dropped.rows()]
    is_dropped = np.zeros(n_candidates, dtype=bool)
    is_dropped[dropped.rank - n_prior] = True
    return DedupResult(
        keep=[doc_ids[candidate] for candidate in np.flatnonzero(~is_dropped).tolist()],
        rejects=_reject_rows(candidates, doc_ids, rows),
    )


def reason_of(column: int) -> str:
    """The reject reason of a row dropped on fingerprint `column` (0 is the text hash, 1.. the bands)."""
    return EXACT_DUPLICATE if column == 0 else NEAR_DUPLICATE


def detail_of(column: int, kept_doc: str) -> str:
    if column == 0:
        return f"same normalized text as {kept_doc}"
    return f"near duplicate of {kept_doc} (shares MinHash LSH band {column - 1})"


@dataclass(frozen=True, slots=True)
class FingerprintKeys:
    """Every fingerprint of every row as one entry: column 0 is the text hash, 1.. the bands. A key is 128 bits
    (`hi`, `lo`; band keys have lo = 0); `row` is the row's position in the input."""

    column: np.ndarray  # int16
    hi: np.ndarray  # uint64
    lo: np.ndarray  # uint64
    row: np.ndarray  # int64


def fingerprint_keys(text_hashes: pa.Array | pa.ChunkedArray, band_keys: np.ndarray) -> FingerprintKeys:
    """The (column, key) entries of rows given their text hashes and (n, bands) band keys, column-major."""
    n, bands = band_keys.shape
    text_hi, text_lo = _text_hash_keys(text_hashes)
    return FingerprintKeys(
        column=np.repeat(np.arange(bands + 1, dtype=np.int16), n),
        hi=np.concatenate([text_hi, np.ascontiguousarray(band_keys.T).reshape(-1)]),
        lo=np.concatenate([text_lo, np.zeros(n * bands, dtype=np.uint64)]),
        row=np.tile(np.arange(n, dtype=np.int64), bands + 1),
    )


def _text_hash_keys(text_hashes: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """128-bit keys of text hashes: the 32-hex blake2b-128 digests `text_hash` writes are decoded as they are; any
    other string is hashed first (callers may bring their own exact-duplicate keys)."""
    values = text_hashes.to_pylist()
    raw = None
    if all(len(v) == 32 for v in values):
        try:
            raw = bytes.fromhex("".join(values))
        except ValueError:
            pass
    if raw is None:
        raw = b"".join(hashlib.blake2b(v.encode("utf-8", "surrogatepass"), digest_size=16).digest() for v in values)
    pairs = np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 2)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


@dataclass(frozen=True, slots=True)
class Collisions:
    """Entries whose (column, key) is shared by at least two members: `group` numbers each shared key (distinct
    within one `Collisions`), `member` is the row that has it."""

    column: np.ndarray  # int16
    group: np.ndarray  # int64
    member: np.ndarray  # int64

    @classmethod
    def concat(cls, parts: Sequence[Collisions]) -> Collisions:
        """Collisions of disjoint key sets (columns, buckets) as one, renumbering groups so they stay distinct."""
        offset, groups = 0, []
        for part in parts:
            groups.append(part.group + offset)
            offset += int(part.group.max(initial=-1)) + 1
        return cls(np.concatenate([p.column for p in parts] + [np.empty(0, np.int16)]),
                   np.concatenate(groups + [np.empty(0, np.int64)]),
                   np.concatenate([p.member for p in parts] + [np.empty(0, np.int64)]))


def collisions(column: np.ndarray, hi: np.ndarray, lo: np.ndarray, member: np.ndarray) -> Collisions:
    """The entries that share their (column, key) with another entry, found with one sort per column.

    Most documents share nothing, so the result is much smaller than the input, and it is all `settle` needs.
    """
    parts = []
    for c in np.unique(column):
        at = np.flatnonzero(column == c)
        key_hi, key_lo = hi[at], lo[at]
        order = np.lexsort((key_lo, key_hi)) if key_lo.any() else np.argsort(key_hi, kind="stable")
        key_hi, key_lo = key_hi[order], key_lo[order]
        starts = np.ones(order.size, dtype=bool)
        starts[1:] = (key_hi[1:] != key_hi[:-1]) | (key_lo[1:] != key_lo[:-1])
        group = np.cumsum(starts) - 1
        shared = np.bincount(group)[group] >= 2
        parts.append(Collisions(np.full(int(shared.sum()), c, dtype=np.int16), group[shared],
                                member[at][order][shared]))
    return Collisions.concat(parts)


@dataclass(frozen=True, slots=True)
class Dropped:
    """Dropped rows by ascending rank, the fingerprint column that decided each, and the rank of the kept owner."""

    rank: np.ndarray
    column: np.ndarray
    owner: np.ndarray

    def rows(self) -> list[tuple[int, int, int]]:
        return list(zip(self.rank.tolist(), self.column.tolist(), self.owner.tolist()))


def settle(found: Collisions, rank: np.ndarray, n_prior: int) -> Dropped:
    """Decide, in rank order, which colliding rows are dropped.

    A row is dropped when one of its shared keys is already owned by a kept row (the first such column decides:
    text hash before bands, band 0 before band 1); otherwise it is kept and owns all its keys. Ranks below `n_prior`
    are earlier versions' documents: always kept, owning the keys nobody owns yet. `rank[i]` is the priority of
    `found.member[i]` (lower first). Rows that collide with nothing are kept and never reach this function, so the
    loop runs only over the (few) documents that share a fingerprint.
    """
    order = np.lexsort((found.column, rank))
    ranks, columns, groups = rank[order], found.column[order], found.group[order]
    owner = np.full(int(groups.max(initial=-1)) + 1, -1, dtype=np.int64)
    starts = np.flatnonzero(np.diff(ranks, prepend=-1))
    dropped: list[tuple[int, int, int]] = []
    for start, stop in zip(starts.tolist(), np.append(starts[1:], ranks.size).tolist()):
        row, row_groups = int(ranks[start]), groups[start:stop]
        row_owners = owner[row_groups]
        if row < n_prior:
            owner[row_groups[row_owners < 0]] = row
            continue
        taken = np.flatnonzero(row_owners >= 0)
        if taken.size == 0:
            owner[row_groups] = row
        else:
            dropped.append((row, int(columns[start + taken[0]]), int(row_owners[taken[0]])))
    as_array = np.array(dropped, dtype=np.int64).reshape(-1, 3)
    return Dropped(as_array[:, 0], as_array[:, 1], as_array[:, 2])


class _KeptDocNamer:
    """Names the kept document that a row index (prior rows first, then candidates) refers to, for reject details."""

    def __init__(self, prior: DedupIndex, candidate_doc_ids: list[str]) -> None:
        self._prior_doc_ids = prior.table.column("doc_id")
        self._prior_versions = prior.table.column("version")
        self._candidate_doc_ids = candidate_doc_ids

    def __call__(self, row: int) -> str:
        n_prior = len(self._prior_doc_ids)
        if row < n_prior:
            return f"doc {self._prior_doc_ids[row].as_py()} of corpus version {self._prior_versions[row].as_py()}"
        return f"doc {self._candidate_doc_ids[row - n_prior]}"


def _reject_rows(candidates: pa.Table, doc_ids: list[str], dropped: list[tuple[int, str, str]]) -> list[dict]:
    """REJECT_SCHEMA rows; `item` is the candidate's URL when the table has a `url` column, else its doc_id."""
    indices = pa.array([candidate for candidate, _, _ in dropped], pa.int64())
    optional = {
        name: candidates.column(name).take(indices).to_pylist() if name in candidates.column_names else [None] * len(dropped)
        for name in ("url", "source", "input")
    }
    return [
        reject(
            item=optional["url"][position] or doc_ids[candidate],
            source=optional["source"][position] or "",
            step=STEP,
            reason=reason,
            detail=detail,
            input=optional["input"][position] or "",
            doc_id=doc_ids[candidate],
        )
        for position, (candidate, reason, detail) in enumerate(dropped)
    ]


def _string_array(table: pa.Table, name: str) -> pa.Array:
    column = table.column(name).cast(pa.string())
    return pa.concat_arrays(column.chunks) if column.num_chunks else pa.array([], pa.string())


class DedupIndex:
    """Text hashes and band keys of the documents kept by earlier corpus versions, to deduplicate a new one against.

    Only the 14 band keys are stored per document (not the 112-value signature): ~150 bytes per document before
    compression, and enough to reproduce every band collision.
    """

    def __init__(self, table: pa.Table, config: MinHashConfig) -> None:
        """`table` has columns `version`, `doc_id`, `text_hash`, `bands` (list of `config.bands` uint64 per row)."""
        self.table = table
        self.config = config

    @classmethod
    def load(cls, paths_with_versions: Iterable[tuple[str, str]], config: MinHashConfig = MinHashConfig()) -> DedupIndex:
        """Combine the index files of several earlier corpus versions, given as (path or fsspec URL, version) pairs.

        Refuses a file written for another version than the one it is paired with, or with another MinHash config:
        band keys made with different parameters never collide, so deduplicating against them would do nothing.
        """
        tables = [read_index_file(path, version, config) for path, version in paths_with_versions]
        if not tables:
            return cls.empty(config)
        return cls(pa.concat_tables(tables), config)

    @classmethod
    def empty(cls, config: MinHashConfig = MinHashConfig()) -> DedupIndex:
        schema = _index_schema(config).append(pa.field("version", pa.string()))
        return cls(schema.empty_table(), config)

    def __len__(self) -> int:
        return self.table.num_rows


def _index_schema(config: MinHashConfig) -> pa.Schema:
    return pa.schema(
        [("doc_id", pa.string()), ("text_hash", pa.string()), ("bands", pa.list_(pa.uint64(), config.bands))]
    )


def write_dedup_index(
    path: str,
    version: str,
    doc_ids: Sequence[str] | pa.Array,
    text_hashes: Sequence[str] | pa.Array,
    bands: np.ndarray | pa.Array | pa.ChunkedArray,
    config: MinHashConfig = MinHashConfig(),
) -> str:
    """Write the dedup index of a finished corpus version (its kept documents) as one zstd Parquet file; returns path.

    `bands` is an (n, config.bands) uint64 array or the `bands` column of a fingerprint table.
    """
    matrix = band_matrix(bands, config, what=f"bands for dedup index {path}")
    if not (len(doc_ids) == len(text_hashes) == matrix.shape[0]):
        raise ValueError(
            f"write_dedup_index {path}: {len(doc_ids)} doc_ids, {len(text_hashes)} text_hashes and "
            f"{matrix.shape[0]} band rows; pass one of each per kept document"
        )
    metadata = {_INDEX_VERSION_KEY: version.encode()} | {k.encode(): v.encode() for k, v in config.as_metadata().items()}
    schema = _index_schema(config).with_metadata(metadata)
    table = pa.table(
        [pa.array(doc_ids, pa.string()), pa.array(text_hashes, pa.string()), bands_to_arrow(matrix)], schema=schema
    )
    with fsspec.open(path, "wb") as out:
        pq.write_table(table, out, compression="zstd")
    return path


def read_index_file(path: str, version: str, config: MinHashConfig) -> pa.Table:
    """An earlier version's index file (path or fsspec URL) with a `version` column, refused unless it was written
    for that version with this MinHash config."""
    with fsspec.open(path, "rb") as source:
        table = pq.read_table(source)
    metadata = table.schema.metadata or {}
    stored_version = metadata.get(_INDEX_VERSION_KEY, b"").decode()
    if stored_version != version:
        raise ValueError(
            f"dedup index {path} belongs to corpus version {stored_version!r}, not {version!r}: "
            "pair each index file with the version it was written for"
        )
    stored_config = {k.decode(): v.decode() for k, v in metadata.items() if k.startswith(b"minhash.")}
    if stored_config != config.as_metadata():
        raise ValueError(
            f"dedup index {path} was written with MinHash parameters {stored_config}, but this run uses "
            f"{config.as_metadata()}: band keys are only comparable under one config; rebuild the index or use its config"
        )
    table = table.replace_schema_metadata(None).cast(_index_schema(config))
    return table.append_column("version", pa.array([version] * table.num_rows, pa.string()))


def band_matrix(bands: np.ndarray | pa.Array | pa.ChunkedArray, config: MinHashConfig, what: str) -> np.ndarray:
    """Band keys as a contiguous (n, config.bands) uint64 matrix, from NumPy or an Arrow list column."""
    if isinstance(bands, np.ndarray):
        matrix = np.asarray(bands, dtype=np.uint64)
    else:
        if isinstance(bands, pa.ChunkedArray):
            bands = pa.concat_arrays(bands.chunks) if bands.num_chunks else pa.array([], pa.list_(pa.uint64(), config.bands))
        lengths = pc.list_value_length(bands)
        if bands.null_count or (len(bands) and (pc.min(lengths).as_py(), pc.max(lengths).as_py()) != (config.bands,) * 2):
            raise ValueError(f"{what}: every row needs a list of {config.bands} band keys; found nulls or other lengths")
        matrix = bands.flatten().to_numpy(zero_copy_only=False).astype(np.uint64, copy=False).reshape(-1, config.bands)
    if matrix.ndim != 2 or matrix.shape[1] != config.bands:
        raise ValueError(f"{what}: expected shape (n, {config.bands}), got {matrix.shape}")
    return np.ascontiguousarray(matrix)
