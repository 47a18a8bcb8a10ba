"""Training throughput and peak memory: gptcore `GPT` vs Hugging Face `transformers` `GPT2LMHeadModel`.

Both sides start from the same weights: gptcore builds the model with a fixed seed, `save_hf_gpt2` writes it as a
GPT-2 directory (bench/out/train/init), and each side loads that directory (`load_hf_gpt2` for gptcore,
`GPT2LMHeadModel.from_pretrained(..., attn_implementation="sdpa")` for transformers). Both train on the same
synthetic batches: sequences made of random 32-token motifs drawn from a fixed set (fixed torch.Generator), so
the loss falls within a few dozen steps. Same AdamW hyper-parameters and parameter groups (weight decay on
matrices only), same gradient clipping, dropout 0, batch --batch x --seq tokens per step.

Loss is the same quantity on both sides: mean next-token cross-entropy over all B x T positions, with targets
being the input shifted by one (the batch is cut from sequences of T + 1 tokens). gptcore gets `targets`;
transformers gets `labels=None` plus `shift_labels` (its loss function then skips its own shift, which would
otherwise drop the last position). transformers runs with `use_cache=False`, as a training script would.

Each side x precision (fp32; bf16 autocast on CPU) runs in a fresh subprocess with --threads torch threads, so
peak RSS (getrusage ru_maxrss) belongs to that run alone; the RSS at the start of training (imports + model +
batches) is printed too, so the part training itself adds is visible. Steps before --warmup are not timed.
With --repeats > 1 the sides alternate, first side swapped each repeat, and each side's fastest run is shown.
Tokens/s counts input tokens (B x T) per optimizer step. Ratios are gptcore / transformers: > 1 means gptcore
is faster for tokens/s, and uses more memory for RSS.

On a GPU (--device cuda) both sides use fused AdamW, memory is the CUDA allocator's peak, and model FLOPs
utilisation (MFU: 6·N + attention FLOPs per token, gptcore's estimate, over the GPU's dense bf16 peak) is printed;
--compile wraps both models in torch.compile (the first --warmup steps absorb the compilation).

Run: .venv/bin/python bench/bench_train.py [--steps 20] [--warmup 4] [--repeats 1] [--layers 4] [--dims 256] [--heads 4]
     [--seq 256] [--batch 8] [--vocab 8192] [--threads 2] [--precisions fp32,bf16] [--device cpu] [--compile]
GPT-2 small on a GPU: --device cuda --layers 12 --dims 768 --heads 12 --seq 1024 --batch 16 --vocab 50257
     --precisions bf16 --steps 40 --warmup 10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from gptcore.runtime import peak_flops

REPO_ROOT = Path(__file__).resolve().parent.parent
WORK = REPO_ROOT / "bench" / "out" / "train"
SIDES = ("gptcore", "transformers")
PRECISIONS = ("fp32", "bf16")
MOTIF_LEN = 32
N_MOTIFS = 64
DATA_SEED = 1234
MODEL_SEED = 0
# AdamW settings shared by both sides (GPT-2/3-style betas; decay on matrices only).
LR = 1e-3
BETAS = (0.9, 0.95)
EPS = 1e-8
WEIGHT_DECAY = 0.1
GRAD_CLIP = 1.0


def synthetic_batches(steps: int, batch: int, seq: int, vocab: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`steps` (x, y) pairs of shape (batch, seq): sequences of random motifs, y is x shifted by one token.

    A fixed set of motifs makes the stream learnable (within a motif every next token is determined), so the loss
    curve has something to compare; the motif order is random, so it never reaches zero.
    """
    generator = torch.Generator().manual_seed(DATA_SEED)
    motifs = torch.randint(0, vocab, (N_MOTIFS, MOTIF_LEN), generator=generator)
    motifs_per_row = -(-(seq + 1) // MOTIF_LEN)  # enough motifs to cover seq + 1 tokens
    batches = []
    for _ in range(steps):
        choice = torch.randint(0, N_MOTIFS, (batch, motifs_per_row), generator=generator)
        rows = motifs[choice].reshape(batch, -1)[:, : seq + 1]
        batches.append((rows[:, :-1].contiguous(), rows[:, 1:].contiguous()))
    return batches


def decay_groups(model: torch.nn.Module) -> list[dict[str, object]]:
    """AdamW groups for the transformers model with gptcore's rule: decay on dim >= 2 tensors only."""
    params = [p for p in model.parameters() if p.requires_grad]  # parameters() lists the tied matrix once
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def current_rss_mib() -> float:
    """Resident set size now (Linux /proc), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS missing from /proc/self/status; this benchmark needs Linux")


def run_child(args: argparse.Namespace) -> None:
    """Train one side at one precision and print one JSON line: tokens/s, RSS, loss per step."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(MODEL_SEED)
    if args.side == "gptcore":
        from gptcore.hf import load_hf_gpt2

        model = load_hf_gpt2(args.model_dir)
        groups = model.optimizer_groups(WEIGHT_DECAY)

        def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return model(x, y)[1]

    else:
        from transformers import GPT2LMHeadModel

        model = GPT2LMHeadModel.from_pretrained(args.model_dir, attn_implementation="sdpa")
        groups = decay_groups(model)

        def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return model(input_ids=x, shift_labels=y, labels=y, use_cache=False).loss

    device = torch.device(args.device)
    flops_per_token = _flops_per_token(args)
    model.to(device).train()
    forward = torch.compile(loss_of) if args.compile else loss_of
    optimizer = torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS, fused=device.type == "cuda")
    batches = [(x.to(device), y.to(device)) for x, y in synthetic_batches(args.steps, args.batch, args.seq, args.vocab)]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    rss_start = current_rss_mib()

    losses: list[float] = []
    start = 0.0
    for step, (x, y) in enumerate(batches):
        if step == args.warmup:
            start = time.perf_counter()
        with autocast:
            loss = forward(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    elapsed = time.perf_counter() - start

    timed_tokens = (args.steps - args.warmup) * args.batch * args.seq
    result = {
        "side": args.side,
        "precision": args.precision,
        "tokens_per_s": timed_tokens / elapsed,
        "seconds": elapsed,
        "rss_start_mib": rss_start,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "losses": losses,
    }
    if device.type == "cuda":
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        result["gpu"] = torch.cuda.get_device_name(device)
        peak = peak_flops(device)
        result["mfu"] = flops_per_token * result["tokens_per_s"] / peak if peak else None
    print(json.dumps(result))


def _flops_per_token(args: argparse.Namespace) -> float:
    from gptcore.model import GPT, config_from_preset

    with torch.device("meta"):
        model = GPT(config_from_preset("small-cpu", n_layer=args.layers, n_embd=args.dims, n_head=args.heads,
                                       block_size=args.seq, vocab_size=args.vocab))
    return model.estimate_flops_per_token(args.seq)


def write_initial_model(args: argparse.Namespace) -> Path:
    """Build gptcore's model with a fixed seed and export it, so both sides load the same weights."""
    from gptcore.hf import save_hf_gpt2
    from gptcore.model import GPT, config_from_preset

    torch.manual_seed(MODEL_SEED)
    config = config_from_preset(
        "small-cpu",
        n_layer=args.layers,
        n_embd=args.dims,
        n_head=args.heads,
        block_size=args.seq,
        vocab_size=args.vocab,
        dropout=0.0,
    )
    model = GPT(config)
    print(
        f"model: {args.layers} layers, {args.dims} dims, {args.heads} heads, context {args.seq}, vocab {args.vocab}, "
        f"{model.num_parameters() / 1e6:.2f}M parameters (tied embeddings); batch {args.batch} x {args.seq}; "
        f"{args.steps} steps, first {args.warmup} untimed; {args.threads} torch threads"
    )
    return save_hf_gpt2(model, WORK / "init")


def spawn(args: argparse.Namespace, side: str, precision: str, model_dir: Path) -> dict[str, object]:
    """Run one side x precision in a fresh interpreter and return its JSON result."""
    command = [
        sys.executable, __file__, "--child", "--side", side, "--precision", precision, "--model-dir", str(model_dir),
        "--steps", str(args.steps), "--warmup", str(args.warmup), "--seq", str(args.seq),
        "--batch", str(args.batch), "--vocab", str(args.vocab), "--threads", str(args.threads),
        "--layers", str(args.layers), "--dims", str(args.dims), "--heads", str(args.heads), "--device", args.device,
        *(["--compile"] if args.compile else []),
    ]  # fmt: skip
    env = {**os.environ, "TRANSFORMERS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{side} {precision} run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace, precision: str, model_dir: Path) -> tuple[dict[str, object], ...]:
    """The fastest of --repeats runs per side (its RSS too), sides alternating and the first side swapped each repeat, so load from
    other processes on a shared machine falls on both sides alike."""
    best: dict[str, dict[str, object]] = {}
    for repeat in range(args.repeats):
        order = SIDES if repeat % 2 == 0 else SIDES[::-1]
        for side in order:
            run = spawn(args, side, precision, model_dir)
            if side not in best or run["tokens_per_s"] > best[side]["tokens_per_s"]:
                best[side] = run
    return best["gptcore"], best["transformers"]


def print_table(precision: str, ours: dict[str, object], peer: dict[str, object]) -> None:
    """One precision: absolute numbers for both sides, ratio gptcore / transformers, loss agreement."""
    loss_ours, loss_peer = ours["losses"], peer["losses"]
    max_diff = max(abs(a - b) for a, b in zip(loss_ours, loss_peer))
    print(f"\n{precision}:")
    print(f"  {'':22} {'gptcore':>12} {'transformers':>13} {'ratio':>7}")
    rows = [
        ("tokens/s", "tokens_per_s", "{:12.0f}", "{:13.0f}"),
        ("peak RSS MiB", "peak_rss_mib", "{:12.0f}", "{:13.0f}"),
        ("RSS at start MiB", "rss_start_mib", "{:12.0f}", "{:13.0f}"),
    ]
    if "peak_gpu_mib" in ours:
        print(f"  on {ours['gpu']}")
        rows.append(("peak GPU memory MiB", "peak_gpu_mib", "{:12.0f}", "{:13.0f}"))
        if ours.get("mfu"):
            rows.append(("MFU", "mfu", "{:12.3f}", "{:13.3f}"))
    for label, key, fmt_ours, fmt_peer in rows:
        ratio = ours[key] / peer[key]
        print(f"  {label:22} {fmt_ours.format(ours[key])} {fmt_peer.format(peer[key])} {ratio:7.3f}x")
    training_ours = ours["peak_rss_mib"] - ours["rss_start_mib"]
    training_peer = peer["peak_rss_mib"] - peer["rss_start_mib"]
    print(
        f"  {'RSS added by training':22} {training_ours:12.0f} {training_peer:13.0f} "
        f"{training_ours / training_peer:7.3f}x"
    )
    print(f"  {'loss step 0':22} {loss_ours[0]:12.4f} {loss_peer[0]:13.4f}")
    print(f"  {'loss final':22} {loss_ours[-1]:12.4f} {loss_peer[-1]:13.4f}")
    print(f"  max |loss diff| over {len(loss_ours)} steps: {max_diff:.2e}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=4, help="first steps, not timed")
    parser.add_argument("--repeats", type=int, default=1, help="runs per side; the fastest is reported")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dims", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256, help="sequence length, also the model's context")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in each run")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma-separated: fp32, bf16")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    # Internal: one measured run in a child process.
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=PRECISIONS, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 0 <= args.warmup < args.steps:
        parser.error(f"--warmup {args.warmup} must be in [0, --steps {args.steps})")
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        run_child(args)
        return
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    unknown = set(precisions) - set(PRECISIONS)
    if unknown:
        raise SystemExit(f"--precisions: unknown {sorted(unknown)}; choose from {PRECISIONS}")
    model_dir = write_initial_model(args)
    for precision in precisions:
        print_table(precision, *measure(args, precision, model_dir))


if __name__ == "__main__":
    main()
