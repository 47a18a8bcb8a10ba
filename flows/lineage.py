"""Lineage: the manifest every stage writes, its upstream entries, and walks through the manifests.

The manifest is the durable lineage record (it outlives Prefect's event retention): each version names its upstream
inputs — files with checksums, or other versions as ``{"stage", "version", "checksum"}`` — so the chain from a model
back to the Reddit dumps can be walked from the data root alone. Upstream names read from a manifest are checked
against the name rule before they are followed: an edited manifest cannot lead a walk out of the data root.
What a walk finds is drawn by ``flows.cards`` (the lineage card in Prefect, the tree ``gptforge lineage`` prints).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from flows.store import (MANIFEST, DataRoot, StoreError, check_version, code_version, file_entries, manifest_checksum,
                         manifest_sha256, utc_now)
from gptcore.corpus.records import source_path
from gptcore.files import atomic_write_json, sha256_file


def current_flow_run() -> dict | None:
    """The Prefect flow run building this version (id, name, UI link), or None outside Prefect."""
    try:
        from prefect.runtime import flow_run
        from prefect.utilities.urls import url_for
    except ImportError:
        return None
    if not flow_run.id:
        return None
    # url_for knows the UI's route (runtime.flow_run.ui_url points at a path the UI does not serve)
    return {"id": str(flow_run.id), "name": flow_run.name, "flow": flow_run.flow_name,
            "url": url_for("flow-run", obj_id=flow_run.id)}


def input_file(path: str | Path, kind: str) -> dict:
    """An upstream input file, identified by path, size and checksum."""
    p = Path(path)
    return {"kind": kind, "path": source_path(p), "bytes": p.stat().st_size, "sha256": sha256_file(p)}


def upstream_version(root: DataRoot, stage: str, version: str) -> dict:
    """An upstream version, identified by stage, version and its manifest checksum."""
    manifest = root.verified_manifest(stage, version)
    return {"kind": "version", "stage": stage, "version": version, "checksum": manifest["checksum"],
            "url": root.version_url(stage, version), "flow_run": manifest.get("flow_run")}


def refused_upstream(up: dict) -> str | None:
    """Why a manifest's upstream version entry must not be followed (a stage or version name that breaks the name
    rule, so it could point outside the data root), or None when it may be."""
    try:
        check_version(up.get("stage"), up.get("version"))
    except ValueError as error:
        return str(error)
    return None


def upstream_of(root: DataRoot, stage: str, version: str, wanted: str) -> str | None:
    """The nearest ``wanted`` version upstream of a version (breadth first through the manifests)."""
    queue, seen = [(stage, version)], set()
    while queue:
        current = queue.pop(0)
        if current in seen or not root.exists(*current):
            continue
        seen.add(current)
        for up in root.verified_manifest(*current).get("upstream", []):
            if up.get("kind") == "version":
                if refusal := refused_upstream(up):
                    raise StoreError(f"the manifest of {current[0]} {current[1]} names an upstream that is not "
                                     f"followed: {refusal}; the manifest was edited or damaged: rebuild that version")
                if up["stage"] == wanted:
                    return up["version"]
                queue.append((up["stage"], up["version"]))
    return None


def tokens_of_run(root: DataRoot, run: str) -> str:
    """The tokens version a run was pretrained on (for a fine-tuned run, its pretrained run's), from the manifests."""
    tokens = upstream_of(root, "runs", run, "tokens")
    if tokens is None:
        raise StoreError(f"run {run!r} in {root.url} names no tokens version in its lineage (manifest upstream): it "
                         "is not a pretrain run or a run fine-tuned from one")
    return tokens


def tokenizer_of_run(root: DataRoot, run: str) -> str:
    """The tokenizer version that encodes a run's text: run → its tokens version → that version's tokenizer."""
    tokens = tokens_of_run(root, run)
    tokenizer = upstream_of(root, "tokens", tokens, "tokenizer")
    if tokenizer is None:
        raise StoreError(f"tokens version {tokens!r} (of run {run!r}) in {root.url} names no tokenizer upstream in its "
                         "manifest")
    return tokenizer


def write_manifest(folder: Path, stage: str, version: str, parameters: dict, upstream: list[dict], counts: dict) -> dict:
    """Describe a finished output folder: outputs with checksums, counts, upstream, code and flow run."""
    manifest = {
        "stage": stage, "version": version, "created_at": utc_now(), "parameters": parameters,
        "code_version": code_version(), "flow_run": current_flow_run(), "upstream": upstream,
        "outputs": file_entries(folder), "counts": counts,
    }
    manifest["checksum"] = manifest_checksum(manifest)
    manifest["manifest_sha256"] = manifest_sha256(manifest)
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest


def find_version_folder(path: str | Path) -> Path:
    """The version folder containing PATH (PATH itself, or the nearest parent with a manifest)."""
    p = Path(path).resolve()
    for candidate in (p, *p.parents):
        if (candidate / MANIFEST).is_file():
            return candidate
    raise StoreError(f"{path} is not inside a version folder (no {MANIFEST} in it or any parent); "
                     "pass a folder such as DATA/corpus/v0001")


def walk_lineage(folder: Path | str) -> Iterator[tuple[int, dict]]:
    """Depth-first (depth, node) over the lineage; nodes are manifests or input-file entries. ``folder`` is a local
    version folder or a version URL on an object store (``s3://bucket/root/runs/v0001``)."""
    text = str(folder).rstrip("/")
    if "://" in text and not text.startswith("file://"):
        base, stage, version = text.rsplit("/", 2)
        root = DataRoot.from_env(base)
        first = root.read_manifest(stage, version)
    else:
        root = DataRoot.from_env(str(Path(folder).parent.parent))
        first = json.loads((Path(folder) / MANIFEST).read_text())

    def visit(manifest: dict, depth: int) -> Iterator[tuple[int, dict]]:
        yield depth, manifest
        for up in manifest.get("upstream", []):
            if up["kind"] == "version" and (refusal := refused_upstream(up)):
                yield depth + 1, {"kind": "refused", "entry": up, "reason": refusal}
            elif up["kind"] == "version" and root.exists(up["stage"], up["version"]):
                yield from visit(root.read_manifest(up["stage"], up["version"]), depth + 1)
            else:
                yield depth + 1, up

    yield from visit(first, 0)
