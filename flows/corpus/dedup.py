"""Deduplicate corpus documents: exact duplicates (same normalized-text hash) and near duplicates (MinHash LSH band
collisions, FineWeb's 14 bands × 8 rows over word 5-grams), within a corpus version and against the documents kept
by earlier corpus versions (their `DedupIndex` files).

Which document survives is decided by priority order alone: the caller sorts the candidates (best first) and a
candidate is dropped when its text hash or any band key equals that of a document already **kept** (or kept by an
earlier version). Unlike FineWeb's union-find clustering this is not transitive through dropped documents: if B
duplicates kept A, and C only resembles B, C is kept. That keeps each decision explainable by one named kept
document, never drops a document for resembling one that was itself dropped (chains A~B~C~D drift until A and D
share little), and gives the same result for the same input order. The fingerprints (`text_hash`, band keys) come from `flows.corpus.minhash`.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flows.corpus.minhash import MinHashConfig, bands_to_arrow
from flows.corpus.records import REJECT_SCHEMA, reject

STEP = "dedup"
EXACT_DUPLICATE = "exact_duplicate"
NEAR_DUPLICATE = "near_duplicate"
_INDEX_VERSION_KEY = b"gptforge.dedup_index.version"

__all__ = ["DedupIndex", "DedupResult", "deduplicate", "write_dedup_index"]


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

    Cost: a hash-encoding pass per fingerprint column over prior + candidates (vectorized), then a Python loop only
    over candidates that share a fingerprint with an earlier row (≈4 s and ≈0.5 GB of working memory per million
    rows on one core).
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

    # Rows 0..n_prior-1 are the earlier versions' documents (all kept), then the candidates in priority order.
    groups = _fingerprint_groups(
        pa.concat_arrays([_string_array(prior.table, "text_hash"), _string_array(candidates, "text_hash")]),
        np.concatenate(
            [
                _band_matrix(prior.table.column("bands"), config, what="prior dedup index"),
                _band_matrix(candidates.column("bands"), config, what="deduplicate candidates"),
            ]
        ),
    )
    owner, kept = _initial_owners(groups, n_prior)
    doc_ids = candidates.column("doc_id").to_pylist()
    describe = _KeptDocNamer(prior, doc_ids)
    dropped: list[tuple[int, str, str]] = []  # (candidate, reason, detail), in candidate order
    for candidate in np.flatnonzero(~kept).tolist():
        row = n_prior + candidate
        row_groups = groups[row]
        row_owners = owner[row_groups]
        taken = np.flatnonzero(row_owners >= 0)
        if taken.size == 0:
            owner[row_groups] = row
            kept[candidate] = True
            continue
        column = int(taken[0])  # column 0 is the text hash, 1.. the bands: exact beats near
        kept_doc = describe(int(row_owners[column]))
        if column == 0:
            dropped.append((candidate, EXACT_DUPLICATE, f"same normalized text as {kept_doc}"))
        else:
            dropped.append((candidate, NEAR_DUPLICATE, f"near duplicate of {kept_doc} (shares MinHash LSH band {column - 1})"))
    return DedupResult(
        keep=[doc_ids[candidate] for candidate in np.flatnonzero(kept).tolist()],
        rejects=_reject_rows(candidates, doc_ids, dropped),
    )


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


def _fingerprint_groups(text_hashes: pa.Array, band_matrix: np.ndarray) -> np.ndarray:
    """(rows, 1 + bands) int64: for each row, a group id per fingerprint column (text hash, then each band), unique
    across columns, so that two rows share a group exactly when they share that column's value."""
    columns = [text_hashes, *(pa.array(band_matrix[:, band]) for band in range(band_matrix.shape[1]))]
    groups = np.empty((len(text_hashes), len(columns)), dtype=np.int64)
    offset = 0
    for index, column in enumerate(columns):
        encoded = pc.dictionary_encode(column)
        groups[:, index] = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64) + offset
        offset += len(encoded.dictionary)
    return groups


def _initial_owners(groups: np.ndarray, n_prior: int) -> tuple[np.ndarray, np.ndarray]:
    """Owner row of each group before the sequential pass (-1: none yet), and which candidates are already kept.

    A group's owner is the row that was kept first among its members. Known up front: the first prior row of a
    group (prior rows are all kept), and any candidate that is the first row of *every* one of its groups (nothing
    earlier can collide with it, so it is kept; most documents are such singletons). The remaining candidates are
    decided in order by `deduplicate`, and can only find owners among earlier rows, which are settled by then.
    """
    n_rows, n_groups = groups.shape[0], int(groups.max(initial=-1)) + 1
    rows = np.arange(n_rows)
    first_row = np.full(n_groups, n_rows, dtype=np.int64)
    np.minimum.at(first_row, groups.ravel(), np.repeat(rows, groups.shape[1]))
    first_everywhere = (first_row[groups] == rows[:, None]).all(axis=1)
    settled = first_everywhere | (rows < n_prior)
    owner = np.where(settled[first_row], first_row, -1)  # every group has a member, so first_row < n_rows
    return owner, first_everywhere[n_prior:].copy()


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
        tables = [_read_index_file(path, version, config) for path, version in paths_with_versions]
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
    band_matrix = _band_matrix(bands, config, what=f"bands for dedup index {path}")
    if not (len(doc_ids) == len(text_hashes) == band_matrix.shape[0]):
        raise ValueError(
            f"write_dedup_index {path}: {len(doc_ids)} doc_ids, {len(text_hashes)} text_hashes and "
            f"{band_matrix.shape[0]} band rows; pass one of each per kept document"
        )
    metadata = {_INDEX_VERSION_KEY: version.encode()} | {k.encode(): v.encode() for k, v in config.as_metadata().items()}
    schema = _index_schema(config).with_metadata(metadata)
    table = pa.table(
        [pa.array(doc_ids, pa.string()), pa.array(text_hashes, pa.string()), bands_to_arrow(band_matrix)], schema=schema
    )
    with fsspec.open(path, "wb") as out:
        pq.write_table(table, out, compression="zstd")
    return path


def _read_index_file(path: str, version: str, config: MinHashConfig) -> pa.Table:
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


def _band_matrix(bands: np.ndarray | pa.Array | pa.ChunkedArray, config: MinHashConfig, what: str) -> np.ndarray:
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
