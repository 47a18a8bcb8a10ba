"""Document quality filters: Gopher's heuristics (Rae et al. 2021, "Scaling Language Models", appendix A.1.1 and
table A1) and C4's two page rules (Raffel et al. 2020, section 2.2), each with a short stable reject code.

Every rule decides as its reference implementation does on the same text: datatrove's `GopherQualityFilter`,
`GopherRepetitionFilter` and `C4QualityFilter` (datatrove 0.10.1, the code FineWeb was filtered with; C4's follows
TFDS's `c4_utils`). `tests/test_quality.py` compares the decisions with datatrove's rule by rule.

Words are spaCy's English tokens (`spacy.blank("en")`, the word tokenizer datatrove uses for English), stripped, empty
ones dropped: "don't" is "do" + "n't", and punctuation marks are words of their own. "Symbol words" are those made
only of punctuation (`PUNCTUATION`). Lines are `str.splitlines()` for the Gopher quality and C4 rules and runs of
"\\n" for the repetition rules; paragraphs are split at two or more "\\n". Character fractions are over `len(text)`.

| code | rejects when | default | source |
|---|---|---|---|
| too_few_words / too_many_words | words that are not symbol words outside [min_words, max_words] | 50 / 100,000 | Gopher |
| mean_word_length | mean length of those words outside [min, max] | 3 / 10 | Gopher |
| symbol_to_word_ratio | "#" per word, or "..." and "…" per word, above the maximum (all words) | 0.1 | Gopher |
| bullet_lines | share of lines starting (after spaces) with "•" or "-" above the maximum | 0.9 | Gopher |
| ellipsis_lines | share of lines ending (before spaces) with "..." or "…" above the maximum | 0.3 | Gopher |
| few_alpha_words | share of words with an alphabetic character below the minimum | 0.8 | Gopher |
| stop_words | fewer than min_stop_words distinct of: the, be, to, of, and, that, have, with (as written) | 2 | Gopher |
| lorem_ipsum | "lorem ipsum" in a line that C4 keeps (see `c4_kept_lines`) | on | C4 |
| curly_braces | "{" in a line that C4 keeps and that does not mention "javascript" | off | C4 |
| duplicate_paragraphs / duplicate_paragraph_chars | share of paragraphs equal to an earlier one / of characters in them | 0.30 / 0.20 | Gopher |
| duplicate_lines / duplicate_line_chars | share of lines equal to an earlier one / of characters in them | 0.30 / 0.20 | Gopher |
| top_ngram_chars | characters of the most frequent word n-gram (joined by spaces) × its count, n = 2, 3, 4 | 0.20, 0.18, 0.16 | Gopher |
| duplicate_ngram_chars | characters of repeated word n-grams, n = 5 … 10, counted as `duplicate_ngram_chars` says | 0.15 … 0.10 | Gopher |
| lang_not_allowed / lang_low_score | detected language not in `languages` / its probability below the minimum | ("en",) / 0.5 | CCNet, Gopher |

A page is rejected when any rule fails; the first failure in the table's order is the reported reason.

Where gptforge deliberately differs from the reference:

- A limit of 0 is a limit (datatrove reads 0 as "rule off"); turn a rule off with a limit it cannot reach.
- C4 also deletes lines (no terminal punctuation, under 3 words, "javascript", cookie and policy notices) and drops
  pages left with fewer than 5 sentences. These filters never edit text, so only C4's page rules are here, evaluated
  on the lines C4 would keep, as C4's code does.
- Words are split with the English rules whatever the language; the stop-word rule is English too (Gopher's corpus
  was English): set `min_stop_words=0` when `languages` admits other languages.
- The curly-brace rule is off by default. C4 drops every page with "{" in a kept line, which removes programming
  tutorials, docs and maths along with JavaScript debris. GPT-2's WebText had no such rule (GPT-2 learned some code
  from it), script and style elements never reach the text here (the extractor skips them), and pages that are
  mostly symbols still fail the alphabetic-word and symbol filters. Turn it on (`reject_curly_braces=True`) for a
  C4-like prose-only corpus.
- N-grams are compared by 64-bit hashes, not as strings (see `_WordSequence`).
"""
from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import spacy

GOPHER_STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("•", "-")  # Gopher's bullet marks as datatrove reads them; "•" is what the extractor writes for <li>
ELLIPSES = ("...", "…")
# datatrove's PUNCTUATION_SET: ASCII and CJK punctuation, a few symbols, control characters except tab and newline,
# and the sentence terminators of other scripts. A word made only of these is a "symbol word".
PUNCTUATION = frozenset(
    "!/—”:％１〈&(、━\\【#%「」，】；+^]~“《„';’{|∶´[=-`*．（–？！：$～«〉,><》)?）。…@_.\"}►»"
    + "".join(map(chr, [*range(0, 9), *range(11, 32), *range(127, 160)]))
    + (
    "\u0589\u061d\u061e\u061f\u06d4\u0700\u0701\u0702\u07f9\u0837\u0839\u083d\u083e\u0964\u0965\u104a\u104b\u1362"
    "\u1367\u1368\u166e\u1735\u1736\u17d4\u17d5\u17d6\u17d9\u17da\u1803\u1809\u1944\u1945\u1aa8\u1aa9\u1aaa\u1aab"
    "\u1b5a\u1b5b\u1b5e\u1b5f\u1b7d\u1b7e\u1c3b\u1c3c\u1c7e\u1c7f\u203c\u203d\u2047\u2048\u2049\u2e2e\u2e3c\u2e53"
    "\u2e54\ua4ff\ua60e\ua60f\ua6f3\ua6f7\ua876\ua877\ua8ce\ua8cf\ua92f\ua9c8\ua9c9\uaa5d\uaa5e\uaa5f\uaaf0\uaaf1"
    "\uabeb\ufe52\ufe56\ufe57\uff61\U00010a56\U00010a57\U00010f55\U00010f56\U00010f57\U00010f58\U00010f59"
    "\U00010f86\U00010f87\U00010f88\U00010f89\U00011047\U00011048\U000110be\U000110bf\U000110c0\U000110c1"
    "\U00011141\U00011142\U00011143\U000111c5\U000111c6\U000111cd\U000111de\U000111df\U00011238\U00011239"
    "\U0001123b\U0001123c\U000112a9\U0001144b\U0001144c\U000115c2\U000115c3\U000115c9\U000115ca\U000115cb"
    "\U000115cc\U000115cd\U000115ce\U000115cf\U000115d0\U000115d1\U000115d2\U000115d3\U000115d4\U000115d5"
    "\U000115d6\U000115d7\U00011641\U00011642\U0001173c\U0001173d\U0001173e\U00011944\U00011946\U00011a42"
    "\U00011a43\U00011a9b\U00011a9c\U00011c41\U00011c42\U00011ef7\U00011ef8\U00011f43\U00011f44\U00016a6e"
    "\U00016a6f\U00016af5\U00016b37\U00016b38\U00016b44\U00016e98\U0001bc9f\U0001da88"
    ))
# C4's line rules (TFDS c4_utils, as datatrove's C4QualityFilter applies them).
C4_END_PUNCTUATION = (".", "?", "!", '"', "'")
C4_MIN_LINE_WORDS = 3
C4_MAX_WORD_CHARS = 1000
C4_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
PARAGRAPH_BREAK = re.compile(r"\n{2,}")
LINE_BREAKS = re.compile(r"\n+")


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


# --- words ------------------------------------------------------------------------------------------------------------

_TOKENIZER_LOCK = threading.Lock()  # one memory zone at a time: spaCy's vocabulary is shared by every thread


@lru_cache(maxsize=1)
def _english() -> spacy.language.Language:
    return spacy.blank("en")


@lru_cache(maxsize=8)  # process_page counts the words, then filters the same text: tokenize it once
def split_words(text: str) -> tuple[str, ...]:
    """spaCy's English tokens of the text, stripped, empty ones dropped (datatrove's `split_into_words` for English)."""
    nlp = _english()
    with _TOKENIZER_LOCK, nlp.memory_zone():  # the zone frees the strings of each text: no growth over a corpus
        return tuple(word for token in nlp.tokenizer(text) if (word := token.text.strip()))


def is_symbol_word(word: str) -> bool:
    return all(ch in PUNCTUATION for ch in word)


def count_words(text: str) -> int:
    """The document length Gopher's word-count rule reads: words that are not symbol words."""
    return sum(1 for word in split_words(text) if not is_symbol_word(word))


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


def c4_kept_lines(text: str) -> Iterator[str]:
    """The lines C4 keeps, stripped and without citation marks: no word over 1,000 characters, at least 3 words,
    ending in . ? ! " or ' but not in "..." (C4's rules on "lorem ipsum" and "{" read only these lines)."""
    for line in text.splitlines():
        line = line.strip()
        words = line.split()  # counted before citations are removed, as C4 does
        if any(len(word) > C4_MAX_WORD_CHARS for word in words):
            continue
        line = C4_CITATION.sub("", line)
        if line.endswith(C4_END_PUNCTUATION) and not line.endswith("...") and len(words) >= C4_MIN_LINE_WORDS:
            yield line


class _WordSequence:
    """Words as 64-bit numbers with rolling n-gram hashes, so the n-gram statistics run in numpy, not per word.

    Two keys per n-gram, after the two ways Gopher's reference compares n-grams: `ngram_keys` hashes the sequence of
    words (the most frequent n-gram), `joined_keys` hashes the n-gram's characters with no separator, so "ab c" and
    "a bc" are the same n-gram (the repeated n-grams; datatrove joins them with ""). Distinct n-grams share a key
    with probability about 2^-64 per pair (a 100,000-word document has ~10^10 pairs) and would only make a
    repetition look slightly larger.
    """

    _MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio): spreads ids over all bits
    _BASE = 0x100000001B3  # polynomial base of the character hash (FNV's prime; odd, so powers never vanish)
    _MASK = (1 << 64) - 1

    def __init__(self, words: tuple[str, ...]):
        vocabulary: dict[str, int] = {}
        ids = np.array([vocabulary.setdefault(word, len(vocabulary)) for word in words], dtype=np.int64)
        unique = list(vocabulary)
        self.word_ids = (ids.astype(np.uint64) + np.uint64(1)) * self._MULTIPLIER
        lengths = np.fromiter(map(len, unique), dtype=np.int64, count=len(unique))[ids]
        self.char_offsets = np.concatenate([[0], np.cumsum(lengths)])  # n-gram i…j-1 has offsets[j]-offsets[i] chars
        char_hashes, char_powers = zip(*map(self._char_hash, unique)) if unique else ((), ())
        self._char_hashes = np.array(char_hashes, dtype=np.uint64)[ids]
        self._char_powers = np.array(char_powers, dtype=np.uint64)[ids]
        self._keys = {1: self.word_ids}
        self._joined = {1: self._char_hashes}

    @classmethod
    def _char_hash(cls, word: str) -> tuple[int, int]:
        """(polynomial hash of the characters, base ** length), both mod 2^64, so that
        hash(a + b) = hash(a) · base^len(b) + hash(b): n-gram keys roll forward one word at a time."""
        value, power = 0, 1
        for ch in word:
            value = (value * cls._BASE + ord(ch)) & cls._MASK
            power = (power * cls._BASE) & cls._MASK
        return value, power

    def ngram_keys(self, n: int) -> np.ndarray:
        """One key per n-gram start position (len(words) - n + 1 of them): the sequence of its words."""
        if n not in self._keys:
            shorter = self.ngram_keys(n - 1)
            self._keys[n] = shorter[:-1] * self._MULTIPLIER + self.word_ids[n - 1:]
        return self._keys[n]

    def joined_keys(self, n: int) -> np.ndarray:
        """One key per n-gram start position: the n-gram's characters joined without a separator."""
        if n not in self._joined:
            shorter = self.joined_keys(n - 1)
            self._joined[n] = shorter[:-1] * self._char_powers[n - 1:] + self._char_hashes[n - 1:]
        return self._joined[n]

    def top_ngram_chars(self, n: int) -> int:
        """Characters of the most frequent n-gram joined by spaces, times its count (the first to occur among equally
        frequent ones, as Counter.most_common picks; a text without repeats has its first n-gram "on top")."""
        keys = self.ngram_keys(n)
        if keys.size == 0:
            return 0
        _, first, counts = np.unique(keys, return_index=True, return_counts=True)
        top = counts.max()
        start = int(first[counts == top].min())
        return int(self.char_offsets[start + n] - self.char_offsets[start] + n - 1) * int(top)

    def duplicate_ngram_chars(self, n: int) -> int:
        """Characters of repeated n-grams, scanning left to right: an n-gram seen earlier counts its characters and
        the scan jumps past it; any other n-gram is remembered and the scan moves one word on. Each repeat's words
        count once, and the n-grams jumped over are never remembered (Gopher's reference, datatrove's
        `find_all_duplicate`). Only n-grams that occur twice or more can count, so the scan visits only those."""
        keys = self.joined_keys(n)
        if keys.size == 0:
            return 0
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        starts = np.flatnonzero(counts[inverse] > 1)
        lengths = self.char_offsets[starts + n] - self.char_offsets[starts]
        seen: set[int] = set()
        chars = next_start = 0
        for start, key, length in zip(starts.tolist(), keys[starts].tolist(), lengths.tolist()):
            if start < next_start:
                continue
            if key in seen:
                chars += length
                next_start = start + n
            else:
                seen.add(key)
        return chars


# --- rules ------------------------------------------------------------------------------------------------------------

def length_failure(n_words: int, config: QualityConfig = QualityConfig()) -> QualityFailure | None:
    """The word-count filter alone (n_words from `count_words`): callers run it before language id, which is
    unreliable on a few words."""
    if n_words < config.min_words:
        return QualityFailure("too_few_words", f"{n_words} words < {config.min_words}")
    if n_words > config.max_words:
        return QualityFailure("too_many_words", f"{n_words} words > {config.max_words}")
    return None


def quality_failure(text: str, config: QualityConfig = QualityConfig()) -> QualityFailure | None:
    """The first filter the text fails, with the observed value; None when it passes them all."""
    return next(_failures(text, config), None)


def quality_failures(text: str, config: QualityConfig = QualityConfig()) -> list[QualityFailure]:
    """Every filter the text fails, in the table's order (one failure per n for the n-gram rules)."""
    return list(_failures(text, config))


def quality_reason(text: str, config: QualityConfig = QualityConfig()) -> str | None:
    """Reject code of the first filter the text fails (see the module docstring), or None when it passes."""
    failure = quality_failure(text, config)
    return failure.reason if failure else None


def _failures(text: str, config: QualityConfig) -> Iterator[QualityFailure]:
    """The rules in the table's order, cheapest first; lazy, so `quality_failure` stops at the first failure."""
    words = split_words(text)
    yield from _gopher_quality_failures(text, words, config)
    yield from _c4_failures(text, config)
    yield from _repetition_failures(text, words, config)


def _gopher_quality_failures(text: str, words: tuple[str, ...], config: QualityConfig) -> Iterator[QualityFailure]:
    """Gopher's quality rules (datatrove's GopherQualityFilter): length, word shape, symbols, lists, stop words."""
    lengths = [len(word) for word in words if not is_symbol_word(word)]
    if failure := length_failure(len(lengths), config):
        yield failure
    if lengths:
        mean_length = sum(lengths) / len(lengths)
        if not config.min_mean_word_length <= mean_length <= config.max_mean_word_length:
            yield QualityFailure("mean_word_length", f"mean word length {mean_length:.2f} outside "
                                 f"[{config.min_mean_word_length}, {config.max_mean_word_length}]")
    n_words = max(1, len(words))
    for symbol, count in (("#", text.count("#")), ("ellipsis", text.count("...") + text.count("…"))):
        if count / n_words > config.max_symbol_to_word_ratio:
            yield QualityFailure("symbol_to_word_ratio", f"{symbol} per word {count / n_words:.3f} "
                                 f"> {config.max_symbol_to_word_ratio}")
            break
    lines = text.splitlines() or [""]
    bullet_fraction = sum(1 for line in lines if line.lstrip().startswith(BULLETS)) / len(lines)
    if bullet_fraction > config.max_bullet_line_fraction:
        yield QualityFailure("bullet_lines", f"{bullet_fraction:.3f} > {config.max_bullet_line_fraction}")
    ellipsis_fraction = sum(1 for line in lines if line.rstrip().endswith(ELLIPSES)) / len(lines)
    if ellipsis_fraction > config.max_ellipsis_line_fraction:
        yield QualityFailure("ellipsis_lines", f"{ellipsis_fraction:.3f} > {config.max_ellipsis_line_fraction}")
    alpha_fraction = sum(1 for word in words if any(ch.isalpha() for ch in word)) / n_words
    if alpha_fraction < config.min_alpha_word_fraction:
        yield QualityFailure("few_alpha_words", f"{alpha_fraction:.3f} < {config.min_alpha_word_fraction}")
    stop_words = GOPHER_STOP_WORDS.intersection(words)  # as written: "The" is not "the" in the reference either
    if len(stop_words) < config.min_stop_words:
        yield QualityFailure("stop_words", f"{len(stop_words)} distinct stop words < {config.min_stop_words}")


def _c4_failures(text: str, config: QualityConfig) -> Iterator[QualityFailure]:
    """C4's page rules, on the lines C4 keeps; the curly-brace rule skips lines C4 drops for "javascript"."""
    if not (config.reject_lorem_ipsum or config.reject_curly_braces):
        return
    lines = list(c4_kept_lines(text))
    if config.reject_lorem_ipsum and any("lorem ipsum" in line.lower() for line in lines):
        yield QualityFailure("lorem_ipsum", "a kept line contains 'lorem ipsum'")
    if config.reject_curly_braces and any("{" in line and "javascript" not in line.lower() for line in lines):
        yield QualityFailure("curly_braces", "a kept line contains '{'")


def _repetition_failures(text: str, words: tuple[str, ...], config: QualityConfig) -> Iterator[QualityFailure]:
    """Gopher's repetition rules (datatrove's GopherRepetitionFilter): repeated paragraphs, lines and n-grams
    (boilerplate, spam, generation loops)."""
    total_chars = max(1, len(text))
    for unit, items, max_fraction, max_char_fraction in (
            ("paragraph", PARAGRAPH_BREAK.split(text.strip()), config.max_duplicate_paragraph_fraction,
             config.max_duplicate_paragraph_char_fraction),
            ("line", LINE_BREAKS.split(text), config.max_duplicate_line_fraction,
             config.max_duplicate_line_char_fraction)):
        repeats, repeat_chars = _duplicates(items)
        if repeats / len(items) > max_fraction:
            yield QualityFailure(f"duplicate_{unit}s", f"{repeats}/{len(items)} {unit}s repeat > {max_fraction}")
        if repeat_chars / total_chars > max_char_fraction:
            yield QualityFailure(f"duplicate_{unit}_chars", f"{repeat_chars / total_chars:.3f} > {max_char_fraction}")
    sequence = _WordSequence(words)
    for n, limit in config.max_top_ngram_char_fraction:
        fraction = sequence.top_ngram_chars(n) / total_chars
        if fraction > limit:
            yield QualityFailure("top_ngram_chars", f"top {n}-gram covers {fraction:.3f} > {limit}")
    for n, limit in config.max_duplicate_ngram_char_fraction:
        fraction = sequence.duplicate_ngram_chars(n) / total_chars
        if fraction > limit:
            yield QualityFailure("duplicate_ngram_chars", f"repeated {n}-grams cover {fraction:.3f} > {limit}")


def language_failure(language: str, score: float, config: QualityConfig = QualityConfig()) -> QualityFailure | None:
    """Why a detected (language, probability) is not admitted, or None when it is."""
    if config.languages is not None and language not in config.languages:
        return QualityFailure("lang_not_allowed", f"{language} ({score:.2f}) not in {list(config.languages)}")
    if score < config.min_language_score:
        return QualityFailure("lang_low_score", f"{language} probability {score:.2f} < {config.min_language_score}")
    return None
