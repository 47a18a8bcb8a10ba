"""Encoding throughput: gptcore's tiktoken encoder vs Hugging Face `tokenizers` on the same vocabulary and texts.

Trains a GPT-2-style byte-level BPE (asks for 50,257 tokens; a small corpus yields fewer) on the books in the shared
data folder, checks that both encoders give identical ids on every paragraph, then times each at 1 and 2 threads
(best of --repeats). Run: .venv/bin/python bench/bench_encode.py
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# tokenizers reads these when it first parallelises: size its pool like the tiktoken thread pool it is compared with.
os.environ.setdefault("RAYON_NUM_THREADS", "2")
os.environ["TOKENIZERS_PARALLELISM"] = "true"

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

from gptcore.encoding import EOT_TOKEN, load_encoder  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("GPTFORGE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def read_paragraphs(books_dir: Path) -> list[str]:
    paragraphs = []
    for book in sorted(books_dir.glob("*.txt")):
        text = book.read_text(encoding="utf-8")
        paragraphs += [paragraph for paragraph in text.split("\n\n") if paragraph.strip()]
    if not paragraphs:
        raise SystemExit(f"no paragraphs under {books_dir}; set GPTFORGE_SHARED_DATA to the shared data folder")
    return paragraphs


def train_gpt2_style(books_dir: Path, vocab_size: int, out: Path) -> Path:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT_TOKEN],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train([str(path) for path in sorted(books_dir.glob("*.txt"))], trainer)
    tokenizer.save(str(out))
    return out


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=50_257)
    parser.add_argument("--copies", type=int, default=3, help="times the paragraphs are repeated per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    books_dir = SHARED_DATA / "books"
    paragraphs = read_paragraphs(books_dir)
    with tempfile.TemporaryDirectory() as tmp:
        path = train_gpt2_style(books_dir, args.vocab_size, Path(tmp) / "tokenizer.json")
        fast = load_encoder(path)
        hf = Tokenizer.from_file(str(path))
    hf.encode_special_tokens = True  # the same contract as the fast encoder: marker text in documents is text
    assert fast.kind == "tiktoken", "the trained tokenizer should be served by tiktoken"

    reference = [encoding.ids for encoding in hf.encode_batch(paragraphs, add_special_tokens=False)]
    ours = fast.encode_batch(paragraphs, num_threads=2)
    mismatches = sum(a != b for a, b in zip(ours, reference))
    n_ids = sum(map(len, reference)) * args.copies
    texts = paragraphs * args.copies
    print(f"vocabulary {fast.vocab_size} (asked {args.vocab_size}); {len(paragraphs)} paragraphs, "
          f"{mismatches} with ids different from tokenizers")
    print(f"timed input: {len(texts)} texts, {sum(map(len, texts)) / 1e6:.1f} M chars, {n_ids / 1e6:.2f} M ids, "
          f"best of {args.repeats}")

    def hf_batch(parallel: bool, method: str) -> Callable[[], object]:
        def run() -> object:
            os.environ["TOKENIZERS_PARALLELISM"] = "true" if parallel else "false"  # read by tokenizers per call
            return getattr(hf, method)(texts, add_special_tokens=False)
        return run

    timings = {
        ("tokenizers encode_batch", 1): hf_batch(False, "encode_batch"),
        ("tokenizers encode_batch", 2): hf_batch(True, "encode_batch"),
        ("tokenizers encode_batch_fast", 1): hf_batch(False, "encode_batch_fast"),
        ("tokenizers encode_batch_fast", 2): hf_batch(True, "encode_batch_fast"),
        ("gptcore tiktoken", 1): lambda: fast.encode_batch(texts, num_threads=1),
        ("gptcore tiktoken", 2): lambda: fast.encode_batch(texts, num_threads=2),
    }
    rates = {key: n_ids / best_seconds(run, args.repeats) for key, run in timings.items()}
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    for (name, threads), rate in rates.items():
        ratio = rate / rates[("tokenizers encode_batch", threads)]
        print(f"{name:<30} {threads} thread(s): {rate / 1e6:6.2f} M ids/s  {ratio:4.2f}x tokenizers encode_batch")


if __name__ == "__main__":
    main()
