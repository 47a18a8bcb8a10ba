"""Tokenization throughput, end to end (Parquet in → shards out): gptforge vs Hugging Face `tokenizers` and datatrove.

Input (built once, cached under bench/out/tokenize/): a corpus in the corpus-stage layout (zstd Parquet part files,
rows ordered by ``doc_id``, columns doc_id / url / source / text / n_chars) made of the two novels in ``books/``
(cut into 2-5 KB groups of paragraphs) and the reStructuredText pages in ``web/sources/`` of the shared data folder
($GPTFORGE_SHARED_DATA, default ../shared/data relative to the repository root), repeated with a copy number in each
document's key until the text reaches --mb megabytes. A GPT-2-style byte-level BPE is trained with gptforge's
``train_gpt2_bpe`` on one copy of the text, asking for 50,257 tokens; when the text allows fewer merges, the largest
vocabulary it allows is used (printed).

Measured on the same Parquet files and the same tokenizer.json, each run in a fresh process, sides interleaved,
best of --repeats. The machine may be shared, so each repeat's own ratios are printed too: the sides of one
repeat ran seconds apart, under about the same load.

- gptforge: the tokenize flow's input verification (sha256 of every corpus file and tokenizer.json, as
  ``DataRoot.local_version`` does; also printed as a share of the stage) + ``plan_shards`` + ``encode_shards`` (a
  process pool of --workers, tiktoken encoder) + ``write_index`` → uint16 shards on disk. The output folder is deleted before each run, so no shard is resumed.
- HF raw: ``Tokenizer.from_file(...).encode_batch(texts)`` with --workers Rayon threads on texts already in memory
  (reading them from Parquet is timed on its own and printed).
- HF end to end: Parquet read + tokenizer load + ``encode_batch`` + one uint16 .bin with end-of-text before each
  document, the layout of gptforge's shards.
- datatrove: ``ParquetReader`` → ``DocumentTokenizer`` (tokenizer.json by path, ``eos_token="<|endoftext|>"``) on a
  ``LocalPipelineExecutor`` with --workers tasks and workers, each worker's `tokenizers` limited to one Rayon
  thread so it uses --workers cores like the others (Rayon's default, a thread per core, measured the same). Its
  in-file document shuffle is turned off (gptforge's shards are not shuffled either; shuffling is a second full
  copy of the output).

Throughput is text bytes (UTF-8) and tokens (end-of-text markers not counted) per second. Checks: gptforge's shards
hold exactly the ids HF's ``encode_batch`` gives for every document, split by split; datatrove's output has the same
token count and the same id histogram.

Run: .venv/bin/python bench/bench_tokenize.py [--mb 40] [--repeats 3] [--workers 2]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("GPTFORGE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
WORK = REPO_ROOT / "bench" / "out" / "tokenize"
GPT2_VOCAB_SIZE = 50_257
EOT = "<|endoftext|>"
MB = 1_000_000
GROUP_CHARS = (2_000, 3_000, 4_000, 5_000)  # book documents cycle through these sizes: 2-5 KB, not all alike
SIDES = ("gptforge", "hf", "datatrove")


# --- input: corpus Parquet and tokenizer, cached -----------------------------------------------------------------

@dataclass(frozen=True)
class SourceDocument:
    key: str  # "<relative path>#<part>": unique within one copy of the text
    source: str
    text: str


def source_documents() -> list[SourceDocument]:
    """One copy of the text: book paragraphs grouped into 2-5 KB documents, one document per .rst.txt page."""
    books = sorted((SHARED_DATA / "books").glob("*.txt"))
    pages = sorted((SHARED_DATA / "web" / "sources").glob("*/*.rst.txt"))
    if not books or not pages:
        raise SystemExit(f"no books/*.txt or web/sources/*/*.rst.txt under {SHARED_DATA}: "
                         "set GPTFORGE_SHARED_DATA to the shared data folder")
    documents = []
    for book in books:
        paragraphs = [p for p in book.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        group: list[str] = []
        for paragraph in paragraphs:
            group.append(paragraph)
            if sum(map(len, group)) >= GROUP_CHARS[len(documents) % len(GROUP_CHARS)]:
                documents.append(SourceDocument(f"books/{book.name}#{len(documents)}", "books", "\n\n".join(group)))
                group = []
        if group:
            documents.append(SourceDocument(f"books/{book.name}#{len(documents)}", "books", "\n\n".join(group)))
    for page in pages:
        relative = page.relative_to(SHARED_DATA).as_posix()
        documents.append(SourceDocument(relative, "web", page.read_text(encoding="utf-8")))
    return documents


def text_fingerprint(documents: list[SourceDocument]) -> str:
    digest = hashlib.sha256()
    for document in documents:
        digest.update(document.key.encode() + b"\0" + document.text.encode() + b"\0")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Corpus:
    files: list[str]
    copies: int
    documents: int
    text_bytes: int
    chars: int


def build_corpus(documents: list[SourceDocument], megabytes: float, n_files: int, folder: Path) -> Corpus:
    """Corpus part files of ``documents`` repeated to ``megabytes`` of text (cached by text fingerprint and size)."""
    from gptcore.corpus.records import doc_id_for

    meta_path = folder / "corpus.json"
    key = {"text": text_fingerprint(documents), "mb": megabytes, "files": n_files}
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta["key"] == key and all(Path(f).is_file() for f in meta["corpus"]["files"]):
            return Corpus(**meta["corpus"])
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "data").mkdir(parents=True)
    one_copy = sum(len(d.text.encode()) for d in documents)
    copies = max(1, math.ceil(megabytes * MB / one_copy))
    rows = [{"doc_id": doc_id_for(f"{d.key}#copy{copy}"), "url": f"file:{d.key}#copy{copy}", "source": d.source,
             "text": d.text, "n_chars": len(d.text)} for copy in range(copies) for d in documents]
    rows.sort(key=lambda row: row["doc_id"])  # corpus versions are written in doc_id order
    table = pa.Table.from_pylist(rows)
    per_file = math.ceil(len(rows) / n_files)
    files = []
    for index, start in enumerate(range(0, len(rows), per_file)):
        path = folder / "data" / f"part-{index:05d}.parquet"
        pq.write_table(table.slice(start, per_file), path, compression="zstd")  # as the corpus stage writes them
        files.append(str(path))
    corpus = Corpus(files=files, copies=copies, documents=len(rows), text_bytes=one_copy * copies,
                    chars=sum(len(d.text) for d in documents) * copies)
    meta_path.write_text(json.dumps({"key": key, "corpus": asdict(corpus)}, indent=2))
    return corpus


def train_tokenizer(documents: list[SourceDocument], folder: Path) -> tuple[Path, int]:
    """tokenizer.json trained on one copy of the text: 50,257 tokens, or the most the text allows. Cached."""
    from gptcore.bpe import BpeSampleTooSmall, train_gpt2_bpe

    path, meta_path = folder / "tokenizer.json", folder / "tokenizer-meta.json"
    fingerprint = text_fingerprint(documents)
    if path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta["text"] == fingerprint:
            return path, meta["vocab_size"]
    texts = [d.text for d in documents]
    try:
        tokenizer, vocab_size = train_gpt2_bpe(texts, GPT2_VOCAB_SIZE), GPT2_VOCAB_SIZE
    except BpeSampleTooSmall as too_small:
        vocab_size = too_small.reached
        tokenizer = train_gpt2_bpe(texts, vocab_size)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    meta_path.write_text(json.dumps({"text": fingerprint, "vocab_size": vocab_size}))
    return path, vocab_size


# --- one measured run of one side, in a child process ------------------------------------------------------------

def run_gptforge(corpus_files: list[str], tokenizer_json: str, out: Path, workers: int, shard_chars: int) -> dict:
    from flows.tokenize_corpus import encode_shards
    from gptcore.shards import SplitRule, plan_shards, write_index

    from gptcore.files import sha256_file

    start = time.perf_counter()
    # The flow's verified reads (DataRoot.local_version): every corpus file and tokenizer.json hashed once.
    tokenizer_sha256 = [sha256_file(Path(path)) for path in [*corpus_files, tokenizer_json]][-1]
    verify_seconds = time.perf_counter() - start
    shards = plan_shards(corpus_files, out, target_chars_per_shard=shard_chars)
    stats = encode_shards.fn(shards, tokenizer_json, workers)
    vocab_size, eot_id = _vocab_and_eot(tokenizer_json)
    write_index(out, vocab_size=vocab_size, eot_id=eot_id, tokenizer_sha256=tokenizer_sha256,
                split_rule=SplitRule(), shards=stats)
    seconds = time.perf_counter() - start
    documents = sum(s.documents for s in stats)
    return {"seconds": seconds, "verify_seconds": verify_seconds, "tokens": sum(s.tokens for s in stats) - documents,
            "documents": documents, "shards": len(stats)}


def _vocab_and_eot(tokenizer_json: str) -> tuple[int, int]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_json)
    return tokenizer.get_vocab_size(with_added_tokens=True), tokenizer.token_to_id(EOT)


def run_hf(corpus_files: list[str], tokenizer_json: str, out: Path) -> dict:
    """Read, load, encode_batch, write: each timed."""
    from tokenizers import Tokenizer

    times = {}
    start = time.perf_counter()
    texts = pq.read_table(corpus_files, columns=["text"]).column("text").to_pylist()
    times["read"] = time.perf_counter() - start

    start = time.perf_counter()
    tokenizer = Tokenizer.from_file(tokenizer_json)
    tokenizer.encode_special_tokens = True  # gptforge's contract: "<|endoftext|>" written in a document is text
    eot_id = tokenizer.token_to_id(EOT)
    times["load"] = time.perf_counter() - start

    start = time.perf_counter()
    encoded = tokenizer.encode_batch(texts, add_special_tokens=False)
    times["encode"] = time.perf_counter() - start

    start = time.perf_counter()
    ids = [encoding.ids for encoding in encoded]
    flat = np.empty(sum(map(len, ids)) + len(ids), dtype="<u2")
    position = 0
    for document in ids:
        flat[position] = eot_id
        flat[position + 1:position + 1 + len(document)] = document
        position += 1 + len(document)
    out.mkdir(parents=True, exist_ok=True)
    flat.tofile(out / "all.bin")
    times["write"] = time.perf_counter() - start
    return {"seconds": times, "tokens": len(flat) - len(ids), "documents": len(texts)}


def run_datatrove(corpus_files: list[str], tokenizer_json: str, out: Path, workers: int) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.tokens import DocumentTokenizer

    folder = Path(corpus_files[0]).parent
    executor = LocalPipelineExecutor(
        pipeline=[
            ParquetReader(str(folder), glob_pattern="*.parquet", text_key="text", id_key="doc_id",
                          read_metadata=False),
            DocumentTokenizer(output_folder=str(out / "tokens"), tokenizer_name_or_path=tokenizer_json,
                              eos_token=EOT, shuffle_documents=False),
        ],
        tasks=workers, workers=workers, logging_dir=str(out / "logs"), skip_completed=False,
    )
    start = time.perf_counter()
    executor.run()
    seconds = time.perf_counter() - start
    ends = [np.fromfile(index, dtype="<u8") for index in sorted((out / "tokens").glob("*.ds.index"))]
    documents = sum(len(e) for e in ends)
    tokens_with_eos = sum(path.stat().st_size // 2 for path in (out / "tokens").glob("*.ds"))
    return {"seconds": seconds, "tokens": tokens_with_eos - documents, "documents": documents}


def child_main(side: str, corpus_json: str, tokenizer_json: str, out: str, workers: int, shard_chars: int) -> None:
    """Run one side once into an empty ``out`` and print its measurements as JSON on the last line."""
    out_path = Path(out)
    shutil.rmtree(out_path, ignore_errors=True)
    files = Corpus(**json.loads(corpus_json)).files
    if side == "gptforge":
        result = run_gptforge(files, tokenizer_json, out_path, workers, shard_chars)
    elif side == "hf":
        result = run_hf(files, tokenizer_json, out_path)
    else:
        result = run_datatrove(files, tokenizer_json, out_path, workers)
    print(json.dumps(result))


def run_side(side: str, corpus: Corpus, tokenizer_json: Path, out: Path, workers: int, shard_chars: int) -> dict:
    """One measured run in a fresh interpreter: no thread pool, page of memory or import is shared between sides."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "true",
           # HF raw gets one Rayon thread per core it is compared on; datatrove already runs one process per core.
           "RAYON_NUM_THREADS": str(workers if side == "hf" else 1)}
    command = [sys.executable, __file__, "--child", side, "--corpus-json", json.dumps(asdict(corpus)),
               "--tokenizer-json", str(tokenizer_json), "--out", str(out), "--workers", str(workers),
               "--shard-chars", str(shard_chars)]
    done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the {side} run failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- checks ------------------------------------------------------------------------------------------------------

def check_identical_ids(corpus: Corpus, gptforge_out: Path, hf_out: Path, datatrove_out: Path) -> list[str]:
    """gptforge's shards vs HF's ids for every document (per split, in corpus order); datatrove by count and
    histogram (its files are assigned to tasks in its own order). Returns what was checked, raises on a mismatch."""
    from gptcore.shards import read_index, split_of

    index = read_index(gptforge_out, verify_checksums=True)
    hf = np.fromfile(hf_out / "all.bin", dtype="<u2")
    starts = np.flatnonzero(hf == index.eot_id)
    ends = np.append(starts[1:], len(hf))
    doc_ids = pq.read_table(corpus.files, columns=["doc_id"]).column("doc_id").to_pylist()
    if len(starts) != len(doc_ids):
        raise AssertionError(f"HF output holds {len(starts)} documents, the corpus {len(doc_ids)}")
    splits = [split_of(doc_id, index.split_rule.validation_fraction) for doc_id in doc_ids]
    checked = []
    for split in ("train", "val"):
        ours = np.concatenate([np.fromfile(gptforge_out / s.file, dtype=index.dtype) for s in index.shards_of(split)])
        theirs = np.concatenate([hf[a:b] for a, b, s in zip(starts, ends, splits) if s == split])
        if not np.array_equal(ours, theirs):
            differ = np.flatnonzero(ours[:len(theirs)] != theirs[:len(ours)])
            raise AssertionError(f"{split}: gptforge {len(ours)} ids vs HF {len(theirs)}; first difference at "
                                 f"{differ[0] if len(differ) else min(len(ours), len(theirs))}")
        checked.append(f"{split}: {splits.count(split):,} documents, {len(ours):,} ids identical")

    datatrove = np.concatenate([np.fromfile(p, dtype="<u2") for p in sorted((datatrove_out / "tokens").glob("*.ds"))])
    if not np.array_equal(np.bincount(datatrove, minlength=index.vocab_size),
                          np.bincount(hf, minlength=index.vocab_size)):
        raise AssertionError("datatrove's ids differ from HF's (id histograms differ)")
    checked.append(f"datatrove: {len(datatrove):,} ids, same count and histogram as HF")
    return checked


# --- report ------------------------------------------------------------------------------------------------------

HF_END_TO_END = ("read", "load", "encode", "write")


def measured_rows(runs: dict[str, list[dict]], workers: int) -> list[tuple[str, list[float], int]]:
    """(label, seconds of each repeat, tokens counted) per measured path; gptforge first."""
    hf = runs["hf"]
    return [
        (f"gptforge end to end ({workers} worker processes)", [r["seconds"] for r in runs["gptforge"]],
         runs["gptforge"][0]["tokens"]),
        (f"HF encode_batch, raw ({workers} Rayon threads)", [r["seconds"]["encode"] for r in hf], hf[0]["tokens"]),
        ("HF end to end (read+load+encode+write .bin)",
         [sum(r["seconds"][step] for step in HF_END_TO_END) for r in hf], hf[0]["tokens"]),
        (f"datatrove DocumentTokenizer ({workers} tasks)", [r["seconds"] for r in runs["datatrove"]],
         runs["datatrove"][0]["tokens"]),
    ]


def print_report(corpus: Corpus, vocab_size: int, runs: dict[str, list[dict]], workers: int, repeats: int) -> None:
    rows = measured_rows(runs, workers)
    hf_read, hf_load = min(r["seconds"]["read"] for r in runs["hf"]), min(r["seconds"]["load"] for r in runs["hf"])
    print(f"\n{corpus.documents:,} documents, {corpus.text_bytes / MB:.1f} MB of text ({corpus.copies} copies), "
          f"{len(corpus.files)} Parquet files; {rows[1][2]:,} tokens; vocabulary {vocab_size:,}; "
          f"best of {repeats}, {os.cpu_count()} CPUs")
    print(f"{'':48} {'seconds':>8} {'Mtok/s':>8} {'MB/s':>7} {'tokens':>12}")
    for name, seconds, tokens in rows:
        fastest = min(seconds)
        print(f"{name:48} {fastest:8.2f} {tokens / fastest / 1e6:8.2f} {corpus.text_bytes / MB / fastest:7.2f} "
              f"{tokens:12,}")
    print(f"{'  (HF: Parquet read of the texts alone)':48} {hf_read:8.2f} {'':8} "
          f"{corpus.text_bytes / MB / hf_read:7.1f}")
    print(f"{'  (HF: Tokenizer.from_file alone)':48} {hf_load:8.2f}")
    ours = rows[0][1]
    shares = [r["verify_seconds"] / r["seconds"] for r in runs["gptforge"]]
    print(f"  gptforge: verifying its inputs (sha256 of every corpus file and tokenizer.json) took "
          f"{min(r['verify_seconds'] for r in runs['gptforge']):.3f}s, {min(shares):.1%} of the stage "
          f"[each repeat: {' '.join(f'{share:.1%}' for share in shares)}]; target <= 5%")
    print("throughput ratios, peer seconds / gptforge seconds: best vs best [each repeat]")
    for name, seconds, _ in rows[1:]:
        each = " ".join(f"{peer / mine:.2f}" for peer, mine in zip(seconds, ours))
        print(f"  gptforge / {name:44} {min(seconds) / min(ours):5.2f}x  [{each}]")
    ratio = min(rows[1][1]) / min(ours)
    verdict = "met" if ratio >= 1.5 else "NOT met"
    print(f"  target: gptforge / HF raw encode_batch >= 1.5x on {workers} cores → {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=40, help="megabytes of text in the corpus (default 40)")
    parser.add_argument("--files", type=int, default=4, help="corpus Parquet part files (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side; the best is reported (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="cores each side may use (default 2)")
    parser.add_argument("--shard-chars", type=int, default=0,
                        help="gptforge characters per shard (default: the corpus / (4 x workers), so the pool has "
                             "work for every worker; the flow's 400M default would make one shard here)")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--corpus-json", help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer-json", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.corpus_json, args.tokenizer_json, args.out, args.workers, args.shard_chars)
        return

    documents = source_documents()
    start = time.perf_counter()
    corpus = build_corpus(documents, args.mb, args.files, WORK / f"corpus-{args.mb:g}mb")
    tokenizer_json, vocab_size = train_tokenizer(documents, WORK / "tokenizer")
    print(f"input ready in {time.perf_counter() - start:.1f}s: tokenizer {tokenizer_json.relative_to(REPO_ROOT)} "
          f"(vocabulary {vocab_size:,}; asked {GPT2_VOCAB_SIZE:,}"
          f"{'' if vocab_size == GPT2_VOCAB_SIZE else ', the most one copy of the text allows'})")
    shard_chars = args.shard_chars or math.ceil(corpus.chars / (4 * args.workers))

    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    outs = {side: WORK / "runs" / side for side in SIDES}
    for repeat in range(args.repeats):
        for side in SIDES:
            runs[side].append(run_side(side, corpus, tokenizer_json, outs[side], args.workers, shard_chars))
        print(f"repeat {repeat + 1}: " + ", ".join(
            f"{side} {run[-1]['seconds']['encode'] if side == 'hf' else run[-1]['seconds']:.2f}s"
            for side, run in runs.items()), flush=True)
    print(f"gptforge plan: {runs['gptforge'][0]['shards']} shards of <= {shard_chars:,} characters")
    for line in check_identical_ids(corpus, outs["gptforge"], outs["hf"], outs["datatrove"]):
        print(f"check {line}")
    print_report(corpus, vocab_size, runs, args.workers, args.repeats)


if __name__ == "__main__":
    main()
