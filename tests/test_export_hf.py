"""export_hf: a published run becomes a folder that `transformers` opens with no code, computing what gptcore does.

One small data root holds a GPT-2 (pre-LN) and a GPT-1 (post-LN) pretrain run, a classification fine-tuning of the
first, a multiple-choice fine-tuning of the second and an evaluation of the first; each is exported once.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from flows.store import DataRoot
from tests.builders import TINY_TRAIN, publish_tokens, sentiment

transformers = pytest.importorskip("transformers")
huggingface_hub = pytest.importorskip("huggingface_hub")

PROMPTS = ["The history of the module", "def parse_args(self, args=None):"]
CLASSIFIER = {"task": "classification", "finetune": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "seed": 0}}
CHOOSER = {"task": "multiple_choice", "finetune": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "seed": 0}}


def write_jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


def choice_records(n: int, seed: int) -> list[dict]:
    """Pick the ending that matches the sentence's mood (the right one at a random index)."""
    rng, records = random.Random(seed), []
    for example in sentiment(n, seed):
        good = "and I smiled" if example.label == "pos" else "and I frowned"
        bad = "and I frowned" if example.label == "pos" else "and I smiled"
        label = rng.randrange(2)
        records.append({"context": example.text, "choices": [bad, good] if label else [good, bad], "label": label})
    return records


def load_file_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return fh.metadata()


def collate_one(task_model, example, encoder):
    from gptcore.tasks import collate

    return collate([task_model.encode(example, encoder)])


@pytest.fixture(scope="module")
def root(tmp_path_factory, prefect_harness) -> DataRoot:
    from flows.evaluate import evaluate
    from flows.finetune import finetune
    from flows.pretrain import pretrain

    folder = tmp_path_factory.mktemp("tasks")
    root = publish_tokens(DataRoot.from_env(str(tmp_path_factory.mktemp("data"))))
    pretrain(version="p1", data_root=root.url, preset="tiny", train=TINY_TRAIN)
    pretrain(version="g1", data_root=root.url, preset="tiny", model={"layer_norm": "post"}, train=TINY_TRAIN)
    train = sentiment(48, seed=1)
    test = [e for e in sentiment(40, seed=2) if e.text not in {t.text for t in train}]
    finetune(train=write_jsonl(folder / "train.jsonl", [{"text": e.text, "label": e.label} for e in train]),
             test=write_jsonl(folder / "test.jsonl", [{"text": e.text, "label": e.label} for e in test]),
             pretrained="p1", version="f1", data_root=root.url, **CLASSIFIER)
    choices_train = choice_records(48, seed=1)
    seen = {r["context"] for r in choices_train}
    choices_test = write_jsonl(folder / "choices_test.jsonl", [r for r in choice_records(40, seed=2)
                                                                if r["context"] not in seen])
    finetune(train=write_jsonl(folder / "choices_train.jsonl", choices_train), test=choices_test, pretrained="g1",
             version="m1", data_root=root.url, **CHOOSER)
    evaluate(runs=["p1"], tasks=[{"name": "moods", "type": "multiple_choice", "path": choices_test}],
             contamination=False, max_tokens=2000, version="e1", data_root=root.url, device="cpu")
    return root


@pytest.fixture(scope="module")
def exports(root, tmp_path_factory) -> dict[str, Path]:
    from flows.export_hf import export_hf

    out = tmp_path_factory.mktemp("exports")
    return {run: export_hf(root.local_path / "runs" / run, out / f"gptforge-{run}") for run in ("p1", "g1", "f1", "m1")}


def gptcore_parts(root: DataRoot, run: str):
    from gptcore.checkpoint import latest_checkpoint, load_model
    from gptcore.encoding import load_encoder

    return (load_model(latest_checkpoint(root.local_path / "runs" / run)),
            load_encoder(root.local_path / "tokenizer" / "t1" / "tokenizer.json"))


@pytest.mark.parametrize("run, model_class", [("p1", "GPT2LMHeadModel"), ("g1", "OpenAIGPTLMHeadModel")])
def test_a_pretrain_run_opens_with_auto_classes_and_computes_the_same_logits_and_greedy_text(root, exports, run,
                                                                                             model_class):
    from gptcore.generate import generate_text

    ours, encoder = gptcore_parts(root, run)
    folder = exports[run]
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == [model_class]
    assert config["bos_token_id"] == config["eos_token_id"] == encoder.eot_id
    assert config["n_ctx"] == config["n_positions"] == ours.config.block_size == 64
    assert json.loads((folder / "generation_config.json").read_text())["eos_token_id"] == encoder.eot_id

    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token) == ("<|endoftext|>",) * 3
    assert tokenizer.model_max_length == 64 and tokenizer.eos_token_id == encoder.eot_id
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    assert type(model).__name__ == model_class
    for prompt in PROMPTS:
        ids = tokenizer(prompt)["input_ids"]
        assert ids and ids == encoder.encode(prompt)
        with torch.no_grad():
            expected = ours(torch.tensor([ids]))[0]
            assert torch.allclose(model(torch.tensor([ids])).logits, expected, atol=1e-5)

    generator = transformers.pipeline("text-generation", model=str(folder), device="cpu")
    for prompt in PROMPTS:
        # gptcore's prompts follow the end-of-text token, as every training document does
        theirs = generator("<|endoftext|>" + prompt, max_new_tokens=12, do_sample=False, return_full_text=False)
        assert theirs[0]["generated_text"] == generate_text(ours, encoder, prompt, 12, temperature=0)


def test_a_classification_run_exports_its_head_which_on_transformers_hidden_states_gives_gptcore_logits(root,
                                                                                                       exports):
    from safetensors.torch import load_file

    from flows.export_hf import TASK_HEAD_FILE, TASK_TOKENS
    from gptcore.finetune import load_task_run

    task_model, spec, encoder = load_task_run(root.local_path / "runs" / "f1")
    folder = exports["f1"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    head = load_file(folder / TASK_HEAD_FILE)
    assert json.loads(load_file_metadata(folder / TASK_HEAD_FILE)["labels"]) == list(spec.labels) == ["neg", "pos"]
    start, _, extract = TASK_TOKENS
    for example in sentiment(6, seed=3):
        ids = tokenizer(f"{start}{example.text}{extract}")["input_ids"]
        assert ids == task_model.encode(example, encoder)[0]  # the task tokens are the model's new rows
        with torch.no_grad():
            hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0, -1]
            theirs = head["weight"] @ hidden + head["bias"]
            ours = task_model(collate_one(task_model, example, encoder)).logits[0]
        assert torch.allclose(theirs, ours, atol=1e-5)
    assert "text-classification" in (folder / "README.md").read_text()


def test_a_multiple_choice_run_exports_a_double_heads_model_with_the_same_choice_logits(root, exports):
    from gptcore.finetune import load_task_run
    from gptcore.taskdata import MultipleChoiceExample
    from gptcore.tasks import collate

    task_model, _, encoder = load_task_run(root.local_path / "runs" / "m1")
    folder = exports["m1"]
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["OpenAIGPTDoubleHeadsModel"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.OpenAIGPTDoubleHeadsModel.from_pretrained(folder).eval()
    examples = [MultipleChoiceExample(r["context"], tuple(r["choices"]), r["label"]) for r in choice_records(4, 5)]
    batch = collate([task_model.encode(example, encoder) for example in examples])
    texts = [[f"<|start|>{e.context}<|delimiter|>{choice}<|extract|>" for choice in e.choices] for e in examples]
    assert [[tokenizer(t)["input_ids"] for t in row] for row in texts] == \
        [task_model.encode(example, encoder) for example in examples]
    with torch.no_grad():
        theirs = model(batch.tokens, mc_token_ids=batch.lengths - 1).mc_logits
        assert torch.allclose(theirs, task_model(batch).logits, atol=1e-5)
    # The same folder is also a language model: AutoModelForCausalLM leaves the choice head out.
    lm = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        assert torch.allclose(lm(batch.tokens[:, 0]).logits, task_model.gpt(batch.tokens[:, 0])[0], atol=1e-5)


def test_the_model_card_is_hub_metadata_with_the_corpus_and_the_runs_evaluations_and_a_lineage_body(root, exports):
    from flows.evaluate import read_results

    card = huggingface_hub.ModelCard.load(exports["p1"] / "README.md")
    assert card.data.license == "other" and card.data.datasets == ["corpus/c1"]
    assert "gpt2" in card.data.tags and card.data.pipeline_tag == "text-generation"
    measured = read_results(root, "e1")["runs"]["p1"]
    reported = {(r.dataset_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert reported[("tokens k1", "perplexity")] == measured["perplexity"]["perplexity"]
    task_metrics = {m: v for m, v in measured["tasks"]["moods"]["metrics"].items() if m not in ("n", "examples")}
    assert task_metrics and all(reported[("moods", m)] == v for m, v in task_metrics.items())
    for stage, version in (("tokens", "k1"), ("tokenizer", "t1"), ("corpus", "c1"), ("runs", "p1")):
        assert root.verified_manifest(stage, version)["checksum"] in card.text
    assert "## Intended use and limits" in card.text and '"max_steps": 40' in card.text
    # Runs without an evaluation say so instead of inventing metrics.
    unevaluated = huggingface_hub.ModelCard.load(exports["g1"] / "README.md")
    assert not unevaluated.data.eval_results and "not been evaluated" in unevaluated.text


def test_a_folder_that_is_not_a_published_run_or_a_used_output_folder_is_refused_with_what_to_pass(root, exports,
                                                                                                   tmp_path):
    from flows.export_hf import ExportError, export_hf

    with pytest.raises(ExportError, match="does not exist: pass a published run folder"):
        export_hf(root.local_path / "runs" / "nope", tmp_path / "a")
    with pytest.raises(ExportError, match="is a 'tokens' version, not a run"):
        export_hf(root.local_path / "tokens" / "k1", tmp_path / "a")
    with pytest.raises(ExportError, match="has no manifest.json"):
        export_hf(tmp_path, tmp_path / "a")
    with pytest.raises(ExportError, match="already exists and is not an empty folder"):
        export_hf(root.local_path / "runs" / "p1", exports["p1"])
    assert not (tmp_path / "a").exists()


def test_a_gpt1_style_tokenizer_encodes_the_same_ids_through_transformers(tmp_path):
    from gptcore.bpe_gpt1 import train_gpt1_bpe
    from gptcore.encoding import load_encoder
    from gptcore.hf import save_hf_tokenizer

    text = ["the history of the world is the history of its people .", "the people of the world ."] * 20
    tokenizer = train_gpt1_bpe(text, merges=15, min_frequency=1)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    save_hf_tokenizer(tokenizer, tmp_path / "hf", model_max_length=512)
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    ours = load_encoder(tmp_path / "tokenizer.json")
    for line in ("the history of its people .", "the world"):
        assert theirs(line)["input_ids"] == ours.encode(line) and ours.encode(line)
        assert theirs.decode(theirs(line)["input_ids"]) == ours.decode(ours.encode(line))



def test_gptforge_export_hf_writes_the_folder_and_prints_it(root, exports, tmp_path, capsys):
    from flows.app.cli import main

    main(["export", "hf", str(root.local_path / "runs" / "p1"), str(tmp_path / "hub"), "--license", "mit"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "hub")
    assert huggingface_hub.ModelCard.load(tmp_path / "hub" / "README.md").data.license == "mit"
    assert {p.name for p in (tmp_path / "hub").iterdir()} == {p.name for p in exports["p1"].iterdir()}
