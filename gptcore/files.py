"""File helpers every stage needs: atomic writes (readers never see half a file) and streaming checksums.

Every write in the project that a reader could race goes through ``atomic_file``: the bytes go to a temporary
sibling (``temp_sibling``) and are renamed over the target only when complete; on an error the sibling is removed.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import IO, Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq


def temp_sibling(path: Path) -> Path:
    """The temporary name a write to ``path`` uses: hidden, in the same folder (so the rename is atomic), per process."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def remove_stale_temps(path: Path) -> None:
    """Remove temporary siblings of ``path`` that a killed process left behind."""
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(path: str | Path, *, durable: bool = False) -> Iterator[IO[bytes]]:
    """Open ``path`` for binary writing under a temporary name; rename on success, remove on failure.

    ``durable`` fsyncs before the rename, for files whose loss after a crash would cost real work (checkpoints)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        with open(tmp, "wb") as fh:
            yield fh
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = False) -> Path:
    with atomic_file(path, durable=durable) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, *, durable: bool = False) -> Path:
    return atomic_write_bytes(path, text.encode(), durable=durable)


def json_bytes(obj: Any) -> bytes:
    """The project's one JSON file layout: indented, sorted keys, trailing newline (stable bytes → stable checksums)."""
    return (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_bytes(path, json_bytes(obj))


def atomic_write_table(path: str | Path, table: pa.Table) -> Path:
    """Parquet with zstd, written atomically."""
    with atomic_file(path) as fh:
        pq.write_table(table, fh, compression="zstd")
    return Path(path)


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file, read in chunks (bounded memory whatever its size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
