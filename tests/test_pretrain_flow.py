"""pretrain end to end on real text: the run is gated against the unigram baseline, resumable, and samples."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.store import DataRoot
from tests.test_tokenizer_flows import MODULES, publish_corpus

TRAIN = {"preset": "tiny", "max_steps": 40, "warmup_steps": 5, "max_lr": 3e-3, "eval_every": 20, "eval_batches": 2,
         "checkpoint_every": 20, "batch_size": 8}


@pytest.fixture(scope="module")
def tokens_root(tmp_path_factory, prefect_harness) -> DataRoot:
    from flows.tokenize_corpus import tokenize
    from flows.train_tokenizer import train_tokenizer

    root = DataRoot.from_env(str(tmp_path_factory.mktemp("data")))
    publish_corpus(root, "c1", MODULES[:12])
    train_tokenizer(corpus="c1", version="t1", data_root=root.url, vocab_size=512, holdout_fraction=0.1)
    tokenize(version="k1", data_root=root.url, validation_fraction=0.1)
    return root


def test_a_run_beats_the_unigram_baseline_and_records_its_lineage(tokens_root, prefect_harness):
    from flows.pretrain import pretrain

    run = Path(pretrain(run="r1", data_root=tokens_root.url, **TRAIN))
    counts = json.loads((run / "manifest.json").read_text())["counts"]
    assert counts["step"] == 40 and counts["val_loss"] < counts["unigram_entropy"]
    assert (run / counts["checkpoint"]).is_file() and (run / "metrics.jsonl").is_file()
    upstream = json.loads((run / "manifest.json").read_text())["upstream"]
    assert [u["version"] for u in upstream] == ["k1"]


def test_too_little_training_fails_the_gate_and_publishes_nothing(tokens_root, prefect_harness):
    from data_contracts.gate import GateFailed
    from flows.pretrain import pretrain

    with pytest.raises(GateFailed, match="unigram_entropy"):
        pretrain(run="r0", data_root=tokens_root.url, **{**TRAIN, "max_steps": 1, "warmup_steps": 1, "max_lr": 1e-6})
    assert "r0" not in tokens_root.versions("runs")


def test_generate_continues_a_prompt_with_the_runs_tokenizer(tokens_root, prefect_harness):
    from flows.pretrain import pretrain
    from flows.sample import sample_from_run

    run = pretrain(run="r2", data_root=tokens_root.url, **TRAIN)
    text = sample_from_run(run, "Return the", max_new_tokens=20, seed=1)
    assert text.startswith("Return the") and len(text) > len("Return the")
    assert text == sample_from_run(run, "Return the", max_new_tokens=20, seed=1)
