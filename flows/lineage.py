"""Lineage: manifests written by every stage, the lineage card shown in Prefect, and ``gptforge lineage PATH``.

The manifest is the durable lineage record (it outlives Prefect's event retention): each version names its upstream
inputs — files with checksums, or other versions as ``{"stage", "version", "checksum"}`` — so the chain from a model
back to the Reddit dumps can be walked from the data root alone. Upstream names read from a manifest are checked
against the name rule before they are followed: an edited manifest cannot lead a walk out of the data root.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from flows.store import (MANIFEST, DataRoot, StoreError, check_version, code_version, file_entries, manifest_checksum,
                         manifest_sha256, sha256_file, utc_now)


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
    return {"kind": kind, "path": str(p.resolve()), "bytes": p.stat().st_size, "sha256": sha256_file(p)}


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


def write_manifest(folder: Path, stage: str, version: str, parameters: dict, upstream: list[dict], counts: dict) -> dict:
    """Describe a finished output folder: outputs with checksums, counts, upstream, code and flow run."""
    manifest = {
        "stage": stage, "version": version, "created_at": utc_now(), "parameters": parameters,
        "code_version": code_version(), "flow_run": current_flow_run(), "upstream": upstream,
        "outputs": file_entries(folder), "counts": counts,
    }
    manifest["checksum"] = manifest_checksum(manifest)
    manifest["manifest_sha256"] = manifest_sha256(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    return manifest


def _node_label(manifest: dict) -> str:
    return f"{manifest['stage']} {manifest['version']}"


MAX_FILES_PER_VERSION = 8  # more input files than this under one version are drawn as one node


def lineage_graph(manifest: dict, root: DataRoot | None = None) -> tuple[list[dict], list[tuple[int, int]]]:
    """Every ancestor of a version (read through ``root``'s manifests) as nodes, and (upstream, downstream) edges.

    Nodes are ``{"label", "identity", "run"}``; the version itself is node 0. Versions are shared between paths
    (a tokenizer and tokens made from the same corpus point at one corpus node).
    """
    nodes: list[dict] = []
    edges: list[tuple[int, int]] = []
    seen: dict[str, int] = {}

    def add(key: str, label: str, identity: str, run: str | None) -> tuple[int, bool]:
        if key in seen:
            return seen[key], False
        seen[key] = len(nodes)
        nodes.append({"label": label, "identity": identity, "run": run})
        return seen[key], True

    def visit(manifest: dict, me: int) -> None:
        files = [up for up in manifest.get("upstream", []) if up["kind"] != "version"]
        for up in manifest.get("upstream", []):
            if up["kind"] != "version":
                continue
            if refused_upstream(up):
                # the names may hold anything (quotes, '|'): keep them out of the card's markdown and mermaid
                node, _ = add(f"refused/{me}/{len(nodes)}", "refused upstream", "breaks the name rule: not followed",
                              None)
                edges.append((node, me))
                continue
            node, new = add(f"{up['stage']}/{up['version']}", f"{up['stage']} {up['version']}",
                            f"checksum `{up['checksum'][:12]}`", (up.get("flow_run") or {}).get("url"))
            edges.append((node, me))
            if new and root is not None and root.exists(up["stage"], up["version"]):
                visit(root.read_manifest(up["stage"], up["version"]), node)
        if len(files) > MAX_FILES_PER_VERSION:
            kinds = sorted({up["kind"] for up in files})
            node, _ = add(f"files-of/{me}", f"{len(files)} {'/'.join(kinds)} files", "see the manifest", None)
            edges.append((node, me))
            return
        for up in files:
            name = Path(up["path"]).name
            node, _ = add(f"file/{up['sha256']}/{name}", f"{up['kind']}: {name}", f"sha256 `{up['sha256'][:12]}`", None)
            edges.append((node, me))

    run = manifest.get("flow_run") or {}
    add("self", _node_label(manifest), f"checksum `{manifest['checksum'][:12]}`", run.get("url"))
    visit(manifest, 0)
    return nodes, list(dict.fromkeys(edges))


def lineage_card(manifest: dict, root: DataRoot | None = None) -> str:
    """Markdown for a keyed Prefect artifact: the whole chain from the input files to this version as an image
    (the open-source UI does not draw mermaid), the same graph as mermaid (Prefect Cloud, GitHub), and a table of
    every node with its checksum and flow-run link."""
    from flows.charts import dag_svg, svg_markdown_image

    nodes, edges = lineage_graph(manifest, root)
    title = f"lineage of {_node_label(manifest)}"
    image = svg_markdown_image(dag_svg([n["label"] for n in nodes], edges, title=title), title)
    mermaid = ["```mermaid", "graph LR"] + [f'  n{i}["{n["label"]}"]' for i, n in enumerate(nodes)]
    mermaid += [f"  n{a} --> n{b}" for a, b in edges]
    mermaid += [f'  click n{i} "{n["run"]}"' for i, n in enumerate(nodes) if n["run"]] + ["```"]
    table = ["| node | identity | flow run |", "|---|---|---|"]
    for n in nodes:
        link = f"[run]({n['run']})" if n["run"] else "—"
        table.append(f"| {n['label']} | {n['identity']} | {link} |")
    run = manifest.get("flow_run") or {}
    head = [f"# Lineage of {_node_label(manifest)}", "",
            f"Checksum `{manifest['checksum'][:16]}`, built {manifest['created_at']} by code {manifest['code_version']}"
            + (f" in [flow run {run.get('name')}]({run.get('url')})" if run.get("url") else "") + ".", ""]
    return "\n".join(head + [image, ""] + table + [""] + mermaid) + "\n"


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


def format_lineage(folder: Path | str) -> str:
    """The chain that produced a version, as an indented tree with checksums and run links."""
    out = []
    for depth, node in walk_lineage(folder):
        pad = "  " * depth + ("└─ " if depth else "")
        if "stage" in node and "outputs" in node:
            run = (node.get("flow_run") or {}).get("url") or "no flow run"
            counts = ", ".join(f"{k}={v}" for k, v in node.get("counts", {}).items() if isinstance(v, (int, float)))
            out.append(f"{pad}{node['stage']} {node['version']}  checksum {node['checksum'][:12]}  {node['created_at']}  {run}")
            if counts:
                out.append(f"{'  ' * depth}{'   ' if depth else ''}  {counts}")
        elif node["kind"] == "refused":
            out.append(f"{pad}REFUSED upstream (not followed): {node['reason']}")
        elif node["kind"] == "version":
            out.append(f"{pad}{node['stage']} {node['version']}  checksum {node['checksum'][:12]}  (not in this data root)")
        else:
            out.append(f"{pad}{node['kind']} {node['path']}  sha256 {node['sha256'][:12]}  {node['bytes']} bytes")
    return "\n".join(out)
