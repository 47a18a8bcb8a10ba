"""File helpers every stage needs: atomic writes (readers never see half a file) and streaming checksums."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write to a temporary sibling and rename: readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file, read in chunks (bounded memory whatever its size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
