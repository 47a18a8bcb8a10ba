"""train-tokenizer: a corpus version → a BPE vocabulary (``tokenizer/<v>/tokenizer.json``), gated on held-out text.

GPT-2 style (default): byte-level BPE, 256 bytes + 50,000 merges + ``<|endoftext|>`` = 50,257 ids, GPT-2's
pre-tokenization regex, no unknown tokens. GPT-1 style: ftfy, GPT-1's text standardization, spaCy's rule-based
English tokenizer, lowercase, 40,000 merges with ``</w>`` end-of-word markers. Trained on a bounded sample streamed
from the corpus; checked on held-out documents (chosen by a hash of ``doc_id``; at least one, see
``gptcore.bpe_sample.plan_holdout``) it never saw.
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.logging import get_run_logger
from tokenizers import Tokenizer

from data_contracts.tokenizer import validate_tokenizer
from flows.lineage import upstream_version, write_manifest
from flows.stage import finish_version, resolve_version, start_version
from flows.store import DataRoot, check_version
from gptcore.bpe import END_OF_TEXT, GPT2_VOCAB_SIZE, bpe_merges, bytes_per_token, round_trip_failures, train_gpt2_bpe, vocab_checksum
from gptcore.bpe_gpt1 import GPT1_MERGES, train_gpt1_bpe
from gptcore.bpe_sample import SampleStats, iter_corpus_texts, plan_holdout
from gptcore.encoding import TOKENIZER_FILE
from gptcore.gpt1_text import gpt1_pretokenize

STAGE = "tokenizer"
STYLES = ("gpt2", "gpt1")


@task(name="train-bpe")
def train(files: list[Path], style: str, vocab_size: int, merges: int, special_tokens: list[str], sample_bytes: int,
          holdout_fraction: float, min_frequency: int, out: Path) -> dict:
    """Train on the sample and save ``TOKENIZER_FILE``; returns what the manifest records about the sample."""
    stats = SampleStats()
    texts = iter_corpus_texts(files, sample_bytes, split="train", holdout_fraction=holdout_fraction, stats=stats)
    if style == "gpt2":
        tokenizer = train_gpt2_bpe(texts, vocab_size=vocab_size, special_tokens=tuple(special_tokens), min_frequency=min_frequency)
    else:
        tokenizer = train_gpt1_bpe(texts, merges=merges, special_tokens=tuple(special_tokens), min_frequency=min_frequency)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / TOKENIZER_FILE))
    return {"documents": stats.documents, "bytes": stats.utf8_bytes, "truncated_documents": stats.truncated_documents,
            "empty_documents": stats.empty_documents}


@task(name="check-on-held-out")
def check(tokenizer_json: Path, files: list[Path], style: str, heldout_bytes: int, holdout_fraction: float) -> dict:
    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    heldout = list(iter_corpus_texts(files, heldout_bytes, split="holdout", holdout_fraction=holdout_fraction))
    pretokenize = gpt1_pretokenize if style == "gpt1" else None  # GPT-1 is lossy by design: check its normalized text
    widened = plan_holdout(files, holdout_fraction).widened
    return {"heldout_documents": len(heldout), "heldout_widened_to_lowest_hash": widened, "heldout_bytes": sum(len(t.encode()) for t in heldout),
            "bytes_per_token": bytes_per_token(tokenizer, heldout, pretokenize) if heldout else 0.0,
            "round_trip_failures": len(round_trip_failures(tokenizer, heldout, pretokenize)),
            "vocab_size": tokenizer.get_vocab_size(), "merges": len(bpe_merges(tokenizer)),
            "vocab_checksum": vocab_checksum(tokenizer)}


@flow(name="train-tokenizer", log_prints=True)
def train_tokenizer(
    corpus: str | None = None,
    version: str | None = None,
    data_root: str | None = None,
    style: str = "gpt2",
    vocab_size: int = GPT2_VOCAB_SIZE,
    merges: int = GPT1_MERGES,
    special_tokens: list[str] | None = None,
    sample_bytes: int = 1_000_000_000,
    heldout_bytes: int = 10_000_000,
    holdout_fraction: float = 0.01,
    min_frequency: int = 2,
) -> str:
    """Train a tokenizer on a corpus version (default: the newest); returns the tokenizer folder.

    ``style="gpt2"`` uses ``vocab_size`` (bytes + merges + special tokens); ``style="gpt1"`` uses ``merges``.
    ``sample_bytes`` bounds the training text (the trainer's memory grows with it); ``holdout_fraction`` of the
    documents (by ``doc_id`` hash) are never trained on and check the result. Fine-tuning tokens (start, delimiter,
    extract) are added by finetune, not here.
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    logger = get_run_logger()
    root = DataRoot.from_env(data_root)
    if version is not None:
        check_version(STAGE, version)  # a bad name is refused before the corpus is read
    corpus = resolve_version(root, "corpus", corpus, "train-tokenizer")
    corpus_up = upstream_version(root, "corpus", corpus)
    special_tokens = list(special_tokens if special_tokens is not None else [END_OF_TEXT])
    parameters = {"corpus": corpus, "corpus_checksum": corpus_up["checksum"], "style": style,
                  "vocab_size": vocab_size if style == "gpt2" else None, "merges": merges if style == "gpt1" else None,
                  "special_tokens": special_tokens, "sample_bytes": sample_bytes, "heldout_bytes": heldout_bytes,
                  "holdout_fraction": holdout_fraction, "min_frequency": min_frequency}
    files = sorted(root.local_version("corpus", corpus).glob("data/*.parquet"))
    if plan_holdout(files, holdout_fraction).empty:  # fail before any work, not at the gate
        raise ValueError(f"train-tokenizer: corpus {corpus} leaves no held-out document to check the tokenizer on "
                         f"(holdout_fraction={holdout_fraction}; it needs at least 2 non-empty documents): set "
                         "holdout_fraction above 0, or build a corpus of more documents (e.g. a finer text split)")
    started = start_version(root, STAGE, version, parameters)
    if started.published:  # an earlier run published it and was killed before its cleanup
        return started.published
    sample = train(files, style, vocab_size, merges, special_tokens, sample_bytes, holdout_fraction, min_frequency, started.out)
    checked = check(started.out / TOKENIZER_FILE, files, style, heldout_bytes, holdout_fraction)
    # GPT-2 style asks for an exact vocabulary size; GPT-1 style for an exact number of merges on top of the
    # sample's base symbols (40,000 merges + 478 symbols gave the paper's 40,478).
    expected = vocab_size if style == "gpt2" else checked["vocab_size"] - checked["merges"] + merges
    tokenizer = Tokenizer.from_file(str(started.out / TOKENIZER_FILE))
    missing = [t for t in special_tokens if tokenizer.token_to_id(t) is None]
    counts = {"sample": sample, **checked, "special_tokens": {t: tokenizer.token_to_id(t) for t in special_tokens}}
    manifest = write_manifest(started.out, STAGE, started.name, parameters, [corpus_up], counts)
    report = validate_tokenizer(checked["vocab_size"], expected, missing, checked["round_trip_failures"],
                                checked["heldout_documents"], checked["bytes_per_token"])
    rows = [{"what": k, "value": v} for k, v in checked.items()] + [{"what": f"sample {k}", "value": v} for k, v in sample.items()]
    url = finish_version(root, started, manifest, report, rows, asset_deps=[root.asset_key("corpus", corpus)],
                         description=f"{style} BPE tokenizer")
    logger.info("tokenizer %s: %d ids, %.2f bytes/token on %d held-out documents → %s", started.name,
                checked["vocab_size"], checked["bytes_per_token"], checked["heldout_documents"], url)
    return url
