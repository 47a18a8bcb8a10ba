"""Training loop: LR schedule, checkpoints (atomic, checksummed, weights-only), exact resume, stop conditions."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gptcore.checkpoint import (CheckpointError, capture_rng_state, latest_checkpoint, load_checkpoint,
                                restore_rng_state, save_checkpoint)
from gptcore.model import config_from_preset
from gptcore.metrics_log import read_metrics_log
from gptcore import runtime
from gptcore.runtime import cpu_has_native_bf16, resolve_precision
from gptcore.schedule import cosine_lr_at
from gptcore.train import TrainConfig, main, train
from tests.builders import train_val_tokens

VOCAB = 32
SEQ = 16
PATTERN = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]  # a fixed cycle: the next token is fully predictable


def write_tokens(folder: Path, train_docs: list[list[int]], val_docs: list[list[int]]) -> Path:
    return train_val_tokens(folder, train_docs, val_docs, VOCAB)


@pytest.fixture
def pattern_tokens(tmp_path) -> Path:
    return write_tokens(tmp_path / "tokens", [PATTERN * 200], [PATTERN * 20])


@pytest.fixture
def random_tokens(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    return write_tokens(tmp_path / "tokens", [rng.integers(1, VOCAB, 3000).tolist()],
                        [rng.integers(1, VOCAB, 400).tolist()])


def tiny_model(dropout: float = 0.0):
    return config_from_preset("tiny", vocab_size=VOCAB, block_size=SEQ, dropout=dropout)


def quick_config(**overrides) -> TrainConfig:
    settings = dict(batch_size=4, seq_len=SEQ, max_lr=3e-3, min_lr=3e-4, warmup_steps=2, max_steps=8,
                    eval_every=4, eval_batches=2, checkpoint_every=4, device="cpu")
    return TrainConfig(**(settings | overrides))


class Killed(Exception):
    pass


def kill_after(step: int):
    def log(metrics: dict) -> None:
        if metrics["step"] == step:
            raise Killed
    return log


# -- schedule -------------------------------------------------------------------------------------------------


def test_lr_warms_up_linearly_then_follows_a_cosine_down_to_min_lr():
    schedule = dict(max_lr=1.0, min_lr=0.1, warmup_steps=10, decay_steps=110)
    assert cosine_lr_at(0, **schedule) == pytest.approx(0.1)
    assert cosine_lr_at(4, **schedule) == pytest.approx(0.5)
    assert cosine_lr_at(9, **schedule) == pytest.approx(1.0)
    assert cosine_lr_at(10, **schedule) == pytest.approx(1.0)
    assert cosine_lr_at(60, **schedule) == pytest.approx(0.55)  # halfway down the cosine
    assert cosine_lr_at(110, **schedule) == pytest.approx(0.1)
    assert cosine_lr_at(10_000, **schedule) == pytest.approx(0.1)
    decay = [cosine_lr_at(step, **schedule) for step in range(10, 111)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_lr_schedule_rejects_a_warmup_longer_than_training():
    with pytest.raises(ValueError, match="warmup_steps"):
        cosine_lr_at(0, max_lr=1.0, min_lr=0.0, warmup_steps=10, decay_steps=5)


def test_train_config_needs_somewhere_to_end_the_schedule():
    with pytest.raises(ValueError, match="max_steps, max_tokens or decay_steps"):
        TrainConfig(max_minutes=5)
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(max_steps=5, precision="fp8")


# -- checkpoints ----------------------------------------------------------------------------------------------


def test_rng_state_round_trips_through_a_weights_only_load(tmp_path):
    import random
    state = capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(3))
    torch.save(state, tmp_path / "rng.pt")
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand()) == expected[:2]
    assert torch.equal(torch.rand(3), expected[2])


def test_checkpoint_holds_the_full_training_state_and_loads_weights_only(tmp_path, random_tokens):
    run = tmp_path / "run"
    result = train(tiny_model(), quick_config(max_steps=4), random_tokens, run)
    assert result.checkpoint == run / "checkpoints" / "step_000004.pt" == latest_checkpoint(run)
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_000004.pt"
    assert not list((run / "checkpoints").glob(".*tmp*")), "no temporary files left behind"
    state = load_checkpoint(result.checkpoint)
    assert torch.load(result.checkpoint, weights_only=True).keys() == state.keys()
    assert state["step"] == 4 and state["tokens_seen"] == 4 * 4 * SEQ
    assert {"model", "optimizer", "scaler", "rng", "lr_schedule", "model_config", "train_config"} <= state.keys()
    assert state["model_config"]["vocab_size"] == VOCAB and state["train_config"]["max_steps"] == 4
    assert len(state["optimizer"]["state"]) > 0, "AdamW moments are saved"


def test_a_damaged_checkpoint_is_refused(tmp_path, random_tokens):
    run = tmp_path / "run"
    path = train(tiny_model(), quick_config(max_steps=4), random_tokens, run).checkpoint
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="sha256"):
        train(tiny_model(), quick_config(max_steps=6), random_tokens, run)


def test_resuming_with_a_different_model_is_refused(tmp_path, random_tokens):
    run = tmp_path / "run"
    train(tiny_model(), quick_config(max_steps=4), random_tokens, run)
    other = config_from_preset("tiny", vocab_size=VOCAB, block_size=SEQ, n_layer=1)
    with pytest.raises(ValueError, match="different model"):
        train(other, quick_config(max_steps=6), random_tokens, run)


# -- exact resume ---------------------------------------------------------------------------------------------


def losses(run: Path) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in read_metrics_log(run)}


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_a_run_killed_after_a_checkpoint_resumes_with_exactly_the_same_losses(tmp_path, random_tokens, dropout):
    config = quick_config(max_steps=10, checkpoint_every=4, eval_every=3, grad_accum=2)
    straight = tmp_path / "straight"
    train(tiny_model(dropout), config, random_tokens, straight)

    killed = tmp_path / "killed"
    with pytest.raises(Killed):  # dies at step 6, two steps after the checkpoint at step 4
        train(tiny_model(dropout), config, random_tokens, killed, log=kill_after(6))
    assert latest_checkpoint(killed).name == "step_000004.pt"
    result = train(tiny_model(dropout), config, random_tokens, killed)

    assert result.step == 10
    assert sorted(losses(killed)) == list(range(1, 11)), "steps 5-6 of the killed run are logged once, redone"
    assert losses(killed) == losses(straight)  # exact equality, every step
    assert ([m.get("val_loss") for m in read_metrics_log(killed)]
            == [m.get("val_loss") for m in read_metrics_log(straight)])


def drop_last_metrics_line(run: Path) -> None:
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run / "metrics.jsonl").write_text("".join(lines[:-1]))


def drop_stored_metrics_line(run: Path) -> None:
    """A checkpoint as written before checkpoints held their step's metrics line."""
    path = latest_checkpoint(run)
    state = load_checkpoint(path)
    del state["metrics"]
    save_checkpoint(run, state["step"], state)


KILLED_AFTER_THE_LAST_CHECKPOINT = {  # kill point → how to make that state from a finished run
    "before its metrics line": drop_last_metrics_line,
    "after its metrics line": lambda run: None,
    "before its metrics line, checkpoint without one": lambda run: (drop_last_metrics_line(run),
                                                                    drop_stored_metrics_line(run)),
}


@pytest.mark.parametrize("kill_point", KILLED_AFTER_THE_LAST_CHECKPOINT)
def test_a_run_killed_after_its_last_checkpoint_reruns_to_the_result_of_an_unkilled_run(tmp_path, random_tokens,
                                                                                       kill_point):
    config = quick_config(max_steps=6, eval_every=4, checkpoint_every=3)
    run = tmp_path / "run"
    whole = train(tiny_model(), config, random_tokens, run)
    metrics = read_metrics_log(run)
    KILLED_AFTER_THE_LAST_CHECKPOINT[kill_point](run)

    rerun = train(tiny_model(), config, random_tokens, run)
    assert (rerun.step, rerun.tokens_seen, rerun.stopped_by, rerun.params_sha256) == (
        whole.step, whole.tokens_seen, whole.stopped_by, whole.params_sha256)
    assert rerun.val_loss == whole.val_loss and rerun.val_loss is not None
    if kill_point == "before its metrics line, checkpoint without one":
        assert read_metrics_log(run) == metrics[:-1], "nothing to restore the line from; the result is re-measured"
    else:
        assert rerun.loss == whole.loss and read_metrics_log(run) == metrics, "the same metrics file, every line once"


def test_stopping_at_max_steps_and_continuing_matches_one_long_run(tmp_path, random_tokens):
    straight = tmp_path / "straight"
    train(tiny_model(0.1), quick_config(max_steps=8), random_tokens, straight)
    chunked = tmp_path / "chunked"
    first = train(tiny_model(0.1), quick_config(max_steps=5, decay_steps=8), random_tokens, chunked)
    assert (first.step, first.stopped_by) == (5, "max_steps")
    second = train(tiny_model(0.1), quick_config(max_steps=8), random_tokens, chunked)
    assert second.step == 8
    assert losses(chunked) == losses(straight)
    assert second.params_sha256 == train(tiny_model(0.1), quick_config(max_steps=8), random_tokens,
                                         straight).params_sha256, "resuming a finished run changes nothing"


def test_resume_false_starts_over(tmp_path, random_tokens):
    run = tmp_path / "run"
    train(tiny_model(), quick_config(max_steps=4), random_tokens, run)
    result = train(tiny_model(), quick_config(max_steps=2), random_tokens, run, resume=False)
    assert result.step == 2 and sorted(losses(run)) == [1, 2]


# -- learning, metrics and stop conditions --------------------------------------------------------------------


def test_loss_drops_on_a_learnable_pattern(tmp_path, pattern_tokens):
    run = tmp_path / "run"
    seen = []
    result = train(tiny_model(), quick_config(max_steps=50, warmup_steps=5, eval_every=25, checkpoint_every=50),
                   pattern_tokens, run, log=seen.append)
    first, last = seen[0]["loss"], seen[-1]["loss"]
    assert first > math.log(VOCAB) - 0.5, "starts near uniform guessing"
    assert last < 0.5 * first
    assert result.val_loss < 0.5 * first
    assert seen == read_metrics_log(run), "the log callback sees exactly what the metrics file holds"


def test_metrics_file_has_one_line_per_step_with_validation_at_eval_steps(tmp_path, random_tokens):
    run = tmp_path / "run"
    train(tiny_model(), quick_config(max_steps=6, eval_every=4, grad_accum=2), random_tokens, run)
    metrics = read_metrics_log(run)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    assert [s for s, m in enumerate(metrics, 1) if "val_loss" in m] == [4, 6], "every eval_every steps and the last"
    for m in metrics:
        assert {"step", "loss", "lr", "grad_norm", "tokens_seen", "tokens_per_s", "elapsed_s"} <= m.keys()
        assert "mfu" not in m, "MFU is reported on CUDA only"
    assert metrics[-1]["tokens_seen"] == 6 * 2 * 4 * SEQ
    assert metrics[0]["lr"] == pytest.approx(3e-3 / 2) and metrics[1]["lr"] == pytest.approx(3e-3)
    assert metrics[-1]["lr"] > 3e-4 and json.loads(json.dumps(metrics)) == metrics


def test_training_stops_at_a_token_budget(tmp_path, random_tokens):
    result = train(tiny_model(), quick_config(max_steps=None, max_tokens=3 * 4 * SEQ), random_tokens,
                   tmp_path / "run")
    assert (result.step, result.tokens_seen, result.stopped_by) == (3, 3 * 4 * SEQ, "max_tokens")


def test_training_stops_at_a_time_budget(tmp_path, random_tokens):
    result = train(tiny_model(), quick_config(max_steps=1000, max_minutes=0.0), random_tokens, tmp_path / "run")
    assert (result.step, result.stopped_by) == (0, "max_minutes")


def test_bf16_autocast_trains_on_cpu(tmp_path, random_tokens):
    result = train(tiny_model(), quick_config(max_steps=2, precision="bf16"), random_tokens, tmp_path / "run")
    assert result.step == 2 and math.isfinite(result.loss)


def test_native_bf16_is_read_from_the_cpu_flags():
    assert cpu_has_native_bf16("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    assert cpu_has_native_bf16("flags\t\t: fpu amx_bf16 amx_tile\n")
    assert not cpu_has_native_bf16("flags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    assert not cpu_has_native_bf16("")
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"


@pytest.mark.parametrize(("flags", "expected"), [("avx2 avx512f avx512_bf16", "bf16"), ("avx2 avx512f", "fp32")])
def test_auto_precision_trains_in_bf16_only_where_the_cpu_has_it(tmp_path, random_tokens, monkeypatch, flags,
                                                                  expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: fpu {flags}\n")
    monkeypatch.setattr(runtime, "CPUINFO", cpuinfo)
    assert TrainConfig(max_steps=1).precision == "auto", "the default"
    result = train(tiny_model(), quick_config(max_steps=2, precision="auto"), random_tokens, tmp_path / "run")
    assert result.precision == expected


def test_bf16_autocast_follows_the_fp32_loss_curve(tmp_path, pattern_tokens):
    config = dict(max_steps=30, warmup_steps=5, eval_every=30, checkpoint_every=30)
    fp32 = losses_of(train(tiny_model(), quick_config(**config, precision="fp32"), pattern_tokens, tmp_path / "a"))
    bf16 = losses_of(train(tiny_model(), quick_config(**config, precision="bf16"), pattern_tokens, tmp_path / "b"))
    assert fp32[-1] < 0.5 * fp32[0], "the curve falls, so there is a curve to follow"
    assert max(abs(a - b) for a, b in zip(fp32, bf16)) < 0.01 * fp32[0]


def losses_of(result) -> list[float]:
    return [m["loss"] for m in read_metrics_log(result.checkpoint.parent.parent)]


def test_fp16_is_refused_on_cpu(tmp_path, random_tokens):
    with pytest.raises(ValueError, match="fp16"):
        train(tiny_model(), quick_config(precision="fp16"), random_tokens, tmp_path / "run")


def test_command_line_trains_and_prints_a_summary(tmp_path, random_tokens, capsys):
    run = tmp_path / "run"
    assert main(["--tokens", str(random_tokens), "--out", str(run), "--preset", "tiny", "--max-steps", "3",
                 "--batch-size", "2", "--seq-len", str(SEQ), "--warmup-steps", "1", "--device", "cpu",
                 "--betas", "0.9", "0.95", "--no-compile"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 3 and summary["stopped_by"] == "max_steps" and summary["rank"] == 0
    assert load_checkpoint(run / "checkpoints" / "step_000003.pt")["train_config"]["betas"] == (0.9, 0.95)


def test_init_checkpoint_starts_a_new_run_from_another_runs_weights(tmp_path, pattern_tokens):
    first = train(tiny_model(), quick_config(max_steps=30, checkpoint_every=30), pattern_tokens, tmp_path / "a")
    fresh = train(tiny_model(), quick_config(max_steps=2), pattern_tokens, tmp_path / "b")
    continued = train(tiny_model(), quick_config(max_steps=2, init_checkpoint=str(first.checkpoint)),
                      pattern_tokens, tmp_path / "c")
    assert continued.step == 2, "a new run: its own step count and schedule"
    assert continued.loss < fresh.loss, "it starts from the trained weights"
    with pytest.raises(ValueError, match="different model"):
        train(config_from_preset("tiny", vocab_size=VOCAB, block_size=SEQ, n_embd=32), quick_config(
            init_checkpoint=str(first.checkpoint)), pattern_tokens, tmp_path / "d")
