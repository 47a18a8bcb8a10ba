"""GPT-1 style BPE: 40,000 merges over lowercased spaCy words with ``</w>`` end-of-word markers.

Vocabulary arithmetic. GPT-1's ``encoder_bpe_40000.json`` has 40,478 entries = 478 base symbols + 40,000 merges and
no special tokens (fine-tuning appended ``_start_``, ``_delimiter_``, ``_classify_`` later). Base symbols are every
character of the sample plus ``c</w>`` for every character ``c`` that ends a word; BooksCorpus gave 478. So the size
here is ``base symbols of the sample + merges + special tokens``: 40,479 on a BooksCorpus-like alphabet with the
default ``<|endoftext|>`` (tokenize separates documents with it), 40,478 with ``special_tokens=()``.

Characters missing from the training sample have no token and are dropped at encoding (GPT-1 mapped them to id 0).
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from gptcore.bpe import (
    DEFAULT_MIN_FREQUENCY,
    END_OF_TEXT,
    BpeSampleTooSmall,
    add_special_tokens_last,
    bpe_merges,
    replace_lone_surrogates,
    text_batches,
    text_pieces,
)
from gptcore.gpt1_text import gpt1_pretokenize_many

END_OF_WORD = "</w>"
GPT1_MERGES = 40_000  # GPT-1 paper §4.1: "a bytepair encoding (BPE) vocabulary with 40,000 merges"
# gpt1_pretokenize joins words with single spaces; splitting on " " alone keeps the word "\n" (whitespace splitting
# would drop line breaks, which GPT-1 encoded as "\n</w>").
_WORDS = pre_tokenizers.Split(" ", behavior="removed")
_CHUNK_CHARS = 1 << 20  # the word counts are fed back to the trainer as text chunks of about this size


def train_gpt1_bpe(
    texts: Iterable[str],
    merges: int = GPT1_MERGES,
    special_tokens: Sequence[str] = (END_OF_TEXT,),
    min_frequency: int = DEFAULT_MIN_FREQUENCY,
) -> Tokenizer:
    """Train a GPT-1 style tokenizer: ``merges`` merges on ``gpt1_pretokenize``-d ``texts`` (streamed).

    Encode with ``tokenizer.encode(gpt1_pretokenize(text))``. Raises ``BpeSampleTooSmall`` when the sample has fewer
    than ``merges`` pairs seen at least ``min_frequency`` times.
    """
    if merges < 0:
        raise ValueError(f"merges must be >= 0, got {merges}")
    word_counts = Counter[str]()
    # Long documents go to spaCy in pieces cut before a space or line break (a cut before a line break loses that
    # one "\n" word, as standardization strips the piece; a negligible change to the counts).
    pieces = (piece for text in texts for piece in text_pieces(replace_lone_surrogates(text)))
    for words in gpt1_pretokenize_many(pieces):
        word_counts.update(words.split(" "))
    word_counts.pop("", None)  # an empty document pre-tokenizes to ""
    base_symbols = _base_symbols(word_counts)
    word_final = sorted(symbol for symbol in base_symbols if symbol.endswith(END_OF_WORD))
    # The trainer gives "c</w>" symbols ids in hash-map order, and ties between equally frequent pairs are broken by
    # id: listing them as the trainer's special tokens fixes their ids, which makes training deterministic.
    trainer = trainers.BpeTrainer(
        vocab_size=len(base_symbols) + merges,
        min_frequency=min_frequency,
        end_of_word_suffix=END_OF_WORD,
        special_tokens=word_final,
        show_progress=False,
    )
    trained = Tokenizer(models.BPE(end_of_word_suffix=END_OF_WORD))
    trained.pre_tokenizer = _WORDS
    trained.train_from_iterator(text_batches(_word_count_text(word_counts), batch_size=8), trainer)
    reached = trained.get_vocab_size(with_added_tokens=False)
    if reached < len(base_symbols) + merges:
        raise BpeSampleTooSmall(len(base_symbols) + merges + len(special_tokens), reached + len(special_tokens),
                                len(bpe_merges(trained)), len(special_tokens), min_frequency)
    tokenizer = _gpt1_tokenizer(trained, n_base=len(base_symbols))
    add_special_tokens_last(tokenizer, special_tokens)
    return tokenizer


def _gpt1_tokenizer(trained: Tokenizer, n_base: int) -> Tokenizer:
    """The trained BPE laid out like GPT-1's encoder (characters, then ``c</w>`` symbols, then merges in order),
    without the trainer's special tokens, splitting on spaces and decoding ``</w>`` to a space."""
    model = json.loads(trained.to_str())["model"]
    by_id = sorted(model["vocab"], key=model["vocab"].get)
    base = sorted(by_id[:n_base], key=lambda symbol: (symbol.endswith(END_OF_WORD), symbol))
    vocab = {token: token_id for token_id, token in enumerate(base + by_id[n_base:])}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=bpe_merges(trained), end_of_word_suffix=END_OF_WORD))
    tokenizer.pre_tokenizer = _WORDS
    tokenizer.decoder = decoders.BPEDecoder(suffix=END_OF_WORD)
    return tokenizer


def _base_symbols(word_counts: Counter[str]) -> set[str]:
    """What the trainer starts from: every character, and ``c</w>`` for each character that ends a word."""
    symbols: set[str] = set()
    for word in word_counts:
        symbols.update(word)
        symbols.add(word[-1] + END_OF_WORD)
    return symbols


def _word_count_text(word_counts: Counter[str]) -> Iterator[str]:
    """Text chunks in which each word appears as often as it was counted: the trainer learns from text, not from
    counts, and this replays the sample's words without keeping its pre-tokenized text."""
    pieces: list[str] = []
    size = 0
    for word, count in word_counts.items():
        per_piece = max(1, _CHUNK_CHARS // (len(word) + 1))
        while count > 0:
            repeat = min(count, per_piece)
            pieces.append((word + " ") * repeat)
            size += repeat * (len(word) + 1)
            count -= repeat
            if size >= _CHUNK_CHARS:
                yield "".join(pieces)
                pieces, size = [], 0
    if pieces:
        yield "".join(pieces)
