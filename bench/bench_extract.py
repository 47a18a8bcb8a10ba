"""Extraction benchmark: speed of the per-shard unit against trafilatura, and extraction quality against sources.

Data: real HTML pages with their reStructuredText sources, `$GPTFORGE_SHARED_DATA/web/html/<section>/<page>.html`
and `.../web/sources/<section>/<page>.rst.txt` (default: ../shared/data next to the repository).

Speed: pages per second of `process_pages_parallel` (decode, extract, clean, language id, quality filters, on all
cores) against the named peer, single-process `trafilatura.extract(html)` with default settings (extraction only).
The page set is repeated until the peer needs at least MIN_PEER_SECONDS.

Quality: word-level precision, recall and F1 of each extractor's text against the page's source. Both sides are
lowercased and cut into words (runs of letters and digits); the score is a bag-of-words overlap, micro-averaged
over all pages: overlap = sum over words of min(count in extract, count in source), precision = overlap / extract
words, recall = overlap / source words. reST markup that never renders (directive and comment lines starting with
".. ", role names like ":term:") is removed from the sources first; the rest of the markup stays, so absolute recall
is a little understated, equally for every extractor.

Run: .venv/bin/python bench/bench_extract.py
"""
from __future__ import annotations

import math
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import trafilatura

from gptcore.corpus.clean import clean_text
from gptcore.corpus.extract import ExtractConfig, decode_body, extract_main_text
from gptcore.corpus.process import process_pages, process_pages_parallel
from gptcore.corpus.records import Page, doc_id_for

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("GPTFORGE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
MIN_PEER_SECONDS = 10.0
WORD = re.compile(r"[^\W_]+")
REST_DIRECTIVE_LINE = re.compile(r"^\s*\.\. .*$", re.MULTILINE)
REST_ROLE = re.compile(r":[\w:+-]+:(?=`)")


def load_pages() -> list[tuple[Page, str]]:
    """(page, source text) for every HTML page that has a source."""
    html_root, source_root = SHARED_DATA / "web" / "html", SHARED_DATA / "web" / "sources"
    pairs = []
    for html_path in sorted(html_root.glob("*/*.html")):
        source_path = source_root / html_path.relative_to(html_root).with_suffix(".rst.txt")
        if source_path.exists():
            url = f"file://{html_path}"
            page = Page(doc_id=doc_id_for(url), url=url, body=html_path.read_bytes(), content_type="text/html",
                        source="warc", input=str(html_path))
            pairs.append((page, source_path.read_text(encoding="utf-8")))
    if not pairs:
        raise SystemExit(f"no HTML pages with sources under {SHARED_DATA}/web: set GPTFORGE_SHARED_DATA")
    return pairs


def words(text: str) -> Counter[str]:
    return Counter(WORD.findall(text.lower()))


def reference_words(rst: str) -> Counter[str]:
    return words(REST_ROLE.sub("", REST_DIRECTIVE_LINE.sub("", rst)))


def precision_recall_f1(extracts: list[str], sources: list[str]) -> tuple[float, float, float]:
    overlap = extracted = reference = 0
    for extract, source in zip(extracts, sources):
        got, want = words(extract), reference_words(source)
        overlap += sum((got & want).values())
        extracted += sum(got.values())
        reference += sum(want.values())
    precision, recall = overlap / max(1, extracted), overlap / max(1, reference)
    return precision, recall, 2 * precision * recall / max(1e-12, precision + recall)


def timed(function: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main() -> None:
    pairs = load_pages()
    pages = [page for page, _ in pairs]
    sources = [source for _, source in pairs]
    workers = os.cpu_count() or 1
    print(f"{len(pages)} pages ({sum(len(p.body) for p in pages) / 1e6:.1f} MB) from {SHARED_DATA / 'web'}, "
          f"{workers} cores")

    # Calibrate the repeat count on one pass of the peer (which also warms its imports and caches).
    _, one_pass = timed(lambda: [trafilatura.extract(page.body) for page in pages])
    repeats = max(1, math.ceil(MIN_PEER_SECONDS / one_pass))
    workload = pages * repeats
    _, peer_seconds = timed(lambda: [trafilatura.extract(page.body) for page in workload])
    process_pages(pages[:2])  # warm this process's imports and language model for the single-process run
    _, single_seconds = timed(lambda: process_pages(workload))
    (documents, rejects), parallel_seconds = timed(lambda: process_pages_parallel(workload, workers=workers))

    peer_rate, single_rate, parallel_rate = (len(workload) / s for s in (peer_seconds, single_seconds, parallel_seconds))
    print(f"\nspeed on {len(workload)} pages ({repeats} repeats of the set)")
    print(f"{'pipeline':58s} {'seconds':>8s} {'pages/s':>8s} {'ratio':>6s}")
    print(f"{'trafilatura.extract default, 1 process (peer)':58s} {peer_seconds:8.2f} {peer_rate:8.1f} {1:6.2f}")
    print(f"{'process_pages, 1 process':58s} {single_seconds:8.2f} {single_rate:8.1f} {single_rate / peer_rate:6.2f}")
    print(f"{f'process_pages_parallel, {workers} workers':58s} {parallel_seconds:8.2f} {parallel_rate:8.1f} "
          f"{parallel_rate / peer_rate:6.2f}")
    print(f"(process_pages also cleans, identifies language and filters: {len(documents) // repeats} documents, "
          f"{len(rejects) // repeats} rejects per pass)")

    extractors: list[tuple[str, Callable[[Page], str]]] = [
        ("trafilatura default (peer)", lambda page: trafilatura.extract(page.body) or ""),
        ("trafilatura fast=True", lambda page: trafilatura.extract(page.body, fast=True) or ""),
        ("trafilatura favor_precision", lambda page: trafilatura.extract(page.body, favor_precision=True) or ""),
        ("trafilatura favor_recall", lambda page: trafilatura.extract(page.body, favor_recall=True) or ""),
        ("resiliparse main content + clean_text (chosen)", lambda page: clean_text(
            extract_main_text(decode_body(page.body, page.content_type), ExtractConfig()).text)),
    ]
    print(f"\nextraction quality vs sources, {len(pages)} pages (bag-of-words, micro-averaged)")
    print(f"{'extractor':48s} {'P':>6s} {'R':>6s} {'F1':>6s} {'pages/s':>8s}")
    scores = {}
    for name, extract in extractors:
        extracts, seconds = timed(lambda: [extract(page) for page in pages])
        precision, recall, f1 = scores[name] = precision_recall_f1(extracts, sources)
        print(f"{name:48s} {precision:6.3f} {recall:6.3f} {f1:6.3f} {len(pages) / seconds:8.1f}")

    chosen_f1, peer_f1 = scores[extractors[-1][0]][2], scores[extractors[0][0]][2]
    print(f"\nspeed ratio (parallel pipeline / peer): {parallel_rate / peer_rate:.2f}x (target >= 1.7x on 2 cores)")
    print(f"F1 ratio (chosen / peer): {chosen_f1 / peer_f1:.3f} (target >= 1.0)")


if __name__ == "__main__":  # the process pool's workers import this module: keep the run behind the guard
    main()
