"""Document quality filters: Gopher's heuristics (Rae et al. 2021, "Scaling Language Models", appendix A.1.1 and
table A1) and two of C4's rules (Raffel et al. 2020, section 2.2), each with a short stable reject code.

Words are whitespace-separated tokens, lines are split at "\\n" and paragraphs at blank lines. Filters run cheapest
first and the first failure is reported. Defaults (all in `QualityConfig`):

| code | rejects when | default | source |
|---|---|---|---|
| too_few_words / too_many_words | word count outside [min_words, max_words] | 50 / 100,000 | Gopher |
| mean_word_length | mean word length (characters) outside [min, max] | 3 / 10 | Gopher |
| symbol_to_word_ratio | "#" per word, or "..."/"…" per word, above the maximum | 0.1 | Gopher |
| few_alpha_words | share of words with an alphabetic character below the minimum | 0.8 | Gopher |
| stop_words | fewer than min_stop_words distinct of: the, be, to, of, and, that, have, with | 2 | Gopher |
| lorem_ipsum | "lorem ipsum" appears anywhere (placeholder pages) | on | C4 |
| curly_braces | "{" appears anywhere (C4 used it to drop code and JavaScript) | off | C4 |
| bullet_lines | share of non-blank lines starting with a bullet above the maximum | 0.9 | Gopher |
| ellipsis_lines | share of non-blank lines ending with "..." or "…" above the maximum | 0.3 | Gopher |
| duplicate_lines / duplicate_paragraphs | share of lines / paragraphs that repeat an earlier one | 0.30 / 0.30 | Gopher |
| duplicate_line_chars / duplicate_paragraph_chars | share of characters in those repeats | 0.20 / 0.20 | Gopher |
| top_ngram_chars | share of word characters covered by the most frequent n-gram, n = 2, 3, 4 | 0.20, 0.18, 0.16 | Gopher |
| duplicate_ngram_chars | share of word characters covered by n-grams occurring more than once, n = 5 … 10 | 0.15 … 0.10 | Gopher |
| lang_not_allowed / lang_low_score | detected language not in `languages` / its probability below the minimum | ("en",) / 0.5 | CCNet, Gopher |

Why the curly-brace rule is off: C4 drops every page containing "{", which removes programming tutorials, docs and
maths along with JavaScript debris. GPT-2's WebText had no such rule (GPT-2 learned some code from it), script and
style elements never reach the text here (the extractor skips them), and pages that are mostly symbols still fail
the alphabetic-word and symbol filters. Turn it on (`reject_curly_braces=True`) for a C4-like prose-only corpus.

The stop-word rule is English-specific (Gopher's corpus was English): set `min_stop_words=0` when `languages`
admits other languages.
"""
from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

GOPHER_STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
# Characters that start a list item in extracted text ("•" is what the extractor writes for <li>).
BULLETS = ("•", "‣", "◦", "⁃", "▪", "▫", "●", "○", "■", "□", "►", "▶", "➢", "-", "*", "–", "—", "·")
ELLIPSES = ("...", "…")


@dataclass(frozen=True, slots=True)
class QualityConfig:
    """Thresholds of the document filters; the module docstring gives each one's source."""

    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_to_word_ratio: float = 0.1
    min_alpha_word_fraction: float = 0.8
    min_stop_words: int = 2
    reject_lorem_ipsum: bool = True
    reject_curly_braces: bool = False
    max_bullet_line_fraction: float = 0.9
    max_ellipsis_line_fraction: float = 0.3
    max_duplicate_line_fraction: float = 0.30
    max_duplicate_paragraph_fraction: float = 0.30
    max_duplicate_line_char_fraction: float = 0.20
    max_duplicate_paragraph_char_fraction: float = 0.20
    max_top_ngram_char_fraction: tuple[tuple[int, float], ...] = ((2, 0.20), (3, 0.18), (4, 0.16))
    max_duplicate_ngram_char_fraction: tuple[tuple[int, float], ...] = (
        (5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))
    languages: tuple[str, ...] | None = ("en",)  # None admits every language
    min_language_score: float = 0.5


@dataclass(frozen=True, slots=True)
class QualityFailure:
    reason: str  # stable code from the module docstring's table
    detail: str  # the observed value and the limit, for people reading the rejects


def _duplicates(items: list[str]) -> tuple[int, int]:
    """(number of items equal to an earlier one, their total characters)."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


class _WordSequence:
    """Words as 64-bit ids with rolling n-gram hashes, so the n-gram statistics run in numpy, not per word in Python.

    Hash collisions between distinct n-grams are possible in principle (64-bit hashes: about 1 in 10^10 for a
    100,000-word document) and would only make a repetition look slightly larger.
    """

    _MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio): spreads ids over all bits

    def __init__(self, words: list[str]):
        vocabulary: dict[str, int] = {}
        ids = np.array([vocabulary.setdefault(word, len(vocabulary)) for word in words], dtype=np.uint64)
        self.word_ids = (ids + np.uint64(1)) * self._MULTIPLIER
        self.lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        self.word_chars = int(self.lengths.sum())
        self._hashes = {1: self.word_ids}

    def ngram_hashes(self, n: int) -> np.ndarray:
        """One hash per n-gram start position (len(words) - n + 1 of them)."""
        if n not in self._hashes:
            shorter = self.ngram_hashes(n - 1)
            self._hashes[n] = shorter[:-1] * self._MULTIPLIER + self.word_ids[n - 1:]
        return self._hashes[n]

    def top_ngram_char_fraction(self, n: int) -> float:
        """Characters in all occurrences of the most frequent n-gram (when it repeats) over all word characters."""
        hashes = self.ngram_hashes(n)
        if hashes.size == 0:
            return 0.0
        _, first, counts = np.unique(hashes, return_index=True, return_counts=True)
        top = int(counts.argmax())
        if counts[top] < 2:
            return 0.0
        start = int(first[top])
        return int(self.lengths[start:start + n].sum()) * int(counts[top]) / self.word_chars

    def duplicate_ngram_char_fraction(self, n: int) -> float:
        """Characters of words covered by any n-gram that occurs more than once, each word counted once."""
        hashes = self.ngram_hashes(n)
        if hashes.size == 0:
            return 0.0
        _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
        repeated_starts = (counts[inverse] > 1).astype(np.int64)
        covered = np.convolve(repeated_starts, np.ones(n, dtype=np.int64)) > 0  # start i covers words i … i+n-1
        return int(self.lengths[covered].sum()) / self.word_chars


def length_failure(n_words: int, config: QualityConfig = QualityConfig()) -> QualityFailure | None:
    """The word-count filter alone: callers run it before language id, which is unreliable on a few words."""
    if n_words < config.min_words:
        return QualityFailure("too_few_words", f"{n_words} words < {config.min_words}")
    if n_words > config.max_words:
        return QualityFailure("too_many_words", f"{n_words} words > {config.max_words}")
    return None


def quality_failure(text: str, config: QualityConfig = QualityConfig()) -> QualityFailure | None:
    """The first filter the text fails, with the observed value; None when it passes them all."""
    words = text.split()
    n_words = len(words)
    if failure := length_failure(n_words, config):
        return failure

    word_chars = sum(map(len, words))
    mean_length = word_chars / n_words
    if not config.min_mean_word_length <= mean_length <= config.max_mean_word_length:
        return QualityFailure("mean_word_length", f"mean word length {mean_length:.2f} outside "
                              f"[{config.min_mean_word_length}, {config.max_mean_word_length}]")

    symbol_ratio = max(text.count("#"), text.count("...") + text.count("…")) / n_words
    if symbol_ratio > config.max_symbol_to_word_ratio:
        return QualityFailure("symbol_to_word_ratio", f"{symbol_ratio:.3f} > {config.max_symbol_to_word_ratio}")

    alpha_fraction = sum(1 for word in words if any(ch.isalpha() for ch in word)) / n_words
    if alpha_fraction < config.min_alpha_word_fraction:
        return QualityFailure("few_alpha_words", f"{alpha_fraction:.3f} < {config.min_alpha_word_fraction}")

    stop_words = GOPHER_STOP_WORDS.intersection(word.strip(string.punctuation).lower() for word in words)
    if len(stop_words) < config.min_stop_words:
        return QualityFailure("stop_words", f"{len(stop_words)} distinct stop words < {config.min_stop_words}")

    if config.reject_lorem_ipsum and "lorem ipsum" in text.lower():
        return QualityFailure("lorem_ipsum", "contains 'lorem ipsum'")
    if config.reject_curly_braces and "{" in text:
        return QualityFailure("curly_braces", "contains '{'")

    lines = [line.strip() for line in text.split("\n") if line.strip()]
    bullet_fraction = sum(1 for line in lines if line.startswith(BULLETS)) / len(lines)
    if bullet_fraction > config.max_bullet_line_fraction:
        return QualityFailure("bullet_lines", f"{bullet_fraction:.3f} > {config.max_bullet_line_fraction}")
    ellipsis_fraction = sum(1 for line in lines if line.endswith(ELLIPSES)) / len(lines)
    if ellipsis_fraction > config.max_ellipsis_line_fraction:
        return QualityFailure("ellipsis_lines", f"{ellipsis_fraction:.3f} > {config.max_ellipsis_line_fraction}")

    return _repetition_failure(text, lines, words, config)


def _repetition_failure(text: str, lines: list[str], words: list[str], config: QualityConfig) -> QualityFailure | None:
    """Gopher's repetition filters: repeated lines, paragraphs and n-grams (boilerplate, spam, generation loops)."""
    total_chars = len(text)
    duplicate_lines, duplicate_line_chars = _duplicates(lines)
    if duplicate_lines / len(lines) > config.max_duplicate_line_fraction:
        return QualityFailure("duplicate_lines", f"{duplicate_lines}/{len(lines)} lines repeat "
                              f"> {config.max_duplicate_line_fraction}")
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    duplicate_paragraphs, duplicate_paragraph_chars = _duplicates(paragraphs)
    if duplicate_paragraphs / len(paragraphs) > config.max_duplicate_paragraph_fraction:
        return QualityFailure("duplicate_paragraphs", f"{duplicate_paragraphs}/{len(paragraphs)} paragraphs repeat "
                              f"> {config.max_duplicate_paragraph_fraction}")
    if duplicate_line_chars / total_chars > config.max_duplicate_line_char_fraction:
        return QualityFailure("duplicate_line_chars", f"{duplicate_line_chars / total_chars:.3f} "
                              f"> {config.max_duplicate_line_char_fraction}")
    if duplicate_paragraph_chars / total_chars > config.max_duplicate_paragraph_char_fraction:
        return QualityFailure("duplicate_paragraph_chars", f"{duplicate_paragraph_chars / total_chars:.3f} "
                              f"> {config.max_duplicate_paragraph_char_fraction}")
    sequence = _WordSequence(words)
    for n, limit in config.max_top_ngram_char_fraction:
        fraction = sequence.top_ngram_char_fraction(n)
        if fraction > limit:
            return QualityFailure("top_ngram_chars", f"top {n}-gram covers {fraction:.3f} > {limit}")
    for n, limit in config.max_duplicate_ngram_char_fraction:
        fraction = sequence.duplicate_ngram_char_fraction(n)
        if fraction > limit:
            return QualityFailure("duplicate_ngram_chars", f"repeated {n}-grams cover {fraction:.3f} > {limit}")
    return None


def quality_reason(text: str, config: QualityConfig = QualityConfig()) -> str | None:
    """Reject code of the first filter the text fails (see the module docstring), or None when it passes."""
    failure = quality_failure(text, config)
    return failure.reason if failure else None


def language_failure(language: str, score: float, config: QualityConfig = QualityConfig()) -> QualityFailure | None:
    """Why a detected (language, probability) is not admitted, or None when it is."""
    if config.languages is not None and language not in config.languages:
        return QualityFailure("lang_not_allowed", f"{language} ({score:.2f}) not in {list(config.languages)}")
    if score < config.min_language_score:
        return QualityFailure("lang_low_score", f"{language} probability {score:.2f} < {config.min_language_score}")
    return None
