"""``gptforge generate``: sample from a pretraining run, with the tokenizer found through the run's lineage."""
from __future__ import annotations

from pathlib import Path

from flows.lineage import find_version_folder, tokenizer_of_run
from flows.store import DataRoot
from gptcore.checkpoint import CHECKPOINT_FILES, latest_checkpoint, load_model
from gptcore.encoding import TOKENIZER_FILE, load_encoder
from gptcore.generate import generate_text


def sample_from_run(run: str | Path, prompt: str, max_new_tokens: int = 100, temperature: float = 0.8,
                    top_k: int | None = 50, top_p: float | None = None, seed: int = 0) -> str:
    """The prompt continued by the run's latest checkpoint (the run verified against its manifest first)."""
    found = find_version_folder(run)
    root = DataRoot.from_env(str(found.parent.parent))
    # The checkpoint is checked on load against its .sha256, which local_version verifies.
    run = root.local_version(found.parent.name, found.name, checked_on_read=(CHECKPOINT_FILES,))
    checkpoint = latest_checkpoint(run)
    if checkpoint is None:
        raise FileNotFoundError(f"{run} has no checkpoint (checkpoints/latest): is it a pretrain run folder?")
    model = load_model(checkpoint)
    encoder = load_encoder(root.local_version("tokenizer", tokenizer_of_run(root, found.name)) / TOKENIZER_FILE)
    return prompt + generate_text(model, encoder, prompt, max_new_tokens, temperature=temperature, top_k=top_k,
                                  top_p=top_p, seed=seed)
