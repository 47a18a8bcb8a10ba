"""Fine-tuning loop (GPT-1 section 3.2, 4.1) and the scoring of a fine-tuned run.

Defaults are the paper's: AdamW at 6.25e-5, batch 32, 3 epochs, linear warmup over 0.2% of training then linear
decay to 0 (``gptcore.schedule.linear_lr_at``), classifier dropout 0.1, λ = 0.5 for the auxiliary LM loss; gradients
clipped at norm 1 as in pretraining.

Run folder::

    tokenizer.json   the pretrained run's tokenizer (the run is usable on its own: ``load_task_run``)
    task.json        task spec, base model config, special-token ids, max_len
    metrics.jsonl    the metrics log: one JSON object per optimizer step (``gptcore.metrics_log``)
    checkpoints/     the whole fine-tuned TaskModel (see ``gptcore.checkpoint``)

The checkpoint holds the whole model, not only the head and the three new embedding rows: GPT-1 fine-tunes every
weight, so the head alone cannot reproduce the predictions. It also holds the optimizer and RNG states; batch ``i``
of epoch ``e`` is a pure function of (seed, e, i), so a killed run resumed from its latest checkpoint finishes with
the same weights as one never stopped (on CPU). Each batch holds examples of similar length and is padded only to its
longest one (``length_bucketed_batches``); the step's numbers are read off the device every few steps, not each
step. Each checkpoint also holds its step's metrics line, so a run killed after its last checkpoint (before the line
reached ``metrics.jsonl``, or before anyone read the result) reruns to the same metrics log and the same result, loss
included, without running a step.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from gptcore import metrics as scores
from gptcore.checkpoint import capture_rng_state, latest_checkpoint, load_checkpoint, restore_rng_state, save_checkpoint
from gptcore.encoding import TOKENIZER_FILE, Encoder, load_encoder
from gptcore.metrics_log import METRICS_LOG_FILE, append_metrics_log, read_metrics_log, truncate_metrics_log
from gptcore.model import GPTConfig
from gptcore.runtime import autocast_context, resolve_device
from gptcore.schedule import linear_lr_at
from gptcore.taskdata import EXAMPLE_TYPES, Example
from gptcore.tasks import TaskModel, TaskSpec, collate, label_tensor, objective

TASK_FILE = "task.json"
CHECKPOINT_FORMAT = 1
INITS = ("pretrained", "random")
BUCKET_BATCHES = 50  # batches per length-sorted group (see length_bucketed_batches)
METRICS_FLUSH_STEPS = 16  # steps whose metrics are read from the device together, when no checkpoint comes sooner


@dataclass
class FinetuneConfig:
    """How to fine-tune. Defaults are GPT-1 section 4.1 ("Fine-tuning details")."""

    lr: float = 6.25e-5
    batch_size: int = 32
    epochs: int = 3
    warmup_fraction: float = 0.002  # linear warmup over 0.2% of training, then linear decay to 0
    aux_lm_weight: float = 0.5  # λ in L3 = L2 + λ·L1; 0 switches the auxiliary LM loss off
    clf_dropout: float = 0.1
    weight_decay: float = 0.01  # the pretraining value, on matrices only
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    max_steps: int | None = None  # a budget: stop after this many steps even if epochs remain
    max_len: int | None = None  # tokens per sequence, specials included; None = the model's context
    init: str = "pretrained"  # or "random": the same architecture from scratch, for comparison
    precision: str = "fp32"  # "fp32" or "bf16" (autocast), "fp16" on CUDA
    checkpoint_every: int | None = None  # steps between checkpoints; None = at the end of every epoch
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        for name in ("batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"FinetuneConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.aux_lm_weight < 0:
            raise ValueError(f"aux_lm_weight (λ) must be >= 0, got {self.aux_lm_weight}")


@dataclass(frozen=True)
class FinetuneResult:
    step: int
    total_steps: int
    loss: float | None  # L3 of the run's last step (None only if a checkpoint without its metrics line says nothing)
    elapsed_s: float  # training time summed over resumes
    checkpoint: Path


def pretrained_checkpoint(pretrained: str | Path) -> Path:
    """A checkpoint file, or a pretrain run folder's latest checkpoint."""
    path = Path(pretrained)
    if path.is_dir():
        checkpoint = latest_checkpoint(path)
        if checkpoint is None:
            raise FileNotFoundError(f"{path} has no checkpoints/latest: pass a pretrain run folder or a .pt file")
        return checkpoint
    if not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint {path} does not exist: pass a pretrain run folder or .pt file")
    return path


def finetune(pretrained: str | Path, tokenizer: str | Path, spec: TaskSpec, train_examples: Sequence[Example],
             config: FinetuneConfig, out_dir: str | Path, resume: bool = True,
             log: Callable[[dict[str, Any]], None] | None = None) -> FinetuneResult:
    """Fine-tune the pretrained GPT (``init="random"``: the same architecture untrained) on ``train_examples``.

    ``pretrained`` is a pretrain checkpoint or run folder; ``tokenizer`` its ``tokenizer.json`` (copied into the
    run). With ``resume``, a run folder holding a checkpoint continues from it. ``log`` receives each step's metrics.
    """
    if not train_examples:
        raise ValueError("no training examples: check the train file and its reject counts")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = load_checkpoint(pretrained_checkpoint(pretrained))
    base_config = GPTConfig(**source["model_config"])
    device = resolve_device(config.device)
    autocast = autocast_context(config.precision, device)

    torch.manual_seed(config.seed)  # new embedding rows, head, and (init="random") every weight
    model = TaskModel(base_config, spec, clf_dropout=config.clf_dropout, max_len=config.max_len)
    if config.init == "pretrained":
        model.load_pretrained(source["model"])
    del source
    model.to(device)
    _write_run_files(out, Path(tokenizer), model)

    encoder = load_encoder(out / TOKENIZER_FILE)
    encoded = [model.encode(example, encoder) for example in train_examples]  # once: every epoch reuses them
    lengths = np.array([padded_size(sequences) for sequences in encoded])
    targets = label_tensor(train_examples, spec).to(device)
    steps_per_epoch = math.ceil(len(encoded) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    warmup_steps = max(1, round(config.warmup_fraction * total_steps))

    optimizer = torch.optim.AdamW(model.gpt.optimizer_groups(config.weight_decay) + [
        {"params": [model.head.weight], "weight_decay": config.weight_decay},
        {"params": [model.head.bias], "weight_decay": 0.0}], lr=config.lr, fused=device.type in ("cpu", "cuda"))
    step, elapsed_before = 0, 0.0
    resumed_metrics: dict[str, Any] | None = None  # the metrics line of the checkpoint resumed from
    checkpoint = latest_checkpoint(out) if resume else None
    if checkpoint is not None:
        state = load_checkpoint(checkpoint)
        if state["finetune_config"] != asdict(config) or state["task"] != model.config_dict():
            raise ValueError(f"{checkpoint} was written by another fine-tuning setup: use a new out_dir, or "
                             "resume=False to start over")
        _load_weights(model, state)
        optimizer.load_state_dict(state["optimizer"])
        restore_rng_state(state["rng"])
        step, elapsed_before = state["step"], state["elapsed_s"]
        resumed_metrics = state.get("metrics")  # absent in checkpoints written before it was stored
        del state
    truncate_metrics_log(out / METRICS_LOG_FILE, step, resumed_metrics)
    # A run resumed at its end runs no step: its result is the checkpoint's. A checkpoint without a metrics
    # line falls back to the step's line in the metrics log, when the kill came after it was written.
    if resumed_metrics is None and step > 0:
        last = read_metrics_log(out)[-1:]
        resumed_metrics = last[0] if last and last[0]["step"] == step else None
    loss_value = (resumed_metrics or {}).get("loss")

    model.train()
    start = time.perf_counter()
    batches, batches_epoch = [], -1
    pending: list[dict[str, Any]] = []  # metrics lines whose numbers are still tensors (read in one go at a flush)
    while step < total_steps:
        epoch, position = divmod(step, steps_per_epoch)
        if epoch != batches_epoch:
            batches, batches_epoch = length_bucketed_batches(lengths, config.batch_size, config.seed, epoch), epoch
        chosen = batches[position]
        batch = collate([encoded[i] for i in chosen]).to(device)
        lr = linear_lr_at(step, max_lr=config.lr, warmup_steps=warmup_steps, total_steps=total_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast:
            output = model(batch, with_lm_loss=config.aux_lm_weight > 0)
            task_loss = model.task_loss(output.logits, targets[torch.from_numpy(chosen).to(device)])
            loss = objective(task_loss, output.lm_loss, config.aux_lm_weight)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                   config.grad_clip if config.grad_clip > 0 else math.inf)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        pending.append({"step": step, "epoch": epoch, "loss": loss.detach(), "task_loss": task_loss.detach(),
                        "lm_loss": None if output.lm_loss is None else output.lm_loss.detach(), "lr": lr,
                        "grad_norm": grad_norm.detach(), "elapsed_s": elapsed_before + time.perf_counter() - start})
        end_of_epoch = step % steps_per_epoch == 0
        saving = step == total_steps or (config.checkpoint_every and step % config.checkpoint_every == 0) or \
            (config.checkpoint_every is None and end_of_epoch)
        if not (saving or log is not None or len(pending) == METRICS_FLUSH_STEPS):
            continue
        lines = _read_out(pending)
        pending = []
        loss_value = lines[-1]["loss"]
        for metrics in lines[:-1]:
            append_metrics_log(out / METRICS_LOG_FILE, metrics)
        if saving:  # between the earlier lines and its step's own line, the order resuming expects
            checkpoint = _save(out, model, optimizer, config, step, lines[-1]["elapsed_s"], lines[-1])
        append_metrics_log(out / METRICS_LOG_FILE, lines[-1])
        if log is not None:
            log(lines[-1])
    elapsed = elapsed_before + time.perf_counter() - start
    return FinetuneResult(step=step, total_steps=total_steps, loss=loss_value, elapsed_s=elapsed,
                          checkpoint=latest_checkpoint(out))


def length_bucketed_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Epoch ``epoch``'s batches (example indices), a pure function of (seed, epoch), so a resumed run replays them.

    The examples are shuffled, cut into groups of ``BUCKET_BATCHES`` batches, sorted by length within each group
    and cut into batches, whose order is shuffled again: a batch holds examples of similar length, so padding each
    batch to its longest example wastes little, and batch contents still change from epoch to epoch. Only the
    last batch can be short: ``ceil(n / batch_size)`` batches, each example in exactly one.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    group = BUCKET_BATCHES * batch_size
    for first in range(0, len(order), group):
        part = order[first:first + group]
        order[first:first + group] = part[np.argsort(lengths[part], kind="stable")]
    batches = [order[first:first + batch_size] for first in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def padded_size(sequences: list[list[int]]) -> int:
    """Tokens an encoded example takes in a batch of its own: sequences (choices) x the longest of them."""
    return len(sequences) * max(map(len, sequences))


def _read_out(pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The metrics lines with their tensors turned into floats, all read in one device-to-host copy."""
    keys = [key for key, value in pending[0].items() if isinstance(value, torch.Tensor)]
    values = torch.stack([line[key].float() for line in pending for key in keys]).tolist()
    lines = []
    for i, line in enumerate(pending):
        read = dict(zip(keys, values[i * len(keys):(i + 1) * len(keys)]))
        lines.append({**line, **read})
    return lines


def _write_run_files(out: Path, tokenizer: Path, model: TaskModel) -> None:
    if not tokenizer.is_file():
        raise FileNotFoundError(f"tokenizer {tokenizer} does not exist: pass the pretrained run's tokenizer.json")
    if not (out / TOKENIZER_FILE).is_file():
        shutil.copyfile(tokenizer, out / TOKENIZER_FILE)
    (out / TASK_FILE).write_text(json.dumps(model.config_dict(), indent=2, sort_keys=True) + "\n")


def _save(out: Path, model: TaskModel, optimizer: torch.optim.Optimizer, config: FinetuneConfig, step: int,
          elapsed: float, metrics: dict[str, Any]) -> Path:
    # "model" / "model_config" are a plain GPT checkpoint (with the 3 extra vocabulary rows), so tools that load
    # pretrain checkpoints (perplexity, generation) read a fine-tuned one as a language model too.
    return save_checkpoint(out, step, {
        "format": CHECKPOINT_FORMAT, "model": model.gpt.state_dict(), "model_config": asdict(model.gpt.config),
        "head": model.head.state_dict(), "task": model.config_dict(), "optimizer": optimizer.state_dict(),
        "step": step, "elapsed_s": elapsed, "rng": capture_rng_state(), "finetune_config": asdict(config),
        "metrics": metrics})  # this step's metrics line, restored if a kill kept it from the metrics log


def _load_weights(model: TaskModel, state: dict[str, Any]) -> None:
    model.gpt.load_state_dict(state["model"])
    model.head.load_state_dict(state["head"])


# -- using a fine-tuned run ------------------------------------------------------------------------------------


def load_task_run(run_dir: str | Path, device: str = "cpu") -> tuple[TaskModel, TaskSpec, Encoder]:
    """The fine-tuned model (in eval mode), its task spec and its tokenizer, from a finetune run folder."""
    run = Path(run_dir)
    checkpoint = latest_checkpoint(run)
    if checkpoint is None or not (run / TASK_FILE).is_file():
        raise FileNotFoundError(f"{run} is not a finetune run folder (needs {TASK_FILE} and checkpoints/latest)")
    state = load_checkpoint(checkpoint)
    model = TaskModel.from_config_dict(state["task"])
    _load_weights(model, state)
    return model.to(resolve_device(device)).eval(), model.spec, load_encoder(run / TOKENIZER_FILE)


@torch.no_grad()
def predict(model: TaskModel, encoder: Encoder, examples: Sequence[Example], batch_size: int = 32
            ) -> list[str | float | int]:
    """Predictions for ``examples``, in their order: a class name, a score (similarity regression) or a choice
    index. Batches are cut from the examples sorted by length, so little of each is padding."""
    model.eval()
    device = next(model.parameters()).device
    spec = model.spec
    encoded = [model.encode(example, encoder) for example in examples]
    by_length = sorted(range(len(encoded)), key=lambda i: padded_size(encoded[i]))
    predictions: list[str | float | int] = [0] * len(encoded)
    for start in range(0, len(encoded), batch_size):
        chosen = by_length[start:start + batch_size]
        logits = model(collate([encoded[i] for i in chosen]).to(device)).logits.float().cpu()
        if spec.regression:
            answers = logits.tolist()
        elif spec.task == "multiple_choice":
            answers = logits.argmax(dim=-1).tolist()
        else:
            answers = [spec.labels[i] for i in logits.argmax(dim=-1).tolist()]
        for i, answer in zip(chosen, answers):
            predictions[i] = answer
    return predictions


def metric_names(spec: TaskSpec) -> list[str]:
    """The metrics ``score_predictions`` reports for this spec (what the output contract requires)."""
    if spec.regression:
        return ["n", "pearson", "spearman", "mse"]
    if spec.task == "multiple_choice":
        return ["n", "accuracy"]
    return ["n", "accuracy", "macro_f1", "matthews", *(["binary_f1"] if len(spec.labels) == 2 else [])]


def score_predictions(spec: TaskSpec, examples: Sequence[Example], predictions: Sequence) -> dict[str, float]:
    """The metrics GPT-1 reports for the task type, plus ``n``.

    Classes: accuracy, macro-F1, Matthews correlation, and with two labels the F1 of the *last* declared label
    (declare the positive class last, e.g. ``["0", "1"]``). Scores: Pearson, Spearman, mean squared error.
    Multiple choice: accuracy.
    """
    if not examples:
        raise ValueError("no examples to score: check the test file and its reject counts")
    truth = [example.label for example in examples]
    result: dict[str, float] = {"n": len(examples)}
    if spec.regression:
        truth_f, pred_f = np.asarray(truth, dtype=np.float64), np.asarray(predictions, dtype=np.float64)
        result.update(pearson=scores.pearson(truth_f, pred_f), spearman=scores.spearman(truth_f, pred_f),
                      mse=float(np.mean((truth_f - pred_f) ** 2)))
    elif spec.task == "multiple_choice":
        result["accuracy"] = scores.accuracy(truth, predictions)
    else:
        truth = [str(label) for label in truth]
        result.update(accuracy=scores.accuracy(truth, predictions),
                      macro_f1=scores.macro_f1(truth, predictions, labels=spec.labels),
                      matthews=scores.matthews_corrcoef(truth, predictions))
        if len(spec.labels) == 2:
            result["binary_f1"] = scores.binary_f1(truth, predictions, positive=spec.labels[-1])
    return result


def evaluate_task(run_dir: str | Path, examples: Sequence[Example], batch_size: int = 32,
                  device: str = "cpu") -> dict[str, float]:
    """Score a finetune run on ``examples`` (e.g. a test file read with ``gptcore.taskdata.load_task_file``)."""
    model, spec, encoder = load_task_run(run_dir, device)
    wrong_type = {type(example).__name__ for example in examples} - {EXAMPLE_TYPES[spec.task].__name__}
    if wrong_type:
        raise ValueError(f"{run_dir} is a {spec.task} run but the examples are {sorted(wrong_type)}: read the test "
                         f"file with task={spec.task!r}")
    return score_predictions(spec, examples, predict(model, encoder, examples, batch_size))


def training_losses(run_dir: str | Path) -> list[float]:
    """The L3 loss of every step of a finetune run (for the output contract)."""
    return [m["loss"] for m in read_metrics_log(run_dir)]
