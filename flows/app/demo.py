"""``gptforge demo``: the embedded default, run through the real local Prefect stack.

Starts the stack (server + served deployments) unless it runs, builds the demo web from pydoc pages, serves it at a
fixed loopback address (so every demo gets the same document ids, splits and figures), writes a noisy
Pushshift-style dump pointing at it (pages held out of the dump become the evaluation tasks), then triggers the
``pipeline/demo`` deployment through the server — build-corpus → train-tokenizer → tokenize → pretrain → finetune
→ evaluate, each a child run — and prints each stage's log lines as the server receives them (flows/app/progress.py),
then a summary per stage, the evaluation table, a sample from the model and the run's UI link. Every stage writes
version ``demo``; a second demo reuses what exists.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from flows.app.demo_parameters import DEMO_HOST, DEMO_PORT_ENV, DEMO_VERSION, demo_parameters, demo_ports, pipeline_parameters
from flows.app.stack import Stack
from flows.demo.dump import write_demo_dump
from flows.demo.server import DemoServer
from flows.demo.site import SITE_MANIFEST, build_site, read_site, write_demo_texts
from flows.demo.tasks import page_texts, write_demo_tasks
from flows.sample import sample_from_run
from flows.store import DataRoot

# Modules that import Prefect are imported inside the functions: Prefect reads its settings on import, and
# run_demo points them at the local stack first.


def prepare_inputs(folder: Path, base_url: str, slow_base_url: str, pages) -> tuple[Path, list[Path]]:
    dump = folder / "RS_2019-06.zst"
    write_demo_dump(dump, base_url, pages, seed=0, slow_base_url=slow_base_url)
    return dump, write_demo_texts(folder / "texts")


HELD_OUT_PAGES = 32  # pages the dump never links: the text of the evaluation and fine-tuning tasks (~150 test items)


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
    if "unigram_entropy" not in c:  # a fine-tuning run
        metrics = ", ".join(f"{k.removeprefix('test_')} {v:.3f}" for k, v in c.items()
                            if k.startswith("test_") and isinstance(v, float))
        return f"run {manifest['version']} (fine-tuned): {c.get('step', '?')} steps; test {metrics}"
    return (f"run {manifest['version']}: {c['step']} steps, {c['tokens_seen']:,} tokens in {c['elapsed_s']} s; "
            f"loss {c['loss']:.3f}, validation loss {c['val_loss']:.3f} (unigram baseline {c['unigram_entropy']:.3f})")


def eval_summary(root, version: str) -> str:
    from flows.evaluate import read_results  # imports Prefect (see above)

    results = read_results(root, version)
    # A fine-tuned head's metrics carry no chance level; a zero-shot task on the same file (same sha256) has it.
    chance_of_file = {results["tasks"][name]["sha256"]: task["metrics"]["chance"]
                      for run in results["runs"].values() for name, task in run["tasks"].items()
                      if "chance" in task["metrics"]}
    lines = [f"eval {version}:"]
    for label, run in results["runs"].items():
        ppl = run["perplexity"]
        lines.append(f"  {label}: validation perplexity {ppl['perplexity']:.1f}, {ppl['bits_per_byte']:.3f} bits/byte")
        for name, task in run["tasks"].items():
            metrics = task["metrics"]
            shown = {k: v for k, v in metrics.items() if isinstance(v, float) and k != "chance"}
            chance = metrics.get("chance", chance_of_file.get(results["tasks"][name]["sha256"]))
            overlap = (task.get("contamination") or {}).get("fraction_ngrams_found")
            lines.append(f"    {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in list(shown.items())[:4])
                         + above_chance(metrics, chance)
                         + (f"; 8-gram overlap with pretraining {overlap:.3f}" if overlap is not None else ""))
    return "\n".join(lines)


def above_chance(metrics: dict, chance: float | None) -> str:
    """The chance level and the accuracy's distance from it in binomial standard errors, for a summary line."""
    if chance is None:
        return ""
    accuracy, n = metrics.get("acc", metrics.get("accuracy")), metrics.get("examples", metrics.get("n"))
    if accuracy is None or not n:
        return f" (chance {chance:.2f})"
    se = math.sqrt(max(accuracy * (1 - accuracy), 1e-12) / n)
    return f" (chance {chance:.2f}; {accuracy:.3f} ± {se:.3f} over {n} items, {(accuracy - chance) / se:.1f} SE above)"


SUMMARIES = {"corpus": corpus_summary, "tokenizer": tokenizer_summary, "tokens": tokens_summary, "runs": run_summary}


def run_demo(keep_stack: bool = False) -> str:
    """Run the whole demo through the local stack; returns the evaluation folder (printed last by the CLI)."""
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


def _site(folder: Path):
    """The demo web (built once), split into the pages the dump links and the pages held out for the tasks."""
    site = folder / "site"
    pages = read_site(site) if (site / SITE_MANIFEST).is_file() else build_site(site)
    held = [p for p in pages if p.kind == "page"][-HELD_OUT_PAGES:]
    held_paths = {p.path for p in held}
    linked = [p for p in pages if p.path not in held_paths and p.duplicate_of not in held_paths]
    return site, linked, held


def _demo_server(site: Path, port: int, delay_s: float = 0.0) -> DemoServer:
    """A demo web server at the demo's fixed address, or an exit that says how to move it."""
    try:
        return DemoServer(site, port, host=DEMO_HOST, delay_s=delay_s)
    except OSError as error:
        raise SystemExit(f"{error.strerror}\nset {DEMO_PORT_ENV} to a free port (the demo uses it and the next one)") from error


def _build(stack, root) -> str:
    from prefect.deployments import run_deployment  # after run_demo pointed Prefect at the stack

    from flows.app.progress import follow_run

    folder = stack.state / "demo"
    site, linked, held = _site(folder)
    tasks_dir = folder / "tasks"
    if (tasks_dir / "last_word.jsonl").is_file():
        tasks = {p.stem: str(p) for p in tasks_dir.glob("*.jsonl")}
    else:
        linked_pages = [p for p in linked if p.kind == "page"]
        tasks = write_demo_tasks(page_texts(site, held), tasks_dir, page_texts(site, linked_pages))
    pages_port, slow_port = demo_ports()
    with _demo_server(site, pages_port) as server, _demo_server(site, slow_port, delay_s=5.0) as slow:
        dump, texts = prepare_inputs(folder, server.base_url, slow.base_url, linked)
        print(f"demo web: {len(linked)} pages linked on {server.base_url} ({len(held)} held out for the tasks); "
              f"dump {dump}")
        run = run_deployment("pipeline/demo", parameters=pipeline_parameters(demo_parameters(dump, texts), tasks),
                             timeout=0)
        url = f"{stack.ui_url}/runs/flow-run/{run.id}"
        print(f"running pipeline/demo through the server: {url}")
        run = follow_run(run.id)
    if not run.state.is_completed():
        raise SystemExit(f"pipeline/demo run {run.name} ended {run.state.name}: {run.state.message}\nsee {url}")
    for stage in ("corpus", "tokenizer", "tokens", "runs"):
        print(SUMMARIES[stage](root.read_manifest(stage, DEMO_VERSION)))
    print(run_summary(root.read_manifest("runs", f"{DEMO_VERSION}-next-sentence")))
    print(eval_summary(root, DEMO_VERSION))
    # Cooler than sample_from_run's default (0.8, top 50): over seeds 0-3, 100% of the sample's words occur in the
    # corpus at (0.7, top 20), 82-100% at the default.
    sample = sample_from_run(root.version_url("runs", DEMO_VERSION), "The module", max_new_tokens=40, temperature=0.7,
                             top_k=20)
    print("sample: " + repr(sample))
    print(f"pipeline run: {url}")
    print(f"Prefect UI: {stack.ui_url}")
    return root.version_url("eval", DEMO_VERSION)
