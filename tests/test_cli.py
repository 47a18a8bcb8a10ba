from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from flows.app.cli import parse_params, route_params
from flows.app.stages import load_stage


def test_params_parse_as_json_like_prefect_deployment_run():
    assert parse_params(['dumps=["a.zst", "b.zst"]', "min_score=5", "allow_nsfw=true", "version=v1", "x=null"]) == {
        "dumps": ["a.zst", "b.zst"], "min_score": 5, "allow_nsfw": True, "version": "v1", "x": None}


def test_param_without_equals_is_a_clear_error():
    with pytest.raises(SystemExit, match="not key=value"):
        parse_params(["min_score"])


@dataclass(frozen=True)
class Quality:
    min_words: int = 50
    max_symbol_ratio: float = 0.1


@dataclass(frozen=True)
class Process:
    quality: Quality = field(default_factory=Quality)
    workers: int = 1


@dataclass(frozen=True)
class Fetch:
    workers: int = 2
    allow_hosts: tuple[str, ...] = ()


def stage(version: str | None = None, process: Process | None = None, fetch: Fetch | None = None,
          model: dict | None = None, shard_size: int = 10) -> None:
    """A stage flow's signature: plain parameters, dataclass-typed configs (one nested), a dict."""


def test_a_key_that_is_a_parameter_is_passed_as_it_is():
    assert route_params(stage, {"version": "v1", "shard_size": 5, "fetch": {"workers": 3}}) == {
        "version": "v1", "shard_size": 5, "fetch": {"workers": 3}}


def test_a_dotted_key_sets_a_field_of_a_config_parameter_at_any_depth_or_a_key_of_a_dict():
    assert route_params(stage, {"process.quality.min_words": 20, "fetch.workers": 4, "model.n_layer": 2}) == {
        "process": {"quality": {"min_words": 20}}, "fetch": {"workers": 4}, "model": {"n_layer": 2}}


def test_a_field_name_alone_finds_the_one_config_that_has_it_nested_configs_included():
    assert route_params(stage, {"min_words": 20, "allow_hosts": ["127.0.0.1"], "quality": {"max_symbol_ratio": 1}}) == {
        "process": {"quality": {"min_words": 20, "max_symbol_ratio": 1}}, "fetch": {"allow_hosts": ["127.0.0.1"]}}


def test_an_ambiguous_field_name_fails_naming_the_candidates():
    with pytest.raises(SystemExit, match=r"'workers' is ambiguous: it is a field of process\.workers, fetch\.workers"):
        route_params(stage, {"workers": 2})


def test_an_unknown_key_fails_naming_the_parameters_and_configs():
    with pytest.raises(SystemExit, match=r"'min_wrds' is not a parameter of this stage nor a field of process, "
                                         r"fetch; parameters: version, process, fetch, model, shard_size"):
        route_params(stage, {"min_wrds": 2})
    with pytest.raises(SystemExit, match=r"'process\.quality\.min_wrds': Quality has no field 'min_wrds'; its "
                                         r"fields: min_words, max_symbol_ratio"):
        route_params(stage, {"process.quality.min_wrds": 2})
    with pytest.raises(SystemExit, match=r"'shard_size\.x': shard_size has no fields to set"):
        route_params(stage, {"shard_size.x": 2})
    with pytest.raises(SystemExit, match=r"'procss\.workers': 'procss' is not a parameter"):
        route_params(stage, {"procss.workers": 2})


def test_a_whole_config_and_fields_of_it_merge_in_either_order():
    expected = {"fetch": {"workers": 3, "allow_hosts": ["h"]}}
    assert route_params(stage, {"fetch": {"allow_hosts": ["h"]}, "fetch.workers": 3}) == expected
    assert route_params(stage, {"fetch.workers": 3, "fetch": {"allow_hosts": ["h"]}}) == expected
    with pytest.raises(SystemExit, match=r"'fetch\.workers' sets a field of fetch, which is also given as None"):
        route_params(stage, {"fetch": None, "fetch.workers": 3})


def test_the_stage_flows_take_their_configs_fields_from_the_command_line():
    from flows.finetune import finetune
    from flows.pretrain import pretrain
    from gptcore.finetune import FinetuneConfig
    from gptcore.train import TrainConfig

    pairs = parse_params(["version=r1", "preset=tiny", "max_steps=5", "train.warmup_steps=1", "betas=[0.9, 0.95]",
                          "model.n_layer=2", "init_from_run=r0"])
    arguments = route_params(pretrain.fn, pairs)
    assert arguments == {"version": "r1", "preset": "tiny", "model": {"n_layer": 2}, "init_from_run": "r0",
                         "train": {"max_steps": 5, "warmup_steps": 1, "betas": [0.9, 0.95]}}
    validated = pretrain.validate_parameters(arguments)
    assert validated["train"] == TrainConfig(max_steps=5, warmup_steps=1, betas=(0.9, 0.95))
    tuned = finetune.validate_parameters(route_params(finetune.fn, parse_params(
        ["task=classification", "train=a.jsonl", "test=b.jsonl", "lr=0.001", "grad_clip=0.5", "version=f1"])))
    assert tuned["finetune"] == FinetuneConfig(lr=1e-3, grad_clip=0.5) and tuned["train"] == "a.jsonl"


def test_run_loads_only_the_stage_it_runs_and_great_expectations_only_when_a_gate_runs():
    # A training process would carry every other stage's imports (Great Expectations' ~250 MB and pandas') to its end.
    probe = ("import sys; from flows.app.stages import load_stage; load_stage('pretrain'); "
             "print(sorted(m for m in ('great_expectations', 'pandas', 'flows.build_corpus', 'flows.evaluate', "
             "'duckdb') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.stdout.strip() == "[]"
    with pytest.raises(SystemExit, match="unknown stage 'pretrian'; stages: build-corpus, train-tokenizer"):
        load_stage("pretrian")
