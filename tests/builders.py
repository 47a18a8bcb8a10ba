"""Builders the tests share: small published versions, tokenizers, token folders and tasks made from real text.

Test modules import these from here, never from one another, so each test file can be read (and run) alone.
"""
from __future__ import annotations

import contextlib
import hashlib
import pydoc
import random
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
from prefect import flow
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from data_contracts.gate import GateReport
from flows.app.demo import prepare_inputs
from flows.app.demo_parameters import demo_parameters
from flows.demo.server import DemoServer
from flows.demo.site import build_site
from flows.lineage import write_manifest
from flows.stage import Version, finish_version, start_version
from flows.store import DataRoot
from flows.tokenize_corpus import tokenize
from flows.train_tokenizer import train_tokenizer
from gptcore.corpus.records import DOC_SCHEMA, doc_id_for
from gptcore.encoding import EOT_TOKEN
from gptcore.files import atomic_write_table
from gptcore.shards import ShardStats, ShardWriter, SplitRule, write_index
from gptcore.taskdata import ClassificationExample
from tests import webhosts

# --- corpus versions -------------------------------------------------------------------------------------------

MODULES = ["argparse", "base64", "calendar", "collections", "csv", "difflib", "fractions", "ftplib", "gettext",
           "heapq", "imaplib", "json", "logging", "mailbox", "optparse", "pathlib", "pickle", "pprint", "shlex",
           "shutil", "smtplib", "string", "tarfile", "textwrap", "threading", "unittest", "urllib.parse", "uuid",
           "wave", "zipfile"]


def publish_corpus(root: DataRoot, version: str, modules: list[str]) -> None:
    """A corpus version made of pydoc's plain-text rendering of stdlib modules, one document per paragraph group."""
    chunks = []
    for name in modules:
        text = pydoc.render_doc(name, renderer=pydoc.plaintext)
        chunks += [(f"file:///pydoc/{name}#{i // 3000}", text[i:i + 3000]) for i in range(0, len(text), 3000)]
    publish_documents(root, version, chunks)


def publish_documents(root: DataRoot, version: str, chunks: list[tuple[str, str]]) -> None:
    """A corpus version of (url, text) documents."""
    docs = [{"doc_id": doc_id_for(url), "url": url, "source": "text", "title": url, "text": chunk,
             "n_chars": len(chunk), "n_words": len(chunk.split()), "lang": "en", "lang_score": 1.0,
             "text_hash": hashlib.sha256(chunk.encode()).hexdigest(), "submission_ids": [], "subreddits": []}
            for url, chunk in chunks]
    work = root.work_dir("corpus", version) / "out"
    atomic_write_table(work / "data" / "part-00000.parquet", pa.Table.from_pylist(docs, schema=DOC_SCHEMA))
    write_manifest(work, "corpus", version, {}, [], {"documents": len(docs)})
    root.publish("corpus", version, work)


# pydoc pages are API listings, not prose: the prose filters are relaxed so that they become documents
LENIENT = {"min_alpha_word_fraction": 0.3, "max_duplicate_ngram_char_fraction": [[5, 1.0]], "max_top_ngram_char_fraction": [[2, 1.0]],
           "max_symbol_to_word_ratio": 1.0, "max_duplicate_line_fraction": 1.0, "max_duplicate_line_char_fraction": 1.0,
           "max_duplicate_paragraph_fraction": 1.0, "max_duplicate_paragraph_char_fraction": 1.0}


def publish_tokens(root: DataRoot) -> DataRoot:
    """Corpus ``c1`` (12 pydoc modules), tokenizer ``t1`` (512 ids) and tokens ``k1`` (10% validation) in ``root``."""
    publish_corpus(root, "c1", MODULES[:12])
    train_tokenizer(corpus="c1", version="t1", data_root=root.url, vocab_size=512, holdout_fraction=0.1)
    tokenize(version="k1", data_root=root.url, validation_fraction=0.1)
    return root


# TrainConfig fields of a short run of the tiny preset (pretrain's ``train`` parameter)
TINY_TRAIN = {"max_steps": 40, "warmup_steps": 5, "max_lr": 3e-3, "eval_every": 20, "eval_batches": 2,
              "checkpoint_every": 20, "batch_size": 8}
# The pipeline's ``pretrain`` stage for a tiny model that clearly learns the pydoc corpus
TINY_PIPELINE_PRETRAIN = {"preset": "tiny", "model": {"block_size": 128},
                          "train": {"max_steps": 120, "warmup_steps": 10, "max_lr": 5e-3, "eval_every": 60,
                                    "eval_batches": 2, "checkpoint_every": 60, "batch_size": 8}}


@contextlib.contextmanager
def served_demo_inputs(folder: Path, host: str, n_pages: int) -> Iterator[dict]:
    """The demo web (``n_pages`` pydoc pages) served on ``host`` at the fixed ports, its dump and text files, and
    the demo's build-corpus parameters with the fetcher allowed to reach ``host``."""
    pages = build_site(folder / "site", n_pages=n_pages)
    with DemoServer(folder / "site", webhosts.PAGES_PORT, host=host) as server, \
            DemoServer(folder / "site", webhosts.SLOW_PORT, delay_s=5.0, host=host) as slow:
        dump, texts = prepare_inputs(folder, server.base_url, slow.base_url, pages)
        params = demo_parameters(dump, texts)
        # One retry (the flaky endpoint needs it), after a short wait: the slow and failing endpoints then cost
        # seconds, not the demo's 9-17 s per URL, and a build waits for its slowest URL.
        fetch = params["fetch"] | {"allow_hosts": [host], "retries": 1, "backoff_base_s": 0.05}
        yield {"dump": dump, "texts": texts, "params": params | {"fetch": fetch}}


# --- tokenizers and token folders ---------------------------------------------------------------------------

def train_byte_level_bpe(lines: list[str], vocab_size: int, path: Path, eot_last: bool = False) -> Path:
    """A GPT-2-style tokenizer. The trainer gives its special tokens the first ids; GPT-2 has end-of-text last,
    which is added after training (eot_last)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[] if eot_last else [EOT_TOKEN],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(lines, trainer)
    if eot_last:
        tokenizer.add_special_tokens([EOT_TOKEN])
    tokenizer.save(str(path))
    return path


def tokens_folder(folder: Path, shards: dict[str, list[list[int]]], vocab_size: int = 5000) -> Path:
    """Write shards (name → documents, split from the name's prefix) with EOT id 0, and their index."""
    stats = []
    for name, docs in shards.items():
        with ShardWriter(folder / name, "<u2", eot_id=0) as writer:
            writer.add_documents(docs)
            s = writer.finish()
        stats.append(ShardStats(file=name, split=name.split("_")[0], tokens=s.tokens, documents=s.documents,
                                sha256=s.sha256, min_id=s.min_id, max_id=s.max_id))
    write_index(folder, vocab_size=vocab_size, eot_id=0, tokenizer_sha256="0" * 64, split_rule=SplitRule(0.1),
                shards=stats)
    return folder


def train_val_tokens(folder: Path, train_docs: list[list[int]], val_docs: list[list[int]], vocab_size: int) -> Path:
    """A tokens folder with one train and one val shard (EOT id 0)."""
    return tokens_folder(folder, {"train_000000.bin": train_docs, "val_000000.bin": val_docs}, vocab_size)


# --- tasks ------------------------------------------------------------------------------------------------------

SUBJECTS = ["the soup", "my train", "this film", "our garden", "the weather", "her essay", "the concert", "his car"]
GOOD = ["was wonderful", "felt great", "is lovely", "went well"]
BAD = ["was awful", "felt terrible", "is horrid", "went badly"]


def sentiment(n: int, seed: int) -> list[ClassificationExample]:
    """A classification task a tiny model can learn in a few dozen steps: the verb phrase decides the label."""
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        examples.append(ClassificationExample(f"{rng.choice(SUBJECTS)} {rng.choice(GOOD if label == 'pos' else BAD)} "
                                              f"today", label))
    return examples


# --- a toy stage flow (the skeleton every stage uses) ------------------------------------------------------------

@flow(name="toy-stage")
def toy_stage(data_root: str, version: str | None, text: str) -> str:
    """The shape of every stage flow, with one output file."""
    root = DataRoot.from_env(data_root)
    started = start_version(root, "tokens", version, {"text": text})
    if started.published:
        return started.published
    return build_and_finish(root, started, text)


def build_and_finish(root: DataRoot, started: Version, text: str) -> str:
    started.out.mkdir(parents=True, exist_ok=True)
    (started.out / "data.txt").write_text(text)
    manifest = write_manifest(started.out, "tokens", started.name, {"text": text}, [], {"chars": len(text)})
    return finish_version(root, started, manifest, GateReport("toy", evaluated=1), [], ["file:///toy-input"], "toy")
