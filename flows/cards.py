"""What people read about versions: the lineage card in Prefect, the tree ``gptforge lineage`` prints, the table of a
pipeline's versions, and the champion registry as text.

Rendering only: the manifests are written and walked by ``flows.lineage``, the images drawn by ``flows.charts``.
Names read from manifests reach markdown and mermaid only once the name rule has passed them
(``flows.lineage.refused_upstream``): a refused upstream is drawn as such, never by its name.
"""
from __future__ import annotations

from pathlib import Path

from flows.charts import dag_svg, svg_markdown_image
from flows.lineage import refused_upstream, walk_lineage
from flows.registry import Registry
from flows.store import DataRoot

MAX_FILES_PER_VERSION = 8  # more input files than this under one version are drawn as one node


def _node_label(manifest: dict) -> str:
    return f"{manifest['stage']} {manifest['version']}"


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


def versions_table(root: DataRoot, title: str, versions: list[tuple[str, str]]) -> str:
    """Markdown, one line per published (stage folder, version): its headline counts and flow-run link."""
    lines = [f"# {title}", "", "| stage | version | counts | flow run |", "|---|---|---|---|"]
    for stage, version in versions:
        manifest = root.read_manifest(stage, version)
        counts = {k: v for k, v in manifest.get("counts", {}).items() if isinstance(v, (int, float))}
        headline = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in list(counts.items())[:6])
        flow_run = manifest.get("flow_run") or {}
        link = f"[{flow_run.get('name', flow_run.get('id', ''))}]({flow_run['url']})" if flow_run.get("url") else ""
        lines.append(f"| {stage} | `{version}` | {headline} | {link} |")
    return "\n".join(lines) + "\n"


def format_registry(registry: Registry) -> str:
    """What ``gptforge champion`` prints: the champion, then the decisions, newest last."""
    champion = registry.champion
    lines = [f"registry {registry.name}: " + (
        f"champion {champion['cycle']} (pretrain run {champion['pretrain']}; {champion['metric']} "
        f"{champion['value']:.4g}, eval {champion['eval']})" if champion else "no champion yet")]
    for entry in registry.history:
        values = ""
        if entry.get("challenger_value") is not None:
            values = f" challenger {entry['challenger_value']:.4g}"
            if entry.get("champion_value") is not None:
                values += f" vs champion {entry['champion_value']:.4g}"
        lines.append(f"  {entry['at']}  {entry.get('cycle') or '-':<14} {entry['decision']:<11}{values}  "
                     f"{entry.get('reason', '')}")
    return "\n".join(lines)
