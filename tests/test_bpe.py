"""BPE training (GPT-2 byte-level and GPT-1 style), the corpus sample it trains on, and the tokenizer checks."""
from __future__ import annotations

import random
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer
from tokenizers.pre_tokenizers import ByteLevel

from gptcore.bpe import (
    END_OF_TEXT,
    BpeSampleTooSmall,
    bpe_merges,
    bytes_per_token,
    replace_lone_surrogates,
    round_trip_failures,
    text_pieces,
    train_gpt2_bpe,
    vocab_checksum,
)
from gptcore.bpe_gpt1 import END_OF_WORD, train_gpt1_bpe
from gptcore.bpe_sample import SampleStats, is_holdout, iter_corpus_texts
from gptcore.gpt1_text import gpt1_pretokenize, text_standardize

SMALL_VOCAB = 256 + 300 + 1  # bytes + 300 merges + <|endoftext|>
_GPT2_SPLIT = ByteLevel(add_prefix_space=False, use_regex=True)

_SUBJECTS = ["The quick fox", "A tired engineer", "My neighbour's cat", "Élodie", "The committee", "Our old radio",
             "Every student", "The river", "Günther", "A small café", "Nobody", "The weather in Zürich"]
_VERBS = ["jumps over", "writes about", "remembers", "dislikes", "repairs", "paints", "counts", "forgets",
          "sings to", "argues with", "waits for", "measures"]
_OBJECTS = ["the lazy dog", "a broken bicycle", "3.14 apples", "the 1999 election", "twenty-two letters",
            "the northern lights", "an unfinished novel", "the kitchen table", "naïve questions", "42 tokens",
            "the last train home", "a jar of honey"]
_ADVERBS = ["quietly", "yesterday", "with great enthusiasm", "before breakfast", "in Copenhagen", "reluctantly",
            "every Tuesday", "without looking", "at midnight", "under the bridge", "for no reason", "slowly"]
_ENDINGS = [".", "!", "?", "...", " — really.", ", again.", " (twice).", "; then sleeps.", ": 日本語も.",
            " 🙂."]


def tiny_corpus(n_sentences: int = 600, seed: int = 7) -> list[str]:
    """Varied English-like sentences grouped into small documents, with some non-ASCII text."""
    rng = random.Random(seed)
    sentences = [f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_ADVERBS)}, "
                 f"{rng.randrange(10_000)} times{rng.choice(_ENDINGS)}" for _ in range(n_sentences)]
    return [" ".join(sentences[i:i + 3]) + "\n" + " ".join(sentences[i + 3:i + 5]) for i in range(0, n_sentences, 5)]


@pytest.fixture(scope="module")
def gpt2_tokenizer() -> Tokenizer:
    return train_gpt2_bpe(tiny_corpus(), vocab_size=SMALL_VOCAB)


@pytest.fixture(scope="module")
def gpt1_tokenizer() -> Tokenizer:
    return train_gpt1_bpe(tiny_corpus(), merges=200)


# --- GPT-2 style --------------------------------------------------------------------------------------------------

def test_gpt2_bpe_has_exactly_the_requested_vocab_size_with_endoftext_as_the_last_id(gpt2_tokenizer):
    assert gpt2_tokenizer.get_vocab_size() == SMALL_VOCAB
    assert gpt2_tokenizer.token_to_id(END_OF_TEXT) == SMALL_VOCAB - 1
    assert len(bpe_merges(gpt2_tokenizer)) == SMALL_VOCAB - 256 - 1


def test_gpt2_bpe_has_a_token_for_every_byte_even_bytes_missing_from_the_sample(gpt2_tokenizer):
    vocab = gpt2_tokenizer.get_vocab()
    assert all(symbol in vocab for symbol in ByteLevel.alphabet())
    assert len(ByteLevel.alphabet()) == 256


def test_gpt2_bpe_special_tokens_follow_the_learned_vocabulary_in_the_given_order():
    tokenizer = train_gpt2_bpe(tiny_corpus(), vocab_size=SMALL_VOCAB + 1, special_tokens=("<|pad|>", END_OF_TEXT))
    assert tokenizer.get_vocab_size() == SMALL_VOCAB + 1
    assert [tokenizer.token_to_id("<|pad|>"), tokenizer.token_to_id(END_OF_TEXT)] == [SMALL_VOCAB - 1, SMALL_VOCAB]


@pytest.mark.parametrize("text", [
    "plain ASCII, with punctuation!?",
    "emoji 🙂👍🏽 and a family 👨‍👩‍👧",
    "中文和日本語のテキスト、한국어",
    "NUL\x00inside and at the end\x00",
    "new\nlines\r\n\n\ntabs\t\tand   spaces  ",
    "bytes the sample never saw: \x7f\x01 Ω ∑ क्षि ﷽ \U0010fffd",
    "",
    " leading space and <|endoftext|> written as text",
])
def test_gpt2_bpe_decode_of_encode_gives_the_text_back(gpt2_tokenizer, text):
    assert round_trip_failures(gpt2_tokenizer, [text]) == []


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_gpt2_bpe_round_trip_is_lossless_for_any_unicode_text(gpt2_tokenizer, text):
    assert gpt2_tokenizer.decode(gpt2_tokenizer.encode(text).ids, skip_special_tokens=False) == text


_NOT_SPACE = st.characters(exclude_categories=("Zs", "Zl", "Zp", "Cc", "Cs"))
_WORD = st.text(alphabet=st.sampled_from("abZ1.'é日🙂_-") | _NOT_SPACE, min_size=1, max_size=8)
_SPACING = st.sampled_from([" ", "\n", "  ", "\n\n", " \n ", "\t", "\r\n", "\u00a0"])
_TEXT_WITH_SPACES = st.lists(st.tuples(_WORD, _SPACING), max_size=60).map(lambda ws: "".join(w + s for w, s in ws))


@settings(max_examples=300, deadline=None)
@given(text=_TEXT_WITH_SPACES, max_chars=st.integers(min_value=2, max_value=60))
def test_long_texts_are_cut_into_pieces_without_changing_gpt2_pre_tokens(text, max_chars):
    pieces = list(text_pieces(text, max_chars))
    assert "".join(pieces) == text and all(len(piece) <= max_chars for piece in pieces)
    cuts = list(zip(pieces, pieces[1:]))
    if all(re.fullmatch(r"\w", left[-1]) and right[0] in " \n" for left, right in cuts):  # no hard cut was needed
        whole = [token for token, _ in _GPT2_SPLIT.pre_tokenize_str(text)]
        assert [token for piece in pieces for token, _ in _GPT2_SPLIT.pre_tokenize_str(piece)] == whole


def test_lone_surrogates_are_trained_as_replacement_characters_and_reported_as_round_trip_failures(gpt2_tokenizer):
    texts = ["fine text", "half an emoji \ud83d here", "also fine"]
    assert replace_lone_surrogates(texts[1]) == "half an emoji \ufffd here"
    assert round_trip_failures(gpt2_tokenizer, texts) == [1]
    assert train_gpt2_bpe(tiny_corpus() + texts, vocab_size=SMALL_VOCAB).get_vocab_size() == SMALL_VOCAB


def test_tokenizer_json_saves_and_reloads_identically(gpt2_tokenizer, tmp_path):
    path = tmp_path / "tokenizer.json"
    gpt2_tokenizer.save(str(path))
    reloaded = Tokenizer.from_file(str(path))
    text = "Günther paints the northern lights 🙂\x00\n"
    assert reloaded.encode(text).ids == gpt2_tokenizer.encode(text).ids
    assert reloaded.get_vocab() == gpt2_tokenizer.get_vocab()
    assert vocab_checksum(reloaded) == vocab_checksum(gpt2_tokenizer)


def test_vocab_checksum_is_stable_across_trainings_and_differs_between_vocabularies(gpt2_tokenizer):
    again = train_gpt2_bpe(tiny_corpus(), vocab_size=SMALL_VOCAB)
    smaller = train_gpt2_bpe(tiny_corpus(), vocab_size=SMALL_VOCAB - 1)
    assert vocab_checksum(again) == vocab_checksum(gpt2_tokenizer)
    assert vocab_checksum(smaller) != vocab_checksum(gpt2_tokenizer)


def test_too_small_a_sample_raises_saying_how_large_a_vocabulary_it_allows():
    texts = ["the cat sat on the mat", "the cat sat on the hat"]
    with pytest.raises(BpeSampleTooSmall, match=r"sample_bytes.*vocab_size <= ") as caught:
        train_gpt2_bpe(texts, vocab_size=1000)
    reachable = caught.value.reached
    assert train_gpt2_bpe(texts, vocab_size=reachable).get_vocab_size() == reachable


def test_a_special_token_the_sample_also_produced_is_refused():
    with pytest.raises(ValueError, match="already a token of the trained vocabulary"):
        train_gpt2_bpe(tiny_corpus(), vocab_size=SMALL_VOCAB, special_tokens=(".",))


def test_vocab_size_without_room_for_the_bytes_is_refused():
    with pytest.raises(ValueError, match="256 byte tokens"):
        train_gpt2_bpe(tiny_corpus(), vocab_size=200)


def test_bytes_per_token_is_above_one_byte_once_merges_are_learned(gpt2_tokenizer):
    held_out = tiny_corpus(n_sentences=50, seed=99)
    assert 1.5 < bytes_per_token(gpt2_tokenizer, held_out) < 10


# --- GPT-1 style --------------------------------------------------------------------------------------------------

def test_text_standardize_reproduces_gpt1_punctuation_and_whitespace_rules():
    assert text_standardize("Wait—what…it´s  here") == "Wait - what...it's here"
    assert text_standardize("a--b (c) [d]{e}|f_g~h") == "a -- b ( c ) [ d ] { e } | f _ g ~ h"
    assert text_standardize("  one\n\n  two \t three  ") == "one \n two three"


def test_gpt1_pretokenize_lowercases_spacy_words_and_keeps_line_breaks_as_words():
    assert gpt1_pretokenize("Hello, World! Don't panic.\n\nNew line") == "hello , world ! do n't panic . \n new line"


def test_gpt1_pretokenize_repairs_mojibake_with_ftfy():
    assert gpt1_pretokenize("cafÃ©") == "café"


def test_gpt1_bpe_learns_the_requested_merges_with_end_of_word_markers(gpt1_tokenizer):
    vocab = gpt1_tokenizer.get_vocab()
    base = [token for token in vocab if len(token.removesuffix(END_OF_WORD)) == 1]
    assert len(bpe_merges(gpt1_tokenizer)) == 200
    assert gpt1_tokenizer.get_vocab_size() == len(base) + 200 + 1
    assert gpt1_tokenizer.token_to_id(END_OF_TEXT) == gpt1_tokenizer.get_vocab_size() - 1
    tokens = gpt1_tokenizer.encode(gpt1_pretokenize("The quick fox measures the river.")).tokens
    assert tokens[-1] == "." + END_OF_WORD and "the" + END_OF_WORD in tokens


def test_gpt1_bpe_decodes_to_the_normalized_text_not_the_original(gpt1_tokenizer):
    texts = ["Élodie paints 3.14 apples — really.\nThe Committee waits…", "Nobody forgets the lazy dog!"]
    assert round_trip_failures(gpt1_tokenizer, texts, pretokenize=gpt1_pretokenize) == []
    decoded = gpt1_tokenizer.decode(gpt1_tokenizer.encode(gpt1_pretokenize(texts[1])).ids)
    assert decoded == "nobody forgets the lazy dog !"
    assert round_trip_failures(gpt1_tokenizer, texts) == [0, 1]


def test_gpt1_bpe_training_is_deterministic(gpt1_tokenizer):
    assert vocab_checksum(train_gpt1_bpe(tiny_corpus(), merges=200)) == vocab_checksum(gpt1_tokenizer)


def test_gpt1_bpe_saved_tokenizer_reloads_and_encodes_the_same(gpt1_tokenizer, tmp_path):
    gpt1_tokenizer.save(str(tmp_path / "tokenizer.json"))
    reloaded = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    words = gpt1_pretokenize("A small café sings to the kitchen table.\nAgain!")
    assert reloaded.encode(words).ids == gpt1_tokenizer.encode(words).ids
    assert reloaded.decode(reloaded.encode(words).ids) == words


def test_gpt1_bpe_too_small_a_sample_raises():
    with pytest.raises(BpeSampleTooSmall, match="merges"):
        train_gpt1_bpe(["the cat sat on the mat"], merges=500)


# --- the corpus sample ----------------------------------------------------------------------------------------------

def write_corpus(folder, texts_per_file: list[list[str]]) -> list:
    """Corpus-like part files with ``doc_id`` and ``text`` columns; doc ids are unique across files."""
    paths = []
    for file_index, texts in enumerate(texts_per_file):
        doc_ids = [f"{file_index:04x}{row:012x}" for row in range(len(texts))]
        path = folder / f"part-{file_index:05d}.parquet"
        pq.write_table(pa.table({"doc_id": doc_ids, "text": texts, "source": ["text"] * len(texts)}), path,
                       compression="zstd")
        paths.append(path)
    return paths


@pytest.fixture
def corpus_files(tmp_path):
    docs = tiny_corpus(n_sentences=2000)  # 400 documents
    return write_corpus(tmp_path, [docs[:150], docs[150:300], docs[300:]])


def test_held_out_documents_are_never_in_the_training_sample(corpus_files):
    train = list(iter_corpus_texts(corpus_files, max_bytes=10**9, holdout_fraction=0.1))
    holdout = list(iter_corpus_texts(corpus_files, max_bytes=10**9, split="holdout", holdout_fraction=0.1))
    everything = [t for path in corpus_files for t in pq.read_table(path).column("text").to_pylist()]
    assert 10 < len(holdout) < 80
    assert len(train) + len(holdout) == len(everything)
    assert sorted(train + holdout) == sorted(everything)
    # tiny_corpus repeats no document, so disjoint texts mean disjoint documents
    assert not set(train) & set(holdout)


def test_sample_is_deterministic_and_independent_of_the_order_files_are_listed(corpus_files):
    first = list(iter_corpus_texts(corpus_files, max_bytes=20_000))
    again = list(iter_corpus_texts(list(reversed(corpus_files)), max_bytes=20_000))
    assert first == again


def test_sample_stops_at_the_byte_budget_cutting_the_last_document_on_a_character_boundary(tmp_path):
    files = write_corpus(tmp_path, [["aaaa", "ßßßß", "never read"]])
    stats = SampleStats()
    texts = list(iter_corpus_texts(files, max_bytes=9, holdout_fraction=0.0, stats=stats))
    assert texts == ["aaaa", "ßß"]  # 4 bytes + 4 of the 5 remaining bytes ("ß" is 2 bytes)
    assert stats == SampleStats(documents=2, utf8_bytes=8, truncated_documents=1, empty_documents=0)


def test_sample_skips_and_counts_empty_and_null_documents(tmp_path):
    files = write_corpus(tmp_path, [["", None, "kept"]])
    stats = SampleStats()
    assert list(iter_corpus_texts(files, max_bytes=100, holdout_fraction=0.0, stats=stats)) == ["kept"]
    assert stats.empty_documents == 2 and stats.documents == 1


def test_holdout_membership_depends_only_on_the_doc_id():
    doc_ids = [f"{i:016x}" for i in range(10_000)]
    held = [d for d in doc_ids if is_holdout(d, 0.05)]
    assert 400 < len(held) < 600
    assert held == [d for d in doc_ids if is_holdout(d, 0.05)]
    assert all(is_holdout(d, 0.10) for d in held)  # a larger fraction keeps every held-out document held out


def test_sample_refuses_files_without_a_text_column(tmp_path):
    path = tmp_path / "part-00000.parquet"
    pq.write_table(pa.table({"doc_id": ["0" * 16]}), path)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['text'\]"):
        list(iter_corpus_texts([path], max_bytes=100))


def test_trained_on_a_corpus_sample_the_tokenizer_round_trips_its_held_out_documents(corpus_files):
    stats = SampleStats()
    tokenizer = train_gpt2_bpe(iter_corpus_texts(corpus_files, max_bytes=30_000, stats=stats), vocab_size=SMALL_VOCAB)
    held_out = list(iter_corpus_texts(corpus_files, max_bytes=10_000, split="holdout"))
    assert 0 < stats.utf8_bytes <= 30_000
    assert held_out and round_trip_failures(tokenizer, held_out) == []
