"""BPE training: gptforge's streaming path vs plain Hugging Face `tokenizers` training on the same text.

Text: the two novels in `books/` of the shared data folder ($GPTFORGE_SHARED_DATA, default ../shared/data relative to
the repository root), ~1.3 MB. gptforge's path reads them the way train-tokenizer reads a corpus version: one Parquet
document per chapter, streamed by `iter_corpus_texts` into `train_gpt2_bpe` (byte-level, GPT-2 regex, min frequency
2, `<|endoftext|>` last). The peer is `ByteLevelBPETokenizer().train(files=[the two .txt files])` with the same vocab
size, min frequency and special token.

Every run is its own subprocess: time is the training call only (imports excluded), peak memory is the process's
peak RSS (VmHWM) and, beside it, the growth over the RSS after imports. Each configuration runs --repeats times
(default 5): the median time and the largest peak are reported.

The full GPT-2 size (50,257) is also tried: the books hold fewer mergeable pairs than that, which gptforge reports as
an error and the peer silently ignores (it returns a smaller vocabulary). Reading the Parquet sample alone is
measured too: on a sample this small, Arrow's fixed memory cost is most of the difference in peak memory. A GPT-1
style run (spaCy + 5,000 merges) is printed for scale; it has no peer.

Run: .venv/bin/python bench/bench_bpe_train.py [--vocab-size 8000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("GPTFORGE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
BOOKS = sorted((SHARED_DATA / "books").glob("*.txt"))
GPT2_VOCAB_SIZE = 50_257
GPT1_MERGES = 5_000
_CHAPTER = re.compile(r"^(?:Chapter|CHAPTER) \d+\s*$", re.MULTILINE)


def write_books_corpus(folder: Path) -> list[Path]:
    """One corpus part file per book, one row per chapter (the front matter is a row of its own)."""
    from gptcore.corpus.records import doc_id_for

    paths = []
    for index, book in enumerate(BOOKS):
        chapters = [c for c in _CHAPTER.split(book.read_text(encoding="utf-8")) if c.strip()]
        doc_ids = [doc_id_for(f"{book.name}#{n}") for n in range(len(chapters))]
        path = folder / f"part-{index:05d}.parquet"
        pq.write_table(pa.table({"doc_id": doc_ids, "text": chapters}), path, compression="zstd")
        paths.append(path)
    return paths


# --- one measured run, in a child process -----------------------------------------------------------------------

def _proc_status_kib(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process. Not getrusage's ru_maxrss: Linux carries it over exec, so a child
    would report its parent's peak whenever that is larger."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def child(kind: str, vocab_size: int, corpus: list[str]) -> dict:
    if kind == "peer":
        from tokenizers import ByteLevelBPETokenizer

        def train():
            tokenizer = ByteLevelBPETokenizer()
            tokenizer.train(files=[str(p) for p in BOOKS], vocab_size=vocab_size, min_frequency=2,
                            special_tokens=["<|endoftext|>"], show_progress=False)
            return tokenizer.get_vocab_size()
    else:
        from gptcore.bpe import BpeSampleTooSmall, train_gpt2_bpe
        from gptcore.bpe_sample import iter_corpus_texts

        if kind == "gpt1":  # only this run pays for importing spaCy
            from gptcore.bpe_gpt1 import train_gpt1_bpe

        def train():
            texts = iter_corpus_texts(corpus, max_bytes=1 << 40, holdout_fraction=0.0)
            if kind == "read":
                return f"read {sum(len(text) for text in texts):,} characters, no training"
            try:
                if kind == "gpt1":
                    return train_gpt1_bpe(texts, merges=vocab_size).get_vocab_size()
                return train_gpt2_bpe(texts, vocab_size=vocab_size).get_vocab_size()
            except BpeSampleTooSmall as exc:
                return str(exc)
    rss_after_imports = _proc_status_kib("VmRSS")
    start = time.perf_counter()
    result = train()
    seconds = time.perf_counter() - start
    peak = _proc_status_kib("VmHWM")
    growth = peak - rss_after_imports
    return {"seconds": seconds, "peak_mib": peak / 1024, "growth_mib": growth / 1024, "result": result}


def measure(kind: str, vocab_size: int, corpus: list[Path], repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, "--vocab-size", str(vocab_size), *map(str, corpus)],
            check=True, capture_output=True, text=True, cwd=REPO_ROOT,
        ).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "peak_mib": max(r["peak_mib"] for r in runs),
        "growth_mib": max(r["growth_mib"] for r in runs),
        "result": runs[0]["result"],
    }


def report(label: str, m: dict) -> None:
    result = m["result"] if isinstance(m["result"], str) else f"vocab {m['result']:,}"
    print(f"  {label:<38} {m['seconds']:7.2f} s   peak RSS {m['peak_mib']:6.1f} MiB "
          f"(+{m['growth_mib']:5.1f} over imports)   {result}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=8_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", choices=["ours", "peer", "gpt1", "read"], help=argparse.SUPPRESS)
    parser.add_argument("corpus", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.vocab_size, args.corpus)))
        return
    if len(BOOKS) < 2:
        sys.exit(f"books not found under {SHARED_DATA / 'books'}; set GPTFORGE_SHARED_DATA to the shared data folder")

    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_books_corpus(Path(tmp))
        n_bytes = sum(p.stat().st_size for p in BOOKS)
        print(f"BPE training on {len(BOOKS)} books ({n_bytes / 1e6:.2f} MB), {os.cpu_count()} CPU(s), "
              f"median of {args.repeats} runs, each in its own process")
        for vocab_size, repeats in ((args.vocab_size, args.repeats), (GPT2_VOCAB_SIZE, 1)):
            print(f"vocab_size {vocab_size:,}:")
            ours = measure("ours", vocab_size, corpus, repeats)
            peer = measure("peer", vocab_size, corpus, repeats)
            report("gptforge train_gpt2_bpe (Parquet stream)", ours)
            report("tokenizers ByteLevelBPETokenizer.train", peer)
            print(f"  ratio gptforge/peer: time {ours['seconds'] / peer['seconds']:.2f}x, "
                  f"peak RSS {ours['peak_mib'] / peer['peak_mib']:.2f}x")
        print("Reading the Parquet sample alone (Arrow's allocator and libraries; part of the gptforge rows above):")
        report("gptforge iter_corpus_texts", measure("read", 0, corpus, args.repeats))
        print(f"GPT-1 style, {GPT1_MERGES:,} merges (ftfy + spaCy pre-tokenization; no peer):")
        report("gptforge train_gpt1_bpe (Parquet stream)", measure("gpt1", GPT1_MERGES, corpus, 1))


if __name__ == "__main__":
    main()
