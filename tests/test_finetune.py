"""gptcore.finetune (the loop, exact resume, scoring a run) and gptcore.metrics."""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from gptcore import metrics
from gptcore.checkpoint import CHECKPOINT_DIR, LATEST, latest_checkpoint, load_checkpoint, load_model, save_checkpoint
from gptcore.encoding import load_encoder
from gptcore.finetune import (FinetuneConfig, evaluate_task, finetune, length_bucketed_batches, load_task_run, predict,
                              training_losses)
from gptcore.metrics_log import read_metrics_log
from gptcore.model import GPT, GPTConfig
from gptcore.schedule import linear_lr_at
from gptcore.taskdata import ClassificationExample, MultipleChoiceExample, SimilarityExample
from gptcore.tasks import TaskModel, TaskSpec, collate
from gptcore.train import params_sha256
from tests.builders import sentiment, train_byte_level_bpe

@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> tuple[Path, Path]:
    """(a pretrain run folder with one checkpoint of a tiny GPT, its tokenizer.json)."""
    folder = tmp_path_factory.mktemp("pretrained")
    lines = [e.text for e in sentiment(300, seed=9)] * 3
    tokenizer = train_byte_level_bpe(lines, 300, folder / "tokenizer.json", eot_last=True)
    config = GPTConfig(vocab_size=300, block_size=32, n_layer=2, n_head=2, n_embd=32, dropout=0.1)
    torch.manual_seed(0)
    save_checkpoint(folder / "run", 100, {"model": GPT(config).state_dict(), "model_config": asdict(config)})
    return folder / "run", tokenizer


FAST = dict(lr=3e-3, batch_size=16, epochs=3, seed=1, device="cpu")


def test_fine_tuning_learns_a_simple_classification_and_the_run_scores_its_test_set(pretrained, tmp_path):
    run, tokenizer = pretrained
    result = finetune(run, tokenizer, TaskSpec("classification", ("neg", "pos")), sentiment(160, seed=1),
                      FinetuneConfig(**{**FAST, "epochs": 5}), tmp_path / "ft")
    assert result.step == result.total_steps == 50  # 5 epochs of ceil(160 / 16) batches
    scores = evaluate_task(tmp_path / "ft", sentiment(60, seed=2))
    assert scores["n"] == 60 and scores["accuracy"] >= 0.9
    assert set(scores) == {"n", "accuracy", "macro_f1", "matthews", "binary_f1"}
    steps = read_metrics_log(tmp_path / "ft")
    assert [m["step"] for m in steps] == list(range(1, 51)) and all(m["lm_loss"] > 0 for m in steps)


def test_metrics_read_off_in_groups_are_the_lines_a_per_step_log_sees(pretrained, tmp_path):
    run, tokenizer = pretrained
    spec, examples = TaskSpec("classification", ("neg", "pos")), sentiment(80, seed=3)
    config = FinetuneConfig(**{**FAST, "batch_size": 2, "epochs": 1})  # 40 steps, one checkpoint: groups of 16
    seen: list[dict] = []
    finetune(run, tokenizer, spec, examples, config, tmp_path / "logged", log=seen.append)
    finetune(run, tokenizer, spec, examples, config, tmp_path / "grouped")
    logged, grouped = read_metrics_log(tmp_path / "logged"), read_metrics_log(tmp_path / "grouped")
    assert [m["step"] for m in grouped] == list(range(1, 41)) and logged == seen
    drop_time = lambda lines: [{k: v for k, v in m.items() if k != "elapsed_s"} for m in lines]
    assert drop_time(grouped) == drop_time(logged)
    assert all(isinstance(m["loss"], float) and isinstance(m["grad_norm"], float) for m in grouped)


def test_lambda_zero_switches_the_auxiliary_lm_loss_off(pretrained, tmp_path):
    run, tokenizer = pretrained
    finetune(run, tokenizer, TaskSpec("classification", ("neg", "pos")), sentiment(32, seed=1),
             FinetuneConfig(**{**FAST, "aux_lm_weight": 0.0, "epochs": 1}), tmp_path / "ft")
    assert all(m["lm_loss"] is None and m["loss"] == m["task_loss"] for m in read_metrics_log(tmp_path / "ft"))


def test_a_killed_run_resumes_to_the_same_weights_as_an_uninterrupted_one(pretrained, tmp_path):
    run, tokenizer = pretrained
    spec, examples = TaskSpec("classification", ("neg", "pos")), sentiment(64, seed=3)
    config = FinetuneConfig(**{**FAST, "epochs": 2, "checkpoint_every": 3})  # 8 steps, checkpoints at 3, 6, 8
    finetune(run, tokenizer, spec, examples, config, tmp_path / "whole")
    whole = load_task_run(tmp_path / "whole")[0]

    finetune(run, tokenizer, spec, examples, config, tmp_path / "killed")
    checkpoints = tmp_path / "killed" / CHECKPOINT_DIR
    for name in ("step_000008.pt", "step_000008.pt.sha256", "step_000006.pt", "step_000006.pt.sha256"):
        (checkpoints / name).unlink()  # as if killed after step 3's checkpoint …
    (checkpoints / LATEST).write_text("step_000003.pt\n")
    with open(tmp_path / "killed" / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 99, "loss": 0.0}) + "\n")  # … with a half-done step logged
    result = finetune(run, tokenizer, spec, examples, config, tmp_path / "killed")
    assert result.step == 8
    assert params_sha256(load_task_run(tmp_path / "killed")[0]) == params_sha256(whole)
    assert [m["step"] for m in read_metrics_log(tmp_path / "killed")] == list(range(1, 9))


def drop_last_metrics_line(run: Path) -> None:
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run / "metrics.jsonl").write_text("".join(lines[:-1]))


def drop_stored_metrics_line(run: Path) -> None:
    """A checkpoint as written before checkpoints held their step's metrics line."""
    state = load_checkpoint(latest_checkpoint(run))
    del state["metrics"]
    save_checkpoint(run, state["step"], state)


KILLED_AFTER_THE_LAST_CHECKPOINT = {  # kill point → how to make that state from a finished run
    "before its metrics line": drop_last_metrics_line,
    "after its metrics line": lambda run: None,
    "after its metrics line, checkpoint without one": drop_stored_metrics_line,
    "before its metrics line, checkpoint without one": lambda run: (drop_last_metrics_line(run),
                                                                    drop_stored_metrics_line(run)),
}


@pytest.mark.parametrize("kill_point", KILLED_AFTER_THE_LAST_CHECKPOINT)
def test_a_run_killed_after_its_last_checkpoint_reruns_to_the_result_of_an_unkilled_run(pretrained, tmp_path,
                                                                                       kill_point):
    run, tokenizer = pretrained
    spec, examples, test = TaskSpec("classification", ("neg", "pos")), sentiment(64, seed=3), sentiment(24, seed=4)
    config = FinetuneConfig(**{**FAST, "epochs": 2, "checkpoint_every": 3})  # 8 steps, checkpoints at 3, 6, 8
    out = tmp_path / "ft"
    whole = finetune(run, tokenizer, spec, examples, config, out)
    metrics, test_metrics = read_metrics_log(out), evaluate_task(out, test)
    KILLED_AFTER_THE_LAST_CHECKPOINT[kill_point](out)

    rerun = finetune(run, tokenizer, spec, examples, config, out)
    assert (rerun.step, rerun.total_steps, rerun.checkpoint) == (whole.step, whole.total_steps, whole.checkpoint)
    assert evaluate_task(out, test) == test_metrics
    if kill_point == "before its metrics line, checkpoint without one":
        assert rerun.loss is None and read_metrics_log(out) == metrics[:-1], "nothing to restore the line from"
    else:
        assert rerun.loss == whole.loss and rerun.loss is not None and math.isfinite(rerun.loss)
        assert read_metrics_log(out) == metrics and training_losses(out) == [m["loss"] for m in metrics], \
            "the same metrics file, every line once"


def test_resuming_with_other_settings_is_refused(pretrained, tmp_path):
    run, tokenizer = pretrained
    spec, examples = TaskSpec("classification", ("neg", "pos")), sentiment(16, seed=3)
    finetune(run, tokenizer, spec, examples, FinetuneConfig(**{**FAST, "epochs": 1}), tmp_path / "ft")
    with pytest.raises(ValueError, match="another fine-tuning setup"):
        finetune(run, tokenizer, spec, examples, FinetuneConfig(**{**FAST, "epochs": 1, "lr": 1e-4}), tmp_path / "ft")


def test_random_init_has_the_same_architecture_without_the_pretrained_weights(pretrained, tmp_path):
    run, tokenizer = pretrained
    spec, examples = TaskSpec("classification", ("neg", "pos")), sentiment(16, seed=3)
    one_step = {**FAST, "epochs": 1, "batch_size": 16, "lr": 1e-9}
    finetune(run, tokenizer, spec, examples, FinetuneConfig(**one_step), tmp_path / "pre")
    finetune(run, tokenizer, spec, examples, FinetuneConfig(**one_step, init="random"), tmp_path / "rand")
    source = load_checkpoint(run / CHECKPOINT_DIR / "step_000100.pt")["model"]["transformer.h.0.mlp.c_fc.weight"]
    tuned = load_task_run(tmp_path / "pre")[0].gpt.transformer.h[0].mlp.c_fc.weight
    scratch = load_task_run(tmp_path / "rand")[0].gpt.transformer.h[0].mlp.c_fc.weight
    assert torch.allclose(tuned, source, atol=1e-6) and not torch.allclose(scratch, source, atol=1e-3)
    assert tuned.shape == scratch.shape


def test_a_fine_tuned_checkpoint_is_also_a_language_model_checkpoint(pretrained, tmp_path):
    run, tokenizer = pretrained
    finetune(run, tokenizer, TaskSpec("classification", ("neg", "pos")), sentiment(16, seed=3),
             FinetuneConfig(**{**FAST, "epochs": 1}), tmp_path / "ft")
    model = load_model(tmp_path / "ft" / CHECKPOINT_DIR / "step_000001.pt")
    assert model.config.vocab_size == 303  # the pretrained 300 + start, delimiter, extract


def test_multiple_choice_predicts_a_choice_index_per_example(pretrained, tmp_path):
    run, tokenizer = pretrained
    examples = [MultipleChoiceExample("the soup", ("was wonderful", "felt great today", "is"), i % 3) for i in range(8)]
    finetune(run, tokenizer, TaskSpec("multiple_choice"), examples, FinetuneConfig(**{**FAST, "epochs": 1}),
             tmp_path / "mc")
    model, spec, encoder = load_task_run(tmp_path / "mc")
    assert spec.task == "multiple_choice"
    assert all(p in (0, 1, 2) for p in predict(model, encoder, examples, batch_size=3))
    two = MultipleChoiceExample("the soup", ("was", "is"), 0)
    mixed = [examples[0], two, examples[1], two]  # sorted into a batch of 2-choice and one of 3-choice examples
    assert [p in (0, 1) for p in predict(model, encoder, mixed, batch_size=2)][1::2] == [True, True]
    with pytest.raises(ValueError, match="read the test file with task='multiple_choice'"):
        evaluate_task(tmp_path / "mc", sentiment(2, seed=0))


def padded_tokens(batches: list[np.ndarray], lengths: np.ndarray) -> int:
    return sum(len(batch) * int(lengths[batch].max()) for batch in batches)


def test_length_bucketed_batches_cover_every_example_once_and_pad_far_less_than_random_batches():
    lengths = np.random.default_rng(0).integers(3, 120, size=1000)
    batches = length_bucketed_batches(lengths, batch_size=32, seed=5, epoch=0)
    assert len(batches) == 32 and sorted(len(b) for b in batches)[1:] == [32] * 31  # ceil(1000 / 32), one short
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    assert all(np.array_equal(a, b) for a, b in zip(batches, length_bucketed_batches(lengths, 32, seed=5, epoch=0)))
    other_epoch = length_bucketed_batches(lengths, 32, seed=5, epoch=1)
    assert {tuple(sorted(b)) for b in batches} != {tuple(sorted(b)) for b in other_epoch}, "contents reshuffle"
    random_batches = np.array_split(np.random.default_rng(1).permutation(1000), 32)
    assert padded_tokens(batches, lengths) < 0.75 * padded_tokens(random_batches, lengths)
    assert padded_tokens(batches, lengths) < 1.1 * lengths.sum()


def test_an_example_padded_in_a_bucketed_batch_gets_the_logits_it_gets_alone(pretrained):
    """Right padding under a causal mask: no position up to the extract token attends to a pad token."""
    run, tokenizer = pretrained
    encoder = load_encoder(tokenizer)
    torch.manual_seed(0)
    model = TaskModel(GPTConfig(vocab_size=300, block_size=32, n_layer=2, n_head=2, n_embd=32, dropout=0.1),
                      TaskSpec("classification", ("neg", "pos"))).eval()
    examples = [ClassificationExample(" ".join(["the soup was wonderful"] * (1 + i % 5))[: 3 + 11 * i], "pos")
                for i in range(12)]
    encoded = [model.encode(example, encoder) for example in examples]
    lengths = np.array([len(sequences[0]) for sequences in encoded])
    batches = length_bucketed_batches(lengths, batch_size=4, seed=0, epoch=0)
    assert any(lengths[b].min() < lengths[b].max() for b in batches), "some example must be padded"
    with torch.no_grad():
        for chosen in batches:
            batched = model(collate([encoded[i] for i in chosen])).logits
            for row, i in enumerate(chosen):
                assert torch.allclose(batched[row], model(collate([encoded[i]])).logits[0], atol=1e-5)


def test_predict_sorts_by_length_for_batching_but_answers_in_the_examples_order(pretrained):
    run, tokenizer = pretrained
    encoder = load_encoder(tokenizer)
    torch.manual_seed(0)
    model = TaskModel(GPTConfig(vocab_size=300, block_size=32, n_layer=2, n_head=2, n_embd=32),
                      TaskSpec("similarity"))  # regression: predictions are raw scores, so the order shows
    texts = [e.text for e in sentiment(9, seed=6)]
    cuts = [5, 1, 7, 3, 8, 2, 6, 0, 4]  # second texts of shuffled lengths: sorted order is not the given one
    examples = [SimilarityExample(texts[i], texts[i][: 4 + 3 * cut], 0.0) for i, cut in enumerate(cuts)]
    with torch.no_grad():
        one_by_one = [model.eval()(collate([model.encode(example, encoder)])).logits.item() for example in examples]
    assert len(set(one_by_one)) == 9
    assert predict(model, encoder, examples, batch_size=4) == pytest.approx(one_by_one, abs=1e-5)


def test_learning_rate_warms_up_linearly_then_decays_linearly_to_zero():
    rates = [linear_lr_at(step, max_lr=1.0, warmup_steps=2, total_steps=6) for step in range(6)]
    assert rates == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25])
    assert linear_lr_at(6, max_lr=1.0, warmup_steps=2, total_steps=6) == 0.0


# -- gptcore.metrics ---------------------------------------------------------------------------------------------


def test_accuracy_and_f1_scores():
    truth, pred = ["a", "a", "b", "c"], ["a", "b", "b", "b"]
    assert metrics.accuracy(truth, pred) == 0.5
    assert metrics.binary_f1(truth, pred, positive="b") == pytest.approx(2 / 4)  # tp 1, 3 predicted, 1 actual
    assert metrics.macro_f1(truth, pred) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert metrics.macro_f1(truth, pred, labels=["a", "b", "c", "d"]) == pytest.approx((2 / 3 + 1 / 2) / 4)


def test_matthews_correlation_matches_the_binary_phi_coefficient():
    truth, pred = [1, 1, 1, 0, 0, 0, 0, 1], [1, 1, 0, 0, 0, 1, 0, 1]
    tp, tn, fp, fn = 3, 3, 1, 1
    phi = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert metrics.matthews_corrcoef(truth, pred) == pytest.approx(phi)
    assert metrics.matthews_corrcoef([0, 1, 0], [1, 1, 1]) == 0.0  # undefined: one predicted class
    assert metrics.matthews_corrcoef(["x", "y", "z"], ["x", "y", "z"]) == pytest.approx(1.0)


def test_pearson_and_spearman_with_ties():
    x, y = [1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 1.0, 4.0, 3.0, 7.0]
    assert metrics.pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert metrics.spearman(x, [1, 1, 2, 3, 9]) == pytest.approx(np.corrcoef([1, 2, 3, 4, 5], [1.5, 1.5, 3, 4, 5])[0, 1])
    assert metrics.spearman([1, 2, 3], [10, 100, 1000]) == pytest.approx(1.0)
    assert metrics.pearson([1, 1, 1], [1, 2, 3]) == 0.0


def test_metrics_refuse_mismatched_or_empty_inputs():
    with pytest.raises(ValueError, match="equal length"):
        metrics.accuracy([1, 2], [1])
    with pytest.raises(ValueError, match="empty"):
        metrics.pearson([], [])
