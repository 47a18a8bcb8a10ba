"""GPT-1's text pipeline before BPE: ftfy, punctuation/whitespace standardization, spaCy words, lowercase.

Reproduces ``TextEncoder.encode`` of openai/finetune-transformer-lm (``text_utils.py``), the code released with
GPT-1 (Radford et al., 2018): ``nlp(text_standardize(ftfy.fix_text(text)))``, then each spaCy token lowercased and
split into BPE symbols with ``</w>`` on its last character. spaCy cannot live inside ``tokenizer.json``, so
``gpt1_pretokenize`` returns the words joined by single spaces and the saved tokenizer only splits on spaces:
``tokenizer.encode(gpt1_pretokenize(text))`` is GPT-1's encoding.

The pipeline is lossy by design (case, dashes, ellipses and spacing are normalized), so a GPT-1 tokenizer decodes to
``gpt1_pretokenize(text)``, not to ``text``.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator

import ftfy
import spacy
from spacy.tokenizer import Tokenizer as SpacyTokenizer

# Runs of these characters become separate words (GPT-1's comment: "fixes some issues the spacy tokenizer had on
# books corpus").
_SPACED_PUNCTUATION = re.compile(r"""(-+|~+|!+|"+|;+|\?+|\++|,+|\)+|\(+|\\+|/+|\*+|\[+|\]+|}+|{+|\|+|_+)""")
_NEWLINE_WITH_SPACE = re.compile(r"\s*\n\s*")
_SPACES_BUT_NEWLINE = re.compile(r"[^\S\n]+")


def text_standardize(text: str) -> str:
    """GPT-1's ``text_standardize``: unify dashes, ellipsis and acute accent, space out punctuation runs, keep each
    line break as one ``\\n`` word, and collapse other whitespace to single spaces."""
    text = text.replace("\u2014", "-")  # — em dash
    text = text.replace("\u2013", "-")  # – en dash
    text = text.replace("\u2015", "-")  # ― horizontal bar
    text = text.replace("\u2026", "...")  # … ellipsis
    text = text.replace("\u00b4", "'")  # ´ acute accent used as an apostrophe
    text = _SPACED_PUNCTUATION.sub(r" \1 ", text)
    text = _NEWLINE_WITH_SPACE.sub(" \n ", text)
    text = _SPACES_BUT_NEWLINE.sub(" ", text)
    return text.strip()


@functools.lru_cache(maxsize=1)
def _english_tokenizer() -> SpacyTokenizer:
    """spaCy's rule-based English tokenizer (no model download; GPT-1 used spaCy's 'en' with every component off)."""
    return spacy.blank("en").tokenizer


def gpt1_pretokenize(text: str) -> str:
    """GPT-1's words of ``text``, lowercased and joined by single spaces; a line break is the word ``\\n``."""
    return next(gpt1_pretokenize_many([text]))


def gpt1_pretokenize_many(texts: Iterable[str], batch_size: int = 64) -> Iterator[str]:
    """``gpt1_pretokenize`` over many texts, batched through spaCy."""
    standardized = (text_standardize(ftfy.fix_text(text)) for text in texts)
    for doc in _english_tokenizer().pipe(standardized, batch_size=batch_size):
        yield " ".join(_gpt1_words(doc))


def _gpt1_words(doc: spacy.tokens.Doc) -> Iterator[str]:
    for token in doc:
        word = token.text.lower()
        if word.isspace():
            # spaCy makes whitespace tokens such as "\n " around line breaks; GPT-1 encoded them as "\n</w>".
            if "\n" in word:
                yield "\n"
            continue
        yield word
