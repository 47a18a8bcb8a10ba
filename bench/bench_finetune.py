"""Fine-tuning throughput: gptcore's `finetune` vs Hugging Face `transformers` `GPT2ForSequenceClassification`.

The data is synthetic and built here (nothing is fetched): short texts of varied length made of pseudo-words, a
byte-level BPE tokenizer trained on them (--vocab ids), and a binary label decided by which of two marker words the
text holds, so the loss falls. Both sides start from the same weights: a pretrained-checkpoint stand-in (a fixed-seed
GPT) is wrapped in gptcore's `TaskModel` exactly as `finetune` does (same seed, so the same three new embedding rows
and head), and written with `save_hf_gpt2` plus the head matrix, which the transformers side loads into its `score`
layer. The setup checks that both models give the same logits on a padded batch before anything is timed.

Both sides read the same token sequences (`gptcore.tasks.encode_example`: start, text, extract; pad id 0 is the
end-of-text id, which no text encodes to, and is transformers' `pad_token_id`), with the same batch size, epochs,
AdamW settings and parameter groups (decay on matrices only), linear warmup/decay schedule, gradient clipping,
dropout. gptcore runs its real `finetune()` (its own batching, metrics log and per-epoch checkpoints included in the
time); transformers runs the loop a `Trainer` user gets by default: a fresh shuffle each epoch, each batch padded to
its longest example with an attention mask. λ (the auxiliary LM loss) is 0 by default, because
`GPT2ForSequenceClassification` has no LM loss; --aux-lm-weight sets it on the gptcore side only.

Each side runs in a fresh subprocess with --threads torch threads; with --repeats > 1 the sides alternate, the first
side swapped each repeat, and each side's fastest run is shown. Examples/s is examples x epochs over the training
loop's wall time (model loading and tokenisation excluded on both sides). The ratio is gptcore / transformers.

Run: .venv/bin/python bench/bench_finetune.py [--examples 2000] [--epochs 3] [--batch 32] [--layers 6] [--dims 192]
     [--heads 6] [--context 128] [--vocab 512] [--min-words 4] [--max-words 60] [--threads 2] [--repeats 1]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

WORK = REPO_ROOT / "bench" / "out" / "finetune"
SIDES = ("gptcore", "transformers")
LABELS = ("no", "yes")
DATA_SEED = 1234
MODEL_SEED = 0
FINETUNE_SEED = 1
LR = 1e-4  # large enough for a small model to learn the marker rule in a few hundred steps
WEIGHT_DECAY = 0.01  # FinetuneConfig's default, on matrices only
GRAD_CLIP = 1.0
DROPOUT = 0.1
EXAMPLES_FILE = "examples.jsonl"
HEAD_FILE = "head.pt"


def synthetic_texts(n: int, min_words: int, max_words: int) -> list[tuple[str, str]]:
    """(text, label) pairs: pseudo-words, length uniform in [min_words, max_words]; label "yes" when the marker
    word "zork" appears, "no" when "blip" does (each text holds exactly one of them)."""
    rng = random.Random(DATA_SEED)
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "pe", "da", "gu", "fi"]
    lexicon = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(400)]
    examples = []
    for _ in range(n):
        label = rng.choice(LABELS)
        words = rng.choices(lexicon, k=rng.randint(min_words, max_words) - 1)
        words.insert(rng.randrange(len(words) + 1), "zork" if label == "yes" else "blip")
        examples.append((" ".join(words), label))
    return examples


def write_inputs(args: argparse.Namespace) -> Path:
    """Examples, tokenizer, pretrained run and the transformers directory, under WORK; returns WORK."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from gptcore.checkpoint import save_checkpoint
    from gptcore.hf import save_hf_gpt2
    from gptcore.model import GPT, config_from_preset
    from gptcore.tasks import TaskModel, TaskSpec

    WORK.mkdir(parents=True, exist_ok=True)
    examples = synthetic_texts(args.examples, args.min_words, args.max_words)
    with open(WORK / EXAMPLES_FILE, "w") as fh:
        fh.writelines(json.dumps({"text": text, "label": label}) + "\n" for text, label in examples)

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator([text for text, _ in examples], trainers.BpeTrainer(
        vocab_size=args.vocab, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))  # end-of-text is id 0: the pad id of both sides
    tokenizer.save(str(WORK / "tokenizer.json"))

    torch.manual_seed(MODEL_SEED)
    config = config_from_preset("small-cpu", n_layer=args.layers, n_embd=args.dims, n_head=args.heads,
                                block_size=args.context, vocab_size=tokenizer.get_vocab_size(), dropout=DROPOUT)
    base = GPT(config)
    save_checkpoint(WORK / "pretrained", 1, {"model": base.state_dict(), "model_config": asdict(config)})
    torch.manual_seed(FINETUNE_SEED)  # what finetune() does before building its TaskModel: the same new rows and head
    task_model = TaskModel(config, TaskSpec("classification", LABELS), clf_dropout=DROPOUT)
    task_model.load_pretrained(base.state_dict())
    save_hf_gpt2(task_model.gpt, WORK / "hf")
    torch.save({"weight": task_model.head.weight.detach().clone()}, WORK / HEAD_FILE)
    check_same_function(task_model, WORK)
    print(f"model: {args.layers} layers, {args.dims} dims, {args.heads} heads, context {args.context}, vocab "
          f"{config.vocab_size} (+3 task tokens), {task_model.gpt.num_parameters() / 1e6:.2f}M parameters; "
          f"{args.examples} texts of {args.min_words}-{args.max_words} words, batch {args.batch}, {args.epochs} "
          f"epochs; {args.threads} torch threads")
    return WORK


def load_peer(work: Path):
    from transformers import GPT2ForSequenceClassification

    model = GPT2ForSequenceClassification.from_pretrained(work / "hf", num_labels=len(LABELS), pad_token_id=0,
                                                          attn_implementation="sdpa")
    with torch.no_grad():
        model.score.weight.copy_(torch.load(work / HEAD_FILE, weights_only=True)["weight"])
    return model


def encoded_examples(work: Path, context: int, vocab_size: int) -> tuple[list[list[int]], list[int]]:
    """Each example's one token sequence (start, text, extract) and its label index, as gptcore encodes them."""
    from gptcore.encoding import load_encoder
    from gptcore.taskdata import ClassificationExample
    from gptcore.tasks import SpecialTokens, encode_example

    encoder, special = load_encoder(work / "tokenizer.json"), SpecialTokens.after(vocab_size)
    rows = [json.loads(line) for line in (work / EXAMPLES_FILE).read_text().splitlines()]
    sequences = [encode_example(ClassificationExample(r["text"], r["label"]), encoder, special, context)[0]
                 for r in rows]
    return sequences, [LABELS.index(r["label"]) for r in rows]


def padded(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (pad 0) and the attention mask, the batch's longest sequence wide."""
    width = max(len(s) for s in sequences)
    ids = torch.tensor([s + [0] * (width - len(s)) for s in sequences])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences])
    return ids, mask


def check_same_function(task_model, work: Path) -> None:
    """Refuse to time anything unless both sides compute the same logits from the same padded batch."""
    from gptcore.tasks import collate

    peer = load_peer(work).eval()
    task_model.eval()
    sequences, _ = encoded_examples(work, task_model.max_len, task_model.base_config.vocab_size)
    chosen = sequences[:8]
    with torch.no_grad():
        ours = task_model(collate([[s] for s in chosen])).logits
        ids, mask = padded(chosen)
        theirs = peer(input_ids=ids, attention_mask=mask).logits
    diff = (ours - theirs).abs().max().item()
    if diff > 1e-4:
        raise SystemExit(f"setup error: gptcore and transformers logits differ by {diff:.2e} on the same batch")
    print(f"same weights: max |logit diff| on a padded batch of 8 = {diff:.1e}")


def run_gptcore(args: argparse.Namespace) -> dict[str, object]:
    from gptcore.finetune import FinetuneConfig, finetune, training_losses
    from gptcore.taskdata import ClassificationExample
    from gptcore.tasks import TaskSpec

    rows = [json.loads(line) for line in (args.work / EXAMPLES_FILE).read_text().splitlines()]
    examples = [ClassificationExample(r["text"], r["label"]) for r in rows]
    config = FinetuneConfig(lr=LR, batch_size=args.batch, epochs=args.epochs, aux_lm_weight=args.aux_lm_weight,
                            clf_dropout=DROPOUT, weight_decay=WEIGHT_DECAY, grad_clip=GRAD_CLIP, seed=FINETUNE_SEED,
                            device="cpu")
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as out:
        result = finetune(args.work / "pretrained", args.work / "tokenizer.json", TaskSpec("classification", LABELS),
                          examples, config, out, resume=False)
        losses = training_losses(out)
    return {"steps": result.step, "seconds": result.elapsed_s, "losses": losses}


def run_transformers(args: argparse.Namespace) -> dict[str, object]:
    from gptcore.schedule import linear_lr_at

    torch.manual_seed(FINETUNE_SEED)  # dropout masks
    model = load_peer(args.work).train()
    sequences, labels = encoded_examples(args.work, args.context, model.config.vocab_size - 3)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
                                   {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}], lr=LR)
    steps_per_epoch = -(-len(sequences) // args.batch)
    total_steps = steps_per_epoch * args.epochs
    warmup_steps = max(1, round(0.002 * total_steps))  # FinetuneConfig.warmup_fraction
    generator = torch.Generator().manual_seed(FINETUNE_SEED)
    losses: list[float] = []
    step = 0
    start = time.perf_counter()
    for _ in range(args.epochs):
        order = torch.randperm(len(sequences), generator=generator).tolist()  # a DataLoader's shuffle
        for first in range(0, len(order), args.batch):
            chosen = order[first:first + args.batch]
            ids, mask = padded([sequences[i] for i in chosen])  # DataCollatorWithPadding: pad to the longest
            for group in optimizer.param_groups:
                group["lr"] = linear_lr_at(step, max_lr=LR, warmup_steps=warmup_steps, total_steps=total_steps)
            loss = model(input_ids=ids, attention_mask=mask, labels=torch.tensor([labels[i] for i in chosen]),
                         use_cache=False).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            step += 1
    return {"steps": step, "seconds": time.perf_counter() - start, "losses": losses}


def run_child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    result = run_gptcore(args) if args.side == "gptcore" else run_transformers(args)
    result.update(side=args.side, examples_per_s=args.examples * args.epochs / result["seconds"])
    print(json.dumps(result))


def spawn(args: argparse.Namespace, side: str) -> dict[str, object]:
    command = [sys.executable, __file__, "--child", "--side", side, "--work", str(WORK),
               "--examples", str(args.examples), "--epochs", str(args.epochs), "--batch", str(args.batch),
               "--context", str(args.context), "--threads", str(args.threads),
               "--aux-lm-weight", str(args.aux_lm_weight)]
    env = {**os.environ, "TRANSFORMERS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{side} run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--dims", type=int, default=192)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--context", type=int, default=128, help="the model's context, also max_len")
    parser.add_argument("--vocab", type=int, default=512, help="tokenizer vocabulary size")
    parser.add_argument("--min-words", type=int, default=4)
    parser.add_argument("--max-words", type=int, default=60)
    parser.add_argument("--aux-lm-weight", type=float, default=0.0, help="λ, gptcore side only")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in each run")
    parser.add_argument("--repeats", type=int, default=1, help="runs per side; the fastest is reported")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return
    if not 1 <= args.min_words <= args.max_words:
        parser.error("need 1 <= --min-words <= --max-words")
    write_inputs(args)
    best: dict[str, dict[str, object]] = {}
    for repeat in range(args.repeats):
        for side in SIDES if repeat % 2 == 0 else SIDES[::-1]:
            run = spawn(args, side)
            print(f"  {side:12} {run['examples_per_s']:8.1f} examples/s  ({run['steps']} steps, {run['seconds']:.1f} s,"
                  f" loss {run['losses'][0]:.3f} -> {run['losses'][-1]:.3f})")
            if side not in best or run["examples_per_s"] > best[side]["examples_per_s"]:
                best[side] = run
    ours, peer = best["gptcore"]["examples_per_s"], best["transformers"]["examples_per_s"]
    print(f"\nexamples/s (best of {args.repeats}): gptcore {ours:.1f}, transformers {peer:.1f}, "
          f"ratio {ours / peer:.3f}x")


if __name__ == "__main__":
    main()
