"""Export for other trainers: a tokens folder as nanoGPT's ``train.bin``/``val.bin`` + ``meta.pkl`` and as llm.c's
headered shards, and a model with its tokenizer as llm.c's model and tokenizer files (layouts in ``gptcore.llmc``).

Both data formats are our shards' bytes as they are (little-endian token ids, EOT before each document); nanoGPT
wants one file per split, llm.c one file per shard behind a 256 x int32 header. Every shard is checked against the
sha256 in index.json while it is copied, so an export never silently carries a damaged shard.
"""
from __future__ import annotations

import hashlib
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from gptcore.files import atomic_file
from gptcore.llmc import (DATA_MAGIC_VERSION, HEADER_INTS, Dtype, check_llmc_computes, write_llmc_model,
                          write_llmc_tokenizer)
from gptcore.model import GPT
from gptcore.names import check_name
from gptcore.shards import SPLITS, TokenIndex, read_index

NANOGPT_META = "meta.pkl"
LLMC_TOKENIZER = "gpt2_tokenizer.bin"  # the name both llm.c trainers open, in their working folder
_COPY_CHUNK = 1 << 22


def export_nanogpt(tokens_folder: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write ``train.bin`` and ``val.bin`` (each split's shards concatenated), read by nanoGPT's
    ``np.memmap(path, dtype=np.uint16, mode="r")``, and ``meta.pkl`` with the ``vocab_size`` nanoGPT's train.py
    builds its model with (without it, GPT-2's 50,304). Returns split (and ``"meta"``) → path.

    nanoGPT's sample.py reads a ``meta.pkl`` only as a character-level vocabulary (``stoi``/``itos``): it cannot
    encode or decode a BPE vocabulary, so with this file it stops at ``meta['stoi']`` (KeyError), where without one it
    would decode with GPT-2's vocabulary, silently wrong for any other. Sample through gptforge instead.
    """
    index = read_index(tokens_folder, verify_checksums=False)  # each shard is verified while it is copied
    if index.dtype.itemsize != 2:
        raise ValueError(f"{index.folder} stores {index.dtype.str} ids (vocab_size {index.vocab_size:,} > 65,535) "
                         "but nanoGPT reads train.bin/val.bin as uint16: use export_llmc, or a vocabulary of at "
                         "most 65,535 tokens")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in SPLITS:
        path = out_dir / f"{split}.bin"
        with atomic_file(path) as out:
            for shard in index.shards_of(split):
                _copy_verified(index, shard.file, shard.sha256, out)
        written[split] = path
    written["meta"] = out_dir / NANOGPT_META
    with atomic_file(written["meta"]) as out:
        pickle.dump({"vocab_size": index.vocab_size}, out)
    return written


def export_llmc(tokens_folder: str | Path, out_dir: str | Path, prefix: str = "gptforge") -> list[Path]:
    """One llm.c data file per shard, ``<prefix>_<split>_<NNNNNN>.bin``: header (int32 x 256: magic, version,
    token count) then the ids. llm.c's trainer globs e.g. ``<out_dir>/<prefix>_train_*.bin``.
    """
    index = read_index(tokens_folder, verify_checksums=False)  # each shard is verified while it is copied
    magic, version = DATA_MAGIC_VERSION[index.dtype.itemsize]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for split in SPLITS:
        for number, shard in enumerate(index.shards_of(split)):
            if not 0 < shard.tokens < 2**31:
                raise ValueError(f"shard {shard.file} has {shard.tokens:,} tokens; an llm.c data file holds "
                                 "1 to 2**31 - 1 tokens (int32 count): re-plan with smaller shards")
            header = np.zeros(HEADER_INTS, dtype="<i4")
            header[:3] = magic, version, shard.tokens
            path = out_dir / f"{prefix}_{split}_{number:06d}.bin"
            with atomic_file(path) as out:
                out.write(header.tobytes())
                _copy_verified(index, shard.file, shard.sha256, out)
            written.append(path)
    return written


def export_llmc_model(model: GPT, tokenizer: Tokenizer, out_dir: str | Path, name: str = "gptforge",
                      dtypes: Sequence[Dtype] = ("float32", "bfloat16")) -> dict[str, Path]:
    """llm.c's model file per dtype, ``gpt2_<name>.bin`` (float32, for train_gpt2.c: rename or link it to
    ``gpt2_124M.bin``, the name it opens) and ``gpt2_<name>_bf16.bin`` (for train_gpt2.cu ``-e``), and the
    tokenizer file ``gpt2_tokenizer.bin``. Returns dtype (and ``"tokenizer"``) → path.
    """
    check_name(name, "model file name")
    suffix = {"float32": "", "bfloat16": "_bf16"}
    if not dtypes or any(dtype not in suffix for dtype in dtypes):
        raise ValueError(f"dtypes {list(dtypes)} must be some of {sorted(suffix)}, the model files llm.c reads")
    check_llmc_computes(model.config)
    if model.config.vocab_size < tokenizer.get_vocab_size(with_added_tokens=True):
        raise ValueError(f"the tokenizer has {tokenizer.get_vocab_size(with_added_tokens=True):,} tokens but the model "
                         f"only {model.config.vocab_size:,} embeddings: pass the tokenizer the model was trained with")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_file = write_llmc_tokenizer(tokenizer, out_dir / LLMC_TOKENIZER)  # first: it refuses non-byte-level BPE
    written = {dtype: write_llmc_model(model, out_dir / f"gpt2_{name}{suffix[dtype]}.bin", dtype) for dtype in dtypes}
    return written | {"tokenizer": tokenizer_file}


def _copy_verified(index: TokenIndex, file: str, sha256: str, out) -> None:
    digest = hashlib.sha256()
    with open(index.folder / file, "rb") as src:
        while block := src.read(_COPY_CHUNK):
            digest.update(block)
            out.write(block)
    if digest.hexdigest() != sha256:
        raise ValueError(f"shard {index.folder / file} does not match its sha256 in index.json: the tokens folder "
                         "is damaged; re-run tokenize for this version before exporting")
