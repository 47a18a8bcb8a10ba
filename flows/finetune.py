"""finetune: a pretrain run + a labelled task (train and test files) → a fine-tuned run (``runs/<id>/``).

Wraps ``gptcore.finetune`` (GPT-1 section 3.2-3.3): the input files are read into typed examples (bad rows counted
by reason), checked by the input contract before any training, the pretrained model is fine-tuned with the L3
objective, the test file is scored, and the output contract checks the losses and metrics before publishing. The
run folder is the version's work folder, so a killed fine-tuning run resumes from its latest checkpoint; rerunning
with the same ``version`` and parameters finishes the same result. The hyper-parameters are the flow's ``finetune``
parameter, a ``gptcore.finetune.FinetuneConfig`` as it is. The manifest's upstream is the pretrained run and the two
input files with their sha256.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from data_contracts.finetune import overlapping_examples, validate_inputs, validate_outputs
from data_contracts.gate import GateFailed, GateReport
from flows.gpu import gpu_slot
from flows.lineage import input_file, tokenizer_of_run, upstream_version, write_manifest
from flows.stage import finish_version, start_version
from flows.store import DataRoot, StoreError
from flows.task_inputs import local_input
from gptcore.checkpoint import CHECKPOINT_FILES
from gptcore.encoding import TOKENIZER_FILE
from gptcore.files import sha256_file
from gptcore.finetune import (FinetuneConfig, evaluate_task, finetune as finetune_model, metric_names,
                              training_losses)
from gptcore.taskdata import TaskData, load_task_file
from gptcore.tasks import TaskSpec, infer_spec

STAGE = "runs"


def newest_pretrain_run(root: DataRoot) -> str:
    """The newest published run whose upstream is a tokens version (a pretrain run, not a fine-tuned one)."""
    for run in reversed(root.versions(STAGE)):
        if any(up.get("stage") == "tokens" for up in root.read_manifest(STAGE, run).get("upstream", [])):
            return run
    raise StoreError(f"finetune needs a pretrain run but {root.url}/{STAGE} has none: run pretrain first, or pass "
                     "pretrained=<run id> (and data_root)")


def _describe_input(source: str, path: Path, kind: str) -> dict:
    """Manifest entry of an input file (a folder, such as a RACE split, is identified by its files' hashes)."""
    if path.is_file():
        return {**input_file(path, kind), "source": source}
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return {"kind": kind, "path": str(path.resolve()), "source": source, "bytes": sum(p.stat().st_size for p in files),
            "sha256": _sha256_of_files(files, path)}


def _sha256_of_files(files: list[Path], base: Path) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative_to(base).as_posix()} {sha256_file(file)}\n".encode())
    return digest.hexdigest()


@task(name="check-task-inputs", cache_policy=NO_CACHE)
def check_inputs(spec: TaskSpec, train: TaskData, test: TaskData) -> GateReport:
    """The input contract; a failure stops the flow before training, with the report as an artifact."""
    report = validate_inputs(spec, train, test)
    if not report.success:
        leaks = overlapping_examples(train, test)
        note = f"\n\nTest examples also in the training data (first {len(leaks)}): {leaks}\n" if leaks else ""
        create_markdown_artifact(report.markdown() + note, key="finetune-input-gate",
                                 description="finetune input contract (failed)")
        raise GateFailed(report)
    return report


@task(name="fine-tune-model", cache_policy=NO_CACHE)
def train_task_model(pretrained: Path, tokenizer: Path, spec: TaskSpec, train: TaskData, config: FinetuneConfig,
                     out: Path) -> dict:
    with gpu_slot():
        result = finetune_model(pretrained, tokenizer, spec, train.examples, config, out, resume=True)
    return {"step": result.step, "total_steps": result.total_steps, "loss": result.loss,
            "elapsed_s": round(result.elapsed_s, 1), "checkpoint": str(result.checkpoint.relative_to(out))}


@task(name="score-test-set", cache_policy=NO_CACHE)
def score_test(out: Path, test: TaskData, batch_size: int, device: str) -> dict:
    return evaluate_task(out, test.examples, batch_size=batch_size, device=device)


@flow(name="finetune", log_prints=True)
def finetune(
    task: str,
    train: str,
    test: str,
    pretrained: str | None = None,
    reader: str = "auto",
    columns: dict[str, str] | None = None,
    labels: list[str] | None = None,
    finetune: FinetuneConfig | None = None,
    version: str | None = None,
    data_root: str | None = None,
) -> str:
    """Fine-tune a pretrain run (default: the newest) on a task; returns the run folder.

    ``task``: classification | entailment | similarity | multiple_choice. ``train`` / ``test``: local paths, or URLs
    under the data root (other URLs are refused: ``flows.task_inputs``), read with ``reader`` (auto | jsonl | csv |
    tsv | glue-sst2 | glue-cola | glue-mnli | glue-rte | glue-qnli | glue-mrpc | glue-qqp | glue-stsb | snli |
    scitail | race | storycloze); ``columns`` maps the generic field names
    to a generic file's columns. ``labels``: the declared classes (default: those in the train file). ``finetune``
    is a ``gptcore.finetune.FinetuneConfig`` (a dict of its fields), whose defaults are GPT-1's (lr 6.25e-5, batch
    32, 3 epochs, 0.2% warmup then linear decay, λ = ``aux_lm_weight`` 0.5, classifier dropout 0.1); its
    ``max_steps`` caps the budget; ``init="random"`` trains the same architecture from scratch.
    """
    logger = get_run_logger()
    root = DataRoot.from_env(data_root)
    pretrained = pretrained or newest_pretrain_run(root)
    pretrained_up = upstream_version(root, STAGE, pretrained)
    pretrained_folder = root.local_version(STAGE, pretrained, checked_on_read=(CHECKPOINT_FILES,))  # checked on load
    tokenizer = root.local_version("tokenizer", tokenizer_of_run(root, pretrained)) / TOKENIZER_FILE
    config = finetune or FinetuneConfig()

    with tempfile.TemporaryDirectory(prefix="finetune-inputs-") as downloads:
        train_path, test_path = (local_input(source, Path(downloads), root) for source in (train, test))
        inputs = [_describe_input(train, train_path, "train"), _describe_input(test, test_path, "test")]
        train_data = load_task_file(train_path, task, reader, columns)
        test_data = load_task_file(test_path, task, reader, columns)
    spec = infer_spec(task, train_data.examples, labels)
    logger.info("%s: %d train / %d test examples (rejected: train %s, test %s); labels %s", task,
                len(train_data.examples), len(test_data.examples), dict(train_data.rejects), dict(test_data.rejects),
                list(spec.labels) or ("scores" if spec.regression else "choice index"))
    for rejected in (*train_data.rejected[:5], *test_data.rejected[:5]):  # where to look, without flooding the log
        logger.warning("rejected %s line %d: %s %s", rejected.file, rejected.line, rejected.reason, rejected.detail)
    input_report = check_inputs(spec, train_data, test_data)

    # JSON round trip: the plan is compared with the stored one when resuming.
    parameters = json.loads(json.dumps({
        "pretrained": pretrained, "pretrained_checksum": pretrained_up["checksum"], "spec": spec.to_dict(),
        "reader": reader, "columns": columns, "train": {"source": train, "sha256": inputs[0]["sha256"]},
        "test": {"source": test, "sha256": inputs[1]["sha256"]}, "finetune": asdict(config)}))
    started = start_version(root, STAGE, version, parameters)
    if started.published:  # an earlier run published it and was killed before its cleanup
        return started.published
    logger.info("run %s: fine-tuning %s (%s init) for %s", started.name, pretrained, config.init, task)
    result = train_task_model(pretrained_folder, tokenizer, spec, train_data, config, started.out)
    test_metrics = score_test(started.out, test_data, config.batch_size, config.device)

    output_report = validate_outputs(training_losses(started.out), test_metrics, metric_names(spec))
    report = GateReport("finetune", input_report.evaluated + output_report.evaluated,
                        input_report.failures + output_report.failures)
    counts = {**result, "train_examples": len(train_data.examples), "test_examples": len(test_data.examples),
              "train_rejects": dict(train_data.rejects), "test_rejects": dict(test_data.rejects),
              **{f"test_{name}": value for name, value in test_metrics.items()}}
    manifest = write_manifest(started.out, STAGE, started.name, parameters, [pretrained_up, *inputs], counts)
    rows = [{"metric": name, "value": value} for name, value in test_metrics.items()]
    url = finish_version(root, started, manifest, report, rows, asset_deps=[root.asset_key(STAGE, pretrained)],
                         description=f"{task} fine-tuning of run {pretrained}")
    logger.info("run %s: %s → %s", started.name, test_metrics, url)
    return url
