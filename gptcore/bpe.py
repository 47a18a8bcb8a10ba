"""GPT-2 style byte-level BPE: training on a text sample, and the checks a trained tokenizer must pass.

GPT-2 (Radford et al., 2019, §2.2) runs BPE on UTF-8 bytes: 256 byte tokens + 50,000 merges + ``<|endoftext|>``
= 50,257 tokens. Its pre-tokenization regex keeps merges inside letter runs, digit runs, punctuation runs and
contractions, and no unknown token exists because every byte has one. We train with Hugging Face ``tokenizers``
(its BPE trainer is native code) and save a standard ``tokenizer.json``.

Text that is not valid Unicode: a Python ``str`` may hold lone surrogates (U+D800..U+DFFF), which have no UTF-8 form
and so no bytes to tokenize. Training replaces them with U+FFFD (``replace_lone_surrogates``); callers encode
``replace_lone_surrogates(text)``; ``round_trip_failures`` reports a text holding them as a failure because no
tokenizer can give it back. Corpus Parquet holds valid UTF-8 only, so corpus documents never hit this. NUL and all
other code points round-trip like any character.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from gptcore.encoding import replace_lone_surrogates

END_OF_TEXT = "<|endoftext|>"
BYTE_ALPHABET_SIZE = 256
GPT2_VOCAB_SIZE = 50_257  # 256 bytes + 50,000 merges + <|endoftext|> (GPT-2 paper §2.2; gpt2 encoder.json)
DEFAULT_MIN_FREQUENCY = 2  # a pair seen once only memorizes the sample (subword-nmt's default too)

# The trainer holds each input text with per-byte alignment data (~90 bytes per byte of text were measured), so long
# documents are fed in pieces. A piece ends where a word character meets a space or line break: GPT-2's regex never
# matches across such a point and matches the rest the same way from there, so the pre-tokens are unchanged.
PIECE_CHARS = 1 << 16
_PIECE_END = re.compile(r"\w(?=[ \n])")


class BpeSampleTooSmall(ValueError):
    """The training sample has too few distinct mergeable pairs to reach the requested vocabulary size."""

    def __init__(self, vocab_size: int, reached: int, merges: int, n_special: int, min_frequency: int):
        self.vocab_size, self.reached, self.merges = vocab_size, reached, merges
        super().__init__(
            f"the training sample allowed only {merges} merges (a vocabulary of {reached} tokens with "
            f"{n_special} special token(s)), short of vocab_size={vocab_size} at min_frequency={min_frequency}: "
            f"train on more text (a larger sample_bytes), or ask for at most {merges} merges (vocab_size <= {reached})"
        )


def train_gpt2_bpe(
    texts: Iterable[str],
    vocab_size: int = GPT2_VOCAB_SIZE,
    special_tokens: Sequence[str] = (END_OF_TEXT,),
    min_frequency: int = DEFAULT_MIN_FREQUENCY,
    batch_size: int = 1000,
) -> Tokenizer:
    """Train a GPT-2 style byte-level BPE tokenizer of exactly ``vocab_size`` tokens on ``texts`` (streamed).

    Ids: 0..255 are the 256 byte symbols (ordered by ByteLevel's printable stand-in characters, not by byte value),
    then the merges in the order they were learned, then ``special_tokens`` in the given order (so ``<|endoftext|>``
    is 50,256 with the defaults, as in GPT-2). Documents longer than ``PIECE_CHARS`` are fed in pieces that leave
    their pre-tokens unchanged. Raises ``BpeSampleTooSmall`` when the sample cannot produce enough merges.
    """
    _check_special_tokens(special_tokens)
    learned_size = vocab_size - len(special_tokens)
    if learned_size < BYTE_ALPHABET_SIZE:
        raise ValueError(
            f"vocab_size={vocab_size} leaves no room for the 256 byte tokens and {len(special_tokens)} special "
            f"token(s); use vocab_size >= {BYTE_ALPHABET_SIZE + len(special_tokens)}"
        )
    tokenizer = Tokenizer(models.BPE())  # no unk_token: every byte has a token
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    # Special tokens are added after training: the trainer would give them the first ids, GPT-2 has them last.
    trainer = trainers.BpeTrainer(
        vocab_size=learned_size,
        min_frequency=min_frequency,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, even those the sample lacks
        special_tokens=[],
        show_progress=False,
    )
    pieces = (piece for text in texts for piece in text_pieces(replace_lone_surrogates(text)))
    tokenizer.train_from_iterator(text_batches(pieces, batch_size), trainer)
    reached = tokenizer.get_vocab_size(with_added_tokens=False)
    if reached < learned_size:
        raise BpeSampleTooSmall(vocab_size, reached + len(special_tokens), len(bpe_merges(tokenizer)),
                                len(special_tokens), min_frequency)
    add_special_tokens_last(tokenizer, special_tokens)
    return tokenizer


def text_batches(texts: Iterable[str], batch_size: int) -> Iterator[list[str]]:
    """Lists of up to ``batch_size`` texts: the trainer pre-tokenizes each list in parallel."""
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def text_pieces(text: str, max_chars: int = PIECE_CHARS) -> Iterator[str]:
    """``text`` cut into pieces of at most ``max_chars`` characters, each ending after a word character that a space
    or line break follows (a hard cut only inside a run of ``max_chars // 2`` characters without one)."""
    start = 0
    while len(text) - start > max_chars:
        end = start + max_chars
        last = None
        for last in _PIECE_END.finditer(text, start + max_chars // 2, end):
            pass
        if last is not None:
            end = last.end()
        yield text[start:end]
        start = end
    yield text[start:]


def add_special_tokens_last(tokenizer: Tokenizer, special_tokens: Sequence[str]) -> None:
    """Append ``special_tokens`` after the learned vocabulary, in order, and check they got the last ids."""
    first_id = tokenizer.get_vocab_size(with_added_tokens=True)
    for token in special_tokens:
        if tokenizer.token_to_id(token) is not None:
            raise ValueError(
                f"special token {token!r} is already a token of the trained vocabulary, so it cannot get an id of "
                f"its own; "
                f"choose a special token the pre-tokenizer splits apart, such as '<|name|>'"
            )
    tokenizer.add_special_tokens(list(special_tokens))
    ids = [tokenizer.token_to_id(token) for token in special_tokens]
    assert ids == list(range(first_id, first_id + len(special_tokens))), f"special token ids {ids} are not the last ids"


def _check_special_tokens(special_tokens: Sequence[str]) -> None:
    if isinstance(special_tokens, str):
        raise TypeError(f"special_tokens must be a sequence of strings, got the string {special_tokens!r}")
    if any(not token for token in special_tokens) or len(set(special_tokens)) != len(special_tokens):
        raise ValueError(f"special_tokens must be distinct non-empty strings, got {list(special_tokens)}")


def bpe_merges(tokenizer: Tokenizer) -> list[tuple[str, str]]:
    """The merges of a BPE tokenizer in rank order (older tokenizer.json files store them as 'a b' strings)."""
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    return [tuple(merge.split(" ", 1)) if isinstance(merge, str) else tuple(merge) for merge in merges]


def vocab_checksum(tokenizer: Tokenizer) -> str:
    """sha256 of the vocabulary (token per id), the merges in rank order and the added tokens: equal for equal
    tokenizers whatever the JSON formatting of the file they were saved to."""
    state = json.loads(tokenizer.to_str())
    model = state["model"]
    canonical = {
        "vocab": sorted([token_id, token] for token, token_id in model["vocab"].items()),
        "merges": [list(merge) for merge in bpe_merges(tokenizer)],
        "added_tokens": sorted([t["id"], t["content"], t["special"]] for t in state["added_tokens"]),
    }
    blob = json.dumps(canonical, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def bytes_per_token(
    tokenizer: Tokenizer, texts: Sequence[str], pretokenize: Callable[[str], str] | None = None
) -> float:
    """UTF-8 bytes of ``texts`` per token (higher = better compression). ``pretokenize`` is applied before encoding
    (GPT-1 style); the bytes counted are those of the original texts."""
    texts = [replace_lone_surrogates(text) for text in texts]
    n_bytes = sum(len(text.encode("utf-8")) for text in texts)
    inputs = [pretokenize(text) for text in texts] if pretokenize else texts
    n_tokens = sum(len(encoding.ids) for encoding in tokenizer.encode_batch(inputs, add_special_tokens=False))
    if n_tokens == 0:
        raise ValueError(f"bytes_per_token: the {len(texts)} text(s) encode to no tokens; pass non-empty texts")
    return n_bytes / n_tokens


def round_trip_failures(
    tokenizer: Tokenizer, texts: Sequence[str], pretokenize: Callable[[str], str] | None = None
) -> list[int]:
    """Indexes of ``texts`` where decode(encode(x)) != x; with ``pretokenize``, x is ``pretokenize(text)`` (GPT-1's
    pipeline is lossy by design, so it is checked on the normalized text). A text with lone surrogates always fails."""
    unencodable = {i for i, text in enumerate(texts) if replace_lone_surrogates(text) != text}
    valid = [i for i in range(len(texts)) if i not in unencodable]
    expected = [pretokenize(texts[i]) if pretokenize else texts[i] for i in valid]
    encodings = tokenizer.encode_batch(expected, add_special_tokens=False)
    decoded = tokenizer.decode_batch([e.ids for e in encodings], skip_special_tokens=False)
    return sorted(unencodable | {i for i, want, got in zip(valid, expected, decoded) if want != got})
