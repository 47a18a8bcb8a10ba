"""``gptforge demo``: the embedded default, run through the real local Prefect stack.

Starts the stack (server + served deployments) unless it runs, builds the demo web from pydoc pages, serves it on
127.0.0.1, writes a noisy Pushshift-style dump pointing at it, triggers ``build-corpus/local`` through the server,
follows the run and prints a summary. A second demo reuses the published ``corpus/demo`` version.
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


def summary(manifest: dict, flow_run_url: str | None) -> str:
    counts = manifest["counts"]
    lines = [f"corpus {manifest['version']}: {counts['documents']} documents, {counts['rejects']} rejects, "
             f"{counts.get('links', 0)} links",
             "rejects by reason: " + ", ".join(f"{k}={v}" for k, v in counts["rejects_by_reason"].items())]
    for source, c in counts["accounting"].items():
        lines.append(f"{source}: {c['inputs']} inputs = {c['kept']} kept + {c['rejected']} rejected")
    if flow_run_url:
        lines.append(f"flow run: {flow_run_url}")
    return "\n".join(lines)


def run_demo(keep_stack: bool = False) -> str:
    """Build the demo corpus through the local stack; returns the corpus folder (printed last by the CLI)."""
    from flows.stack import Stack
    from flows.store import DataRoot

    stack = Stack.from_env()
    os.environ.update(stack.env())
    root = DataRoot.from_env()
    if root.exists("corpus", DEMO_VERSION):
        print(f"reusing {root.version_url('corpus', DEMO_VERSION)} (delete it to rebuild)")
        print(summary(root.read_manifest("corpus", DEMO_VERSION), None))
        return root.version_url("corpus", DEMO_VERSION)

    started = stack.status()["server"] != "running"
    print(f"starting the local Prefect stack ({stack.ui_url}) …" if started else f"using the running stack at {stack.ui_url}")
    stack.up()
    try:
        return _build(stack, root)
    finally:
        if started and not keep_stack:
            stack.down()
            print("stopped the local stack it started (`gptforge up` keeps one running; `gptforge down` stops it)")


def _build(stack, root) -> str:
    from prefect.deployments import run_deployment

    from flows.demo.server import DemoServer
    from flows.demo.site import build_site

    folder = stack.state / "demo"
    pages = build_site(folder / "site")
    with DemoServer(folder / "site") as server, DemoServer(folder / "site", delay_s=5.0) as slow:
        dump, texts = prepare_inputs(folder, server.base_url, slow.base_url, pages)
        print(f"demo web: {len(pages)} pages on {server.base_url}; dump {dump}")
        run = run_deployment("build-corpus/local", parameters=demo_parameters(dump, texts), timeout=None)
    url = f"{stack.ui_url}/runs/flow-run/{run.id}"
    if not run.state.is_completed():
        raise SystemExit(f"build-corpus run {run.name} ended {run.state.name}: {run.state.message}\nsee {url}")
    print(summary(root.read_manifest("corpus", DEMO_VERSION), url))
    return root.version_url("corpus", DEMO_VERSION)
