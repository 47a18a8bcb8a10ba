"""The demo's parameters: what `gptforge demo` and the served ``pipeline/demo`` deployment run (no Prefect here)."""
from __future__ import annotations

import os
from pathlib import Path

DEMO_VERSION = "demo"
# Document ids hash the URL, port included: the demo web always answers at the same address, so every demo builds
# the same corpus, splits and figures. GPTFORGE_DEMO_PORT moves it when something else holds the port.
DEMO_HOST = "127.0.0.1"
DEMO_PORT_ENV, DEFAULT_DEMO_PORT = "GPTFORGE_DEMO_PORT", 18700


def demo_ports() -> tuple[int, int]:
    """The demo site's port and its slow twin's (the next one)."""
    port = int(os.environ.get(DEMO_PORT_ENV, DEFAULT_DEMO_PORT))
    return port, port + 1


def demo_parameters(dump: Path, texts: list[Path]) -> dict:
    """The demo's build-corpus parameters: its own loopback host allowed, short timeouts for the slow endpoints."""
    return {"dumps": [str(dump)], "texts": [str(p) for p in texts], "version": DEMO_VERSION, "shard_size": 100,
            "fetch": {"allow_hosts": ["127.0.0.1"], "connect_timeout_s": 2.0, "read_timeout_s": 2.0,
                      "max_body_bytes": 2 * 1024 * 1024},
            # pydoc pages repeat inherited-member boilerplate by construction ("Data descriptors defined here", …),
            # which Gopher's repetition limits (tuned for web prose) reject; the demo relaxes them. They are also
            # code-heavy: Gopher counts punctuation tokens as words, and 20-50% of a pydoc page's words have no
            # letter (median 33%), so the demo admits pages down to 55% alphabetic words (Gopher: 80%).
            "process": {"quality": {
                "min_alpha_word_fraction": 0.55,
                "max_duplicate_line_fraction": 0.6, "max_duplicate_line_char_fraction": 0.5,
                "max_duplicate_ngram_char_fraction": [[5, 0.6], [6, 0.6], [7, 0.6], [8, 0.6], [9, 0.6], [10, 0.6]]}}}


# The pipeline/demo deployment's parameters; `gptforge demo` adds the corpus inputs it serves and the task files.
DEMO_PIPELINE = {
    "version": DEMO_VERSION,
    # The demo corpus is ~1 MB of text: a 4,096-id vocabulary is what it supports (GPT-2's 50,257 needs far more
    # text); 5% of documents held out of tokenizer training and 10% for validation keep several on the other side.
    "train_tokenizer": {"vocab_size": 4096, "holdout_fraction": 0.05},
    "tokenize": {"validation_fraction": 0.1},
    # About 1.5M tokens (~7 passes over the ~200k-token corpus) in two to three CPU minutes: validation loss still falls
    # at the end (4.45 nats against 5.07 after 300 steps), and samples are mostly words rather than identifiers.
    "pretrain": {"preset": "small-cpu", "train": {"max_steps": 1500, "warmup_steps": 50, "max_lr": 1e-3, "batch_size": 8,
                                                  "eval_every": 250, "eval_batches": 5, "checkpoint_every": 500}},
}


def pipeline_parameters(corpus: dict, tasks: dict[str, str]) -> dict:
    """The whole demo: corpus inputs, the stages above, fine-tuning and evaluation on the held-out tasks."""
    return {**DEMO_PIPELINE, "build_corpus": {k: v for k, v in corpus.items() if k != "version"},
            "finetune": [{"name": "next-sentence", "task": "multiple_choice", "train": tasks["next_train"],
                          "test": tasks["next_test"],
                          "finetune": {"epochs": 3, "batch_size": 8, "lr": 2.5e-4, "max_len": 128}}],
            "evaluate": {"tasks": [
                {"name": "next-sentence", "type": "multiple_choice", "path": tasks["next_test"]},
                {"name": "next-sentence-finetuned", "type": "finetuned", "task": "multiple_choice",
                 "path": tasks["next_test"]},
                {"name": "last-word", "type": "lambada", "path": tasks["last_word"]}]}}
