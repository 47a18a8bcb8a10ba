"""Fine-tuning experiments on real text (GPT-1 section 3.2-3.3): does pretraining help, and does the auxiliary LM
loss (λ) matter?

1. fortunes: ``fortunes.tsv`` (4 categories of real quotations) fine-tuned from a pretrained books model vs the same
   architecture from random initialisation with the same budget, and λ = 0.5 vs λ = 0.
2. books next sentence: a Story-Cloze-like multiple-choice task (``gptcore.taskgen.next_sentence_choices``) built
   from the last chapters of each novel, which the pretrained model never saw, fine-tuned (pretrained vs random).

Both read ``$GPTFORGE_SHARED_DATA`` (default ``../shared/data`` from the repository root). Prints a results table.

    # held-out chapters need a model that never saw them: write the pretraining texts, then build a data root
    python bench/exp_finetune.py prepare-books OUT_DIR          # the novels minus their last chapters
    GPTFORGE_DATA=ROOT gptforge run build-corpus -p texts='["OUT_DIR"]' -p text_split=chapter   (then tokenizer,
    tokenize, pretrain as usual)
    python bench/exp_finetune.py fortunes --pretrained ROOT/runs/RUN
    python bench/exp_finetune.py books --pretrained ROOT/runs/RUN
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flows.lineage import tokenizer_of_run  # noqa: E402
from flows.store import DataRoot  # noqa: E402
from gptcore.encoding import TOKENIZER_FILE  # noqa: E402
from gptcore.finetune import FinetuneConfig, evaluate_task, finetune  # noqa: E402
from gptcore.taskdata import MultipleChoiceExample, load_task_file  # noqa: E402
from gptcore.taskgen import next_sentence_choices  # noqa: E402
from gptcore.tasks import infer_spec  # noqa: E402

SHARED = Path(os.environ.get("GPTFORGE_SHARED_DATA", REPO.parent / "shared" / "data"))
BOOKS = ("prideprejudice.txt", "sensesensibility.txt")
HELDOUT_CHAPTERS = 10  # per novel, never pretrained on
CHAPTER_RE = re.compile(r"^\s*chapter\s+\d+\s*$", re.IGNORECASE | re.MULTILINE)


def chapters(text: str) -> tuple[str, list[str]]:
    """(front matter, chapters in order) of a novel."""
    front, *body = CHAPTER_RE.split(text)
    return front, [chapter.strip() for chapter in body if chapter.strip()]


def prepare_books(out: Path) -> None:
    """Write each novel without its last HELDOUT_CHAPTERS chapters (chapter headings kept for text_split=chapter)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in BOOKS:
        front, body = chapters((SHARED / "books" / name).read_text(encoding="utf-8"))
        kept = body[:-HELDOUT_CHAPTERS]
        (out / name).write_text(front + "".join(f"\n\nChapter {i}\n\n{c}" for i, c in enumerate(kept, 1)) + "\n")
        print(f"{name}: kept {len(kept)} chapters, held out {HELDOUT_CHAPTERS}")


def run_config(name: str, pretrained: Path, spec, train, test, config: FinetuneConfig, out: Path) -> dict:
    started = time.perf_counter()
    root = DataRoot.from_env(str(pretrained.parent.parent))
    tokenizer = root.local_version("tokenizer", tokenizer_of_run(root, pretrained.name)) / TOKENIZER_FILE
    result = finetune(pretrained, tokenizer, spec, train, config, out / name, resume=False)
    seconds = time.perf_counter() - started
    scores = evaluate_task(out / name, test, batch_size=64)
    print(f"  {name}: {result.step} steps, {seconds:.0f} s, {scores}", flush=True)
    return {"config": name, "steps": result.step, "seconds": seconds, **scores}


def in_test_split(text: str, fraction: float = 0.2) -> bool:
    """A stable split by a hash of the normalised text (duplicates land on the same side)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def fortunes(args: argparse.Namespace) -> list[dict]:
    data = load_task_file(SHARED / "fortunes.tsv", "classification", "tsv")
    unique = {" ".join(e.text.split()).lower(): e for e in data.examples}  # the file repeats a few quotations
    train = [e for key, e in unique.items() if not in_test_split(key)]
    test = [e for key, e in unique.items() if in_test_split(key)]
    spec = infer_spec("classification", train)
    print(f"fortunes: {len(train)} train / {len(test)} test, labels {spec.labels}, rejects {dict(data.rejects)}")
    base = dict(lr=args.lr, epochs=args.epochs, batch_size=32, max_len=args.max_len, max_steps=args.max_steps, seed=0,
                device="cpu")
    configs = {"pretrained, λ=0.5": FinetuneConfig(**base, aux_lm_weight=0.5),
               "pretrained, λ=0": FinetuneConfig(**base, aux_lm_weight=0.0),
               "random init, λ=0.5": FinetuneConfig(**base, aux_lm_weight=0.5, init="random"),
               "random init, λ=0": FinetuneConfig(**base, aux_lm_weight=0.0, init="random")}
    return [run_config(name, args.pretrained, spec, train, test, config, args.out / "fortunes")
            for name, config in configs.items()]


def books(args: argparse.Namespace) -> list[dict]:
    """MC from the held-out chapters: the first 7 of each novel's held-out chapters train, the last 3 test."""
    train_docs, test_docs = [], []
    for name in BOOKS:
        heldout = chapters((SHARED / "books" / name).read_text(encoding="utf-8"))[1][-HELDOUT_CHAPTERS:]
        train_docs += heldout[:7]
        test_docs += heldout[7:]
    make = dict(n_choices=4, context_sentences=3, min_words=5, max_words=40)
    train = [MultipleChoiceExample(r["context"], tuple(r["choices"]), r["label"])
             for r in next_sentence_choices(train_docs, seed=0, **make)]
    test = [MultipleChoiceExample(r["context"], tuple(r["choices"]), r["label"])
            for r in next_sentence_choices(test_docs, seed=1, **make)]
    spec = infer_spec("multiple_choice", train)
    print(f"books next sentence: {len(train)} train / {len(test)} test records, 4 choices (chance 0.25)")
    base = dict(lr=args.lr, epochs=args.epochs, batch_size=16, max_len=args.max_len, max_steps=args.max_steps, seed=0,
                device="cpu")
    configs = {"pretrained, λ=0.5": FinetuneConfig(**base, aux_lm_weight=0.5),
               "pretrained, λ=0": FinetuneConfig(**base, aux_lm_weight=0.0),
               "random init, λ=0.5": FinetuneConfig(**base, aux_lm_weight=0.5, init="random")}
    return [run_config(name, args.pretrained, spec, train, test, config, args.out / "books")
            for name, config in configs.items()]


def print_table(title: str, rows: list[dict]) -> None:
    keys = [k for k in ("accuracy", "macro_f1", "matthews") if k in rows[0]]
    print(f"\n{title}\n| config | steps | seconds | " + " | ".join(keys) + " |")
    print("|---|---|---|" + "---|" * len(keys))
    for row in rows:
        print(f"| {row['config']} | {row['steps']} | {row['seconds']:.0f} | "
              + " | ".join(f"{row[k]:.3f}" for k in keys) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", choices=["prepare-books", "fortunes", "books"])
    parser.add_argument("target", nargs="?", type=Path, help="prepare-books: the folder to write the texts to")
    parser.add_argument("--pretrained", type=Path, help="a pretrain run folder inside a data root")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "finetune")
    parser.add_argument("--lr", type=float, default=6.25e-5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-len", type=int, default=None, help="tokens per sequence (default: the model's context)")
    parser.add_argument("--max-steps", type=int, default=None, help="a step budget, the same for every config")
    args = parser.parse_args()
    if args.experiment == "prepare-books":
        if args.target is None:
            parser.error("prepare-books needs the folder to write to")
        prepare_books(args.target)
        return
    if args.pretrained is None:
        parser.error(f"{args.experiment} needs --pretrained RUN_FOLDER")
    rows = fortunes(args) if args.experiment == "fortunes" else books(args)
    budget = f"max {args.max_steps} steps" if args.max_steps else f"{args.epochs} epochs"
    print_table(f"{args.experiment} (lr {args.lr}, {budget}, pretrained {args.pretrained.name})", rows)


if __name__ == "__main__":
    main()
