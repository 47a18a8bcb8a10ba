"""Text cleaning: repair encoding damage and standardize whitespace, keeping the text as a reader would see it.

The corpus feeds a GPT-2-style byte-level BPE, which can represent any string, so nothing is lowercased or
ASCII-folded: case, accents, non-Latin scripts, dashes and emoji are all kept. What changes, and why:

1. ftfy's `fix_text` with its defaults (the GPT-1 reference code, finetune-transformer-lm's `text_utils.py`, ran
   ftfy over its corpus too). It repairs mojibake ("donâ€™t" → "don't"), unescapes stray HTML entities when the text
   has no markup, fixes ligatures ("ﬁ" → "fi") and full-width Latin letters, turns curly quotes into straight ones
   (one spelling per quote halves the ways the tokenizer sees the same word), normalizes line breaks (CRLF, CR,
   U+2028/U+2029 → "\\n") and applies Unicode NFC.
2. Unicode NFC again, so the contract holds even for text ftfy leaves untouched.
3. Control characters (category Cc) other than "\\n" and "\\t" are removed, and so are the invisible characters that
   only split words for a tokenizer: zero-width space U+200B, word joiner U+2060, BOM U+FEFF and soft hyphen U+00AD.
   Zero-width (non-)joiners and bidi marks stay: emoji sequences and Persian/Indic scripts need them.
4. Whitespace: every Unicode space separator (no-break space, thin space, ideographic space, …) becomes " ";
   inside a line, runs of spaces and tabs become one space; trailing whitespace is stripped; at most one blank line
   separates paragraphs; the document is stripped at both ends. Leading indentation is kept (normalized to
   spaces where it used Unicode spaces), because in code listings and nested lists it carries meaning.

Other punctuation (dashes, ellipses, guillemets) is left as written.
"""
from __future__ import annotations

import re
import unicodedata

import ftfy

_FTFY_CONFIG = ftfy.TextFixerConfig(explain=False)  # same fixes as the defaults, without building an explanation
_FTFY_CONFIG_NO_UNESCAPE = _FTFY_CONFIG._replace(unescape_html=False)
_INVISIBLE = "\u200b\u2060\ufeff\u00ad"
# Cc except \t and \n; \r is gone after ftfy's line-break fix but is listed so cleaning holds without it.
_CONTROL_OR_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f" + _INVISIBLE + "]")
# Unicode space separators (category Zs) other than the ASCII space.
_UNICODE_SPACES = re.compile("[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_INNER_RUN = re.compile(r"(?<=\S)[ \t]{2,}(?=\S)|(?<=\S)\t(?=\S)")
_TRAILING = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{3,}")


def _needs_ftfy(line: str, unescape_html: bool) -> bool:
    """False for lines ftfy would return unchanged: ASCII without terminal escapes, bare CRs or (when unescaping)
    HTML entities; mojibake, curly quotes, ligatures and full-width letters all involve non-ASCII characters."""
    return not line.isascii() or "\x1b" in line or "\r" in line or (unescape_html and "&" in line)


def fix_text(text: str) -> str:
    """ftfy's default fixes, applied line by line (as ftfy does) but only to the lines that need them.

    Web text is mostly ASCII lines, and skipping them makes this several times faster than `ftfy.fix_text`. One
    deliberate difference: ftfy stops unescaping HTML entities from the first line containing "<" onwards; here a
    "<" anywhere means no line is unescaped, so the result does not depend on where the first "<" happens to be.
    """
    text = text.replace("\r\n", "\n")
    unescape_html = "<" not in text
    config = _FTFY_CONFIG if unescape_html else _FTFY_CONFIG_NO_UNESCAPE
    return "\n".join(ftfy.fix_text(line, config) if _needs_ftfy(line, unescape_html) else line
                     for line in text.split("\n"))


def clean_text(text: str) -> str:
    """Repaired, NFC-normalized text with standardized whitespace (see the module docstring for each rule)."""
    text = fix_text(text)
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL_OR_INVISIBLE.sub("", text)
    text = _UNICODE_SPACES.sub(" ", text)
    text = _INNER_RUN.sub(" ", text)
    text = _TRAILING.sub("", text)
    text = _BLANK_RUNS.sub("\n\n", text)
    return text.strip()
