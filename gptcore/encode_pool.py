"""Token shards encoded on every core: one encoder per worker process, loaded once, one thread per call.

    encode_shards(shards, tokenizer_json, workers)   # a process pool over the local cores; results in plan order
    encode_shard(shard, tokenizer_json)              # one shard with this process's encoder (a Dask worker's task)

Each worker loads the tokenizer once (process pool initializer, or the first shard a Dask worker sees) and keeps it
for the next shard of the same tokenizer. Encoding is single-threaded inside a worker: the pool already uses every
core, and a thread pool per worker would only contend for them. Shard contents depend only on the shard and the
tokenizer (``gptcore.shards.tokenize_shard``), never on the number of workers.
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from itertools import repeat

from gptcore.encoding import Encoder, load_encoder
from gptcore.shards import ShardStats, ShardTask, tokenize_shard


class _SingleThreaded:
    """The encoder with one thread per call."""

    def __init__(self, encoder: Encoder, source: str):
        self.encoder, self.eot_id, self.vocab_size = encoder, encoder.eot_id, encoder.vocab_size
        self.source = source  # the tokenizer.json it was loaded from

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.encoder.encode_batch(texts, num_threads=1)


_encoder: _SingleThreaded | None = None  # this process's encoder


def _worker_encoder(tokenizer_json: str) -> _SingleThreaded:
    global _encoder
    if _encoder is None or _encoder.source != tokenizer_json:
        _encoder = _SingleThreaded(load_encoder(tokenizer_json), tokenizer_json)
    return _encoder


def encode_shard(shard: ShardTask, tokenizer_json: str) -> ShardStats:
    """Encode one shard (skipped when it exists from the same plan) with this process's encoder for the tokenizer."""
    return tokenize_shard(shard, _worker_encoder(tokenizer_json))


def encode_shards(shards: list[ShardTask], tokenizer_json: str, workers: int) -> list[ShardStats]:
    """Encode every shard on a pool of ``workers`` processes (in this process when one is enough); plan order."""
    if workers <= 1 or len(shards) <= 1:
        return [encode_shard(shard, tokenizer_json) for shard in shards]
    with ProcessPoolExecutor(max_workers=min(workers, len(shards)), initializer=_worker_encoder,
                             initargs=(tokenizer_json,)) as pool:
        return list(pool.map(encode_shard, shards, repeat(tokenizer_json)))
