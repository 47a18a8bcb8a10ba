"""TokenDataset: memory-mapped random windows for pretraining and sequential windows for evaluation."""
from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from gptcore.data import TokenDataset
from tests.builders import tokens_folder

SEQ = 16


@pytest.fixture
def folder(tmp_path) -> Path:
    # train_000000 holds 0, 1, …, 999 (EOT 0 then one document); train_000001 holds 0, 2000, …, 2499.
    return tokens_folder(tmp_path, {
        "train_000000.bin": [list(range(1, 1000))],
        "train_000001.bin": [list(range(2000, 2500))],
        "val_000000.bin": [list(range(3000, 3040)), list(range(3100, 3070, -1))],
    })


def shard_arrays(folder: Path, split: str) -> list[np.ndarray]:
    return [np.fromfile(p, dtype="<u2").astype(np.int64) for p in sorted(folder.glob(f"{split}_*.bin"))]


def window_set(arrays: list[np.ndarray], length: int) -> dict[tuple, int]:
    """Every window of ``length`` tokens inside one shard → that shard's number."""
    return {tuple(w): i for i, a in enumerate(arrays) for w in np.lib.stride_tricks.sliding_window_view(a, length)}


def test_random_windows_come_from_one_shard_with_targets_shifted_by_one(folder):
    data = TokenDataset(folder, "train")
    windows = window_set(shard_arrays(folder, "train"), SEQ + 1)
    seen_shards = []
    for x, y in islice(data.random_batches(batch_size=32, seq_len=SEQ, seed=7), 20):
        assert x.shape == y.shape == (32, SEQ) and x.dtype == y.dtype == np.int64
        assert (y[:, :-1] == x[:, 1:]).all()
        for row_x, row_y in zip(x, y):
            full = tuple(row_x) + (row_y[-1],)
            assert full in windows, "a window never crosses a shard boundary"
            seen_shards.append(windows[full])
    # shards drawn in proportion to their window starts: 984 vs 485
    share_first = seen_shards.count(0) / len(seen_shards)
    assert 0.55 < share_first < 0.78


def test_random_batches_are_a_function_of_seed_and_step(folder):
    data = TokenDataset(folder, "train")
    first = list(islice(data.random_batches(8, SEQ, seed=1), 6))
    again = list(islice(TokenDataset(folder, "train").random_batches(8, SEQ, seed=1), 6))
    other = next(data.random_batches(8, SEQ, seed=2))
    assert all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(first, again))
    assert not (first[0][0] == other[0]).all()


def test_resuming_at_a_step_continues_the_same_stream(folder):
    data = TokenDataset(folder, "train")
    uninterrupted = list(islice(data.random_batches(8, SEQ, seed=3), 10))
    resumed = list(islice(data.random_batches(8, SEQ, seed=3, start_step=6), 4))
    for (x1, y1), (x2, y2) in zip(uninterrupted[6:], resumed):
        assert (x1 == x2).all() and (y1 == y2).all()


def test_sequential_batches_cover_the_split_in_order_once(folder):
    data = TokenDataset(folder, "train")
    stream = np.concatenate(shard_arrays(folder, "train"))
    batches = list(data.sequential_batches(batch_size=10, seq_len=SEQ))
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    windows = data.num_sequential_windows(SEQ)
    assert windows == (stream.size - 1) // SEQ == x.shape[0]
    assert [b[0].shape[0] for b in batches] == [10] * (windows // 10) + ([windows % 10] if windows % 10 else [])
    assert (x.ravel() == stream[:windows * SEQ]).all()
    assert (y.ravel() == stream[1:windows * SEQ + 1]).all()


def test_validation_split_is_read_separately(folder):
    data = TokenDataset(folder, "val")
    assert data.tokens == 72 and data.shard_files == ["val_000000.bin"]
    x, y = next(data.sequential_batches(batch_size=100, seq_len=SEQ))
    assert x.shape == (4, SEQ) and x[0, 0] == 0 and x[0, 1] == 3000


def test_a_split_shorter_than_one_window_is_a_clear_error(folder):
    data = TokenDataset(folder, "val")
    with pytest.raises(ValueError, match="fewer than seq_len \\+ 1 = 101"):
        data.sequential_batches(batch_size=4, seq_len=100)
    with pytest.raises(ValueError, match="no 'val' shard .* holds seq_len \\+ 1 = 101 tokens \\(largest: 72\\)"):
        data.random_batches(batch_size=4, seq_len=100, seed=0)


def test_a_split_without_tokens_is_a_clear_error(tmp_path):
    folder = tokens_folder(tmp_path, {"train_000000.bin": [[1, 2, 3]]})
    with pytest.raises(ValueError, match="has no 'val' tokens"):
        TokenDataset(folder, "val")


def test_batches_are_copies_not_views_of_the_read_only_shards(folder):
    before = (folder / "train_000000.bin").read_bytes()
    x, _ = next(TokenDataset(folder, "train").random_batches(64, SEQ, seed=0))
    x[:] = 4999  # training code may modify its batch in place
    assert (folder / "train_000000.bin").read_bytes() == before
