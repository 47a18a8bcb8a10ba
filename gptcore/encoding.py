"""Fast text → token ids for a trained Hugging Face `tokenizer.json`, with ids identical to `tokenizers`.

A GPT-2-style byte-level BPE (ByteLevel pre-tokenizer with GPT-2's regex, BPE model, no normalizer) is rebuilt as a
tiktoken `Encoding`, which encodes the same text to the same ids several times faster. tiktoken's algorithm differs
from Hugging Face's in two ways, so the conversion is only done when neither can change a result:

- tiktoken merges the adjacent pair whose *concatenation* has the lowest rank, and takes a whole pre-token that is in
  the vocabulary as one token; Hugging Face applies the *listed merges* in order. They agree when the ranks are the
  merge order, every merged token comes from exactly one merge, and every token's own bytes BPE-encode to that token.
  `load_encoder` checks all three on the file; a vocabulary trained by `tokenizers` passes them.
- The ids must equal the ranks: the trainer numbers merged tokens in merge order, which is checked too.

Anything else (GPT-1 style `</w>` vocabularies, normalizers, custom pre-tokenizers, hand-edited files) is served by
`tokenizers` itself behind the same interface, and `fallback_reason` says why.

Behaviour both backends share, on purpose:
- Special tokens written in document text (e.g. a literal "<|endoftext|>") are encoded as ordinary text; a caller
  separates documents by inserting `eot_id` itself. A corpus page quoting the marker cannot forge a boundary.
- Lone surrogates (possible in a Python str, impossible in UTF-8) are replaced by U+FFFD before encoding, exactly as
  tiktoken does; surrogate pairs are joined into the character they spell. Such text does not round-trip.
- No truncation, padding or post-processor tokens: `encode` returns the ids of the text and nothing else.
"""
from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, Protocol

import tiktoken
from tokenizers import Tokenizer

EOT_TOKEN = "<|endoftext|>"
TOKENIZER_FILE = "tokenizer.json"  # its name in a tokenizer version and in a finetune run folder

# GPT-2's pre-tokenization regex, in the equivalent form tiktoken ships for GPT-2 (r50k_base): possessive quantifiers
# and `\s++$` in place of the trailing `\s+` only avoid backtracking, the pieces are the same.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

Backend = Literal["auto", "tiktoken", "huggingface"]


class Encoder(Protocol):
    """A tokenizer, whichever library does the work: the one interface tokenizing, fine-tuning and evaluation use."""

    kind: str  # "tiktoken" or "huggingface"
    vocab_size: int  # ids are < vocab_size
    eot_id: int  # id of the end-of-text token, inserted between documents by the caller
    fallback_reason: str | None  # why tiktoken could not serve this tokenizer; None when it does

    def encode(self, text: str) -> list[int]: ...

    def encode_batch(self, texts: list[str], num_threads: int = 2) -> list[list[int]]: ...

    def decode(self, ids: list[int]) -> str: ...


@dataclass
class TiktokenEncoder:
    """A byte-level BPE served by tiktoken; ids equal to the `tokenizer.json` it was built from."""

    encoding: tiktoken.Encoding
    vocab_size: int
    eot_id: int
    fallback_reason: None = None
    kind: str = "tiktoken"

    def encode(self, text: str) -> list[int]:
        # encode_ordinary: special-token text is ordinary text; tiktoken replaces lone surrogates by U+FFFD itself.
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: list[str], num_threads: int = 2) -> list[list[int]]:
        if num_threads <= 1 or len(texts) < 2:
            return self._encode_all(texts)
        # tiktoken's Rust core releases the GIL, so threads scale across cores. Each thread takes a run of texts
        # rather than one text per future (tiktoken's own encode_ordinary_batch): per-text futures cost more than
        # encoding a short paragraph.
        run = max(1, math.ceil(len(texts) / (num_threads * 8)))
        runs = [texts[start:start + run] for start in range(0, len(texts), run)]
        with ThreadPoolExecutor(num_threads) as pool:
            return [ids for encoded_run in pool.map(self._encode_all, runs) for ids in encoded_run]

    def _encode_all(self, texts: list[str]) -> list[list[int]]:
        return [self.encoding.encode_ordinary(text) for text in texts]

    def decode(self, ids: list[int]) -> str:
        return self.encoding.decode(ids)


@dataclass
class HuggingFaceEncoder:
    """Any `tokenizer.json`, served by `tokenizers`; used when tiktoken cannot give identical ids."""

    tokenizer: Tokenizer
    vocab_size: int
    eot_id: int
    fallback_reason: str
    kind: str = "huggingface"

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text], num_threads=1)[0]

    def encode_batch(self, texts: list[str], num_threads: int = 2) -> list[list[int]]:
        """Encode texts; with num_threads > 1 `tokenizers` uses its own Rayon pool, whose size is fixed per process
        (RAYON_NUM_THREADS, default all cores) and cannot be chosen per call."""
        try:
            return self._encode_batch(texts, num_threads)
        except TypeError:
            # A lone surrogate cannot cross into Rust as UTF-8: replace it as tiktoken does, then retry.
            if not all(isinstance(text, str) for text in texts):
                raise
            return self._encode_batch([replace_lone_surrogates(text) for text in texts], num_threads)

    def _encode_batch(self, texts: list[str], num_threads: int) -> list[list[int]]:
        if num_threads <= 1:
            return [self.tokenizer.encode(text, add_special_tokens=False).ids for text in texts]
        return [encoding.ids for encoding in self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)


def replace_lone_surrogates(text: str) -> str:
    """Replace unpaired UTF-16 surrogates with U+FFFD and join paired ones, the way tiktoken does."""
    if text.isascii():
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def load_encoder(tokenizer_json_path: str | Path, backend: Backend = "auto", eot_token: str = EOT_TOKEN) -> Encoder:
    """Load a `tokenizer.json` as the fastest encoder that gives the same ids as `tokenizers`.

    backend="auto" picks tiktoken when the file is a GPT-2-style byte-level BPE that tiktoken reproduces exactly, and
    `tokenizers` otherwise; "tiktoken" raises ValueError (with the reason) instead of falling back; "huggingface"
    always uses `tokenizers`.
    """
    path = Path(tokenizer_json_path)
    if backend not in ("auto", "tiktoken", "huggingface"):
        raise ValueError(f"backend must be 'auto', 'tiktoken' or 'huggingface', got {backend!r}")
    tokenizer = Tokenizer.from_file(str(path))
    eot_id = tokenizer.token_to_id(eot_token)
    if eot_id is None:
        raise ValueError(f"{path}: the tokenizer has no {eot_token!r} token; train it with that special token "
                         f"or pass eot_token= the token that separates documents")
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

    reason = "backend='huggingface' was requested"
    if backend != "huggingface":
        spec = json.loads(path.read_text(encoding="utf-8"))
        built = _tiktoken_encoding(spec, tokenizer, name=path.parent.name or path.stem)
        if isinstance(built, tiktoken.Encoding):
            if built.n_vocab != vocab_size:  # guarded by the contiguity check; a mismatch here is a bug
                raise AssertionError(f"{path}: tiktoken vocabulary {built.n_vocab} != tokenizers {vocab_size}")
            return TiktokenEncoder(encoding=built, vocab_size=vocab_size, eot_id=eot_id)
        reason = built
        if backend == "tiktoken":
            raise ValueError(f"{path}: tiktoken cannot reproduce this tokenizer's ids: {reason}")

    # Same contract as the tiktoken path: special-token text in documents is ordinary text, nothing is cut or added.
    tokenizer.encode_special_tokens = True
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return HuggingFaceEncoder(tokenizer=tokenizer, vocab_size=vocab_size, eot_id=eot_id, fallback_reason=reason)


@lru_cache(maxsize=1)
def byte_level_alphabet() -> dict[str, int]:
    """GPT-2's `bytes_to_unicode` table inverted: the printable character that stands for each byte → the byte."""
    byte_values = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    code_points = list(byte_values)  # printable bytes stand for themselves
    next_free = 256
    for byte in range(256):
        if byte not in byte_values:  # control and space bytes get the next characters past U+00FF, in order
            byte_values.append(byte)
            code_points.append(next_free)
            next_free += 1
    return {chr(code_point): byte for byte, code_point in zip(byte_values, code_points)}


def _tiktoken_encoding(spec: dict, tokenizer: Tokenizer, name: str) -> tiktoken.Encoding | str:
    """The tiktoken Encoding equivalent to a parsed `tokenizer.json`, or the reason there is none."""
    reason = _unsupported_pipeline(spec)
    if reason:
        return reason

    added = spec.get("added_tokens") or []
    ordinary_added = [token["content"] for token in added if not token.get("special")]
    if ordinary_added:
        # tokenizers matches non-special added tokens inside text; tiktoken's ordinary encoding never would.
        return f"non-special added tokens {ordinary_added[:3]} are matched in text"
    special_tokens = {token["content"]: token["id"] for token in added}

    alphabet = byte_level_alphabet()
    vocab: dict[str, int] = spec["model"]["vocab"]
    ranks: dict[bytes, int] = {}
    for token, token_id in vocab.items():
        if token in special_tokens:
            continue
        if any(char not in alphabet for char in token):
            return f"vocabulary entry {token!r} is not byte-level"
        ranks[bytes(alphabet[char] for char in token)] = token_id
    single_bytes = {token for token in ranks if len(token) == 1}
    if len(single_bytes) != 256:
        return f"only {len(single_bytes)} of the 256 byte tokens are in the vocabulary"

    reason = _merge_order_problem(spec["model"]["merges"], vocab, set(vocab) - set(special_tokens), tokenizer)
    if reason:
        return reason

    ids = sorted([*ranks.values(), *special_tokens.values()])
    if ids != list(range(len(ids))):
        return "token ids are not the contiguous range 0..vocab_size-1"
    return tiktoken.Encoding(name, pat_str=GPT2_SPLIT_PATTERN, mergeable_ranks=ranks, special_tokens=special_tokens)


def _unsupported_pipeline(spec: dict) -> str | None:
    """Why the normalizer / pre-tokenizer / model / decoder differ from GPT-2's, or None when they match."""
    if spec.get("normalizer") is not None:
        return f"it has a normalizer ({spec['normalizer'].get('type')})"
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") != "ByteLevel":
        return f"its pre-tokenizer is {pre.get('type')}, not ByteLevel"
    if pre.get("add_prefix_space") or not pre.get("use_regex", True):
        return "its ByteLevel pre-tokenizer adds a prefix space or does not split with GPT-2's regex"
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        return f"its model is {model.get('type')}, not BPE"
    for option in ("dropout", "continuing_subword_prefix", "end_of_word_suffix", "byte_fallback"):
        if model.get(option):
            return f"its BPE model sets {option}={model[option]!r}"
    decoder = spec.get("decoder") or {}
    if decoder.get("type") != "ByteLevel":
        return f"its decoder is {decoder.get('type')}, not ByteLevel"
    return None


def _merge_order_problem(merges: list, vocab: dict[str, int], ordinary: set[str], tokenizer: Tokenizer) -> str | None:
    """Check that tiktoken's rank-of-concatenation BPE makes the same choices as the listed merges.

    Holds when (1) each merged token comes from exactly one merge and every multi-character token from some merge,
    (2) ids grow with merge order, so rank = merge priority = id, and (3) each token's own characters encode to that
    token under the merges (tiktoken takes a whole pre-token found in the vocabulary as one token).
    """
    results: list[str] = []
    for merge in merges:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        results.append(left + right)
    multi_char = {token for token in ordinary if len(token) > 1}
    if len(set(results)) != len(results) or set(results) != multi_char:
        return "the merges and the multi-character vocabulary entries are not one-to-one"
    merge_ids = [vocab[token] for token in results]
    if any(later <= earlier for earlier, later in zip(merge_ids, merge_ids[1:])):
        return "token ids are not in merge order"
    model = tokenizer.model
    for token in results:
        pieces = model.tokenize(token)
        if len(pieces) != 1:
            return f"vocabulary entry {token!r} is not reached by its own merges"
    return None
