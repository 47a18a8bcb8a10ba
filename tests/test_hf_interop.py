"""Specification of gptcore.hf: GPT-2 weights move both ways between gptcore and `transformers`, GPT-1 (post-LN)
weights and GPT-1 choice heads go to `transformers`; offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from gptcore.hf import load_hf_gpt2, save_hf_gpt2, save_hf_model, save_hf_openai_gpt
from gptcore.model import GPT, config_from_preset

transformers = pytest.importorskip("transformers")

VOCAB = 97


def tiny_hf_model(**overrides: object) -> "transformers.GPT2LMHeadModel":
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0, **overrides
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # non-zero biases and LayerNorm params, so a dropped or misplaced tensor shows up
        for name, param in model.named_parameters():
            if "ln_" in name or name.endswith(".bias"):
                param.add_(0.1 * torch.randn_like(param))
    return model


def tiny_gptcore_model(**overrides: object) -> GPT:
    torch.manual_seed(0)
    return GPT(config_from_preset("tiny", vocab_size=VOCAB, block_size=32, n_embd=32, n_head=4, **overrides)).eval()


def tokens() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 20), generator=torch.Generator().manual_seed(1))


def test_transformers_checkpoint_loads_into_gptcore_with_same_logits(tmp_path: Path) -> None:
    hf_model = tiny_hf_model()
    hf_model.save_pretrained(tmp_path)
    ours = load_hf_gpt2(tmp_path).eval()
    assert ours.config.block_size == 32 and ours.config.n_inner == 128
    with torch.no_grad():
        assert torch.allclose(ours(tokens())[0], hf_model(tokens()).logits, atol=1e-5)


def test_gptcore_model_saves_into_a_directory_transformers_loads_with_same_logits(tmp_path: Path) -> None:
    ours = tiny_gptcore_model()
    save_hf_gpt2(ours, tmp_path, eos_token_id=0)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["architectures"] == ["GPT2LMHeadModel"]
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.allclose(hf_model(tokens()).logits, ours(tokens())[0], atol=1e-5)


@pytest.mark.parametrize("overrides", [{"tie_embeddings": False}, {"bias": False}])
def test_untied_and_bias_free_models_round_trip_through_transformers(tmp_path: Path, overrides: dict) -> None:
    ours = tiny_gptcore_model(**overrides)
    save_hf_gpt2(ours, tmp_path)
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    back = load_hf_gpt2(tmp_path).eval()
    with torch.no_grad():
        expected = ours(tokens())[0]
        assert torch.allclose(hf_model(tokens()).logits, expected, atol=1e-5)
        assert torch.allclose(back(tokens())[0], expected, atol=1e-5)


def test_checkpoint_without_transformer_prefix_and_with_mask_buffers_loads(tmp_path: Path) -> None:
    """The released GPT-2 weights were saved from GPT2Model: keys like `h.0.attn.c_attn.weight`, plus masks."""
    hf_model = tiny_hf_model()
    hf_model.save_pretrained(tmp_path)
    state = {k.removeprefix("transformer."): v.contiguous() for k, v in hf_model.transformer.state_dict().items()}
    state["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 32, 32))
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with torch.no_grad():
        assert torch.allclose(load_hf_gpt2(tmp_path).eval()(tokens())[0], hf_model(tokens()).logits, atol=1e-5)


def test_post_ln_gpt1_layout_is_refused_for_gpt2_export(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="post-LN"):
        save_hf_gpt2(tiny_gptcore_model(layer_norm="post"), tmp_path)


@pytest.mark.parametrize("overrides", [{}, {"tie_embeddings": False}, {"bias": False}])
def test_post_ln_gpt1_model_saves_as_openai_gpt_with_same_logits(tmp_path: Path, overrides: dict) -> None:
    ours = tiny_gptcore_model(layer_norm="post", **overrides)
    save_hf_model(ours, tmp_path, eos_token_id=0)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "openai-gpt"
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(hf_model).__name__ == "OpenAIGPTLMHeadModel"
    with torch.no_grad():
        assert torch.allclose(hf_model(tokens()).logits, ours(tokens())[0], atol=1e-5)


def test_openai_gpt_export_refuses_an_mlp_width_it_cannot_compute(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="4 \\* n_embd"):
        save_hf_openai_gpt(tiny_gptcore_model(layer_norm="post", n_inner=96), tmp_path)


@pytest.mark.parametrize("layer_norm, model_class", [("pre", "GPT2DoubleHeadsModel"),
                                                     ("post", "OpenAIGPTDoubleHeadsModel")])
def test_a_choice_head_saves_as_the_double_heads_model_reading_the_given_token(tmp_path: Path, layer_norm: str,
                                                                               model_class: str) -> None:
    ours = tiny_gptcore_model(layer_norm=layer_norm)
    head = torch.nn.Linear(32, 1)
    save_hf_model(ours, tmp_path, eos_token_id=0, choice_head=head)
    hf_model = getattr(transformers, model_class).from_pretrained(tmp_path).eval()
    positions = torch.tensor([7, 19])  # one "extract" position per sequence
    with torch.no_grad():
        expected = head(ours.hidden_states(tokens())[torch.arange(2), positions]).squeeze(-1)  # (2,)
        mc_logits = hf_model(tokens()[None], mc_token_ids=positions[None]).mc_logits  # one example, 2 choices
        assert torch.allclose(mc_logits[0], expected, atol=1e-5)


def test_checkpoint_with_exact_gelu_is_refused(tmp_path: Path) -> None:
    tiny_hf_model(activation_function="gelu").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="activation_function='gelu'"):
        load_hf_gpt2(tmp_path)


def test_missing_files_name_the_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_gpt2(tmp_path)
