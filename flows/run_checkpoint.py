"""A run folder's latest checkpoint and its tokenizer, both verified, for the commands that load a run outside a
flow (``gptforge generate``, the llm.c export)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flows.lineage import find_version_folder, tokenizer_of_run
from flows.store import DataRoot
from gptcore.checkpoint import CHECKPOINT_FILES, latest_checkpoint
from gptcore.encoding import TOKENIZER_FILE


@dataclass(frozen=True)
class RunCheckpoint:
    root: DataRoot
    run: str  # the run's version name
    checkpoint: Path  # the latest checkpoint, checked on load against its verified .sha256
    tokenizer: Path  # the tokenizer.json the run's tokens were encoded with, found through its lineage


def latest_run_checkpoint(path: str | Path) -> RunCheckpoint:
    """The run folder at (or around) ``path``, verified against its manifest, with its latest checkpoint."""
    found = find_version_folder(path)
    root = DataRoot.from_env(str(found.parent.parent))
    folder = root.local_version(found.parent.name, found.name, checked_on_read=(CHECKPOINT_FILES,))
    checkpoint = latest_checkpoint(folder)
    if checkpoint is None:
        raise FileNotFoundError(f"{folder} has no checkpoint (checkpoints/latest): is it a run folder?")
    tokenizer = root.local_version("tokenizer", tokenizer_of_run(root, found.name)) / TOKENIZER_FILE
    return RunCheckpoint(root, found.name, checkpoint, tokenizer)
