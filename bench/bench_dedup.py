"""MinHash near-duplicate detection: gptforge's dedup vs datatrove's four MinHash stages on the same documents.

Documents: windows of consecutive paragraphs (150–350 words) from the two novels in `books/` and the Python
documentation sources in `web/sources/` of the shared data folder ($GPTFORGE_SHARED_DATA, default ../shared/data
relative to the repository root), plus one planted near-duplicate for a quarter of them, made by a random mix of:

* a header line added or a footer line added (a "Posted by …" / "Share this …" boilerplate line),
* 1–2 % of the words replaced, inserted or deleted,
* formatting only: line breaks re-wrapped, doubled spaces, case changes, commas dropped or added.

Each planted copy is regenerated with fewer edits until its word 5-gram Jaccard similarity to its original (on
normalized text) is ≥ 0.8, the range 14×8 LSH is meant to catch; the printed range is measured. Non-planted windows
are distinct text. Both pipelines use 14 bands × 8 hashes over 5-grams and run in one process (datatrove:
LocalPipelineExecutor, workers=1; stage 1 tasks=1, stage 2 tasks=14 as it requires one task per bucket, stages 3–4
tasks=1). datatrove's default English word tokenizer needs spaCy, which is not installed; it gets a whitespace
tokenizer instead, which is faster than spaCy, so its numbers here are if anything optimistic. Its shingle hash is its
default xxhash64, called on UTF-8 bytes (datatrove 0.10 passes str, which xxhash ≥ 4 refuses).

Each pipeline runs --repeats times (default 3) and the fastest run is reported.

Run: .venv/bin/python bench/bench_dedup.py [--copy-fraction 0.25] [--seed 0] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from gptcore.corpus.dedup import deduplicate
from gptcore.corpus.minhash import MinHashConfig, fingerprint_table, normalize_for_hash

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("GPTFORGE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
CONFIG = MinHashConfig(num_perm=112, bands=14, rows=8, ngram=5)
HEADERS = ["Posted by {user} on {date}", "Originally published {date} | {user}", "Home > Articles > {user}"]
FOOTERS = ["Share this: Twitter Facebook Email", "Comments ({n}) | Report abuse", "Copyright {year} {user}. All rights reserved."]


# --- documents ------------------------------------------------------------------------------------------------


def source_texts() -> list[str]:
    books = sorted((SHARED_DATA / "books").glob("*.txt"))
    pages = sorted((SHARED_DATA / "web" / "sources").rglob("*.rst.txt"))
    if not books or not pages:
        raise SystemExit(f"no books/*.txt or web/sources/**/*.rst.txt under {SHARED_DATA}: set GPTFORGE_SHARED_DATA")
    return [path.read_text(encoding="utf-8") for path in books + pages]


def paragraph_windows(text: str, rng: random.Random) -> Iterator[str]:
    """Consecutive blank-line-separated paragraphs joined until the window reaches 150–350 words."""
    window: list[str] = []
    n_words, target = 0, rng.randint(150, 350)
    for paragraph in re.split(r"\n\s*\n", text):
        if not paragraph.strip():
            continue
        window.append(paragraph.strip())
        n_words += len(paragraph.split())
        if n_words >= target:
            yield "\n\n".join(window)
            window, n_words, target = [], 0, rng.randint(150, 350)


def shingles(text: str) -> set[str]:
    words = normalize_for_hash(text).split(" ")
    return {" ".join(words[i : i + CONFIG.ngram]) for i in range(max(1, len(words) - CONFIG.ngram + 1))}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def boilerplate(templates: list[str], rng: random.Random) -> str:
    return rng.choice(templates).format(
        user=f"user{rng.randint(1, 9999)}", date=f"2019-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        n=rng.randint(0, 99), year=rng.randint(2005, 2020),
    )


def edit_words(text: str, fraction: float, rng: random.Random) -> str:
    words = text.split(" ")
    for _ in range(max(1, round(len(words) * fraction))):
        position = rng.randrange(len(words))
        operation = rng.choice(["replace", "insert", "delete"])
        if operation == "replace":
            words[position] = rng.choice(["very", "quite", "indeed", "the", "also", "perhaps", "however"])
        elif operation == "insert":
            words.insert(position, rng.choice(["really", "simply", "again", "then", "just"]))
        elif len(words) > 1:
            del words[position]
    return " ".join(words)


def reformat(text: str, rng: random.Random) -> str:
    text = re.sub(r"\s+", lambda m: rng.choice([" ", "  ", "\n", " "]), text)
    text = text.replace(",", "") if rng.random() < 0.5 else text.replace(" and ", ", and ")
    return text.upper() if rng.random() < 0.2 else "".join(c.upper() if rng.random() < 0.02 else c for c in text)


def near_duplicate(original: str, rng: random.Random) -> tuple[str, str]:
    """A planted copy and a description of its edits; fewer edits each retry until Jaccard ≥ 0.8."""
    fraction = rng.uniform(0.01, 0.02)
    for _ in range(6):
        edits, copy = [], original
        if rng.random() < 0.5:
            copy, edits = boilerplate(HEADERS, rng) + "\n" + copy, edits + ["header"]
        if rng.random() < 0.5:
            copy, edits = copy + "\n" + boilerplate(FOOTERS, rng), edits + ["footer"]
        if rng.random() < 0.85:
            copy, edits = edit_words(copy, fraction, rng), edits + [f"words {fraction:.1%}"]
        copy, edits = reformat(copy, rng), edits + ["format"]
        if jaccard(original, copy) >= 0.8:
            return copy, "+".join(edits)
        fraction /= 2
    return reformat(original, rng), "format"


def build_corpus(copy_fraction: float, seed: int) -> tuple[list[str], list[str], list[tuple[str, str]], list[float]]:
    """(doc_ids, texts, planted (original, copy) id pairs, planted-pair Jaccards). Copies follow all originals."""
    rng = random.Random(seed)
    originals = [window for text in source_texts() for window in paragraph_windows(text, rng)]
    doc_ids = [f"orig-{i:05d}" for i in range(len(originals))]
    texts = list(originals)
    planted, similarities = [], []
    for index in rng.sample(range(len(originals)), round(len(originals) * copy_fraction)):
        copy, _ = near_duplicate(originals[index], rng)
        planted.append((doc_ids[index], f"copy-{index:05d}"))
        similarities.append(jaccard(originals[index], copy))
        doc_ids.append(f"copy-{index:05d}")
        texts.append(copy)
    return doc_ids, texts, planted, similarities


# --- the two pipelines ----------------------------------------------------------------------------------------


def run_ours(doc_ids: list[str], texts: list[str]) -> tuple[set[str], float, float]:
    """Removed doc_ids, fingerprint seconds, dedup seconds."""
    start = time.perf_counter()
    table = fingerprint_table(doc_ids, texts, CONFIG)
    fingerprinted = time.perf_counter()
    result = deduplicate(table, None, CONFIG)
    done = time.perf_counter()
    return {row["doc_id"] for row in result.rejects}, fingerprinted - start, done - fingerprinted


def run_datatrove(doc_ids: list[str], texts: list[str], workdir: Path) -> tuple[set[str], dict[str, float]]:
    """Removed doc_ids and seconds per stage of datatrove's MinHash pipeline."""
    from datatrove.data import Document
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.utils.word_tokenizers import WordTokenizer
    import xxhash

    class WhitespaceTokenizer(WordTokenizer):
        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    config = MinhashConfig(n_grams=CONFIG.ngram, num_buckets=CONFIG.bands, hashes_per_bucket=CONFIG.rows)
    documents = [Document(text=text, id=doc_id) for doc_id, text in zip(doc_ids, texts)]
    kept: list[str] = []

    def collect(data, rank: int = 0, world_size: int = 1):
        for document in data:
            kept.append(document.id)
            yield document

    signature = MinhashDedupSignature(str(workdir / "sigs"), config, language=WhitespaceTokenizer())
    # datatrove 0.10 passes str to xxhash.xxh64_intdigest, which xxhash ≥ 4 refuses; encode first, same hash.
    signature._hash_func = lambda shingle: xxhash.xxh64_intdigest(shingle.encode("utf-8"))
    stages = {
        "signatures": ([documents, signature], 1),
        "buckets": ([MinhashDedupBuckets(str(workdir / "sigs"), str(workdir / "buckets"), config=config)], CONFIG.bands),
        "cluster": ([MinhashDedupCluster(str(workdir / "buckets"), str(workdir / "remove"), config=config)], 1),
        "filter": ([documents, MinhashDedupFilter(str(workdir / "remove")), collect], 1),
    }
    seconds = {}
    for name, (pipeline, tasks) in stages.items():
        executor = LocalPipelineExecutor(pipeline, tasks=tasks, workers=1, logging_dir=str(workdir / f"logs-{name}"))
        start = time.perf_counter()
        executor.run()
        seconds[name] = time.perf_counter() - start
    return set(doc_ids) - set(kept), seconds


# --- scoring --------------------------------------------------------------------------------------------------


def score(removed: set[str], planted: list[tuple[str, str]]) -> tuple[float, float, list[str]]:
    """Recall: planted pairs with a member removed. Precision: removed docs that belong to a planted pair."""
    in_pairs = {doc_id for pair in planted for doc_id in pair}
    detected = sum(1 for a, b in planted if a in removed or b in removed)
    false_positives = sorted(removed - in_pairs)
    precision = (len(removed) - len(false_positives)) / len(removed) if removed else 1.0
    return detected / len(planted), precision, false_positives


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copy-fraction", type=float, default=0.25, help="share of documents that get a planted near-duplicate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="runs per pipeline; the fastest is reported (shared machines are noisy)")
    args = parser.parse_args()

    doc_ids, texts, planted, similarities = build_corpus(args.copy_fraction, args.seed)
    words = [len(text.split()) for text in texts]
    print(f"documents: {len(texts)} ({len(texts) - len(planted)} originals + {len(planted)} planted near-duplicates), "
          f"words/doc median {statistics.median(words):.0f} (min {min(words)}, max {max(words)})")
    print(f"planted pairs, word 5-gram Jaccard: min {min(similarities):.3f}  median {statistics.median(similarities):.3f}  "
          f"max {max(similarities):.3f}")

    removed, fingerprint_s, dedup_s = min((run_ours(doc_ids, texts) for _ in range(args.repeats)), key=lambda run: run[1] + run[2])
    ours_s = fingerprint_s + dedup_s
    recall, precision, false_positives = score(removed, planted)
    print(f"gptforge : {len(texts) / ours_s:8.0f} docs/s  ({ours_s:.2f} s: fingerprints {fingerprint_s:.2f} s, dedup {dedup_s:.3f} s)  "
          f"removed {len(removed)}  recall {recall:.3f}  precision {precision:.3f}")

    datatrove_runs = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as workdir:
            datatrove_runs.append(run_datatrove(doc_ids, texts, Path(workdir)))
    dt_removed, stage_s = min(datatrove_runs, key=lambda run: sum(run[1].values()))
    datatrove_s = sum(stage_s.values())
    dt_recall, dt_precision, dt_false_positives = score(dt_removed, planted)
    stages = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in stage_s.items())
    print(f"datatrove: {len(texts) / datatrove_s:8.0f} docs/s  ({datatrove_s:.2f} s: {stages})  "
          f"removed {len(dt_removed)}  recall {dt_recall:.3f}  precision {dt_precision:.3f}")
    print(f"speed ratio gptforge / datatrove: {datatrove_s / ours_s:.1f}x  "
          f"(signature stage alone: {stage_s['signatures'] / fingerprint_s:.1f}x)")
    for name, extra in (("gptforge", false_positives), ("datatrove", dt_false_positives)):
        if extra:
            closest = [max(jaccard(texts[doc_ids.index(doc_id)], other) for other in texts if other is not texts[doc_ids.index(doc_id)]) for doc_id in extra[:5]]
            print(f"{name} removed {len(extra)} non-planted docs, e.g. {extra[:5]} (closest other doc Jaccard {closest})")


if __name__ == "__main__":
    main()
