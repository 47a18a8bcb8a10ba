"""Zero-shot evaluation of a books model on chapters it never saw, and the contamination check that proves it.

Takes a data root holding a pretraining run on books (corpus → tokenizer → tokens → run, e.g. built with
``gptforge run build-corpus -p texts='["…/books"]' -p text_split=chapter`` and the following stages) and:

1. finds the chapters in the run's tokens *validation* split (the run never trained on them) and, for comparison,
   the same number of training chapters;
2. builds, per book (so distractors come from the same book), a Story-Cloze-like "which sentence comes next" task
   (``gptcore.taskgen.next_sentence_choices``) and a LAMBADA-style last-word task from each set of chapters;
3. runs the ``evaluate`` flow on those four tasks and prints perplexity / bits per byte on the held-out text, each
   task's accuracies against chance, and each task's 8-gram overlap with the pretraining corpus (held-out chapters
   should show ~0, training chapters nearly 1: the check that the contamination check works).

    python bench/exp_zeroshot_books.py --data-root DATA --runs books2 books2@step_000500.pt [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flows.store import DataRoot  # noqa: E402
from gptcore.shards import read_index, split_of  # noqa: E402
from gptcore.taskgen import next_sentence_choices, split_sentences  # noqa: E402


def chapters_by_split(root: DataRoot, run: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """{book: [chapter text]} for the run's validation chapters and for its training chapters."""
    tokens = next(u["version"] for u in root.read_manifest("runs", run)["upstream"] if u.get("stage") == "tokens")
    corpus = next(u["version"] for u in root.read_manifest("tokens", tokens)["upstream"] if u.get("stage") == "corpus")
    fraction = read_index(root.version_url("tokens", tokens)).split_rule.validation_fraction
    held_out, seen = defaultdict(list), defaultdict(list)
    for path in sorted(Path(root.version_url("corpus", corpus)).glob("data/*.parquet")):
        for doc in pq.read_table(path, columns=["doc_id", "url", "text"]).to_pylist():
            book = doc["url"].split("#")[0].rsplit("/", 1)[-1]
            (held_out if split_of(doc["doc_id"], fraction) == "val" else seen)[book].append(doc["text"])
    return held_out, seen


def last_word_records(chapters: list[str], context_sentences: int = 3, seed: int = 0) -> list[dict]:
    """LAMBADA-like passages: a few sentences, then the next sentence up to its last word (punctuation removed)."""
    records = []
    for chapter in chapters:
        sentences = split_sentences(chapter)
        for start in range(0, len(sentences) - context_sentences, context_sentences + 1):
            passage = " ".join(sentences[start:start + context_sentences + 1]).rstrip(" .,;:!?\"'\u201d\u2019_)")
            if len(passage.split()) > 20 and passage.split()[-1].isalpha():
                records.append({"text": passage})
    random.Random(seed).shuffle(records)
    return records


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def build_tasks(held_out: dict[str, list[str]], seen: dict[str, list[str]], work: Path, seed: int) -> list[dict]:
    rng = random.Random(seed)
    # As many training chapters per book as there are held-out ones, so both sets have about the same size.
    seen = {book: rng.sample(chapters, len(held_out.get(book, []))) for book, chapters in seen.items()}
    tasks = []
    for label, chapters in (("heldout", held_out), ("seen", seen)):
        choice = [r for book in sorted(chapters) for r in next_sentence_choices(chapters[book], seed=seed)]
        words = last_word_records([c for book in sorted(chapters) for c in chapters[book]], seed=seed)
        tasks.append({"name": f"next-sentence-{label}", "type": "multiple_choice", "reader": "jsonl",
                      "path": str(write_jsonl(work / f"next_sentence_{label}.jsonl", choice))})
        tasks.append({"name": f"last-word-{label}", "type": "lambada",
                      "path": str(write_jsonl(work / f"last_word_{label}.jsonl", words))})
    return tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", required=True, help="data root with the books corpus, tokens and run")
    parser.add_argument("--runs", nargs="+", default=["books2"],
                        help="runs to compare (run or run@checkpoint file); the first one's chapters make the tasks")
    parser.add_argument("--work", default=str(REPO / "bench" / "out" / "zeroshot"), help="where task files go")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from flows.evaluate import evaluate

    root = DataRoot.from_env(args.data_root)
    held_out, seen = chapters_by_split(root, args.runs[0].split("@")[0])
    print("held-out chapters per book:", {book: len(c) for book, c in held_out.items()})
    tasks = build_tasks(held_out, seen, Path(args.work), args.seed)
    folder = Path(evaluate(runs=args.runs, tasks=tasks, data_root=root.url))
    for run, results in json.loads((folder / "results.json").read_text())["runs"].items():
        print_run(run, results)
    print(f"\nresults: {folder / 'results.json'}\ncomparison: {folder / 'comparison.md'}")
    print((folder / "comparison.md").read_text())


def print_run(run: str, results: dict) -> None:
    ppl = results["perplexity"]
    print(f"\n{run} ({results['checkpoint']}) on the held-out chapters (validation split of tokens "
          f"{results['tokens']}): {ppl['tokens']:,} tokens, {ppl['bytes']:,} bytes")
    print(f"  loss {ppl['loss']:.4f} nats/token   perplexity {ppl['perplexity']:.2f}   "
          f"bits/token {ppl['bits_per_token']:.3f}   bits/byte {ppl['bits_per_byte']:.4f}\n")
    header = f"{'task':<24}{'n':>6}{'acc':>9}{'/token':>8}{'norm':>8}{'chance':>8}{'ppl':>9}" \
             f"{'8-grams in corpus':>19}{'examples w/ overlap':>21}"
    print(header)
    print("-" * len(header))
    for name, task in results["tasks"].items():
        m, c = task["metrics"], task["contamination"]
        print(f"{name:<24}{m['examples']:>6}{m['acc']:>9.3f}{m.get('acc_per_token', float('nan')):>8.3f}"
              f"{m.get('acc_norm', float('nan')):>8.3f}{m.get('chance', float('nan')):>8.3f}"
              f"{m.get('perplexity', float('nan')):>9.1f}{c['fraction_ngrams_found']:>19.4f}"
              f"{c['fraction_examples_with_overlap']:>21.3f}")


if __name__ == "__main__":
    main()
