"""Quality filters (Gopher / C4 heuristics) and language identification."""
from __future__ import annotations

import pytest

from gptcore.corpus.langid import detect_language
from gptcore.corpus.quality import QualityConfig, language_failure, quality_failure, quality_reason

PROSE = """The harbour town woke slowly on winter mornings. Fishermen checked their nets by lamplight while the
bakery on the corner pulled the first loaves from an oven that had been burning since four. Children walked to the
school on the hill with their collars turned up against the wind, and the ferry sounded its horn twice before
leaving for the island.

By noon the market square was full. Farmers from the valley sold apples, cheese and honey, and a man with a violin
played the same three songs he had played for years. Visitors often asked why the town had never grown larger. The
answer, people said, was that nobody who lived there wanted it to change."""


def test_normal_prose_passes_every_filter():
    assert quality_reason(PROSE, QualityConfig()) is None


def test_too_few_words():
    assert quality_reason("A short note with only a handful of words in it.") == "too_few_words"


def test_too_many_words():
    assert quality_reason(PROSE, QualityConfig(max_words=50)) == "too_many_words"


def test_mean_word_length_too_short_and_too_long():
    assert quality_reason(" ".join(["a b to of in it"] * 20)) == "mean_word_length"
    assert quality_reason(" ".join(f"internationalization{i}" for i in range(60))) == "mean_word_length"


def test_hash_symbols_per_word():
    tagged = PROSE + " " + " ".join(f"#tag{i}" for i in range(40))
    assert quality_reason(tagged) == "symbol_to_word_ratio"


def test_ellipses_per_word():
    trailing = PROSE.replace(".", "...").replace(",", "…")
    assert quality_reason(trailing) == "symbol_to_word_ratio"


def test_words_without_letters():
    numbers = PROSE + "\n" + " ".join(str(1000 + i) for i in range(60))
    failure = quality_failure(numbers)
    assert failure is not None and failure.reason == "few_alpha_words"


def test_text_without_english_stop_words():
    keywords = " ".join(f"cheap shoes sale discount{i} free shipping online store" for i in range(10))
    assert quality_reason(keywords) == "stop_words"


def test_lorem_ipsum_placeholder():
    assert quality_reason(PROSE + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.") == "lorem_ipsum"


def test_curly_braces_only_when_enabled():
    code = PROSE + "\nThe config looks like {\"debug\": true} in the file."
    assert quality_reason(code) is None
    assert quality_reason(code, QualityConfig(reject_curly_braces=True)) == "curly_braces"


def test_pages_that_are_mostly_bullets():
    items = "\n".join(f"• {sentence.strip()}" for sentence in PROSE.replace("\n", " ").split(".") if sentence.strip())
    assert quality_reason(items) == "bullet_lines"


def test_pages_whose_lines_end_in_ellipses():
    teasers = "\n".join(f"{sentence.strip()} and the story goes on…"
                        for sentence in PROSE.replace("\n", " ").split(".") if sentence.strip())
    assert quality_reason(teasers, QualityConfig(max_symbol_to_word_ratio=1.0)) == "ellipsis_lines"


def test_repeated_lines():
    lines = PROSE.split("\n") + ["Share this page on social media and tell your friends about us"] * 12
    assert quality_reason("\n".join(lines)) == "duplicate_lines"


def test_repeated_paragraphs():
    paragraphs = PROSE.split("\n\n")
    spam = "Click here to subscribe to the newsletter and the offers that come with it"
    assert quality_reason("\n\n".join(paragraphs + [spam] * 3)) == "duplicate_paragraphs"


def test_characters_in_repeated_lines():
    long_line = ("This sentence is a long piece of boilerplate that the site repeats at the top and the bottom of "
                 "every page, with the name of the company and its address.")
    text = "\n".join(PROSE.split("\n") + [long_line] * 3)
    assert quality_reason(text, QualityConfig(max_duplicate_line_fraction=0.5)) == "duplicate_line_chars"


def test_top_ngram_dominates():
    text = PROSE + " " + " ".join(["buy now"] * 60)
    failure = quality_failure(text, QualityConfig(max_duplicate_line_fraction=1, max_duplicate_paragraph_fraction=1))
    assert failure is not None and failure.reason == "top_ngram_chars" and "2-gram" in failure.detail


def test_repeated_long_ngrams():
    sentence = "the quick brown fox jumps over the lazy dog near the river bank"
    words = PROSE.split() + [f"{sentence} and then number {i} happened" for i in range(8)]
    failure = quality_failure(" ".join(words))
    assert failure is not None and failure.reason == "duplicate_ngram_chars"


def test_language_allow_list_and_minimum_score():
    assert language_failure("en", 0.99) is None
    assert language_failure("de", 0.99).reason == "lang_not_allowed"
    assert language_failure("en", 0.2).reason == "lang_low_score"
    assert language_failure("de", 0.99, QualityConfig(languages=None)) is None


@pytest.mark.parametrize("text, language", [
    ("The weather was cold and wet, so we stayed inside and read books all afternoon.", "en"),
    ("Das Wetter war kalt und nass, deshalb blieben wir drinnen und lasen den ganzen Nachmittag Bücher.", "de"),
    ("Il faisait froid et humide, alors nous sommes restés à l'intérieur pour lire tout l'après-midi.", "fr"),
])
def test_detect_language_names_the_language_with_a_normalized_probability(text, language):
    detected, probability = detect_language(text)
    assert detected == language
    assert 0.5 < probability <= 1.0


def test_text_without_language_gets_a_low_probability():
    assert detect_language("")[1] < 0.5


def test_characters_in_repeated_paragraphs():
    notice = ("This website uses cookies to give you the best experience on our pages. By continuing to browse the "
              "site you agree to our use of cookies, as described in our privacy policy and terms of service.")
    text = "\n\n".join(PROSE.split("\n\n") + [notice, notice])
    config = QualityConfig(max_duplicate_line_char_fraction=1.0, max_duplicate_paragraph_char_fraction=0.1)
    assert quality_reason(text, config) == "duplicate_paragraph_chars"
