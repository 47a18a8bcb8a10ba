"""Loss, perplexity and bits per byte over a tokens folder's validation split."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gptcore.model import GPT, config_from_preset
from gptcore.perplexity import evaluate_perplexity, split_stream, summed_loss, text_bytes
from tests.builders import tokens_folder

VOCAB = 50


@dataclass
class TwoBytesPerToken:
    """A decoder where every id but end-of-text (0) is one 2-byte character ("é")."""

    eot_id: int = 0

    def decode(self, ids: list[int]) -> str:
        assert self.eot_id not in ids
        return "é" * len(ids)


def model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(config_from_preset("tiny", vocab_size=VOCAB, block_size=8)).eval()


@pytest.fixture
def folder(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    docs = [rng.integers(1, VOCAB, size=n).tolist() for n in (13, 7, 20)]  # 40 ids + 3 EOTs = 43 tokens
    return tokens_folder(tmp_path, {"train_000000.bin": [[1, 2, 3]], "val_000000.bin": docs[:2],
                                    "val_000001.bin": docs[2:]}, vocab_size=VOCAB)


def test_every_token_after_the_first_is_predicted_once_with_windows_of_the_block_size(folder):
    ids = split_stream(folder, "val")
    m = model()
    expected = 0.0
    for start in range(0, ids.size - 1, 8):  # 42 targets: five windows of 8 and one of 2
        x = torch.from_numpy(ids[start:start + 8])[None]
        y = torch.from_numpy(ids[start + 1:start + 9])[None]
        with torch.no_grad():
            expected += float(F.cross_entropy(m(x)[0][0, :y.size(1)], y[0], reduction="sum"))
    assert ids.size == 43
    assert summed_loss(m, ids, seq_len=8, batch_size=3) == pytest.approx(expected, rel=1e-5)


def test_a_model_that_knows_nothing_has_the_vocabulary_size_as_perplexity(folder):
    m = model()
    torch.nn.init.zeros_(m.transformer.wte.weight)  # tied output: every logit 0, a uniform guess
    result = evaluate_perplexity(m, folder, TwoBytesPerToken())
    assert result.tokens == 42 and result.documents == 3
    assert result.perplexity == pytest.approx(VOCAB, rel=1e-5)
    assert result.bits_per_token == pytest.approx(math.log2(VOCAB), rel=1e-5)


def test_bits_per_byte_counts_the_text_bytes_of_the_documents_not_the_end_of_text_markers(folder):
    result = evaluate_perplexity(model(), folder, TwoBytesPerToken())
    assert result.bytes == 2 * 40
    assert result.bits_per_byte == pytest.approx(result.loss * result.tokens / math.log(2) / 80)


def test_max_tokens_evaluates_a_prefix_of_the_split(folder):
    result = evaluate_perplexity(model(), folder, TwoBytesPerToken(), max_tokens=10)
    assert result.tokens == 9 and result.documents == 1 and result.bytes == 2 * 9


def test_text_bytes_decodes_each_document_between_end_of_text_ids():
    ids = np.array([0, 5, 6, 0, 7, 0])
    assert text_bytes(ids, TwoBytesPerToken()) == (6, 2)


def test_a_split_too_small_to_predict_anything_says_so(tmp_path):
    folder = tokens_folder(tmp_path, {"train_000000.bin": [[1, 2]], "val_000000.bin": [[]]}, vocab_size=VOCAB)
    with pytest.raises(ValueError, match="a loss needs at least 2"):
        evaluate_perplexity(model(), folder, TwoBytesPerToken())
