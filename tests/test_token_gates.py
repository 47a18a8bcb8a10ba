"""The tokenizer and tokens gates on hand-made inputs: each broken contract is named."""
from __future__ import annotations

import hashlib

import numpy as np

from data_contracts.tokenizer import validate_tokenizer
from data_contracts.tokens import validate_tokens


def test_a_sound_tokenizer_passes_and_each_defect_is_named():
    assert validate_tokenizer(1024, 1024, [], 0, 5, 3.2).success
    failed = validate_tokenizer(1000, 1024, ["<|endoftext|>"], 2, 0, 0.5).failures
    assert [f.expectation for f in failed] == [
        "expect_column_pair_values_to_be_equal", "expect_column_values_to_be_between",
        "expect_column_values_to_be_between", "expect_column_values_to_be_between", "expect_column_values_to_be_between"]
    assert {f.kwargs.get("column") for f in failed} >= {"missing_special_tokens", "round_trip_failures", "bytes_per_token"}


def _shard(folder, name, split, ids, dtype="<u2", lie_tokens=0, lie_sha=False):
    data = np.asarray(ids, dtype=dtype)
    data.tofile(folder / name)
    sha = hashlib.sha256(data.tobytes()).hexdigest()
    return {"file": name, "split": split, "tokens": len(ids) + lie_tokens, "documents": 1,
            "sha256": "0" * 64 if lie_sha else sha}


def test_sound_shards_pass(tmp_path):
    index = {"dtype": "<u2", "vocab_size": 100, "shards": [_shard(tmp_path, "t.bin", "train", [99, 1, 2]),
                                                           _shard(tmp_path, "v.bin", "val", [99, 3])]}
    assert validate_tokens(tmp_path, index).success


def test_ids_out_of_range_wrong_counts_bad_checksums_and_no_validation_split_fail(tmp_path):
    index = {"dtype": "<u2", "vocab_size": 100, "shards": [
        _shard(tmp_path, "a.bin", "train", [99, 150]),
        _shard(tmp_path, "b.bin", "train", [99, 1], lie_tokens=3),
        _shard(tmp_path, "c.bin", "train", [99, 2], lie_sha=True)]}
    failed = {f.expectation for f in validate_tokens(tmp_path, index).failures}
    assert failed == {"expect_column_values_to_be_between", "expect_column_pair_values_to_be_equal",
                      "expect_column_values_to_be_in_set", "expect_column_distinct_values_to_contain_set"}
