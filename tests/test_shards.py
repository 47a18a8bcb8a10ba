"""Token shards: format helpers, the streaming writer, index.json validation, planning and per-shard tokenization."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gptcore.shards import (ShardStats, ShardWriter, SplitRule, TokenIndexError, decode_utf8, dtype_for_vocab,
                            plan_shards, read_index, split_of, tokenize_shard, write_index)


class ByteEncoder:
    """UTF-8 bytes as ids, end-of-text 256: decoding a shard back to text is trivial."""

    eot_id = 256
    vocab_size = 257

    def __init__(self) -> None:
        self.calls = 0

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        self.calls += 1
        return [list(t.encode("utf-8")) for t in texts]


class CodePointEncoder:
    """Code points as ids: a vocabulary over 65,535 ids."""

    vocab_size = 0x110001
    eot_id = 0x110000

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [[ord(c) for c in t] for t in texts]


def write_corpus(path: Path, doc_ids: list[str], texts: list, text_type=pa.string()) -> Path:
    lengths = [len(t.decode("utf-8", "replace")) if isinstance(t, bytes) else len(t or "") for t in texts]
    table = pa.table({"doc_id": pa.array(doc_ids, pa.string()), "text": pa.array(texts, text_type),
                      "n_chars": pa.array(lengths, pa.int64())})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", row_group_size=7)  # several row groups per file
    return path


def small_corpus(folder: Path, files: int = 2, docs_per_file: int = 60) -> tuple[list[Path], dict[str, str]]:
    paths, texts = [], {}
    for f in range(files):
        ids = [hashlib.blake2b(f"doc-{f}-{i}".encode(), digest_size=8).hexdigest() for i in range(docs_per_file)]
        docs = [f"document {f}/{i}: " + "words " * (i % 9) for i in range(docs_per_file)]
        texts.update(zip(ids, docs))
        paths.append(write_corpus(folder / f"part-{f:05d}.parquet", ids, docs))
    return paths, texts


def documents_in(path: Path, eot: int = 256) -> list[str]:
    """Split a byte-level shard at its EOTs (one before every document) back into texts."""
    ids = np.fromfile(path, dtype="<u2")
    assert ids[0] == eot, "every shard starts with end-of-text"
    cuts = np.flatnonzero(ids == eot)
    return [bytes(ids[a + 1:b].astype(np.uint8)).decode("utf-8") for a, b in zip(cuts, list(cuts[1:]) + [ids.size])]


def tokenize_all(tasks, encoder) -> list[ShardStats]:
    return [tokenize_shard(task, encoder) for task in tasks]


# -- format helpers ----------------------------------------------------------------------------------------------

def test_uint16_up_to_65535_ids_and_uint32_above():
    assert dtype_for_vocab(50_257) == np.dtype("<u2")
    assert dtype_for_vocab(65_535) == np.dtype("<u2")
    assert dtype_for_vocab(65_536) == np.dtype("<u4")
    assert dtype_for_vocab(100_000).str == "<u4"


def test_split_of_is_a_fixed_function_of_the_doc_id():
    # Pinned values: changing the hash would silently move documents between splits across corpus versions.
    ids = [f"{i:016x}" for i in range(12)]
    assert [split_of(d, 0.25) for d in ids] == [split_of(d, 0.25) for d in ids]
    assert [i for i, d in enumerate(ids) if split_of(d, 0.25) == "val"] == [1, 3, 4, 6]


def test_split_of_sends_about_the_validation_fraction_to_val_and_never_moves_val_back():
    ids = [hashlib.blake2b(str(i).encode(), digest_size=8).hexdigest() for i in range(20_000)]
    small = {d for d in ids if split_of(d, 0.01) == "val"}
    large = {d for d in ids if split_of(d, 0.05) == "val"}
    assert 150 < len(small) < 250
    assert 850 < len(large) < 1150
    assert small <= large
    assert not any(split_of(d, 0.0) == "val" for d in ids)


# -- writer ------------------------------------------------------------------------------------------------------

def test_writer_puts_eot_before_every_document_and_reports_what_it_wrote(tmp_path):
    path = tmp_path / "train_000000.bin"
    with ShardWriter(path, "<u2", eot_id=9) as writer:
        writer.add_document([1, 2, 3])
        writer.add_documents([[4], np.array([5, 6])])
        assert not path.exists(), "invisible until finished"
        stats = writer.finish()
    assert np.fromfile(path, dtype="<u2").tolist() == [9, 1, 2, 3, 9, 4, 9, 5, 6]
    assert (stats.tokens, stats.documents, stats.min_id, stats.max_id) == (9, 3, 1, 9)
    assert stats.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.read_bytes()[:2] == b"\x09\x00", "little-endian"


def test_writer_leaves_nothing_behind_when_not_finished(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path / "a.bin", "<u2", eot_id=0) as writer:
            writer.add_document([1, 2])
            raise RuntimeError("crash mid-shard")
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_ids_that_do_not_fit_its_dtype(tmp_path):
    with ShardWriter(tmp_path / "a.bin", "<u2", eot_id=0) as writer:
        with pytest.raises(ValueError, match="70000 does not fit in <u2"):
            writer.add_document([70_000])


# -- index -------------------------------------------------------------------------------------------------------

def written_folder(tmp_path: Path) -> Path:
    shards = []
    for split, name, docs in [("train", "train_000000.bin", [[1, 2], [3]]), ("val", "val_000000.bin", [[4, 5, 6]])]:
        with ShardWriter(tmp_path / name, "<u2", eot_id=0) as writer:
            writer.add_documents(docs)
            s = writer.finish()
        shards.append(ShardStats(file=name, split=split, tokens=s.tokens, documents=s.documents, sha256=s.sha256,
                                 min_id=s.min_id, max_id=s.max_id))
    write_index(tmp_path, vocab_size=7, eot_id=0, tokenizer_sha256="ab" * 32, split_rule=SplitRule(0.1),
                shards=shards)
    return tmp_path


def test_index_round_trips_with_counts_checksums_and_split_rule(tmp_path):
    folder = written_folder(tmp_path)
    index = read_index(folder, verify_checksums=True)
    assert index.dtype == np.dtype("<u2") and index.vocab_size == 7 and index.eot_id == 0
    assert index.split_rule == SplitRule(validation_fraction=0.1)
    assert [(s.file, s.tokens, s.documents) for s in index.shards] == [("train_000000.bin", 5, 2),
                                                                        ("val_000000.bin", 4, 1)]
    raw = json.loads((folder / "index.json").read_text())
    assert raw["dtype"] == "<u2" and raw["eot_placement"] == "before_each_document"
    assert raw["split_rule"] == {"kind": "doc_id_hash", "hash": "blake2b-8", "validation_fraction": 0.1}
    assert raw["totals"]["val"] == {"shards": 1, "tokens": 4, "documents": 1}


def test_a_missing_shard_fails_validation_naming_the_file(tmp_path):
    folder = written_folder(tmp_path)
    (folder / "val_000000.bin").unlink()
    with pytest.raises(TokenIndexError, match="val_000000.bin.*missing"):
        read_index(folder)


def test_a_truncated_shard_fails_validation_naming_the_file(tmp_path):
    folder = written_folder(tmp_path)
    (folder / "train_000000.bin").write_bytes(b"\x00\x00")
    with pytest.raises(TokenIndexError, match="train_000000.bin has 2 bytes but index.json records 5 tokens"):
        read_index(folder)


def test_a_changed_shard_of_the_same_size_fails_checksum_verification_by_default(tmp_path):
    folder = written_folder(tmp_path)
    path = folder / "train_000000.bin"
    path.write_bytes(bytes(path.stat().st_size))
    read_index(folder, verify_checksums=False)  # sizes still match
    with pytest.raises(TokenIndexError, match=r"train_000000.bin has sha256 [0-9a-f]{64} but index.json records "
                                              r"[0-9a-f]{64}.*rebuild the tokens version"):
        read_index(folder)


@pytest.mark.parametrize("split, refused", [("train", True), ("val", False)])
def test_a_token_dataset_verifies_the_shards_of_its_own_split(tmp_path, split, refused):
    from gptcore.data import TokenDataset

    folder = written_folder(tmp_path)
    path = folder / "train_000000.bin"
    path.write_bytes(bytes(path.stat().st_size))  # ids changed, still in range, same size
    if refused:
        with pytest.raises(TokenIndexError, match="train_000000.bin has sha256"):
            TokenDataset(folder, split)
    else:
        assert TokenDataset(folder, split).tokens == 4  # it never reads the train shard


@pytest.mark.parametrize("name", ["../train_000000.bin", "/tmp/train_000000.bin", "sub/train.bin", ".hidden.bin"])
def test_an_index_naming_a_shard_outside_the_tokens_folder_is_refused(tmp_path, name):
    folder = written_folder(tmp_path)
    raw = json.loads((folder / "index.json").read_text())
    raw["shards"][0]["file"] = name
    (folder / "index.json").write_text(json.dumps(raw))
    with pytest.raises(TokenIndexError, match="not a file name inside the tokens folder"):
        read_index(folder, verify_checksums=False)


def test_a_folder_without_index_is_reported_as_not_a_tokens_folder(tmp_path):
    with pytest.raises(TokenIndexError, match="not a tokens folder"):
        read_index(tmp_path)


# -- planning and tokenizing -------------------------------------------------------------------------------------

def test_every_document_lands_in_exactly_one_shard_of_its_split(tmp_path):
    paths, texts = small_corpus(tmp_path / "corpus")
    tasks = plan_shards(paths, tmp_path / "tokens", validation_fraction=0.2, target_chars_per_shard=600)
    assert len([t for t in tasks if t.split == "train"]) > 2, "small target → several shards"
    stats = tokenize_all(tasks, ByteEncoder())
    by_split = {"train": [], "val": []}
    for task, s in zip(tasks, stats):
        assert s.file == task.file and s.split == task.split and s.documents == task.documents
        by_split[task.split] += documents_in(Path(task.output))
    expected = {split: [t for d, t in texts.items() if split_of(d, 0.2) == split] for split in by_split}
    assert by_split == expected, "all documents, in corpus order, each in its own split"
    assert 0 < len(expected["val"]) < len(expected["train"])


def test_shard_boundaries_respect_the_targets(tmp_path):
    paths, _ = small_corpus(tmp_path / "corpus")
    tasks = plan_shards(paths, tmp_path / "tokens", validation_fraction=0.0, target_chars_per_shard=10**9,
                        max_documents_per_shard=25)
    assert [t.documents for t in tasks] == [25, 25, 25, 25, 20]
    assert [t.file for t in tasks][:2] == ["train_000000.bin", "train_000001.bin"]
    one_doc_each = plan_shards(paths, tmp_path / "tokens", validation_fraction=0.0, target_chars_per_shard=1)
    assert len(one_doc_each) == 120, "a document larger than the target gets a shard of its own"


def test_same_corpus_gives_the_same_plan_and_byte_identical_shards(tmp_path):
    paths, _ = small_corpus(tmp_path / "corpus")
    runs = []
    for run in ("a", "b"):
        tasks = plan_shards(paths, tmp_path / run, validation_fraction=0.2, target_chars_per_shard=500)
        # shards may be made in any order, by any worker
        runs.append({t.file: tokenize_shard(t, ByteEncoder()).sha256 for t in reversed(tasks)})
        assert [t.inputs for t in tasks] == [t.inputs for t in plan_shards(
            paths, tmp_path / run, validation_fraction=0.2, target_chars_per_shard=500)]
    assert runs[0] == runs[1]
    for name in runs[0]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_rerun_skips_finished_shards_and_redoes_damaged_ones(tmp_path):
    paths, _ = small_corpus(tmp_path / "corpus")
    tasks = plan_shards(paths, tmp_path / "tokens", validation_fraction=0.2, target_chars_per_shard=800)
    first = tokenize_all(tasks, ByteEncoder())
    encoder = ByteEncoder()
    assert tokenize_all(tasks, encoder) == first and encoder.calls == 0, "resumed: nothing re-encoded"
    damaged = Path(tasks[0].output)
    damaged.write_bytes(bytes(damaged.stat().st_size))
    killed_worker_leftover = damaged.with_name(f".{damaged.name}.tmp-99999")
    killed_worker_leftover.write_bytes(b"partial")
    assert tokenize_shard(tasks[0], encoder) == first[0] and encoder.calls > 0
    assert hashlib.sha256(damaged.read_bytes()).hexdigest() == first[0].sha256
    assert not killed_worker_leftover.exists()


def test_empty_documents_are_skipped_and_counted_nul_is_kept(tmp_path):
    path = write_corpus(tmp_path / "part-00000.parquet", ["a" * 16, "b" * 16, "c" * 16, "d" * 16],
                        ["first", "", "nul\x00inside", None])
    (task,) = plan_shards([path], tmp_path / "tokens", validation_fraction=0.0)
    stats = tokenize_shard(task, ByteEncoder())
    assert documents_in(Path(task.output)) == ["first", "nul\x00inside"]
    assert (stats.documents, stats.empty_documents, stats.empty_doc_ids) == (2, 2, ("b" * 16, "d" * 16))


def test_lone_surrogates_in_corpus_bytes_become_replacement_characters(tmp_path):
    lone_surrogate = "x\ud800y".encode("utf-8", "surrogatepass")  # what a non-validating writer stores
    path = write_corpus(tmp_path / "part-00000.parquet", ["a" * 16, "b" * 16], [lone_surrogate, "ok \ufffd".encode()],
                        text_type=pa.binary())
    (task,) = plan_shards([path], tmp_path / "tokens", validation_fraction=0.0)
    stats = tokenize_shard(task, ByteEncoder())
    assert documents_in(Path(task.output)) == ["x\ufffd\ufffd\ufffdy", "ok \ufffd"]
    assert stats.replaced_characters == 3, "each invalid byte of the surrogate counted; a real U+FFFD is not"
    assert decode_utf8("plain".encode()) == ("plain", 0)


def test_vocabulary_over_65535_is_written_as_uint32(tmp_path):
    path = write_corpus(tmp_path / "part-00000.parquet", ["a" * 16], ["clef 𝄞 high"])
    (task,) = plan_shards([path], tmp_path / "tokens", validation_fraction=0.0)
    stats = tokenize_shard(task, CodePointEncoder())
    ids = np.fromfile(task.output, dtype="<u4")
    assert ids.tolist() == [0x110000] + [ord(c) for c in "clef 𝄞 high"]
    assert stats.max_id == 0x110000
    write_index(tmp_path / "tokens", vocab_size=CodePointEncoder.vocab_size, eot_id=CodePointEncoder.eot_id,
                tokenizer_sha256="0" * 64, split_rule=SplitRule(0.0), shards=[stats])
    assert read_index(tmp_path / "tokens", verify_checksums=True).dtype == np.dtype("<u4")


def test_a_corpus_changed_after_planning_is_refused(tmp_path):
    path = write_corpus(tmp_path / "part-00000.parquet", ["a" * 16, "b" * 16], ["one", "two"])
    (task,) = plan_shards([path], tmp_path / "tokens", validation_fraction=0.0)
    write_corpus(path, ["a" * 16], ["one"])
    with pytest.raises(ValueError, match="corpus changed since planning"):
        tokenize_shard(task, ByteEncoder())
    assert not Path(task.output).exists()


def test_a_corpus_file_without_the_needed_columns_is_named(tmp_path):
    path = tmp_path / "part-00000.parquet"
    pq.write_table(pa.table({"doc_id": ["a"], "text": ["x"]}), path)
    with pytest.raises(ValueError, match="part-00000.parquet lacks column.*n_chars"):
        plan_shards([path], tmp_path / "tokens")
