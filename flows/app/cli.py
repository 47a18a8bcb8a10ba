"""The ``gptforge`` command: the local Prefect stack, running stages, the demo and lineage."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from flows.app.stack import Stack

# The commands import the rest inside their functions, for two real costs: Prefect reads its settings once, on
# import, so nothing that imports it may load before use_local_stack_if_up(); and torch takes seconds to import,
# which `gptforge up/down/status` should not pay.


def parse_params(pairs: list[str]) -> dict:
    """``key=value`` pairs; values parsed as JSON when they parse (like ``prefect deployment run -p``), else strings."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"gptforge: parameter {pair!r} is not key=value (example: -p min_score=3)")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def use_local_stack_if_up() -> None:
    """Point Prefect at the local stack when it runs and no other API is configured (so runs show in its UI).

    Only effective before Prefect is imported: its settings are read once, at import.
    """
    stack = Stack.from_env()
    if "PREFECT_API_URL" not in os.environ and stack.healthy():
        os.environ.update(stack.env())


def cmd_run(args: argparse.Namespace) -> None:
    # First: Prefect fixes its settings when it is first imported (prefect.context), and flows.app.deployments imports it.
    use_local_stack_if_up()
    from flows.app.deployments import stage_flows

    flows = {f.name: f for f in stage_flows()}
    if args.stage not in flows:
        raise SystemExit(f"gptforge: unknown stage {args.stage!r}; stages: {', '.join(flows)}")
    result = flows[args.stage](**parse_params(args.param))
    print(result)


def cmd_up(args: argparse.Namespace) -> None:
    stack = Stack.from_env()
    stack.up()
    print(f"Prefect server and deployments are up. UI: {stack.ui_url}")
    print("Deployments: " + ", ".join(stack.deployments()))
    print("To use the prefect CLI against it:  eval \"$(gptforge env)\"")


def cmd_down(args: argparse.Namespace) -> None:
    stopped = Stack.from_env().down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


def cmd_status(args: argparse.Namespace) -> None:
    status = Stack.from_env().status()
    for key, value in status.items():
        print(f"{key:12} {', '.join(value) if isinstance(value, list) else value}")
    if status["server"] != "running":
        sys.exit(1)


def cmd_env(args: argparse.Namespace) -> None:
    for key, value in Stack.from_env().env().items():
        print(f"export {key}={value}")


def cmd_lineage(args: argparse.Namespace) -> None:
    from flows.lineage import find_version_folder, format_lineage

    remote = "://" in args.path and not args.path.startswith("file://")
    print(format_lineage(args.path if remote else find_version_folder(args.path)))


def cmd_export(args: argparse.Namespace) -> None:
    from gptcore.export import export_llmc, export_nanogpt

    written = export_nanogpt(args.tokens, args.out) if args.format == "nanogpt" else export_llmc(args.tokens, args.out)
    for path in (written.values() if isinstance(written, dict) else written):
        print(path)


def cmd_generate(args: argparse.Namespace) -> None:
    from flows.sample import sample_from_run

    print(sample_from_run(args.run, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed))


def cmd_champion(args: argparse.Namespace) -> None:
    from flows.registry import Registry, format_registry
    from flows.store import DataRoot

    print(format_registry(Registry.load(DataRoot.from_env(args.data_root), args.registry)))


def cmd_demo(args: argparse.Namespace) -> None:
    from flows.app.demo import run_demo

    print(run_demo(keep_stack=args.keep_stack))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gptforge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the local Prefect server and serve every deployment").set_defaults(fn=cmd_up)
    sub.add_parser("down", help="stop the local stack").set_defaults(fn=cmd_down)
    sub.add_parser("status", help="is the local stack running; which deployments it serves").set_defaults(fn=cmd_status)
    sub.add_parser("env", help="print the exports that point the prefect CLI at the local stack").set_defaults(fn=cmd_env)
    run = sub.add_parser("run", help="run a stage flow in-process; prints the output version folder last")
    run.add_argument("stage", help="build-corpus, train-tokenizer, tokenize, pretrain, finetune, evaluate, pipeline, "
                     "retrain")
    run.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="flow parameter (JSON value)")
    run.set_defaults(fn=cmd_run)
    lineage = sub.add_parser("lineage", help="print where a version came from, from the manifests alone")
    lineage.add_argument("path", help="a version folder (or a file inside one), or a version URL such as "
                         "s3://bucket/root/runs/v0001")
    lineage.set_defaults(fn=cmd_lineage)
    export = sub.add_parser("export", help="write a tokens version in another trainer's format")
    export.add_argument("format", choices=["nanogpt", "llmc"], help="nanoGPT train.bin/val.bin, or llm.c shards")
    export.add_argument("tokens", type=Path, help="a tokens version folder, e.g. data/tokens/v0001")
    export.add_argument("out", type=Path, help="output folder")
    export.set_defaults(fn=cmd_export)
    gen = sub.add_parser("generate", help="sample from a pretraining run's latest checkpoint")
    gen.add_argument("--run", required=True, type=Path, help="a run folder, e.g. data/runs/v0001")
    gen.add_argument("--prompt", default="", help="text to continue")
    gen.add_argument("--max-new-tokens", type=int, default=100)
    gen.add_argument("--temperature", type=float, default=0.8)
    gen.add_argument("--top-k", type=int, default=50)
    gen.add_argument("--top-p", type=float, default=None)
    gen.add_argument("--seed", type=int, default=0)
    gen.set_defaults(fn=cmd_generate)
    champion = sub.add_parser("champion", help="the champion registry of scheduled retraining, with its history")
    champion.add_argument("--registry", default="weekly", help="registry name (the retrain flow's `registry`)")
    champion.add_argument("--data-root", default=None, help="default: GPTFORGE_DATA")
    champion.set_defaults(fn=cmd_champion)
    demo = sub.add_parser("demo", help="build the embedded demo through the local stack's deployments")
    demo.add_argument("--keep-stack", action="store_true", help="leave the local stack running afterwards")
    demo.set_defaults(fn=cmd_demo)
    args = parser.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
