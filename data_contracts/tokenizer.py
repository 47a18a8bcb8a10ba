"""The tokenizer gate: a trained vocabulary is only published when it is exactly what was asked for and lossless.

Checked on one row of measurements taken on held-out documents the tokenizer never saw: vocabulary size equals the
configured size, the special tokens are in the vocabulary, decode(encode(x)) == x for every held-out document
(byte-level vocabularies; GPT-1 style checks its normalized text), and bytes per token within sane bounds
(below 1 the vocabulary is not merging; above 10 something is wrong with the sample or the pre-tokenizer).
"""
from __future__ import annotations

from data_contracts.gate import Check, GateReport, run_gate, expectations as gxe, pandas as pd

MIN_BYTES_PER_TOKEN = 1.0
MAX_BYTES_PER_TOKEN = 10.0


def validate_tokenizer(vocab_size: int, expected_vocab_size: int, missing_special_tokens: list[str],
                       round_trip_failures: int, heldout_documents: int, bytes_per_token: float) -> GateReport:
    frame = pd.DataFrame([{
        "vocab_size": vocab_size, "expected_vocab_size": expected_vocab_size,
        "missing_special_tokens": len(missing_special_tokens), "round_trip_failures": round_trip_failures,
        "heldout_documents": heldout_documents, "bytes_per_token": bytes_per_token,
    }])
    return run_gate("tokenizer", [Check("vocabulary", frame, [
        gxe.ExpectColumnPairValuesToBeEqual(column_A="vocab_size", column_B="expected_vocab_size"),
        gxe.ExpectColumnValuesToBeBetween(column="missing_special_tokens", min_value=0, max_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="round_trip_failures", min_value=0, max_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="heldout_documents", min_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="bytes_per_token", min_value=MIN_BYTES_PER_TOKEN,
                                          max_value=MAX_BYTES_PER_TOKEN),
    ])])
