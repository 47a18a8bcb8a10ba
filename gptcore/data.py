"""Training and evaluation batches from a tokens folder, memory-mapped (nothing is loaded up front).

Batches are NumPy int64 arrays ``x`` and ``y`` of shape (B, T) with ``y`` = ``x`` shifted left by one token: the
next-token targets. Random batches (pretraining) are a pure function of (seed, step), so a resumed run continues
with exactly the batches it would have seen; sequential batches (evaluation) walk the split once in order.
``unigram_entropy`` is the loss a model scores by predicting token frequencies alone: the baseline a trained model
must beat.
"""
from __future__ import annotations

from itertools import count
from pathlib import Path
from typing import Iterator

import numpy as np

from gptcore.shards import check_shard_checksums, read_index

Batch = tuple[np.ndarray, np.ndarray]  # x, y: (B, T) int64


class TokenDataset:
    """One split (``"train"`` or ``"val"``) of a tokens folder, its shards memory-mapped read-only."""

    def __init__(self, folder: str | Path, split: str, *, verify_checksums: bool = True) -> None:
        """``verify_checksums``: hash this split's shards against index.json (only pass False for shards the caller
        has just verified, so no stage hashes a file twice)."""
        self.index = read_index(folder, verify_checksums=False)
        self.split = split
        shards = [s for s in self.index.shards_of(split) if s.tokens]  # np.memmap refuses empty files
        if verify_checksums:
            check_shard_checksums(self.index, shards)
        if not shards:
            raise ValueError(f"tokens folder {self.index.folder} has no {split!r} tokens: re-tokenize with a "
                             "non-zero validation fraction / a corpus with documents in that split")
        self.shard_files = [s.file for s in shards]
        self._shards = [np.memmap(self.index.folder / s.file, dtype=self.index.dtype, mode="r") for s in shards]
        self._lengths = np.array([s.tokens for s in shards], dtype=np.int64)

    @property
    def tokens(self) -> int:
        return int(self._lengths.sum())

    # -- pretraining --------------------------------------------------------------------------------------------

    def random_batch(self, step: int, batch_size: int, seq_len: int, seed: int) -> Batch:
        """Batch number ``step`` of the random stream: ``batch_size`` windows of ``seq_len + 1`` tokens.

        Every window start in every shard is equally likely (so shards are drawn in proportion to their length);
        a window never crosses a shard boundary. Depends only on (seed, step), never on earlier calls.
        """
        starts = self._window_starts(seq_len)
        total = int(starts.sum())
        rng = np.random.default_rng([seed, step])
        picks = rng.integers(0, total, size=batch_size)
        ends = np.cumsum(starts)
        shard_of = np.searchsorted(ends, picks, side="right")
        offsets = picks - (ends[shard_of] - starts[shard_of])
        windows = np.empty((batch_size, seq_len + 1), dtype=np.int64)
        for row, (shard, offset) in enumerate(zip(shard_of, offsets)):
            windows[row] = self._shards[shard][offset:offset + seq_len + 1]
        return np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:])

    def random_batches(self, batch_size: int, seq_len: int, seed: int, start_step: int = 0) -> Iterator[Batch]:
        """Endless random batches from ``start_step`` on; to resume, pass the number of batches already consumed."""
        self._window_starts(seq_len)  # fail here, not at the first next()
        return (self.random_batch(step, batch_size, seq_len, seed) for step in count(start_step))

    def _window_starts(self, seq_len: int) -> np.ndarray:
        """Number of possible window starts per shard (a window needs seq_len + 1 tokens)."""
        if seq_len < 1:
            raise ValueError(f"seq_len must be positive, got {seq_len}")
        starts = np.maximum(self._lengths - seq_len, 0)
        if not starts.any():
            raise ValueError(f"no {self.split!r} shard in {self.index.folder} holds seq_len + 1 = {seq_len + 1} "
                             f"tokens (largest: {int(self._lengths.max()):,}): use a smaller seq_len or larger "
                             "shards (plan_shards' target_chars_per_shard)")
        return starts

    # -- evaluation ---------------------------------------------------------------------------------------------

    def num_sequential_windows(self, seq_len: int) -> int:
        """Non-overlapping windows of the split: every token but the last (< seq_len + 1) is a target exactly once."""
        if seq_len < 1:
            raise ValueError(f"seq_len must be positive, got {seq_len}")
        return max(self.tokens - 1, 0) // seq_len

    def sequential_batches(self, batch_size: int, seq_len: int) -> Iterator[Batch]:
        """The split in order as windows starting at 0, T, 2T, …; the last batch may have fewer rows.

        The split is read as one stream (shards concatenated in index order): every shard starts with the
        end-of-text id, so a window spanning two shards is a window spanning two documents, as within a shard.
        """
        windows = self.num_sequential_windows(seq_len)
        if windows == 0:
            raise ValueError(f"the {self.split!r} split of {self.index.folder} has {self.tokens:,} tokens, fewer than "
                             f"seq_len + 1 = {seq_len + 1}: use a smaller seq_len or a larger validation fraction")
        return self._sequential(windows, batch_size, seq_len)

    def _sequential(self, windows: int, batch_size: int, seq_len: int) -> Iterator[Batch]:
        for first in range(0, windows, batch_size):
            rows = min(batch_size, windows - first)
            span = self._read(first * seq_len, rows * seq_len + 1)
            x = span[:-1].reshape(rows, seq_len)
            y = span[1:].reshape(rows, seq_len)
            yield x, y

    def _read(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length) of the concatenated split, as int64."""
        out = np.empty(length, dtype=np.int64)
        shard_starts = np.concatenate([[0], np.cumsum(self._lengths)])
        filled = 0
        shard = int(np.searchsorted(shard_starts, start, side="right")) - 1
        while filled < length:
            offset = start + filled - int(shard_starts[shard])
            piece = self._shards[shard][offset:offset + length - filled]
            out[filled:filled + piece.size] = piece
            filled += piece.size
            shard += 1
        return out


def unigram_entropy(tokens_folder: str | Path, split: str = "train", chunk: int = 1 << 24) -> float:
    """Entropy (nats) of the split's token frequencies: the loss of a model that predicts only frequencies.
    The shards are not hashed here: pass a folder whose shards the caller has verified."""
    data = TokenDataset(tokens_folder, split, verify_checksums=False)
    counts = np.zeros(data.index.vocab_size, dtype=np.int64)
    for name in data.shard_files:
        tokens = np.memmap(data.index.folder / name, dtype=np.dtype(data.index.dtype), mode="r")
        for start in range(0, tokens.size, chunk):
            counts += np.bincount(tokens[start:start + chunk], minlength=counts.size)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
