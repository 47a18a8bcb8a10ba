"""The ``gptforge`` command: the local Prefect stack, running stages, the demo and lineage."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import os
import sys
import typing
from pathlib import Path
from typing import Any, Callable, Iterator

from flows.app.stack import Stack
from flows.app.temporary_server import temporary_server

# The commands import the rest inside their functions, for two real costs: Prefect reads its settings once, on
# import, so nothing that imports it may load before use_local_stack_if_up(); and torch takes seconds to import (the
# data-root modules, through fsspec, half a second), which `gptforge up/down/status` should not pay.


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


def route_params(fn: Callable, params: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of the flow function ``fn`` for ``-p`` pairs (``parse_params``), from its signature.

    A key that is a parameter is passed as it is. A dotted key sets a field of a dataclass-typed parameter, at any
    depth (``train.max_steps``, ``process.quality.min_words``), or a key of a dict-typed one (``model.n_layer``).
    Any other key is the name of a field of exactly one dataclass-typed parameter, searched through nested
    dataclass fields too (``-p max_steps=5`` sets ``train.max_steps``); an unknown or ambiguous key fails naming the
    candidates. Values given for the same parameter are merged, so ``-p train='{...}' -p seed=1`` sets both.
    """
    hints = typing.get_type_hints(fn)
    names = list(inspect.signature(fn).parameters)
    arguments: dict[str, Any] = {}
    for key, value in params.items():
        _set(arguments, _path_of(key, names, hints), value, key)
    return arguments


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass an annotation names (``TrainConfig | None`` → ``TrainConfig``), or None."""
    return next((t for t in (hint, *typing.get_args(hint)) if isinstance(t, type) and dataclasses.is_dataclass(t)),
                None)


def _dict_in(hint: Any) -> bool:
    return any(t is dict or typing.get_origin(t) is dict for t in (hint, *typing.get_args(hint)))


def _field_paths(cls: type, prefix: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """Every field of a dataclass as a path from the parameter, nested dataclass fields included."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        yield (*prefix, field.name)
        if nested := _dataclass_in(hints[field.name]):
            yield from _field_paths(nested, (*prefix, field.name))


def _path_of(key: str, names: list[str], hints: dict[str, Any]) -> tuple[str, ...]:
    if key in names:
        return (key,)
    if "." in key:
        head, *rest = key.split(".")
        if head not in names:
            raise SystemExit(f"gptforge: {key!r}: {head!r} is not a parameter of this stage; parameters: "
                             f"{', '.join(names)}")
        hint = hints.get(head)
        for depth, part in enumerate(rest, start=1):
            cls = _dataclass_in(hint)
            if cls is None:
                if _dict_in(hint):  # a dict's keys are the flow's to check
                    return (head, *rest)
                raise SystemExit(f"gptforge: {key!r}: {'.'.join([head, *rest[:depth - 1]])} has no fields to set")
            fields = typing.get_type_hints(cls)
            if part not in fields:
                raise SystemExit(f"gptforge: {key!r}: {cls.__name__} has no field {part!r}; its fields: "
                                 f"{', '.join(f.name for f in dataclasses.fields(cls))}")
            hint = fields[part]
        return (head, *rest)
    found = [(name, *path) for name in names if (cls := _dataclass_in(hints.get(name)))
             for path in _field_paths(cls, ()) if path[-1] == key]
    if len(found) == 1:
        return found[0]
    if found:
        raise SystemExit(f"gptforge: parameter {key!r} is ambiguous: it is a field of "
                         f"{', '.join('.'.join(path) for path in found)}; write one of them")
    typed = [name for name in names if _dataclass_in(hints.get(name))]
    raise SystemExit(f"gptforge: {key!r} is not a parameter of this stage"
                     + (f" nor a field of {', '.join(typed)}" if typed else "") + f"; parameters: {', '.join(names)}")


def _set(arguments: dict[str, Any], path: tuple[str, ...], value: Any, key: str) -> None:
    node = arguments
    for depth, part in enumerate(path[:-1], start=1):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SystemExit(f"gptforge: {key!r} sets a field of {'.'.join(path[:depth])}, which is also given as "
                             f"{node!r}")
    last = path[-1]
    if isinstance(value, dict) and isinstance(node.get(last), dict):
        _merge(node[last], value)
    else:
        node[last] = value


def _merge(into: dict[str, Any], value: dict[str, Any]) -> None:
    for k, v in value.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def use_local_stack_if_up() -> None:
    """Point Prefect at the local stack when it runs and no other API is configured (so runs show in its UI).

    Only effective before Prefect is imported: its settings are read once, at import.
    """
    stack = Stack.from_env()
    if "PREFECT_API_URL" not in os.environ and stack.healthy():
        os.environ.update(stack.env())


def cmd_run(args: argparse.Namespace) -> None:
    # First: Prefect fixes its settings when it is first imported (prefect.context), and flows.app.stages imports it.
    use_local_stack_if_up()
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.app.stages import load_stage

    with contextlib.ExitStack() as run_context:
        if not PREFECT_API_URL.value():  # no API in the environment or the Prefect profile, no stack up
            api_url = run_context.enter_context(temporary_server())
            os.environ["PREFECT_API_URL"] = api_url  # for the processes the run starts (torchrun, Dask workers)
            run_context.enter_context(temporary_settings({PREFECT_API_URL: api_url}))
        stage = load_stage(args.stage)
        result = stage(**route_params(stage.fn, parse_params(args.param)))
    print(result)


def cmd_up(args: argparse.Namespace) -> None:
    stack = Stack.from_env(database=args.database)
    try:
        stack.up()
    except (ValueError, RuntimeError) as error:
        raise SystemExit(f"gptforge up: {error}") from None
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
    from flows.cards import format_lineage
    from flows.lineage import find_version_folder

    remote = "://" in args.path and not args.path.startswith("file://")
    print(format_lineage(args.path if remote else find_version_folder(args.path)))


def cmd_export(args: argparse.Namespace) -> None:
    if args.format == "hf":
        from flows.export_hf import export_hf

        written = [export_hf(args.source, args.out, license=args.license)]
    elif args.format == "lm-eval":
        from flows.export_lmeval import export_lmeval

        written = export_lmeval(args.source, args.out)
        print(f"run them with: lm_eval --model hf --model_args pretrained=<gptforge export hf folder> "
              f"--include_path {args.out} --tasks gptforge_eval_{Path(args.source).resolve().name}", file=sys.stderr)
    elif args.format == "llmc-model":
        from flows.export_trainers import export_run_for_llmc

        written = export_run_for_llmc(args.source, args.out, dtypes=tuple(args.dtype), with_data=args.with_data)
    else:
        from gptcore.export import export_llmc, export_nanogpt

        written = export_nanogpt(args.source, args.out) if args.format == "nanogpt" else export_llmc(args.source, args.out)
    for path in (written.values() if isinstance(written, dict) else written):
        print(path)


def cmd_generate(args: argparse.Namespace) -> None:
    from flows.sample import sample_from_run

    print(sample_from_run(args.run, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed))


def cmd_champion(args: argparse.Namespace) -> None:
    from flows.cards import format_registry
    from flows.registry import Registry
    from flows.store import DataRoot

    print(format_registry(Registry.load(DataRoot.from_env(args.data_root), args.registry)))


def cmd_demo(args: argparse.Namespace) -> None:
    from flows.app.demo import run_demo

    print(run_demo(keep_stack=args.keep_stack))


EXPORT_FORMATS = """formats:
  hf          runs/<v> -> a Hugging Face folder (weights, tokenizer, model card) that transformers opens as it is
  lm-eval     eval/<v> -> lm-evaluation-harness task YAMLs with their data (lm_eval --include_path OUT)
  nanogpt     tokens/<v> -> train.bin, val.bin and meta.pkl for nanoGPT's train.py
  llmc        tokens/<v> -> llm.c data shards (<prefix>_<split>_NNNNNN.bin)
  llmc-model  runs/<v> -> llm.c model files (gpt2_<run>.bin, gpt2_<run>_bf16.bin) and gpt2_tokenizer.bin"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gptforge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the local Prefect server and serve every deployment")
    up.add_argument("--database", metavar="URL", default=None,
                    help="keep the server's database in PostgreSQL, e.g. postgresql://user:pw@127.0.0.1:5432/prefect "
                         "(default: $GPTFORGE_DATABASE_URL; SQLite in the state folder when neither is set)")
    up.set_defaults(fn=cmd_up)
    sub.add_parser("down", help="stop the local stack").set_defaults(fn=cmd_down)
    sub.add_parser("status", help="is the local stack running; which deployments it serves").set_defaults(fn=cmd_status)
    sub.add_parser("env", help="print the exports that point the prefect CLI at the local stack").set_defaults(fn=cmd_env)
    run = sub.add_parser("run", help="run a stage flow in-process; prints the output version folder last")
    run.add_argument("stage", help="build-corpus, train-tokenizer, tokenize, pretrain, finetune, evaluate, compare, "
                     "pipeline, retrain")
    run.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                     help="flow parameter (JSON value); train.max_steps=5 sets a field of a config parameter, and a "
                     "field's own name (max_steps=5) finds it when one config has it")
    run.set_defaults(fn=cmd_run)
    lineage = sub.add_parser("lineage", help="print where a version came from, from the manifests alone")
    lineage.add_argument("path", help="a version folder (or a file inside one), or a version URL such as "
                         "s3://bucket/root/runs/v0001")
    lineage.set_defaults(fn=cmd_lineage)
    export = sub.add_parser("export", help="write a run, an eval or a tokens version in another tool's format",
                            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXPORT_FORMATS)
    export.add_argument("format", choices=["hf", "lm-eval", "nanogpt", "llmc", "llmc-model"])
    export.add_argument("source", type=Path, help="a version folder: runs/<v> for hf and llmc-model, eval/<v> for "
                        "lm-eval, tokens/<v> for nanogpt and llmc")
    export.add_argument("out", type=Path, help="output folder")
    export.add_argument("--license", default="other", help="hf: the Hub license id of the weights (default: other)")
    export.add_argument("--dtype", nargs="+", choices=["float32", "bfloat16"], default=["float32", "bfloat16"],
                        help="llmc-model: the model files to write (default: both)")
    export.add_argument("--with-data", action="store_true", help="llmc-model: also write the run's tokens as llm.c "
                        "data files, so OUT holds everything train_gpt2.c/.cu needs")
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
