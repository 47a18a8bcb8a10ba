"""Loss, perplexity and bits per byte of a language model on one split of a tokens folder.

The split is read as one stream of token ids (shards in index order, each document preceded by the end-of-text
id, see ``gptcore.shards``) and cut into consecutive windows of ``seq_len`` tokens; every token after the first is a
target exactly once (the last, shorter window included), so the sum of losses is the code length of the whole split.
Windows do not overlap: the first tokens of each window see less context than a sliding-window evaluation would give
them, which makes the numbers slightly pessimistic and comparable with nanoGPT's validation loss.

Perplexity depends on the tokenizer (a larger vocabulary means fewer, harder tokens), so models with different
tokenizers are compared by **bits per byte**: the summed loss in bits divided by the UTF-8 bytes of the text those
tokens stand for. The tokens index records token counts but not byte counts, so the bytes are measured by decoding
each document's ids with the split's own tokenizer and encoding the text as UTF-8. The end-of-text tokens are
predicted (knowing where a document ends is information) but are not text, so they add loss and no bytes. With a
GPT-1-style tokenizer the decoded text is the lowercased, standardised text the model saw, so its bytes are those.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gptcore.data import TokenDataset
from gptcore.encoding import Encoder
from gptcore.model import GPT


@dataclass(frozen=True)
class Perplexity:
    """What a model scores on a split. ``loss`` is nats per predicted token."""

    split: str
    tokens: int  # predicted tokens (every token of the evaluated stream but the first)
    documents: int  # documents the evaluated tokens belong to (a cut last one included)
    bytes: int  # UTF-8 bytes of the decoded documents
    loss: float
    perplexity: float
    bits_per_token: float
    bits_per_byte: float

    def as_dict(self) -> dict:
        return asdict(self)


def split_stream(tokens_folder: str | Path, split: str = "val", max_tokens: int | None = None) -> np.ndarray:
    """The split's token ids as one int64 array (the first ``max_tokens`` of them when given)."""
    data = TokenDataset(tokens_folder, split)
    limit = data.tokens if max_tokens is None else min(max_tokens, data.tokens)
    if limit < 2:
        raise ValueError(f"the {split!r} split of {tokens_folder} has {limit} token(s) to evaluate; a loss needs at "
                         "least 2 (raise max_tokens or re-tokenize with a larger validation fraction)")
    out = np.empty(limit, dtype=np.int64)
    filled = 0
    for name in data.shard_files:
        if filled == limit:
            break
        shard = np.memmap(data.index.folder / name, dtype=np.dtype(data.index.dtype), mode="r")
        piece = shard[:limit - filled]
        out[filled:filled + piece.size] = piece
        filled += piece.size
    return out


def text_bytes(ids: np.ndarray, decoder: Encoder) -> tuple[int, int]:
    """(UTF-8 bytes, documents) of a token stream: each run of ids between end-of-text ids decoded on its own."""
    boundaries = np.flatnonzero(ids == decoder.eot_id)
    starts = np.concatenate([[0], boundaries + 1])
    ends = np.concatenate([boundaries, [ids.size]])
    total, documents = 0, 0
    for start, end in zip(starts, ends):
        if end > start:
            total += len(decoder.decode(ids[start:end].tolist()).encode("utf-8"))
            documents += 1
    return total, documents


@torch.no_grad()
def summed_loss(model: GPT, ids: np.ndarray, seq_len: int, batch_size: int = 8,
                device: torch.device | str = "cpu") -> float:
    """Sum over ids[1:] of -log p(token | preceding tokens in its window), in nats, windows of ``seq_len``."""
    if not 1 <= seq_len <= model.config.block_size:
        raise ValueError(f"seq_len={seq_len} must be between 1 and the model's block_size {model.config.block_size}")
    was_training = model.training
    model.eval()
    total = 0.0
    full = (ids.size - 1) // seq_len  # windows with seq_len targets; the remainder is one shorter window
    try:
        for first in range(0, full, batch_size):
            rows = min(batch_size, full - first)
            span = torch.from_numpy(ids[first * seq_len:(first + rows) * seq_len + 1]).to(device)
            total += _window_loss(model, span[:-1].view(rows, seq_len), span[1:].view(rows, seq_len))
        if full * seq_len + 1 < ids.size:
            tail = torch.from_numpy(ids[full * seq_len:]).to(device)
            total += _window_loss(model, tail[None, :-1], tail[None, 1:])
    finally:
        model.train(was_training)
    return total


def _window_loss(model: GPT, x: torch.Tensor, y: torch.Tensor) -> float:
    logits, _ = model(x)  # (B, T, V)
    return float(F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1), reduction="sum"))


def evaluate_perplexity(model: GPT, tokens_folder: str | Path, decoder: Encoder, split: str = "val",
                        seq_len: int | None = None, batch_size: int = 8, max_tokens: int | None = None,
                        device: torch.device | str = "cpu") -> Perplexity:
    """Loss, perplexity and bits per byte of ``model`` on a split (default: all of it, windows of block_size)."""
    ids = split_stream(tokens_folder, split, max_tokens)
    nats = summed_loss(model, ids, seq_len or model.config.block_size, batch_size, device)
    n_bytes, documents = text_bytes(ids, decoder)
    if n_bytes == 0:
        raise ValueError(f"the {split!r} split of {tokens_folder} decodes to no text (only end-of-text ids?): "
                         "bits per byte needs documents")
    predicted = ids.size - 1
    loss = nats / predicted
    return Perplexity(split=split, tokens=predicted, documents=documents, bytes=n_bytes, loss=loss,
                      perplexity=math.exp(loss), bits_per_token=loss / math.log(2),
                      bits_per_byte=nats / math.log(2) / n_bytes)
