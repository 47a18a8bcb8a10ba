"""flows.task_inputs: task files are local paths or URLs under the data root; other URLs are refused unfetched."""
from __future__ import annotations

import re
from collections.abc import Iterator

import fsspec
import pytest

from flows.store import DataRoot
from flows.task_inputs import TaskInputRefused, local_input
from tests.loopback_site import Site

RECORDS = b'{"text": "a fine day", "label": "pos"}\n'


@pytest.fixture
def site() -> Iterator[Site]:
    with Site() as running:
        running.routes["/train.jsonl"] = lambda h: h.reply(200, RECORDS)
        yield running


@pytest.fixture
def store_root(request) -> Iterator[DataRoot]:
    """A data root on an object store (fsspec's in-memory one), with two task files of the same name."""
    bucket = f"memory://{re.sub(r'[^a-z0-9]', '-', request.node.name)}"  # one bucket per test; no glob characters
    fs = fsspec.filesystem("memory")
    fs.pipe({f"{bucket}/data/tasks/train/data.jsonl": RECORDS, f"{bucket}/data/tasks/test/data.jsonl": b"test\n",
             f"{bucket}/elsewhere/data.jsonl": b"outside\n"})
    yield DataRoot.from_env(f"{bucket}/data")
    fs.rm(bucket, recursive=True)


@pytest.mark.parametrize("root_kind", ["local", "object store"])
def test_a_loopback_url_is_refused_without_being_requested(site, tmp_path, store_root, root_kind):
    root = DataRoot.from_env(str(tmp_path / "data")) if root_kind == "local" else store_root
    for host in ("127.0.0.1", "localhost"):
        with pytest.raises(TaskInputRefused, match=r"outside the data root .*download the file first .*or copy it"):
            local_input(site.url("/train.jsonl", host), tmp_path, root)
    assert site.hits == {}  # refused before any connection
    assert not list(tmp_path.rglob("*.jsonl"))


@pytest.mark.parametrize("relative", [
    "../elsewhere/data.jsonl",  # climbs out of the root
    "../data2/x.jsonl",  # a sibling whose name starts like the root's
])
def test_an_object_store_url_outside_the_data_root_is_refused(store_root, tmp_path, relative):
    with pytest.raises(TaskInputRefused, match="outside the data root"):
        local_input(f"{store_root.url}/{relative}", tmp_path, store_root)


def test_a_chained_url_is_refused_even_when_it_ends_in_the_data_root(store_root, tmp_path):
    with pytest.raises(TaskInputRefused, match="outside the data root"):
        local_input(f"simplecache::{store_root.url}/tasks/train/data.jsonl", tmp_path, store_root)


def test_files_under_an_object_store_data_root_are_copied_and_same_named_files_stay_apart(store_root, tmp_path):
    train = local_input(f"{store_root.url}/tasks/train/data.jsonl", tmp_path, store_root)
    test = local_input(f"{store_root.url}/tasks/test/data.jsonl", tmp_path, store_root)
    assert train != test and train.name == test.name == "data.jsonl"
    assert (train.read_bytes(), test.read_bytes()) == (RECORDS, b"test\n")


def test_local_paths_are_used_in_place_and_a_missing_one_is_named(tmp_path):
    root = DataRoot.from_env(str(tmp_path / "data"))
    path = tmp_path / "train.jsonl"
    path.write_bytes(RECORDS)
    assert local_input(str(path), tmp_path / "downloads", root) == path
    assert local_input(path.as_uri(), tmp_path / "downloads", root) == path
    with pytest.raises(FileNotFoundError, match="missing.jsonl does not exist"):
        local_input(str(tmp_path / "missing.jsonl"), tmp_path / "downloads", root)


def test_the_evaluate_flows_jsonl_tasks_reject_a_bad_byte_or_broken_line_and_keep_the_rest(tmp_path):
    from gptcore.evaltasks import read_jsonl_task

    path = tmp_path / "lambada.jsonl"
    path.write_bytes(b'{"text": "one"}\n{"text": "caf\xe9"}\n{"text": \n["text"]\n{"other": "x"}\n{"text": "two"}\n'
                     b'{"text": "lone \\ud800 surrogate"}\n')
    data = read_jsonl_task(path, ("text",))
    assert data.records == [{"text": "one"}, {"text": "two"}]
    assert data.rejects == {"undecodable": 2, "malformed_json": 2, "missing_field": 1}
