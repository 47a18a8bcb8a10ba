"""Verified reads: a stage checks every upstream file it reads against the upstream manifest's sha256,
the manifest against its own checksum, and records checksums of the bytes it used; pointers stay inside a version.

Each damaged input is refused by the stage that reads it, through the real flows, with nothing published.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.lineage import write_manifest
from flows.store import CorruptVersionError, DataRoot, manifest_checksum, manifest_sha256
from gptcore.files import atomic_write_table, sha256_file
from gptcore.checkpoint import CHECKPOINT_DIR, LATEST, CheckpointError, checkpoint_in, latest_checkpoint, save_checkpoint
from tests.builders import MODULES, publish_corpus

HEX = "[0-9a-f]{64}"


# -- DataRoot.local_version: the check every stage's reads go through ------------------------------------------------


def published(root: DataRoot) -> Path:
    work = root.work_dir("corpus", "v0001")
    (work / "data").mkdir(parents=True)
    (work / "data" / "part.txt").write_text("hello")
    (work / "notes.txt").write_text("notes")
    write_manifest(work, "corpus", "v0001", {}, [], {"documents": 1})
    root.publish("corpus", "v0001", work)
    return root.local_path / "corpus" / "v0001"


def edit_manifest(folder: Path, change, *, reseal: bool = False, reseal_whole: bool = False) -> None:
    """Apply ``change`` to the manifest; ``reseal`` also recomputes its outputs checksum, ``reseal_whole`` its
    whole-manifest hash too, as a careful forger would."""
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    if reseal or reseal_whole:
        manifest["checksum"] = manifest_checksum(manifest)
    if reseal_whole:
        manifest["manifest_sha256"] = manifest_sha256(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def set_sha(name: str, sha: str):
    return lambda m: m["outputs"][name].update(sha256=sha)


CORRUPTIONS = {
    "same-size bytes changed": (lambda f: (f / "data" / "part.txt").write_text("HELLO"),
                                rf"part.txt has sha256 {HEX}, its manifest records {HEX}"),
    "truncated": (lambda f: (f / "data" / "part.txt").write_text("hell"), r"part.txt has 4 bytes, its manifest records 5"),
    "removed": (lambda f: (f / "notes.txt").unlink(), r"lacks files its manifest lists: \['notes.txt'\]"),
    "added": (lambda f: (f / "data" / "extra.txt").write_text("x"), r"does not list: \['data/extra.txt'\]"),
    "manifest sha256 edited": (lambda f: edit_manifest(f, set_sha("notes.txt", "0" * 64)),
                               rf"records checksum {HEX} but its outputs hash to {HEX}"),
    "manifest sha256 and checksum edited": (lambda f: edit_manifest(f, set_sha("notes.txt", "0" * 64), reseal=True),
                                            rf"records manifest_sha256 {HEX} but hashes to {HEX}"),
    "manifest sha256 and both checksums edited": (
        lambda f: edit_manifest(f, set_sha("notes.txt", "0" * 64), reseal_whole=True),
        rf"notes.txt has sha256 {HEX}, its manifest records 0{{64}}"),
    "manifest counts edited": (lambda f: edit_manifest(f, lambda m: m["counts"].update(documents=2)),
                               rf"records manifest_sha256 {HEX} but hashes to {HEX} \(its upstream, parameters or "
                               r"counts were edited\)"),
    "manifest upstream edited": (lambda f: edit_manifest(f, lambda m: m["upstream"].append({"kind": "file"})),
                                 r"its upstream, parameters or counts were edited"),
    "manifest names a file outside": (
        lambda f: edit_manifest(f, lambda m: m["outputs"].update({"../../escape": m["outputs"]["notes.txt"]}),
                                reseal=True), r"lists an output '../../escape' outside its version folder"),
    "manifest without checksum": (lambda f: edit_manifest(f, lambda m: m.pop("checksum")), r"no 'checksum'"),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_damaged_local_version_is_refused_naming_the_file_and_what_to_do(tmp_path, corruption):
    damage, message = CORRUPTIONS[corruption]
    root = DataRoot.from_env(str(tmp_path))
    damage(published(root))
    with pytest.raises(CorruptVersionError, match=message) as refused:
        root.local_version("corpus", "v0001")
    assert "the published corpus version 'v0001' was modified or damaged" in str(refused.value)
    assert "rebuild it as a new version (run build-corpus)" in str(refused.value)


def test_one_file_read_from_a_version_is_checked_against_the_manifest(tmp_path):
    root = DataRoot.from_env(str(tmp_path))
    folder = published(root)
    assert root.read_verified("corpus", "v0001", "notes.txt") == b"notes"
    assert root.verify_file("corpus", "v0001", "notes.txt") == f"{root.url}/corpus/v0001/notes.txt"
    (folder / "notes.txt").write_text("NOTES")
    for read in (root.read_verified, root.verify_file):
        with pytest.raises(CorruptVersionError, match=rf"notes.txt has sha256 {HEX}, its manifest records {HEX}"):
            read("corpus", "v0001", "notes.txt")
    with pytest.raises(CorruptVersionError, match="is not listed in its version's manifest"):
        root.read_verified("corpus", "v0001", "other.txt")


def test_an_intact_local_version_is_its_own_folder(tmp_path):
    root = DataRoot.from_env(str(tmp_path))
    folder = published(root)
    assert root.local_version("corpus", "v0001") == folder


def test_files_checked_on_read_are_not_hashed_here_but_their_size_is(tmp_path):
    root = DataRoot.from_env(str(tmp_path))
    folder = published(root)
    (folder / "data" / "part.txt").write_text("HELLO")  # the reader's own check (e.g. TokenDataset) catches this
    assert root.local_version("corpus", "v0001", checked_on_read=("data/*",)) == folder
    (folder / "data" / "part.txt").write_text("HELL")
    with pytest.raises(CorruptVersionError, match="part.txt has 4 bytes"):
        root.local_version("corpus", "v0001", checked_on_read=("data/*",))


# -- pointers inside a version ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pointer", ["/etc/passwd", "../../manifest.json", "../step_000001.pt", "sub/step_000001.pt",
                                     "..", ".step_000001.pt", "", "step_000001.pt/../../x"])
def test_a_latest_pointer_naming_a_file_outside_the_runs_checkpoints_is_refused(tmp_path, pointer):
    save_checkpoint(tmp_path, 1, {"step": 1})
    (tmp_path / CHECKPOINT_DIR / LATEST).write_text(pointer + "\n")
    with pytest.raises(CheckpointError, match="not a file directly in .*checkpoints: the pointer was edited"):
        latest_checkpoint(tmp_path)


def test_a_latest_pointer_written_by_save_checkpoint_is_followed(tmp_path):
    path = save_checkpoint(tmp_path, 7, {"step": 7})
    assert latest_checkpoint(tmp_path) == path == checkpoint_in(tmp_path, "checkpoints/step_000007.pt", "test")


@pytest.mark.parametrize("relative", ["../runs/r1/checkpoints/step_000001.pt", "/abs/step.pt", "step_000001.pt",
                                      "checkpoints/../manifest.json", "checkpoints/sub/step.pt"])
def test_a_checkpoint_path_from_a_manifest_stays_in_the_runs_checkpoints(tmp_path, relative):
    with pytest.raises(CheckpointError, match="the manifest of run 'r1' names the checkpoint"):
        checkpoint_in(tmp_path, relative, named_by="the manifest of run 'r1'")


# -- through the stage flows ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, prefect_harness) -> Path:
    """A data root with corpus c1, tokenizer t1 and tokens k1, built by the real flows; tests damage copies of it."""
    from flows.tokenize_corpus import tokenize
    from flows.train_tokenizer import train_tokenizer

    root = DataRoot.from_env(str(tmp_path_factory.mktemp("pristine")))
    publish_corpus(root, "c1", MODULES[:8])
    train_tokenizer(corpus="c1", version="t1", data_root=root.url, vocab_size=400, holdout_fraction=0.1)
    tokenize(corpus="c1", tokenizer="t1", version="k1", data_root=root.url, validation_fraction=0.2, workers=1)
    return root.local_path


@pytest.fixture
def copy(pristine, tmp_path) -> DataRoot:
    shutil.copytree(pristine, tmp_path / "data")
    return DataRoot.from_env(str(tmp_path / "data"))


def swap_two_vocabulary_entries(folder: Path) -> None:
    """Two tokens trade ids: still a valid tokenizer of the same size, but it encodes differently."""
    path = folder / "tokenizer.json"
    text = path.read_text()
    assert text.count(": 300,") == text.count(": 301,") == 1
    path.write_text(text.replace(": 300,", ": @,").replace(": 301,", ": 300,").replace(": @,", ": 301,"))


def change_one_document(folder: Path) -> None:
    path = folder / "data" / "part-00000.parquet"
    table = pq.read_table(path)
    texts = table["text"].to_pylist()
    texts[0] = texts[0].upper()
    atomic_write_table(path, table.set_column(table.schema.get_field_index("text"), table.schema.field("text"),
                                              pa.array(texts)))


def edit_a_shard_sha256_in_the_manifest(folder: Path) -> None:
    edit_manifest(folder, lambda m: m["outputs"]["data/part-00000.parquet"].update(sha256="f" * 64))


def resealed_tokenizer(folder: Path) -> None:
    """tokenizer.json swapped and its manifest entry and checksum recomputed: the manifest is self-consistent."""
    swap_two_vocabulary_entries(folder)
    edit_manifest(folder, lambda m: m["outputs"]["tokenizer.json"].update(sha256=sha256_file(folder / "tokenizer.json")))


TOKENIZE_INPUTS = {
    "swapped tokenizer.json": ("tokenizer/t1", swap_two_vocabulary_entries, rf"tokenizer.json has sha256 {HEX}"),
    "changed corpus parquet": ("corpus/c1", change_one_document, rf"part-00000.parquet has (sha256 {HEX}|\d+ bytes)"),
    "edited manifest sha256": ("corpus/c1", edit_a_shard_sha256_in_the_manifest, "outputs hash to"),
    "tokenizer.json with a re-hashed entry but the old checksum": ("tokenizer/t1", resealed_tokenizer,
                                                                   "outputs hash to"),
}


@pytest.mark.parametrize("case", TOKENIZE_INPUTS)
def test_tokenize_refuses_a_damaged_input_and_publishes_nothing(copy, case, prefect_harness):
    from flows.tokenize_corpus import tokenize

    where, damage, message = TOKENIZE_INPUTS[case]
    damage(copy.local_path / where)
    stage, version = where.split("/")
    with pytest.raises(CorruptVersionError, match=message) as refused:
        tokenize(corpus="c1", tokenizer="t1", version="k2", data_root=copy.url, workers=1)
    assert f"the published {stage} version {version!r} was modified or damaged" in str(refused.value)
    assert copy.versions("tokens") == ["k1"] and not copy.partial_versions("tokens")


def test_tokens_record_the_checksums_of_the_files_they_were_made_from(pristine):
    root = DataRoot.from_env(str(pristine))
    index = json.loads((pristine / "tokens" / "k1" / "index.json").read_text())
    assert index["tokenizer_sha256"] == sha256_file(pristine / "tokenizer" / "t1" / "tokenizer.json")
    upstream = root.read_manifest("tokens", "k1")["upstream"]
    assert {u["version"]: u["checksum"] for u in upstream} == {
        v: manifest_checksum(root.read_manifest(s, v)) for s, v in (("corpus", "c1"), ("tokenizer", "t1"))}


def test_pretrain_refuses_a_shard_with_changed_ids_and_publishes_nothing(copy, prefect_harness):
    from flows.pretrain import pretrain

    shard = copy.local_path / "tokens" / "k1" / "train_000000.bin"
    ids = np.fromfile(shard, dtype="<u2")
    ids[1:11] = 5  # still valid ids, same size: only the checksum can tell
    ids.tofile(shard)
    with pytest.raises(CorruptVersionError, match=rf"train_000000.bin has sha256 {HEX}, its manifest records {HEX}"
                                                  r".*tokens version 'k1' was modified or damaged.*run tokenize"):
        pretrain(tokens="k1", version="r1", data_root=copy.url, preset="tiny", train={"max_steps": 2})
    assert copy.versions("runs") == [] and not copy.partial_versions("runs")


def test_pretrain_refuses_an_init_from_run_whose_manifest_points_outside_it(copy, prefect_harness):
    from flows.pretrain import pretrain

    work = copy.work_dir("runs", "r0")
    save_checkpoint(work, 1, {"step": 1})
    write_manifest(work, "runs", "r0", {"model": {}}, [], {"checkpoint": "../../tokens/k1/index.json"})
    copy.publish("runs", "r0", work)
    with pytest.raises(CheckpointError, match=r"the manifest of run 'r0' names the checkpoint '../../tokens"):
        pretrain(tokens="k1", version="r1", init_from_run="r0", data_root=copy.url, preset="tiny",
                 train={"max_steps": 2})
    assert copy.versions("runs") == ["r0"]
