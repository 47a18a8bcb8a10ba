"""Move GPT weights between gptcore and Hugging Face folders that `transformers` opens with no code of ours.

Only local files are read or written; nothing is downloaded. Two architectures, by layer-norm placement:

    pre-LN  (GPT-2)  ↔  model_type "gpt2":       GPT2LMHeadModel,      keys as gptcore's
    post-LN (GPT-1)   →  model_type "openai-gpt": OpenAIGPTLMHeadModel, wte/wpe named tokens_embed/positions_embed

A fine-tuned multiple-choice head (one logit per choice, read at the extract token) is the `multiple_choice_head`
of the `*DoubleHeadsModel` of either architecture. `transformers` has no class for the other GPT-1 heads (its
`*ForSequenceClassification` score layers have no bias), so they are written as a separate head file.

The differences that conversion absorbs: `transformers` stores `c_attn`, `c_fc` and both `c_proj` as `Conv1D`
(in, out), `nn.Linear` is (out, in), so those matrices are transposed; both architectures always have biases, so a
bias-free model is written with zero biases. openai-gpt was checked against gptcore's post-LN computation
(`modeling_openai.py`): the same block `ln_2(n + mlp(n))` with `n = ln_1(x + attn(x))`, no final LayerNorm, tied
embeddings, 1/sqrt(head size) attention scaling, `afn="gelu"` is the tanh GELU (`gelu_new`), and its causal mask
adds -1e4 instead of -inf, whose softmax weight underflows to exactly 0 as well. It fixes the MLP width at
4 * n_embd, so other widths are refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from gptcore.encoding import EOT_TOKEN
from gptcore.model import GPT, GPTConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
GENERATION_CONFIG_FILE = "generation_config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Spellings of the tanh-approximated GELU that gptcore's MLP computes.
TANH_GELU_NAMES = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
# Causal-mask buffers that older checkpoints saved alongside the weights; gptcore needs none.
MASK_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")
# gptcore key prefix → openai-gpt key prefix; every other key is spelled the same.
OPENAI_GPT_RENAMES = {"transformer.wte.": "transformer.tokens_embed.",
                      "transformer.wpe.": "transformer.positions_embed."}
CHOICE_HEAD_PREFIX = "multiple_choice_head.summary."


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


def save_hf_model(model: GPT, directory: str | Path, eos_token_id: int | None = None,
                  choice_head: nn.Linear | None = None, choice_dropout: float = 0.1) -> Path:
    """Write `model` as the `transformers` architecture that computes what it computes: GPT-2 for pre-LN, openai-gpt
    for post-LN. With `choice_head` (a fine-tuned multiple-choice head, C → 1), the DoubleHeads model of it."""
    if model.config.layer_norm == "pre":
        return save_hf_gpt2(model, directory, eos_token_id, choice_head, choice_dropout)
    return save_hf_openai_gpt(model, directory, eos_token_id, choice_head, choice_dropout)


def save_hf_gpt2(model: GPT, directory: str | Path, eos_token_id: int | None = None,
                 choice_head: nn.Linear | None = None, choice_dropout: float = 0.1) -> Path:
    """Write `model` as a GPT2LMHeadModel directory (GPT2DoubleHeadsModel with `choice_head`) that `transformers`
    loads with from_pretrained.

    `eos_token_id` (the tokenizer's end-of-text id, 50256 for GPT-2 BPE) is written as both bos and eos id;
    None leaves them unset, because the model alone does not know its tokenizer.
    """
    config = model.config
    if config.layer_norm != "pre":
        raise ValueError(
            "only pre-LN models (GPT-2 layout) can be exported to GPT-2 format; this model is post-LN (GPT-1): "
            "use save_hf_openai_gpt"
        )
    tensors = _hf_tensors(model, choice_head)
    if config.tie_embeddings:
        del tensors["lm_head.weight"]  # safetensors stores no shared tensors; transformers re-ties lm_head to wte
    hf_config = {
        "model_type": "gpt2",
        "architectures": ["GPT2DoubleHeadsModel" if choice_head is not None else "GPT2LMHeadModel"],
        "n_inner": config.n_inner,
        "activation_function": "gelu_new",
        **_common_config(model, eos_token_id, choice_head, choice_dropout),
    }
    return _write_model(directory, tensors, hf_config)


def save_hf_openai_gpt(model: GPT, directory: str | Path, eos_token_id: int | None = None,
                       choice_head: nn.Linear | None = None, choice_dropout: float = 0.1) -> Path:
    """Write a post-LN (GPT-1) `model` as an OpenAIGPTLMHeadModel directory (OpenAIGPTDoubleHeadsModel with
    `choice_head`); refuses a model openai-gpt would compute differently."""
    config = model.config
    if config.layer_norm != "post":
        raise ValueError("only post-LN models (GPT-1 layout) can be exported to openai-gpt format; this model is "
                         "pre-LN (GPT-2): use save_hf_gpt2")
    if config.n_inner != 4 * config.n_embd:
        raise ValueError(f"openai-gpt fixes the MLP width at 4 * n_embd = {4 * config.n_embd}, this model has "
                         f"n_inner={config.n_inner}: it cannot be exported to openai-gpt without computing differently")
    tensors = {}
    for key, tensor in _hf_tensors(model, choice_head).items():
        for ours, theirs in OPENAI_GPT_RENAMES.items():
            key = key.replace(ours, theirs) if key.startswith(ours) else key
        tensors[key] = tensor
    if config.tie_embeddings:
        # Both copies are stored: the LM head model ties lm_head to tokens_embed, the DoubleHeads model the other
        # way round, so whichever class loads the folder finds the source of its tie.
        tensors["lm_head.weight"] = tensors["lm_head.weight"].clone()
    hf_config = {
        "model_type": "openai-gpt",
        "architectures": ["OpenAIGPTDoubleHeadsModel" if choice_head is not None else "OpenAIGPTLMHeadModel"],
        "afn": "gelu",  # modeling_openai.ACT_FNS["gelu"] is gelu_new, the tanh approximation
        **_common_config(model, eos_token_id, choice_head, choice_dropout),
    }
    return _write_model(directory, tensors, hf_config)


def _hf_tensors(model: GPT, choice_head: nn.Linear | None) -> dict[str, torch.Tensor]:
    """gptcore's state dict in Conv1D orientation, with zero biases where gptcore has none (lm_head included)."""
    tensors: dict[str, torch.Tensor] = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.t() if key.endswith(CONV1D_SUFFIXES) else tensor
        tensors[key] = tensor.detach().cpu().contiguous()
    if not model.config.bias:
        # Both architectures always have biases; zeros compute exactly what a bias-free model computes.
        for key, tensor in list(tensors.items()):
            if key.endswith(".weight") and not key.endswith(("wte.weight", "wpe.weight", "lm_head.weight")):
                bias_size = tensor.size(-1) if key.endswith(CONV1D_SUFFIXES) else tensor.size(0)
                tensors[key[: -len("weight")] + "bias"] = torch.zeros(bias_size, dtype=tensor.dtype)
    if choice_head is not None:
        if choice_head.out_features != 1 or choice_head.bias is None:
            raise ValueError(f"a multiple-choice head maps n_embd to one logit with a bias; got {choice_head}")
        tensors[CHOICE_HEAD_PREFIX + "weight"] = choice_head.weight.detach().cpu().contiguous()
        tensors[CHOICE_HEAD_PREFIX + "bias"] = choice_head.bias.detach().cpu().contiguous()
    return tensors


def _common_config(model: GPT, eos_token_id: int | None, choice_head: nn.Linear | None,
                   choice_dropout: float) -> dict[str, object]:
    config = model.config
    fields: dict[str, object] = {
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_ctx": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
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
    if choice_head is not None:
        # GPT-1's choice head: the final hidden state at the extract token (mc_token_ids), dropout, Linear(C, 1).
        fields.update(summary_type="cls_index", summary_use_proj=True, summary_proj_to_labels=True,
                      summary_activation=None, summary_first_dropout=choice_dropout, num_labels=1)
    return fields


def _write_model(directory: str | Path, tensors: dict[str, torch.Tensor], hf_config: dict[str, object]) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, directory / WEIGHTS_FILE, metadata={"format": "pt"})
    (directory / CONFIG_FILE).write_text(json.dumps(hf_config, indent=2) + "\n")
    return directory


def save_hf_generation_config(directory: str | Path, eot_id: int) -> Path:
    """`generation_config.json`: generation stops at end-of-text, and pads with it (GPT-2 has no pad token)."""
    path = Path(directory) / GENERATION_CONFIG_FILE
    path.write_text(json.dumps({"bos_token_id": eot_id, "eos_token_id": eot_id, "pad_token_id": eot_id},
                               indent=2) + "\n")
    return path


def save_hf_tokenizer(tokenizer: Tokenizer, directory: str | Path, model_max_length: int,
                      added_special_tokens: tuple[str, ...] = (), eot_token: str = EOT_TOKEN) -> Path:
    """Write `tokenizer` as a `PreTrainedTokenizerFast` folder: the same `tokenizer.json`, `eot_token` as bos, eos
    and unk, `model_max_length` = the model's context.

    `added_special_tokens` are appended after the vocabulary (a fine-tuned run's start / delimiter / extract rows),
    each written in text as itself. The files are written directly, not through `transformers`, which the runtime
    does not need; `tokenizer_class` "PreTrainedTokenizerFast" is understood by transformers 4 and 5 alike.
    """
    if tokenizer.token_to_id(eot_token) is None:
        raise ValueError(f"the tokenizer has no {eot_token!r} token: the model's end-of-text token must be in it")
    tokenizer = Tokenizer.from_str(tokenizer.to_str())  # a copy: the caller's tokenizer keeps its vocabulary
    for token in added_special_tokens:
        expected = tokenizer.get_vocab_size(with_added_tokens=True)
        if tokenizer.token_to_id(token) is not None:
            raise ValueError(f"the tokenizer already has a token {token!r}; the task tokens need new ids")
        tokenizer.add_special_tokens([token])
        if tokenizer.token_to_id(token) != expected:
            raise ValueError(f"{token!r} got id {tokenizer.token_to_id(token)}, not {expected}: the tokenizer's ids "
                             "are not contiguous, so the task token ids would not match the model's rows")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    special = {"bos_token": eot_token, "eos_token": eot_token, "unk_token": eot_token}
    if added_special_tokens:
        special["additional_special_tokens"] = list(added_special_tokens)
    tokenizer_config = {"tokenizer_class": "PreTrainedTokenizerFast", **special, "model_max_length": model_max_length,
                        # encode() gives the text's ids and nothing else, as gptcore's encoder does
                        "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False}
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return directory


def save_task_head(head: nn.Linear, path: str | Path, metadata: dict[str, str]) -> Path:
    """A fine-tuned head as `weight` (n_outputs, C) and `bias` (n_outputs,) in a safetensors file."""
    path = Path(path)
    save_file({"weight": head.weight.detach().cpu().contiguous(), "bias": head.bias.detach().cpu().contiguous()},
              path, metadata=metadata)
    return path
