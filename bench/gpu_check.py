"""GPU check of the real training loop: GPT-2 small through `gptcore.train.train` on one CUDA device.

Random token shards (vocab 50,257) stand in for data: the point is speed and the GPU code paths, not the loss.
Steps: bf16 + torch.compile (tokens/s and MFU per step from metrics.jsonl), resume from the checkpoint
(weights-only load onto the GPU), fp16 + GradScaler, flash attention in use, and KV-cached vs uncached
generation agreeing on the GPU.

Run: python bench/gpu_check.py [--steps 40] [--batch 16] [--work /tmp/gptforge-gpu]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from gptcore.generate import generate
from gptcore.metrics_log import read_metrics_log
from gptcore.model import GPT, config_from_preset
from gptcore.shards import ShardStats, ShardWriter, SplitRule, write_index
from gptcore.train import TrainConfig, train

VOCAB = 50257


def write_random_tokens(folder: Path, train_tokens: int, val_tokens: int) -> Path:
    rng = np.random.default_rng(0)
    stats = []
    for split, n in (("train", train_tokens), ("val", val_tokens)):
        name = f"{split}_000000.bin"
        with ShardWriter(folder / name, "<u2", eot_id=VOCAB - 1) as writer:
            writer.add_documents([rng.integers(0, VOCAB - 1, 100_000).tolist() for _ in range(n // 100_000)])
            s = writer.finish()
        stats.append(ShardStats(file=name, split=split, tokens=s.tokens, documents=s.documents, sha256=s.sha256,
                                min_id=s.min_id, max_id=s.max_id))
    write_index(folder, vocab_size=VOCAB, eot_id=VOCAB - 1, tokenizer_sha256="0" * 64, split_rule=SplitRule(0.05),
                shards=stats)
    return folder


def summarize(name: str, run: Path, skip: int) -> None:
    metrics = read_metrics_log(run)[skip:]
    tps = [m["tokens_per_s"] for m in metrics]
    mfu = [m.get("mfu") for m in metrics if m.get("mfu") is not None]
    print(f"{name}: steps {metrics[0]['step']}-{metrics[-1]['step']}, median tokens/s {np.median(tps):,.0f}, "
          f"median MFU {np.median(mfu) if mfu else float('nan'):.3f}, last loss {metrics[-1]['loss']:.4f}, "
          f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--skip-throughput", action="store_true", help="only the fp16, attention and generation checks")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gptforge-gpu"))
    args = parser.parse_args()
    assert torch.cuda.is_available(), "this check needs a CUDA device"
    print(f"{torch.cuda.get_device_name()} torch {torch.__version__}", flush=True)
    tokens = write_random_tokens(args.work / "tokens", 20_000_000, 1_000_000)
    model = config_from_preset("gpt2-small", dropout=0.0)
    common = dict(batch_size=args.batch, warmup_steps=10, max_lr=6e-4, eval_every=10_000, eval_batches=4)

    for compiled in (() if args.skip_throughput else (False, True)):
        run = args.work / f"bf16-{'compiled' if compiled else 'eager'}"
        start = time.perf_counter()
        train(model, TrainConfig(**common, max_steps=args.steps, checkpoint_every=args.steps, precision="bf16",
                                 compile=compiled), tokens, run, resume=False)
        print(f"bf16 {'compiled' if compiled else 'eager'}: {time.perf_counter() - start:.0f} s wall", flush=True)
        summarize(f"bf16 {'compiled' if compiled else 'eager'}", run, skip=10)

    resumed = args.skip_throughput or train(model, TrainConfig(**common, max_steps=args.steps + 5, checkpoint_every=args.steps,
                                       precision="bf16", compile=False), tokens, run)
    args.skip_throughput or print(f"resume: continued from step {args.steps} to {resumed.step}, loss {resumed.loss:.4f}, "
          f"val loss {resumed.val_loss:.4f}", flush=True)

    fp16 = args.work / "fp16"
    result = train(model, TrainConfig(**{**common, "warmup_steps": 2}, max_steps=8, checkpoint_every=8, precision="fp16"), tokens, fp16,
                   resume=False)
    print(f"fp16 + GradScaler: 8 steps, loss {result.loss:.4f}, finite {np.isfinite(result.loss)}", flush=True)
    summarize("fp16", fp16, skip=3)

    from torch.nn.attention import SDPBackend, sdpa_kernel

    gpt = GPT(model).cuda().eval()
    x = torch.randint(0, VOCAB, (8, 1024), device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16), sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        gpt(x)  # raises when flash attention cannot run this model's attention
    print("flash attention: the model's attention runs on the FLASH_ATTENTION backend", flush=True)

    torch.manual_seed(0)
    prompt = torch.randint(0, VOCAB, (4, 16), device="cuda")
    generate(gpt, prompt, 8, top_k=1)  # warm-up: kernel selection and allocator, kept out of the timing
    for use_cache in (True, False):
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = generate(gpt, prompt, 128, top_k=1, use_cache=use_cache)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        if use_cache:
            cached = out
        print(f"generate {'with' if use_cache else 'without'} KV cache: {4 * 128 / seconds:,.0f} tokens/s", flush=True)
    print(f"cached and uncached greedy generation agree: {bool((cached == out).all())}", flush=True)
    print(json.dumps({"done": True}))


if __name__ == "__main__":
    main()
