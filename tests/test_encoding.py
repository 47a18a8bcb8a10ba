"""gptcore.encoding: a trained byte-level BPE served by tiktoken gives exactly the ids of Hugging Face `tokenizers`."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from gptcore.encoding import EOT_TOKEN, load_encoder, replace_lone_surrogates
from tests.builders import train_byte_level_bpe

SYLLABLES = ["the", "an", "ing", "er", "tion", "qu", "st", "ph", "ou", "ly", "re", "con", "ab", "ex", "ol", "mi", "ka"]
SCRIPTS = ["東京都", "漢字かな交じり文", "한국어", "Ελληνικά", "русский текст", "עברית", "العربية", "हिन्दी",
           "café", "naïve", "e\u0301", "Zürich", "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "ﬁ", "Ⅻ", "٣٤", "½"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'LL", "’s"]
WHITESPACE = [" ", "  ", "\t", "\n", "\n\n", "\r\n", "\x0b", "\x0c", "\x85", "\xa0", "\u2003", "\u3000", "\u180e",
              "\x1c", "\x1f", "\u2028", "   \n"]
PUNCTUATION = [".", ",", "!?", "...", "--", "(", ")", "\"", "'", "`", "$", "%", "#", "@", "&", "*", "[]", "{}", "<>"]


def pseudo_word(rng: random.Random) -> str:
    word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4)))
    return word.capitalize() if rng.random() < 0.2 else word


def varied_lines(n_lines: int, seed: int) -> list[str]:
    """Lines mixing words, contractions, numbers, punctuation, odd whitespace and many scripts, so merges of every
    kind of GPT-2 pre-token get learned."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        parts = []
        for _ in range(rng.randint(3, 20)):
            roll = rng.random()
            if roll < 0.55:
                parts.append(" " + pseudo_word(rng) + (rng.choice(CONTRACTIONS) if rng.random() < 0.1 else ""))
            elif roll < 0.65:
                parts.append(" " + str(rng.randint(0, 10 ** rng.randint(1, 9))))
            elif roll < 0.8:
                parts.append(rng.choice(PUNCTUATION))
            elif roll < 0.9:
                parts.append(rng.choice(WHITESPACE))
            else:
                parts.append(" " + rng.choice(SCRIPTS))
        lines.append("".join(parts))
    return lines


@pytest.fixture(scope="module")
def tokenizer_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tokenizers")
    return {
        "small": train_byte_level_bpe(varied_lines(400, seed=1), 1_000, folder / "small.json"),
        "large": train_byte_level_bpe(varied_lines(6_000, seed=2), 8_000, folder / "large.json"),
        "eot_last": train_byte_level_bpe(varied_lines(400, seed=6), 1_000, folder / "eot_last.json", eot_last=True),
    }


@pytest.fixture(scope="module")
def encoders(tokenizer_files) -> dict[str, tuple]:
    """name → (our encoder, the plain `tokenizers` reference with special-token text encoded as text)."""
    pairs = {}
    for name, path in tokenizer_files.items():
        reference = Tokenizer.from_file(str(path))
        reference.encode_special_tokens = True
        pairs[name] = (load_encoder(path), reference)
    return pairs


def reference_ids(reference: Tokenizer, text: str) -> list[int]:
    return reference.encode(text, add_special_tokens=False).ids


def rewritten_tokenizer(source: Path, target: Path, edit) -> Path:
    spec = json.loads(source.read_text(encoding="utf-8"))
    edit(spec)
    target.write_text(json.dumps(spec), encoding="utf-8")
    return target


VOCABULARIES = pytest.mark.parametrize("name", ["small", "large", "eot_last"])
PROPERTY = settings(max_examples=1_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

any_unicode = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)
tricky_text = st.lists(
    st.sampled_from(SCRIPTS + CONTRACTIONS + WHITESPACE + PUNCTUATION + ["\x00", EOT_TOKEN, "<|", "|>", "0", "123"])
    | st.builds(pseudo_word, st.randoms(use_true_random=False))
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=3),
    max_size=30,
).map("".join)
whitespace_heavy = st.lists(st.sampled_from(WHITESPACE + ["a", "1", "'", ".", "é"]), max_size=40).map("".join)


def test_a_trained_byte_level_bpe_is_served_by_tiktoken(encoders):
    for name, (encoder, reference) in encoders.items():
        assert (encoder.kind, encoder.fallback_reason) == ("tiktoken", None), name
        assert encoder.vocab_size == reference.get_vocab_size(with_added_tokens=True)
        assert encoder.eot_id == reference.token_to_id(EOT_TOKEN)
    assert encoders["eot_last"][0].eot_id == encoders["eot_last"][0].vocab_size - 1


@VOCABULARIES
@PROPERTY
@given(text=any_unicode)
def test_ids_equal_tokenizers_and_decode_round_trips_for_any_unicode(encoders, name, text):
    encoder, reference = encoders[name]
    ids = encoder.encode(text)
    assert ids == reference_ids(reference, text)
    assert encoder.decode(ids) == text


@VOCABULARIES
@PROPERTY
@given(text=tricky_text | whitespace_heavy)
def test_ids_equal_tokenizers_on_whitespace_digits_contractions_emoji_and_scripts(encoders, name, text):
    encoder, reference = encoders[name]
    ids = encoder.encode(text)
    assert ids == reference_ids(reference, text)
    assert encoder.decode(ids) == text


def test_many_merges_apply_on_text_like_the_training_text(encoders):
    encoder, reference = encoders["large"]
    lines = varied_lines(300, seed=3)
    ids = encoder.encode_batch(lines)
    assert ids == [reference_ids(reference, line) for line in lines]
    assert sum(map(len, ids)) < sum(len(line.encode("utf-8")) for line in lines) / 2


@settings(max_examples=50, deadline=None)
@given(texts=st.lists(tricky_text, max_size=20), num_threads=st.sampled_from([1, 2, 4]))
def test_encode_batch_equals_encode_in_order(encoders, texts, num_threads):
    encoder, _ = encoders["small"]
    assert encoder.encode_batch(texts, num_threads=num_threads) == [encoder.encode(text) for text in texts]


def test_end_of_text_written_in_a_document_is_ordinary_text_on_both_backends(tokenizer_files):
    text = f"one{EOT_TOKEN}two <|endoftext|>"
    fast = load_encoder(tokenizer_files["small"])
    slow = load_encoder(tokenizer_files["small"], backend="huggingface")
    for encoder in (fast, slow):
        ids = encoder.encode(text)
        assert encoder.eot_id not in ids
        assert encoder.decode(ids) == text
        joined = [*encoder.encode("a"), encoder.eot_id, *encoder.encode("b")]
        assert encoder.decode(joined) == f"a{EOT_TOKEN}b"
    assert fast.encode(text) == slow.encode(text)


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(), max_size=40) | st.just("a\ud800b\udfff\ud83d\ude00"))
def test_lone_surrogates_become_u_fffd_identically_on_both_backends(tokenizer_files, text):
    fast = load_encoder(tokenizer_files["small"])
    slow = load_encoder(tokenizer_files["small"], backend="huggingface")
    cleaned = replace_lone_surrogates(text)
    assert fast.encode(text) == slow.encode(text) == fast.encode(cleaned)
    assert slow.encode_batch([text, "x"]) == fast.encode_batch([text, "x"])


def test_replace_lone_surrogates_keeps_pairs_and_marks_strays():
    assert replace_lone_surrogates("a\ud800b\udfff") == "a\ufffdb\ufffd"
    assert replace_lone_surrogates("\ud83d\ude00") == "😀"
    assert replace_lone_surrogates("plain \x00 text") == "plain \x00 text"


def add_a_normalizer(spec: dict) -> None:
    spec["normalizer"] = {"type": "NFKC"}


def add_a_prefix_space(spec: dict) -> None:
    spec["pre_tokenizer"]["add_prefix_space"] = True


def add_a_non_special_token(spec: dict) -> None:
    new_id = max(spec["model"]["vocab"].values()) + 1
    spec["added_tokens"].append({"id": new_id, "content": "hello", "single_word": False, "lstrip": False,
                                 "rstrip": False, "normalized": False, "special": False})


def swap_the_ids_of_two_merged_tokens(spec: dict) -> None:
    vocab = spec["model"]["vocab"]
    first, second = ("".join(merge) for merge in spec["model"]["merges"][:2])
    vocab[first], vocab[second] = vocab[second], vocab[first]


@pytest.mark.parametrize("edit, reason", [
    (add_a_normalizer, "normalizer"),
    (add_a_prefix_space, "prefix space"),
    (add_a_non_special_token, "non-special added tokens"),
    (swap_the_ids_of_two_merged_tokens, "merge order"),
])
def test_tokenizers_tiktoken_cannot_reproduce_fall_back_to_tokenizers_with_a_reason(tokenizer_files, tmp_path,
                                                                                     edit, reason):
    path = rewritten_tokenizer(tokenizer_files["small"], tmp_path / "edited.json", edit)
    encoder = load_encoder(path)
    assert encoder.kind == "huggingface"
    assert reason in encoder.fallback_reason
    reference = Tokenizer.from_file(str(path))
    reference.encode_special_tokens = True
    for line in varied_lines(20, seed=4):
        assert encoder.encode(line) == reference_ids(reference, line)
    with pytest.raises(ValueError, match=reason):
        load_encoder(path, backend="tiktoken")


def test_a_gpt1_style_tokenizer_with_end_of_word_markers_is_served_by_tokenizers(tmp_path):
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.BPEDecoder(suffix="</w>")
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", EOT_TOKEN], end_of_word_suffix="</w>",
                                  show_progress=False)
    tokenizer.train_from_iterator(varied_lines(200, seed=5), trainer)
    tokenizer.save(str(tmp_path / "gpt1.json"))

    encoder = load_encoder(tmp_path / "gpt1.json")
    assert encoder.kind == "huggingface"
    assert encoder.eot_id == tokenizer.token_to_id(EOT_TOKEN)
    assert encoder.encode("the quest con") == tokenizer.encode("the quest con", add_special_tokens=False).ids
    assert encoder.decode(encoder.encode("the quest con")) == "the quest con"


def test_a_tokenizer_without_the_end_of_text_token_is_refused_with_its_path(tmp_path):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train_from_iterator(["some text"], trainers.BpeTrainer(vocab_size=300, show_progress=False))
    path = tmp_path / "no_eot.json"
    tokenizer.save(str(path))
    with pytest.raises(ValueError, match=f"{path}.*<\\|endoftext\\|>"):
        load_encoder(path)
