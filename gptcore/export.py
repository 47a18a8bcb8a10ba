"""Export a tokens folder for other trainers: nanoGPT's ``train.bin``/``val.bin`` and llm.c's headered shards.

Both formats are our shards' bytes as they are (little-endian token ids, EOT before each document); nanoGPT wants
one file per split, llm.c one file per shard behind a 256 x int32 header. Every shard is checked against the sha256
in index.json while it is copied, so an export never silently carries a damaged shard.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from gptcore.files import atomic_file
from gptcore.shards import SPLITS, TokenIndex, read_index

LLMC_HEADER_INTS = 256
# llm.c dev/data/data_common.py HEADERS_INFO: (magic, version) by token width. Its C trainer (llmc/dataloader.h)
# reads the uint16 "gpt-2" kind only; the uint32 "llama-3" kind is for its Llama 3 branch.
LLMC_MAGIC_VERSION = {2: (20240520, 1), 4: (20240801, 7)}
_COPY_CHUNK = 1 << 22


def export_nanogpt(tokens_folder: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write ``train.bin`` and ``val.bin`` (each split's shards concatenated), read by nanoGPT's
    ``np.memmap(path, dtype=np.uint16, mode="r")``. Returns split → path.
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
    return written


def export_llmc(tokens_folder: str | Path, out_dir: str | Path, prefix: str = "gptforge") -> list[Path]:
    """One llm.c data file per shard, ``<prefix>_<split>_<NNNNNN>.bin``: header (int32 x 256: magic, version,
    token count) then the ids. llm.c's trainer globs e.g. ``<out_dir>/<prefix>_train_*.bin``.
    """
    index = read_index(tokens_folder, verify_checksums=False)  # each shard is verified while it is copied
    magic, version = LLMC_MAGIC_VERSION[index.dtype.itemsize]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for split in SPLITS:
        for number, shard in enumerate(index.shards_of(split)):
            if not 0 < shard.tokens < 2**31:
                raise ValueError(f"shard {shard.file} has {shard.tokens:,} tokens; an llm.c data file holds "
                                 "1 to 2**31 - 1 tokens (int32 count): re-plan with smaller shards")
            header = np.zeros(LLMC_HEADER_INTS, dtype="<i4")
            header[:3] = magic, version, shard.tokens
            path = out_dir / f"{prefix}_{split}_{number:06d}.bin"
            with atomic_file(path) as out:
                out.write(header.tobytes())
                _copy_verified(index, shard.file, shard.sha256, out)
            written.append(path)
    return written


def _copy_verified(index: TokenIndex, file: str, sha256: str, out) -> None:
    digest = hashlib.sha256()
    with open(index.folder / file, "rb") as src:
        while block := src.read(_COPY_CHUNK):
            digest.update(block)
            out.write(block)
    if digest.hexdigest() != sha256:
        raise ValueError(f"shard {index.folder / file} does not match its sha256 in index.json: the tokens folder "
                         "is damaged; re-run tokenize for this version before exporting")
