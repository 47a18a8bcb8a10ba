"""Does pretraining help? GPT-1's claim (sections 3.2 and 5) on the shared data, end to end through the flows.

GPT-1's framing is semi-supervised: pretrain on unlabeled text of the tasks' kind, then fine-tune. Here:

- unlabeled text: the two Austen novels minus their last ``HELDOUT_CHAPTERS`` chapters, and the *training* split of
  ``fortunes.tsv`` with its labels dropped (one document per ``FORTUNES_PER_FILE`` quotations);
- task 1, fortunes: 4-way classification of the quotations (``computers`` / ``science`` / ``politics`` / ``food``),
  split 80/20 by a hash of the normalised text (duplicates land on the same side);
- task 2, books next sentence: Story-Cloze-like multiple choice (``gptcore.taskgen.next_sentence_choices``) from the
  held-out chapters, the first ``TRAIN_CHAPTERS`` of each novel's held-out chapters to train, the rest to test.

The script runs ``pipeline`` (build-corpus → train-tokenizer → tokenize → pretrain within a CPU-minute budget),
then ``compare`` per task (init pretrained / random × λ 0.5 / 0 × seeds, each cell a ``finetune`` child run), then
``evaluate`` with the contamination check (8-gram overlap of every test file with the pretraining corpus), and
prints the reports. Everything lands in a data root under ``--out``; a rerun reuses every published version.

    python bench/exp_finetune.py --out bench/out/claim --pretrain-minutes 12 --seeds 5

Reads ``$GPTFORGE_SHARED_DATA`` (default ``../shared/data`` from the repository root); fetches nothing.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gptcore.taskdata import load_task_file  # noqa: E402
from gptcore.taskgen import next_sentence_choices  # noqa: E402

SHARED = Path(os.environ.get("GPTFORGE_SHARED_DATA", REPO.parent / "shared" / "data"))
BOOKS = ("prideprejudice.txt", "sensesensibility.txt")
HELDOUT_CHAPTERS = 10  # per novel, never pretrained on
TRAIN_CHAPTERS = 6  # of those, per novel, for fine-tuning; the rest are the test
FORTUNES_PER_FILE = 25
CHAPTER_RE = re.compile(r"^\s*chapter\s+\d+\s*$", re.IGNORECASE | re.MULTILINE)
VERSION = "claim"


def chapters(text: str) -> tuple[str, list[str]]:
    """(front matter, chapters in order) of a novel."""
    front, *body = CHAPTER_RE.split(text)
    return front, [chapter.strip() for chapter in body if chapter.strip()]


def in_test_split(text: str, fraction: float = 0.2) -> bool:
    """A stable split by a hash of the normalised text."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def prepare(out: Path) -> dict:
    """Pretraining texts and the four task files under ``out``; returns their paths and counts."""
    texts, tasks = out / "texts", out / "tasks"
    for folder in (texts / "books", texts / "fortunes", tasks):
        folder.mkdir(parents=True, exist_ok=True)
    train_docs, test_docs = [], []
    for name in BOOKS:
        front, body = chapters((SHARED / "books" / name).read_text(encoding="utf-8"))
        kept, held = body[:-HELDOUT_CHAPTERS], body[-HELDOUT_CHAPTERS:]
        (texts / "books" / name).write_text(
            front + "".join(f"\n\nChapter {i}\n\n{c}" for i, c in enumerate(kept, 1)) + "\n", encoding="utf-8")
        train_docs += held[:TRAIN_CHAPTERS]
        test_docs += held[TRAIN_CHAPTERS:]
    make = dict(n_choices=4, context_sentences=3, min_words=5, max_words=40, max_bytes=300)
    next_train = next_sentence_choices(train_docs, seed=0, **make)
    next_test = next_sentence_choices(test_docs, seed=1, **make)

    data = load_task_file(SHARED / "fortunes.tsv", "classification", "tsv")
    unique = {" ".join(e.text.split()).lower(): e for e in data.examples}  # the file repeats a few quotations
    fortunes_train = [e for key, e in unique.items() if not in_test_split(key)]
    fortunes_test = [e for key, e in unique.items() if in_test_split(key)]
    for start in range(0, len(fortunes_train), FORTUNES_PER_FILE):  # chapter split: a file without headings is one part
        chunk = fortunes_train[start:start + FORTUNES_PER_FILE]
        (texts / "fortunes" / f"{start // FORTUNES_PER_FILE:04d}.txt").write_text(
            "\n\n".join(e.text for e in chunk) + "\n", encoding="utf-8")
    return {
        "texts": [str(texts / "books"), str(texts / "fortunes")],
        "fortunes_train": write_jsonl(tasks / "fortunes_train.jsonl", [{"text": e.text, "label": e.label}
                                                                       for e in fortunes_train]),
        "fortunes_test": write_jsonl(tasks / "fortunes_test.jsonl", [{"text": e.text, "label": e.label}
                                                                     for e in fortunes_test]),
        "next_train": write_jsonl(tasks / "next_train.jsonl", next_train),
        "next_test": write_jsonl(tasks / "next_test.jsonl", next_test),
        "counts": {"fortunes_train": len(fortunes_train), "fortunes_test": len(fortunes_test),
                   "fortunes_rejected_rows": dict(data.rejects), "next_train": len(next_train),
                   "next_test": len(next_test)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "claim")
    parser.add_argument("--pretrain-minutes", type=float, default=12.0, help="pretraining budget (CPU wall minutes)")
    parser.add_argument("--max-steps", type=int, default=6000, help="end of the cosine schedule")
    parser.add_argument("--seeds", type=int, default=5, help="fine-tuning seeds per grid cell")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lrs", default="scaled", help="'scaled' (GPT-1's lr × 768 / width), 'paper', or a,b,…")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["GPTFORGE_DATA"] = str((args.out / "root").resolve())
    files = prepare(args.out)
    print("inputs:", json.dumps(files["counts"]), flush=True)

    from flows.compare import compare
    from flows.evaluate import evaluate, read_results
    from flows.pipeline import pipeline
    from flows.store import DataRoot

    root = DataRoot.from_env()
    timings = {}
    started = time.perf_counter()
    versions = pipeline(
        version=VERSION,
        build_corpus={"texts": files["texts"], "text_split": "chapter"},
        train_tokenizer={"vocab_size": 4096, "holdout_fraction": 0.05},
        tokenize={"validation_fraction": 0.05},
        pretrain={"preset": "small-cpu", "model": {"dropout": 0.1},
                  "train": {"max_steps": args.max_steps, "max_minutes": args.pretrain_minutes, "warmup_steps": 100,
                            "max_lr": 1e-3, "batch_size": 16, "eval_every": 500, "eval_batches": 10,
                            "checkpoint_every": 1000, "seed": 0}})
    timings["pipeline_s"] = time.perf_counter() - started
    run = versions["pretrain"]
    counts = root.read_manifest("runs", run)["counts"]
    corpus = root.read_manifest("corpus", versions["build_corpus"])["counts"]
    print(f"corpus: {corpus['documents']} documents, {corpus['rejects']} rejects {corpus['rejects_by_reason']}")
    print(f"pretrain {run}: {counts['step']} steps, {counts['tokens_seen']:,} tokens in {counts['elapsed_s']} s, "
          f"validation loss {counts['val_loss']:.3f} (unigram baseline {counts['unigram_entropy']:.3f})", flush=True)

    lrs = args.lrs if args.lrs in ("scaled", "paper") else [float(x) for x in args.lrs.split(",")]
    grid = dict(pretrained=run, inits=["pretrained", "random"], aux_lm_weights=[0.5, 0.0], lrs=lrs,
                seeds=list(range(args.seeds)))
    reports = {}
    for name, task, train, test, config in (
            ("fortunes", "classification", files["fortunes_train"], files["fortunes_test"],
             {"epochs": args.epochs, "batch_size": 32, "max_len": 128, "device": "cpu"}),
            ("next-sentence", "multiple_choice", files["next_train"], files["next_test"],
             {"epochs": args.epochs, "batch_size": 8, "max_len": 128, "device": "cpu"})):
        started = time.perf_counter()
        compare(task=task, train=train, test=test, finetune_config=config, version=f"{VERSION}-{name}", **grid)
        timings[f"compare_{name}_s"] = time.perf_counter() - started
        reports[name] = root.local_version("compare", f"{VERSION}-{name}")

    # The contamination check: every test file's 8-gram overlap with the pretraining corpus, through evaluate.
    results = json.loads((reports["fortunes"] / "results.json").read_text())
    tuned = next(r["run"] for r in results["runs"] if r["init"] == "pretrained")
    started = time.perf_counter()
    evaluate(runs=[run, tuned], version=VERSION, contamination=True, tasks=[
        {"name": "next-sentence", "type": "multiple_choice", "path": files["next_test"]},
        {"name": "fortunes", "type": "finetuned", "task": "classification", "path": files["fortunes_test"]}])
    timings["evaluate_s"] = time.perf_counter() - started
    evaluation = read_results(root, VERSION)

    for name, folder in reports.items():
        print(f"\n### {name}\n" + (folder / "report.md").read_text())
    print("### contamination (fraction of test 8-grams found in the pretraining corpus) and zero-shot")
    for label, result in evaluation["runs"].items():
        for task_name, task in result["tasks"].items():
            metrics = {k: round(v, 4) for k, v in task["metrics"].items() if isinstance(v, float)}
            print(f"{label} {task_name}: {task.get('contamination')} {metrics}")
    print("timings:", {k: round(v) for k, v in timings.items()})


if __name__ == "__main__":
    main()
