"""What every stage flow does around its own work: start or resume a version, gate it, publish it with lineage.

    version = start_version(root, "tokens", requested, parameters)   # work folder + frozen plan, resumable
    … the stage writes its outputs into version.out …
    manifest = write_manifest(version.out, …)
    finish_version(root, version, manifest, report, table_rows, asset_deps)   # artifacts, gate, publish, asset event
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.assets import Asset, AssetProperties, add_asset_metadata, materialize

from data_contracts.gate import GateFailed, GateReport
from flows.lineage import lineage_card
from flows.store import DataRoot, StoreError, atomic_write_json


@dataclass(frozen=True)
class Version:
    stage: str
    name: str
    work: Path  # resumable work folder; ``out/`` inside it becomes the published version folder
    plan: dict  # parameters and anything frozen at the first start (e.g. earlier versions to dedup against)

    @property
    def out(self) -> Path:
        return self.work / "out"


@task(name="start-version")
def start_version(root: DataRoot, stage: str, requested: str | None, parameters: dict, frozen: dict | None = None) -> Version:
    """Pick the version, create or resume its work folder, and freeze the plan.

    With no version requested, an unfinished version started with the same parameters is resumed, else the next
    number is taken. ``frozen`` is recorded at the first start only (a resumed run keeps what it started with).
    """
    name = requested
    if name is None:
        same = [p for p in root.partial_versions(stage) if (p / "plan.json").exists()
                and json.loads((p / "plan.json").read_text())["parameters"] == parameters]
        name = same[0].name[1:-len(".partial")] if same else root.next_version(stage)
    if root.exists(stage, name):
        raise StoreError(f"{stage} version {name!r} is already published at {root.version_url(stage, name)}; "
                         "versions are immutable: pass a new version (or none for the next number)")
    work = root.work_dir(stage, name)
    plan_file = work / "plan.json"
    if plan_file.exists():
        plan = json.loads(plan_file.read_text())
        if plan["parameters"] != parameters:
            changed = sorted(k for k in parameters.keys() | plan["parameters"].keys()
                             if parameters.get(k) != plan["parameters"].get(k))
            raise StoreError(f"{stage} version {name!r} was started with other parameters (changed: {changed}); "
                             f"rerun with the original parameters to resume, or delete {work} to start over")
    else:
        plan = {"version": name, "parameters": parameters, **(frozen or {})}
        atomic_write_json(plan_file, plan)
    return Version(stage, name, work, plan)


def resolve_version(root: DataRoot, stage: str, requested: str | None, needed_by: str) -> str:
    """The requested version, or the newest published one, with an error that says what to run first."""
    if requested is not None:
        root.read_manifest(stage, requested)  # raises with the list of existing versions
        return requested
    versions = root.versions(stage)
    if not versions:
        raise StoreError(f"{needed_by} needs a {stage} version but {root.url}/{stage} has none: "
                         "run the stage that builds it first, or pass data_root")
    return versions[-1]


def artifact_key(stage: str, version: str, what: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return f"{stage}-{version}-{what}".lower().replace("_", "-").replace(".", "-")


def publish_artifacts(manifest: dict, report: GateReport, table_rows: list[dict], root: DataRoot | None = None) -> None:
    """The keyed lineage card (with the gate report) and a table of counts for this version."""
    stage, version = manifest["stage"], manifest["version"]
    create_markdown_artifact(lineage_card(manifest, root) + "\n" + report.markdown(), key=artifact_key(stage, version, "lineage"),
                             description=f"Lineage card of {stage} {version}")
    create_table_artifact(table_rows, key=artifact_key(stage, version, "counts"), description=f"Counts of {stage} {version}")


def _publish(root: DataRoot, version: Version) -> str:
    manifest = json.loads((version.out / "manifest.json").read_text())
    add_asset_metadata(root.asset_key(version.stage, version.name),
                       {"checksum": manifest["checksum"], **{k: v for k, v in manifest["counts"].items()
                                                             if isinstance(v, (int, float))}})
    url = root.publish(version.stage, version.name, version.out)
    shutil.rmtree(version.work, ignore_errors=True)
    return url


def finish_version(root: DataRoot, version: Version, manifest: dict, report: GateReport, table_rows: list[dict],
                   asset_deps: list[str], description: str) -> str:
    """Publish artifacts, stop on a failed gate (nothing is published), else publish with an asset event."""
    (version.work / "gate_report.md").write_text(report.markdown())
    publish_artifacts(manifest, report, table_rows, root)
    if not report.success:
        raise GateFailed(report)
    asset = Asset(key=root.asset_key(version.stage, version.name),
                  properties=AssetProperties(name=f"{version.stage} {version.name}", description=description))
    publish = materialize(asset, name=f"publish-{version.stage}", asset_deps=asset_deps)(_publish)
    return publish(root, version)
