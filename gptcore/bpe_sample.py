"""A bounded, deterministic text sample of a corpus version for BPE training, and a held-out sample to check it on.

BPE trainers keep every distinct pre-token of their input in memory, so a tokenizer is trained on a bounded sample,
streamed from the corpus Parquet files batch by batch (the corpus is never loaded whole). Documents are read in a
fixed order (files sorted by path, rows in file order), so the same corpus and the same budget give the same sample.

Held-out documents are chosen by a keyed hash of ``doc_id``, not by position: a held-out document is never trained
on, and it stays held out when later corpus versions add documents. A small corpus can have no hash below the
fraction's cut (100 documents at 1% miss it about one time in three); then its lowest-hash document is held out
instead (``plan_holdout``), so the check always has a document the tokenizer never saw.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gptcore.corpus import DOC_ID, TEXT

Split = Literal["train", "holdout"]

DEFAULT_HOLDOUT_FRACTION = 0.01
# Salt for the held-out hash: independent of other doc_id-hash splits (e.g. tokenize's validation split).
_HOLDOUT_KEY = b"gptforge/tokenizer-holdout"


@dataclass(slots=True)
class SampleStats:
    """What a sample read: filled in while iter_corpus_texts streams, for the tokenizer manifest."""

    documents: int = 0
    utf8_bytes: int = 0
    truncated_documents: int = 0  # the last document is cut at the byte budget (on a character boundary)
    empty_documents: int = 0  # null or "" texts in the chosen split, skipped


@dataclass(frozen=True, slots=True)
class Holdout:
    """Which documents of one corpus are held out: those whose ``doc_id`` hash is below ``threshold``."""

    fraction: float
    threshold: int
    widened: bool  # the fraction's cut selected no document, so the lowest-hash one is held out instead
    empty: bool  # nothing is held out: holdout_fraction is 0, or the corpus has fewer than 2 non-empty documents

    def holds_out(self, doc_id: str) -> bool:
        return _holdout_hash(doc_id) < self.threshold


def _holdout_hash(doc_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8, key=_HOLDOUT_KEY).digest(), "big")


def is_holdout(doc_id: str, holdout_fraction: float) -> bool:
    """True when the fraction's hash rule alone holds ``doc_id`` out; depends only on the id and the fraction."""
    return _holdout_hash(doc_id) < holdout_fraction * 2**64


def plan_holdout(parquet_files: Sequence[str | Path], holdout_fraction: float, batch_rows: int = 1024) -> Holdout:
    """The held-out rule for a corpus: the fraction's hash cut, widened to the lowest-hash non-empty document when the
    cut selects none of two or more (so at least one document is held out and at least one is trained on).

    Reads ``doc_id`` and text lengths only until the first non-empty document below the cut (about
    ``1 / holdout_fraction`` documents in); only a corpus where the cut selects nothing is read whole.
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    cut = math.ceil(holdout_fraction * 2**64)  # for an integer hash, h < cut exactly when h < fraction * 2**64
    if cut == 0:
        return Holdout(holdout_fraction, 0, widened=False, empty=True)
    lowest, documents = None, 0
    for path in sorted(Path(p) for p in parquet_files):
        for batch in _iter_batches(path, batch_rows):
            lengths = pc.binary_length(batch.column(TEXT)).to_pylist()
            for doc_id, length in zip(batch.column(DOC_ID).to_pylist(), lengths):
                if not length:
                    continue
                h = _holdout_hash(doc_id)
                if h < cut:
                    return Holdout(holdout_fraction, cut, widened=False, empty=False)
                documents += 1
                lowest = h if lowest is None else min(lowest, h)
    if documents < 2:
        return Holdout(holdout_fraction, cut, widened=False, empty=True)
    return Holdout(holdout_fraction, lowest + 1, widened=True, empty=False)


def iter_corpus_texts(
    parquet_files: Sequence[str | Path],
    max_bytes: int,
    *,
    split: Split = "train",
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    batch_rows: int = 1024,
    stats: SampleStats | None = None,
) -> Iterator[str]:
    """Yield the texts of one split of a corpus, in a fixed order, until ``max_bytes`` UTF-8 bytes were yielded.

    ``split="train"`` yields documents that are not held out, ``split="holdout"`` the held-out ones
    (see ``plan_holdout``). The document that crosses the budget is cut to fit, so a single huge document cannot blow
    the budget. Pass a ``SampleStats`` to learn how much was read.
    """
    if not parquet_files:
        raise ValueError("iter_corpus_texts: no Parquet files given; pass a corpus version's data/part-*.parquet")
    if max_bytes <= 0:
        raise ValueError(f"iter_corpus_texts: max_bytes must be positive, got {max_bytes}")
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"iter_corpus_texts: holdout_fraction must be in [0, 1), got {holdout_fraction}")
    # Planned here, from the same files, by both splits: whatever the check holds out, training never sees.
    holdout = plan_holdout(parquet_files, holdout_fraction, batch_rows)
    stats = stats if stats is not None else SampleStats()
    budget = max_bytes
    for path in sorted(Path(p) for p in parquet_files):
        for batch in _iter_batches(path, batch_rows):
            for text, n_bytes in _split_texts(batch, split, holdout, stats):
                if n_bytes > budget:
                    # Cut the UTF-8 bytes in Arrow's buffer (a huge document is never copied whole); "ignore" drops
                    # the character the cut splits.
                    head = text.as_buffer()[:budget].to_pybytes().decode("utf-8", "ignore")
                    stats.documents += 1
                    stats.truncated_documents += 1
                    stats.utf8_bytes += len(head.encode("utf-8"))
                    yield head
                    return
                stats.documents += 1
                stats.utf8_bytes += n_bytes
                budget -= n_bytes
                yield text.as_py()
                if budget == 0:
                    return


def _iter_batches(path: Path, batch_rows: int) -> Iterator[pa.RecordBatch]:
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"cannot read corpus file {path}: {exc}; is it a corpus version's part file?") from exc
    missing = {DOC_ID, TEXT} - set(parquet.schema_arrow.names)
    if missing:
        raise ValueError(f"corpus file {path} lacks column(s) {sorted(missing)}; expected the corpus document schema")
    yield from parquet.iter_batches(batch_size=batch_rows, columns=[DOC_ID, TEXT])


def _split_texts(
    batch: pa.RecordBatch, split: Split, holdout: Holdout, stats: SampleStats
) -> Iterator[tuple[pa.StringScalar, int]]:
    """(text, UTF-8 byte length) of the batch's non-empty documents in ``split``, still in Arrow: only the texts
    used become Python strings (picked by row: Arrow's filter/take kernels cost ~0.2 s on first use)."""
    want_holdout = split == "holdout"
    texts = batch.column(TEXT)
    lengths = pc.binary_length(texts).to_pylist()
    for row, doc_id in enumerate(batch.column(DOC_ID).to_pylist()):
        if holdout.holds_out(doc_id) != want_holdout:
            continue
        if not lengths[row]:  # null or ""
            stats.empty_documents += 1
            continue
        yield texts[row], lengths[row]
