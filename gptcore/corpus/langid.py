"""Language identification with the langid.py model bundled in the py3langid package (no download).

GPT-2's WebText was English-only by construction (English Reddit); CCNet and Gopher filter by a language-id
score instead, which is what this enables.
"""
from __future__ import annotations

from functools import lru_cache

from py3langid.langid import MODEL_FILE, LanguageIdentifier

# Language is settled long before 5,000 characters; classifying a whole book would only cost time.
MAX_CHARS = 5_000


@lru_cache(maxsize=1)
def load_language_model() -> LanguageIdentifier:
    """The model, loaded once per process (~0.5 s) on first use; forked workers inherit a loaded one."""
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_language(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability in [0, 1]) of the most likely language of the text's first MAX_CHARS chars.

    The probability is normalized over the model's languages; on text with no features (empty, digits only) it
    is spread evenly (or goes to "zxx", no linguistic content), so any sensible minimum score or allow-list
    rejects it.
    """
    language, probability = load_language_model().classify(text[:MAX_CHARS])
    return language, float(probability)
