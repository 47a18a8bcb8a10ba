"""Quality-filter benchmark: gptforge's Gopher / C4 rules against datatrove's, rule by rule, on real text.

Reference: datatrove's `GopherQualityFilter`, `GopherRepetitionFilter` and `C4QualityFilter` (the `bench` extra),
each rule run alone with the thresholds of the same `QualityConfig` (`datatrove_rules`), on the same text.

Texts (about 300), extracted as `process_page` extracts them (`extract_main_text` + `clean_text`):
- the real documentation pages `$GPTFORGE_SHARED_DATA/web/html/<section>/*.html` (default: ../shared/data next to
  the repository), with their navigation and sidebars;
- the demo site's pydoc pages (`flows.demo.site.build_site`, 120 pages and their near-duplicates);
- the chapters of the two novels in `$GPTFORGE_SHARED_DATA/books` (plain text, not extracted).

Prints, for each rule: how many texts each side rejects and on how many texts the two decide the same (the target
is every one); pages kept by the whole default config on each side; and docs/s of each over the same texts, with
the ratio gptforge / datatrove. The datatrove side runs its three filters one after the other and stops at the first
rejection, as a datatrove pipeline does; each side tokenizes each text once (both cache the words of recent texts).

Run: .venv/bin/python bench/bench_quality.py
"""
from __future__ import annotations

import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter
from datatrove.pipeline.filters.base_filter import BaseFilter

from gptcore.corpus.clean import clean_text
from gptcore.corpus.extract import ExtractConfig, extract_main_text
from gptcore.corpus.quality import QualityConfig, quality_failure, quality_failures, split_words

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("GPTFORGE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
CHAPTER = re.compile(r"\n(?=(?:Chapter|CHAPTER) \d+\n)")
DEMO_PAGES = 120
SPEED_PASSES = 3

_NO_GOPHER_QUALITY = dict(min_doc_words=None, max_doc_words=None, min_avg_word_length=None, max_avg_word_length=None,
                          max_symbol_word_ratio=None, max_bullet_lines_ratio=None, max_ellipsis_lines_ratio=None,
                          max_non_alpha_words_ratio=None, min_stop_words=None)
_NO_GOPHER_REPETITION = dict(dup_line_frac=None, dup_para_frac=None, dup_line_char_frac=None, dup_para_char_frac=None,
                             top_n_grams=(), dup_n_grams=())


def datatrove_rules(config: QualityConfig = QualityConfig()) -> dict[str, BaseFilter]:
    """gptforge reject code → the datatrove filter that applies that rule alone, with the config's thresholds."""
    def quality(**rule) -> GopherQualityFilter:
        return GopherQualityFilter(**{**_NO_GOPHER_QUALITY, **rule})

    def repetition(**rule) -> GopherRepetitionFilter:
        return GopherRepetitionFilter(**{**_NO_GOPHER_REPETITION, **rule})

    return {
        "too_few_words": quality(min_doc_words=config.min_words),
        "too_many_words": quality(max_doc_words=config.max_words),
        "mean_word_length": quality(min_avg_word_length=config.min_mean_word_length,
                                    max_avg_word_length=config.max_mean_word_length),
        "symbol_to_word_ratio": quality(max_symbol_word_ratio=config.max_symbol_to_word_ratio),
        "bullet_lines": quality(max_bullet_lines_ratio=config.max_bullet_line_fraction),
        "ellipsis_lines": quality(max_ellipsis_lines_ratio=config.max_ellipsis_line_fraction),
        "few_alpha_words": quality(max_non_alpha_words_ratio=config.min_alpha_word_fraction),
        "stop_words": quality(min_stop_words=config.min_stop_words),
        # C4's page rules with its line rules as they are, and without its sentence count (a separate rule).
        "lorem_ipsum": C4QualityFilter(filter_curly_bracket=False, min_num_sentences=-1),
        "curly_braces": C4QualityFilter(filter_lorem_ipsum=False, min_num_sentences=-1),
        "duplicate_paragraphs": repetition(dup_para_frac=config.max_duplicate_paragraph_fraction),
        "duplicate_paragraph_chars": repetition(dup_para_char_frac=config.max_duplicate_paragraph_char_fraction),
        "duplicate_lines": repetition(dup_line_frac=config.max_duplicate_line_fraction),
        "duplicate_line_chars": repetition(dup_line_char_frac=config.max_duplicate_line_char_fraction),
        "top_ngram_chars": repetition(top_n_grams=config.max_top_ngram_char_fraction),
        "duplicate_ngram_chars": repetition(dup_n_grams=config.max_duplicate_ngram_char_fraction),
    }


def rejected_by(rule: BaseFilter, text: str) -> bool:
    with warnings.catch_warnings():  # numpy warns on the mean of no words; datatrove then compares NaN (passes)
        warnings.simplefilter("ignore", RuntimeWarning)
        return rule.filter(Document(text=text, id="bench")) is not True  # C4 edits the text: a fresh document each


def datatrove_pipeline(config: QualityConfig = QualityConfig()) -> list[BaseFilter]:
    """The whole config as a datatrove pipeline would run it (C4 last: it deletes lines)."""
    return [
        GopherQualityFilter(min_doc_words=config.min_words, max_doc_words=config.max_words,
                            min_avg_word_length=config.min_mean_word_length,
                            max_avg_word_length=config.max_mean_word_length,
                            max_symbol_word_ratio=config.max_symbol_to_word_ratio,
                            max_bullet_lines_ratio=config.max_bullet_line_fraction,
                            max_ellipsis_lines_ratio=config.max_ellipsis_line_fraction,
                            max_non_alpha_words_ratio=config.min_alpha_word_fraction,
                            min_stop_words=config.min_stop_words),
        GopherRepetitionFilter(dup_line_frac=config.max_duplicate_line_fraction,
                               dup_para_frac=config.max_duplicate_paragraph_fraction,
                               dup_line_char_frac=config.max_duplicate_line_char_fraction,
                               dup_para_char_frac=config.max_duplicate_paragraph_char_fraction,
                               top_n_grams=config.max_top_ngram_char_fraction,
                               dup_n_grams=config.max_duplicate_ngram_char_fraction),
        C4QualityFilter(filter_lorem_ipsum=config.reject_lorem_ipsum, filter_curly_bracket=config.reject_curly_braces,
                        min_num_sentences=-1),
    ]


def extracted(html_path: Path) -> str:
    return clean_text(extract_main_text(html_path.read_text(encoding="utf-8"), ExtractConfig()).text)


def load_texts() -> dict[str, list[str]]:
    """Texts by kind: the real documentation pages, the demo's pydoc pages, book chapters."""
    from flows.demo.site import build_site, read_site

    docs = sorted((SHARED_DATA / "web" / "html").glob("*/*.html"))
    books = sorted((SHARED_DATA / "books").glob("*.txt"))
    if not docs or not books:
        raise SystemExit(f"no documentation pages or books under {SHARED_DATA}: set GPTFORGE_SHARED_DATA")
    with tempfile.TemporaryDirectory() as site:
        build_site(Path(site), DEMO_PAGES)
        demo = [extracted(Path(site) / page.path) for page in read_site(Path(site))]
    chapters = [chapter for book in books for chapter in CHAPTER.split(clean_text(book.read_text(encoding="utf-8")))]
    return {"docs pages": [extracted(path) for path in docs], "demo pydoc pages": demo, "book chapters": chapters}


def docs_per_second(keeps: Callable[[str], bool], texts: list[str]) -> tuple[float, int]:
    """(docs/s over SPEED_PASSES passes, texts kept); the caches of words are emptied before each pass."""
    from datatrove.utils.text import split_into_parts

    kept, start = 0, time.perf_counter()
    for _ in range(SPEED_PASSES):
        split_words.cache_clear()
        split_into_parts.cache_clear()
        kept = sum(map(keeps, texts))
    return SPEED_PASSES * len(texts) / (time.perf_counter() - start), kept


def main() -> None:
    config = QualityConfig(reject_curly_braces=True)  # every rule on, for the rule-by-rule comparison
    by_kind = load_texts()
    texts = [text for kind in by_kind.values() for text in kind]
    print(f"{len(texts)} texts ({sum(map(len, texts)) / 1e6:.2f} M characters): "
          + ", ".join(f"{len(kind)} {name}" for name, kind in by_kind.items()))

    rules = datatrove_rules(config)
    ours = [{failure.reason for failure in quality_failures(text, config)} for text in texts]
    print(f"\nper rule, all rules on ({len(texts)} texts): texts rejected by each side, texts decided the same")
    print(f"{'rule':28s} {'gptforge':>9s} {'datatrove':>9s} {'agree':>7s}")
    disagreements = 0
    for code, rule in rules.items():
        theirs = [rejected_by(rule, text) for text in texts]
        mine = [code in reasons for reasons in ours]
        agree = sum(a == b for a, b in zip(mine, theirs))
        disagreements += len(texts) - agree
        print(f"{code:28s} {sum(mine):9d} {sum(theirs):9d} {agree:4d}/{len(texts)}")
    print(f"decisions that differ: {disagreements} (target 0)")

    default = QualityConfig()
    pipeline = datatrove_pipeline(default)
    print(f"\nkept by the default config (curly-brace rule off), by kind")
    for name, kind in by_kind.items():
        kept_ours = sum(quality_failure(text, default) is None for text in kind)
        kept_theirs = sum(not any(rejected_by(rule, text) for rule in pipeline) for text in kind)
        print(f"{name:20s} gptforge {kept_ours:4d}/{len(kind)}   datatrove {kept_theirs:4d}/{len(kind)}")

    ours_rate, ours_kept = docs_per_second(lambda text: quality_failure(text, default) is None, texts)
    theirs_rate, theirs_kept = docs_per_second(
        lambda text: not any(rejected_by(rule, text) for rule in pipeline), texts)
    print(f"\nspeed, default config, 1 process, {SPEED_PASSES} passes over the {len(texts)} texts")
    print(f"{'':28s} {'docs/s':>8s} {'kept':>6s}")
    print(f"{'gptforge quality_failure':28s} {ours_rate:8.1f} {ours_kept:6d}")
    print(f"{'datatrove (3 filters)':28s} {theirs_rate:8.1f} {theirs_kept:6d}")
    print(f"ratio gptforge / datatrove: {ours_rate / theirs_rate:.2f}x")


if __name__ == "__main__":
    main()
