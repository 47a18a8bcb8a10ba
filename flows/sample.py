"""``gptforge generate``: sample from a pretraining run, with the tokenizer found through the run's lineage."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from flows.lineage import find_version_folder, upstream_of
from flows.store import DataRoot, StoreError
from gptcore.checkpoint import CHECKPOINT_FILES, latest_checkpoint, load_checkpoint
from gptcore.encoding import load_encoder
from gptcore.generate import generate
from gptcore.model import GPT, GPTConfig


def tokenizer_of_run(run: Path, root: DataRoot | None = None) -> Path:
    """runs/<id> → its tokens version → that version's tokenizer.json, from the manifests alone. ``root`` is the
    data root the run belongs to (default: the folder two levels up, for a run inside a local root)."""
    root = root or DataRoot.from_env(str(run.parent.parent))
    version = json.loads((run / "manifest.json").read_text())["version"]
    tokens = upstream_of(root, "runs", version, "tokens")
    tokenizer = upstream_of(root, "tokens", tokens, "tokenizer") if tokens else None
    if tokenizer is None:
        raise StoreError(f"run {version!r} in {root.url} names no tokens version with a tokenizer upstream in its "
                         "lineage: it is not a pretrain run or a run fine-tuned from one")
    return root.local_version("tokenizer", tokenizer) / "tokenizer.json"


def sample_from_run(run: str | Path, prompt: str, max_new_tokens: int = 100, temperature: float = 0.8,
                    top_k: int | None = 50, top_p: float | None = None, seed: int = 0) -> str:
    """The prompt continued by the run's latest checkpoint (the run verified against its manifest first)."""
    found = find_version_folder(run)
    # The checkpoint is checked on load against its .sha256, which local_version verifies.
    run = DataRoot.from_env(str(found.parent.parent)).local_version(found.parent.name, found.name,
                                                                   checked_on_read=(CHECKPOINT_FILES,))
    checkpoint = latest_checkpoint(run)
    if checkpoint is None:
        raise FileNotFoundError(f"{run} has no checkpoint (checkpoints/latest): is it a pretrain run folder?")
    state = load_checkpoint(checkpoint)
    model = GPT(GPTConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    encoder = load_encoder(tokenizer_of_run(run))
    ids = [encoder.eot_id] + encoder.encode(prompt)  # documents start after end-of-text, as in the shards
    out = generate(model, torch.tensor([ids]), max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                   generator=torch.Generator().manual_seed(seed), eos_id=encoder.eot_id)
    new = [t for t in out[0, len(ids):].tolist() if t != encoder.eot_id]
    return prompt + encoder.decode(new)
