"""CPU pretraining throughput, peak memory and loss: gptcore's training loop vs a nanoGPT-equivalent peer.

gptcore runs ``gptcore.train.train`` itself, the loop the pretrain flow runs (its data stream, schedule, clipping,
metrics log and all). The peer is a compact, faithful re-statement of nanoGPT's published ``model.py`` and
``train.py`` (karpathy/nanoGPT, not vendored): pre-LN blocks, exact ``nn.GELU()``, one fused qkv ``Linear``,
``F.scaled_dot_product_attention(is_causal=True)``, tied ``wte`` / ``lm_head``, N(0, 0.02) init with the scaled
residual projections, AdamW with weight decay on >= 2-D parameters (``fused`` only on CUDA, so the default
implementation on CPU), and train.py's loop: ``get_batch`` draws random offsets with ``torch.randint`` into a
freshly opened ``np.memmap``, forward, prefetch the next batch, backward, clip at 1.0, step,
``zero_grad(set_to_none=True)``, ``loss.item()`` every step (``log_interval = 1``). nanoGPT's train.py runs CPU
in fp32 (its autocast context is ``nullcontext()`` on CPU); the peer's bf16 rows wrap the forward in
``torch.autocast("cpu", torch.bfloat16)``, the one-line change a user would make.

Same shape, hyper-parameters and data on both sides: a synthetic token stream written once as a gptcore tokens
folder (sequences of random 32-token motifs from a fixed set, so the loss falls), whose train shard is a flat
uint16 file that the peer memory-maps as nanoGPT's ``train.bin``. Dropout 0, bias on, tied embeddings.

Every (side, precision) run is a fresh subprocess with --threads torch threads; runs alternate between the sides,
the first side swapped each repeat. The first --warmup steps are not timed; tokens/s is B x T per step over the
wall time of the timed steps (gptcore: log callback to log callback, so its per-step metrics writes count; the
last step, which adds a validation pass and a checkpoint, is not timed). Printed per side: median tokens/s with
the range over repeats, the ratio of medians and the range of the paired ratios (run r of one side against run r
of the other), peak RSS; then the loss of fp32 vs bf16 on each side over the last --tail steps (both precisions
see the same batches, so the difference is paired: mean and standard error).

With --memory the bench instead measures what the pretrain flow's process adds: peak RSS of
``python -m gptcore.train --config launch.json`` against ``gptforge run pretrain`` (Prefect, every stage flow
imported, the run gated and published) on the same configuration and tokens (published once as tokens version
``k1`` of a data root under bench/out), each in-process in a fresh interpreter that reports its own peak RSS.

Run (the measured shape of issue 15):
    .venv/bin/python bench/bench_nanogpt.py [--steps 40] [--warmup 5] [--repeats 3] [--tail 10] [--layers 6]
        [--heads 6] [--dims 192] [--seq 256] [--batch 16] [--vocab 8192] [--threads 2] [--precisions fp32,bf16]
    .venv/bin/python bench/bench_nanogpt.py --memory [--steps 40] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parent.parent
WORK = REPO_ROOT / "bench" / "out" / "nanogpt"
SIDES = ("gptcore", "nanogpt")
PRECISIONS = ("fp32", "bf16")
MOTIF_LEN = 32
N_MOTIFS = 256
DATA_SEED = 1234
TRAIN_TOKENS = 2_000_000
VAL_TOKENS = 50_000
# Shared hyper-parameters (nanoGPT's train.py defaults where it has one, except the short warmup).
LR = 1e-3
MIN_LR = 1e-4
WARMUP = 10
BETAS = (0.9, 0.95)
WEIGHT_DECAY = 0.1
GRAD_CLIP = 1.0
SEED = 1337


# -- data ----------------------------------------------------------------------------------------------------


def write_tokens(folder: Path, vocab: int) -> Path:
    """A tokens folder (one train and one val shard) of random motifs; written once per vocabulary size."""
    from gptcore.shards import ShardStats, ShardWriter, SplitRule, write_index

    if (folder / "index.json").is_file():
        return folder
    rng = np.random.default_rng(DATA_SEED)
    motifs = rng.integers(1, vocab, size=(N_MOTIFS, MOTIF_LEN))
    stats = []
    for split, tokens in (("train", TRAIN_TOKENS), ("val", VAL_TOKENS)):
        name = f"{split}_000000.bin"
        stream = motifs[rng.integers(0, N_MOTIFS, size=tokens // MOTIF_LEN)].reshape(-1)
        with ShardWriter(folder / name, "<u2", eot_id=0) as writer:
            writer.add_documents([stream])
            s = writer.finish()
        stats.append(ShardStats(file=name, split=split, tokens=s.tokens, documents=s.documents, sha256=s.sha256,
                                min_id=s.min_id, max_id=s.max_id))
    write_index(folder, vocab_size=vocab, eot_id=0, tokenizer_sha256="0" * 64, split_rule=SplitRule(0.1),
                shards=stats)
    return folder


# -- the peer: nanoGPT's model.py, restated ------------------------------------------------------------------


class PeerAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.n_head, self.n_embd = n_head, n_embd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class PeerBlock(nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)  # nanoGPT's LayerNorm(bias=True) is F.layer_norm(eps=1e-5), the same
        self.attn = PeerAttention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.gelu = nn.GELU()  # exact erf GELU, nanoGPT's default
        self.c_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(self.gelu(self.c_fc(self.ln_2(x))))


class PeerGPT(nn.Module):
    def __init__(self, vocab: int, block_size: int, n_layer: int, n_head: int, n_embd: int) -> None:
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab, n_embd), wpe=nn.Embedding(block_size, n_embd),
            h=nn.ModuleList([PeerBlock(n_embd, n_head) for _ in range(n_layer)]), ln_f=nn.LayerNorm(n_embd)))
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(0, idx.size(1), dtype=torch.long, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)

    def configure_optimizers(self) -> torch.optim.AdamW:
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=LR, betas=BETAS)  # nanoGPT: fused only when device_type == "cuda"


def lr_warmup(steps: int) -> int:
    return min(WARMUP, steps // 2)


def peer_lr(it: int, decay_iters: int) -> float:
    """nanoGPT's get_lr: linear warmup, cosine to min_lr."""
    warmup = lr_warmup(decay_iters)
    if it < warmup:
        return LR * (it + 1) / (warmup + 1)
    if it > decay_iters:
        return MIN_LR
    ratio = (it - warmup) / (decay_iters - warmup)
    return MIN_LR + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (LR - MIN_LR)


def run_peer(args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """nanoGPT's train.py loop; returns (loss per step, wall clock after each step)."""
    train_bin = args.tokens / "train_000000.bin"
    block_size, batch_size = args.seq, args.batch

    def get_batch() -> tuple[torch.Tensor, torch.Tensor]:
        data = np.memmap(train_bin, dtype=np.uint16, mode="r")  # re-opened every batch, as nanoGPT does
        ix = torch.randint(len(data) - block_size, (batch_size,))
        x = torch.stack([torch.from_numpy((data[i:i + block_size]).astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy((data[i + 1:i + 1 + block_size]).astype(np.int64)) for i in ix])
        return x, y

    torch.manual_seed(SEED)
    model = PeerGPT(args.vocab, args.seq, args.layers, args.heads, args.dims)
    optimizer = model.configure_optimizers()
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16" else torch.autocast(
        "cpu", enabled=False)
    losses, clock = [], []
    X, Y = get_batch()
    for it in range(args.steps):
        lr = peer_lr(it, args.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with ctx:
            _, loss = model(X, Y)
        X, Y = get_batch()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        clock.append(time.perf_counter())
    return losses, clock


# -- gptcore: its own training loop --------------------------------------------------------------------------


def run_gptcore(args: argparse.Namespace) -> tuple[list[float], list[float]]:
    from gptcore.model import GPTConfig
    from gptcore.train import TrainConfig, train

    model = GPTConfig(vocab_size=args.vocab, block_size=args.seq, n_layer=args.layers, n_head=args.heads,
                      n_embd=args.dims, dropout=0.0)
    config = TrainConfig(batch_size=args.batch, seq_len=args.seq, max_lr=LR, min_lr=MIN_LR, warmup_steps=lr_warmup(args.steps),
                         betas=BETAS, weight_decay=WEIGHT_DECAY, grad_clip=GRAD_CLIP, max_steps=args.steps,
                         eval_every=args.steps, eval_batches=1, checkpoint_every=args.steps,
                         precision=args.precision, device="cpu", seed=SEED)
    losses, clock = [], []

    def log(metrics: dict) -> None:
        clock.append(time.perf_counter())
        losses.append(metrics["loss"])

    with tempfile.TemporaryDirectory(dir=WORK) as out:
        train(model, config, args.tokens, Path(out) / "run", resume=False, log=log)
    return losses, clock


def run_child(args: argparse.Namespace) -> None:
    """One side at one precision; prints one JSON line."""
    torch.set_num_threads(args.threads)
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    losses, clock = (run_gptcore if args.side == "gptcore" else run_peer)(args)
    # Steps warmup+1 .. steps-1 are timed; the last also validates and checkpoints (gptcore), so it is left out.
    timed = clock[args.steps - 2] - clock[args.warmup - 1]
    timed_steps = args.steps - 1 - args.warmup
    print(json.dumps({"side": args.side, "precision": args.precision,
                      "tokens_per_s": timed_steps * args.batch * args.seq / timed,
                      "rss_at_start_mib": rss_start,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
                      "losses": losses}))


# -- memory: the pretrain flow's process against the bare trainer ------------------------------------------


def publish_tokens_version(data_root: Path, vocab: int) -> None:
    """The bench tokens as tokens version ``k1`` of ``data_root`` (once), for ``gptforge run pretrain``."""
    from flows.lineage import write_manifest
    from flows.store import DataRoot

    root = DataRoot.from_env(str(data_root))
    if "k1" in root.versions("tokens"):
        return
    work = root.work_dir("tokens", "k1") / "out"
    write_tokens(work, vocab)
    write_manifest(work, "tokens", "k1", {"bench": "random motifs"}, [], {"tokens": TRAIN_TOKENS + VAL_TOKENS})
    root.publish("tokens", "k1", work)


def launch_config(args: argparse.Namespace) -> dict:
    """One configuration for both entry points ({"model": GPTConfig fields, "train": TrainConfig fields})."""
    every = max(args.steps // 2, 1)
    return {"model": {"vocab_size": args.vocab, "block_size": args.seq, "n_layer": args.layers, "n_head": args.heads,
                      "n_embd": args.dims, "dropout": 0.0},
            "train": {"batch_size": args.batch, "seq_len": args.seq, "max_lr": LR, "min_lr": MIN_LR,
                      "warmup_steps": lr_warmup(args.steps), "max_steps": args.steps, "eval_every": every,
                      "eval_batches": 5, "checkpoint_every": every, "precision": args.precisions.split(",")[0],
                      "device": "cpu"}}


def run_entry_point(args: argparse.Namespace) -> None:
    """One entry point in this process on the launch configuration; prints one JSON line with its peak RSS."""
    config = launch_config(args)
    with tempfile.TemporaryDirectory(dir=WORK) as out:
        if args.side == "trainer":
            from gptcore.train import main as trainer_main

            (Path(out) / "launch.json").write_text(json.dumps(config))
            trainer_main(["--tokens", str(args.tokens / "tokens" / "k1"), "--out", str(Path(out) / "run"),
                          "--config", str(Path(out) / "launch.json"), "--no-resume"])
        else:
            from flows.app.cli import main as gptforge_main

            model = {k: v for k, v in config["model"].items() if k != "vocab_size"}  # the flow takes it from k1
            gptforge_main(["run", "pretrain", "-p", "tokens=k1", "-p", "preset=small-cpu", "-p", f"version=r{os.getpid()}",
                           "-p", f"model={json.dumps(model)}", "-p", f"train={json.dumps(config['train'])}"])
    print(json.dumps({"side": args.side, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure_memory(args: argparse.Namespace) -> None:
    data_root = WORK / f"data_v{args.vocab}"
    publish_tokens_version(data_root, args.vocab)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO_ROOT),
           "GPTFORGE_DATA": str(data_root), "PREFECT_HOME": str(WORK / "prefect")}
    peaks: dict[str, list[float]] = {"trainer": [], "gptforge": []}
    for repeat in range(args.repeats):
        for side in (("trainer", "gptforge") if repeat % 2 == 0 else ("gptforge", "trainer")):
            command = [sys.executable, __file__, "--child", "--memory", "--side", side, "--tokens", str(data_root),
                       "--steps", str(args.steps), "--layers", str(args.layers), "--heads", str(args.heads),
                       "--dims", str(args.dims), "--seq", str(args.seq), "--batch", str(args.batch),
                       "--vocab", str(args.vocab), "--threads", str(args.threads), "--precisions", args.precisions]
            done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
            if done.returncode != 0:
                raise RuntimeError(f"{side} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
            peaks[side].append(json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mib"])
    trainer, flow_process = statistics.median(peaks["trainer"]), statistics.median(peaks["gptforge"])
    print(f"\npeak RSS, {args.steps} steps at {args.precisions.split(',')[0]}, median of {args.repeats} runs (MiB):")
    print(f"  python -m gptcore.train   {trainer:7.0f}  {sorted(round(p) for p in peaks['trainer'])}")
    print(f"  gptforge run pretrain     {flow_process:7.0f}  {sorted(round(p) for p in peaks['gptforge'])}")
    print(f"  the flow's process adds {flow_process / trainer - 1:+.1%}")


# -- the parent: alternate, repeat, report -------------------------------------------------------------------


def spawn(args: argparse.Namespace, side: str, precision: str, tokens: Path) -> dict:
    command = [sys.executable, __file__, "--child", "--side", side, "--precision", precision, "--tokens", str(tokens),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--layers", str(args.layers),
               "--heads", str(args.heads), "--dims", str(args.dims), "--seq", str(args.seq),
               "--batch", str(args.batch), "--vocab", str(args.vocab), "--threads", str(args.threads),
               "--tail", str(args.tail)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{side} {precision} run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report_speed(precision: str, runs: dict[str, list[dict]]) -> None:
    ours, peer = ([r["tokens_per_s"] for r in runs[side]] for side in SIDES)
    paired = [a / b for a, b in zip(ours, peer)]
    print(f"\n{precision}: tokens/s over {len(ours)} runs per side (median [min, max])")
    for side, speeds in zip(SIDES, (ours, peer)):
        rss = max(r["peak_rss_mib"] for r in runs[side])
        print(f"  {side:8} {statistics.median(speeds):9.0f} [{min(speeds):.0f}, {max(speeds):.0f}]   "
              f"peak RSS {rss:.0f} MiB")
    print(f"  ratio gptcore / nanogpt: {statistics.median(ours) / statistics.median(peer):.3f}x "
          f"(paired runs: {min(paired):.3f}x to {max(paired):.3f}x)")


def report_losses(side: str, by_precision: dict[str, list[float]], tail: int) -> None:
    """fp32 vs bf16 on one side: both saw the same batches, so the last ``tail`` steps pair up."""
    print(f"\n{side}: loss over the last {tail} steps")
    for precision, losses in by_precision.items():
        print(f"  {precision}: final {losses[-1]:.4f}, mean {statistics.mean(losses[-tail:]):.4f} "
              f"(step 1: {losses[0]:.4f})")
    if {"fp32", "bf16"} <= by_precision.keys():
        diffs = [b - a for a, b in zip(by_precision["fp32"][-tail:], by_precision["bf16"][-tail:])]
        se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
        print(f"  bf16 - fp32: {statistics.mean(diffs):+.5f} +- {se:.5f} (mean +- standard error, paired)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="first steps, not timed")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side and precision")
    parser.add_argument("--tail", type=int, default=10, help="steps at the end over which losses are compared")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--dims", type=int, default=192)
    parser.add_argument("--seq", type=int, default=256, help="sequence length, also the model's context")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each run")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma-separated: fp32, bf16")
    parser.add_argument("--memory", action="store_true",
                        help="peak RSS of `gptforge run pretrain` vs `python -m gptcore.train` instead of speed")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=SIDES + ("trainer", "gptforge"), help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=PRECISIONS, help=argparse.SUPPRESS)
    parser.add_argument("--tokens", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.warmup < args.steps - 2:
        parser.error(f"--warmup {args.warmup} must be in [1, --steps - 2 = {args.steps - 2})")
    if not 1 <= args.tail <= args.steps:
        parser.error(f"--tail {args.tail} must be in [1, --steps {args.steps}]")
    return args


def main() -> None:
    args = parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.child:
        (run_entry_point if args.memory else run_child)(args)
        return
    if args.memory:
        measure_memory(args)
        return
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    unknown = set(precisions) - set(PRECISIONS)
    if unknown:
        raise SystemExit(f"--precisions: unknown {sorted(unknown)}; choose from {PRECISIONS}")
    tokens = write_tokens(WORK / f"tokens_v{args.vocab}", args.vocab)
    print(f"model: {args.layers} layers, {args.heads} heads, {args.dims} dims, context {args.seq}, vocab "
          f"{args.vocab}; batch {args.batch} x {args.seq}; {args.steps} steps, first {args.warmup} untimed; "
          f"{args.threads} threads; {args.repeats} alternating runs per side", flush=True)
    runs = {p: {side: [] for side in SIDES} for p in precisions}
    for repeat in range(args.repeats):
        for precision in precisions:
            for side in (SIDES if repeat % 2 == 0 else SIDES[::-1]):
                runs[precision][side].append(spawn(args, side, precision, tokens))
    for precision in precisions:
        report_speed(precision, runs[precision])
    for side in SIDES:
        report_losses(side, {p: runs[p][side][0]["losses"] for p in precisions}, args.tail)


if __name__ == "__main__":
    main()
