"""pretrain: a tokens version + a model preset + a ``TrainConfig`` → a trained run (``runs/<id>/``: checkpoints,
metrics log, manifest).

Wraps ``gptcore.train`` (which knows nothing about Prefect); the flow's ``train`` parameter is its ``TrainConfig``
as it is, so every training field reaches the flow, ``gptforge run`` and the deployments. The run folder is the
version's work folder, so a killed pretrain resumes from its latest checkpoint with the exact losses of an
uninterrupted run. With ``nproc_per_node`` > 1 the flow launches ``torchrun`` (DDP, or FSDP with
``train.parallel="fsdp"``; NCCL on GPUs, gloo on CPUs) and follows its metrics log. Progress goes to a throttled
Prefect progress artifact, the loss curve to a markdown artifact (and ``loss_curve.svg``); the gate checks finite
losses, validation loss below the unigram-entropy baseline of the data, and that the final checkpoint loads.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.logging import get_run_logger

from data_contracts.pretrain import validate_run
from flows.charts import line_chart_svg, svg_markdown_image
from flows.gpu import gpu_slot
from flows.lineage import upstream_version, write_manifest
from flows.stage import artifact_key, finish_version, resolve_version, start_version
from flows.store import DataRoot
from gptcore.checkpoint import CHECKPOINT_FILES, CheckpointError, checkpoint_in, latest_checkpoint, load_checkpoint
from gptcore.data import unigram_entropy
from gptcore.metrics_log import METRICS_LOG_FILE, read_metrics_log
from gptcore.model import GPTConfig, config_from_preset
from gptcore.runtime import release_freed_memory
from gptcore.shards import read_index
from gptcore.train import TrainConfig, train

STAGE = "runs"
PROGRESS_EVERY_S = 10.0
LAUNCH_CONFIG = "launch.json"
LOSS_CURVE = "loss_curve.svg"
TORCHRUN_LOG = "torchrun.log"


class _Progress:
    """Training progress for the UI and the terminal: a progress artifact (percent of max_steps) and a log line,
    each at most every PROGRESS_EVERY_S seconds, and a log line at every evaluation."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.artifact = create_progress_artifact(0.0, description="pretrain progress (% of max_steps)") if total else None
        self.last = 0.0
        self.logged_step = -1

    def __call__(self, metrics: dict, force: bool = False) -> None:
        step = metrics["step"]
        if not (force or "val_loss" in metrics or time.monotonic() - self.last > PROGRESS_EVERY_S):
            return
        if self.artifact is not None:
            update_progress_artifact(self.artifact, 100.0 * step / self.total)
        if step != self.logged_step and metrics.get("loss") is not None:
            of = f"/{self.total}" if self.total else ""
            val = f", validation loss {metrics['val_loss']:.3f}" if metrics.get("val_loss") is not None else ""
            rate = f" ({metrics['tokens_per_s']:,.0f} tokens/s)" if metrics.get("tokens_per_s") else ""
            get_run_logger().info("step %d%s: loss %.3f%s%s", step, of, metrics["loss"], val, rate)
            self.logged_step = step
        self.last = time.monotonic()


def _result_summary(result) -> dict:
    return {"step": result.step, "tokens_seen": result.tokens_seen, "stopped_by": result.stopped_by,
            "loss": result.loss, "val_loss": result.val_loss, "elapsed_s": round(result.elapsed_s, 1),
            "params_sha256": result.params_sha256, "precision": result.precision}


@task(name="train-model")
def train_model(model_config, train_config: TrainConfig, tokens_folder: Path, out: Path) -> dict:
    """Run (or resume) training in this process into ``out``, reporting progress to Prefect."""
    progress = _Progress(train_config.max_steps)
    with gpu_slot():
        result = train(model_config, train_config, tokens_folder, out, resume=True,
                       log=progress, verify_tokens=False)  # verified by the flow
    release_freed_memory()  # the model, optimizer and batches are gone: the gate and manifest start from a low RSS
    progress({"step": result.step, "loss": result.loss, "val_loss": result.val_loss}, force=True)
    return _result_summary(result)


@task(name="train-model-torchrun")
def train_model_torchrun(model_config, train_config: TrainConfig, tokens_folder: Path, out: Path,
                         nproc_per_node: int) -> dict:
    """Run (or resume) training under ``torchrun`` with ``nproc_per_node`` processes on this machine.

    The whole configuration goes to the processes as ``launch.json`` in the run folder; progress is read from the
    metrics file rank 0 writes, and the processes' output is kept in ``torchrun.log``.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / LAUNCH_CONFIG).write_text(json.dumps({"model": asdict(model_config), "train": asdict(train_config)},
                                                indent=2))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               str(nproc_per_node), "-m", "gptcore.train", "--tokens", str(tokens_folder), "--out", str(out),
               "--config", str(out / LAUNCH_CONFIG), "--tokens-verified"]  # verified once by the flow
    progress = _Progress(train_config.max_steps)
    with gpu_slot(), open(out / TORCHRUN_LOG, "ab") as log, \
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log) as proc:
        stdout = b""
        while proc.poll() is None:
            time.sleep(1.0)
            metrics = read_metrics_log(out) if (out / METRICS_LOG_FILE).is_file() else []
            if metrics:
                progress(metrics[-1])
        stdout = proc.stdout.read() if proc.stdout else b""
    if proc.returncode != 0:
        tail = (out / TORCHRUN_LOG).read_text(errors="replace")[-3000:]
        raise RuntimeError(f"torchrun with {nproc_per_node} processes failed (exit {proc.returncode}); "
                           f"its output is in {out / TORCHRUN_LOG}; last lines:\n{tail}")
    summaries = [json.loads(line) for line in stdout.decode().splitlines() if line.startswith("{")]
    rank0 = next(s for s in summaries if s["rank"] == 0)
    if len({s["params_sha256"] for s in summaries}) != 1:
        raise RuntimeError(f"the {nproc_per_node} processes ended with different weights: {summaries}")
    progress({key: rank0[key] for key in ("step", "loss", "val_loss")}, force=True)
    return {key: rank0[key] for key in ("step", "tokens_seen", "stopped_by", "loss", "val_loss", "params_sha256",
                                        "precision")} | {
        "elapsed_s": round(rank0["elapsed_s"], 1), "processes": nproc_per_node}


def loss_curve(out: Path, metrics: list[dict], baseline: float, name: str) -> str:
    """Write ``LOSS_CURVE`` (training and validation loss by step, the unigram baseline) and return it."""
    series = {"train loss": [(m["step"], m["loss"]) for m in metrics],
              "validation loss": [(m["step"], m["val_loss"]) for m in metrics if "val_loss" in m]}
    if metrics:
        series["unigram baseline"] = [(metrics[0]["step"], baseline), (metrics[-1]["step"], baseline)]
    svg = line_chart_svg(series, title=f"run {name}: loss (nats per token)", x_label="step", y_label="loss")
    (out / LOSS_CURVE).write_text(svg)
    return svg


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
    train: TrainConfig | None = None,
    version: str | None = None,
    data_root: str | None = None,
    nproc_per_node: int = 1,
    init_from_run: str | None = None,
) -> str:
    """Pretrain a GPT on a tokens version (default: the newest); returns the run folder.

    ``preset`` is a ``gptcore.model.PRESETS`` name (``gpt1``, ``gpt2-small``, …, ``tiny``, ``small-cpu``) and
    ``model`` overrides its fields; the vocabulary size always comes from the tokens. ``train`` is a
    ``gptcore.train.TrainConfig`` (a dict of its fields): defaults follow GPT-1 (AdamW, weight decay 0.01 on
    matrices, 2,000 warmup steps, max lr 2.5e-4, cosine decay), but the budget has no default: training stops at
    ``max_steps``, ``max_tokens`` or ``max_minutes``, whichever comes first, and one of ``max_steps``,
    ``max_tokens`` or ``decay_steps`` must be given. ``nproc_per_node`` > 1 trains with that many processes under
    ``torchrun`` (one per GPU, or CPU processes with gloo); ``train.parallel="fsdp"`` shards the model, gradients and
    optimizer state across them instead of replicating it (DDP). ``init_from_run`` names a published run to
    continue pretraining from: its final weights and model configuration (``preset`` and ``model`` are then
    ignored; the tokens must use the same vocabulary), with a fresh optimizer and schedule.
    """
    logger = get_run_logger()
    root = DataRoot.from_env(data_root)
    tokens = resolve_version(root, "tokens", tokens, "pretrain")
    # Every file read below is verified here, once: the shards against the manifest (training reads them all).
    tokens_folder = root.local_version("tokens", tokens)
    vocab_size = read_index(tokens_folder, verify_checksums=False).vocab_size
    if train is None:
        raise ValueError("pretrain needs a training budget: pass train={'max_steps': N} (or max_tokens, or "
                         "decay_steps), e.g. gptforge run pretrain -p max_steps=1000")
    if train.init_checkpoint is not None:
        raise ValueError(f"train.init_checkpoint={train.init_checkpoint!r}: pass init_from_run=<a published run> "
                         "instead, so that the run it continues is verified and recorded in the lineage")
    init_up, init_checkpoint = None, None
    if init_from_run is not None:
        # The checkpoints are checked on load against their .sha256 files, which are verified here.
        init_folder = root.local_version(STAGE, init_from_run, checked_on_read=(CHECKPOINT_FILES,))
        init_up = upstream_version(root, STAGE, init_from_run)
        init_manifest = root.verified_manifest(STAGE, init_from_run)
        init_checkpoint = str(checkpoint_in(init_folder, init_manifest["counts"]["checkpoint"],
                                            named_by=f"the manifest of run {init_from_run!r}"))
        model_config = GPTConfig(**init_manifest["parameters"]["model"])
        if model_config.vocab_size != vocab_size:
            raise ValueError(f"init_from_run {init_from_run!r} has vocab_size {model_config.vocab_size} but tokens "
                             f"{tokens!r} use {vocab_size}: continue on tokens made with the same tokenizer")
    else:
        model_config = config_from_preset(preset, **{**(model or {}), "vocab_size": vocab_size})
    train_config = replace(train, init_checkpoint=init_checkpoint)
    tokens_up = upstream_version(root, "tokens", tokens)
    # JSON round trip: the plan is compared with the stored one when resuming (tuples come back as lists).
    parameters = json.loads(json.dumps({"tokens": tokens, "tokens_checksum": tokens_up["checksum"], "preset": preset,
                                        "model": asdict(model_config), "train": asdict(train_config)}))
    started = start_version(root, STAGE, version, parameters)
    if started.published:  # an earlier run published it and was killed before its cleanup
        return started.published
    logger.info("run %s: preset %s on tokens %s (%s)", started.name, preset, tokens, started.out)
    if nproc_per_node > 1:
        result = train_model_torchrun(model_config, train_config, tokens_folder, started.out, nproc_per_node)
    else:
        result = train_model(model_config, train_config, tokens_folder, started.out)

    baseline = unigram_entropy(tokens_folder)
    metrics = read_metrics_log(started.out)
    losses = [m["loss"] for m in metrics]
    loads = _checkpoint_loads(started.out)
    if metrics:
        svg = loss_curve(started.out, metrics, baseline, started.name)
        create_markdown_artifact(svg_markdown_image(svg, f"loss curve of run {started.name}"),
                                 key=artifact_key(STAGE, started.name, "loss-curve"),
                                 description=f"Loss curve of run {started.name}")
    report = validate_run(losses, result["val_loss"], baseline, loads)
    checkpoint = latest_checkpoint(started.out) if loads else None
    counts = {**result, "unigram_entropy": round(baseline, 4),
              "checkpoint": str(checkpoint.relative_to(started.out)) if checkpoint else None}
    manifest = write_manifest(started.out, STAGE, started.name, parameters,
                              [tokens_up] + ([init_up] if init_up else []), counts)
    rows = [{"step": m["step"], "loss": m["loss"], "val_loss": m.get("val_loss"), "lr": m["lr"]}
            for m in metrics if "val_loss" in m]
    deps = [root.asset_key("tokens", tokens)] + ([root.asset_key(STAGE, init_from_run)] if init_from_run else [])
    url = finish_version(root, started, manifest, report, rows, asset_deps=deps,
                         description=f"{preset} pretraining run")
    logger.info("run %s: step %d, loss %.4f, val loss %s (unigram baseline %.4f) → %s", started.name, result["step"],
                result["loss"] or math.nan, result["val_loss"], baseline, url)
    return url
