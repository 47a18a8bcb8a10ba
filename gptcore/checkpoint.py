"""Training checkpoints: atomic, checksummed, and loadable with ``torch.load(..., weights_only=True)``.

Layout inside a run folder::

    checkpoints/step_000500.pt          torch.save of a dict of tensors and plain containers
    checkpoints/step_000500.pt.sha256   "<hex>  step_000500.pt" (sha256sum format)
    checkpoints/latest                  "step_000500.pt": the newest complete checkpoint (a file name in
                                        checkpoints/, nothing else: ``checkpoint_in`` refuses other pointers)

Each file appears under its name only once complete (temporary sibling, fsync, rename), and ``latest`` moves only
after the checkpoint and its checksum are in place, so a run killed at any moment leaves a loadable ``latest``.
RNG states are stored as tensors and lists (not NumPy arrays or pickled objects) so the safe loader accepts them.
``load_model`` is the one way from a checkpoint to a ``GPT``: evaluation and generation use it.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gptcore.files import atomic_file, atomic_write_text, sha256_file
from gptcore.model import GPT, GPTConfig
from gptcore.names import check_name
from gptcore.runtime import resolve_device

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_FILES = f"{CHECKPOINT_DIR}/*.pt"  # a pattern: checked on load against their .sha256, not hashed twice
LATEST = "latest"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, damaged, or does not match its recorded checksum."""


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}.pt"


def save_checkpoint(run_dir: str | Path, step: int, state: dict[str, Any]) -> Path:
    """Write ``state`` as checkpoint ``step`` of ``run_dir`` with its checksum, then point ``latest`` at it."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / checkpoint_name(step)
    with atomic_file(path, durable=True) as fh:  # streamed to disk: a large model's state is never held twice
        torch.save(state, fh)
    digest = sha256_file(path)
    atomic_write_text(_checksum_path(path), f"{digest}  {path.name}\n", durable=True)
    atomic_write_text(folder / LATEST, path.name + "\n", durable=True)
    return path


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint ``latest`` points at, or None when the run has none yet."""
    pointer = Path(run_dir) / CHECKPOINT_DIR / LATEST
    if not pointer.is_file():
        return None
    path = checkpoint_in(run_dir, f"{CHECKPOINT_DIR}/{pointer.read_text().strip()}", named_by=str(pointer))
    if not path.is_file():
        raise CheckpointError(f"{pointer} names {path.name}, which is missing: restore that file or delete "
                              f"{pointer} to resume from an earlier checkpoint")
    return path


def checkpoint_in(run_dir: str | Path, relative: str, named_by: str) -> Path:
    """``run_dir/checkpoints/<file>`` for ``relative`` = ``"checkpoints/<file>"``, refusing any other path.

    Pointers read from a run (``latest``, a manifest's ``checkpoint``) stay inside it: an absolute path, ``..``, a
    separator in the file name or a hidden file is a pointer someone edited, never one ``save_checkpoint`` wrote.
    """
    folder, _, name = relative.partition("/")
    try:
        check_name(name, "checkpoint file")
    except ValueError:
        name = ""
    if folder != CHECKPOINT_DIR or not name:
        raise CheckpointError(f"{named_by} names the checkpoint {relative!r}, which is not a file directly in "
                              f"{Path(run_dir) / CHECKPOINT_DIR}: the pointer was edited or damaged; point it at a "
                              f"checkpoint of this run (e.g. {checkpoint_name(0)!r}) or delete it")
    return Path(run_dir) / CHECKPOINT_DIR / name


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Verify ``path`` against its recorded sha256, then load it with the safe (weights-only) unpickler."""
    path = Path(path)
    checksum_file = _checksum_path(path)
    if not checksum_file.is_file():
        raise CheckpointError(f"{path} has no checksum file {checksum_file.name}: it was not written by "
                              "save_checkpoint or was copied without it; copy both files")
    recorded = checksum_file.read_text().split()[0]
    actual = sha256_file(path)
    if actual != recorded:
        raise CheckpointError(f"{path} does not match its recorded sha256 ({actual} != {recorded}): the file is "
                              "damaged; resume from an earlier checkpoint")
    return torch.load(path, map_location=map_location, weights_only=True)


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu") -> GPT:
    """The language model of a verified checkpoint (pretrain or finetune: both store ``model`` and
    ``model_config``), on ``device`` (``"auto"``: CUDA when available) and in eval mode."""
    state = load_checkpoint(checkpoint)
    model = GPT(GPTConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model.to(resolve_device(device)).eval()


# -- random number generators -----------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and (if present) CUDA generator states, as tensors and plain containers."""
    version, mt_state, gauss_next = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": [version, list(mt_state), gauss_next],
        "numpy": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                  "pos": int(numpy_state["state"]["pos"]),
                  "has_gauss": int(numpy_state["has_gauss"]), "gauss": float(numpy_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``capture_rng_state``."""
    version, mt_state, gauss_next = state["python"]
    random.setstate((version, tuple(mt_state), gauss_next))
    numpy_state = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
                         "has_gauss": numpy_state["has_gauss"], "gauss": numpy_state["gauss"]})
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# -- helpers ----------------------------------------------------------------------------------------------------


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


