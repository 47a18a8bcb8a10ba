"""Task files as the user names them → local paths, without a way around the fetcher's SSRF guard.

A task file is a local path (or ``file://`` URL), or a URL under the data root (``GPTFORGE_DATA``, an object store
the operator configured), copied here through fsspec. Every other URL is refused before any connection is made:
fsspec's HTTP filesystem would follow it, and its redirects, to the cloud metadata service or the private network
with none of the guards the corpus fetcher has (``gptcore/corpus/netguard.py``). Download such a file first, or copy
it under the data root.
"""
from __future__ import annotations

import hashlib
import posixpath
from pathlib import Path

import fsspec

from flows.store import DataRoot


class TaskInputRefused(ValueError):
    """A task file URL that this project will not fetch."""


def under_data_root(url: str, root: DataRoot) -> bool:
    """Whether ``url`` names something inside the (remote) data root; ``..`` cannot climb out of it."""
    if root.is_local or "://" not in url:
        return False
    protocol, _, rest = url.partition("://")
    root_protocol, _, root_rest = root.url.partition("://")
    if protocol != root_protocol or "::" in url:  # "::" chains filesystems (simplecache::http://…)
        return False
    base = posixpath.normpath("/" + root_rest).rstrip("/")
    return posixpath.normpath("/" + rest).startswith(base + "/")


def local_input(source: str, downloads: Path, root: DataRoot) -> Path:
    """A task file as a local path: local paths as they are; URLs under the data root copied into ``downloads``."""
    if "://" not in source or source.startswith("file://"):
        path = Path(source.removeprefix("file://")).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"task file {source} does not exist: pass an existing path, or a URL under the "
                                    f"data root {root.url}")
        return path
    if not under_data_root(source, root):
        raise TaskInputRefused(
            f"task file {source} is a URL outside the data root {root.url}; task files are not fetched from "
            "arbitrary URLs (that would bypass the fetcher's address guard): download the file first and pass its "
            f"local path, or copy it under {root.url}/")
    name = Path(source.split("?", 1)[0]).name
    if not name or source.endswith("/"):
        raise TaskInputRefused(f"task file {source} names a folder: pass the URL of one file under the data root, "
                               "or download the folder and pass its local path")
    # One folder per URL: train and test files often share a name (train/data.jsonl, test/data.jsonl).
    target = downloads / hashlib.sha256(source.encode()).hexdigest()[:16] / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with fsspec.open(source, "rb") as remote, open(target, "wb") as local:
        while chunk := remote.read(1 << 20):
            local.write(chunk)
    return target
