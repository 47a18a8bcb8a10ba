"""The whole recipe as one flow: every stage a child run, linked through artifacts and asset events; a failed gate
stops everything downstream and says why."""
from __future__ import annotations

import fcntl
import json
import pydoc
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from gptcore.taskgen import next_sentence_choices
from tests.builders import MODULES, TINY_PIPELINE_PRETRAIN

QUALITY = {"min_alpha_word_fraction": 0.5, "max_duplicate_line_fraction": 0.9, "max_duplicate_line_char_fraction": 0.9, "max_duplicate_paragraph_fraction": 0.9,
           "max_duplicate_paragraph_char_fraction": 0.9,
           "max_duplicate_ngram_char_fraction": [[n, 0.6] for n in range(5, 11)]}
HELD_OUT = ["datetime", "decimal", "inspect", "random", "statistics", "tempfile", "sqlite3", "socket"]
PRETRAIN = TINY_PIPELINE_PRETRAIN


def write_texts(folder: Path, modules: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in modules:
        (folder / f"{name}.txt").write_text(pydoc.render_doc(name, renderer=pydoc.plaintext))
    return folder


def write_jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.fixture(scope="module")
def inputs() -> dict:
    # A fixed folder: document ids (and so the validation split) derive from the files' absolute paths, and a
    # different split on every run would make the losses, and the gate's margin, vary from run to run.
    base = Path(tempfile.gettempdir()) / "gptforge-test-pipeline-inputs"
    # One folder for every run, so a concurrent run of this module (another checkout, another user of the machine)
    # waits here instead of deleting the files this one reads.
    lock = open(base.with_suffix(".lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    shutil.rmtree(base, ignore_errors=True)
    texts = write_texts(base / "texts", MODULES)
    # Held-out text (modules the corpus does not contain) for the multiple-choice task.
    held_out = [pydoc.render_doc(name, renderer=pydoc.plaintext) for name in HELD_OUT]
    records = next_sentence_choices(held_out, n_choices=2, seed=0, max_words=25, max_records=60)
    yield {"texts": str(texts), "train": write_jsonl(base / "mc_train.jsonl", records[:40]),
           "test": write_jsonl(base / "mc_test.jsonl", records[40:])}
    shutil.rmtree(base, ignore_errors=True)
    lock.close()


def pipeline_parameters(inputs: dict, **train) -> dict:
    return {
        "build_corpus": {"texts": [inputs["texts"]], "process": {"quality": QUALITY}},
        "train_tokenizer": {"vocab_size": 512, "holdout_fraction": 0.2},
        "tokenize": {"validation_fraction": 0.2},
        "pretrain": {**PRETRAIN, "train": {**PRETRAIN["train"], **train}},
        "finetune": [{"name": "next", "task": "multiple_choice", "train": inputs["train"], "test": inputs["test"],
                      "finetune": {"max_steps": 8, "batch_size": 4, "lr": 1e-3}}],
        "evaluate": {"tasks": [{"name": "next-zero-shot", "type": "multiple_choice", "path": inputs["test"]}],
                     "contamination": True},
    }


def _api() -> str:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def _post(path: str, body: dict) -> list[dict]:
    return httpx.post(f"{_api()}{path}", json=body, timeout=30).json()


def test_the_pipeline_runs_every_stage_as_a_child_run_and_links_them(inputs, tmp_path, prefect_harness):
    from flows.cards import format_lineage
    from flows.pipeline import pipeline

    root = tmp_path / "data"
    state = pipeline(version="p1", data_root=str(root), return_state=True, **pipeline_parameters(inputs))
    versions = state.result()
    assert versions == {"build_corpus": "p1", "train_tokenizer": "p1", "tokenize": "p1", "pretrain": "p1",
                        "finetune": ["p1-next"], "evaluate": "p1"}

    parent = str(state.state_details.flow_run_id)
    children = _post("/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [parent]}}})
    names = {httpx.get(f"{_api()}/flows/{run['flow_id']}").json()["name"] for run in children}
    assert names == {"build-corpus", "train-tokenizer", "tokenize", "pretrain", "finetune", "evaluate"}
    assert all(run["state_type"] == "COMPLETED" for run in children)

    child_ids = [run["id"] for run in children]
    keys = {a["key"] for a in _post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": child_ids}}})
            if a["key"]}
    for stage in ("corpus", "tokenizer", "tokens", "runs", "eval"):
        assert f"{stage}-p1-lineage" in keys, f"no lineage card for {stage}"
    assert "runs-p1-next-lineage" in keys and "runs-p1-loss-curve" in keys
    # The evaluation's lineage card draws the whole chain back to the text files (image + mermaid + linked table).
    card = _post("/artifacts/filter", {"artifacts": {"key": {"any_": ["eval-p1-lineage"]}}})[0]["data"]
    assert "data:image/svg+xml;base64," in card
    for node in ("corpus p1", "tokenizer p1", "tokens p1", "runs p1", "runs p1-next", f"{len(MODULES)} text files"):
        assert f'["{node}"]' in card, node
    summary = _post("/artifacts/filter", {"artifacts": {"key": {"any_": ["pipeline-p1-summary"]}}})
    assert summary and "| eval | `p1` |" in summary[0]["data"]

    # Every published version has an asset materialization event keyed by its folder URL.
    wanted = {(root / stage / version).as_uri() for stage, version in
              [("corpus", "p1"), ("tokenizer", "p1"), ("tokens", "p1"), ("runs", "p1"), ("runs", "p1-next"),
               ("eval", "p1")]}
    deadline, seen = time.monotonic() + 60, set()  # events arrive batched; slower on a loaded box
    while not wanted <= seen and time.monotonic() < deadline:
        events = _post("/events/filter", {"filter": {"event": {"prefix": ["prefect.asset.materialization"]},
                                                     "resource": {"id": sorted(wanted)}}, "limit": 50})["events"]
        seen = {e["resource"]["prefect.resource.id"] for e in events}
        time.sleep(0.5)
    assert wanted <= seen, f"missing asset events: {wanted - seen}"

    # From the evaluation back to the text files, through the manifests alone.
    tree = format_lineage(root / "eval" / "p1")
    for line in ("eval p1", "runs p1-next", "runs p1", "tokens p1", "tokenizer p1", "corpus p1"):
        assert line in tree, tree
    results = json.loads((root / "eval" / "p1" / "results.json").read_text())
    assert set(results["runs"]) == {"p1", "p1-next"}


def test_a_failed_gate_stops_everything_downstream_and_says_why(inputs, tmp_path, prefect_harness):
    from flows.pipeline import StageFailed, pipeline

    root = tmp_path / "data"
    params = pipeline_parameters(inputs, max_steps=1, warmup_steps=1, max_lr=1e-6)
    with pytest.raises(StageFailed, match=r"stopped at pretrain: its gate failed: gate 'pretrain'.*unigram_entropy.*Not run: finetune, evaluate"):
        pipeline(version="bad", data_root=str(root), **params)
    assert (root / "tokens" / "bad").is_dir() and not (root / "runs" / "bad").exists()
    failure = _post("/artifacts/filter", {"artifacts": {"key": {"any_": ["pipeline-bad-failure"]}}})
    assert failure and "unigram_entropy" in failure[0]["data"]
