"""The GPT-1 / GPT-2 decoder-only transformer, in one file, in reading order.

Attention -> MLP -> Block -> GPT. Parameter names follow the published GPT-2 checkpoints
(`transformer.wte`, `transformer.h.{i}.attn.c_attn`, ...) so weights map by key (see `gptcore.hf`).

Papers referenced in comments:
  GPT-1: Radford et al. 2018, "Improving Language Understanding by Generative Pre-Training", section 4.1.
  GPT-2: Radford et al. 2019, "Language Models are Unsupervised Multitask Learners", section 2.3 and table 2.

Shape legend: B batch, T sequence length, C n_embd, nh n_head, hs head size (C // nh), V vocab size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    """Hyper-parameters of one model. Defaults are GPT-2 small (GPT-2 table 2)."""

    vocab_size: int = 50257  # GPT-2 byte-level BPE: 50,000 merges + 256 bytes + <|endoftext|>
    block_size: int = 1024  # context length; GPT-2 doubled GPT-1's 512
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    n_inner: int | None = None  # feed-forward width; None means 4 * n_embd (GPT-1: 3072 for 768)
    dropout: float = 0.1  # GPT-1 used 0.1 on residual, embedding and attention
    bias: bool = True  # both papers use biases in Linear and LayerNorm
    layer_norm: Literal["pre", "post"] = "pre"  # GPT-2 moved LayerNorm to the block input (section 2.3)
    tie_embeddings: bool = True  # lm_head shares the token embedding matrix (both papers)
    layer_norm_epsilon: float = 1e-5
    # GPT-2 scales residual projections at init by 1/sqrt(N), N = residual layers = 2 * n_layer (section 2.3).
    # GPT-1 used plain N(0, 0.02) everywhere.
    scale_residual_init: bool = True

    def __post_init__(self) -> None:
        if self.n_inner is None:
            self.n_inner = 4 * self.n_embd
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; choose n_head dividing n_embd"
            )
        if self.layer_norm not in ("pre", "post"):
            raise ValueError(f"layer_norm={self.layer_norm!r} must be 'pre' (GPT-2) or 'post' (GPT-1)")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head


PRESETS: dict[str, GPTConfig] = {
    # GPT-1 section 4.1: 12 layers, 768 dims, 12 heads, 3072 FFN, 512 tokens, 40,478 BPE vocab, post-LN
    # (LayerNorm after each residual add, as in the original Transformer), so no final LayerNorm.
    "gpt1": GPTConfig(
        vocab_size=40478,
        block_size=512,
        n_layer=12,
        n_head=12,
        n_embd=768,
        n_inner=3072,
        layer_norm="post",
        scale_residual_init=False,
    ),
    # GPT-2 table 2 (head counts from the released checkpoints: 64-dim heads).
    "gpt2-small": GPTConfig(n_layer=12, n_head=12, n_embd=768),  # 124M
    "gpt2-medium": GPTConfig(n_layer=24, n_head=16, n_embd=1024),  # 355M
    "gpt2-large": GPTConfig(n_layer=36, n_head=20, n_embd=1280),  # 774M
    "gpt2-xl": GPTConfig(n_layer=48, n_head=25, n_embd=1600),  # 1558M
    # Small GPT-2-shaped models that train on a laptop CPU; vocab matches GPT-2 BPE, override for others.
    "tiny": GPTConfig(block_size=64, n_layer=2, n_head=2, n_embd=64, dropout=0.0),
    "small-cpu": GPTConfig(block_size=128, n_layer=4, n_head=4, n_embd=128, dropout=0.0),
}


def config_from_preset(name: str, **overrides: object) -> GPTConfig:
    """A copy of preset `name` with fields replaced by `overrides` (e.g. vocab_size=8192)."""
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    preset = PRESETS[name]
    if "n_embd" in overrides and "n_inner" not in overrides:
        overrides["n_inner"] = None  # re-derive 4 * n_embd rather than keep the preset's width
    return replace(preset, **overrides)


class KVCache:
    """Keys and values of every layer for the positions already seen, for incremental decoding.

    Buffers are allocated on first use with the dtype the layer produced (so bf16 under autocast) and sized to
    block_size: learned position embeddings stop there, so the cache cannot grow past it.
    """

    def __init__(self, config: GPTConfig, batch_size: int) -> None:
        self.config = config
        self.batch_size = batch_size
        self.length = 0  # positions already stored
        self._layers: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * config.n_layer

    def reset(self) -> None:
        self.length = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nh, T, hs) at positions [length, length + T); return all keys/values so far."""
        if self._layers[layer] is None:
            shape = (self.batch_size, self.config.n_head, self.config.block_size, self.config.head_size)
            self._layers[layer] = (
                torch.empty(shape, dtype=k.dtype, device=k.device),
                torch.empty(shape, dtype=v.dtype, device=v.device),
            )
        keys, values = self._layers[layer]
        end = self.length + k.size(2)
        keys[:, :, self.length : end] = k
        values[:, :, self.length : end] = v
        return keys[:, :, :end], values[:, :, :end]


class CausalSelfAttention(nn.Module):
    """Multi-head masked self-attention; one fused projection makes q, k and v (GPT-2's `c_attn`)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)  # residual projection
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)

        past = 0
        if kv_cache is not None:
            past = kv_cache.length
            k, v = kv_cache.update(layer, k, v)  # (B, nh, past + T, hs)

        dropout_p = self.dropout if self.training else 0.0
        if past == 0:
            # Flash / memory-efficient kernel on GPU; the causal mask is implied.
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        elif T == 1:
            # One new token may look at every cached position: no mask needed.
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        else:
            # Several new tokens after a cached prefix: query i sits at absolute position past + i.
            query_pos = torch.arange(past, past + T, device=x.device)[:, None]
            key_pos = torch.arange(past + T, device=x.device)[None, :]
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_pos <= query_pos, dropout_p=dropout_p)

        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble heads: (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward network: C -> n_inner -> C with GELU (GPT-1 section 4.1)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.n_inner, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # the tanh approximation the released GPT-2 code uses
        self.c_proj = nn.Linear(config.n_inner, config.n_embd, bias=config.bias)  # residual projection
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, C)


class Block(nn.Module):
    """One transformer layer. Pre-LN (GPT-2): x + f(LN(x)). Post-LN (GPT-1): LN(x + f(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.pre_ln = config.layer_norm == "pre"
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        if self.pre_ln:
            x = x + self.attn(self.ln_1(x), kv_cache, layer)
            return x + self.mlp(self.ln_2(x))
        x = self.ln_1(x + self.attn(x, kv_cache, layer))
        return self.ln_2(x + self.mlp(x))


class GPT(nn.Module):
    """Token + learned position embeddings, n_layer blocks, (final LayerNorm for pre-LN), LM head."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        modules: dict[str, nn.Module] = {
            "wte": nn.Embedding(config.vocab_size, config.n_embd),
            "wpe": nn.Embedding(config.block_size, config.n_embd),
            "drop": nn.Dropout(config.dropout),
            "h": nn.ModuleList(Block(config) for _ in range(config.n_layer)),
        }
        if config.layer_norm == "pre":
            # Pre-LN leaves the residual stream un-normalised, so GPT-2 adds one LayerNorm before the head.
            modules["ln_f"] = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight  # one (V, C) matrix, one storage
        self._init_weights()

    def _init_weights(self) -> None:
        """N(0, 0.02) for matrices and embeddings (GPT-1 section 4.1), zero biases, unit LayerNorm gains;
        residual projections (`c_proj`) get std 0.02 / sqrt(2 * n_layer) (GPT-2 section 2.3)."""
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer) if self.config.scale_residual_init else 0.02
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                std = residual_std if name.endswith("c_proj") else 0.02
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        *,
        with_logits: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """idx (B, T) token ids -> (logits (B, T, V), mean cross-entropy over targets != -1, or None).

        With `kv_cache`, idx holds only the new tokens; they take positions after the cached ones and the
        cache grows by T. `with_logits=False` (training, evaluation) returns (None, loss): on CPU the loss is then
        computed a chunk of positions at a time (`lm_head_cross_entropy`), never holding the (B, T, V) logits.
        """
        x = self.hidden_states(idx, kv_cache)  # (B, T, C)
        if not with_logits and targets is not None and x.device.type == "cpu":
            return None, lm_head_cross_entropy(x.view(-1, x.size(-1)), self.lm_head.weight, targets.view(-1))
        logits = self.lm_head(x)  # (B, T, V)

        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return (logits if with_logits else None), loss

    def hidden_states(self, idx: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        """idx (B, T) token ids -> the last layer's output (B, T, C), after the final LayerNorm when there is one:
        what the LM head reads, and what GPT-1's fine-tuning heads read at the extract token (section 3.2)."""
        B, T = idx.size()
        start = kv_cache.length if kv_cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(
                f"sequence of {start + T} tokens (cached {start} + new {T}) exceeds block_size="
                f"{self.config.block_size}; crop the input to the last {self.config.block_size} tokens"
            )
        pos = torch.arange(start, start + T, device=idx.device)  # (T,)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for layer, block in enumerate(self.transformer.h):
            x = block(x, kv_cache, layer)
        if "ln_f" in self.transformer:
            x = self.transformer.ln_f(x)
        if kv_cache is not None:
            kv_cache.length += T
        return x

    # ---- bookkeeping used by training and reporting ----

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Unique parameters (a tied matrix counts once). non_embedding=True leaves out the token and position
        embeddings, the count Kaplan et al. (2020) use for scaling laws."""
        total = sum(p.numel() for p in self.parameters())  # parameters() already de-duplicates tied weights
        if non_embedding:
            total -= self.transformer.wte.weight.numel() + self.transformer.wpe.weight.numel()
            if not self.config.tie_embeddings:
                total -= self.lm_head.weight.numel()
        return total

    def decay_parameters(self) -> list[nn.Parameter]:
        """Matrices (dim >= 2: Linear weights, embeddings) — GPT-1's modified L2 applies to these only."""
        return [p for p in self.parameters() if p.requires_grad and p.dim() >= 2]

    def no_decay_parameters(self) -> list[nn.Parameter]:
        """Biases and LayerNorm gains (dim < 2), which weight decay would only pull towards zero."""
        return [p for p in self.parameters() if p.requires_grad and p.dim() < 2]

    def optimizer_groups(self, weight_decay: float) -> list[dict[str, object]]:
        """AdamW parameter groups: `weight_decay` on matrices, none on vectors."""
        return [
            {"params": self.decay_parameters(), "weight_decay": weight_decay},
            {"params": self.no_decay_parameters(), "weight_decay": 0.0},
        ]

    def estimate_flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs (forward + backward) per token: 6 per weight that multiplies an activation, plus
        attention scores and weighted sum, 12 * n_layer * C * T (Kaplan et al. 2020; PaLM appendix B).

        The position table is a lookup, not a matmul, so it is left out; the token matrix counts once, as
        the LM head (its lookup at the input is free).
        """
        T = seq_len if seq_len is not None else self.config.block_size
        matmul_params = self.num_parameters() - self.transformer.wpe.weight.numel()
        if not self.config.tie_embeddings:
            matmul_params -= self.transformer.wte.weight.numel()  # input lookup only; lm_head does the work
        return 6.0 * matmul_params + 12.0 * self.config.n_layer * self.config.n_embd * T


# ---- the LM loss without the logits tensor ----

# Logits per chunk of `lm_head_cross_entropy`: 2 Mi floats (8 MiB). glibc serves requests above its mmap threshold
# (at most 32 MiB) with fresh pages that must be faulted in on every step; chunks below it reuse freed heap memory.
LOSS_CHUNK_ELEMENTS = 1 << 21


def lm_head_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """`F.cross_entropy(hidden @ weight.T, targets, ignore_index=-1)`, computed `LOSS_CHUNK_ELEMENTS` logits at a
    time: hidden (N, C), weight (V, C), targets (N,). Same value and gradients (up to float rounding) as the
    one-matrix form, without its (N, V) logits, their log-softmax and their gradient, which on a CPU cost more
    in memory traffic and page faults than the matmuls themselves."""
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _ChunkedLMLoss.apply(hidden, weight, targets)
    total, count, _, _ = _chunked_lm_loss(hidden, weight, targets, want_grads=False)
    return total / count


class _ChunkedLMLoss(torch.autograd.Function):
    """The loss is a scalar, so each chunk's gradients (softmax - one-hot) are taken in the forward pass, while
    its logits are at hand, and backward only scales them by the incoming gradient."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        total, count, grad_hidden, grad_weight = _chunked_lm_loss(hidden, weight, targets, want_grads=True)
        ctx.save_for_backward(grad_hidden, grad_weight, count)
        ctx.weight_dtype = weight.dtype
        return total / count

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        grad_hidden, grad_weight, count = ctx.saved_tensors
        scale = grad_loss / count
        return grad_hidden * scale, (grad_weight * scale).to(ctx.weight_dtype), None


def _chunked_lm_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, want_grads: bool
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(summed loss, positions counted, and with `want_grads` the summed loss's gradients for hidden and weight)."""
    keep = targets != -1
    all_kept = bool(keep.all())
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    grad_hidden = torch.empty_like(hidden) if want_grads else None
    grad_weight = torch.zeros_like(weight, dtype=torch.float32) if want_grads else None
    rows = max(1, LOSS_CHUNK_ELEMENTS // weight.size(0))
    for start in range(0, hidden.size(0), rows):
        h, t, k = hidden[start:start + rows], targets[start:start + rows], keep[start:start + rows]
        t = t.clamp(min=0)[:, None]  # an ignored position reads class 0, then gets weight 0
        log_probs = torch.log_softmax((h @ weight.t()).float(), dim=-1)  # (rows, V)
        picked = log_probs.gather(1, t).squeeze(1)
        total -= picked.sum() if all_kept else (picked * k).sum()
        if want_grads:
            grad_logits = log_probs.exp_().scatter_add_(1, t, -k[:, None].float())  # softmax - one-hot
            if not all_kept:
                grad_logits.mul_(k[:, None])
            grad_logits = grad_logits.to(h.dtype)
            grad_hidden[start:start + rows] = grad_logits @ weight.to(h.dtype)
            grad_weight += grad_logits.t() @ h
    return total, keep.sum(), grad_hidden, grad_weight
