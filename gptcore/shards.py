"""Token shards: the on-disk format the tokenize stage writes and every trainer reads (the design card, "Token shards").

A tokens folder holds flat little-endian ``.bin`` files of token ids (``<u2``; ``<u4`` when the vocabulary exceeds
65,535 ids) and one ``index.json``. Every document is written as ``[eot_id, *ids]`` — the end-of-text id goes
*before* each document, as GPT-2 / nanoGPT / llm.c data preparation does — so every shard starts with EOT and any
window of tokens has a document boundary marker in front of each document it sees. Empty documents are skipped
(they would add nothing but an EOT) and counted.

Train/validation membership is a hash of ``doc_id`` (``split_of``), so adding documents to a later corpus version
never moves an existing one between splits. Shard boundaries depend only on the corpus (``plan_shards``): the same
corpus, tokenizer and settings give byte-identical shards however many workers run them and however often a run is
killed and resumed (``tokenize_shard`` skips a shard whose file matches its recorded statistics).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gptcore.corpus import DOC_ID, N_CHARS, TEXT
from gptcore.files import atomic_write_bytes, remove_stale_temps, sha256_file, temp_sibling
from gptcore.names import check_name

if TYPE_CHECKING:  # the protocol only: training processes that read shards never load a tokenizer library
    from gptcore.encoding import Encoder

FORMAT_VERSION = 1
INDEX_FILE = "index.json"
SHARD_FILES = "*.bin"  # the shards (a pattern): checked on read against index.json, not hashed twice
EOT_PLACEMENT = "before_each_document"
SPLITS = ("train", "val")
UINT16_MAX_VOCAB = 65_535  # the design card: uint32 "when the vocabulary exceeds 65,535"


class TokenIndexError(ValueError):
    """A tokens folder whose index.json and shard files disagree, or that is not a tokens folder at all."""


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """``<u2`` for vocabularies up to 65,535 ids (nanoGPT reads these as they are), ``<u4`` above."""
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    return np.dtype("<u2") if vocab_size <= UINT16_MAX_VOCAB else np.dtype("<u4")


# ---------------------------------------------------------------------------------------------------------------
# Train / validation split


@dataclass(frozen=True)
class SplitRule:
    """How a document's split is decided; recorded in index.json so readers and later versions can reproduce it."""

    validation_fraction: float = 0.005
    kind: str = "doc_id_hash"
    hash: str = "blake2b-8"  # first 8 bytes of BLAKE2b(doc_id), big-endian, as a fraction of 2**64

    def __post_init__(self) -> None:
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")


def split_of(doc_id: str, validation_fraction: float) -> str:
    """``"val"`` for a stable pseudo-random ``validation_fraction`` of doc ids, else ``"train"``.

    Depends on nothing but the id and the fraction, so a document keeps its split across corpus versions, and raising
    the fraction only moves documents from train to val, never back.
    """
    digest = hashlib.blake2b(doc_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return "val" if int.from_bytes(digest, "big") < validation_fraction * 2**64 else "train"


# ---------------------------------------------------------------------------------------------------------------
# Writing one shard


@dataclass(frozen=True)
class WriterStats:
    """What a finished shard file holds (ids include the EOT in front of every document)."""

    tokens: int
    documents: int
    sha256: str
    min_id: int
    max_id: int


class ShardWriter:
    """Streams documents into one ``.bin`` shard: bounded memory, visible under its name only once finished.

    Use as a context manager and call ``finish()``; leaving the block without it (or with an exception) deletes
    the partial file, so a crashed run never leaves a shard that looks complete.
    """

    def __init__(self, path: str | Path, dtype: np.dtype | str, eot_id: int) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype("<u2"), np.dtype("<u4")):
            raise ValueError(f"shard dtype must be <u2 or <u4 (little-endian unsigned), got {self.dtype.str}")
        self._id_limit = 1 << (8 * self.dtype.itemsize)
        if not 0 <= eot_id < self._id_limit:
            raise ValueError(f"eot_id {eot_id} does not fit in {self.dtype.str}")
        self.eot_id = eot_id
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temp_sibling(self.path)
        self._file = open(self._tmp, "wb")
        self._sha256 = hashlib.sha256()
        self.tokens = 0
        self.documents = 0
        self.min_id = self._id_limit
        self.max_id = -1

    def add_documents(self, documents: Iterable[Sequence[int]]) -> None:
        """Append documents (lists or arrays of ids), each preceded by the end-of-text id."""
        flat: list[int] = []
        count = 0
        for ids in documents:
            flat.append(self.eot_id)
            flat.extend(ids)
            count += 1
        if not count:
            return
        ids_array = np.asarray(flat, dtype=np.int64)
        low, high = int(ids_array.min()), int(ids_array.max())
        if low < 0 or high >= self._id_limit:
            raise ValueError(f"token id {low if low < 0 else high} does not fit in {self.dtype.str} "
                             f"(writing {self.path.name}): the encoder's vocabulary does not match the shard dtype")
        data = ids_array.astype(self.dtype).tobytes()
        self._file.write(data)
        self._sha256.update(data)
        self.tokens += ids_array.size
        self.documents += count
        self.min_id, self.max_id = min(self.min_id, low), max(self.max_id, high)

    def add_document(self, ids: Sequence[int]) -> None:
        self.add_documents([ids])

    def finish(self) -> WriterStats:
        """Flush, fsync and rename into place; returns what the file holds."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.path)
        return WriterStats(tokens=self.tokens, documents=self.documents, sha256=self._sha256.hexdigest(),
                           min_id=self.min_id if self.tokens else -1, max_id=self.max_id)

    def abort(self) -> None:
        """Drop the partial file (idempotent)."""
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()  # no-op after finish(): the temporary name no longer exists


# ---------------------------------------------------------------------------------------------------------------
# index.json


@dataclass(frozen=True)
class ShardStats:
    """One shard as recorded in index.json (``empty_doc_ids`` is returned to the caller, not stored)."""

    file: str  # name inside the tokens folder, e.g. "train_000003.bin"
    split: str  # "train" | "val"
    tokens: int  # ids in the file, EOTs included
    documents: int  # documents written (empty ones excluded)
    sha256: str
    min_id: int
    max_id: int
    empty_documents: int = 0  # skipped: they encoded to no ids
    replaced_characters: int = 0  # invalid UTF-8 (e.g. lone surrogates) replaced by U+FFFD before encoding
    empty_doc_ids: tuple[str, ...] = field(default=(), compare=False)

    def index_entry(self) -> dict:
        entry = asdict(self)
        del entry["empty_doc_ids"]
        return entry

    @classmethod
    def from_entry(cls, entry: dict) -> "ShardStats":
        known = {f.name for f in fields(cls)} - {"empty_doc_ids"}
        return cls(**{k: v for k, v in entry.items() if k in known})


@dataclass(frozen=True)
class TokenIndex:
    """A validated tokens folder: where it is, how to read its shards, and what each holds."""

    folder: Path
    dtype: np.dtype
    vocab_size: int
    eot_id: int
    tokenizer_sha256: str
    split_rule: SplitRule
    shards: tuple[ShardStats, ...]

    def shards_of(self, split: str) -> list[ShardStats]:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return [s for s in self.shards if s.split == split]

    def tokens_of(self, split: str) -> int:
        return sum(s.tokens for s in self.shards_of(split))


def write_index(folder: str | Path, *, vocab_size: int, eot_id: int, tokenizer_sha256: str, split_rule: SplitRule,
                shards: Sequence[ShardStats]) -> Path:
    """Write ``index.json`` for shards already in ``folder`` (checked to exist with the recorded size)."""
    folder = Path(folder)
    dtype = dtype_for_vocab(vocab_size)
    ordered = sorted(shards, key=lambda s: (SPLITS.index(s.split), s.file))
    for shard in ordered:
        _check_shard_file(folder, shard, dtype)
    totals = {split: {"shards": sum(1 for s in ordered if s.split == split),
                      "tokens": sum(s.tokens for s in ordered if s.split == split),
                      "documents": sum(s.documents for s in ordered if s.split == split)} for split in SPLITS}
    index = {
        "format_version": FORMAT_VERSION,
        "dtype": dtype.str,
        "vocab_size": vocab_size,
        "eot_id": eot_id,
        "eot_placement": EOT_PLACEMENT,
        "tokenizer_sha256": tokenizer_sha256,
        "split_rule": asdict(split_rule),
        "totals": totals,
        "shards": [s.index_entry() for s in ordered],
    }
    return atomic_write_bytes(folder / INDEX_FILE, (json.dumps(index, indent=2) + "\n").encode())


def read_index(folder: str | Path, *, verify_checksums: bool = True) -> TokenIndex:
    """Load ``index.json`` and check every shard file exists with the recorded size and sha256.

    Checksums read every byte of every shard: a caller that reads only the index, or only one split
    (``TokenDataset``), passes ``verify_checksums=False`` and checks what it reads with ``check_shard_checksums``.
    """
    folder = Path(folder)
    path = folder / INDEX_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise TokenIndexError(f"{folder} is not a tokens folder: {INDEX_FILE} is missing "
                              "(run the tokenize stage, or point at a tokens/<version> folder)") from None
    except json.JSONDecodeError as exc:
        raise TokenIndexError(f"{path} is not valid JSON ({exc}): the tokens folder is damaged; rebuild it") from None
    if raw.get("format_version") != FORMAT_VERSION:
        raise TokenIndexError(f"{path} has format_version {raw.get('format_version')!r}; this code reads "
                              f"version {FORMAT_VERSION}: re-tokenize or use a matching gptforge version")
    dtype = np.dtype(raw["dtype"])
    if dtype != dtype_for_vocab(raw["vocab_size"]):
        raise TokenIndexError(f"{path} records dtype {dtype.str} for vocab_size {raw['vocab_size']}, "
                              f"expected {dtype_for_vocab(raw['vocab_size']).str}")
    shards = tuple(ShardStats.from_entry(entry) for entry in raw["shards"])
    for shard in shards:
        _check_shard_file(folder, shard, dtype)
    index = TokenIndex(folder=folder, dtype=dtype, vocab_size=raw["vocab_size"], eot_id=raw["eot_id"],
                       tokenizer_sha256=raw["tokenizer_sha256"], split_rule=SplitRule(**raw["split_rule"]),
                       shards=shards)
    if verify_checksums:
        check_shard_checksums(index, shards)
    return index


def check_shard_checksums(index: TokenIndex, shards: Iterable[ShardStats]) -> None:
    """Every given shard's bytes hash to the sha256 ``index.json`` records, else ``TokenIndexError``."""
    for shard in shards:
        path = index.folder / shard.file
        if (actual := sha256_file(path)) != shard.sha256:
            raise TokenIndexError(f"shard {path} has sha256 {actual} but {INDEX_FILE} records {shard.sha256}: the "
                                  "file changed after tokenize wrote it; rebuild the tokens version (run tokenize "
                                  "for a new version) and train on that")


def _check_shard_file(folder: Path, shard: ShardStats, dtype: np.dtype) -> None:
    """The shard is a plain file name of a known split, present with the size its token count implies."""
    try:
        check_name(shard.file, "shard")
    except ValueError:
        raise TokenIndexError(f"shard {shard.file!r} in {folder / INDEX_FILE} is not a file name inside the tokens "
                              "folder: index.json was edited or damaged; rebuild the tokens version") from None
    path = folder / shard.file
    if shard.split not in SPLITS:
        raise TokenIndexError(f"shard {shard.file} in {folder / INDEX_FILE} has split {shard.split!r}, "
                              f"expected one of {SPLITS}")
    if not path.is_file():
        raise TokenIndexError(f"shard {shard.file} listed in {folder / INDEX_FILE} is missing from {folder}: "
                              "the tokens folder is incomplete; re-run tokenize for this version")
    size = path.stat().st_size
    if size != shard.tokens * dtype.itemsize:
        raise TokenIndexError(f"shard {path} has {size:,} bytes but {INDEX_FILE} records {shard.tokens:,} tokens of "
                              f"{dtype.str} ({shard.tokens * dtype.itemsize:,} bytes): the file was truncated or "
                              "replaced; re-run tokenize for this version")


# ---------------------------------------------------------------------------------------------------------------
# Planning: which corpus rows go into which shard


@dataclass(frozen=True)
class RowRange:
    """Rows ``[start, stop)`` of one corpus Parquet file."""

    path: str
    start: int
    stop: int


@dataclass(frozen=True)
class ShardTask:
    """One output shard: the corpus rows it reads and the split it keeps (other-split rows in the ranges are skipped).

    Plain, picklable data: safe to send to a process pool or pass as a Prefect task parameter.
    """

    split: str
    index: int  # position within its split: output file "<split>_<index:06d>.bin"
    inputs: tuple[RowRange, ...]
    documents: int  # documents of this split inside ``inputs`` when planned (before skipping empty ones)
    chars: int  # their characters, from the corpus ``n_chars`` column
    validation_fraction: float
    output: str  # path of the .bin file

    @property
    def file(self) -> str:
        return Path(self.output).name

    def fingerprint(self) -> str:
        """Identity of the work, recorded beside the shard so a resumed run only reuses a shard made by this task."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def shard_file_name(split: str, index: int) -> str:
    return f"{split}_{index:06d}.bin"


def plan_shards(corpus_files: Sequence[str | Path], out_folder: str | Path, *, validation_fraction: float = 0.005,
                target_chars_per_shard: int = 400_000_000, max_documents_per_shard: int | None = None,
                ) -> list[ShardTask]:
    """Cut the corpus, in file and row order, into shards of about ``target_chars_per_shard`` characters per split.

    Reads only the ``doc_id`` and ``n_chars`` columns. A shard closes before the document that would take it past
    ``target_chars_per_shard`` characters or ``max_documents_per_shard`` documents; a single larger document gets a
    shard of its own. The default (~400M characters ≈ 100M GPT-2 tokens ≈ 200 MB of uint16) follows the
    100M-token shards of llm.c's FineWeb preparation. Boundaries depend only on the corpus and these settings.
    Returns train tasks then val tasks, each in shard order.
    """
    if target_chars_per_shard < 1:
        raise ValueError(f"target_chars_per_shard must be positive, got {target_chars_per_shard}")
    if max_documents_per_shard is not None and max_documents_per_shard < 1:
        raise ValueError(f"max_documents_per_shard must be positive, got {max_documents_per_shard}")
    SplitRule(validation_fraction)  # validates the fraction
    out_folder = Path(out_folder)
    builders = {split: _ShardPlanBuilder(split, out_folder, validation_fraction, target_chars_per_shard,
                                         max_documents_per_shard) for split in SPLITS}
    for corpus_file in corpus_files:
        path = str(corpus_file)
        doc_ids, n_chars = _read_plan_columns(path)
        for row, (doc_id, chars) in enumerate(zip(doc_ids, n_chars)):
            builders[split_of(doc_id, validation_fraction)].add(path, row, chars)
    return [task for split in SPLITS for task in builders[split].finish()]


def _read_plan_columns(path: str) -> tuple[list[str], list[int]]:
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ValueError(f"cannot read corpus file {path}: {exc}") from None
    missing = {DOC_ID, TEXT, N_CHARS} - set(schema.names)
    if missing:
        raise ValueError(f"corpus file {path} lacks column(s) {sorted(missing)}: tokenize reads corpus Parquet with "
                         "doc_id, text and n_chars (as build-corpus writes it)")
    table = pq.read_table(path, columns=[DOC_ID, N_CHARS])
    if table.column(DOC_ID).null_count or table.column(N_CHARS).null_count:
        raise ValueError(f"corpus file {path} has null doc_id or n_chars values; rebuild the corpus version")
    return table.column(DOC_ID).to_pylist(), table.column(N_CHARS).to_pylist()


class _ShardPlanBuilder:
    """Accumulates one split's documents into consecutive shards."""

    def __init__(self, split: str, out_folder: Path, validation_fraction: float, target_chars: int,
                 max_documents: int | None) -> None:
        self.split, self.out_folder, self.validation_fraction = split, out_folder, validation_fraction
        self.target_chars, self.max_documents = target_chars, max_documents
        self.tasks: list[ShardTask] = []
        self._ranges: list[RowRange] = []  # closed ranges of the open shard
        self._open: tuple[str, int, int] | None = None  # (path, start, stop) of its current range
        self._documents = 0
        self._chars = 0

    def add(self, path: str, row: int, chars: int) -> None:
        full = self._documents and (self._chars + chars > self.target_chars
                                    or (self.max_documents is not None and self._documents >= self.max_documents))
        if full:
            self._close()
        if self._open and self._open[0] == path:
            self._open = (path, self._open[1], row + 1)
        else:
            self._close_range()
            self._open = (path, row, row + 1)
        self._documents += 1
        self._chars += chars

    def finish(self) -> list[ShardTask]:
        if self._documents:
            self._close()
        return self.tasks

    def _close_range(self) -> None:
        if self._open:
            self._ranges.append(RowRange(*self._open))
            self._open = None

    def _close(self) -> None:
        self._close_range()
        index = len(self.tasks)
        self.tasks.append(ShardTask(
            split=self.split, index=index, inputs=tuple(self._ranges), documents=self._documents, chars=self._chars,
            validation_fraction=self.validation_fraction,
            output=str(self.out_folder / shard_file_name(self.split, index))))
        self._ranges, self._documents, self._chars = [], 0, 0


# ---------------------------------------------------------------------------------------------------------------
# Tokenizing one shard


def decode_utf8(raw: bytes) -> tuple[str, int]:
    """Text from corpus bytes, with every invalid UTF-8 sequence replaced by U+FFFD, and how many were replaced.

    Lone surrogates can only reach a Parquet file as invalid UTF-8 (surrogatepass / CESU-8 writers); tokenizers
    refuse them, so they become U+FFFD here. NUL and every other valid character are ordinary text.
    """
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "replace")
        return text, text.count("\ufffd") - raw.count("\ufffd".encode())


def tokenize_shard(task: ShardTask, encoder: Encoder, *, batch_chars: int = 4_000_000,
                   batch_documents: int = 1024) -> ShardStats:
    """Encode the task's documents into its shard; skipped when the shard already exists from the same task.

    Memory stays bounded: documents are read from Parquet in small record batches and encoded in batches of at most
    ``batch_documents`` documents / ``batch_chars`` characters (one larger document is encoded alone).
    Raises when the corpus no longer matches the plan or an id falls outside the vocabulary.
    """
    output = Path(task.output)
    done = _finished_stats(task, encoder)
    if done is not None:
        return done
    remove_stale_temps(output)  # left by a killed worker; one task per shard
    dtype = dtype_for_vocab(encoder.vocab_size)
    seen = empty = replaced = 0
    empty_ids: list[str] = []
    with ShardWriter(output, dtype, encoder.eot_id) as writer:
        for doc_ids, texts, batch_replaced in _document_batches(task, batch_chars, batch_documents):
            seen += len(doc_ids)
            replaced += batch_replaced
            encoded = encoder.encode_batch(texts)
            kept = []
            for doc_id, ids in zip(doc_ids, encoded):
                if len(ids):
                    kept.append(ids)
                else:
                    empty += 1
                    empty_ids.append(doc_id)
            writer.add_documents(kept)
            if writer.max_id >= encoder.vocab_size:
                raise ValueError(f"encoder produced id {writer.max_id} >= its vocab_size {encoder.vocab_size} "
                                 f"while writing {output.name}: the encoder is inconsistent")
        if seen != task.documents:
            raise ValueError(f"shard {output.name} was planned with {task.documents} {task.split} documents but its "
                             f"corpus rows now hold {seen}: the corpus changed since planning; plan again")
        written = writer.finish()
    stats = ShardStats(file=output.name, split=task.split, tokens=written.tokens, documents=written.documents,
                       sha256=written.sha256, min_id=written.min_id, max_id=written.max_id, empty_documents=empty,
                       replaced_characters=replaced, empty_doc_ids=tuple(empty_ids))
    record = {"task": task.fingerprint(), "vocab_size": encoder.vocab_size, "eot_id": encoder.eot_id,
              "stats": {**asdict(stats), "empty_doc_ids": list(empty_ids)}}
    atomic_write_bytes(_stats_path(output), (json.dumps(record, indent=2) + "\n").encode())
    return stats


def _stats_path(output: Path) -> Path:
    """Hidden sidecar beside the shard: the resume record (hidden files stay out of the version's manifest)."""
    return output.with_name(f".{output.name}.stats.json")


def _finished_stats(task: ShardTask, encoder: Encoder) -> ShardStats | None:
    """The recorded statistics of a finished shard made by this very task, if its file still matches them."""
    output = Path(task.output)
    try:
        record = json.loads(_stats_path(output).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if (record.get("task"), record.get("vocab_size"), record.get("eot_id")) != (
            task.fingerprint(), encoder.vocab_size, encoder.eot_id):
        return None
    saved = record["stats"]
    stats = ShardStats(**{**saved, "empty_doc_ids": tuple(saved["empty_doc_ids"])})
    expected_size = stats.tokens * dtype_for_vocab(encoder.vocab_size).itemsize
    if not output.is_file() or output.stat().st_size != expected_size or sha256_file(output) != stats.sha256:
        return None
    return stats


def _document_batches(task: ShardTask, batch_chars: int, batch_documents: int,
                      ) -> Iterator[tuple[list[str], list[str], int]]:
    """(doc_ids, texts, replaced characters) of the task's split, in corpus order, in bounded batches."""
    doc_ids: list[str] = []
    texts: list[str] = []
    chars = replaced = 0
    for doc_id, text, bad in _documents(task):
        doc_ids.append(doc_id)
        texts.append(text)
        chars += len(text)
        replaced += bad
        if len(texts) >= batch_documents or chars >= batch_chars:
            yield doc_ids, texts, replaced
            doc_ids, texts, chars, replaced = [], [], 0, 0
    if texts:
        yield doc_ids, texts, replaced


def _documents(task: ShardTask, read_rows: int = 256) -> Iterator[tuple[str, str, int]]:
    """Stream (doc_id, text, replaced characters) for the task's rows whose split is the task's split."""
    for rows in task.inputs:
        parquet = pq.ParquetFile(rows.path)
        groups, position = _row_groups_overlapping(parquet.metadata, rows.start, rows.stop)
        for batch in parquet.iter_batches(batch_size=read_rows, row_groups=groups, columns=[DOC_ID, TEXT]):
            start, stop = position, position + batch.num_rows
            position = stop
            if stop <= rows.start:
                continue
            if start >= rows.stop:
                break
            batch = batch.slice(max(rows.start - start, 0), min(rows.stop, stop) - max(rows.start, start))
            doc_ids = batch.column(DOC_ID).to_pylist()
            keep = [split_of(d, task.validation_fraction) == task.split for d in doc_ids]
            if not any(keep):
                continue
            raw_texts = batch.column(TEXT).filter(pa.array(keep)).cast(pa.binary()).to_pylist()
            for doc_id, raw in zip((d for d, k in zip(doc_ids, keep) if k), raw_texts):
                text, bad = decode_utf8(raw or b"")
                yield doc_id, text, bad


def _row_groups_overlapping(metadata: pq.FileMetaData, start: int, stop: int) -> tuple[list[int], int]:
    """Row groups holding rows [start, stop), and the file row number of the first one's first row."""
    groups, first_row, offset = [], None, 0
    for group in range(metadata.num_row_groups):
        rows = metadata.row_group(group).num_rows
        if offset < stop and offset + rows > start:
            groups.append(group)
            first_row = offset if first_row is None else first_row
        offset += rows
    return groups, first_row or 0
