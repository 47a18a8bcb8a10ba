"""What every stage flow does around its own work: start or resume a version, gate it, publish it with lineage.

    version = start_version(root, "tokens", requested, parameters)   # lock, work folder + frozen plan, resumable
    if version.published:                                             # an earlier run published it, then was killed
        return version.published
    … the stage writes its outputs into version.out …
    manifest = write_manifest(version.out, …)
    finish_version(root, version, manifest, report, table_rows, asset_deps)   # artifacts, gate, publish, asset event

A rerun after a kill at any point finishes the same version: before publish it resumes the work folder; between
publish (the rename of ``out/``) and cleanup it finds the published version, removes the leftovers, emits the asset
event the killed run did not, and the flow returns the version. One run per version at a time
(``flows.version_lock``): held from ``start_version`` until ``finish_version`` ends, by the flow's process (a flow
that raises before ``finish_version`` keeps it until its process ends or starts that version again).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.assets import Asset, AssetProperties, add_asset_metadata, materialize
from prefect.settings import get_current_settings

from data_contracts.gate import GateFailed, GateReport
from flows import version_lock
from flows.cards import lineage_card
from flows.store import MANIFEST, DataRoot, StoreError
from gptcore.files import atomic_write_json

PLAN = "plan.json"  # in the work folder: the parameters (and what was frozen) at the first start
GATE_REPORT = "gate_report.md"  # in the work folder: the last gate's report, to read after a failure
PUBLISH_RECORD = "publish.json"  # asset deps and description, so a rerun after a killed cleanup emits the same event


@dataclass(frozen=True)
class Version:
    stage: str
    name: str
    work: Path  # resumable work folder; ``out/`` inside it becomes the published version folder
    plan: dict  # parameters and anything frozen at the first start (e.g. earlier versions to dedup against)
    published: str | None = None  # the version folder, when a killed run had already published it: return it

    @property
    def out(self) -> Path:
        return self.work / "out"


@task(name="start-version")
def start_version(root: DataRoot, stage: str, requested: str | None, parameters: dict, frozen: dict | None = None) -> Version:
    """Pick the version, create or resume its work folder, and freeze the plan.

    With no version requested, an unfinished version started with the same parameters is resumed, else the next
    number is taken. ``frozen`` is recorded at the first start only (a resumed run keeps what it started with).
    Call it from the flow (not ``.submit``): the version lock it takes belongs to the flow's process, and a second
    run of the same version fails here at once with ``VersionInUse``.
    """
    name = requested
    if name is None:
        same = [p for p in root.partial_versions(stage) if (p / PLAN).exists()
                and json.loads((p / PLAN).read_text())["parameters"] == parameters]
        name = same[0].name[1:-len(".partial")] if same else root.next_version(stage)
    work = root.work_dir(stage, name)
    version_lock.hold(work, f"{stage} {name}")
    try:
        plan_file = work / PLAN
        plan = json.loads(plan_file.read_text()) if plan_file.exists() else None
        if root.exists(stage, name):
            if plan is None or plan["parameters"] != parameters:
                raise StoreError(f"{stage} version {name!r} is already published at {root.version_url(stage, name)};"
                                 " versions are immutable: pass a new version (or none for the next number)")
            version = Version(stage, name, work, plan, published=_finish_killed_publish(root, stage, name, work))
            version_lock.release(work)
            return version
        if plan is None:
            plan = {"version": name, "parameters": parameters, **(frozen or {})}
            atomic_write_json(plan_file, plan)
        elif plan["parameters"] != parameters:
            changed = sorted(k for k in parameters.keys() | plan["parameters"].keys()
                             if parameters.get(k) != plan["parameters"].get(k))
            raise StoreError(f"{stage} version {name!r} was started with other parameters (changed: {changed}); "
                             f"rerun with the original parameters to resume, or delete {work} to start over")
    except BaseException:
        version_lock.release(work)
        raise
    return Version(stage, name, work, plan)


def _finish_killed_publish(root: DataRoot, stage: str, name: str, work: Path) -> str:
    """The published version's work folder outlived a kill: do what the killed run's publish task had left."""
    record = json.loads((work / PUBLISH_RECORD).read_text()) if (work / PUBLISH_RECORD).exists() else {}
    return _materialized(root, stage, name, record.get("asset_deps", []), record.get("description", ""),
                         _clean_up_published)(root, stage, name, work)


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


def upstream_asset_keys(root: DataRoot, upstream: list[dict]) -> list[str]:
    """The asset event's upstream: a manifest's upstream entries, the ones its lineage card draws, in their order —
    input files by their file URL, versions by their asset key.

    Prefect drops an event that names more related resources than its limit (100 by default), so past it the input
    files are named by the folders that hold them (a BooksCorpus-style build reads thousands of files).
    """
    keys = [root.asset_key(up["stage"], up["version"]) if up["kind"] == "version" else Path(up["path"]).as_uri()
            for up in upstream]
    if len(keys) <= get_current_settings().server.events.maximum_related_resources:
        return keys
    folders = dict.fromkeys(Path(up["path"]).parent.as_uri() for up in upstream if up["kind"] != "version")
    return list(folders) + [root.asset_key(up["stage"], up["version"]) for up in upstream if up["kind"] == "version"]


def publish_artifacts(manifest: dict, report: GateReport, table_rows: list[dict], root: DataRoot | None = None) -> None:
    """The keyed lineage card (with the gate report) and a table of counts for this version."""
    stage, version = manifest["stage"], manifest["version"]
    create_markdown_artifact(lineage_card(manifest, root) + "\n" + report.markdown(), key=artifact_key(stage, version, "lineage"),
                             description=f"Lineage card of {stage} {version}")
    create_table_artifact(table_rows, key=artifact_key(stage, version, "counts"), description=f"Counts of {stage} {version}")


def _add_asset_metadata(root: DataRoot, stage: str, name: str, manifest: dict) -> None:
    add_asset_metadata(root.asset_key(stage, name),
                       {"checksum": manifest["checksum"], **{k: v for k, v in manifest["counts"].items()
                                                             if isinstance(v, (int, float))}})


def _publish(root: DataRoot, stage: str, name: str, work: Path) -> str:
    _add_asset_metadata(root, stage, name, json.loads((work / "out" / MANIFEST).read_text()))
    url = root.publish(stage, name, work / "out")
    shutil.rmtree(work, ignore_errors=True)  # a kill before this line is finished by the rerun's start_version
    return url


def _clean_up_published(root: DataRoot, stage: str, name: str, work: Path) -> str:
    _add_asset_metadata(root, stage, name, root.read_manifest(stage, name))
    shutil.rmtree(work, ignore_errors=True)
    return root.version_url(stage, name)


def _materialized(root: DataRoot, stage: str, name: str, asset_deps: list[str], description: str, fn):
    asset = Asset(key=root.asset_key(stage, name), properties=AssetProperties(name=f"{stage} {name}",
                                                                             description=description))
    return materialize(asset, name=f"publish-{stage}", asset_deps=asset_deps)(fn)


def finish_version(root: DataRoot, version: Version, manifest: dict, report: GateReport, table_rows: list[dict],
                   asset_deps: list[str], description: str) -> str:
    """Publish artifacts, stop on a failed gate (nothing is published), else publish with an asset event.
    The version lock is released either way."""
    try:
        (version.work / GATE_REPORT).write_text(report.markdown())
        publish_artifacts(manifest, report, table_rows, root)
        if not report.success:
            raise GateFailed(report)
        atomic_write_json(version.work / PUBLISH_RECORD, {"asset_deps": asset_deps, "description": description})
        publish = _materialized(root, version.stage, version.name, asset_deps, description, _publish)
        return publish(root, version.stage, version.name, version.work)
    finally:
        version_lock.release(version.work)
