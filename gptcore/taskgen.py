"""Task records built from plain documents, for fine-tuning and evaluation when no labelled file exists.

``next_sentence_choices`` makes a Story-Cloze-like multiple-choice task (GPT-1 section 4.2, "Story Cloze"): a few
consecutive sentences as the context, the sentence that really follows as the right ending, and distractors drawn
from elsewhere in the same documents, so every choice has the same style and vocabulary and only coherence with the
context tells them apart. Records use the generic multiple-choice shape of ``gptcore.taskdata``::

    {"context": str, "choices": [str, ...], "label": int}

Everything is a pure function of the documents and the seed: the same inputs always give the same records.
"""
from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence

# A sentence ends at . ! or ? (optionally followed by closing quotes/brackets) before whitespace and a capital or an
# opening quote. Titles such as "Mr." would end a sentence by that rule, so they are masked first.
_ABBREVIATIONS = ("Mr", "Mrs", "Ms", "Dr", "St", "Messrs", "Col", "Capt", "Gen", "Rev", "Sir", "Jr", "Sr", "vs",
                  "etc", "i.e", "e.g")
_ABBREVIATION_RE = re.compile(r"\b(" + "|".join(re.escape(a) for a in _ABBREVIATIONS) + r")\.")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])([\"'\u201d\u2019)\]]*)\s+(?=[\"'\u201c\u2018(\[_]*[A-Z0-9])")
_PLACEHOLDER = "\x00"


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` in order, whitespace (line breaks included) collapsed to single spaces.

    A rule-based splitter, good enough for edited prose (novels, articles); it keeps titles like "Mr." inside
    their sentence and closing quotes with the sentence they close.
    """
    flat = " ".join(text.split())
    if not flat:
        return []
    masked = _ABBREVIATION_RE.sub(lambda m: m.group(1) + _PLACEHOLDER, flat)
    pieces = _SENTENCE_END_RE.sub(lambda m: m.group(1) + "\n", masked).split("\n")
    return [piece.replace(_PLACEHOLDER, ".").strip() for piece in pieces if piece.strip()]


def next_sentence_choices(documents: Iterable[str], n_choices: int = 4, seed: int = 0, context_sentences: int = 4,
                          min_words: int = 4, max_words: int = 60, max_records: int | None = None,
                          max_bytes: int | None = None) -> list[dict]:
    """Multiple-choice "which sentence comes next" records from ``documents`` (e.g. held-out chapters).

    Each document is cut into non-overlapping windows of ``context_sentences + 1`` sentences; the last sentence
    of a window is the right answer, and ``n_choices - 1`` distractors are drawn from the sentences of all the
    documents outside that window (never a sentence equal to the answer or to another choice). Only windows whose
    answer has ``min_words``..``max_words`` words are used, and distractors come from the same length range, so
    length alone does not give the answer away; ``max_bytes`` (UTF-8) bounds every choice the same way, e.g. so an
    answer fits a small model's context. The right answer's position is uniformly random (seeded).
    Returns at most ``max_records`` records (all when None), in document order.
    """
    if n_choices < 2:
        raise ValueError(f"n_choices must be at least 2 (the answer and a distractor), got {n_choices}")
    if context_sentences < 1:
        raise ValueError(f"context_sentences must be at least 1, got {context_sentences}")
    rng = random.Random(seed)
    sentences_per_doc = [split_sentences(doc) for doc in documents]
    window = context_sentences + 1

    # Distractor pool: (document, position, sentence) of every sentence of acceptable length.
    def usable(sentence: str) -> bool:
        return (min_words <= len(sentence.split()) <= max_words
                and (max_bytes is None or len(sentence.encode("utf-8")) <= max_bytes))

    pool = [(d, i, s) for d, sentences in enumerate(sentences_per_doc) for i, s in enumerate(sentences) if usable(s)]
    if len({s for _, _, s in pool}) < n_choices:
        raise ValueError(f"the documents have {len(pool)} sentences of {min_words}-{max_words} words"
                         + (f" and at most {max_bytes} bytes" if max_bytes is not None else "") + "; "
                         f"{n_choices} choices need at least {n_choices} distinct ones: pass more text")

    records: list[dict] = []
    for d, sentences in enumerate(sentences_per_doc):
        for start in range(0, len(sentences) - window + 1, window):
            context, answer = sentences[start:start + context_sentences], sentences[start + context_sentences]
            if not usable(answer):
                continue
            choices = [answer, *_distractors(rng, pool, d, range(start, start + window), answer, n_choices - 1)]
            order = list(range(n_choices))
            rng.shuffle(order)
            records.append({"context": " ".join(context), "choices": [choices[k] for k in order],
                            "label": order.index(0)})
            if max_records is not None and len(records) >= max_records:
                return records
    return records


def _distractors(rng: random.Random, pool: Sequence[tuple[int, int, str]], document: int, window: range, answer: str,
                 count: int) -> list[str]:
    """``count`` distinct pool sentences that are not the answer and not inside the current window."""

    def eligible(d: int, i: int, sentence: str, chosen: list[str]) -> bool:
        return not (d == document and i in window) and sentence != answer and sentence not in chosen

    chosen: list[str] = []
    for _ in range(20 * count):  # random draws first: almost always enough, and cheap on a large pool
        d, i, sentence = pool[rng.randrange(len(pool))]
        if eligible(d, i, sentence, chosen):
            chosen.append(sentence)
            if len(chosen) == count:
                return chosen
    # A small or repetitive pool: pick among what is left explicitly, so this always terminates.
    rest = [s for d, i, s in pool if eligible(d, i, s, chosen)]
    rest = sorted(set(rest), key=rest.index)
    if len(rest) < count - len(chosen):
        raise ValueError(f"not enough distinct sentences outside the context to make {count} distractors for "
                         f"{answer!r}: pass more text or fewer n_choices")
    return chosen + rng.sample(rest, count - len(chosen))
