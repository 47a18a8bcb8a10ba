"""tokenize: a corpus version + a tokenizer version → sharded token datasets (``tokens/<v>/``).

    corpus/<v>/data/*.parquet ─► plan shards (per split, by doc_id hash) ─► encode shards on all cores ─► index.json ─► gate ─► publish

Shard boundaries depend only on the corpus and the parameters, each shard is written atomically and skipped when it
exists from the same plan, so a killed run resumes to byte-identical shards. Shards are encoded on a process pool
(``gptcore.encode_pool``) or, with ``task_runner="dask"``, one task per shard on a Dask cluster. Encoding uses a
tiktoken ``Encoding`` built from the trained merges when that is provably identical to Hugging Face's encoder (it is
for GPT-2-style byte-level BPE), else Hugging Face ``tokenizers``.
"""
from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import flow, task
from prefect.logging import get_run_logger

from data_contracts.tokens import validate_tokens
from flows.lineage import upstream_version, write_manifest
from flows.runners import check_runner, run_tasks, shard_runner
from flows.stage import finish_version, resolve_version, start_version
from flows.store import MANIFEST, DataRoot
from gptcore import encode_pool
from gptcore.corpus.records import REJECT_SCHEMA, reject
from gptcore.encoding import TOKENIZER_FILE, load_encoder
from gptcore.files import atomic_write_table
from gptcore.shards import INDEX_FILE, ShardStats, ShardTask, SplitRule, plan_shards, write_index

STAGE = "tokens"
MIN_SHARD_CHARS = 10_000_000  # below this a shard's fixed costs (process start, encoder load) dominate
REJECTS = "rejects.parquet"  # documents that encode to no tokens


@task(name="encode-shards")
def encode_shards(shards: list[ShardTask], tokenizer_json: str, workers: int) -> list[ShardStats]:
    """Encode every shard (skipping finished ones) on a process pool; results in plan order."""
    return encode_pool.encode_shards(shards, tokenizer_json, workers)


@task(name="encode-shard")
def encode_shard(shard: ShardTask, tokenizer_json: str) -> ShardStats:
    """One shard on a Dask worker (the worker process keeps the encoder for the next shard)."""
    return encode_pool.encode_shard(shard, tokenizer_json)


@flow(name="tokenize", log_prints=True)
def tokenize(
    corpus: str | None = None,
    tokenizer: str | None = None,
    version: str | None = None,
    data_root: str | None = None,
    validation_fraction: float = 0.005,
    shard_chars: int = 400_000_000,
    min_shards: int = 16,
    max_documents_per_shard: int | None = None,
    workers: int | None = None,
    task_runner: str = "local",
    dask_address: str | None = None,
) -> str:
    """Tokenize a corpus version (default: the newest) with a tokenizer version (default: the newest).

    Documents go to the validation split by a hash of their ``doc_id`` (``validation_fraction``), so adding documents
    in a later corpus version never moves one between splits. ``shard_chars`` is the text per shard (≈4 characters
    per GPT-2 token); a corpus smaller than ``min_shards`` such shards gets smaller ones (not below 10M characters)
    so every core has work. Boundaries depend only on the corpus and these parameters, never on ``workers``.
    Shards are flat ``uint16`` (``uint32`` above 65,535 ids) with end-of-text before each document.
    ``task_runner="dask"`` encodes one task per shard on a Dask cluster (``dask_address``, or a temporary local one
    of ``workers`` processes): the same shards, byte for byte (see ``flows/runners.py`` for what a cluster needs).
    """
    check_runner(task_runner, dask_address)
    logger = get_run_logger()
    root = DataRoot.from_env(data_root)
    corpus = resolve_version(root, "corpus", corpus, "tokenize")
    tokenizer = resolve_version(root, "tokenizer", tokenizer, "tokenize")
    # Verified reads, first and once: every file of both versions against its manifest, before anything is started;
    # so the checksums recorded below (upstream entries, index.json's tokenizer) are of the bytes used.
    corpus_folder, tokenizer_folder = root.local_version("corpus", corpus), root.local_version("tokenizer", tokenizer)
    corpus_up, tokenizer_up = upstream_version(root, "corpus", corpus), upstream_version(root, "tokenizer", tokenizer)
    tokenizer_manifest = json.loads((tokenizer_folder / MANIFEST).read_text())  # the copy just verified
    trained_on = [u for u in tokenizer_manifest["upstream"] if u.get("stage") == "corpus"]
    mismatch = not any(u["version"] == corpus and u["checksum"] == corpus_up["checksum"] for u in trained_on)
    if mismatch:
        logger.warning("tokenizer %s was trained on %s, not on corpus %s: allowed, and recorded in the manifest",
                       tokenizer, [u["version"] for u in trained_on], corpus)
    parameters = {"corpus": corpus, "corpus_checksum": corpus_up["checksum"], "tokenizer": tokenizer,
                  "tokenizer_checksum": tokenizer_up["checksum"], "validation_fraction": validation_fraction,
                  "shard_chars": shard_chars, "min_shards": min_shards, "max_documents_per_shard": max_documents_per_shard}
    started = start_version(root, STAGE, version, parameters)
    if started.published:  # an earlier run published it and was killed before its cleanup
        return started.published
    out = started.out
    out.mkdir(parents=True, exist_ok=True)
    corpus_files = sorted(corpus_folder.glob("data/*.parquet"))
    total_chars = sum(pc.sum(pq.read_table(f, columns=["n_chars"])["n_chars"]).as_py() or 0 for f in corpus_files)
    target = min(shard_chars, max(MIN_SHARD_CHARS, total_chars // max(min_shards, 1)))
    shards = plan_shards(corpus_files, out, validation_fraction=validation_fraction,
                         target_chars_per_shard=target, max_documents_per_shard=max_documents_per_shard)
    tokenizer_json = str(tokenizer_folder / TOKENIZER_FILE)
    encoder = load_encoder(tokenizer_json)
    logger.info("tokenizing corpus %s with tokenizer %s (%s encoder%s) into %d shards",
                corpus, tokenizer, encoder.kind, f", {encoder.fallback_reason}" if encoder.fallback_reason else "", len(shards))
    workers = workers or os.cpu_count() or 1
    if task_runner == "local":
        stats = encode_shards(shards, tokenizer_json, workers)
    else:
        with shard_runner(task_runner, dask_address, started.work, workers) as runner:
            stats = run_tasks(runner, encode_shard, [{"shard": s, "tokenizer_json": tokenizer_json} for s in shards])

    write_index(out, vocab_size=encoder.vocab_size, eot_id=encoder.eot_id,
                tokenizer_sha256=tokenizer_manifest["outputs"][TOKENIZER_FILE]["sha256"],
                split_rule=SplitRule(validation_fraction), shards=stats)
    empty = [reject(doc_id, "corpus", "tokenize", "empty_document", "encodes to no tokens", s.file, doc_id)
             for s in stats for doc_id in s.empty_doc_ids]
    atomic_write_table(out / REJECTS, pa.Table.from_pylist(empty, schema=REJECT_SCHEMA))
    counts = {split: {"tokens": sum(s.tokens for s in stats if s.split == split),
                      "documents": sum(s.documents for s in stats if s.split == split),
                      "shards": sum(1 for s in stats if s.split == split)} for split in ("train", "val")}
    counts |= {"tokens": sum(s.tokens for s in stats), "documents": sum(s.documents for s in stats),
               "empty_documents": len(empty), "replaced_characters": sum(s.replaced_characters for s in stats),
               "encoder": encoder.kind, "tokenizer_trained_on_other_corpus": mismatch}
    manifest = write_manifest(out, STAGE, started.name, parameters, [corpus_up, tokenizer_up], counts)
    report = validate_tokens(out, json.loads((out / INDEX_FILE).read_text()))
    rows = [{"shard": s.file, "split": s.split, "tokens": s.tokens, "documents": s.documents, "max_id": s.max_id}
            for s in stats]
    url = finish_version(root, started, manifest, report, rows,
                         asset_deps=[root.asset_key("corpus", corpus), root.asset_key("tokenizer", tokenizer)],
                         description="Token shards (index.json + .bin)")
    logger.info("tokens %s: %d train + %d val tokens in %d shards → %s", started.name, counts["train"]["tokens"],
                counts["val"]["tokens"], len(stats), url)
    return url
