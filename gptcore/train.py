"""Pretraining loop: AdamW + warmup/cosine, gradient accumulation and clipping, mixed precision, periodic evaluation,
a metrics log (``gptcore.metrics_log``), atomic checkpoints with exact resume, and DDP (or FSDP, ``parallel="fsdp"``,
for models whose weights and optimizer state do not fit one device) when launched under ``torchrun``. Device,
precision and process-group handling are ``gptcore.runtime``'s.

Exact resume rests on three facts: batch ``i`` of the training stream is a pure function of (seed, i) (see
``TokenDataset.random_batch``), the learning rate is a pure function of the step (``gptcore.schedule``), and the
checkpoint holds everything else that changes (weights, AdamW moments, loss scaler, every process's RNG states).
So a run killed after checkpoint ``k`` and resumed produces, on CPU, the same loss at every later step as a run
that was never stopped. Each checkpoint also holds its step's metrics line, so a run killed after its last
checkpoint (before the line reached ``metrics.jsonl``, or before anyone read the result) resumes to the same
metrics log and the same result, losses included, without running a step.

Run folder::

    metrics.jsonl    the metrics log: one JSON object per optimizer step (see ``_step_metrics``)
    checkpoints/     see ``gptcore.checkpoint``

Command line (one process, or ``torchrun --nproc_per_node N -m gptcore.train …`` for DDP)::

    python -m gptcore.train --tokens tokens/v1 --out runs/r1 --preset tiny --max-steps 1000
    python -m gptcore.train --tokens tokens/v1 --out runs/r1 --config launch.json   # {"model": {…}, "train": {…}}
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
import types
import typing
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from itertools import islice
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from gptcore.checkpoint import (capture_rng_state, latest_checkpoint, load_checkpoint, restore_rng_state,
                                save_checkpoint)
from gptcore.data import TokenDataset
from gptcore.metrics_log import METRICS_LOG_FILE, append_metrics_log, truncate_metrics_log
from gptcore.model import GPT, GPTConfig, config_from_preset
from gptcore.runtime import (PRECISIONS, autocast_context, init_distributed, peak_flops, resolve_device,
                             resolve_precision)
from gptcore.schedule import cosine_lr_at

CHECKPOINT_FORMAT = 2  # 2: optimizer state keyed by parameter name
PARALLEL = ("ddp", "fsdp")


@dataclass
class TrainConfig:
    """How to train. Defaults follow GPT-1 section 4.1 where the paper gives a number."""

    batch_size: int = 8  # sequences per micro-batch per process (GPT-1: 64 per optimizer step in total)
    seq_len: int | None = None  # tokens per sequence; None = the model's block_size (GPT-1: 512)
    grad_accum: int = 1  # micro-batches per optimizer step
    max_lr: float = 2.5e-4  # GPT-1
    min_lr: float = 0.0  # GPT-1 anneals to 0
    warmup_steps: int = 2000  # GPT-1: linear increase over the first 2,000 updates
    decay_steps: int | None = None  # end of the cosine; None = max_steps (else max_tokens in steps)
    weight_decay: float = 0.01  # GPT-1's modified L2, on matrices only (GPT.optimizer_groups)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam defaults; GPT-1 gives none
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    max_steps: int | None = None  # stop after this many optimizer steps …
    max_tokens: int | None = None  # … or this many training tokens (all processes together) …
    max_minutes: float | None = None  # … or this much training time (summed over resumes), whichever comes first
    eval_every: int = 500  # steps between validation passes (one also runs at the last step)
    eval_batches: int = 20  # validation batches per pass, read in order from the start of the split
    checkpoint_every: int = 1000  # steps between checkpoints (one is also written at the last step)
    # "auto" (bf16 where the device computes it natively: ~1.5x the fp32 speed on a CPU with AVX512_BF16 or AMX,
    # same loss curve), "fp32", "bf16" (autocast, CPU or GPU), "fp16" (autocast + GradScaler, GPU only)
    precision: str = "auto"
    compile: bool = False  # torch.compile the model
    seed: int = 1337
    device: str = "auto"  # "auto" = CUDA when available, else CPU; under torchrun the local rank's GPU
    parallel: str = "ddp"  # under torchrun: "ddp" replicates the model; "fsdp" shards weights, grads, AdamW state
    init_checkpoint: str | None = None  # weights that start a new run (continued pretraining); fresh optimizer

    def __post_init__(self) -> None:
        for name in ("batch_size", "grad_accum", "eval_every", "eval_batches", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"TrainConfig.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.parallel not in PARALLEL:
            raise ValueError(f"TrainConfig.parallel must be one of {PARALLEL}, got {self.parallel!r}")
        if self.max_steps is None and self.max_tokens is None and self.decay_steps is None:
            raise ValueError("set max_steps, max_tokens or decay_steps: the cosine schedule needs to know where "
                             "training ends (max_minutes alone cannot tell)")
        self.betas = tuple(self.betas)


@dataclass(frozen=True)
class TrainResult:
    """Where a call to ``train`` left the run."""

    step: int  # optimizer steps completed (over all calls)
    tokens_seen: int
    stopped_by: str  # "max_steps", "max_tokens" or "max_minutes"
    loss: float | None  # training loss of the run's last step (None if the run has none)
    val_loss: float | None  # validation loss at the run's last step (measured now if the run has no steps)
    checkpoint: Path | None  # the newest checkpoint of the run
    elapsed_s: float  # training time summed over resumes
    params_sha256: str  # digest of the final weights: equal digests = equal models (e.g. across DDP ranks)
    precision: str  # the precision the run trained in ("auto" resolved: "fp32", "bf16" or "fp16")


def train(model_config: GPTConfig, train_config: TrainConfig, tokens_folder: str | Path, out_dir: str | Path,
          resume: bool = True, log: Callable[[dict[str, Any]], None] | None = None, *,
          verify_tokens: bool = True) -> TrainResult:
    """Train a ``GPT(model_config)`` on the ``train`` split of ``tokens_folder``, writing the run to ``out_dir``.

    With ``resume`` (the default) the run continues from ``out_dir``'s latest checkpoint when there is one.
    ``log`` receives every metrics dict (on the first process only), after the step's checkpoint is written.
    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process calls this; the first one writes the run folder.
    ``verify_tokens=False`` skips hashing the shards, for a caller that has just verified them.
    """
    started_group = init_distributed(train_config.device)
    try:
        result = _Trainer(model_config, train_config, Path(tokens_folder), Path(out_dir), resume, log,
                          verify_tokens).run()
        if started_group:
            dist.barrier()  # no process tears the group down while another still has collectives in flight
        return result
    finally:
        if started_group:
            dist.destroy_process_group()


class _Trainer:
    """One training run in one process: state and the steps that change it."""

    def __init__(self, model_config: GPTConfig, config: TrainConfig, tokens_folder: Path, out_dir: Path,
                 resume: bool, log: Callable[[dict[str, Any]], None] | None, verify_tokens: bool = True) -> None:
        self.config, self.out_dir, self.log = config, out_dir, log
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.is_main = self.rank == 0
        self.device = resolve_device(config.device)
        self.seq_len = config.seq_len or model_config.block_size
        if self.seq_len > model_config.block_size:
            raise ValueError(f"seq_len {self.seq_len} exceeds the model's block_size {model_config.block_size}: "
                             "lower seq_len or pick a preset with a longer context")
        self.train_data = TokenDataset(tokens_folder, "train", verify_checksums=verify_tokens)
        self.val_data = TokenDataset(tokens_folder, "val", verify_checksums=verify_tokens)
        if self.train_data.index.vocab_size > model_config.vocab_size:
            raise ValueError(f"{tokens_folder} uses a vocabulary of {self.train_data.index.vocab_size:,} ids but the "
                             f"model has vocab_size {model_config.vocab_size:,}: set vocab_size to at least that")
        self.tokens_per_step = config.batch_size * self.seq_len * config.grad_accum * self.world
        self.decay_steps = (config.decay_steps or config.max_steps
                            or math.ceil(config.max_tokens / self.tokens_per_step))
        self.precision = resolve_precision(config.precision, self.device)
        self.autocast = autocast_context(self.precision, self.device)

        torch.manual_seed(config.seed)  # same initial weights in every process
        self.model_config = model_config
        self.model = GPT(model_config).to(self.device)
        self.checkpoint = latest_checkpoint(out_dir) if resume else None
        if self.checkpoint is None and config.init_checkpoint:
            self._initialize_from(Path(config.init_checkpoint))
        self.sharded = self.world > 1 and config.parallel == "fsdp"
        if self.sharded:
            _fully_shard(self.model)  # in place: parameters become shards, so the optimizer is built after this
        # The fused kernel on CPU too: one pass over all parameters, ~4x faster than the default per-tensor loop.
        self.optimizer = torch.optim.AdamW(self.model.optimizer_groups(config.weight_decay), lr=config.max_lr,
                                           betas=config.betas, fused=True)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.step, self.tokens_seen, self.elapsed_before = 0, 0, 0.0
        self.resumed_metrics: dict[str, Any] | None = None  # the metrics line of the checkpoint resumed from
        if self.checkpoint is not None:
            self._restore(load_checkpoint(self.checkpoint))
        else:
            torch.manual_seed(config.seed + self.rank)  # different dropout masks in every process
        if self.is_main:
            truncate_metrics_log(out_dir / METRICS_LOG_FILE, self.step, self.resumed_metrics)

        runner: torch.nn.Module = torch.compile(self.model) if config.compile else self.model
        if self.world > 1 and not self.sharded:
            runner = DistributedDataParallel(runner, device_ids=[self.device.index] if self.device.type == "cuda"
                                             else None)
        self.runner = runner
        self.flops_per_token = self.model.estimate_flops_per_token(self.seq_len)
        self.peak_flops = peak_flops(self.device)

    # -- the loop -------------------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        start = time.perf_counter()
        elapsed = self.elapsed_before
        stopped_by = self._stop_reason(elapsed)
        # A run resumed at its end runs no step: its result is the checkpoint's (an older checkpoint without a
        # metrics line has its validation loss measured again, on the same weights).
        last = self.resumed_metrics or {}
        loss, val_loss = last.get("loss"), last.get("val_loss")
        if stopped_by is not None and val_loss is None:
            val_loss = self.evaluate()
        self.model.train()
        while stopped_by is None:
            step_start = time.perf_counter()
            lr, loss, grad_norm = self._optimizer_step()
            elapsed = self._agreed(self.elapsed_before + time.perf_counter() - start)
            stopped_by = self._stop_reason(elapsed)
            metrics = self._step_metrics(lr, loss, grad_norm, time.perf_counter() - step_start, elapsed)
            if self.step % self.config.eval_every == 0 or stopped_by:
                val_loss = metrics["val_loss"] = self.evaluate()
            if self.step % self.config.checkpoint_every == 0 or stopped_by:
                self._save(elapsed, metrics)
            if self.is_main:
                append_metrics_log(self.out_dir / METRICS_LOG_FILE, metrics)
                if self.log is not None:
                    self.log(metrics)
        return TrainResult(step=self.step, tokens_seen=self.tokens_seen, stopped_by=stopped_by, loss=loss,
                           val_loss=val_loss, checkpoint=self.checkpoint, elapsed_s=elapsed,
                           params_sha256=params_sha256(self.model), precision=self.precision)

    def _optimizer_step(self) -> tuple[float, float, float]:
        """One optimizer step over ``grad_accum`` micro-batches; returns (lr, mean loss, pre-clip grad norm)."""
        config = self.config
        lr = cosine_lr_at(self.step, max_lr=config.max_lr, min_lr=config.min_lr, warmup_steps=config.warmup_steps,
                   decay_steps=self.decay_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(config.grad_accum):
            # Batch number = position in the stream, distinct for every (step, micro-batch, process).
            batch_number = (self.step * config.grad_accum + micro) * self.world + self.rank
            x, y = self._to_device(self.train_data.random_batch(batch_number, config.batch_size, self.seq_len,
                                                                config.seed))
            last_micro = micro == config.grad_accum - 1
            # DDP / FSDP reduce gradients in backward; skip that on all but the last micro-batch of the step.
            with self._gradient_sync(last_micro):
                with self.autocast:
                    _, loss = self.runner(x, y, with_logits=False)
                self.scaler.scale(loss / config.grad_accum).backward()
            loss_sum += loss.detach().float()
        self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                   config.grad_clip if config.grad_clip > 0 else math.inf)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_seen += self.tokens_per_step
        mean_loss = self._all_reduce_mean(loss_sum / config.grad_accum)
        return lr, mean_loss, float(grad_norm)

    def _gradient_sync(self, enabled: bool) -> ContextManager:
        if self.world == 1 or enabled:
            return nullcontext()
        if self.sharded:
            return _fsdp_no_sync(self.model)
        return self.runner.no_sync()

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean validation loss per token over the first ``eval_batches`` batches, shared out among processes."""
        self.model.eval()
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss · tokens, tokens
        batches = list(islice(self.val_data.sequential_batches(self.config.batch_size, self.seq_len),
                              self.config.eval_batches))
        # Every FSDP forward gathers weights from all processes, so all run the same number of forwards: a
        # process short of a batch repeats one and gives it weight 0.
        rounds = math.ceil(len(batches) / self.world) if self.sharded else len(batches)
        for number in range(self.rank, rounds * self.world, self.world):
            if number >= len(batches) and not self.sharded:
                break
            x, y = self._to_device(batches[min(number, len(batches) - 1)])
            with self.autocast:
                _, loss = self.model(x, y, with_logits=False)
            if number < len(batches):
                totals[0] += loss.double() * y.numel()
                totals[1] += y.numel()
        if self.world > 1:
            dist.all_reduce(totals)
        self.model.train()
        return float(totals[0] / totals[1])

    def _stop_reason(self, elapsed_s: float) -> str | None:
        config = self.config
        if config.max_steps is not None and self.step >= config.max_steps:
            return "max_steps"
        if config.max_tokens is not None and self.tokens_seen >= config.max_tokens:
            return "max_tokens"
        if config.max_minutes is not None and elapsed_s >= config.max_minutes * 60:
            return "max_minutes"
        return None

    def _step_metrics(self, lr: float, loss: float, grad_norm: float, step_s: float, elapsed: float) -> dict:
        tokens_per_s = self.tokens_per_step / step_s
        metrics = {"step": self.step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens_seen": self.tokens_seen,
                   "tokens_per_s": tokens_per_s, "elapsed_s": elapsed}
        if self.peak_flops:
            metrics["mfu"] = self.flops_per_token * tokens_per_s / (self.peak_flops * self.world)
        return metrics

    # -- checkpoints ------------------------------------------------------------------------------------------

    def _save(self, elapsed: float, metrics: dict[str, Any]) -> None:
        rng_states = [capture_rng_state()]
        if self.world > 1:  # every process's dropout stream, so each resumes its own
            rng_states = [None] * self.world
            dist.all_gather_object(rng_states, capture_rng_state())
        model_state, optimizer_state = self._full_state()
        if self.is_main:
            state = {
                "format": CHECKPOINT_FORMAT,
                "model": model_state,
                "optimizer": optimizer_state,
                "scaler": self.scaler.state_dict(),
                "step": self.step,
                "tokens_seen": self.tokens_seen,
                "elapsed_s": elapsed,
                "metrics": metrics,  # this step's metrics line, restored if a kill kept it from the metrics log
                "lr_schedule": {"max_lr": self.config.max_lr, "min_lr": self.config.min_lr,
                                "warmup_steps": self.config.warmup_steps, "decay_steps": self.decay_steps},
                "rng": rng_states,
                "model_config": asdict(self.model_config),
                "train_config": asdict(self.config),
            }
            self.checkpoint = save_checkpoint(self.out_dir, self.step, state)
        if self.world > 1:
            dist.barrier()  # no process runs ahead of a checkpoint that is not on disk yet

    def _initialize_from(self, path: Path) -> None:
        state = load_checkpoint(path)
        if state["model_config"] != asdict(self.model_config):
            raise ValueError(f"init_checkpoint {path} holds a different model ({state['model_config']}) than requested "
                             f"({asdict(self.model_config)}): continue training with the same model configuration")
        self.model.load_state_dict(state["model"])

    def _restore(self, state: dict[str, Any]) -> None:
        if state["model_config"] != asdict(self.model_config):
            raise ValueError(f"{self.checkpoint} holds a different model ({state['model_config']}) than requested "
                             f"({asdict(self.model_config)}): use a new out_dir, or resume=False to start over")
        if self.sharded:
            _load_sharded_state(self.model, self.optimizer, state)
        else:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(_optimizer_state_by_index(self.model, self.optimizer, state))
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.tokens_seen, self.elapsed_before = state["step"], state["tokens_seen"], state["elapsed_s"]
        self.resumed_metrics = state.get("metrics")  # absent in checkpoints written before it was stored
        if len(state["rng"]) == self.world:
            restore_rng_state(state["rng"][self.rank])
        else:  # another process count: no saved stream for this process; a fresh one, still reproducible
            torch.manual_seed(self.config.seed + self.world * self.step + self.rank)

    def _full_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Unsharded model and optimizer state, optimizer state keyed by parameter name (the same layout under
        DDP and FSDP, so a run may resume with either). Under FSDP every process takes part in gathering it."""
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

            return get_state_dict(self.model, self.optimizer,
                                  options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return self.model.state_dict(), _optimizer_state_by_name(self.model, self.optimizer)

    # -- helpers ----------------------------------------------------------------------------------------------

    def _to_device(self, batch: tuple[Any, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(torch.from_numpy(a).to(self.device, non_blocking=True) for a in batch)  # type: ignore[return-value]

    def _all_reduce_mean(self, value: torch.Tensor) -> float:
        if self.world > 1:
            value = value.clone()
            dist.all_reduce(value)  # gloo has no AVG: sum, then divide
            value /= self.world
        return float(value)

    def _agreed(self, elapsed: float) -> float:
        """The first process's clock, so every process stops on a time limit at the same step."""
        if self.world == 1:
            return elapsed
        clock = torch.tensor([elapsed], dtype=torch.float64, device=self.device)
        dist.broadcast(clock, src=0)
        return float(clock)


def params_sha256(model: torch.nn.Module) -> str:
    """sha256 over the names and raw bytes of the model's weights, in state-dict order (under FSDP a collective:
    every process gathers the full weights)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if hasattr(tensor, "full_tensor"):  # an FSDP shard
            tensor = tensor.full_tensor()
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Optimizer state layout and FSDP


def _optimizer_state_by_name(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()`` with parameter names instead of positions, the layout FSDP's full state uses."""
    names = {id(p): n for n, p in model.named_parameters()}
    ids = [id(p) for group in optimizer.param_groups for p in group["params"]]
    raw = optimizer.state_dict()
    by_index = dict(enumerate(ids))
    return {"state": {names[by_index[i]]: v for i, v in raw["state"].items()},
            "param_groups": [{**g, "params": [names[by_index[i]] for i in g["params"]]} for g in raw["param_groups"]]}


def _optimizer_state_by_index(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                              state: dict[str, Any]) -> dict[str, Any]:
    """Back from names to the positions ``optimizer.load_state_dict`` expects."""
    saved = state["optimizer"]
    if state.get("format", 1) < 2:  # already by position
        return saved
    names = {id(p): n for n, p in model.named_parameters()}
    index = {names[id(p)]: i for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"])}
    return {"state": {index[name]: v for name, v in saved["state"].items()},
            "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in saved["param_groups"]]}


def _fully_shard(model: GPT) -> None:
    """FSDP2: each block is one unit (its weights gathered just before use), then the embeddings and head."""
    from torch.distributed.fsdp import fully_shard

    for block in model.transformer.h:
        fully_shard(block)
    fully_shard(model)


def _fsdp_no_sync(model: torch.nn.Module) -> ContextManager:
    from contextlib import contextmanager

    @contextmanager
    def no_sync():
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    return no_sync()


def _load_sharded_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Every process read the full checkpoint; each keeps its own shards of it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"],
                   options=StateDictOptions(full_state_dict=True))


# ---------------------------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gptcore.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", required=True, help="tokens folder (index.json + shards)")
    parser.add_argument("--out", required=True, help="run folder: metrics.jsonl and checkpoints/")
    parser.add_argument("--preset", help="model preset, e.g. tiny, gpt1, gpt2-small")
    parser.add_argument("--config", type=Path, help='JSON file {"model": GPTConfig fields, "train": TrainConfig '
                        'fields}: the whole configuration, as the pretrain flow writes it; flags override "train"')
    parser.add_argument("--dropout", type=float, help="override the preset's dropout")
    parser.add_argument("--vocab-size", type=int, help="default: the tokens folder's vocabulary size")
    parser.add_argument("--no-resume", action="store_true", help="start over even if --out has a checkpoint")
    parser.add_argument("--tokens-verified", action="store_true",
                        help="skip hashing the shards: the caller (the pretrain flow) has verified them")
    _add_config_flags(parser, TrainConfig)
    args = parser.parse_args(argv)
    if (args.preset is None) == (args.config is None):
        parser.error("give either --preset or --config")

    flags = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}
    if args.config is not None:
        config = json.loads(args.config.read_text())
        model_config = GPTConfig(**config["model"])
        train_config = TrainConfig(**{**config.get("train", {}), **flags})
    else:
        overrides: dict[str, Any] = {"vocab_size": args.vocab_size
                                     or TokenDataset(args.tokens, "train", verify_checksums=False).index.vocab_size}
        if args.dropout is not None:
            overrides["dropout"] = args.dropout
        model_config = config_from_preset(args.preset, **overrides)
        train_config = TrainConfig(**flags)
    result = train(model_config, train_config, args.tokens, args.out, resume=not args.no_resume, log=_print_metrics,
                   verify_tokens=not args.tokens_verified)
    summary = {"rank": int(os.environ.get("RANK", "0")), **asdict(result), "checkpoint": str(result.checkpoint)}
    _write_line(json.dumps(summary) + "\n")
    return 0


def _write_line(line: str) -> None:
    """One write call per line: ranks share stdout, and a single write below PIPE_BUF is never interleaved."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # stdout is not a file (captured): nothing to interleave with
        print(line, end="", flush=True)
        return
    sys.stdout.flush()
    os.write(fd, line.encode())


def _print_metrics(metrics: dict[str, Any]) -> None:
    line = " ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                    for key, value in metrics.items())
    print(line, file=sys.stderr, flush=True)


def _add_config_flags(parser: argparse.ArgumentParser, config_class: type) -> None:
    """One ``--field-name`` flag per dataclass field, typed from its annotation; unset flags keep the default."""
    hints = typing.get_type_hints(config_class)
    for field in fields(config_class):
        flag = "--" + field.name.replace("_", "-")
        kind = hints[field.name]
        if isinstance(kind, types.UnionType):  # "int | None" → int
            kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif typing.get_origin(kind) is tuple:
            parser.add_argument(flag, type=float, nargs=len(typing.get_args(kind)), default=None)
        else:
            parser.add_argument(flag, type=kind, default=None, help=f"default: {field.default}")


if __name__ == "__main__":
    raise SystemExit(main())
