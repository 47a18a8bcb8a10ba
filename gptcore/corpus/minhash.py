"""Text fingerprints for deduplication: a normalized-text hash (exact duplicates) and MinHash LSH band keys
(near duplicates), computed for whole batches of documents with NumPy.

The pipeline for one batch, all vectorized over the batch's concatenated UTF-8 bytes:

1. `normalize_for_hash` each text (NFKC, lowercase, punctuation → space, single spaces).
2. Each word 5-gram ("shingle") is hashed as a polynomial hash of its bytes, computed for every shingle at once
   from prefix sums (mod 2**64), then mixed with the splitmix64 finalizer and cut to 32 bits.
3. Each of the `num_perm` permutations is multiply-add-shift, the high 32 bits of ``(a·x + b) mod 2**64`` with
   random 64-bit `a`, `b` (Dietzfelbinger's strongly universal family for 32-bit keys: three vector operations, no
   division); the signature row is the minimum over the document's shingles. Not ``(a·x + b) mod (2**61 − 1)`` as
   datatrove: an exact 61-bit modular product needs 128-bit integers that NumPy lacks, and restricting `a`, `x` to
   32 bits to avoid overflow gave visibly correlated permutations (Jaccard estimates off by ±0.2 instead of ±0.05).
4. The `rows` values of each band are folded into one uint64 band key. Two documents that share a band key agree on
   all `rows` minima of that band: with 14 bands of 8 rows a pair with 5-gram Jaccard similarity s collides with
   probability 1 − (1 − s**8)**14 (0.92 at s = 0.8, 0.9996 at s = 0.9, 0.01 at s = 0.5).
"""
from __future__ import annotations

import functools
import hashlib
import string
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

_MERSENNE_61 = np.uint64((1 << 61) - 1)
_U64 = np.uint64
# Odd base of the shingle polynomial hash, and its inverse mod 2**64 (so a span's hash can be shifted back to
# position 0 by multiplying with base**-start).
_POLY_BASE = 0x100000001B3  # the FNV-64 prime: odd, well spread bits
_POLY_BASE_INV = pow(_POLY_BASE, -1, 1 << 64)
# Normalized texts are joined with this byte, which normalization never leaves inside a text (it is whitespace).
_DOC_SEPARATOR = 0x0A
_WORD_SEPARATOR = 0x20
# Texts per vectorized batch are capped by bytes so that the per-shingle arrays stay a few tens of MB.
_BATCH_BYTES = 4 << 20
# Shingles per signature block: block × num_perm × 8 bytes ≈ 7 MB at 112 permutations, cache-sized (measured
# fastest; 32k-shingle blocks were 2× slower).
_SHINGLE_BLOCK = 8_192

_ASCII_PUNCTUATION = {ord(c): " " for c in string.punctuation} | {c: " " for c in range(32)} | {127: " "}


@functools.cache
def _non_ascii_punctuation_mask() -> np.ndarray:
    """Boolean table over every code point: Unicode punctuation (P*), control characters (Cc), ASCII punctuation.

    Built on first use because most documents are ASCII and never need it. Punctuation and control characters are
    only assigned in planes 0 and 1, so only those are scanned (~30 ms instead of ~0.3 s for all 17 planes).
    """
    mask = np.zeros(sys.maxunicode + 1, dtype=bool)
    for code_point in range(0x20000):
        category = unicodedata.category(chr(code_point))
        if category[0] == "P" or category == "Cc":
            mask[code_point] = True
    mask[list(_ASCII_PUNCTUATION)] = True
    return mask


def normalize_for_hash(text: str) -> str:
    """The text both dedup fingerprints are computed on, so trivial variants of a document collapse to one string.

    In order: Unicode NFKC (full-width and compatibility forms fold to their plain letters), lowercase, every
    punctuation character (Unicode categories P*, plus ASCII ``string.punctuation`` and control characters) becomes a
    space, and runs of whitespace collapse to one space with none at the ends. Digits, letters with diacritics and
    non-ASCII symbols are kept. Replacing punctuation with a space (not deleting it) keeps "end.Start" two words.
    The categories come from the running Python's Unicode tables, so a newer Python may treat newly assigned
    characters differently.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    if text.isascii():
        text = text.translate(_ASCII_PUNCTUATION)
    else:
        # str.translate with a dict costs ~65 ns per non-ASCII character; a NumPy table lookup is ~10× faster.
        code_points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).copy()
        code_points[_non_ascii_punctuation_mask()[code_points]] = ord(" ")
        text = code_points.tobytes().decode("utf-32-le", "surrogatepass")
    return " ".join(text.split())


def text_hash(text: str) -> str:
    """Exact-duplicate key: 32-hex blake2b-128 of `normalize_for_hash(text)`."""
    return _hash_normalized(normalize_for_hash(text))


def _hash_normalized(normalized: str) -> str:
    return hashlib.blake2b(normalized.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class MinHashConfig:
    """MinHash LSH parameters. Defaults are FineWeb's: 112 permutations as 14 bands of 8 rows over word 5-grams,
    which catches pairs above ≈0.75 Jaccard similarity (threshold ≈ (1/14)**(1/8) = 0.72).

    Band keys are only comparable between documents fingerprinted with the same config (seed included).
    """

    num_perm: int = 112
    bands: int = 14
    rows: int = 8
    ngram: int = 5
    seed: int = 1

    def __post_init__(self) -> None:
        if self.bands * self.rows != self.num_perm:
            raise ValueError(f"MinHashConfig: bands × rows must equal num_perm, got {self.bands} × {self.rows} != {self.num_perm}")
        if self.ngram < 1:
            raise ValueError(f"MinHashConfig: ngram must be at least 1, got {self.ngram}")

    def as_metadata(self) -> dict[str, str]:
        """The config as string key/values, stored with a dedup index so a mismatched reader can refuse it."""
        return {f"minhash.{name}": str(getattr(self, name)) for name in ("num_perm", "bands", "rows", "ngram", "seed")}


@functools.cache
def _permutations(config: MinHashConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b) of each universal hash, shape (num_perm,), and one salt per band for the band key fold."""
    rng = np.random.default_rng(config.seed)
    a = rng.integers(0, 1 << 64, size=config.num_perm, dtype=np.uint64, endpoint=False)
    b = rng.integers(0, 1 << 64, size=config.num_perm, dtype=np.uint64, endpoint=False)
    band_salt = rng.integers(0, 1 << 63, size=config.bands, dtype=np.uint64)
    return a, b, band_salt


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer (wrapping uint64 arithmetic): spreads every input bit over all output bits."""
    values = values ^ (values >> _U64(30))
    values = values * _U64(0xBF58476D1CE4E5B9)
    values = values ^ (values >> _U64(27))
    values = values * _U64(0x94D049BB133111EB)
    return values ^ (values >> _U64(31))


def _shingle_hashes(normalized: Sequence[str], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes (as uint64) of every word n-gram of every text, and the text index of each, in text order.

    A text with fewer than `ngram` words (an empty one included) yields one shingle: the whole text.
    """
    joined = np.frombuffer("\n".join(normalized).encode("utf-8", "surrogatepass"), dtype=np.uint8)
    n_bytes = joined.size
    is_separator = (joined == _WORD_SEPARATOR) | (joined == _DOC_SEPARATOR)
    separators = np.flatnonzero(is_separator)
    # Word i spans [starts[i], ends[i]); empty texts become one empty "word" between two newlines.
    starts = np.concatenate(([0], separators + 1))
    ends = np.concatenate((separators, [n_bytes]))
    word_doc = np.concatenate(([0], np.cumsum(joined[separators] == _DOC_SEPARATOR)))

    # Prefix sums of byte·base**position; the hash of bytes [s, e) is (P[e] − P[s]) · base**−s (all mod 2**64).
    powers = np.empty(n_bytes + 1, dtype=np.uint64)
    powers[0] = 1
    np.cumprod(np.full(n_bytes, _POLY_BASE, dtype=np.uint64), out=powers[1:])
    inverse_powers = np.empty(n_bytes + 1, dtype=np.uint64)
    inverse_powers[0] = 1
    np.cumprod(np.full(n_bytes, _POLY_BASE_INV, dtype=np.uint64), out=inverse_powers[1:])
    prefix = np.zeros(n_bytes + 1, dtype=np.uint64)
    # +1 so a zero byte still contributes; the length is mixed in below so "a" and "a\0" differ too.
    np.cumsum((joined.astype(np.uint64) + _U64(1)) * powers[:-1], out=prefix[1:])

    n_docs = len(normalized)
    first_word = np.searchsorted(word_doc, np.arange(n_docs), side="left")
    words_per_doc = np.diff(np.append(first_word, word_doc.size))
    # Shingle k of a text starts at word k and ends at word k+ngram−1; short texts get one shingle of all words.
    shingles_per_doc = np.maximum(words_per_doc - (ngram - 1), 1)
    shingle_doc = np.repeat(np.arange(n_docs), shingles_per_doc)
    shingle_offsets = np.concatenate(([0], np.cumsum(shingles_per_doc)[:-1]))
    first_word_of_shingle = first_word[shingle_doc] + (np.arange(shingle_doc.size) - shingle_offsets[shingle_doc])
    last_word_of_shingle = np.minimum(first_word_of_shingle + (ngram - 1), (first_word + words_per_doc - 1)[shingle_doc])
    span_start = starts[first_word_of_shingle]
    span_end = ends[last_word_of_shingle]

    raw = (prefix[span_end] - prefix[span_start]) * inverse_powers[span_start]
    mixed = _splitmix64(raw ^ (span_end - span_start).astype(np.uint64) * _U64(0x9E3779B97F4A7C15))
    return mixed >> _U64(32), shingle_doc


def _signatures(shingles: np.ndarray, shingle_doc: np.ndarray, n_docs: int, config: MinHashConfig) -> np.ndarray:
    """MinHash signatures, shape (n_docs, num_perm) uint64, each value < 2**32."""
    a, b, _ = _permutations(config)
    a, b = a[:, None], b[:, None]
    signatures = np.full((config.num_perm, n_docs), np.iinfo(np.uint64).max, dtype=np.uint64)
    # Permutation-major (num_perm, S) blocks: the per-document minimum then runs along contiguous memory, ~7× faster
    # than reducing over rows of a (S, num_perm) block. One reused buffer avoids a fresh allocation per operation.
    buffer = np.empty((config.num_perm, min(_SHINGLE_BLOCK, shingles.size)), dtype=np.uint64)
    for block_start in range(0, shingles.size, _SHINGLE_BLOCK):
        x = shingles[block_start : block_start + _SHINGLE_BLOCK]
        hashed = buffer[:, : x.size]
        # multiply-add-shift: the high 32 bits of (a·x + b) mod 2**64, strongly universal for 32-bit x.
        np.multiply(a, x, out=hashed)
        hashed += b
        hashed >>= _U64(32)
        docs = shingle_doc[block_start : block_start + _SHINGLE_BLOCK]
        segment_starts = np.flatnonzero(np.diff(docs, prepend=-1))
        minima = np.minimum.reduceat(hashed, segment_starts, axis=1)
        segment_docs = docs[segment_starts]  # unique within a block: shingles are grouped by document
        signatures[:, segment_docs] = np.minimum(signatures[:, segment_docs], minima)
    return np.ascontiguousarray(signatures.T)


def _fold_bands(signatures: np.ndarray, config: MinHashConfig) -> np.ndarray:
    """(n, num_perm) signatures → (n, bands) uint64 keys, each a mixed fold of its band's rows and a per-band salt."""
    _, _, band_salt = _permutations(config)
    rows = signatures.reshape(signatures.shape[0], config.bands, config.rows)
    keys = np.broadcast_to(band_salt, rows.shape[:2]).copy()
    for row in range(config.rows):
        keys = _splitmix64(keys * _U64(0x9E3779B97F4A7C15) ^ rows[:, :, row])
    return keys


def _batches_by_bytes(normalized: Sequence[str]) -> list[slice]:
    batches, start, size = [], 0, 0
    for index, text in enumerate(normalized):
        size += len(text) + 1
        if size >= _BATCH_BYTES:
            batches.append(slice(start, index + 1))
            start, size = index + 1, 0
    if start < len(normalized) or not batches:
        batches.append(slice(start, len(normalized)))
    return batches


def _band_keys_normalized(normalized: Sequence[str], config: MinHashConfig) -> np.ndarray:
    keys = np.empty((len(normalized), config.bands), dtype=np.uint64)
    for batch in _batches_by_bytes(normalized):
        texts = normalized[batch]
        if not texts:
            continue
        shingles, shingle_doc = _shingle_hashes(texts, config.ngram)
        keys[batch] = _fold_bands(_signatures(shingles, shingle_doc, len(texts), config), config)
    return keys


def band_keys_many(texts: Sequence[str], config: MinHashConfig = MinHashConfig()) -> np.ndarray:
    """LSH band keys of many texts at once, shape (len(texts), bands) uint64. Much faster per text than `band_keys`."""
    return _band_keys_normalized([normalize_for_hash(text) for text in texts], config)


def band_keys(text: str, config: MinHashConfig = MinHashConfig()) -> np.ndarray:
    """LSH band keys of one text, shape (bands,) uint64: equal keys in any band mark a near-duplicate pair."""
    return band_keys_many([text], config)[0]


def bands_to_arrow(keys: np.ndarray) -> pa.FixedSizeListArray:
    """(n, bands) uint64 keys → the fixed_size_list<uint64> column `deduplicate` and the dedup index expect."""
    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    return pa.FixedSizeListArray.from_arrays(pa.array(keys.reshape(-1)), keys.shape[1])


def fingerprint_table(doc_ids: Sequence[str], texts: Sequence[str], config: MinHashConfig = MinHashConfig()) -> pa.Table:
    """Columns `doc_id`, `text_hash`, `bands` for `deduplicate`, normalizing each text once for both fingerprints."""
    if len(doc_ids) != len(texts):
        raise ValueError(f"fingerprint_table: {len(doc_ids)} doc_ids but {len(texts)} texts; pass one id per text")
    normalized = [normalize_for_hash(text) for text in texts]
    return pa.table(
        {
            "doc_id": pa.array(doc_ids, pa.string()),
            "text_hash": pa.array([_hash_normalized(text) for text in normalized], pa.string()),
            "bands": bands_to_arrow(_band_keys_normalized(normalized, config)),
        }
    )
