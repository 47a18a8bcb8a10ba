"""The metrics log of a training run: ``metrics.jsonl``, one JSON object per optimizer step.

Pretraining (``gptcore.train``) and fine-tuning (``gptcore.finetune``) append a line after each step's checkpoint
is written; on resume the log is cut back to the checkpoint, so a killed and resumed run ends with the same log,
every step once, as a run never stopped. (Scores of a task, accuracy and F1, are ``gptcore.metrics``.)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gptcore.files import atomic_write_text

METRICS_LOG_FILE = "metrics.jsonl"


def append_metrics_log(path: Path, line: dict[str, Any]) -> None:
    """Add one step's line to the metrics log at ``path``."""
    with open(path, "a") as fh:
        fh.write(json.dumps(line) + "\n")


def truncate_metrics_log(path: Path, keep_through_step: int, line_of_step: dict[str, Any] | None = None) -> None:
    """Make the metrics log end at the checkpoint being resumed: drop lines of later steps (a killed run logged
    them; they will be redone) and restore the checkpoint's own line when the kill came before it was written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = []
    if path.is_file() and keep_through_step > 0:
        kept = [line for line in path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= keep_through_step]
    if line_of_step is not None and (not kept or json.loads(kept[-1])["step"] < keep_through_step):
        kept.append(json.dumps(line_of_step))
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def read_metrics_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run's metrics log, one dict per optimizer step."""
    path = Path(run_dir) / METRICS_LOG_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
