"""evaluate: runs (pretrain or finetune) + evaluation tasks → ``eval/<id>/``: results, a comparison, lineage.

For each run (``"<run>"`` for its latest checkpoint, ``"<run>@step_000500.pt"`` for another one) the flow measures
loss / perplexity / bits per byte on the validation split of a tokens version (default: the run's own), then each
task (read by ``gptcore.evaltasks``): zero-shot multiple choice, LAMBADA-style last word, prompted completion
(``gptcore.zeroshot``), or a fine-tuned head's score on labelled examples (``gptcore.finetune.evaluate_task``;
finetune runs only, recorded as skipped for the others). With ``contamination`` on, each task's 8-gram overlap with
the text the run was pretrained on (the training split of its tokens version) is measured as GPT-2 did
(``gptcore.contamination``); that Bloom filter is cached per corpus checksum and split rule and reused by later
evaluations.

Outputs: ``results.json`` (per run: perplexity and each task's metrics and contamination), ``comparison.md`` (the
best run per task and metric over this and every earlier eval version, on the same task file), ``tasks/<task><ext>``
(a copy of each task file, the bytes that were scored), Prefect table artifacts, and a manifest whose upstream is the
runs and the task files (each with the relative path of its copy). A copied data root re-runs its
evaluations from those copies: ``evaluate(runs, tasks=stored_tasks(root, version))``. The gate
(``data_contracts.evaluate``) refuses missing, non-finite or empty-set metrics.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.logging import get_run_logger

from data_contracts.evaluate import validate_results
from flows.evaluate_compare import comparison_markdown, comparison_rows, metric_rows
from flows.lineage import input_file, tokens_of_run, upstream_of, upstream_version, write_manifest
from flows.stage import artifact_key, finish_version, start_version
from flows.store import DataRoot, StoreError
from gptcore.checkpoint import CHECKPOINT_DIR, CHECKPOINT_FILES, latest_checkpoint, load_model
from gptcore.contamination import NGRAM, BloomFilter, build_corpus_filter, example_texts, measure_overlap
from gptcore.encoding import TOKENIZER_FILE, load_encoder
from gptcore.evaltasks import EvalTask, read_eval_task
from gptcore.files import atomic_file, atomic_write_json, sha256_file
from gptcore.finetune import TASK_FILE as FINETUNE_TASK_FILE
from gptcore.finetune import evaluate_task
from gptcore.names import check_name
from gptcore.perplexity import evaluate_perplexity
from gptcore.runtime import resolve_device
from gptcore.shards import SHARD_FILES, read_index, split_of
from gptcore.zeroshot import evaluate_completion, evaluate_last_word, evaluate_multiple_choice

STAGE = "eval"
RESULTS, COMPARISON = "results.json", "comparison.md"
TASKS_DIR = "tasks"  # in an eval version: the task files it scored


# -- runs ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRef:
    """A run and the checkpoint to evaluate, with the versions found through its lineage."""

    label: str  # as given: "run" or "run@checkpoint"
    run: str
    checkpoint: Path
    tokens: str  # whose validation split gives perplexity
    trained_on: str  # the tokens version the run was pretrained on: its training split is the pretraining text
    corpus: str  # the corpus of trained_on
    tokenizer_json: Path
    run_folder: Path  # verified local folders (``verified_folder``)
    tokens_folder: Path


# Large files the readers check themselves against a checksum file that local_version verifies, so that each is
# hashed once: validation shards against index.json (perplexity), checkpoints against their .sha256 (loading).
CHECKED_ON_READ = {"tokens": (SHARD_FILES,), "runs": (CHECKPOINT_FILES,)}


def verified_folder(root: DataRoot, folders: dict[tuple[str, str], Path], stage: str, version: str) -> Path:
    """A version's local folder, verified the first time this evaluation reads it and reused after (``folders``)."""
    if (stage, version) not in folders:
        folders[stage, version] = root.local_version(stage, version, checked_on_read=CHECKED_ON_READ.get(stage, ()))
    return folders[stage, version]


def resolve_run(root: DataRoot, label: str, tokens: str | None, folders: dict[tuple[str, str], Path]) -> RunRef:
    run, _, checkpoint_name = label.partition("@")
    folder = verified_folder(root, folders, "runs", run)  # raises with the published runs when it does not exist
    if checkpoint_name:
        checkpoint = folder / CHECKPOINT_DIR / check_name(checkpoint_name, f"checkpoint of runs entry {label!r}")
        if not checkpoint.is_file():
            found = sorted(p.name for p in (folder / CHECKPOINT_DIR).glob("*.pt"))
            raise StoreError(f"run {run!r} has no checkpoint {checkpoint_name!r}; it has {found}")
    else:
        checkpoint = latest_checkpoint(folder)
        if checkpoint is None:
            raise StoreError(f"run {run!r} has no checkpoint: is {folder} a training run folder?")
    trained_on = tokens_of_run(root, run)
    tokens = tokens or trained_on
    corpus = upstream_of(root, "tokens", trained_on, "corpus")
    tokenizer = upstream_of(root, "tokens", tokens, "tokenizer")
    if corpus is None or tokenizer is None:
        raise StoreError(f"tokens version {trained_on!r} or {tokens!r} names no corpus/tokenizer upstream in its "
                         "manifest")
    return RunRef(label, run, checkpoint, tokens, trained_on, corpus,
                  verified_folder(root, folders, "tokenizer", tokenizer) / TOKENIZER_FILE, folder,
                  verified_folder(root, folders, "tokens", tokens))


@task(name="evaluate-run")
def evaluate_run(root: DataRoot, ref: RunRef, eval_tasks: list[EvalTask], max_tokens: int | None, batch_size: int,
                 device: str) -> dict:
    """Perplexity on the tokens' validation split and every task's metrics for one checkpoint."""
    dev = resolve_device(device)
    model = load_model(ref.checkpoint, dev)
    encoder = load_encoder(ref.tokenizer_json)
    tokens_folder, run_folder = ref.tokens_folder, ref.run_folder
    result = {"run": ref.run, "checkpoint": ref.checkpoint.relative_to(ref.checkpoint.parent.parent).as_posix(),
              "tokens": ref.tokens, "trained_on": ref.trained_on, "corpus": ref.corpus,
              "perplexity": evaluate_perplexity(model, tokens_folder, encoder, "val", batch_size=batch_size,
                                                max_tokens=max_tokens, device=dev).as_dict(),
              "tasks": {}, "skipped": {}}
    for eval_task in eval_tasks:
        data = read_eval_task(eval_task)
        if eval_task.type == "multiple_choice":
            metrics = evaluate_multiple_choice(model, encoder, data.records, eval_task.delimiter, batch_size, dev)
        elif eval_task.type == "lambada":
            metrics = evaluate_last_word(model, encoder, data.records, batch_size, dev)
        elif eval_task.type == "completion":
            metrics = evaluate_completion(model, encoder, data.records, eval_task.completion_config(), dev)
        elif not (run_folder / FINETUNE_TASK_FILE).is_file():
            result["skipped"][eval_task.name] = "not a finetune run: a fine-tuned head's task needs one"
            continue
        else:
            metrics = evaluate_task(run_folder, data.examples, batch_size, device)
        result["tasks"][eval_task.name] = {"type": eval_task.type, "metrics": metrics, "rejects": data.rejects}
    return result


# -- task files ---------------------------------------------------------------------------------------------------


def stored_task_path(task: EvalTask) -> str:
    """Where an eval version keeps a task's file, relative to the version folder (the suffix tells readers the
    format, as the original's did)."""
    return f"{TASKS_DIR}/{task.name}{Path(task.path).suffix}"


def task_input(task: EvalTask) -> dict:
    """The manifest's upstream entry of a task file: where it was read (``path``, as every stage names its inputs),
    its size and sha256, and its copy in the version (``copy``, relative to the version folder)."""
    return {**input_file(task.path, "task"), "task": task.name, "copy": stored_task_path(task)}


def copy_task_files(out: Path, eval_tasks: list[EvalTask], sha256: dict[str, str]) -> list[EvalTask]:
    """Copy each task file into the version folder being written; the tasks returned read the copies, so what is
    scored is what is published. A file that changed since it was hashed is refused."""
    stored = []
    for task in eval_tasks:
        target = out / stored_task_path(task)
        with open(task.path, "rb") as source, atomic_file(target) as copy:
            shutil.copyfileobj(source, copy)
        if sha256_file(target) != sha256[task.name]:
            raise StoreError(f"task {task.name!r}: {task.path} changed while evaluate was starting (its sha256 no "
                             "longer matches); rerun when the file is no longer being written")
        stored.append(replace(task, path=str(target)))
    return stored


def stored_tasks(root: DataRoot, version: str) -> list[dict]:
    """The ``tasks`` of a published eval version, each path at its verified copy in the version (a local folder), so
    that ``evaluate(runs, tasks=stored_tasks(root, version))`` re-runs them from the data root alone."""
    folder = root.local_version(STAGE, version)
    outputs = root.verified_manifest(STAGE, version)["outputs"]
    names = {f.name for f in fields(EvalTask)}
    specs = []
    for name, entry in json.loads((folder / RESULTS).read_text())["tasks"].items():
        if entry["path"] not in outputs:
            raise StoreError(f"eval version {version!r} does not hold the file of its task {name!r} (it names "
                             f"{entry['path']}): it was written before evaluate kept task files; rerun evaluate on "
                             "the original files to make a version that holds them")
        specs.append({**{k: v for k, v in entry.items() if k in names}, "path": str(folder / entry["path"])})
    return specs


# -- contamination ------------------------------------------------------------------------------------------------


def filter_cache_path(root: DataRoot, corpus: str, validation_fraction: float, false_positive_rate: float) -> Path:
    """Where a pretraining-text Bloom filter is kept: keyed by the corpus checksum and the split rule (which
    documents are training text), so any later evaluation of a run trained on the same text reuses it."""
    checksum = root.read_manifest("corpus", corpus)["checksum"]
    cache = root.work_dir(STAGE, "cache").parent / ".cache"  # local: <data root>/eval/.cache, else GPTFORGE_CACHE
    return cache / f"ngram{NGRAM}-{checksum[:16]}-train{validation_fraction:g}-p{false_positive_rate:g}.npz"


@task(name="pretraining-ngram-filter")
def pretraining_filter(root: DataRoot, trained_on: Path, corpus: str, false_positive_rate: float) -> str:
    """Build (or reuse) the Bloom filter of the 8-grams of a tokens version's training documents; returns its path.

    The training split is the corpus minus the documents whose doc_id hash puts them in the validation split
    (``gptcore.shards.split_of``), so a held-out document is not counted as seen. ``trained_on`` is the tokens
    version's verified folder: only its index.json is read. The corpus is verified only when the filter is built.
    """
    fraction = read_index(trained_on, verify_checksums=False).split_rule.validation_fraction
    path = filter_cache_path(root, corpus, fraction, false_positive_rate)
    if not path.is_file():
        files = sorted(root.local_version("corpus", corpus).glob("data/*.parquet"))
        if not files:
            raise StoreError(f"corpus version {corpus!r} has no data/*.parquet files to check contamination against")
        build_corpus_filter(files, NGRAM, false_positive_rate,
                            keep=lambda doc_id: split_of(doc_id, fraction) == "train").save(path)
    return str(path)


@task(name="measure-contamination")
def measure_contamination(filter_path: str, eval_tasks: list[EvalTask]) -> dict[str, dict]:
    """Per task: the fraction of its 8-grams in the corpus filter and of its examples with any."""
    bloom = BloomFilter.load(filter_path)
    return {t.name: measure_overlap(bloom, (example_texts(r) for r in read_eval_task(t).records)).as_dict()
            for t in eval_tasks}


# -- the flow -----------------------------------------------------------------------------------------------------


@flow(name="evaluate", log_prints=True)
def evaluate(
    runs: list[str],
    tasks: list[dict] | None = None,
    tokens: str | None = None,
    contamination: bool = True,
    version: str | None = None,
    data_root: str | None = None,
    max_tokens: int | None = None,
    batch_size: int = 16,
    device: str = "auto",
    false_positive_rate: float = 1e-3,
) -> str:
    """Evaluate checkpoints of runs on perplexity and tasks; returns the eval version folder.

    ``runs``: run ids (``"<run>@<checkpoint file>"`` for a checkpoint other than the latest). ``tokens``: the tokens
    version whose validation split gives perplexity / bits per byte (default: each run's own). ``tasks``: dicts with
    ``name``, ``type`` (multiple_choice | lambada | completion | finetuned), ``path`` and the options of
    ``gptcore.evaltasks.EvalTask`` (``reader``, ``prompt``, ``max_new_tokens``, ``top_k``, ``stop``, ``delimiter``,
    ``task``).
    ``max_tokens`` caps the validation tokens scored (all by default).
    """
    logger = get_run_logger()
    if not runs:
        raise ValueError("evaluate needs at least one run id in runs=[...]")
    root = DataRoot.from_env(data_root)
    eval_tasks = [EvalTask.from_dict(t) for t in tasks or []]
    if len({t.name for t in eval_tasks}) != len(eval_tasks):
        raise ValueError(f"task names must be unique, got {[t.name for t in eval_tasks]}")
    folders: dict[tuple[str, str], Path] = {}  # each upstream version verified once in this evaluation
    refs = [resolve_run(root, label, tokens, folders) for label in runs]
    inputs = [task_input(t) for t in eval_tasks]
    run_versions = list(dict.fromkeys(r.run for r in refs))
    upstream = [upstream_version(root, "runs", r) for r in run_versions]
    parameters = {"runs": runs, "tokens": tokens, "tasks": [asdict(t) for t in eval_tasks],
                  "contamination": contamination, "max_tokens": max_tokens, "batch_size": batch_size,
                  "false_positive_rate": false_positive_rate,
                  "inputs": {i["task"]: i["sha256"] for i in inputs},
                  "run_checksums": {u["version"]: u["checksum"] for u in upstream}}
    started = start_version(root, STAGE, version, parameters)
    if started.published:  # an earlier run published it and was killed before its cleanup
        return started.published
    out = started.out
    out.mkdir(parents=True, exist_ok=True)
    eval_tasks = copy_task_files(out, eval_tasks, parameters["inputs"])

    results = {"version": started.name,
               "tasks": {t.name: {**asdict(t), "path": stored_task_path(t), "sha256": parameters["inputs"][t.name]}
                         for t in eval_tasks}, "runs": {}}
    for ref in refs:
        logger.info("evaluating %s (%s) on tokens %s and %d task(s)", ref.label, ref.checkpoint.name, ref.tokens,
                    len(eval_tasks))
        results["runs"][ref.label] = evaluate_run(root, ref, eval_tasks, max_tokens, batch_size, device)
    if contamination and eval_tasks:
        for trained_on, corpus in dict.fromkeys((r.trained_on, r.corpus) for r in refs):
            tokens_folder = verified_folder(root, folders, "tokens", trained_on)
            overlap = measure_contamination(pretraining_filter(root, tokens_folder, corpus, false_positive_rate),
                                            eval_tasks)
            for ref in refs:
                if ref.trained_on == trained_on:
                    for name, found in overlap.items():
                        if name in results["runs"][ref.label]["tasks"]:  # not when skipped for this run
                            results["runs"][ref.label]["tasks"][name]["contamination"] = found
    atomic_write_json(out / RESULTS, results)

    report = validate_results(results)
    earlier = [read_results(root, v) for v in root.versions(STAGE)]
    best = comparison_rows([*earlier, results])
    (out / COMPARISON).write_text(comparison_markdown(best))
    counts = {"runs": len(refs), "tasks": len(eval_tasks), "metrics": len(metric_rows(results))}
    manifest = write_manifest(out, STAGE, started.name, parameters, [*upstream, *inputs], counts)
    create_table_artifact(best, key=artifact_key(STAGE, started.name, "comparison"),
                          description="Best run per task and metric, this and earlier eval versions")
    url = finish_version(root, started, manifest, report, metric_rows(results),
                         asset_deps=[root.asset_key("runs", r) for r in run_versions],
                         description=f"evaluation of {', '.join(runs)}")
    for row in best:
        logger.info("best on %s %s: %s (%s)", row["task"], row["metric"], row["best"], row["value"])
    return url


def read_results(root: DataRoot, version: str) -> dict:
    """The ``results.json`` of a published eval version."""
    return json.loads(root.read_verified(STAGE, version, RESULTS))
