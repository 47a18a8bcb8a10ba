"""Deduplication: normalized-text hashes, MinHash LSH band keys, priority-ordered dedup, and earlier-version indexes."""
from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from gptcore.corpus import minhash
from gptcore.corpus.dedup import DedupIndex, deduplicate, write_dedup_index
from gptcore.corpus.minhash import (
    MinHashConfig,
    band_keys,
    band_keys_many,
    bands_to_arrow,
    fingerprint_table,
    normalize_for_hash,
    text_hash,
)
from gptcore.corpus.records import REJECT_SCHEMA

CONFIG = MinHashConfig()


def make_vocabulary(seed: int, size: int = 3000) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(size)]


VOCABULARY = make_vocabulary(0)


def make_document(seed: int, n_words: int = 300) -> str:
    """A few hundred words of made-up prose; documents with different seeds share almost no 5-grams."""
    rng = random.Random(seed)
    sentences, words = [], []
    for _ in range(n_words):
        words.append(rng.choice(VOCABULARY))
        if len(words) == rng.randint(8, 20):
            sentences.append(" ".join(words).capitalize() + ".")
            words = []
    sentences.append(" ".join(words) + ".")
    return " ".join(sentences)


def replace_words(text: str, fraction: float, seed: int) -> str:
    rng = random.Random(seed)
    words = text.split(" ")
    for position in rng.sample(range(len(words)), max(1, int(len(words) * fraction))):
        words[position] = "edited"
    return " ".join(words)


def fingerprints(texts: dict[str, str]) -> pa.Table:
    return fingerprint_table(list(texts), list(texts.values()), CONFIG)


def table_from_bands(rows: dict[str, list[int]]) -> pa.Table:
    """Candidates with hand-made band keys, to pin down the keep/drop rule independently of MinHash."""
    bands = np.array(list(rows.values()), dtype=np.uint64)
    return pa.table(
        {
            "doc_id": list(rows),
            "text_hash": [f"hash-{doc_id}" for doc_id in rows],
            "bands": bands_to_arrow(bands),
        }
    )


# --- normalization and exact hashes ---------------------------------------------------------------------------


def test_normalize_for_hash_lowercases_strips_punctuation_and_collapses_whitespace():
    assert normalize_for_hash("  Hello,\tWORLD!\n\n It's  «fine» — “really”…  ") == "hello world it s fine really"


def test_normalize_for_hash_folds_compatibility_characters_with_nfkc():
    assert normalize_for_hash("ＦＵＬＬ　ｗｉｄｔｈ ﬁle") == "full width file"


def test_normalize_for_hash_keeps_digits_and_accented_letters():
    assert normalize_for_hash("Café No. 42") == "café no 42"


def test_text_hash_is_equal_for_whitespace_case_and_punctuation_variants():
    assert text_hash("The cat sat on the mat.") == text_hash("the  CAT sat\non the mat")
    assert text_hash("The cat sat on the mat.") != text_hash("The dog sat on the mat.")
    assert len(text_hash("x")) == 32


# --- band keys ------------------------------------------------------------------------------------------------


def test_band_keys_have_one_uint64_per_band():
    keys = band_keys(make_document(1), CONFIG)
    assert keys.shape == (CONFIG.bands,) and keys.dtype == np.uint64


def test_band_keys_of_a_batch_equal_those_of_each_text_alone(monkeypatch):
    texts = [make_document(seed, n_words=50 + 40 * seed) for seed in range(8)] + ["", "two words", "ÉTÉ à Paris"]
    alone = np.stack([band_keys(text, CONFIG) for text in texts])
    # Tiny batches and signature blocks force documents to straddle both boundaries.
    monkeypatch.setattr(minhash, "_BATCH_BYTES", 700)
    monkeypatch.setattr(minhash, "_SHINGLE_BLOCK", 37)
    np.testing.assert_array_equal(band_keys_many(texts, CONFIG), alone)


def test_band_keys_ignore_case_whitespace_and_punctuation():
    text = make_document(2)
    np.testing.assert_array_equal(band_keys(text, CONFIG), band_keys("  " + text.upper().replace(".", " ;"), CONFIG))


def test_band_keys_depend_on_the_seed():
    text = make_document(3)
    assert not np.any(band_keys(text, CONFIG) == band_keys(text, MinHashConfig(seed=2)))


def test_minhash_config_rejects_bands_that_do_not_multiply_to_num_perm():
    with pytest.raises(ValueError, match="bands × rows"):
        MinHashConfig(num_perm=100, bands=14, rows=8)


# --- deduplicate ----------------------------------------------------------------------------------------------


def test_exact_duplicates_with_whitespace_and_case_differences_collapse_to_the_first():
    text = make_document(4)
    result = deduplicate(fingerprints({"a": text, "b": text.upper(), "c": "\n\n" + text.replace(" ", "   ")}), None, CONFIG)
    assert result.keep == ["a"]
    assert [(row["doc_id"], row["reason"], row["step"]) for row in result.rejects] == [
        ("b", "exact_duplicate", "dedup"),
        ("c", "exact_duplicate", "dedup"),
    ]
    assert "doc a" in result.rejects[0]["detail"]


def test_near_duplicate_with_a_small_edit_is_dropped():
    original = make_document(5)
    edited = "Posted by admin.\n" + replace_words(original, 0.02, seed=1)
    result = deduplicate(fingerprints({"original": original, "edited": edited}), None, CONFIG)
    assert result.keep == ["original"]
    assert result.rejects[0]["reason"] == "near_duplicate"
    assert "doc original" in result.rejects[0]["detail"]


def test_unrelated_documents_are_all_kept():
    texts = {f"doc{seed}": make_document(seed) for seed in range(100, 160)}
    result = deduplicate(fingerprints(texts), None, CONFIG)
    assert result.keep == list(texts) and result.rejects == []


def test_the_first_candidate_in_priority_order_wins():
    original, edited = make_document(6), replace_words(make_document(6), 0.01, seed=2)
    assert deduplicate(fingerprints({"x": original, "y": edited}), None, CONFIG).keep == ["x"]
    assert deduplicate(fingerprints({"y": edited, "x": original}), None, CONFIG).keep == ["y"]


def test_a_candidate_resembling_only_a_dropped_document_is_kept():
    # b shares band 0 with kept a and is dropped; c shares band 1 only with b, so nothing kept resembles c.
    candidates = table_from_bands({"a": [1] + [10] * 13, "b": [1, 2] + [20] * 12, "c": [3, 2] + [30] * 12})
    result = deduplicate(candidates, None, MinHashConfig())
    assert result.keep == ["a", "c"]
    assert [row["doc_id"] for row in result.rejects] == ["b"]


def test_short_documents_use_the_whole_text_as_one_shingle():
    texts = {"hi": "Hello world", "hi-again": "hello, WORLD!", "other": "hello there", "empty": "", "empty2": "  "}
    result = deduplicate(fingerprints(texts), None, CONFIG)
    assert result.keep == ["hi", "other", "empty"]
    assert {row["doc_id"]: row["reason"] for row in result.rejects} == {"hi-again": "exact_duplicate", "empty2": "exact_duplicate"}


def test_every_candidate_ends_in_keep_or_rejects_exactly_once():
    rng = random.Random(7)
    texts: dict[str, str] = {}
    for index in range(120):
        kind = rng.choice(["new", "exact", "near"])
        if kind == "new" or not texts:
            texts[f"d{index}"] = make_document(1000 + index, n_words=rng.randint(3, 200))
        else:
            base = rng.choice(list(texts.values()))
            texts[f"d{index}"] = base.upper() if kind == "exact" else replace_words(base, 0.01, seed=index)
    result = deduplicate(fingerprints(texts), None, CONFIG)
    rejected = [row["doc_id"] for row in result.rejects]
    assert sorted(result.keep + rejected) == sorted(texts)
    assert len(set(result.keep) | set(rejected)) == len(texts)
    assert result.rejects_table().schema == REJECT_SCHEMA


def test_reject_rows_use_url_source_and_input_columns_when_present():
    text = make_document(8)
    candidates = fingerprints({"a": text, "b": text}).append_column("url", pa.array(["https://a.example/", "https://b.example/"]))
    candidates = candidates.append_column("source", pa.array(["reddit", "reddit"])).append_column("input", pa.array(["s1", "s2"]))
    (row,) = deduplicate(candidates, None, CONFIG).rejects
    assert (row["item"], row["source"], row["input"], row["doc_id"]) == ("https://b.example/", "reddit", "s2", "b")


def test_candidates_without_fingerprint_columns_are_refused():
    with pytest.raises(ValueError, match="bands"):
        deduplicate(pa.table({"doc_id": ["a"], "text_hash": ["h"]}), None, CONFIG)


# --- earlier corpus versions ----------------------------------------------------------------------------------


def write_version_index(tmp_path, version: str, texts: dict[str, str], config: MinHashConfig = CONFIG) -> str:
    table = fingerprint_table(list(texts), list(texts.values()), config)
    path = str(tmp_path / f"{version}.dedup.parquet")
    return write_dedup_index(path, version, table["doc_id"], table["text_hash"], table["bands"], config)


def test_dedup_index_round_trips_doc_ids_hashes_and_band_keys(tmp_path):
    texts = {"a": make_document(9), "b": make_document(10)}
    table = fingerprints(texts)
    index = DedupIndex.load([(write_version_index(tmp_path, "v1", texts), "v1")], CONFIG)
    assert len(index) == 2
    assert index.table["doc_id"].to_pylist() == ["a", "b"]
    assert index.table["version"].to_pylist() == ["v1", "v1"]
    assert index.table["text_hash"].to_pylist() == table["text_hash"].to_pylist()
    assert index.table["bands"].to_pylist() == table["bands"].to_pylist()


def test_candidates_are_deduplicated_against_several_earlier_versions(tmp_path):
    old, older = make_document(11), make_document(12)
    index = DedupIndex.load(
        [(write_version_index(tmp_path, "v1", {"old": old}), "v1"), (write_version_index(tmp_path, "v2", {"older": older}), "v2")],
        CONFIG,
    )
    candidates = fingerprints({"same": old.upper(), "near": replace_words(older, 0.02, seed=3), "fresh": make_document(13)})
    result = deduplicate(candidates, index, CONFIG)
    assert result.keep == ["fresh"]
    details = {row["doc_id"]: (row["reason"], row["detail"]) for row in result.rejects}
    assert details["same"][0] == "exact_duplicate" and "doc old of corpus version v1" in details["same"][1]
    assert details["near"][0] == "near_duplicate" and "doc older of corpus version v2" in details["near"][1]


def test_loading_an_index_under_the_wrong_version_is_refused(tmp_path):
    path = write_version_index(tmp_path, "v1", {"a": make_document(14)})
    with pytest.raises(ValueError, match="belongs to corpus version 'v1'"):
        DedupIndex.load([(path, "v2")], CONFIG)


def test_loading_an_index_written_with_another_minhash_config_is_refused(tmp_path):
    path = write_version_index(tmp_path, "v1", {"a": make_document(15)}, MinHashConfig(seed=9))
    with pytest.raises(ValueError, match="MinHash parameters"):
        DedupIndex.load([(path, "v1")], CONFIG)


def test_an_empty_index_and_no_candidates_give_an_empty_result():
    result = deduplicate(fingerprints({}), DedupIndex.empty(CONFIG), CONFIG)
    assert result.keep == [] and result.rejects == []


# --- sharded dedup (signatures per unit, buckets, decisions over the shared keys only) ---------------------------


def test_sharded_dedup_over_units_and_buckets_equals_deduplicate_on_the_whole_table(tmp_path):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from gptcore.corpus import dedup_shards

    rng = random.Random(7)
    originals = [make_document(i) for i in range(40)]
    texts = {f"d{i:03d}": rng.choice([text, text.upper(), text + " one more closing line here"]) for i, text in
             enumerate(originals * 2)}
    table = fingerprints(texts)
    table = table.append_column("score", pa.array([rng.randint(0, 5) for _ in range(table.num_rows)], pa.int64()))
    for name in ("url", "source", "input"):
        table = table.append_column(name, pa.array([f"{name}-{d}" for d in texts]))
    prior_path = write_version_index(tmp_path, "v1", {"old": originals[3], "older": originals[5]})
    units = []
    for i, start in enumerate(range(0, table.num_rows, 25)):  # four extraction units
        path = tmp_path / f"unit-{i}.parquet"
        pq.write_table(table.slice(start, 25), path)
        units.append(path)

    plan = dedup_shards.plan_units([(prior_path, "v1")], units)
    folder = tmp_path / "dedup"
    for unit in plan:
        dedup_shards.write_unit_keys(unit, folder, 3, CONFIG)
    for bucket in range(3):
        dedup_shards.find_bucket_collisions(folder, bucket)
    dedup_shards.resolve(folder, plan, 3, CONFIG)
    keep, rejects = dedup_shards.read_result(folder)

    best_first = table.take(pc.sort_indices(table, [("score", "descending"), ("doc_id", "ascending")]))
    expected = deduplicate(best_first, DedupIndex.load([(prior_path, "v1")], CONFIG), CONFIG)
    assert sorted(keep) == sorted(expected.keep)
    assert rejects.to_pylist() == expected.rejects
    assert {row["reason"] for row in expected.rejects} == {"exact_duplicate", "near_duplicate"}
    assert any("of corpus version v1" in row["detail"] for row in expected.rejects)
