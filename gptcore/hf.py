"""Move GPT-2 weights between gptcore and a Hugging Face directory (`config.json` + `model.safetensors`).

Only local files are read or written; nothing is downloaded. Keys match by name because gptcore uses the
published GPT-2 names. The one real difference: GPT-2's `Conv1D` stores weights as (in, out), `nn.Linear` as
(out, in), so `c_attn`, `c_fc` and both `c_proj` matrices are transposed on the way in and out.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from gptcore.model import GPT, GPTConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Spellings of the tanh-approximated GELU that gptcore's MLP computes.
TANH_GELU_NAMES = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
# Causal-mask buffers that older checkpoints saved alongside the weights; gptcore needs none.
MASK_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")


def config_from_hf(hf_config: dict[str, object], source: str = CONFIG_FILE) -> GPTConfig:
    """GPTConfig from the fields of a transformers GPT2Config dict; rejects variants gptcore cannot compute."""
    if hf_config.get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"{source}: model_type={hf_config['model_type']!r}; only 'gpt2' checkpoints are supported")
    activation = hf_config.get("activation_function", "gelu_new")
    if activation not in TANH_GELU_NAMES:
        raise ValueError(
            f"{source}: activation_function={activation!r}; gptcore uses tanh-approximated GELU ({TANH_GELU_NAMES})"
        )
    if not hf_config.get("scale_attn_weights", True) or hf_config.get("scale_attn_by_inverse_layer_idx", False):
        raise ValueError(f"{source}: non-standard attention scaling is not supported; expected 1/sqrt(head size)")
    n_embd = int(hf_config.get("n_embd", 768))
    n_inner = hf_config.get("n_inner")
    return GPTConfig(
        vocab_size=int(hf_config.get("vocab_size", 50257)),
        block_size=int(hf_config.get("n_positions", hf_config.get("n_ctx", 1024))),
        n_layer=int(hf_config.get("n_layer", 12)),
        n_head=int(hf_config.get("n_head", 12)),
        n_embd=n_embd,
        n_inner=int(n_inner) if n_inner is not None else 4 * n_embd,
        dropout=float(hf_config.get("resid_pdrop", 0.1)),
        bias=True,
        layer_norm="pre",
        tie_embeddings=bool(hf_config.get("tie_word_embeddings", True)),
        layer_norm_epsilon=float(hf_config.get("layer_norm_epsilon", 1e-5)),
    )


def load_hf_gpt2(directory: str | Path) -> GPT:
    """A gptcore GPT holding the weights of the Hugging Face GPT-2 checkpoint in `directory`."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; a GPT-2 directory needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    config = config_from_hf(json.loads(config_path.read_text()), source=str(config_path))
    model = GPT(config)

    state: dict[str, torch.Tensor] = {}
    for key, tensor in load_file(weights_path).items():
        if key.endswith(MASK_BUFFER_SUFFIXES):
            continue
        if not key.startswith(("transformer.", "lm_head.")):
            key = "transformer." + key  # checkpoints saved from GPT2Model (e.g. the released gpt2) lack the prefix
        state[key] = tensor.t() if key.endswith(CONV1D_SUFFIXES) else tensor
    if config.tie_embeddings:
        state.pop("lm_head.weight", None)  # same matrix as wte; loaded through it
    expected = {k for k in model.state_dict() if not (config.tie_embeddings and k == "lm_head.weight")}
    missing, unexpected = expected - state.keys(), state.keys() - expected
    if missing or unexpected:
        raise ValueError(
            f"{weights_path}: tensors do not match a GPT-2 of this config; "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    model.load_state_dict(state, strict=False)  # lm_head.weight is filled through the tie
    return model


def save_hf_gpt2(model: GPT, directory: str | Path, eos_token_id: int | None = None) -> Path:
    """Write `model` as a GPT2LMHeadModel directory that `transformers` loads with from_pretrained.

    `eos_token_id` (the tokenizer's end-of-text id, 50256 for GPT-2 BPE) is written as both bos and eos id;
    None leaves them unset, because the model alone does not know its tokenizer.
    """
    config = model.config
    if config.layer_norm != "pre":
        raise ValueError(
            "only pre-LN models (GPT-2 layout) can be exported to GPT-2 format; this model is post-LN (GPT-1)"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    tensors: dict[str, torch.Tensor] = {}
    for key, tensor in model.state_dict().items():
        if key == "lm_head.weight" and config.tie_embeddings:
            continue  # safetensors stores no shared tensors; transformers re-ties lm_head to wte
        tensor = tensor.t() if key.endswith(CONV1D_SUFFIXES) else tensor
        tensors[key] = tensor.detach().cpu().contiguous()
    if not config.bias:
        # GPT-2 always has biases; zeros compute exactly what a bias-free model computes.
        for key, tensor in list(tensors.items()):
            if key.endswith(".weight") and not key.endswith(("wte.weight", "wpe.weight", "lm_head.weight")):
                bias_size = tensor.size(-1) if key.endswith(CONV1D_SUFFIXES) else tensor.size(0)
                tensors[key[: -len("weight")] + "bias"] = torch.zeros(bias_size, dtype=tensor.dtype)
    save_file(tensors, directory / WEIGHTS_FILE, metadata={"format": "pt"})

    hf_config = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": config.n_inner,
        "activation_function": "gelu_new",
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "initializer_range": 0.02,
        "tie_word_embeddings": config.tie_embeddings,
        "bos_token_id": eos_token_id,
        "eos_token_id": eos_token_id,
        "dtype": str(model.transformer.wte.weight.dtype).removeprefix("torch."),
    }
    (directory / CONFIG_FILE).write_text(json.dumps(hf_config, indent=2) + "\n")
    return directory
