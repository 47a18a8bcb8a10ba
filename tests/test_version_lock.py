"""One run per version at a time: a second start of a version in progress fails at once, naming the holder and
what to do, and leaves nothing behind; a killed or finished holder, or a stale lock file, blocks nothing."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from prefect import flow

from flows import version_lock
from flows.stage import start_version
from flows.store import DataRoot
from flows.version_lock import VersionInUse
from tests.builders import build_and_finish, toy_stage

HOLDER = """
import sys
from flows.stage import start_version
from flows.store import DataRoot
start_version.fn(DataRoot.from_env(sys.argv[1]), "tokens", "v0003", {"p": 1})
print("held", flush=True)
sys.stdin.read()  # holds the version until the test closes stdin or kills this process
"""


def snapshot(root: DataRoot) -> dict[str, bytes]:
    return {p.relative_to(root.local_path).as_posix(): p.read_bytes()
            for p in sorted(root.local_path.rglob("*")) if p.is_file()}


@pytest.fixture
def holder(tmp_path):
    """Another process that has started tokens v0003 and is still at it."""
    root = DataRoot.from_env(str(tmp_path / "data"))
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, root.url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).parent.parent)
    try:
        assert proc.stdout.readline() == "held\n"
        yield root, proc
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("requested", ["v0003", None], ids=["named version", "resume by parameters"])
def test_a_second_start_of_a_version_in_progress_fails_at_once_naming_the_holder(holder, requested):
    root, proc = holder
    before = snapshot(root)
    with pytest.raises(VersionInUse, match=rf"^another run of tokens v0003 is in progress \(pid {proc.pid}, host "
                                           r".+\); wait for it to finish or choose another version$"):
        start_version.fn(root, "tokens", requested, {"p": 1})
    assert snapshot(root) == before, "the refused run leaves nothing behind"


def test_a_killed_holder_blocks_nothing(holder):
    root, proc = holder
    proc.kill()
    proc.wait()
    version = start_version.fn(root, "tokens", "v0003", {"p": 1})
    assert version.name == "v0003" and version.plan["parameters"] == {"p": 1}  # the killed run's work, resumed
    version_lock.release(version.work)
    assert not version_lock.lock_path(version.work).exists()


def test_a_stale_lock_file_blocks_nothing(tmp_path, prefect_harness):
    root = DataRoot.from_env(str(tmp_path / "data"))
    stale = version_lock.lock_path(root.work_dir("tokens", "v0001"))
    stale.parent.mkdir(parents=True)
    stale.write_text('{"pid": 999999, "host": "gone"}')
    assert toy_stage(root.url, "v0001", "hello") == root.version_url("tokens", "v0001")
    assert not stale.exists()


entered, go = threading.Event(), threading.Event()


@flow(name="paused-stage")
def paused_stage(data_root: str) -> str:
    """Starts tokens v0001, then waits for the test before doing the rest of toy_stage's work."""
    root = DataRoot.from_env(data_root)
    started = start_version(root, "tokens", "v0001", {"text": "hello"})
    entered.set()
    go.wait(timeout=120)
    return build_and_finish(root, started, "hello")


def test_a_second_flow_run_in_the_same_process_is_refused_while_the_first_holds_the_version(tmp_path,
                                                                                             prefect_harness):
    root = DataRoot.from_env(str(tmp_path / "data"))
    entered.clear(), go.clear()
    results: list[str] = []
    first = threading.Thread(target=lambda: results.append(paused_stage(root.url)))
    first.start()
    try:
        assert entered.wait(timeout=120)
        with pytest.raises(VersionInUse, match="another run of tokens v0001 is in progress .*flow_run "):
            toy_stage(root.url, "v0001", "hello")
    finally:
        go.set()
        first.join(timeout=120)
    assert results == [root.version_url("tokens", "v0001")] and root.versions("tokens") == ["v0001"]


@flow(name="failing-stage")
def failing_stage(data_root: str) -> None:
    start_version(DataRoot.from_env(data_root), "tokens", "v0001", {"text": "hello"})
    raise RuntimeError("the stage's work failed")


def test_a_failed_flow_run_does_not_block_the_rerun_in_the_same_process(tmp_path, prefect_harness):
    root = DataRoot.from_env(str(tmp_path / "data"))
    with pytest.raises(RuntimeError, match="work failed"):
        failing_stage(root.url)
    assert toy_stage(root.url, "v0001", "hello") == root.version_url("tokens", "v0001")
    assert not version_lock.lock_path(root.work_dir("tokens", "v0001")).exists()
