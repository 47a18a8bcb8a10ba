"""Train/test overlap, measured as GPT-2 did: 8-grams of evaluation sets looked up in a Bloom filter of the corpus.

Text is normalised the way the GPT-2 paper describes (section 4, "Generalization vs Memorization"): lowercase,
alphanumeric words only (punctuation and spacing ignored), so "Hello, World!" and "hello world" share n-grams.
Every n-gram of the pretraining text (the corpus documents a model trained on) goes into a Bloom filter sized
for the number of n-grams counted in a first pass and a stated false-positive rate; an evaluation set then reports
the fraction of its n-grams found in the filter and the fraction of its examples with at least one. A Bloom filter
never misses a member, so the numbers can only be too high, by at most about the false-positive rate for the
n-gram fraction.

Hashing is vectorised: each word gets a stable 64-bit hash (BLAKE2b, cached: vocabularies are Zipfian), an n-gram's
hash is a polynomial over its words' hashes in wrapping uint64 arithmetic, finished with the splitmix64 mixer, and
the k bit positions come from double hashing (Kirsch & Mitzenmacher 2006).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow.parquet as pq

from gptcore.corpus import DOC_ID, TEXT
from gptcore.files import atomic_file

NGRAM = 8  # GPT-2's choice
_WORD = re.compile(r"[^\W_]+")  # letters and digits of any script
_POLY = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime: odd, so the polynomial mixes every word in
_ADD_CHUNK = 1 << 20  # n-grams hashed into bit positions at a time (bounds the (N, k) position array)


def normalized_words(text: str) -> list[str]:
    """Lowercase alphanumeric words: ``"Don't stop!"`` → ``["don", "t", "stop"]``."""
    return _WORD.findall(text.lower())


@lru_cache(maxsize=1 << 20)
def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over the output (uint64 arithmetic wraps)."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def ngram_hashes(words: Sequence[str], n: int = NGRAM) -> np.ndarray:
    """One uint64 hash per n-gram of consecutive words (empty when there are fewer than n words)."""
    count = len(words) - n + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    word_hashes = np.fromiter((_word_hash(w) for w in words), dtype=np.uint64, count=len(words))
    h = np.zeros(count, dtype=np.uint64)
    for offset in range(n):
        h = h * _POLY + word_hashes[offset:offset + count]
    return _mix(h)


@dataclass
class BloomFilter:
    """A set of uint64 hashes that answers "maybe present" or "certainly absent"."""

    bits: np.ndarray  # uint8, num_bits / 8 rounded up
    num_bits: int
    num_hashes: int
    capacity: int  # n-grams it was sized for
    false_positive_rate: float  # at capacity

    @classmethod
    def for_capacity(cls, capacity: int, false_positive_rate: float = 1e-3) -> "BloomFilter":
        """Optimal size for ``capacity`` items: m = -n ln p / (ln 2)², k = (m / n) ln 2."""
        if not 0.0 < false_positive_rate < 1.0:
            raise ValueError(f"false_positive_rate must be in (0, 1), got {false_positive_rate}")
        capacity = max(capacity, 1)
        num_bits = max(64, math.ceil(-capacity * math.log(false_positive_rate) / math.log(2) ** 2))
        num_hashes = max(1, round(num_bits / capacity * math.log(2)))
        return cls(np.zeros((num_bits + 7) // 8, dtype=np.uint8), num_bits, num_hashes, capacity, false_positive_rate)

    def _positions(self, hashes: np.ndarray) -> np.ndarray:
        """(N, k) bit positions: h1 + i * h2 mod m, with h2 odd and independent of h1."""
        h2 = _mix(hashes ^ np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
        steps = np.arange(self.num_hashes, dtype=np.uint64)
        return (hashes[:, None] + steps[None, :] * h2[:, None]) % np.uint64(self.num_bits)

    def add(self, hashes: np.ndarray) -> None:
        for start in range(0, hashes.size, _ADD_CHUNK):
            positions = self._positions(hashes[start:start + _ADD_CHUNK]).ravel()
            np.bitwise_or.at(self.bits, positions >> np.uint64(3),
                             (np.uint8(1) << (positions & np.uint64(7)).astype(np.uint8)))

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """Boolean per hash: True when it may have been added (false positives at about the stated rate)."""
        if hashes.size == 0:
            return np.zeros(0, dtype=bool)
        positions = self._positions(hashes)
        set_bits = (self.bits[positions >> np.uint64(3)] >> (positions & np.uint64(7)).astype(np.uint8)) & 1
        return set_bits.all(axis=1)

    def save(self, path: str | Path) -> Path:
        """Write atomically as ``.npz`` (bits + parameters), so a reader never sees half a filter."""
        path = Path(path)
        meta = {"num_bits": self.num_bits, "num_hashes": self.num_hashes, "capacity": self.capacity,
                "false_positive_rate": self.false_positive_rate}
        with atomic_file(path) as fh:
            np.savez(fh, bits=self.bits, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "BloomFilter":
        with np.load(path) as stored:
            meta = json.loads(stored["meta"].tobytes())
            return cls(stored["bits"], **meta)


def corpus_texts(parquet_files: Iterable[str | Path], keep: Callable[[str], bool] | None = None,
                 batch_rows: int = 1024) -> Iterator[str]:
    """The ``text`` column of corpus Parquet files, streamed in record batches (never a whole file in memory).

    ``keep(doc_id)`` selects documents, e.g. those in a tokens version's training split: the text a model saw.
    """
    for path in parquet_files:
        parquet = pq.ParquetFile(path)
        if not {DOC_ID, TEXT} <= set(parquet.schema_arrow.names):
            raise ValueError(f"{path} has no 'doc_id' and 'text' columns: pass the Parquet files of a corpus version")
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=[DOC_ID, TEXT]):
            for doc_id, text in zip(batch.column(DOC_ID).to_pylist(), batch.column(TEXT).to_pylist()):
                if text and (keep is None or keep(doc_id)):
                    yield text


def build_corpus_filter(parquet_files: Sequence[str | Path], n: int = NGRAM, false_positive_rate: float = 1e-3,
                        keep: Callable[[str], bool] | None = None) -> BloomFilter:
    """A Bloom filter of every n-gram in the (kept) corpus documents: one pass counts n-grams to size the filter,
    a second adds them."""
    total = sum(max(len(normalized_words(text)) - n + 1, 0) for text in corpus_texts(parquet_files, keep))
    bloom = BloomFilter.for_capacity(total, false_positive_rate)
    for text in corpus_texts(parquet_files, keep):
        bloom.add(ngram_hashes(normalized_words(text), n))
    return bloom


@dataclass(frozen=True)
class Overlap:
    """How much of an evaluation set the corpus contains."""

    examples: int
    examples_with_ngrams: int  # examples of at least n words (shorter ones cannot overlap)
    examples_with_overlap: int
    ngrams: int
    ngrams_found: int
    fraction_ngrams_found: float
    fraction_examples_with_overlap: float
    false_positive_rate: float

    def as_dict(self) -> dict:
        return asdict(self)


def example_texts(record: dict) -> list[str]:
    """The text fields of a task record (every string and list of strings, not the label). N-grams are taken
    within each field: joining a context to its candidate answers would make n-grams that exist nowhere."""
    texts: list[str] = []
    for key, value in record.items():
        if key == "label":
            continue
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, list):
            texts.extend(v for v in value if isinstance(v, str))
    return texts


def measure_overlap(bloom: BloomFilter, examples: Iterable[Sequence[str]], n: int = NGRAM) -> Overlap:
    """Fraction of the examples' n-grams found in the filter, and of examples with any n-gram found.

    Each example is a sequence of texts (its fields); n-grams never cross from one text to the next.
    """
    examples_seen = with_ngrams = with_overlap = ngrams = found = 0
    for texts in examples:
        if isinstance(texts, str):
            raise TypeError("measure_overlap takes one sequence of texts per example (e.g. example_texts(record))")
        hashes = np.concatenate([ngram_hashes(normalized_words(text), n) for text in texts] or
                                [np.empty(0, dtype=np.uint64)])
        hits = int(bloom.contains(hashes).sum())
        examples_seen += 1
        with_ngrams += int(hashes.size > 0)
        with_overlap += int(hits > 0)
        ngrams += hashes.size
        found += hits
    return Overlap(examples=examples_seen, examples_with_ngrams=with_ngrams, examples_with_overlap=with_overlap,
                   ngrams=ngrams, ngrams_found=found, fraction_ngrams_found=found / ngrams if ngrams else 0.0,
                   fraction_examples_with_overlap=with_overlap / examples_seen if examples_seen else 0.0,
                   false_positive_rate=bloom.false_positive_rate)
