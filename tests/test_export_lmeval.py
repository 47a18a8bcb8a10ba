"""An eval version stands on its own and travels to lm-evaluation-harness: a copy of the data root, with the original
task files deleted, re-runs its evaluation and exports it; lm-eval, running the exported tasks on the run exported
for transformers, reports the accuracies and perplexity that evaluate reported."""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from flows.store import DataRoot, StoreError
from tests.builders import TINY_TRAIN, publish_documents

SUBJECTS = ["Anna", "Ben", "Carl", "Dora", "Eve", "Finn", "Gus", "Hana"]
OBJECT_OF = {"opened": "door", "read": "book", "drank": "tea", "played": "piano", "rode": "bicycle",
             "wrote": "letter", "painted": "fence", "fed": "cat"}  # the verb decides the object: a tiny model learns it


def sentence(rng: random.Random) -> str:
    verb = rng.choice(list(OBJECT_OF))
    return f"{rng.choice(SUBJECTS)} {verb} the {OBJECT_OF[verb]}."


def write_jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return str(path)


def choice_records() -> list[dict]:
    """The object of each known verb among three others; unknown verbs, where only the choices' lengths (one of
    them not ASCII: characters and bytes differ) tell the normalised scores apart; and right answers that go on with
    a likely sentence, which the summed score rejects and the per-character one picks. One context ends in a
    space, which is scored with the answer; one is longer than the model's window, which keeps its end."""
    rng, objects = random.Random(1), list(OBJECT_OF.values())
    records = []
    for i, (verb, obj) in enumerate(OBJECT_OF.items()):
        choices = rng.sample([o for o in objects if o != obj], 3)
        choices.insert(i % 4, obj)
        records.append({"context": f"{SUBJECTS[i]} {verb} the", "choices": choices, "label": i % 4})
    records += [{"context": f"{SUBJECTS[i]} {verb} the", "choices": ["cat", "bicycle", "café crème", "letter"],
                 "label": i} for i, verb in enumerate(["saw", "liked"])]
    records += [{"context": "Eve rode the", "label": 1,
                 "choices": ["door", "bicycle. Finn read the book. Gus fed the cat. Dora drank the tea."]},
                {"context": "Dora played the", "label": 1,
                 "choices": ["fence", "piano. Ben read the book. Carl drank the tea. Eve rode the bicycle."]}]
    records[0]["context"] += " "
    records.append({"context": " ".join(sentence(rng) for _ in range(20)) + " Ben rode the",  # beyond the window
                    "choices": ["cat", "bicycle", "tea"], "label": 1})
    return records


def last_word_records() -> list[dict]:
    rng = random.Random(2)
    records = [{"text": f"{sentence(rng)} {sentence(rng)} {SUBJECTS[i]} {verb} the {obj}"}
               for i, (verb, obj) in enumerate(OBJECT_OF.items())]
    records.append({"text": " ".join(sentence(rng) for _ in range(20)) + " Carl wrote the letter"})  # beyond the window
    return records + [{"text": "Anna rode the  bicycle"}, {"text": "Ben fed the dog"}]  # two spaces; an unseen word


@pytest.fixture(scope="module")
def copied_root(tmp_path_factory, prefect_harness) -> DataRoot:
    """A run ``r1`` evaluated as ``e1`` on a multiple-choice, a last-word and a completion task; then the data root
    copied elsewhere and the original data root and task files deleted."""
    from flows.evaluate import evaluate
    from flows.pretrain import pretrain
    from flows.tokenize_corpus import tokenize
    from flows.train_tokenizer import train_tokenizer

    base = tmp_path_factory.mktemp("lmeval")
    root = DataRoot.from_env(str(base / "data"))
    rng = random.Random(0)
    publish_documents(root, "c1", [(f"file:///stories/{i}", " ".join(sentence(rng) for _ in range(20)))
                                   for i in range(150)])
    train_tokenizer(corpus="c1", version="t1", data_root=root.url, vocab_size=300, holdout_fraction=0.1)
    tokenize(version="k1", data_root=root.url, validation_fraction=0.1)
    # 300 steps (a few seconds) learn the verb-object pairs: the zero-shot metrics are neither chance nor perfect
    pretrain(version="r1", data_root=root.url, preset="tiny",
             train={**TINY_TRAIN, "max_steps": 300, "eval_every": 150, "checkpoint_every": 300})
    originals = base / "task-files"
    originals.mkdir()
    tasks = [{"name": "choice", "type": "multiple_choice", "reader": "jsonl",
              "path": write_jsonl(originals / "choice.jsonl", choice_records())},
             {"name": "last-word", "type": "lambada", "path": write_jsonl(originals / "words.jsonl",
                                                                          last_word_records())},
             {"name": "summary", "type": "completion", "max_new_tokens": 4,
              "path": write_jsonl(originals / "summary.jsonl", [{"text": "Anna read", "reference": "the book"}])}]
    evaluate(runs=["r1"], tasks=tasks, version="e1", data_root=root.url, contamination=False)
    copy = base / "copied-data"
    shutil.copytree(root.local_path, copy)
    shutil.rmtree(root.local_path)
    shutil.rmtree(originals)
    return DataRoot.from_env(str(copy))


def results_of(root: DataRoot, version: str) -> dict:
    return json.loads((root.local_path / "eval" / version / "results.json").read_text())


def test_a_copied_data_root_re_runs_its_evaluation_from_the_task_files_it_holds(copied_root, prefect_harness):
    from flows.evaluate import evaluate, stored_tasks

    tasks = stored_tasks(copied_root, "e1")
    assert [Path(t["path"]).relative_to(copied_root.local_path).as_posix() for t in tasks] == [
        "eval/e1/tasks/choice.jsonl", "eval/e1/tasks/last-word.jsonl", "eval/e1/tasks/summary.jsonl"]
    evaluate(runs=["r1"], tasks=tasks, version="e2", data_root=copied_root.url, contamination=False)
    first, again = results_of(copied_root, "e1"), results_of(copied_root, "e2")
    assert {n: t["sha256"] for n, t in again["tasks"].items()} == {n: t["sha256"] for n, t in first["tasks"].items()}
    assert {n: t["metrics"] for n, t in again["runs"]["r1"]["tasks"].items()} == \
           {n: t["metrics"] for n, t in first["runs"]["r1"]["tasks"].items()}


def test_lm_eval_reports_the_numbers_evaluate_reported(copied_root, tmp_path, monkeypatch, caplog):
    import datasets
    import lm_eval
    from lm_eval.tasks import TaskManager

    from flows.export_hf import export_hf
    from flows.export_lmeval import export_lmeval

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    model = export_hf(copied_root.local_path / "runs" / "r1", tmp_path / "hf")
    with caplog.at_level("WARNING", logger="flows.export_lmeval"):
        written = export_lmeval(copied_root.local_path / "eval" / "e1", tmp_path / "lm-eval")
    assert [p.name for p in written] == ["gptforge_choice.yaml", "gptforge_last-word.yaml"]
    assert "'summary' (completion) is not exported" in caplog.text

    # Built-in tasks are not indexed (include_defaults=False): the exported ones are all this run needs.
    out = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={model},dtype=float32",
                                  tasks=["gptforge_choice", "gptforge_last-word"], device="cpu", batch_size=8,
                                  task_manager=TaskManager(include_path=str(tmp_path / "lm-eval"),
                                                           include_defaults=False),
                                  bootstrap_iters=0, log_samples=False)
    ours = results_of(copied_root, "e1")["runs"]["r1"]["tasks"]
    assert ours["choice"]["metrics"]["acc"] != ours["choice"]["metrics"]["acc_norm"]  # the records tell them apart
    choice, words = out["results"]["gptforge_choice"], out["results"]["gptforge_last-word"]
    assert choice["sample_len"] == ours["choice"]["metrics"]["examples"] == 13
    for metric in ("acc", "acc_norm", "acc_bytes"):
        assert choice[f"{metric},none"] == ours["choice"]["metrics"][metric], metric
    assert words["sample_len"] == ours["last-word"]["metrics"]["examples"] == 11
    assert words["acc,none"] == ours["last-word"]["metrics"]["acc"]
    assert words["perplexity,none"] == pytest.approx(ours["last-word"]["metrics"]["perplexity"], rel=1e-4)


def test_only_an_eval_version_folder_is_exported(copied_root, tmp_path):
    from flows.export_lmeval import export_lmeval

    with pytest.raises(StoreError, match="is not an eval version folder"):
        export_lmeval(copied_root.local_path / "runs" / "r1", tmp_path / "out")
