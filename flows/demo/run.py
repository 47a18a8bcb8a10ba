"""``gptforge demo``: the embedded default, run through the real local Prefect stack.

Starts the stack (server + served deployments) unless it runs, builds the demo web from pydoc pages, serves it on
127.0.0.1, writes a noisy Pushshift-style dump pointing at it, then runs ``build-corpus/local``,
``train-tokenizer/local``, ``tokenize/local`` and ``pretrain/local`` through the server, following each run and
printing a summary, and ends with a sample from the trained model.
Every stage writes version ``demo``; a second demo reuses what exists.
"""
from __future__ import annotations

import os
from pathlib import Path

DEMO_VERSION = "demo"


def demo_parameters(dump: Path, texts: list[Path]) -> dict:
    """The demo's build-corpus parameters: its own loopback host allowed, short timeouts for the slow endpoints."""
    return {"dumps": [str(dump)], "texts": [str(p) for p in texts], "version": DEMO_VERSION,
            "allow_hosts": ["127.0.0.1"], "connect_timeout_s": 2.0, "read_timeout_s": 2.0,
            "max_page_bytes": 2 * 1024 * 1024, "shard_size": 100,
            # pydoc pages repeat inherited-member boilerplate by construction ("Data descriptors defined here", …),
            # which Gopher's repetition limits (tuned for web prose) reject; the demo relaxes them.
            "quality": {"max_duplicate_line_fraction": 0.6, "max_duplicate_line_char_fraction": 0.5,
                        "max_duplicate_ngram_char_fraction": [[5, 0.6], [6, 0.6], [7, 0.6], [8, 0.6], [9, 0.6], [10, 0.6]]}}


def prepare_inputs(folder: Path, base_url: str, slow_base_url: str, pages) -> tuple[Path, list[Path]]:
    from flows.demo.dump import write_demo_dump
    from flows.demo.site import write_demo_texts

    dump = folder / "RS_2019-06.zst"
    write_demo_dump(dump, base_url, pages, seed=0, slow_base_url=slow_base_url)
    return dump, write_demo_texts(folder / "texts")


# The demo corpus is ~1 MB of text: a 4,096-id vocabulary is what it supports (GPT-2's 50,257 needs far more text),
# and 5% held out / validation keeps a few documents on the other side of each split.
TOKENIZER_PARAMETERS = {"version": DEMO_VERSION, "corpus": DEMO_VERSION, "vocab_size": 4096, "holdout_fraction": 0.05}
TOKENS_PARAMETERS = {"version": DEMO_VERSION, "corpus": DEMO_VERSION, "tokenizer": DEMO_VERSION, "validation_fraction": 0.05}
# About a minute of CPU training: enough to beat the unigram baseline clearly, not to write well.
PRETRAIN_PARAMETERS = {"run": DEMO_VERSION, "tokens": DEMO_VERSION, "preset": "small-cpu", "max_steps": 300,
                       "warmup_steps": 30, "max_lr": 1e-3, "batch_size": 8, "eval_every": 100, "eval_batches": 5,
                       "checkpoint_every": 100}


def corpus_summary(manifest: dict) -> str:
    counts = manifest["counts"]
    lines = [f"corpus {manifest['version']}: {counts['documents']} documents, {counts['rejects']} rejects, "
             f"{counts.get('links', 0)} links",
             "  rejects by reason: " + ", ".join(f"{k}={v}" for k, v in counts["rejects_by_reason"].items())]
    for source, c in counts["accounting"].items():
        lines.append(f"  {source}: {c['inputs']} inputs = {c['kept']} kept + {c['rejected']} rejected")
    return "\n".join(lines)


def tokenizer_summary(manifest: dict) -> str:
    c = manifest["counts"]
    return (f"tokenizer {manifest['version']}: {c['vocab_size']} ids, {c['bytes_per_token']:.2f} bytes/token and "
            f"{c['round_trip_failures']} round-trip failures on {c['heldout_documents']} held-out documents")


def tokens_summary(manifest: dict) -> str:
    c = manifest["counts"]
    return (f"tokens {manifest['version']}: {c['train']['tokens']:,} train + {c['val']['tokens']:,} validation tokens "
            f"in {c['train']['shards'] + c['val']['shards']} shards ({c['encoder']} encoder)")


def run_summary(manifest: dict) -> str:
    c = manifest["counts"]
    return (f"run {manifest['version']}: {c['step']} steps, {c['tokens_seen']:,} tokens in {c['elapsed_s']} s; "
            f"loss {c['loss']:.3f}, validation loss {c['val_loss']:.3f} (unigram baseline {c['unigram_entropy']:.3f})")


SUMMARIES = {"corpus": corpus_summary, "tokenizer": tokenizer_summary, "tokens": tokens_summary, "runs": run_summary}


def run_demo(keep_stack: bool = False) -> str:
    """Build the demo corpus through the local stack; returns the corpus folder (printed last by the CLI)."""
    from flows.stack import Stack
    from flows.store import DataRoot

    stack = Stack.from_env()
    os.environ.update(stack.env())
    root = DataRoot.from_env()
    started = stack.status()["server"] != "running"
    print(f"starting the local Prefect stack ({stack.ui_url}) …" if started else f"using the running stack at {stack.ui_url}")
    stack.up()
    try:
        return _build(stack, root)
    finally:
        if started and not keep_stack:
            stack.down()
            print("stopped the local stack it started (`gptforge up` keeps one running; `gptforge down` stops it)")


def _run(stack, root, stage: str, deployment: str, parameters: dict) -> None:
    """Run one stage's deployment through the server unless its demo version exists; print its summary."""
    from prefect.deployments import run_deployment

    if root.exists(stage, DEMO_VERSION):
        print(f"reusing {root.version_url(stage, DEMO_VERSION)} (delete it to rebuild)")
    else:
        run = run_deployment(deployment, parameters=parameters, timeout=None)
        url = f"{stack.ui_url}/runs/flow-run/{run.id}"
        if not run.state.is_completed():
            raise SystemExit(f"{deployment} run {run.name} ended {run.state.name}: {run.state.message}\nsee {url}")
        print(f"{deployment}: {url}")
    print(SUMMARIES[stage](root.read_manifest(stage, DEMO_VERSION)))


def _build(stack, root) -> str:
    from flows.demo.server import DemoServer
    from flows.demo.site import build_site

    if not root.exists("corpus", DEMO_VERSION):
        folder = stack.state / "demo"
        pages = build_site(folder / "site")
        with DemoServer(folder / "site") as server, DemoServer(folder / "site", delay_s=5.0) as slow:
            dump, texts = prepare_inputs(folder, server.base_url, slow.base_url, pages)
            print(f"demo web: {len(pages)} pages on {server.base_url}; dump {dump}")
            _run(stack, root, "corpus", "build-corpus/local", demo_parameters(dump, texts))
    else:
        _run(stack, root, "corpus", "build-corpus/local", {})
    _run(stack, root, "tokenizer", "train-tokenizer/local", TOKENIZER_PARAMETERS)
    _run(stack, root, "tokens", "tokenize/local", TOKENS_PARAMETERS)
    _run(stack, root, "runs", "pretrain/local", PRETRAIN_PARAMETERS)
    from flows.sample import sample_from_run

    run = root.version_url("runs", DEMO_VERSION)
    print("sample: " + repr(sample_from_run(run, "The module", max_new_tokens=40)))
    print(f"Prefect UI: {stack.ui_url}")
    return run
