"""Evaluation tasks: the ``tasks`` the evaluate stage scores a language model on, and reading their files.

An evaluation task has a name, a type and a file; the type says how the file is read and scored::

    multiple_choice   zero-shot choice by likelihood (gptcore.zeroshot)   a gptcore.taskdata reader, MC records
    lambada           zero-shot last word (gptcore.zeroshot)              JSONL records with "text"
    completion        prompted completion vs a reference, ROUGE           JSONL records with "text", "reference"
    finetuned         a fine-tuned head's score (gptcore.finetune)        a gptcore.taskdata reader, ``task`` records

These are not the fine-tuning task types (``gptcore.taskdata.TASK_TYPES``: classification, entailment, similarity,
multiple_choice), which say what a head predicts; a ``finetuned`` evaluation task names one of them in ``task``.
Every unusable row is counted by reason, never fatal: JSONL lines through ``gptcore.taskdata.jsonl_records`` (its
``undecodable`` and ``malformed_json``), plus ``missing_field`` and ``undecodable`` for the fields a type needs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gptcore.names import check_name
from gptcore.taskdata import is_decodable, jsonl_records, load_task_file, to_record
from gptcore.zeroshot import CompletionConfig

EVAL_TASK_TYPES = ("multiple_choice", "lambada", "completion", "finetuned")


@dataclass(frozen=True)
class EvalTask:
    """One evaluation task (an entry of the evaluate stage's ``tasks`` parameter)."""

    name: str
    type: str  # one of EVAL_TASK_TYPES
    path: str
    reader: str = "auto"  # a gptcore.taskdata reader (multiple_choice, finetuned); lambada/completion read JSONL
    task: str | None = None  # finetuned: the record type of the file (classification, entailment, …)
    delimiter: str = " "  # multiple_choice: between context and answer
    prompt: str = CompletionConfig.prompt
    max_new_tokens: int = CompletionConfig.max_new_tokens
    top_k: int | None = None
    stop: str | None = CompletionConfig.stop
    seed: int = 0

    @classmethod
    def from_dict(cls, spec: dict) -> "EvalTask":
        known = set(cls.__dataclass_fields__)
        missing = [k for k in ("name", "type", "path") if k not in spec]
        unknown = sorted(set(spec) - known)
        if missing or unknown:
            raise ValueError(f"task {spec.get('name', spec)!r}: missing {missing}, unknown {unknown}; a task needs "
                             f"name, type, path and may set {sorted(known - {'name', 'type', 'path'})}")
        check_name(spec["name"], "evaluation task name")  # it becomes a file name
        if spec["type"] not in EVAL_TASK_TYPES:
            raise ValueError(f"task {spec['name']!r}: type {spec['type']!r} is not one of {EVAL_TASK_TYPES}")
        if not Path(spec["path"]).is_file():
            raise FileNotFoundError(f"task {spec['name']!r}: no file at {spec['path']}")
        return cls(**spec)

    def completion_config(self) -> CompletionConfig:
        """How a completion task generates (its prompt, token budget, sampling and stop text)."""
        return CompletionConfig(self.prompt, self.max_new_tokens, self.top_k, self.stop, self.seed)


@dataclass
class EvalTaskData:
    """A task file read into generic records, with every unusable row counted by reason."""

    records: list[dict]
    rejects: dict[str, int] = field(default_factory=dict)
    examples: list = field(default_factory=list)  # typed gptcore.taskdata examples (finetuned tasks)


def read_eval_task(task: EvalTask) -> EvalTaskData:
    """The task's file as the records its type scores (and, for finetuned tasks, the typed examples)."""
    if task.type in ("multiple_choice", "finetuned"):
        kind = "multiple_choice" if task.type == "multiple_choice" else task.task
        if kind is None:
            raise ValueError(f"task {task.name!r}: a finetuned task names the record type of its file in 'task' "
                             "(classification, entailment, similarity or multiple_choice)")
        data = load_task_file(task.path, kind, task.reader)
        return EvalTaskData([to_record(e) for e in data.examples], dict(data.rejects), data.examples)
    needed = ("text",) if task.type == "lambada" else ("text", "reference")
    return read_jsonl_task(Path(task.path), needed)


def read_jsonl_task(path: Path, needed: tuple[str, ...]) -> EvalTaskData:
    """JSONL records that have the ``needed`` string fields; other lines counted as ``undecodable``,
    ``malformed_json`` or ``missing_field`` (blank lines are not rows)."""
    records, rejects = [], {}
    for line in jsonl_records(path):  # a line with bad bytes or broken JSON is that line's reject
        fields = [line.record.get(k) for k in needed] if line.reason is None else []
        reason = line.reason or ("missing_field" if not all(isinstance(f, str) and f for f in fields)
                                 else "undecodable" if not all(is_decodable(f) for f in fields) else None)
        if reason:
            rejects[reason] = rejects.get(reason, 0) + 1
            continue
        records.append(line.record)
    return EvalTaskData(records, rejects)
