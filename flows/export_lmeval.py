"""export lm-eval: an eval version's zero-shot tasks as lm-evaluation-harness tasks, data files included.

    lm_eval --model hf --model_args pretrained=<gptforge export hf folder> --include_path OUT --tasks gptforge_<task>

Each multiple-choice and last-word task of the eval version becomes ``OUT/gptforge_<task>.yaml`` with its records in
``OUT/gptforge_<task>.jsonl`` (the records evaluate scored, read from the version's own copy of the task file), built
so that lm-evaluation-harness scores the tokens ``gptcore.zeroshot`` scores and reports the same numbers:

    gptcore.zeroshot                                  the task YAML
    [end-of-text id] + encode(context)                doc_to_text "<|endoftext|>{{context}}" (lm-eval adds no BOS then)
    delimiter + choice after the context              doc_to_choice choices, target_delimiter = the task's delimiter
    split_last_word(text) → (context, word)           the two fields of each record, doc_to_target target
    context whitespace scored with the answer         lm-eval's own rule (its ``_encode_pair``)
    acc, acc_norm, acc_bytes / acc, perplexity        metric_list, the same definitions under the same names

gptforge encodes the context and the answer separately, lm-eval the two joined and then splits; the tokens are the
same whenever the answer starts with whitespace (the default delimiter " ", every last word), where GPT-2's
pre-tokenizer always cuts. ``acc_per_token`` and ``token_perplexity`` are gptforge's own and not exported. Completion
(ROUGE on gptforge's word normalisation) and fine-tuned tasks (a task head) have no lm-eval counterpart and are
skipped with a warning. Every task is tagged ``gptforge_eval_<version>``, so ``--tasks gptforge_eval_<version>`` runs
them all. The YAMLs name their data files by absolute path (lm-eval resolves a relative one against its working
directory): export again after moving OUT.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml

from flows.evaluate import STAGE, stored_task_path, stored_tasks
from flows.store import MANIFEST, DataRoot, StoreError
from gptcore.encoding import EOT_TOKEN
from gptcore.evaltasks import EvalTask, read_eval_task
from gptcore.files import atomic_write_text
from gptcore.zeroshot import split_last_word

PREFIX = "gptforge_"  # keeps exported names apart from lm-eval's own tasks and tags (it has a "lambada" tag)
EXPORTED_TYPES = ("multiple_choice", "lambada")

log = logging.getLogger(__name__)


def lm_eval_name(task: str) -> str:
    """The lm-eval task name of a gptforge evaluation task."""
    return f"{PREFIX}{task}"


def metric(name: str, aggregation: str = "mean", higher_is_better: bool = True) -> dict:
    return {"metric": name, "aggregation": aggregation, "higher_is_better": higher_is_better}


def task_config(task: EvalTask, data_file: Path, tag: str) -> dict:
    """The lm-eval task config of a multiple-choice or last-word task whose records are in ``data_file``."""
    config = {"task": lm_eval_name(task.name), "tag": [tag], "metadata": {"version": 1}, "dataset_path": "json",
              "dataset_kwargs": {"data_files": {"test": str(data_file)}}, "test_split": "test", "num_fewshot": 0,
              "doc_to_text": EOT_TOKEN + "{{context}}"}
    if task.type == "multiple_choice":
        return {**config, "output_type": "multiple_choice", "doc_to_choice": "choices", "doc_to_target": "label",
                "target_delimiter": task.delimiter,
                "metric_list": [metric("acc"), metric("acc_norm"), metric("acc_bytes")]}
    return {**config, "output_type": "loglikelihood", "doc_to_target": "target",
            "metric_list": [metric("perplexity", "perplexity", higher_is_better=False), metric("acc")]}


def task_records(task: EvalTask) -> list[dict]:
    """The records of a task as the YAML reads them: MC records as scored; last words split as gptforge splits."""
    records = read_eval_task(task).records
    if task.type == "multiple_choice":
        return [{"context": r["context"], "choices": r["choices"], "label": r["label"]} for r in records]
    return [dict(zip(("context", "target"), split_last_word(r["text"]))) for r in records]


def eval_version_of(folder: Path) -> tuple[DataRoot, str]:
    """The data root and version of a local eval version folder (``DATA/eval/<version>``)."""
    manifest = folder / MANIFEST
    if not manifest.is_file() or json.loads(manifest.read_text()).get("stage") != STAGE:
        raise StoreError(f"{folder} is not an eval version folder (no {MANIFEST} of stage {STAGE!r}): pass a folder "
                         "such as DATA/eval/v0001")
    return DataRoot.from_env(str(folder.parent.parent)), folder.name


def export_lmeval(eval_folder: str | Path, out: str | Path) -> list[Path]:
    """Write the eval version's multiple-choice and last-word tasks into ``out`` as lm-eval task YAMLs with their
    data files; returns the YAMLs. The version is verified against its manifest and its task copies are read."""
    root, version = eval_version_of(Path(eval_folder).resolve())
    tasks = [EvalTask.from_dict(spec) for spec in stored_tasks(root, version)]
    exported = [t for t in tasks if t.type in EXPORTED_TYPES]
    for task in tasks:
        if task.type not in EXPORTED_TYPES:
            log.warning("task %r (%s) is not exported: lm-eval has no task type that scores it as evaluate does",
                        task.name, task.type)
    if not exported:
        raise ValueError(f"eval version {version!r} has no multiple_choice or lambada task to export (it has "
                         f"{[(t.name, t.type) for t in tasks]})")
    outputs = root.verified_manifest(STAGE, version)["outputs"]
    out = Path(out).resolve()
    written = []
    for task in exported:
        data_file = out / f"{lm_eval_name(task.name)}.jsonl"
        atomic_write_text(data_file, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in task_records(task)))
        header = (f"# gptforge eval version {version}, task {task.name!r} ({task.type}), task file "
                  f"{stored_task_path(task)} sha256 {outputs[stored_task_path(task)]['sha256']}\n")
        config = yaml.safe_dump(task_config(task, data_file, f"{PREFIX}eval_{version}"), sort_keys=False,
                                allow_unicode=True)
        written.append(atomic_write_text(out / f"{lm_eval_name(task.name)}.yaml", header + config))
    return written
