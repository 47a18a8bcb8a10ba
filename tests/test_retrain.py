"""Scheduled retraining: new dumps become a challenger that is promoted only when it beats the champion."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import webhosts
from tests.builders import TINY_PIPELINE_PRETRAIN as PRETRAIN

QUALITY = {"min_alpha_word_fraction": 0.5, "max_duplicate_line_fraction": 0.9,
           "max_duplicate_line_char_fraction": 0.9, "max_duplicate_paragraph_fraction": 0.9,
           "max_duplicate_paragraph_char_fraction": 0.9,
           "max_duplicate_ngram_char_fraction": [[n, 0.9] for n in range(5, 11)]}


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """A loopback site of pydoc pages; each dump links a different half of it."""
    from flows.demo.dump import write_demo_dump
    from flows.demo.server import DemoServer
    from flows.demo.site import build_site

    folder = tmp_path_factory.mktemp("web")
    pages = [p for p in build_site(folder / "site", n_pages=40) if p.kind == "page"]
    with DemoServer(folder / "site", webhosts.PAGES_PORT, host=webhosts.RETRAIN) as server:
        def drop(name: str, part: list) -> Path:
            (folder / "dumps").mkdir(exist_ok=True)
            write_demo_dump(folder / "dumps" / name, server.base_url, part, seed=0)
            return folder / "dumps"
        yield {"drop": drop, "pages": pages}


def parameters(**train) -> dict:
    return {"build_corpus": {"fetch": {"allow_hosts": [webhosts.RETRAIN], "connect_timeout_s": 2.0,
                                       "read_timeout_s": 2.0},
                             "process": {"quality": QUALITY}},
            "train_tokenizer": {"vocab_size": 512, "holdout_fraction": 0.2},
            "tokenize": {"validation_fraction": 0.2},
            "pretrain": {**PRETRAIN, "train": {**PRETRAIN["train"], **train}}}


# Two whole build-to-evaluate cycles: ~75 s alone on 2 cores, over 300 s beside a training demo; the margin is for that.
@pytest.mark.timeout(900)
def test_two_cycles_promote_the_first_model_and_keep_it_against_a_worse_one(web, tmp_path, prefect_harness, capsys):
    from flows.registry import Registry
    from flows.retrain import retrain
    from flows.store import DataRoot

    root = DataRoot.from_env(str(tmp_path / "data"))
    half = len(web["pages"]) // 2
    dumps = web["drop"]("RS_2019-06.zst", web["pages"][:half])

    first = retrain(dumps_dir=str(dumps), registry="weekly", data_root=root.url, **parameters(max_steps=640))
    assert first["decision"] == "promoted" and first["reason"] == "no champion yet"
    champion = Registry.load(root, "weekly").champion
    assert champion["cycle"] == "weekly-0001" and champion["pretrain"] == "weekly-0001"

    # Nothing new: nothing trained, and the registry says so.
    idle = retrain(dumps_dir=str(dumps), registry="weekly", data_root=root.url, **parameters())
    assert idle["decision"] == "nothing-new"

    # A new dump, and a challenger trained from scratch for a quarter of the budget: worse, so not promoted.
    web["drop"]("RS_2019-07.zst", web["pages"][half:])
    second = retrain(dumps_dir=str(dumps), registry="weekly", data_root=root.url, continue_from_champion=False,
                     **parameters(max_steps=160))
    assert second["decision"] == "kept", second
    assert second["challenger_value"] > second["champion_value"]
    registry = Registry.load(root, "weekly")
    assert registry.champion == champion, "a worse challenger never replaces the champion"
    assert [h["decision"] for h in registry.history] == ["promoted", "nothing-new", "kept"]
    assert set(registry.dumps_seen) == {"RS_2019-06.zst", "RS_2019-07.zst"}

    # The challenger reused the champion's tokenizer and its corpus was deduplicated against the first one.
    tokens = json.loads((Path(root.url) / "tokens" / "weekly-0002" / "manifest.json").read_text())
    assert tokens["parameters"]["tokenizer"] == "weekly-0001"
    assert not (Path(root.url) / "tokenizer" / "weekly-0002").exists()
    results = json.loads((Path(root.url) / "eval" / "weekly-0002" / "results.json").read_text())
    assert set(results["runs"]) == {"weekly-0001", "weekly-0002"}

    # The registry reads back as text.
    from flows.app.cli import main

    capsys.readouterr()
    main(["champion", "--registry", "weekly", "--data-root", root.url])
    printed = capsys.readouterr().out
    assert printed.startswith("registry weekly: champion weekly-0001")
    assert "weekly-0002" in printed and "kept" in printed and "nothing-new" in printed


def test_the_decision_reads_the_configured_metric_and_names_a_missing_one():
    from flows.retrain import decide_promotion, metric_of

    results = {"runs": {"pre": {"perplexity": {"bits_per_byte": 2.0}, "tasks": {}},
                        "pre-t": {"perplexity": {"bits_per_byte": 2.1}, "tasks": {"t": {"metrics": {"accuracy": 0.5}}}}}}
    assert metric_of(results, ["pre", "pre-t"], "bits_per_byte", None) == 2.0
    assert metric_of(results, ["pre", "pre-t"], "accuracy", "t") == 0.5
    assert metric_of(results, ["pre", "pre-t"], "accuracy", "other") is None
    assert decide_promotion(1.9, 2.0, "bits_per_byte")[0] == "promoted", "lower bits per byte is better"
    assert decide_promotion(0.5, 0.6, "accuracy")[0] == "kept", "higher accuracy is better"
    with pytest.raises(ValueError, match="'f1'.*metric_task"):
        decide_promotion(None, 0.6, "f1")
