"""Specification of gptcore.model and gptcore.generate: presets, shapes, init, tying, decay groups, sampling."""

from __future__ import annotations

import math

import pytest
import torch

from gptcore.generate import filter_logits, generate, sample_next_token
import gptcore.model
from gptcore.model import GPT, PRESETS, GPTConfig, KVCache, config_from_preset, lm_head_cross_entropy

VOCAB = 101


def tiny_model(seed: int = 0, **overrides: object) -> GPT:
    torch.manual_seed(seed)
    return GPT(config_from_preset("tiny", vocab_size=VOCAB, **overrides)).eval()


def meta_model(name: str) -> GPT:
    with torch.device("meta"):  # shapes only: counts parameters of billion-weight presets instantly
        return GPT(PRESETS[name])


# ---- presets ----


def test_gpt2_small_has_124m_parameters_with_tied_embeddings() -> None:
    model = meta_model("gpt2-small")
    assert model.num_parameters() == 124_439_808
    assert model.lm_head.weight is model.transformer.wte.weight


@pytest.mark.parametrize(
    ("name", "millions"), [("gpt2-medium", 355), ("gpt2-large", 774), ("gpt2-xl", 1558), ("gpt1", 117)]
)
def test_published_presets_match_paper_parameter_counts(name: str, millions: int) -> None:
    assert round(meta_model(name).num_parameters() / 1e6) == millions


def test_gpt1_preset_is_post_ln_without_final_layernorm() -> None:
    config = PRESETS["gpt1"]
    assert (config.layer_norm, config.block_size, config.vocab_size, config.n_inner) == ("post", 512, 40478, 3072)
    assert "ln_f" not in meta_model("gpt1").transformer


def test_post_ln_block_output_is_layer_normalised() -> None:
    model = tiny_model(layer_norm="post")
    hidden = model.transformer.wte(torch.randint(0, VOCAB, (2, 16))) + model.transformer.wpe(torch.arange(16))
    out = model.transformer.h[0](hidden)  # LayerNorm comes last, with unit gain and zero bias at init
    assert torch.allclose(out.mean(-1), torch.zeros(2, 16), atol=1e-5)
    assert torch.allclose(out.var(-1, unbiased=False), torch.ones(2, 16), atol=1e-3)


def test_config_from_preset_applies_overrides_and_rederives_ffn_width() -> None:
    config = config_from_preset("tiny", n_embd=96, n_head=3)
    assert (config.n_embd, config.n_inner, config.n_layer) == (96, 384, 2)
    with pytest.raises(KeyError, match="unknown model preset"):
        config_from_preset("gpt5")


def test_config_rejects_head_count_that_does_not_divide_width() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        GPTConfig(n_embd=64, n_head=3)


# ---- forward ----


def test_forward_without_targets_returns_logits_for_every_position() -> None:
    logits, loss = tiny_model()(torch.randint(0, VOCAB, (3, 17)))
    assert logits.shape == (3, 17, VOCAB)
    assert loss is None


def test_initial_loss_is_close_to_log_vocab_size() -> None:
    idx = torch.randint(0, VOCAB, (4, 64))
    _, loss = tiny_model()(idx, targets=torch.randint(0, VOCAB, (4, 64)))
    assert loss is not None
    assert abs(loss.item() - math.log(VOCAB)) < 0.1


def test_loss_ignores_targets_marked_minus_one() -> None:
    model = tiny_model()
    idx, targets = torch.randint(0, VOCAB, (2, 8)), torch.randint(0, VOCAB, (2, 8))
    masked = targets.clone()
    masked[:, 4:] = -1
    _, loss_masked = model(idx, masked)
    logits, _ = model(idx)
    expected = torch.nn.functional.cross_entropy(logits[:, :4].reshape(-1, VOCAB), targets[:, :4].reshape(-1))
    assert torch.allclose(loss_masked, expected)


def one_matrix_loss_and_grads(model: GPT, idx: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, list]:
    model.zero_grad(set_to_none=True)
    logits, loss = model(idx, targets)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("chunk_elements", [VOCAB, 5 * VOCAB, 1 << 21])  # 1 row per chunk, 5, all rows in one
def test_the_loss_without_logits_equals_cross_entropy_over_the_logits_in_value_and_gradients(monkeypatch,
                                                                                              chunk_elements) -> None:
    monkeypatch.setattr(gptcore.model, "LOSS_CHUNK_ELEMENTS", chunk_elements)
    model = tiny_model().train()
    idx, targets = torch.randint(0, VOCAB, (3, 16)), torch.randint(0, VOCAB, (3, 16))
    targets[1, 5:] = -1  # ignored positions inside and across chunks
    expected_loss, expected_grads = one_matrix_loss_and_grads(model, idx, targets)

    model.zero_grad(set_to_none=True)
    logits, loss = model(idx, targets, with_logits=False)
    loss.backward()
    assert logits is None
    assert torch.allclose(loss, expected_loss, rtol=1e-6, atol=0)
    for grad, expected in zip((p.grad for p in model.parameters()), expected_grads):
        assert torch.allclose(grad, expected, rtol=1e-4, atol=1e-7)


def test_the_loss_without_logits_takes_no_gradients_under_no_grad_and_matches_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    hidden, weight = torch.randn(40, 8, requires_grad=True), torch.randn(VOCAB, 8, requires_grad=True)
    targets = torch.randint(0, VOCAB, (40,))
    expected = torch.nn.functional.cross_entropy(hidden @ weight.t(), targets)
    with torch.no_grad():
        loss = lm_head_cross_entropy(hidden, weight, targets)
    assert loss.grad_fn is None and torch.allclose(loss, expected, rtol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        one_matrix = torch.nn.functional.cross_entropy(hidden @ weight.t(), targets)
        chunked = lm_head_cross_entropy(hidden, weight, targets)
    assert torch.allclose(chunked, one_matrix, rtol=1e-3)


def test_forward_rejects_sequences_longer_than_block_size() -> None:
    with pytest.raises(ValueError, match="exceeds block_size=64"):
        tiny_model()(torch.zeros(1, 65, dtype=torch.long))


# ---- init, tying, optimizer groups ----


def test_lm_head_shares_storage_with_token_embedding_only_when_tied() -> None:
    tied, untied = tiny_model(), tiny_model(tie_embeddings=False)
    assert tied.lm_head.weight.data_ptr() == tied.transformer.wte.weight.data_ptr()
    assert untied.lm_head.weight.data_ptr() != untied.transformer.wte.weight.data_ptr()
    assert untied.num_parameters() == tied.num_parameters() + VOCAB * 64


def test_residual_projections_are_initialised_with_scaled_std() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, block_size=16, n_layer=8, n_head=4, n_embd=256))
    residual = torch.cat([b.attn.c_proj.weight.flatten() for b in model.transformer.h])
    other = torch.cat([b.mlp.c_fc.weight.flatten() for b in model.transformer.h])
    assert residual.std().item() == pytest.approx(0.02 / math.sqrt(2 * 8), rel=0.02)
    assert other.std().item() == pytest.approx(0.02, rel=0.02)
    assert all(torch.count_nonzero(p) == 0 for n, p in model.named_parameters() if n.endswith(".bias"))


def test_gpt1_initialises_residual_projections_like_every_other_matrix() -> None:
    torch.manual_seed(0)
    model = GPT(config_from_preset("gpt1", vocab_size=VOCAB, n_layer=8, n_embd=256, n_head=4, block_size=16))
    residual = torch.cat([b.attn.c_proj.weight.flatten() for b in model.transformer.h])
    assert residual.std().item() == pytest.approx(0.02, rel=0.02)


def test_weight_decay_applies_to_matrices_only_and_covers_every_parameter_once() -> None:
    model = tiny_model()
    decay_group, no_decay_group = model.optimizer_groups(weight_decay=0.01)
    assert decay_group["weight_decay"] == 0.01 and no_decay_group["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay_group["params"])
    assert all(p.dim() < 2 for p in no_decay_group["params"])
    grouped = [id(p) for p in [*decay_group["params"], *no_decay_group["params"]]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # tied matrix appears once
    torch.optim.AdamW(model.optimizer_groups(0.01), lr=1e-3)  # accepted as-is


def test_flops_per_token_counts_matmul_weights_and_attention() -> None:
    model = meta_model("gpt2-small")
    matmul_weights = 124_439_808 - 1024 * 768  # the position table is a lookup
    assert model.estimate_flops_per_token() == 6 * matmul_weights + 12 * 12 * 768 * 1024


# ---- KV cache and generation ----


def test_cached_logits_match_full_forward_at_every_step() -> None:
    model = tiny_model()
    idx = torch.randint(0, VOCAB, (2, 40))
    full_logits, _ = model(idx)
    cache = KVCache(model.config, batch_size=2)
    prefix_logits, _ = model(idx[:, :10], kv_cache=cache)  # prefill
    chunk_logits, _ = model(idx[:, 10:15], kv_cache=cache)  # several tokens after a cached prefix
    step_logits = [model(idx[:, t : t + 1], kv_cache=cache)[0] for t in range(15, 40)]  # one at a time
    cached = torch.cat([prefix_logits, chunk_logits, *step_logits], dim=1)
    assert cache.length == 40
    assert torch.allclose(cached, full_logits, atol=1e-5)


@pytest.mark.parametrize("new_tokens", [20, 90])  # 90 runs past block_size=64: the window slides
def test_cached_and_uncached_greedy_generation_agree(new_tokens: int) -> None:
    model = tiny_model()
    prompt = torch.randint(0, VOCAB, (2, 7))
    cached = generate(model, prompt, new_tokens, temperature=0.0, use_cache=True)
    uncached = generate(model, prompt, new_tokens, temperature=0.0, use_cache=False)
    assert cached.shape == (2, 7 + new_tokens)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached[:, :7], prompt)


def test_top_k_one_sampling_equals_greedy() -> None:
    model = tiny_model()
    prompt = torch.randint(0, VOCAB, (1, 5))
    sampled = generate(model, prompt, 10, top_k=1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(sampled, generate(model, prompt, 10, temperature=0.0))


def test_seeded_sampling_is_reproducible() -> None:
    model = tiny_model()
    prompt = torch.randint(0, VOCAB, (2, 5))
    first = generate(model, prompt, 15, top_p=0.9, generator=torch.Generator().manual_seed(7))
    second = generate(model, prompt, 15, top_p=0.9, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, second)


def test_top_k_restricts_samples_to_the_k_most_likely_tokens() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.5, -1.0, 2.0]]).repeat(500, 1)
    tokens = sample_next_token(logits, top_k=3, generator=torch.Generator().manual_seed(0))
    assert set(tokens.flatten().tolist()) == {1, 3, 5}


def test_top_p_keeps_the_smallest_set_that_reaches_the_mass() -> None:
    logits = torch.tensor([[0.05, 0.5, 0.15, 0.3]]).log()
    kept = torch.isfinite(filter_logits(logits, top_p=0.75))
    assert kept.tolist() == [[False, True, False, True]]  # 0.5 + 0.3 reaches 0.75
    tokens = sample_next_token(logits.repeat(500, 1), top_p=0.75, generator=torch.Generator().manual_seed(0))
    assert set(tokens.flatten().tolist()) == {1, 3}


def test_top_p_always_keeps_the_most_likely_token() -> None:
    logits = torch.tensor([[1.0, 5.0, 2.0]])
    assert torch.isfinite(filter_logits(logits, top_p=0.01)).tolist() == [[False, True, False]]


def test_generation_stops_once_every_row_emitted_eos() -> None:
    model = tiny_model()
    prompt = torch.randint(0, VOCAB, (1, 5))
    first_greedy_token = int(generate(model, prompt, 1, temperature=0.0)[0, -1])
    out = generate(model, prompt, 10, temperature=0.0, eos_id=first_greedy_token)
    assert out.shape == (1, 6)


def test_generation_runs_without_dropout_and_restores_training_mode() -> None:
    model = tiny_model(dropout=0.5).train()
    prompt = torch.randint(0, VOCAB, (1, 5))
    assert torch.equal(generate(model, prompt, 5, temperature=0.0), generate(model, prompt, 5, temperature=0.0))
    assert model.training
