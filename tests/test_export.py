"""Exports: files read back exactly as nanoGPT's train.py and llm.c's loaders read them, and llm.c's model and
tokenizer files checked against its published layout (header fields, sizes, the computation in its tensor order)."""
from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from gptcore.encoding import EOT_TOKEN
from gptcore.export import LLMC_TOKENIZER, export_llmc, export_llmc_model, export_nanogpt
from gptcore.llmc import (model_from_llmc, read_llmc_model, read_llmc_tokenizer, write_llmc_model,
                          write_llmc_tokenizer)
from gptcore.model import GPT, GPTConfig
from gptcore.shards import ShardStats, ShardWriter, SplitRule, dtype_for_vocab, read_index, write_index
from tests.builders import MODULES, TINY_TRAIN, publish_corpus, train_byte_level_bpe


def tokens_folder(folder: Path, shards: dict[str, list[list[int]]], vocab_size: int, eot_id: int) -> Path:
    stats = []
    for name, docs in shards.items():
        with ShardWriter(folder / name, dtype_for_vocab(vocab_size), eot_id=eot_id) as writer:
            writer.add_documents(docs)
            s = writer.finish()
        stats.append(ShardStats(file=name, split=name.split("_")[0], tokens=s.tokens, documents=s.documents,
                                sha256=s.sha256, min_id=s.min_id, max_id=s.max_id))
    write_index(folder, vocab_size=vocab_size, eot_id=eot_id, tokenizer_sha256="0" * 64,
                split_rule=SplitRule(0.1), shards=stats)
    return folder


GPT2_SHARDS = {
    "train_000000.bin": [[15496, 995], [40, 1101, 50000]],
    "train_000001.bin": [[464, 2068, 7586, 21831]],
    "val_000000.bin": [[1212, 318, 257, 1332]],
}


@pytest.fixture
def gpt2_folder(tmp_path) -> Path:
    return tokens_folder(tmp_path / "tokens", GPT2_SHARDS, vocab_size=50_257, eot_id=50_256)


def expected_stream(names: list[str], eot: int = 50_256) -> list[int]:
    return [t for name in names for doc in GPT2_SHARDS[name] for t in [eot, *doc]]


def test_nanogpt_reads_train_and_val_bin_as_uint16_memmaps(gpt2_folder, tmp_path):
    paths = export_nanogpt(gpt2_folder, tmp_path / "nanogpt")
    data_dir = tmp_path / "nanogpt"
    train = np.memmap(os.path.join(data_dir, "train.bin"), dtype=np.uint16, mode="r")  # as nanoGPT's train.py
    val = np.memmap(os.path.join(data_dir, "val.bin"), dtype=np.uint16, mode="r")
    assert train.tolist() == expected_stream(["train_000000.bin", "train_000001.bin"])
    assert val.tolist() == expected_stream(["val_000000.bin"])
    assert paths == {"train": data_dir / "train.bin", "val": data_dir / "val.bin", "meta": data_dir / "meta.pkl"}


def test_nanogpt_meta_pkl_gives_train_py_the_vocabulary_size(tmp_path):
    folder = tokens_folder(tmp_path / "tokens", {"train_000000.bin": [[5, 511]], "val_000000.bin": [[7]]},
                           vocab_size=512, eot_id=0)
    export_nanogpt(folder, tmp_path / "nanogpt")
    with open(os.path.join(tmp_path / "nanogpt", "meta.pkl"), "rb") as f:  # as nanoGPT's train.py
        meta = pickle.load(f)
    assert meta == {"vocab_size": 512}, "no stoi/itos: sample.py's character-level decoding must not be faked"


def test_nanogpt_export_refuses_a_uint32_vocabulary(tmp_path):
    folder = tokens_folder(tmp_path / "tokens", {"train_000000.bin": [[70_000]], "val_000000.bin": [[1]]},
                           vocab_size=100_000, eot_id=99_999)
    with pytest.raises(ValueError, match="nanoGPT reads train.bin/val.bin as uint16"):
        export_nanogpt(folder, tmp_path / "nanogpt")


def read_llmc_shard(filename: Path, token_dtype=np.uint16) -> tuple[np.ndarray, np.ndarray]:
    """As llm.c's train_gpt2.py ``_load_data_shard`` (and llmc/dataloader.h's header checks) read a data file."""
    with open(filename, "rb") as f:
        header = np.frombuffer(f.read(256 * 4), dtype=np.int32)
        tokens = np.frombuffer(f.read(), dtype=token_dtype)
    assert filename.stat().st_size == 256 * 4 + header[2] * np.dtype(token_dtype).itemsize
    assert len(tokens) == header[2]
    return header, tokens


def test_llmc_files_carry_the_gpt2_header_and_one_shard_each(gpt2_folder, tmp_path):
    paths = export_llmc(gpt2_folder, tmp_path / "llmc", prefix="webtext")
    assert [p.name for p in paths] == ["webtext_train_000000.bin", "webtext_train_000001.bin",
                                       "webtext_val_000000.bin"]
    for path, name in zip(paths, GPT2_SHARDS):
        header, tokens = read_llmc_shard(path)
        assert header[0] == 20240520 and header[1] == 1, "magic and version llm.c's GPT-2 loader checks"
        assert not header[3:].any()
        assert tokens.tolist() == expected_stream([name])


def test_llmc_export_of_a_uint32_vocabulary_uses_the_uint32_header(tmp_path):
    folder = tokens_folder(tmp_path / "tokens", {"train_000000.bin": [[70_000, 5]], "val_000000.bin": [[1]]},
                           vocab_size=100_000, eot_id=99_999)
    paths = export_llmc(folder, tmp_path / "llmc")
    header, tokens = read_llmc_shard(paths[0], token_dtype=np.uint32)
    assert (header[0], header[1]) == (20240801, 7)
    assert tokens.tolist() == [99_999, 70_000, 5]


def test_a_damaged_shard_stops_the_export_and_leaves_no_file(gpt2_folder, tmp_path):
    shard = gpt2_folder / "train_000001.bin"
    shard.write_bytes(bytes(shard.stat().st_size))
    with pytest.raises(ValueError, match="train_000001.bin does not match its sha256"):
        export_nanogpt(gpt2_folder, tmp_path / "nanogpt")
    assert not list((tmp_path / "nanogpt").iterdir())
    with pytest.raises(ValueError, match="train_000001.bin does not match its sha256"):
        export_llmc(gpt2_folder, tmp_path / "llmc")
    assert [p.name for p in (tmp_path / "llmc").iterdir()] == ["gptforge_train_000000.bin"]


# --- llm.c model and tokenizer files ---------------------------------------------------------------------------

SMALL = GPTConfig(vocab_size=300, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0)  # Vp = 384


def small_model(config: GPTConfig = SMALL, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(config).eval()
    with torch.no_grad():  # off the init values (zero biases, unit gains), so a swapped tensor shows
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


@pytest.mark.parametrize("dtype, version, itemsize", [("float32", 3, 4), ("bfloat16", 5, 2)])
def test_llmc_model_header_and_size_follow_the_published_layout(tmp_path, dtype, version, itemsize):
    path = write_llmc_model(small_model(), tmp_path / "gpt2_small.bin", dtype)
    header = np.fromfile(path, dtype="<i4", count=256)
    maxT, V, L, NH, C, Vp = 16, 300, 2, 4, 32, 384
    assert header[:8].tolist() == [20240326, version, maxT, V, L, NH, C, Vp]
    assert not header[8:].any()
    per_layer = 2 * C + (3 * C * C + 3 * C) + (C * C + C) + 2 * C + (4 * C * C + 4 * C) + (4 * C * C + C)
    parameters = Vp * C + maxT * C + L * per_layer + 2 * C
    assert path.stat().st_size == 256 * 4 + itemsize * parameters


def test_llmc_model_round_trips_to_the_same_tensors_with_zero_padding_rows(tmp_path):
    model = small_model()
    header, tensors = read_llmc_model(write_llmc_model(model, tmp_path / "m.bin"))
    state = model.state_dict()
    assert np.array_equal(tensors["wte"][:300], state["transformer.wte.weight"].numpy())
    assert not tensors["wte"][300:].any()
    assert np.array_equal(tensors["qkvw"][1], state["transformer.h.1.attn.c_attn.weight"].numpy())
    assert np.array_equal(tensors["fcprojw"][0], state["transformer.h.0.mlp.c_proj.weight"].numpy())
    back = model_from_llmc(tmp_path / "m.bin").state_dict()
    assert back.keys() == state.keys()
    assert all(torch.equal(back[key], state[key]) for key in state)


def test_a_bfloat16_model_file_holds_each_tensor_rounded_to_bfloat16(tmp_path):
    model = small_model()
    _, tensors = read_llmc_model(write_llmc_model(model, tmp_path / "m_bf16.bin", "bfloat16"))
    expected = model.state_dict()["transformer.h.0.mlp.c_fc.weight"].to(torch.bfloat16).float().numpy()
    assert np.array_equal(tensors["fcw"][0], expected)
    assert not np.array_equal(expected, model.state_dict()["transformer.h.0.mlp.c_fc.weight"].numpy())


def llmc_forward(tensors: dict[str, np.ndarray], idx: np.ndarray, n_head: int) -> np.ndarray:
    """train_gpt2.c's gpt2_forward in float64 NumPy, reading the tensors as it does: a Linear weight is (out, in),
    q, k, v are the thirds of the qkv output, head h is columns h*hs..(h+1)*hs of each, logits are over Vp rows."""
    t = {name: value.astype(np.float64) for name, value in tensors.items()}
    B, T = idx.shape
    C = t["wpe"].shape[1]
    hs = C // n_head

    def layernorm(x, w, b):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-5) * w + b

    x = t["wte"][idx] + t["wpe"][:T]
    for l in range(t["ln1w"].shape[0]):
        qkv = layernorm(x, t["ln1w"][l], t["ln1b"][l]) @ t["qkvw"][l].T + t["qkvb"][l]
        q, k, v = (qkv[:, :, i * C:(i + 1) * C].reshape(B, T, n_head, hs).transpose(0, 2, 1, 3) for i in range(3))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hs)
        scores = np.where(np.tril(np.ones((T, T), dtype=bool)), scores, -np.inf)
        att = np.exp(scores - scores.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        y = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        x = x + y @ t["attprojw"][l].T + t["attprojb"][l]
        h = layernorm(x, t["ln2w"][l], t["ln2b"][l]) @ t["fcw"][l].T + t["fcb"][l]
        h = 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))
        x = x + h @ t["fcprojw"][l].T + t["fcprojb"][l]
    return layernorm(x, t["lnfw"], t["lnfb"]) @ t["wte"].T  # (B, T, Vp)


def test_llmc_computation_over_the_file_tensors_gives_gptcore_logits(tmp_path):
    model = small_model()
    _, tensors = read_llmc_model(write_llmc_model(model, tmp_path / "m.bin"))
    idx = np.random.default_rng(0).integers(0, 300, size=(2, 16))
    logits = llmc_forward(tensors, idx, n_head=4)
    with torch.no_grad():
        ours = model(torch.from_numpy(idx))[0].double().numpy()
    assert np.abs(logits[:, :, :300] - ours).max() < 1e-4
    assert not logits[:, :, 300:].any(), "padding rows give zero logits, which llm.c's softmax leaves out"


@pytest.mark.parametrize("overrides, problem", [
    ({"layer_norm": "post"}, "post-LN"), ({"bias": False}, "no biases"), ({"tie_embeddings": False}, "output head"),
    ({"n_inner": 96}, "MLP of width 96"), ({"layer_norm_epsilon": 1e-6}, "LayerNorm eps"),
])
def test_a_model_llmc_cannot_compute_is_refused(tmp_path, overrides, problem):
    config = GPTConfig(**{**SMALL.__dict__, **overrides})
    with pytest.raises(ValueError, match=f"llm.c computes GPT-2's layout only.*{problem}"):
        write_llmc_model(GPT(config), tmp_path / "m.bin")
    assert not (tmp_path / "m.bin").exists()


def test_a_truncated_model_file_is_refused_naming_it(tmp_path):
    path = write_llmc_model(small_model(), tmp_path / "m.bin")
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ValueError, match="m.bin has .* bytes but its header describes"):
        read_llmc_model(path)


TEXTS = ["The café served crème brûlée to 日本 visitors.", "Naïve résumé writers walked over 7 bridges.",
         "import json; json.dumps({'a': 1})"] * 20


@pytest.fixture
def bpe(tmp_path) -> Tokenizer:
    return Tokenizer.from_file(str(train_byte_level_bpe(TEXTS, 400, tmp_path / "tokenizer.json", eot_last=True)))


def test_llmc_tokenizer_file_layout_and_each_ids_bytes(bpe, tmp_path):
    path = write_llmc_tokenizer(bpe, tmp_path / "gpt2_tokenizer.bin")
    header = np.fromfile(path, dtype="<i4", count=256)
    n = bpe.get_vocab_size(with_added_tokens=True)
    assert header[:4].tolist() == [20240328, 2, n, bpe.token_to_id(EOT_TOKEN)] and not header[4:].any()
    tokens, eot_id = read_llmc_tokenizer(path)
    assert path.stat().st_size == 256 * 4 + sum(1 + len(token) for token in tokens)
    assert len(tokens) == n and tokens[eot_id] == b"<|endoftext|>"
    assert sorted(token for token in tokens if len(token) == 1) == [bytes([b]) for b in range(256)]
    for text in ["Crème brûlée, 日本!", "json.dumps"]:  # multi-byte characters split across tokens come back whole
        ids = bpe.encode(text).ids
        assert b"".join(tokens[i] for i in ids) == text.encode("utf-8")


def test_a_tokenizer_that_is_not_byte_level_is_refused(tmp_path):
    tokenizer = Tokenizer(models.WordLevel({"hello": 0, EOT_TOKEN: 1}, unk_token=EOT_TOKEN))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.WordPiece()
    with pytest.raises(ValueError, match="not ByteLevel: llm.c's tokenizer file holds each token's bytes"):
        write_llmc_tokenizer(tokenizer, tmp_path / "gpt2_tokenizer.bin")


def test_a_tokenizer_without_end_of_text_is_refused(tmp_path):
    tokenizer = Tokenizer.from_file(str(train_byte_level_bpe(TEXTS, 300, tmp_path / "t.json", eot_last=True)))
    with pytest.raises(ValueError, match="has no '<\\|eos\\|>' token"):
        write_llmc_tokenizer(tokenizer, tmp_path / "gpt2_tokenizer.bin", eot_token="<|eos|>")


def test_export_llmc_model_writes_the_files_llmc_trainers_open(bpe, tmp_path):
    model = small_model(GPTConfig(**{**SMALL.__dict__, "vocab_size": bpe.get_vocab_size()}))
    written = export_llmc_model(model, bpe, tmp_path / "llmc", name="r1")
    assert {key: path.name for key, path in written.items()} == {
        "float32": "gpt2_r1.bin", "bfloat16": "gpt2_r1_bf16.bin", "tokenizer": LLMC_TOKENIZER}
    with pytest.raises(ValueError, match="model file name '../r1' is not a valid folder name"):
        export_llmc_model(model, bpe, tmp_path / "llmc", name="../r1")
    with pytest.raises(ValueError, match=f"the tokenizer has {bpe.get_vocab_size()} tokens but the model only 300 "):
        export_llmc_model(small_model(), bpe, tmp_path / "other")


# --- a run, found through its lineage -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory, prefect_harness) -> Path:
    from flows.pretrain import pretrain
    from flows.store import DataRoot
    from flows.tokenize_corpus import tokenize
    from flows.train_tokenizer import train_tokenizer

    root = DataRoot.from_env(str(tmp_path_factory.mktemp("data")))
    publish_corpus(root, "c1", MODULES[:6])
    train_tokenizer(corpus="c1", version="t1", data_root=root.url, vocab_size=512, holdout_fraction=0.1)
    tokenize(version="k1", data_root=root.url, validation_fraction=0.1)
    pretrain(version="r1", data_root=root.url, preset="tiny",
             train={**TINY_TRAIN, "max_steps": 30, "eval_every": 30, "checkpoint_every": 30})  # passes the gate
    return root.local_path / "runs" / "r1"


def test_a_run_exports_its_checkpoint_tokenizer_and_tokens_for_llmc(pretrained_run, tmp_path):
    from flows.export_trainers import export_run_for_llmc
    from gptcore.checkpoint import latest_checkpoint, load_model

    written = export_run_for_llmc(pretrained_run, tmp_path / "llmc", dtypes=("float32",), with_data=True)
    data_root = pretrained_run.parent.parent
    shards = read_index(data_root / "tokens" / "k1").shards
    assert sorted(written) == sorted(["float32", "tokenizer", *(f"r1_{s.file}" for s in shards)])
    model = load_model(latest_checkpoint(pretrained_run))
    idx = torch.arange(64).remainder(512)[None]
    with torch.no_grad():
        assert torch.equal(model_from_llmc(written["float32"])(idx)[0], model(idx)[0])
    tokenizer = Tokenizer.from_file(str(data_root / "tokenizer" / "t1" / "tokenizer.json"))
    tokens, eot_id = read_llmc_tokenizer(written["tokenizer"])
    assert eot_id == tokenizer.token_to_id(EOT_TOKEN) == read_index(data_root / "tokens" / "k1").eot_id
    assert b"".join(tokens[i] for i in tokenizer.encode("def dumps(obj):").ids) == b"def dumps(obj):"
