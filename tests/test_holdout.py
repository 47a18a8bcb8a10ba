"""The tokenizer's held-out split: the fraction's doc_id-hash rule, and at least one held-out document whenever the
corpus has two, never trained on."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gptcore.bpe_sample import is_holdout, iter_corpus_texts, plan_holdout


def ids_the_rule_skips(n: int, fraction: float) -> list[str]:
    """n doc ids none of which the fraction's hash rule holds out (fixed: the first such ids in a fixed sequence)."""
    ids = (f"doc-{i:05d}" for i in range(100_000))
    return [d for d in ids if not is_holdout(d, fraction)][:n]


def write(folder: Path, doc_ids: list[str], texts: list[str | None] | None = None) -> list[Path]:
    texts = texts if texts is not None else [f"text of {d}" for d in doc_ids]
    path = folder / "part-00000.parquet"
    pq.write_table(pa.table({"doc_id": doc_ids, "text": texts}), path)
    return [path]


@pytest.mark.parametrize("n_docs", [2, 100, 1500])
def test_when_the_fraction_selects_no_document_the_lowest_hash_one_is_held_out_and_not_trained_on(tmp_path, n_docs):
    files = write(tmp_path, ids_the_rule_skips(n_docs, 0.01))
    holdout = plan_holdout(files, 0.01)
    train = list(iter_corpus_texts(files, 10**9, split="train", holdout_fraction=0.01))
    held = list(iter_corpus_texts(files, 10**9, split="holdout", holdout_fraction=0.01))
    assert holdout.widened and not holdout.empty
    assert len(held) == 1 and len(train) == n_docs - 1 and held[0] not in train
    assert plan_holdout(files, 0.01) == holdout, "the same corpus gives the same split"


def test_when_the_fraction_selects_documents_the_rule_is_the_plain_hash_rule(tmp_path):
    doc_ids = [f"doc-{i:05d}" for i in range(1000)]
    files = write(tmp_path, doc_ids)
    holdout = plan_holdout(files, 0.05)
    held = list(iter_corpus_texts(files, 10**9, split="holdout", holdout_fraction=0.05))
    assert not holdout.widened and not holdout.empty
    assert held == [f"text of {d}" for d in doc_ids if is_holdout(d, 0.05)] and 25 < len(held) < 75


@pytest.mark.parametrize("doc_ids, texts, fraction, why", [
    (["doc-00000", "doc-00001"], None, 0.0, "holdout_fraction 0 asks for no held-out documents"),
    (ids_the_rule_skips(1, 0.01), None, 0.01, "one document cannot be both trained on and held out"),
    (ids_the_rule_skips(3, 0.01), ["only text", "", None], 0.01, "empty texts are not documents"),
])
def test_nothing_is_held_out_when_there_is_nothing_to_spare(tmp_path, doc_ids, texts, fraction, why):
    files = write(tmp_path, doc_ids, texts)
    assert plan_holdout(files, fraction).empty, why
    assert list(iter_corpus_texts(files, 10**9, split="holdout", holdout_fraction=fraction)) == []


def test_widening_skips_empty_texts_so_the_held_out_document_has_text(tmp_path):
    doc_ids = ids_the_rule_skips(50, 0.01)
    [lowest] = iter_corpus_texts(write(tmp_path, doc_ids), 10**9, split="holdout", holdout_fraction=0.01)
    texts = ["" if f"text of {d}" == lowest else f"text of {d}" for d in doc_ids]
    held = list(iter_corpus_texts(write(tmp_path, doc_ids, texts), 10**9, split="holdout", holdout_fraction=0.01))
    assert len(held) == 1 and held[0] and held[0] != lowest
