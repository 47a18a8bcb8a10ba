"""Quality filters (Gopher / C4 heuristics) and language identification.

Two specifications: a table of cases worked out by hand from the rules' definitions (the module docstring of
`gptcore.corpus.quality`), and a rule-by-rule comparison with datatrove, the reference implementation, on real text
(pydoc's rendering of standard-library modules) made noisy in every way the rules look at.
"""
from __future__ import annotations

import dataclasses
import pydoc
import random

import pytest

from gptcore.corpus.langid import detect_language
from gptcore.corpus.quality import (QualityConfig, count_words, language_failure, quality_failure, quality_failures,
                                    quality_reason, split_words)

PROSE = """The harbour town woke slowly on winter mornings. Fishermen checked their nets by lamplight while the
bakery on the corner pulled the first loaves from an oven that had been burning since four. Children walked to the
school on the hill with their collars turned up against the wind, and the ferry sounded its horn twice before
leaving for the island.

By noon the market square was full. Farmers from the valley sold apples, cheese and honey, and a man with a violin
played the same three songs he had played for years. Visitors often asked why the town had never grown larger. The
answer, people said, was that nobody who lived there wanted it to change."""

# Every rule off: the table below turns on one rule at a time, so each case shows that rule's arithmetic alone.
OFF = QualityConfig(
    min_words=0, max_words=10**9, min_mean_word_length=0, max_mean_word_length=10**9, max_symbol_to_word_ratio=10**9,
    min_alpha_word_fraction=0, min_stop_words=0, reject_lorem_ipsum=False, reject_curly_braces=False,
    max_bullet_line_fraction=1, max_ellipsis_line_fraction=1, max_duplicate_line_fraction=1,
    max_duplicate_paragraph_fraction=1, max_duplicate_line_char_fraction=1, max_duplicate_paragraph_char_fraction=1,
    max_top_ngram_char_fraction=(), max_duplicate_ngram_char_fraction=(), languages=None, min_language_score=0)


def only(**rule) -> QualityConfig:
    return dataclasses.replace(OFF, **rule)


def test_words_are_spacy_english_tokens():
    assert split_words("Don't panic, it's well-known: U.S. law… #42") == (
        "Do", "n't", "panic", ",", "it", "'s", "well", "-", "known", ":", "U.S.", "law", "…", "#", "42")
    assert split_words("two\n\n  lines\t") == ("two", "lines")  # whitespace tokens are dropped


def test_document_length_leaves_out_words_made_of_punctuation_only():
    assert count_words("Hello , world ! ... -- «quoted» ?!") == 3  # Hello, world, quoted
    assert count_words("") == 0


# (rule, config with that rule alone, text, rejected). Each text's numbers are worked out in the comment.
CASES = [
    # 3 words that are not symbol words ("," and "." are not counted): 3 < 4 rejects, 3 < 3 does not.
    ("too_few_words", only(min_words=4), "One, two three.", True),
    ("too_few_words", only(min_words=3), "One, two three.", False),
    ("too_many_words", only(max_words=2), "One, two three.", True),
    # mean length of "ab", "abcd" (not ","): 3.0, inside [3, 10]; "ab" "a": 1.5.
    ("mean_word_length", only(min_mean_word_length=3), "ab, abcd", False),
    ("mean_word_length", only(min_mean_word_length=3), "ab a", True),
    # "#" per word: 1 "#" over 4 words ("#", "tag", "a", "b") = 0.25.
    ("symbol_to_word_ratio", only(max_symbol_to_word_ratio=0.24), "#tag a b", True),
    ("symbol_to_word_ratio", only(max_symbol_to_word_ratio=0.25), "#tag a b", False),
    # "..." and "…" count together: 2 over 4 words ("a", "...", "b", "…") = 0.5.
    ("symbol_to_word_ratio", only(max_symbol_to_word_ratio=0.49), "a... b…", True),
    # bullets are "•" and "-" after leading spaces; blank lines count: 2 of 3 lines.
    ("bullet_lines", only(max_bullet_line_fraction=0.6), "  • one\n- two\n", True),
    ("bullet_lines", only(max_bullet_line_fraction=0.6), "• one\n\n- two", True),
    ("bullet_lines", only(max_bullet_line_fraction=0.6), "• one\nnone\n* three", False),  # "*" is no bullet
    ("ellipsis_lines", only(max_ellipsis_line_fraction=0.5), "one...  \ntwo…\nthree", True),  # 2 of 3
    ("ellipsis_lines", only(max_ellipsis_line_fraction=0.7), "one...  \ntwo…\nthree", False),
    # punctuation tokens are words without letters: "an", ",", "cat", "." → 2 of 4 alphabetic.
    ("few_alpha_words", only(min_alpha_word_fraction=0.51), "an, cat.", True),
    ("few_alpha_words", only(min_alpha_word_fraction=0.5), "an, cat.", False),
    ("few_alpha_words", only(min_alpha_word_fraction=0.5), "x86 3.14 ü2", False),  # 2 of 3 have a letter
    # stop words as written: "The" and "OF" are not "the" and "of".
    ("stop_words", only(min_stop_words=2), "The cat OF the house", True),
    ("stop_words", only(min_stop_words=2), "the cat of the house", False),
    # C4 reads "lorem ipsum" and "{" only in lines it keeps: ≥ 3 words, ending in . ? ! " ' (not "...").
    ("lorem_ipsum", only(reject_lorem_ipsum=True), "Lorem ipsum dolor sit amet.", True),
    ("lorem_ipsum", only(reject_lorem_ipsum=True), "Lorem Ipsum Generator", False),  # a heading: no full stop
    ("lorem_ipsum", only(reject_lorem_ipsum=True), "Lorem ipsum dolor sit amet...", False),
    ("lorem_ipsum", only(reject_lorem_ipsum=True), "Lorem ipsum.[1]", False),  # 2 words (counted with the cite)
    ("lorem_ipsum", only(reject_lorem_ipsum=True), "Here lorem ipsum is.[edit]", True),  # ends in "." without it
    ("curly_braces", only(reject_curly_braces=True), "Write x = {1: 2} to make a dict.", True),
    ("curly_braces", only(reject_curly_braces=True), "x = {1: 2}", False),  # a code line, not kept by C4
    ("curly_braces", only(reject_curly_braces=True), "Enable JavaScript {in your browser} please.", False),
    # paragraphs at 2+ "\n" of the stripped text: "a", "b", "a" → 1 of 3 repeats; its 1 char of 8.
    ("duplicate_paragraphs", only(max_duplicate_paragraph_fraction=0.33), "a\n\nb\n\n\na", True),
    ("duplicate_paragraphs", only(max_duplicate_paragraph_fraction=0.34), "a\n\nb\n\n\na", False),
    ("duplicate_paragraph_chars", only(max_duplicate_paragraph_char_fraction=0.12), "a\n\nb\n\n\na", True),
    ("duplicate_paragraph_chars", only(max_duplicate_paragraph_char_fraction=0.13), "a\n\nb\n\n\na", False),
    # lines at runs of "\n", not stripped: "ab", "ab", " ab" → 1 of 3; its 2 chars of 10.
    ("duplicate_lines", only(max_duplicate_line_fraction=0.33), "ab\n\nab\n ab", True),
    ("duplicate_lines", only(max_duplicate_line_fraction=0.34), "ab\n\nab\n ab", False),
    ("duplicate_line_chars", only(max_duplicate_line_char_fraction=0.19), "ab\n\nab\n ab", True),
    ("duplicate_line_chars", only(max_duplicate_line_char_fraction=0.2), "ab\n\nab\n ab", False),
    # top 2-gram "ab cd" (5 chars with its space) × 3 = 15 of the text's 20 characters: 0.75.
    ("top_ngram_chars", only(max_top_ngram_char_fraction=((2, 0.74),)), "ab cd ab cd ab cd xy", True),
    ("top_ngram_chars", only(max_top_ngram_char_fraction=((2, 0.75),)), "ab cd ab cd ab cd xy", False),
    # no repeat: the first 2-gram is "top", 1 × 3 chars of 8 (0.375; the longest, "c de", would be 0.5); equally
    # frequent ones: the first wins ("abc d" × 2 = 10 of 19 chars, 0.526, not "d e" or "e f", 0.316).
    ("top_ngram_chars", only(max_top_ngram_char_fraction=((2, 0.37),)), "a b c de", True),
    ("top_ngram_chars", only(max_top_ngram_char_fraction=((2, 0.38),)), "a b c de", False),
    ("top_ngram_chars", only(max_top_ngram_char_fraction=((2, 0.52),)), "abc d e f abc d e f", True),
    ("top_ngram_chars", only(max_top_ngram_char_fraction=((2, 0.53),)), "abc d e f abc d e f", False),
    # repeated 2-grams scanned left to right, jumping past each repeat: "xy" (0), "yx" (1), "xy" again (2, counts 2
    # chars, jump to 4), "xy" again (4, 2 chars): 4 of 11 chars, 0.364 (counting every covered word would give 6).
    ("duplicate_ngram_chars", only(max_duplicate_ngram_char_fraction=((2, 0.36),)), "x y x y x y", True),
    ("duplicate_ngram_chars", only(max_duplicate_ngram_char_fraction=((2, 0.37),)), "x y x y x y", False),
    # n-grams are compared joined without spaces: "a bc" repeats "ab c", 3 chars of 9.
    ("duplicate_ngram_chars", only(max_duplicate_ngram_char_fraction=((2, 0.33),)), "ab c a bc", True),
    ("duplicate_ngram_chars", only(max_duplicate_ngram_char_fraction=((2, 0.34),)), "ab c a bc", False),
]


@pytest.mark.parametrize("rule, config, text, rejected", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_rule_decides_as_its_definition_says(rule, config, text, rejected):
    assert [failure.reason for failure in quality_failures(text, config)] == ([rule] if rejected else [])


def test_normal_prose_passes_every_filter():
    assert quality_reason(PROSE, QualityConfig()) is None


def test_first_failure_is_the_reason_and_the_detail_gives_the_value():
    failure = quality_failure("A short note with only a handful of words in it.")
    assert failure.reason == "too_few_words" and failure.detail == "11 words < 50"
    assert quality_reason(PROSE, QualityConfig(max_words=50)) == "too_many_words"


def test_every_failing_rule_is_listed_in_order():
    text = "\n".join(["• Buy now!"] * 30)  # 90 words ("•" is one; "!" is a symbol word): mean length 7/3
    assert [f.reason for f in quality_failures(text)] == [
        "mean_word_length", "bullet_lines", "few_alpha_words", "stop_words", "duplicate_lines", "duplicate_line_chars",
        "top_ngram_chars", "top_ngram_chars", "top_ngram_chars"] + ["duplicate_ngram_chars"] * 6


def test_curly_braces_only_when_enabled():
    code = PROSE + "\nThe config looks like {\"debug\": true} in the file."
    assert quality_reason(code) is None
    assert quality_reason(code, QualityConfig(reject_curly_braces=True)) == "curly_braces"


def test_repeated_long_ngrams():
    sentence = "the quick brown fox jumps over the lazy dog near the river bank"
    words = PROSE.split() + [f"{sentence} and then number {i} happened" for i in range(8)]
    failure = quality_failure(" ".join(words))
    assert failure is not None and failure.reason == "duplicate_ngram_chars"


def test_empty_and_tiny_texts_get_a_reason_not_an_error():
    assert quality_reason("") == "too_few_words"
    assert quality_failures("", OFF) == []
    assert quality_failures("...", OFF) == []


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


# --- against datatrove --------------------------------------------------------------------------------------------

MODULES = ["argparse", "base64", "bisect", "calendar", "csv", "difflib", "fractions", "heapq", "json", "shlex",
           "statistics", "string", "textwrap", "zipfile", "gettext", "fnmatch", "colorsys", "graphlib", "queue",
           "sched", "secrets", "uuid", "wave", "weakref", "locale", "glob", "operator"]
BOILERPLATE = ["Share this page", "Home | Docs | Blog | Contact", "© 2024 Example Corp. All rights reserved.",
               "Accept cookies", "Lorem ipsum dolor sit amet, consectetur adipiscing elit.", "Read more…",
               "Enable JavaScript to view {this} page.", "See the config {debug: true} for details.",
               "As noted before.[1]", "THE END OF THE PAGE.", "「引用」と書く。", "— — —", "#tag #news #python"]


def noisy_variants(text: str, rng: random.Random) -> list[str]:
    """The text cut short or long, and made noisy the ways the rules look at."""
    lines = text.splitlines()
    start = rng.randrange(max(1, len(lines) - 40))
    base = lines[start:start + rng.choice([3, 8, 20, 40, 80])]
    noisy = []
    for _ in range(4):
        out = list(base)
        for _ in range(rng.randrange(1, 5)):
            choice = rng.randrange(8)
            if choice == 0:  # boilerplate lines, some repeated
                out[rng.randrange(len(out) + 1):0] = [rng.choice(BOILERPLATE)] * rng.randrange(1, 6)
            elif choice == 1:  # a list
                out = [rng.choice(["• ", "- ", "* ", "  - "]) + line if rng.random() < 0.8 else line for line in out]
            elif choice == 2:  # teasers
                out = [line + rng.choice(["...", "…", " ...  "]) if rng.random() < 0.5 else line for line in out]
            elif choice == 3:  # a repeated block (paragraphs and n-grams)
                block = out[:rng.randrange(1, 6)]
                out += (["", *block] * rng.randrange(1, 4))
            elif choice == 4:  # blank-line runs, Windows line ends, indentation
                out = [line + rng.choice(["", "\n", "\n\n", "\r"]) for line in out]
            elif choice == 5:  # lines cut to a few words
                out = [" ".join(line.split()[:rng.randrange(1, 4)]) for line in out]
            elif choice == 6:  # a phrase spammed
                out.append(" ".join([rng.choice(["buy now", "click here to win", "the best of the best"])] * 20))
            else:  # stop words in capitals
                out = [line.upper() if rng.random() < 0.5 else line for line in out]
        noisy.append("\n".join(out))
    return ["\n".join(base)] + noisy


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rng = random.Random(13)
    rendered = [pydoc.render_doc(module, renderer=pydoc.plaintext) for module in MODULES]
    return [variant for text in rendered for _ in range(2) for variant in noisy_variants(text, rng)]


CONFIGS = {
    "default, every rule on": QualityConfig(reject_curly_braces=True),
    "tight": QualityConfig(min_words=20, max_words=400, min_mean_word_length=4, max_mean_word_length=6,
                           max_symbol_to_word_ratio=0.01, min_alpha_word_fraction=0.7, min_stop_words=4,
                           reject_curly_braces=True, max_bullet_line_fraction=0.3, max_ellipsis_line_fraction=0.1,
                           max_duplicate_line_fraction=0.05, max_duplicate_paragraph_fraction=0.05,
                           max_duplicate_line_char_fraction=0.03, max_duplicate_paragraph_char_fraction=0.03,
                           max_top_ngram_char_fraction=((2, 0.02), (3, 0.02), (4, 0.01)),
                           max_duplicate_ngram_char_fraction=((5, 0.05), (7, 0.04), (10, 0.02))),
}


@pytest.mark.parametrize("config_name", CONFIGS)
def test_every_rule_decides_as_datatrove_does(texts, config_name):
    pytest.importorskip("datatrove", reason="the comparison needs datatrove (pip install -e '.[bench]')")
    from bench.bench_quality import datatrove_rules, rejected_by

    config = CONFIGS[config_name]
    rules = datatrove_rules(config)
    differences, rejected = [], dict.fromkeys(rules, 0)
    for text in texts:
        ours = {failure.reason for failure in quality_failures(text, config)}
        for code, rule in rules.items():
            theirs = rejected_by(rule, text)
            rejected[code] += theirs
            if theirs != (code in ours):
                differences.append((code, theirs, text[:200]))
    assert differences == []
    # Not a vacuous comparison: the texts make most rules reject some of them and pass others.
    assert sum(0 < count < len(texts) for count in rejected.values()) >= (14 if config_name == "tight" else 12), rejected
