"""llm.c's file formats: its data shard header, its model file and its tokenizer file, written and read back.

The layouts are those llm.c's ``train_gpt2.c`` / ``train_gpt2.cu`` read (``gpt2_build_from_checkpoint``,
``llmc/tokenizer.h``, ``llmc/dataloader.h``); all integers and floats little-endian::

    model file       int32 x 256 header: 20240326, version (3: float32, 5: bfloat16), maxT, V, L, NH, C, Vp, zeros;
                     then 16 tensors back to back, in this order (Linear weights (out, in), as PyTorch stores them):
                     wte (Vp, C)    wpe (maxT, C)  ln1w (L, C)    ln1b (L, C)    qkvw (L, 3C, C)  qkvb (L, 3C)
                     attprojw (L, C, C)  attprojb (L, C)  ln2w (L, C)  ln2b (L, C)  fcw (L, 4C, C)  fcb (L, 4C)
                     fcprojw (L, C, 4C)  fcprojb (L, C)  lnfw (C)  lnfb (C)
    tokenizer file   int32 x 256 header: 20240328, 2, number of tokens, end-of-text id, zeros; then for each id
                     in order: its length in bytes (uint8, 1..255), then its bytes

Vp is V rounded up to a multiple of 128 (for llm.c's GPU kernels); the extra rows of wte are zeros and llm.c's
softmax ignores them, so any V works (llm.c's own Python writer accepts only GPT-2's 50,257). The output head is wte
itself: llm.c computes one model only, GPT-2's (pre-LN, biases, tied embeddings, a 4C MLP with tanh GELU, LayerNorm
eps 1e-5); ``check_llmc_computes`` refuses any other. The trainers also fix file names: both read the tokenizer from
``gpt2_tokenizer.bin`` in their working folder, and ``train_gpt2.c`` its model from ``gpt2_124M.bin``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from tokenizers import Tokenizer, decoders

from gptcore.encoding import EOT_TOKEN, byte_level_alphabet
from gptcore.files import atomic_file
from gptcore.model import GPT, GPTConfig

HEADER_INTS = 256
# dev/data/data_common.py HEADERS_INFO: (magic, version) of a data shard by token width. Its C trainer
# (llmc/dataloader.h) reads the uint16 "gpt-2" kind only; the uint32 "llama-3" kind is for its Llama 3 branch.
DATA_MAGIC_VERSION = {2: (20240520, 1), 4: (20240801, 7)}
MODEL_MAGIC = 20240326
MODEL_VERSIONS = {"float32": 3, "bfloat16": 5}
TOKENIZER_MAGIC, TOKENIZER_VERSION = 20240328, 2  # version 2: the header carries the end-of-text id
VOCAB_MULTIPLE = 128
MAX_TOKEN_BYTES = 255  # a token's length is one byte, and llm.c asserts it is not 0
LAYER_NORM_EPSILON = 1e-5  # llm.c's layernorm_forward hard-codes it

Dtype = Literal["float32", "bfloat16"]
# llm.c's tensors in file order, and the gptcore parameter each holds (names without "transformer.": one per block,
# stacked over the blocks)
LLMC_PARAMETERS = [
    ("wte", "transformer.wte.weight"), ("wpe", "transformer.wpe.weight"),
    ("ln1w", "ln_1.weight"), ("ln1b", "ln_1.bias"), ("qkvw", "attn.c_attn.weight"), ("qkvb", "attn.c_attn.bias"),
    ("attprojw", "attn.c_proj.weight"), ("attprojb", "attn.c_proj.bias"), ("ln2w", "ln_2.weight"),
    ("ln2b", "ln_2.bias"), ("fcw", "mlp.c_fc.weight"), ("fcb", "mlp.c_fc.bias"), ("fcprojw", "mlp.c_proj.weight"),
    ("fcprojb", "mlp.c_proj.bias"), ("lnfw", "transformer.ln_f.weight"), ("lnfb", "transformer.ln_f.bias"),
]


@dataclass(frozen=True)
class LlmcModelHeader:
    """The model file's header, in gptcore's names (llm.c's: maxT, V, L, NH, C, Vp)."""

    block_size: int
    vocab_size: int
    n_layer: int
    n_head: int
    n_embd: int
    padded_vocab_size: int
    dtype: Dtype

    def tensor_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """llm.c's parameter tensors, in file order, with their shapes."""
        Vp, T, L, C = self.padded_vocab_size, self.block_size, self.n_layer, self.n_embd
        shapes = {"wte": (Vp, C), "wpe": (T, C), "qkvw": (L, 3 * C, C), "qkvb": (L, 3 * C), "attprojw": (L, C, C),
                  "fcw": (L, 4 * C, C), "fcb": (L, 4 * C), "fcprojw": (L, C, 4 * C), "lnfw": (C,), "lnfb": (C,)}
        return [(name, shapes.get(name, (L, C))) for name, _ in LLMC_PARAMETERS]  # the rest: one C-vector per block

    def file_bytes(self) -> int:
        itemsize = 4 if self.dtype == "float32" else 2
        return 4 * HEADER_INTS + itemsize * sum(int(np.prod(shape)) for _, shape in self.tensor_shapes())


class LlmcTokenizer(NamedTuple):
    tokens: list[bytes]  # the bytes of each id
    eot_id: int


def padded_vocab_size(vocab_size: int) -> int:
    return -(-vocab_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


def check_llmc_computes(config: GPTConfig) -> None:
    """Raise ValueError unless llm.c computes exactly this model (it has no switches for other layouts)."""
    problems = []
    if config.layer_norm != "pre":
        problems.append("post-LN (GPT-1) blocks, where llm.c applies LayerNorm before attention and MLP")
    if not config.bias:
        problems.append("no biases, where llm.c adds one to every Linear and LayerNorm")
    if not config.tie_embeddings:
        problems.append("an output head of its own, where llm.c uses the token embedding")
    if config.n_inner != 4 * config.n_embd:
        problems.append(f"an MLP of width {config.n_inner}, where llm.c's is 4 x n_embd = {4 * config.n_embd}")
    if config.layer_norm_epsilon != LAYER_NORM_EPSILON:
        problems.append(f"LayerNorm eps {config.layer_norm_epsilon}, where llm.c's is {LAYER_NORM_EPSILON}")
    if problems:
        raise ValueError("llm.c computes GPT-2's layout only, and this model has " + "; ".join(problems) +
                         ": export it with gptcore.hf.save_hf_gpt2 for transformers instead, or train a GPT-2 "
                         "layout (layer_norm='pre', bias, tie_embeddings, n_inner=4*n_embd) for llm.c")


def llmc_tensors(model: GPT) -> list[tuple[str, torch.Tensor]]:
    """The model's parameters as llm.c's tensors, in file order: blocks stacked per kind, wte padded to Vp rows."""
    config = model.config
    check_llmc_computes(config)
    state = model.state_dict()
    tensors = []
    for name, key in LLMC_PARAMETERS:
        if key.startswith("transformer."):
            tensors.append((name, state[key]))
        else:
            tensors.append((name, torch.stack([state[f"transformer.h.{i}.{key}"] for i in range(config.n_layer)])))
    wte = tensors[0][1]  # (V, C)
    padded = torch.zeros(padded_vocab_size(config.vocab_size), config.n_embd, dtype=wte.dtype)
    padded[: config.vocab_size] = wte
    tensors[0] = ("wte", padded)
    return tensors


def write_llmc_model(model: GPT, path: str | Path, dtype: Dtype = "float32") -> Path:
    """Write ``model`` as an llm.c model file: float32 for ``train_gpt2.c``, bfloat16 for ``train_gpt2.cu``'s
    default build (its float32 build reads the float32 file)."""
    if dtype not in MODEL_VERSIONS:
        raise ValueError(f"dtype {dtype!r} is not one llm.c reads: use one of {sorted(MODEL_VERSIONS)}")
    config = model.config
    tensors = llmc_tensors(model)
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:8] = (MODEL_MAGIC, MODEL_VERSIONS[dtype], config.block_size, config.vocab_size, config.n_layer,
                  config.n_head, config.n_embd, padded_vocab_size(config.vocab_size))
    path = Path(path)
    with atomic_file(path) as out:
        out.write(header.tobytes())
        for _, tensor in tensors:
            tensor = tensor.detach().cpu().contiguous()
            if dtype == "float32":
                out.write(tensor.to(torch.float32).numpy().astype("<f4", copy=False).tobytes())
            else:  # NumPy has no bfloat16: write its 16 bits as an int16
                out.write(tensor.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2", copy=False).tobytes())
    return path


def read_llmc_model(path: str | Path) -> tuple[LlmcModelHeader, dict[str, np.ndarray]]:
    """The header and the float32 tensors (by llm.c's names, in file order) of an llm.c model file."""
    path = Path(path)
    raw = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if len(raw) < HEADER_INTS or raw[0] != MODEL_MAGIC:
        raise ValueError(f"{path} is not an llm.c model file (it does not start with the magic {MODEL_MAGIC})")
    dtypes = {version: name for name, version in MODEL_VERSIONS.items()}
    if int(raw[1]) not in dtypes:
        raise ValueError(f"{path} is llm.c model file version {raw[1]}; only {sorted(dtypes)} (float32, bfloat16 "
                         "with a padded vocabulary) are read: re-export it with write_llmc_model")
    header = LlmcModelHeader(*(int(v) for v in raw[2:8]), dtype=dtypes[int(raw[1])])
    if path.stat().st_size != header.file_bytes():
        raise ValueError(f"{path} has {path.stat().st_size:,} bytes but its header describes {header.file_bytes():,}: "
                         "the file is truncated or damaged; export it again")
    stored = np.fromfile(path, dtype="<f4" if header.dtype == "float32" else "<u2", offset=4 * HEADER_INTS)
    if header.dtype == "bfloat16":  # a bfloat16 is the top half of a float32
        stored = (stored.astype("<u4") << 16).view("<f4")
    tensors, start = {}, 0
    for name, shape in header.tensor_shapes():
        size = int(np.prod(shape))
        tensors[name] = stored[start:start + size].reshape(shape)
        start += size
    return header, tensors


def model_from_llmc(path: str | Path) -> GPT:
    """A gptcore GPT holding an llm.c model file's weights (e.g. after more training in llm.c), in eval mode."""
    header, tensors = read_llmc_model(path)
    config = GPTConfig(vocab_size=header.vocab_size, block_size=header.block_size, n_layer=header.n_layer,
                       n_head=header.n_head, n_embd=header.n_embd, dropout=0.0)  # llm.c trains without dropout
    state = {}
    for name, key in LLMC_PARAMETERS:
        tensor = torch.from_numpy(tensors[name].copy())
        if key.startswith("transformer."):
            state[key] = tensor
        else:
            state.update((f"transformer.h.{i}.{key}", tensor[i]) for i in range(header.n_layer))
    state["transformer.wte.weight"] = state["lm_head.weight"] = state["transformer.wte.weight"][: header.vocab_size]
    model = GPT(config)
    model.load_state_dict(state)
    return model.eval()


def token_bytes(tokenizer: Tokenizer) -> list[bytes]:
    """The bytes each id of a byte-level BPE tokenizer stands for (special tokens: their text in UTF-8)."""
    if not isinstance(tokenizer.decoder, decoders.ByteLevel):
        raise ValueError(f"the tokenizer's decoder is {type(tokenizer.decoder).__name__}, not ByteLevel: llm.c's "
                         "tokenizer file holds each token's bytes, which only a byte-level BPE (GPT-2 style) gives "
                         "token by token; export a GPT-2-style tokenizer")
    alphabet = byte_level_alphabet()
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    table: list[bytes | None] = [None] * size
    for token, token_id in tokenizer.get_vocab(with_added_tokens=False).items():
        if any(char not in alphabet for char in token):
            raise ValueError(f"vocabulary entry {token!r} (id {token_id}) is not made of byte-level characters: "
                             "the tokenizer is not a byte-level BPE; export a GPT-2-style tokenizer")
        table[token_id] = bytes(alphabet[char] for char in token)
    for token_id, added in tokenizer.get_added_tokens_decoder().items():
        table[token_id] = added.content.encode("utf-8")  # decoded as its text, as tokenizers does
    missing = [i for i, entry in enumerate(table) if entry is None]
    if missing:
        raise ValueError(f"the tokenizer has no token for ids {missing[:5]}: its ids are not 0..{size - 1}")
    return table  # type: ignore[return-value]


def write_llmc_tokenizer(tokenizer: Tokenizer, path: str | Path, eot_token: str = EOT_TOKEN) -> Path:
    """Write a byte-level BPE tokenizer as llm.c's tokenizer file (``gpt2_tokenizer.bin``)."""
    eot_id = tokenizer.token_to_id(eot_token)
    if eot_id is None:
        raise ValueError(f"the tokenizer has no {eot_token!r} token, which llm.c's tokenizer file names as the "
                         "end of text: pass eot_token= the token that separates documents")
    table = token_bytes(tokenizer)
    too_long = [(i, len(b)) for i, b in enumerate(table) if not 0 < len(b) <= MAX_TOKEN_BYTES]
    if too_long:
        raise ValueError(f"tokens {too_long[:5]} (id, bytes) are empty or longer than {MAX_TOKEN_BYTES} bytes, "
                         "which llm.c's one-byte length cannot hold: retrain the tokenizer with shorter tokens")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:4] = TOKENIZER_MAGIC, TOKENIZER_VERSION, len(table), eot_id
    path = Path(path)
    with atomic_file(path) as out:
        out.write(header.tobytes())
        out.write(b"".join(bytes([len(token)]) + token for token in table))
    return path


def read_llmc_tokenizer(path: str | Path) -> LlmcTokenizer:
    """The token bytes and end-of-text id of an llm.c tokenizer file (version 2)."""
    path = Path(path)
    data = path.read_bytes()
    header = np.frombuffer(data[: 4 * HEADER_INTS], dtype="<i4")
    if len(header) < HEADER_INTS or (header[0], header[1]) != (TOKENIZER_MAGIC, TOKENIZER_VERSION):
        raise ValueError(f"{path} is not an llm.c tokenizer file of version {TOKENIZER_VERSION} (magic "
                         f"{TOKENIZER_MAGIC}): write it with write_llmc_tokenizer")
    tokens, offset = [], 4 * HEADER_INTS
    for _ in range(int(header[2])):
        length = data[offset] if offset < len(data) else 0
        token = data[offset + 1: offset + 1 + length]
        if length == 0 or len(token) != length:
            raise ValueError(f"{path} ends inside token {len(tokens)} or holds an empty token: the file is damaged")
        tokens.append(token)
        offset += 1 + length
    if offset != len(data):
        raise ValueError(f"{path} has {len(data) - offset} bytes after its {header[2]} tokens: the file is damaged")
    return LlmcTokenizer(tokens, int(header[3]))
