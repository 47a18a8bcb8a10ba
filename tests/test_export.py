"""Exports: files read back exactly as nanoGPT's train.py and llm.c's loaders read them."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from gptcore.export import export_llmc, export_nanogpt
from gptcore.shards import ShardStats, ShardWriter, SplitRule, dtype_for_vocab, write_index


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
    assert paths == {"train": data_dir / "train.bin", "val": data_dir / "val.bin"}


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
