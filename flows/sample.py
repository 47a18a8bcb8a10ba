"""``gptforge generate``: sample from a pretraining run, with the tokenizer found through the run's lineage."""
from __future__ import annotations

from pathlib import Path

from flows.run_checkpoint import latest_run_checkpoint
from gptcore.checkpoint import load_model
from gptcore.encoding import load_encoder
from gptcore.generate import generate_text


def sample_from_run(run: str | Path, prompt: str, max_new_tokens: int = 100, temperature: float = 0.8,
                    top_k: int | None = 50, top_p: float | None = None, seed: int = 0) -> str:
    """The prompt continued by the run's latest checkpoint (the run verified against its manifest first)."""
    found = latest_run_checkpoint(run)
    model, encoder = load_model(found.checkpoint), load_encoder(found.tokenizer)
    return prompt + generate_text(model, encoder, prompt, max_new_tokens, temperature=temperature, top_k=top_k,
                                  top_p=top_p, seed=seed)
