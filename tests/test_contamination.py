"""8-gram contamination: GPT-2's normalisation, a Bloom filter without false negatives, overlap per evaluation set."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gptcore.contamination import (BloomFilter, build_corpus_filter, example_texts, measure_overlap, ngram_hashes,
                                   normalized_words)

SEEN = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want "
        "of a wife. However little known the feelings or views of such a man may be on his first entering a "
        "neighbourhood, this truth is so well fixed in the minds of the surrounding families.")
HELD_OUT = ("The family of Dashwood had long been settled in Sussex. Their estate was large, and their residence "
            "was at Norland Park, in the centre of their property, where, for many generations, they had lived.")
PRIVATE = ("Colour words and quiet rivers shape every morning walk through the valley where seven old bridges "
           "cross the stream near the mill.")


def write_corpus(path, docs: dict[str, str]):
    pq.write_table(pa.table({"doc_id": list(docs), "text": list(docs.values())}), path)
    return path


def test_words_are_lowercase_alphanumeric_runs_so_punctuation_and_case_do_not_matter():
    assert normalized_words("Don't STOP, 2 Élan!") == ["don", "t", "stop", "2", "élan"]
    assert np.array_equal(ngram_hashes(normalized_words("A b, c d e f g h!"), 8),
                          ngram_hashes(normalized_words("a B c-d E f g H"), 8))


def test_a_text_of_n_words_has_n_minus_7_eight_grams():
    assert ngram_hashes(["w"] * 10).size == 3
    assert ngram_hashes(["w"] * 7).size == 0


def test_the_filter_never_misses_what_was_added_and_false_positives_stay_near_the_stated_rate():
    rng = np.random.default_rng(0)
    added = rng.integers(0, 2**63, size=20_000, dtype=np.uint64)
    bloom = BloomFilter.for_capacity(20_000, false_positive_rate=0.01)
    bloom.add(added)
    assert bloom.contains(added).all()
    others = rng.integers(0, 2**63, size=50_000, dtype=np.uint64)
    assert bloom.contains(others).mean() < 0.02
    assert bloom.num_hashes == 7  # optimal k for 1%: (m/n) ln 2 = log2(1/0.01) ≈ 6.6


def test_a_saved_filter_loads_with_the_same_answers(tmp_path):
    bloom = BloomFilter.for_capacity(100, 0.001)
    hashes = ngram_hashes(normalized_words(SEEN))
    bloom.add(hashes)
    loaded = BloomFilter.load(bloom.save(tmp_path / "f.npz"))
    assert (loaded.num_bits, loaded.num_hashes, loaded.false_positive_rate) == (bloom.num_bits, bloom.num_hashes, 0.001)
    assert loaded.contains(hashes).all() and np.array_equal(loaded.bits, bloom.bits)


def test_a_set_copied_from_the_corpus_overlaps_fully_and_unseen_text_not_at_all(tmp_path):
    corpus = write_corpus(tmp_path / "part-0.parquet", {"d1": SEEN, "d2": HELD_OUT})
    bloom = build_corpus_filter([corpus], keep=lambda doc_id: doc_id != "d2")  # d2 is held out of training
    copied = measure_overlap(bloom, [[SEEN.upper()], [" ".join(SEEN.split()[:20])]])
    unseen = measure_overlap(bloom, [[HELD_OUT], [PRIVATE], ["too short to have eight words"]])
    assert copied.fraction_ngrams_found == 1.0 and copied.fraction_examples_with_overlap == 1.0
    assert unseen.ngrams_found == 0 and unseen.examples_with_overlap == 0
    assert (unseen.examples, unseen.examples_with_ngrams) == (3, 2)


def test_one_shared_passage_marks_its_example_and_only_its_own_ngrams(tmp_path):
    bloom = build_corpus_filter([write_corpus(tmp_path / "c.parquet", {"d1": SEEN})])
    mixed = PRIVATE + " " + SEEN[:60]  # 11 words of SEEN: 4 of its 8-grams are in the corpus
    overlap = measure_overlap(bloom, [[mixed], [PRIVATE]])
    assert overlap.examples_with_overlap == 1 and overlap.fraction_examples_with_overlap == 0.5
    assert overlap.ngrams_found == 4


def test_an_example_contributes_every_text_field_but_its_label():
    record = {"context": "Once upon a time", "choices": ["they lived", "it rained"], "label": 0}
    assert example_texts(record) == ["Once upon a time", "they lived", "it rained"]


def test_ngrams_do_not_run_from_one_field_of_an_example_into_the_next(tmp_path):
    bloom = build_corpus_filter([write_corpus(tmp_path / "c.parquet", {"d1": SEEN})])
    words = SEEN.split()
    as_fields = measure_overlap(bloom, [[" ".join(words[:4]), " ".join(words[4:10])]])
    as_one = measure_overlap(bloom, [[" ".join(words[:10])]])
    assert (as_fields.ngrams, as_one.ngrams, as_one.ngrams_found) == (0, 3, 3)


def test_the_filter_size_follows_the_ngram_count_and_rate():
    small, large = BloomFilter.for_capacity(1_000, 1e-3), BloomFilter.for_capacity(100_000, 1e-3)
    assert large.num_bits == pytest.approx(100 * small.num_bits, rel=1e-3)
    assert small.num_bits == pytest.approx(1_000 * 14.38, rel=1e-2)  # -ln(0.001) / ln(2)^2 bits per n-gram
