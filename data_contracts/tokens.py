"""The tokens gate: per-shard statistics recomputed from the ``.bin`` files, checked against ``index.json``.

Every id below the vocabulary size, every shard's token count and sha256 equal to what the index records, no empty
shard, and a non-empty validation split. Validated on the per-shard statistics table (one row per shard), never on
the tokens themselves.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from data_contracts.gate import Check, GateReport, run_gate, expectations as gxe, pandas as pd


def shard_statistics(folder: Path, index: dict) -> pd.DataFrame:
    """One row per shard in the index: what the index says next to what the file holds."""
    rows = []
    dtype = np.dtype(index["dtype"])
    for shard in index["shards"]:
        path = folder / shard["file"]
        size = path.stat().st_size if path.exists() else 0
        tokens = np.memmap(path, dtype=dtype, mode="r") if size else np.empty(0, dtype)
        digest = hashlib.sha256()
        for start in range(0, tokens.size, 1 << 24):  # bounded memory whatever the shard size
            digest.update(tokens[start:start + (1 << 24)].tobytes())
        rows.append({
            "file": shard["file"], "split": shard["split"], "tokens": int(tokens.size),
            "tokens_in_index": int(shard["tokens"]), "documents": int(shard["documents"]),
            "min_id": int(tokens.min()) if tokens.size else -1, "max_id": int(tokens.max()) if tokens.size else -1,
            "sha256_matches": digest.hexdigest() == shard["sha256"],
        })
    return pd.DataFrame(rows, columns=["file", "split", "tokens", "tokens_in_index", "documents", "min_id", "max_id",
                                       "sha256_matches"])


def validate_tokens(folder: Path, index: dict) -> GateReport:
    stats = shard_statistics(folder, index)
    return run_gate("tokens", [Check("shards", stats, [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="min_id", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="max_id", max_value=int(index["vocab_size"]) - 1),
        gxe.ExpectColumnPairValuesToBeEqual(column_A="tokens", column_B="tokens_in_index"),
        gxe.ExpectColumnValuesToBeBetween(column="tokens", min_value=1),
        gxe.ExpectColumnValuesToBeInSet(column="sha256_matches", value_set=[True]),
        gxe.ExpectColumnDistinctValuesToContainSet(column="split", value_set=["train", "val"]),
    ])])
