"""pretrain: a tokens version + a model preset → a trained run (``runs/<id>/``: checkpoints, metrics, manifest).

Wraps ``gptcore.train`` (which knows nothing about Prefect): the run folder is the version's work folder, so a
killed pretrain resumes from its latest checkpoint with the exact losses of an uninterrupted run. Progress goes to
a throttled Prefect progress artifact; the gate checks finite losses, validation loss below the unigram-entropy
baseline of the data, and that the final checkpoint loads.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from prefect import flow, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.logging import get_run_logger

from data_contracts.pretrain import validate_run
from flows.lineage import upstream_version, write_manifest
from flows.stage import finish_version, resolve_version, start_version
from flows.store import DataRoot
from gptcore.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from gptcore.data import TokenDataset
from gptcore.model import config_from_preset
from gptcore.train import TrainConfig, read_metrics, train

STAGE = "runs"
PROGRESS_EVERY_S = 10.0


def unigram_entropy(tokens_folder: Path, split: str = "train", chunk: int = 1 << 24) -> float:
    """Entropy (nats) of the split's token frequencies: the loss of a model that predicts only frequencies."""
    data = TokenDataset(tokens_folder, split)
    counts = np.zeros(data.index.vocab_size, dtype=np.int64)
    for name in data.shard_files:
        tokens = np.memmap(data.index.folder / name, dtype=np.dtype(data.index.dtype), mode="r")
        for start in range(0, tokens.size, chunk):
            counts += np.bincount(tokens[start:start + chunk], minlength=counts.size)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


@task(name="train-model")
def train_model(model_config, train_config: TrainConfig, tokens_folder: Path, out: Path) -> dict:
    """Run (or resume) training into ``out``, reporting progress to Prefect at most every few seconds."""
    total = train_config.max_steps
    progress = create_progress_artifact(0.0, description="pretrain progress (% of max_steps)") if total else None
    last = [0.0]

    def log(metrics: dict) -> None:
        if progress is not None and time.monotonic() - last[0] > PROGRESS_EVERY_S:
            update_progress_artifact(progress, 100.0 * metrics["step"] / total)
            last[0] = time.monotonic()

    result = train(model_config, train_config, tokens_folder, out, resume=True, log=log)
    if progress is not None:
        update_progress_artifact(progress, 100.0 * result.step / total)
    return {"step": result.step, "tokens_seen": result.tokens_seen, "stopped_by": result.stopped_by,
            "loss": result.loss, "val_loss": result.val_loss, "elapsed_s": round(result.elapsed_s, 1),
            "params_sha256": result.params_sha256}


def _checkpoint_loads(out: Path) -> bool:
    try:
        path = latest_checkpoint(out)
        return path is not None and "model" in load_checkpoint(path)
    except CheckpointError:
        return False


@flow(name="pretrain", log_prints=True)
def pretrain(
    tokens: str | None = None,
    preset: str = "small-cpu",
    model: dict | None = None,
    run: str | None = None,
    data_root: str | None = None,
    max_steps: int | None = 1000,
    max_tokens: int | None = None,
    max_minutes: float | None = None,
    batch_size: int = 8,
    seq_len: int | None = None,
    grad_accum: int = 1,
    max_lr: float = 2.5e-4,
    min_lr: float = 0.0,
    warmup_steps: int = 2000,
    weight_decay: float = 0.01,
    eval_every: int = 500,
    eval_batches: int = 20,
    checkpoint_every: int = 1000,
    precision: str = "fp32",
    compile: bool = False,
    seed: int = 1337,
) -> str:
    """Pretrain a GPT on a tokens version (default: the newest); returns the run folder.

    ``preset`` is a ``gptcore.model.PRESETS`` name (``gpt1``, ``gpt2-small``, …, ``tiny``, ``small-cpu``) and
    ``model`` overrides its fields; the vocabulary size always comes from the tokens. Defaults follow GPT-1
    (AdamW, weight decay 0.01 on matrices, 2,000 warmup steps, max lr 2.5e-4, cosine decay). Training stops at
    ``max_steps``, ``max_tokens`` or ``max_minutes``, whichever comes first.
    """
    logger = get_run_logger()
    root = DataRoot.from_env(data_root)
    tokens = resolve_version(root, "tokens", tokens, "pretrain")
    tokens_folder = Path(root.version_url("tokens", tokens))
    vocab_size = TokenDataset(tokens_folder, "train").index.vocab_size
    model_config = config_from_preset(preset, **{**(model or {}), "vocab_size": vocab_size})
    train_config = TrainConfig(batch_size=batch_size, seq_len=seq_len, grad_accum=grad_accum, max_lr=max_lr,
                               min_lr=min_lr, warmup_steps=warmup_steps, weight_decay=weight_decay, max_steps=max_steps,
                               max_tokens=max_tokens, max_minutes=max_minutes, eval_every=eval_every,
                               eval_batches=eval_batches, checkpoint_every=checkpoint_every, precision=precision,
                               compile=compile, seed=seed)
    tokens_up = upstream_version(root, "tokens", tokens)
    # JSON round trip: the plan is compared with the stored one when resuming (tuples come back as lists).
    parameters = json.loads(json.dumps({"tokens": tokens, "tokens_checksum": tokens_up["checksum"], "preset": preset,
                                        "model": asdict(model_config), "train": asdict(train_config)}))
    started = start_version(root, STAGE, run, parameters)
    logger.info("run %s: preset %s on tokens %s (%s)", started.name, preset, tokens, started.out)
    result = train_model(model_config, train_config, tokens_folder, started.out)

    baseline = unigram_entropy(tokens_folder)
    metrics = read_metrics(started.out)
    losses = [m["loss"] for m in metrics]
    loads = _checkpoint_loads(started.out)
    report = validate_run(losses, result["val_loss"], baseline, loads)
    checkpoint = latest_checkpoint(started.out) if loads else None
    counts = {**result, "unigram_entropy": round(baseline, 4),
              "checkpoint": str(checkpoint.relative_to(started.out)) if checkpoint else None}
    manifest = write_manifest(started.out, STAGE, started.name, parameters, [tokens_up], counts)
    rows = [{"step": m["step"], "loss": m["loss"], "val_loss": m.get("val_loss"), "lr": m["lr"]}
            for m in metrics if "val_loss" in m]
    url = finish_version(root, started, manifest, report, rows, asset_deps=[root.asset_key("tokens", tokens)],
                         description=f"{preset} pretraining run")
    logger.info("run %s: step %d, loss %.4f, val loss %s (unigram baseline %.4f) → %s", started.name, result["step"],
                result["loss"] or math.nan, result["val_loss"], baseline, url)
    return url
