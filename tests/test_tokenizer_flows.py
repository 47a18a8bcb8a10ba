"""train-tokenizer and tokenize end to end on a small published corpus of real text (pydoc renderings of the stdlib)."""
from __future__ import annotations

import json
import pydoc
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from gptcore.corpus.records import doc_id_for
from flows.store import DataRoot
from gptcore.bpe_sample import DEFAULT_HOLDOUT_FRACTION, is_holdout
from tests.builders import MODULES, publish_corpus, publish_documents

@pytest.fixture(scope="module")
def root(tmp_path_factory) -> DataRoot:
    root = DataRoot.from_env(str(tmp_path_factory.mktemp("data")))
    publish_corpus(root, "c1", MODULES)
    publish_corpus(root, "c2", MODULES[:10])
    return root


@pytest.fixture(scope="module")
def tokenizer_folder(root, prefect_harness) -> Path:
    from flows.train_tokenizer import train_tokenizer

    return Path(train_tokenizer(corpus="c1", version="t1", data_root=root.url, vocab_size=1024, holdout_fraction=0.1))


def test_gpt2_style_vocabulary_is_exact_with_end_of_text_last(tokenizer_folder):
    tokenizer = Tokenizer.from_file(str(tokenizer_folder / "tokenizer.json"))
    assert tokenizer.get_vocab_size() == 1024
    assert tokenizer.token_to_id("<|endoftext|>") == 1023
    counts = json.loads((tokenizer_folder / "manifest.json").read_text())["counts"]
    assert counts["round_trip_failures"] == 0 and counts["heldout_documents"] > 0
    assert 1.0 < counts["bytes_per_token"] < 10.0
    assert len(counts["vocab_checksum"]) == 64


def test_too_small_a_sample_for_the_vocabulary_says_what_to_do(root, prefect_harness):
    from flows.train_tokenizer import train_tokenizer

    with pytest.raises(ValueError, match="sample_bytes|vocab_size"):
        train_tokenizer(corpus="c2", version="t-big", data_root=root.url, sample_bytes=20_000, vocab_size=50_257)
    assert "t-big" not in root.versions("tokenizer")


def small_corpus_the_default_fraction_skips(n_docs: int) -> list[tuple[str, str]]:
    """n short pydoc passages whose doc ids the 1% hash rule holds none of (fixed: the first such urls in order)."""
    text = " ".join(pydoc.render_doc(name, renderer=pydoc.plaintext) for name in MODULES[:10])
    urls = (f"file:///small/{i}" for i in range(10_000))
    skipped = [u for u in urls if not is_holdout(doc_id_for(u), DEFAULT_HOLDOUT_FRACTION)][:n_docs]
    return [(url, text[i * 1500:(i + 1) * 1500]) for i, url in enumerate(skipped)]


def test_a_small_corpus_the_hash_rule_holds_nothing_of_is_checked_on_its_lowest_hash_document(root, prefect_harness):
    from flows.train_tokenizer import train_tokenizer

    publish_documents(root, "c-small", small_corpus_the_default_fraction_skips(100))
    folder = Path(train_tokenizer(corpus="c-small", version="t-small", data_root=root.url, vocab_size=512))
    counts = json.loads((folder / "manifest.json").read_text())["counts"]
    assert counts["heldout_documents"] == 1 and counts["heldout_widened_to_lowest_hash"] is True
    assert counts["sample"]["documents"] == 99, "the held-out document is not trained on"
    assert 1.0 < counts["bytes_per_token"] < 10.0 and counts["round_trip_failures"] == 0


def test_a_one_document_corpus_fails_before_training_saying_what_to_change(root, prefect_harness):
    from flows.train_tokenizer import train_tokenizer

    publish_documents(root, "c-one", small_corpus_the_default_fraction_skips(1))
    with pytest.raises(ValueError, match=r"corpus c-one leaves no held-out document.*holdout_fraction.*more documents"):
        train_tokenizer(corpus="c-one", version="t-one", data_root=root.url, vocab_size=300)
    assert "t-one" not in root.versions("tokenizer")
    assert not list(Path(root.url, "tokenizer").glob(".t-one*")), "nothing started"


def test_gpt1_style_trains_merges_with_end_of_word_markers(root, prefect_harness):
    from flows.train_tokenizer import train_tokenizer

    folder = Path(train_tokenizer(corpus="c2", version="g1", data_root=root.url, style="gpt1", merges=300,
                                  holdout_fraction=0.2))
    counts = json.loads((folder / "manifest.json").read_text())["counts"]
    assert counts["merges"] == 300 and counts["round_trip_failures"] == 0
    assert any(token.endswith("</w>") for token in Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab())


def test_tokens_are_sharded_by_split_and_decode_back_to_the_corpus(root, tokenizer_folder, prefect_harness):
    from flows.tokenize_corpus import tokenize

    folder = Path(tokenize(corpus="c1", tokenizer="t1", version="k1", data_root=root.url, validation_fraction=0.1,
                           max_documents_per_shard=20))
    index = json.loads((folder / "index.json").read_text())
    assert index["dtype"] == "<u2" and index["vocab_size"] == 1024
    assert {s["split"] for s in index["shards"]} == {"train", "val"} and len(index["shards"]) > 2
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"]["encoder"] == "tiktoken"
    assert manifest["counts"]["tokenizer_trained_on_other_corpus"] is False
    tokenizer = Tokenizer.from_file(str(tokenizer_folder / "tokenizer.json"))
    first = np.fromfile(folder / index["shards"][0]["file"], dtype="<u2")
    eot = index["eot_id"]
    assert first[0] == eot  # end-of-text before each document
    document = first[1:np.flatnonzero(first[1:] == eot)[0] + 1].tolist()
    assert tokenizer.decode(document) in {d for d in _corpus_texts(root, "c1")}


def _corpus_texts(root: DataRoot, version: str) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(f"{root.version_url('corpus', version)}/data/part-00000.parquet")["text"].to_pylist()


def test_same_inputs_give_byte_identical_shards_and_an_interrupted_run_resumes_to_them(root, tokenizer_folder,
                                                                                   prefect_harness, monkeypatch):
    import flows.tokenize_corpus as tokenize_module
    from gptcore import encode_pool

    params = {"corpus": "c1", "tokenizer": "t1", "data_root": root.url, "validation_fraction": 0.1,
              "max_documents_per_shard": 20, "workers": 1}
    reference = Path(tokenize_module.tokenize(version="k2", **params))
    calls = []
    real = encode_pool.encode_shard

    def dies_on_third_shard(shard, tokenizer_json):
        calls.append(shard)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return real(shard, tokenizer_json)

    monkeypatch.setattr(encode_pool, "encode_shard", dies_on_third_shard)
    with pytest.raises(BaseException, match="killed"):
        tokenize_module.tokenize(version="k3", **params)
    monkeypatch.setattr(encode_pool, "encode_shard", real)
    resumed = Path(tokenize_module.tokenize(version="k3", **params))
    ref_index = json.loads((reference / "index.json").read_text())
    new_index = json.loads((resumed / "index.json").read_text())
    assert [(s["file"], s["sha256"]) for s in new_index["shards"]] == [(s["file"], s["sha256"]) for s in ref_index["shards"]]


def test_a_tokenizer_from_another_corpus_is_allowed_and_recorded(root, tokenizer_folder, prefect_harness):
    from flows.tokenize_corpus import tokenize

    folder = Path(tokenize(corpus="c2", tokenizer="t1", version="k4", data_root=root.url, validation_fraction=0.2))
    assert json.loads((folder / "manifest.json").read_text())["counts"]["tokenizer_trained_on_other_corpus"] is True


def test_tokenize_without_a_tokenizer_says_to_train_one(tmp_path, prefect_harness):
    from flows.store import StoreError
    from flows.tokenize_corpus import tokenize

    root = DataRoot.from_env(str(tmp_path))
    publish_corpus(root, "c1", MODULES[:3])
    with pytest.raises(StoreError, match="needs a tokenizer version"):
        tokenize(data_root=root.url)
