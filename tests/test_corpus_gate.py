"""The corpus gate on hand-made corpus folders: a good one passes, each broken contract is named."""
from __future__ import annotations

import pyarrow as pa
import pytest

from data_contracts.corpus import validate_corpus
from data_contracts.gate import GateFailed
from gptcore.corpus.records import DOC_SCHEMA, REJECT_SCHEMA, reject
from gptcore.corpus.urls import host_of
from gptcore.files import atomic_write_table


def _doc(doc_id: str, url: str, text: str = "some text", text_hash: str | None = None) -> dict:
    return {"doc_id": doc_id, "url": url, "domain": host_of(url), "source": "reddit", "title": "t", "text": text, "n_chars": len(text),
            "n_words": 2, "lang": "en", "lang_score": 0.9, "text_hash": text_hash or f"h-{doc_id}",
            "submission_ids": ["s1"], "subreddits": ["python"], "score": 5}


def _corpus(tmp_path, docs: list[dict], documents: int | None = None, inputs: int | None = None, schema=DOC_SCHEMA):
    atomic_write_table(tmp_path / "data" / "part-00000.parquet", pa.Table.from_pylist(docs, schema=schema))
    atomic_write_table(tmp_path / "rejects" / "part-00000.parquet", pa.Table.from_pylist(
        [reject("s9", "reddit", "links", "low_score")], schema=REJECT_SCHEMA))
    n = len(docs) if documents is None else documents
    return {"counts": {"documents": n, "rejects": 1, "accounting": {
        "reddit": {"inputs": n + 1 if inputs is None else inputs, "kept": n, "rejected": 1}}}}


GOOD = [_doc("a", "http://example.com/a"), _doc("b", "http://example.org/b")]


def test_a_sound_corpus_passes(tmp_path):
    manifest = _corpus(tmp_path, GOOD)
    assert validate_corpus(tmp_path, manifest, ["wikipedia.org"]).success


@pytest.mark.parametrize("docs, expectation", [
    ([_doc("a", "http://example.com/a"), _doc("a", "http://example.com/b")], "expect_column_values_to_be_unique"),
    ([_doc("a", "http://example.com/a", text_hash="x"), _doc("b", "http://example.com/b", text_hash="x")],
     "expect_column_values_to_be_unique"),
    ([_doc("a", "https://en.wikipedia.org/wiki/X")], "expect_column_values_to_not_match_regex"),
    ([_doc("a", "http://example.com/a", text="")], "expect_column_values_to_be_between"),
])
def test_broken_documents_fail_the_gate_naming_the_expectation(tmp_path, docs, expectation):
    report = validate_corpus(tmp_path, _corpus(tmp_path, docs), ["wikipedia.org"], min_chars=1)
    assert expectation in [f.expectation for f in report.failures]


def test_a_data_file_with_fetched_at_as_a_string_fails_the_gate_naming_the_column(tmp_path):
    old = DOC_SCHEMA.set(DOC_SCHEMA.get_field_index("fetched_at"), pa.field("fetched_at", pa.string()))
    report = validate_corpus(tmp_path, _corpus(tmp_path, GOOD, schema=old), ["wikipedia.org"])
    assert [(f.check, f.expectation) for f in report.failures] == [("schema", "expect_column_values_to_be_null")]
    with pytest.raises(GateFailed, match=r"part-00000.parquet has columns \[\('fetched_at', 'string'\)\]"):
        report.raise_for_failure()


def test_counts_that_disagree_with_the_manifest_fail_the_gate(tmp_path):
    report = validate_corpus(tmp_path, _corpus(tmp_path, GOOD, documents=5), ["wikipedia.org"])
    assert "expect_table_row_count_to_equal" in [f.expectation for f in report.failures]


@pytest.mark.parametrize("inputs, says", [
    (10, ["reddit: 10 items read, but 2 kept + 1 rejected = 3", "7 items ended neither kept nor rejected", "report it"]),
    (2, ["reddit: 2 items read, but 2 kept + 1 rejected = 3", "1 more than read", "ended in two places", "report it"]),
])
def test_items_that_do_not_add_up_fail_the_gate_saying_how_and_where_to_look(tmp_path, inputs, says):
    report = validate_corpus(tmp_path, _corpus(tmp_path, GOOD, inputs=inputs), ["wikipedia.org"])
    assert [(f.check, f.expectation) for f in report.failures] == [("accounting", "expect_column_values_to_be_null")]
    with pytest.raises(GateFailed) as failed:
        report.raise_for_failure()
    for words in says:
        assert words in str(failed.value)
