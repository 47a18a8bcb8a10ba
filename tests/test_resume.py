"""A stage rerun after a kill at any point finishes the same version: before publish it resumes, between publish
(the rename of ``out/``) and cleanup it returns the published version and removes the leftovers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.store import DataRoot
from tests.builders import toy_stage


class Killed(Exception):
    pass


def kill_right_after(monkeypatch, method: str) -> None:
    """Let ``DataRoot.<method>`` run to its end, then die as a killed process would: no line after it runs."""
    original = getattr(DataRoot, method)

    def then_killed(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise Killed

    monkeypatch.setattr(DataRoot, method, then_killed)


def leftovers(root: DataRoot) -> list[str]:
    return sorted(p.name for p in (root.local_path / "tokens").iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("requested", ["v0007", None], ids=["named version", "next number"])
def test_a_stage_killed_between_publish_and_cleanup_reruns_to_the_published_version(
        tmp_path, prefect_harness, monkeypatch, requested):
    root = DataRoot.from_env(str(tmp_path / "data"))
    kill_right_after(monkeypatch, "publish")  # out/ is renamed into the version folder; the work folder stays
    with pytest.raises(Killed):
        toy_stage(root.url, requested, "hello")
    monkeypatch.undo()
    name = requested or "v0001"
    published = (root.local_path / "tokens" / name / "manifest.json").read_bytes()
    assert (root.local_path / "tokens" / f".{name}.partial" / "plan.json").is_file(), "the state of the kill"

    assert toy_stage(root.url, requested, "hello") == root.version_url("tokens", name)
    assert root.versions("tokens") == [name], "no duplicate version"
    assert (root.local_path / "tokens" / name / "manifest.json").read_bytes() == published, "not rebuilt"
    assert leftovers(root) == [], "work folder and lock file removed"


def test_a_stage_killed_before_publish_publishes_once_on_rerun(tmp_path, prefect_harness, monkeypatch):
    root = DataRoot.from_env(str(tmp_path / "data"))
    monkeypatch.setattr(DataRoot, "publish", lambda self, *args: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        toy_stage(root.url, "v0001", "hello")
    monkeypatch.undo()
    assert root.versions("tokens") == []

    assert toy_stage(root.url, "v0001", "hello") == root.version_url("tokens", "v0001")
    assert root.versions("tokens") == ["v0001"] and leftovers(root) == []
    assert (root.local_path / "tokens" / "v0001" / "data.txt").read_text() == "hello"


@pytest.mark.parametrize("leftover", ["none", "other parameters"])
def test_rerunning_a_cleanly_published_version_is_still_refused(tmp_path, prefect_harness, leftover):
    root = DataRoot.from_env(str(tmp_path / "data"))
    toy_stage(root.url, "v0001", "hello")
    if leftover == "other parameters":  # a work folder of another plan is no proof this run published it
        work = root.work_dir("tokens", "v0001")
        work.mkdir()
        (work / "plan.json").write_text(json.dumps({"version": "v0001", "parameters": {"text": "other"}}))
    with pytest.raises(Exception, match="already published"):
        toy_stage(root.url, "v0001", "hello")
    assert root.versions("tokens") == ["v0001"]


def test_the_rerun_after_a_killed_cleanup_emits_the_asset_event_with_the_recorded_dependencies(
        tmp_path, prefect_harness, monkeypatch):
    from prefect.assets import materialize

    seen = []

    def recording(asset, **kwargs):
        seen.append((asset.key, kwargs["asset_deps"], asset.properties.description))
        return materialize(asset, **kwargs)

    root = DataRoot.from_env(str(tmp_path / "data"))
    kill_right_after(monkeypatch, "publish")
    with pytest.raises(Killed):
        toy_stage(root.url, "v0001", "hello")
    monkeypatch.undo()
    monkeypatch.setattr("flows.stage.materialize", recording)
    toy_stage(root.url, "v0001", "hello")
    assert seen == [(root.asset_key("tokens", "v0001"), ["file:///toy-input"], "toy")]


def test_publish_record_is_not_an_output(tmp_path, prefect_harness):
    root = DataRoot.from_env(str(tmp_path / "data"))
    run = Path(toy_stage(root.url, "v0001", "hello"))
    assert sorted(json.loads((run / "manifest.json").read_text())["outputs"]) == ["data.txt"]
    assert sorted(p.name for p in run.iterdir()) == ["data.txt", "manifest.json"]
