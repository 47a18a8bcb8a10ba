"""evaluate end to end: a tiny pretrained run scored on perplexity, zero-shot tasks and contamination, with lineage,
a gate, and a comparison across runs, checkpoints and eval versions."""
from __future__ import annotations

import json
import math
import pydoc
import random
from pathlib import Path

import pytest

from data_contracts.evaluate import validate_results
from flows.store import DataRoot
from gptcore.files import sha256_file
from tests.builders import MODULES, TINY_TRAIN, publish_corpus

TRAINED_ON = MODULES[:6]
RUN = {**TINY_TRAIN, "max_steps": 30, "checkpoint_every": 15, "eval_every": 15}
WORDS = ("river", "lantern", "quietly", "seven", "harbour", "folded", "maps", "under", "amber", "clouds", "the", "a",
         "walked", "towards", "old", "bridges", "while", "gulls", "argued", "over", "bread", "and", "salt")


def pydoc_text(modules: list[str]) -> list[str]:
    return [pydoc.render_doc(name, renderer=pydoc.plaintext) for name in modules]


def unseen_prose(words: int = 600, seed: int = 0) -> list[str]:
    """Sentences of words drawn at random: text no corpus contains (pydoc pages share headers and boilerplate)."""
    rng = random.Random(seed)
    drawn = [rng.choice(WORDS) for _ in range(words)]
    return [" ".join(drawn[i:i + 12]).capitalize() + "." for i in range(0, words, 12)]


def write_jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def word_chunks(texts: list[str], words: int, count: int) -> list[str]:
    flat = " ".join(texts).split()
    return [" ".join(flat[i:i + words]) for i in range(0, words * count, words)]


def choice_records(texts: list[str], count: int = 12) -> list[dict]:
    """Short "what comes next" records (the model's window is 64 tokens): 10 words, then the 4 that follow them
    among 3 other 4-word endings of the same text."""
    chunks = [chunk.split() for chunk in word_chunks(texts, 14, count)]
    endings = [" ".join(chunk[10:]) for chunk in chunks]
    return [{"context": " ".join(chunk[:10]), "label": i % 4,
             "choices": [endings[(i + k - i % 4) % count] for k in range(4)]} for i, chunk in enumerate(chunks)]


@pytest.fixture(scope="module")
def run_root(tmp_path_factory, prefect_harness) -> DataRoot:
    from flows.pretrain import pretrain
    from flows.tokenize_corpus import tokenize
    from flows.train_tokenizer import train_tokenizer

    root = DataRoot.from_env(str(tmp_path_factory.mktemp("data")))
    publish_corpus(root, "c1", TRAINED_ON)
    train_tokenizer(corpus="c1", version="t1", data_root=root.url, vocab_size=512, holdout_fraction=0.1)
    tokenize(version="k1", data_root=root.url, validation_fraction=0.1)
    pretrain(version="r1", data_root=root.url, preset="tiny", train=RUN)
    return root


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("tasks")
    seen, unseen = pydoc_text(TRAINED_ON[:2]), [" ".join(unseen_prose())]
    return [
        {"name": "choice-seen", "type": "multiple_choice", "reader": "jsonl",
         "path": write_jsonl(folder / "seen.jsonl", choice_records(seen))},
        {"name": "choice-unseen", "type": "multiple_choice", "reader": "jsonl",
         "path": write_jsonl(folder / "unseen.jsonl", choice_records(unseen))},
        {"name": "last-word", "type": "lambada",
         "path": write_jsonl(folder / "words.jsonl", [{"text": t} for t in word_chunks(unseen, 20, 10)])},
        {"name": "summary", "type": "completion", "prompt": "{text}\nIn short:", "max_new_tokens": 8,
         "path": write_jsonl(folder / "summary.jsonl", [{"text": t, "reference": t.split(".")[0]}
                                                         for t in word_chunks(unseen, 30, 4)])},
    ]


def test_results_hold_perplexity_every_task_metric_and_contamination_per_run(run_root, tasks, prefect_harness):
    from flows.evaluate import evaluate

    folder = Path(evaluate(runs=["r1", "r1@step_000015.pt"], tasks=tasks, version="e1", data_root=run_root.url))
    results = json.loads((folder / "results.json").read_text())
    assert set(results["runs"]) == {"r1", "r1@step_000015.pt"}
    latest = results["runs"]["r1"]
    assert latest["checkpoint"] == "checkpoints/step_000030.pt" and latest["tokens"] == "k1"
    assert 0 < latest["perplexity"]["bits_per_byte"] < 8 and latest["perplexity"]["tokens"] > 0
    assert set(latest["tasks"]) == {t["name"] for t in tasks}
    choice = latest["tasks"]["choice-unseen"]["metrics"]
    assert choice["examples"] == 12 and choice["chance"] == 0.25
    assert all(0 <= choice[m] <= 1 for m in ("acc", "acc_norm", "acc_bytes", "acc_per_token"))
    last_word = latest["tasks"]["last-word"]["metrics"]
    assert math.isfinite(last_word["perplexity"]) and last_word["perplexity"] >= last_word["token_perplexity"]
    assert 0 <= latest["tasks"]["summary"]["metrics"]["rougeL_f1"] <= 1
    # The check that the contamination check works: text the run trained on is found, unseen text is not.
    assert latest["tasks"]["choice-seen"]["contamination"]["fraction_ngrams_found"] > 0.5
    assert latest["tasks"]["choice-unseen"]["contamination"]["fraction_ngrams_found"] < 0.05
    # The later checkpoint fits the validation text better than the earlier one.
    earlier = results["runs"]["r1@step_000015.pt"]["perplexity"]
    assert latest["perplexity"]["loss"] < earlier["loss"]


def test_the_manifest_names_the_runs_and_task_files_and_the_comparison_names_the_best(run_root, tasks,
                                                                                     prefect_harness):
    from flows.evaluate import evaluate

    folder = Path(evaluate(runs=["r1"], tasks=tasks[:1], version="e2", data_root=run_root.url, contamination=False))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [u["version"] for u in manifest["upstream"] if u["kind"] == "version"] == ["r1"]
    assert [u["task"] for u in manifest["upstream"] if u["kind"] == "task"] == ["choice-seen"]
    assert {"results.json", "comparison.md"} <= set(manifest["outputs"])
    # The task file travels with the version: copied in, listed with its checksum, named by a relative path.
    [task_file] = [u for u in manifest["upstream"] if u["kind"] == "task"]
    original = Path(tasks[0]["path"])
    assert task_file["copy"] == "tasks/choice-seen.jsonl" and task_file["path"] == str(original.resolve())
    assert manifest["outputs"]["tasks/choice-seen.jsonl"]["sha256"] == task_file["sha256"] == sha256_file(original)
    assert (folder / "tasks" / "choice-seen.jsonl").read_bytes() == original.read_bytes()
    assert json.loads((folder / "results.json").read_text())["tasks"]["choice-seen"]["path"] == task_file["copy"]
    comparison = (folder / "comparison.md").read_text()
    best_loss = next(line for line in comparison.splitlines() if "| loss |" in line)
    assert "r1 (checkpoints/step_000030.pt)" in best_loss
    if "e1" in run_root.versions("eval"):  # runs alone too; with e1 the comparison spans both eval versions
        assert best_loss.rstrip(" |").endswith("3")  # r1 in e1, r1@step_000015 in e1, r1 in e2


def test_the_pretraining_filter_is_built_once_per_corpus_and_reused(run_root, tasks, prefect_harness):
    from flows.evaluate import evaluate

    evaluate(runs=["r1"], tasks=tasks[1:2], version="e3", data_root=run_root.url, max_tokens=200)
    cached = sorted((run_root.local_path / "eval" / ".cache").glob("*.npz"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    evaluate(runs=["r1"], tasks=tasks[1:2], version="e4", data_root=run_root.url, max_tokens=200)
    assert cached[0].stat().st_mtime_ns == stamp


def test_an_unknown_task_type_is_refused_before_anything_is_written(run_root, tasks, prefect_harness):
    from flows.evaluate import evaluate

    with pytest.raises(ValueError, match="type 'cloze' is not one of"):
        evaluate(runs=["r1"], tasks=[{**tasks[0], "type": "cloze"}], version="bad", data_root=run_root.url)
    assert not (run_root.local_path / "eval" / ".bad.partial").exists()


def test_a_task_name_that_could_leave_the_version_folder_is_refused(run_root, tasks, prefect_harness):
    from flows.evaluate import evaluate

    with pytest.raises(ValueError, match="evaluation task name '../up' is not a valid folder name"):
        evaluate(runs=["r1"], tasks=[{**tasks[0], "name": "../up"}], version="bad2", data_root=run_root.url)
    assert not (run_root.local_path / "eval" / ".bad2.partial").exists()


def test_the_gate_refuses_non_finite_metrics_missing_metrics_and_empty_sets():
    ppl = {"loss": 1.0, "perplexity": 2.7, "bits_per_token": 1.4, "bits_per_byte": 0.5, "tokens": 10, "bytes": 40}
    good = {"runs": {"r": {"perplexity": ppl, "tasks": {"t": {"type": "lambada", "metrics": {
        "examples": 3, "acc": 0.5, "perplexity": 9.0, "token_perplexity": 3.0}, "contamination": {
        "fraction_ngrams_found": 0.0, "fraction_examples_with_overlap": 0.0}}}}}}
    assert validate_results(good).success
    metrics = good["runs"]["r"]["tasks"]["t"]["metrics"]
    for broken in ({**metrics, "acc": float("nan")}, {"examples": 3, "acc": 0.5}, {**metrics, "examples": 0}):
        bad = json.loads(json.dumps(good))
        bad["runs"]["r"]["tasks"]["t"]["metrics"] = broken
        assert not validate_results(bad).success, broken
