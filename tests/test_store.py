import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.cards import format_lineage
from flows.lineage import input_file, upstream_version, write_manifest
from flows.store import DataRoot, StoreError
from gptcore.files import atomic_write_table


def _publish(root: DataRoot, stage: str, version: str, upstream: list[dict], payload: str = "x") -> dict:
    work = root.work_dir(stage, version)
    work.mkdir(parents=True)
    (work / "part.txt").write_text(payload)
    manifest = write_manifest(work, stage, version, {"p": 1}, upstream, {"documents": 1})
    root.publish(stage, version, work)
    return manifest


def test_published_version_is_immutable_and_listed(tmp_path):
    root = DataRoot.from_env(str(tmp_path))
    assert root.next_version("corpus") == "v0001"
    _publish(root, "corpus", "v0001", [])
    assert root.versions("corpus") == ["v0001"]
    assert root.next_version("corpus") == "v0002"
    work = root.work_dir("corpus", "v0001")
    work.mkdir(parents=True)
    (work / "manifest.json").write_text("{}")
    with pytest.raises(StoreError, match="immutable"):
        root.publish("corpus", "v0001", work)


def test_in_progress_versions_reserve_their_number(tmp_path):
    root = DataRoot.from_env(str(tmp_path))
    root.work_dir("corpus", "v0003").mkdir(parents=True)
    assert root.next_version("corpus") == "v0004"


def test_bad_version_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a valid folder name"):
        DataRoot.from_env(str(tmp_path)).work_dir("corpus", "../escape")


def test_missing_version_error_lists_what_exists(tmp_path):
    root = DataRoot.from_env(str(tmp_path))
    _publish(root, "corpus", "v0001", [])
    with pytest.raises(StoreError, match=r"'v0009' not found.*v0001"):
        root.read_manifest("corpus", "v0009")


def test_manifest_records_outputs_with_checksums(tmp_path):
    root = DataRoot.from_env(str(tmp_path))
    manifest = _publish(root, "corpus", "v0001", [], payload="hello")
    on_disk = json.loads((tmp_path / "corpus" / "v0001" / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["outputs"]["part.txt"] == {
        "bytes": 5, "sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}
    assert len(manifest["checksum"]) == 64


def test_atomic_table_write_leaves_no_temporary_files(tmp_path):
    path = atomic_write_table(tmp_path / "t.parquet", pa.table({"a": [1, 2]}))
    assert pq.read_table(path)["a"].to_pylist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_lineage_walks_from_a_version_back_to_its_input_files(tmp_path):
    root = DataRoot.from_env(str(tmp_path / "data"))
    dump = tmp_path / "RS_2019-01.zst"
    dump.write_bytes(b"dump")
    _publish(root, "corpus", "v0001", [input_file(dump, "dump")])
    _publish(root, "tokenizer", "t1", [upstream_version(root, "corpus", "v0001")])
    text = format_lineage(tmp_path / "data" / "tokenizer" / "t1")
    lines = text.splitlines()
    assert lines[0].startswith("tokenizer t1")
    assert any("corpus v0001" in line for line in lines)
    assert any("dump " + str(dump.resolve()) in line for line in lines)


def test_the_tokenizer_of_a_run_is_found_through_its_tokens_also_from_a_fine_tuned_run(tmp_path):
    from flows.lineage import tokenizer_of_run, tokens_of_run

    root = DataRoot.from_env(str(tmp_path))
    _publish(root, "corpus", "c1", [])
    _publish(root, "tokenizer", "t1", [upstream_version(root, "corpus", "c1")])
    _publish(root, "tokens", "k1", [upstream_version(root, "corpus", "c1"), upstream_version(root, "tokenizer", "t1")])
    _publish(root, "runs", "r1", [upstream_version(root, "tokens", "k1")])
    _publish(root, "runs", "r1-task", [upstream_version(root, "runs", "r1")])
    assert [tokens_of_run(root, run) for run in ("r1", "r1-task")] == ["k1", "k1"]
    assert [tokenizer_of_run(root, run) for run in ("r1", "r1-task")] == ["t1", "t1"]
    _publish(root, "runs", "orphan", [])
    with pytest.raises(StoreError, match=r"run 'orphan' .* names no tokens version .*not a pretrain run"):
        tokenizer_of_run(root, "orphan")
