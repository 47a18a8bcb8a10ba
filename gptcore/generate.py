"""Autoregressive sampling from a `GPT`, with a KV cache, temperature, top-k and top-p (nucleus) filtering:
`generate` on token ids, `generate_text` from a prompt string to its continuation.

Context limit: learned position embeddings end at `block_size`. While prompt + generated tokens fit, the cache
holds every position and each step feeds one token. Once the sequence is longer, every step re-encodes the last
`block_size` tokens from position 0 (a sliding window, as the uncached path does), because shifting the
positions invalidates all cached keys and values. The output is the same either way; only speed differs.
"""

from __future__ import annotations

import torch

from gptcore.encoding import Encoder
from gptcore.model import GPT, KVCache


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the smallest set whose probability reaches top_p.

    logits: (B, V). The most likely token always survives, so sampling never sees an empty set.
    """
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k={top_k} must be >= 1 (or None to disable)")
        kth_largest = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p={top_p} must be in (0, 1] (or None to disable)")
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)  # (B, V)
        sorted_probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p (Holtzman et al. 2020).
        mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        drop_sorted = mass_before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token per row from logits (B, V) -> (B, 1). temperature=0 means greedy (argmax)."""
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0 (0 means greedy decoding)")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    probs = torch.softmax(filter_logits(logits.float() / temperature, top_k, top_p), dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


@torch.no_grad()
def generate(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
) -> torch.Tensor:
    """Extend prompts idx (B, T) by up to max_new_tokens; returns (B, T + n).

    Runs the model in eval mode (no dropout) and restores its previous mode. With `eos_id`, generation stops
    once every row has produced it; rows that finished earlier are padded with `eos_id`.
    """
    if idx.dim() != 2 or idx.size(1) == 0:
        raise ValueError(f"idx must be a non-empty (batch, tokens) tensor of token ids, got shape {tuple(idx.shape)}")
    block_size = model.config.block_size
    was_training = model.training
    model.eval()
    cache = KVCache(model.config, idx.size(0)) if use_cache else None
    finished = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    try:
        for _ in range(max_new_tokens):
            logits = _next_token_logits(model, idx, cache, block_size)  # (B, V)
            next_token = sample_next_token(logits, temperature, top_k, top_p, generator)  # (B, 1)
            if eos_id is not None:
                next_token = next_token.masked_fill(finished[:, None], eos_id)
                finished |= next_token[:, 0] == eos_id
            idx = torch.cat([idx, next_token], dim=1)
            if eos_id is not None and bool(finished.all()):
                break
    finally:
        model.train(was_training)
    return idx


def generate_text(
    model: GPT,
    encoder: Encoder,
    prompt: str,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    max_prompt_tokens: int | None = None,
    device: torch.device | str | None = None,
) -> str:
    """The model's continuation of `prompt`, without the prompt; end-of-text ids are dropped from it.

    The prompt follows the end-of-text id, as every document does in the token shards. `max_prompt_tokens` keeps
    only its last tokens (a long text loses its start, never its end). Sampling draws from a generator seeded with
    `seed` on `device` (default: the model's), so the same call gives the same text.
    """
    device = next(model.parameters()).device if device is None else device
    ids = [encoder.eot_id] + encoder.encode(prompt)
    if max_prompt_tokens is not None:
        ids = ids[-max_prompt_tokens:]
    generator = torch.Generator(device=device).manual_seed(seed)
    out = generate(model, torch.tensor([ids], device=device), max_new_tokens, temperature=temperature, top_k=top_k,
                   top_p=top_p, generator=generator, eos_id=encoder.eot_id)
    return encoder.decode([t for t in out[0, len(ids):].tolist() if t != encoder.eot_id])


def _next_token_logits(model: GPT, idx: torch.Tensor, cache: KVCache | None, block_size: int) -> torch.Tensor:
    """Logits (B, V) for the token after idx, feeding only what the cache has not seen when it still fits."""
    if cache is not None and cache.length > 0 and idx.size(1) <= block_size:
        new_tokens = idx[:, cache.length :]  # (B, 1) after the first step
    else:
        window = idx[:, -block_size:]  # (B, <= block_size): positions restart at 0
        if cache is not None:
            cache.reset()
        new_tokens = window
    logits, _ = model(new_tokens, kv_cache=cache)
    return logits[:, -1, :]
