"""The finetune flow: a pretrain run + task files → a gated, resumable fine-tuned run with lineage to both."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.store import DataRoot, StoreError
from tests.builders import TINY_TRAIN, publish_tokens, sentiment

FAST = {"task": "classification", "finetune": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "seed": 0}}


@pytest.fixture(scope="module")
def pretrained_root(tmp_path_factory, prefect_harness) -> DataRoot:
    from flows.pretrain import pretrain

    root = publish_tokens(DataRoot.from_env(str(tmp_path_factory.mktemp("data"))))
    pretrain(version="p1", data_root=root.url, preset="tiny", train=TINY_TRAIN)
    return root


def write_jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


@pytest.fixture(scope="module")
def task_files(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("task")
    train = sentiment(48, seed=1)
    seen = {example.text for example in train}
    test = [example for example in sentiment(40, seed=2) if example.text not in seen]
    train_file = write_jsonl(folder / "train.jsonl", [{"text": e.text, "label": e.label} for e in train])
    with open(train_file, "ab") as fh:
        fh.write(b'{"text": "the soup was caf\xe9 style", "label": "pos"}\n')  # Latin-1, not UTF-8: one reject
    return {"train": train_file,
            "test": write_jsonl(folder / "test.jsonl", [{"text": e.text, "label": e.label} for e in test]),
            "test_unknown_label": write_jsonl(folder / "bad.jsonl", [{"text": "the soup was fine", "label": "meh"}]),
            "test_leaked": write_jsonl(folder / "leak.jsonl", [{"text": train[0].text, "label": train[0].label}])}


def test_a_finetune_run_records_the_pretrained_run_and_input_files_and_its_test_metrics(pretrained_root, task_files,
                                                                                       prefect_harness):
    from flows.finetune import finetune, newest_pretrain_run
    from gptcore.finetune import evaluate_task
    from gptcore.taskdata import load_task_file

    run = Path(finetune(train=task_files["train"], test=task_files["test"], version="f1",
                        data_root=pretrained_root.url, **FAST))
    manifest = json.loads((run / "manifest.json").read_text())
    pretrained, train, test = manifest["upstream"]
    assert (pretrained["stage"], pretrained["version"]) == ("runs", "p1")  # the newest pretrain run by default
    assert (train["kind"], test["kind"]) == ("train", "test") and len(train["sha256"]) == 64
    counts = manifest["counts"]
    assert counts["step"] == 12 and counts["train_examples"] == 48  # 2 epochs of 6 batches
    assert counts["train_rejects"] == {"undecodable": 1} and counts["test_rejects"] == {}
    assert 0 <= counts["test_accuracy"] <= 1 and "test_macro_f1" in counts
    assert manifest["parameters"]["spec"] == {"task": "classification", "labels": ["neg", "pos"]}
    assert (run / "tokenizer.json").is_file() and (run / "task.json").is_file()
    # The published run scores a test file on its own (what the evaluate flow calls).
    again = evaluate_task(run, load_task_file(task_files["test"], "classification").examples)
    assert again["accuracy"] == pytest.approx(counts["test_accuracy"])
    # A fine-tuned run is not a pretrain run: the default for the next fine-tuning stays p1.
    assert newest_pretrain_run(pretrained_root) == "p1"


@pytest.mark.parametrize("test_file, expectation", [("test_unknown_label", "expect_column_values_to_be_in_set"),
                                                    ("test_leaked", "test_example_in_train")])
def test_the_input_contract_stops_unknown_labels_and_train_test_leaks_before_training(
        pretrained_root, task_files, prefect_harness, test_file, expectation):
    from data_contracts.gate import GateFailed
    from flows.finetune import finetune

    with pytest.raises(GateFailed, match=expectation):
        finetune(train=task_files["train"], test=task_files[test_file], version="bad", data_root=pretrained_root.url,
                 **FAST)
    assert "bad" not in pretrained_root.versions("runs")
    assert not (pretrained_root.local_path / "runs" / ".bad.partial").exists()  # no training was started


def test_a_crashed_run_reruns_to_the_same_result_and_refuses_changed_parameters(pretrained_root, task_files,
                                                                                prefect_harness, monkeypatch):
    import flows.finetune as flow_module
    from gptcore.train import params_sha256
    from gptcore.finetune import load_task_run

    params = {**FAST, "train": task_files["train"], "test": task_files["test"], "data_root": pretrained_root.url,
              "pretrained": "p1", "finetune": {**FAST["finetune"], "checkpoint_every": 4}}
    whole = Path(flow_module.finetune(version="f-whole", **params))

    def crash(*args, **kwargs):
        raise RuntimeError("killed after training")
    with monkeypatch.context() as patch:
        patch.setattr(flow_module, "score_test", crash)
        with pytest.raises(RuntimeError, match="killed"):
            flow_module.finetune(version="f-crash", **params)
    with pytest.raises(StoreError, match="changed"):
        flow_module.finetune(version="f-crash", **{**params, "finetune": {**params["finetune"], "lr": 5e-4}})
    resumed = Path(flow_module.finetune(version="f-crash", **params))
    assert params_sha256(load_task_run(resumed)[0]) == params_sha256(load_task_run(whole)[0])
    assert json.loads((resumed / "manifest.json").read_text())["counts"]["test_accuracy"] == \
        json.loads((whole / "manifest.json").read_text())["counts"]["test_accuracy"]


def test_a_task_file_url_outside_the_data_root_is_refused_before_anything_is_fetched_or_started(
        pretrained_root, task_files, prefect_harness):
    from flows.finetune import finetune
    from flows.task_inputs import TaskInputRefused
    from tests.loopback_site import Site

    with Site() as site:
        site.routes["/train.jsonl"] = lambda h: h.reply(200, Path(task_files["train"]).read_bytes())
        with pytest.raises(TaskInputRefused, match="download the file first"):
            finetune(train=site.url("/train.jsonl"), test=task_files["test"], version="url",
                     data_root=pretrained_root.url, **FAST)
        assert site.hits == {}
    assert "url" not in pretrained_root.versions("runs")
