"""The stage flows by name, in recipe order, each imported only when asked for.

``gptforge run STAGE`` loads just that stage's module: importing every flow (and so Great Expectations, DuckDB, the
fetcher) costs seconds and a few hundred MB that a training process would carry to its end.
"""
from __future__ import annotations

from importlib import import_module

from prefect.flows import Flow

STAGES = {
    "build-corpus": "flows.build_corpus:build_corpus",
    "train-tokenizer": "flows.train_tokenizer:train_tokenizer",
    "tokenize": "flows.tokenize_corpus:tokenize",
    "pretrain": "flows.pretrain:pretrain",
    "finetune": "flows.finetune:finetune",
    "evaluate": "flows.evaluate:evaluate",
    "compare": "flows.compare:compare",
    "pipeline": "flows.pipeline:pipeline",
    "retrain": "flows.retrain:retrain",
}


def load_stage(name: str) -> Flow:
    """The flow of one stage; a clear error for a name that is none."""
    if name not in STAGES:
        raise SystemExit(f"gptforge: unknown stage {name!r}; stages: {', '.join(STAGES)}")
    module, attribute = STAGES[name].split(":")
    return getattr(import_module(module), attribute)


def stage_flows() -> list[Flow]:
    """Every stage flow, in recipe order; ``gptforge up`` serves each as ``<flow>/local``."""
    return [load_stage(name) for name in STAGES]
