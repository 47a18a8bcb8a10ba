"""pipeline: the whole recipe as one flow — build-corpus → train-tokenizer → tokenize → pretrain → finetune (one
run per task) → evaluate, each stage a child flow run, so the Prefect UI shows the chain and each stage's gate.

One key per stage, named after the flow that fills it, in the parameters (that flow's parameters), in what the
pipeline returns (the version it published) and in its messages: ``build_corpus``, ``train_tokenizer``,
``tokenize``, ``pretrain``, ``finetune``, ``evaluate``. Every stage's output gets the version ``version``
(fine-tuning runs ``<version>-<task name>``); a stage whose version already exists is reused, so running the
pipeline again after a failure picks up where it stopped (a stage killed mid-way resumes from its work folder). A
failed gate stops everything downstream: the run fails with a message naming the stage and the failed
expectations, and a markdown artifact on the run says the same.
"""
from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Callable

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from data_contracts.gate import GateFailed
from flows.build_corpus import build_corpus as build_corpus_flow
from flows.cards import versions_table
from flows.evaluate import evaluate as evaluate_flow
from flows.finetune import finetune as finetune_flow
from flows.pretrain import pretrain as pretrain_flow
from flows.stage import artifact_key
from flows.store import DataRoot
from flows.tokenize_corpus import tokenize as tokenize_flow
from flows.train_tokenizer import train_tokenizer as train_tokenizer_flow
from gptcore.names import check_name

# The stages in order, each with the data-root folder its versions go to.
FOLDERS = {"build_corpus": "corpus", "train_tokenizer": "tokenizer", "tokenize": "tokens", "pretrain": "runs",
           "finetune": "runs", "evaluate": "eval"}
ORDER = tuple(FOLDERS)


class StageFailed(RuntimeError):
    """A stage of the pipeline failed; the stages after it did not run."""


def _version_of(url: str) -> str:
    return PurePosixPath(url.rstrip("/")).name


class _Stages:
    """Runs stages in order, reusing published versions and turning a failure into one clear message."""

    def __init__(self, root: DataRoot, version: str | None) -> None:
        self.root, self.version = root, version
        self.logger = get_run_logger()

    def run(self, stage: str, version: str | None, call: Callable[[], str], label: str | None = None) -> str:
        """Run ``stage`` (a key of ``FOLDERS``; ``label`` names it in messages) unless ``version`` is published."""
        folder, label = FOLDERS[stage], label or stage
        if version is not None and self.root.exists(folder, version):
            self.logger.info("%s: reusing %s", label, self.root.version_url(folder, version))
            return version
        try:
            return _version_of(call())
        except GateFailed as failure:
            self._stop(stage, label, f"its gate failed: {failure}", failure, details=failure.report.markdown())
        except Exception as error:  # noqa: BLE001 - any stage error stops the chain; the message names the stage
            self._stop(stage, label, f"it raised {type(error).__name__}: {error}", error)

    def _stop(self, stage: str, label: str, why: str, error: Exception, details: str = "") -> None:
        remaining = ", ".join(ORDER[ORDER.index(stage) + 1:]) or "none"
        text = f"# pipeline stopped at {label}\n\n{label} did not publish: {why}\n\nNot run: {remaining}.\n\n{details}"
        create_markdown_artifact(text, key=artifact_key("pipeline", self.version or "run", "failure"),
                                 description=f"Why the pipeline stopped at {label}")
        raise StageFailed(f"pipeline stopped at {label}: {why} Not run: {remaining}.") from error


@flow(name="pipeline", log_prints=True)
def pipeline(
    version: str | None = None,
    data_root: str | None = None,
    build_corpus: dict[str, Any] | None = None,
    train_tokenizer: dict[str, Any] | None = None,
    reuse_tokenizer: str | None = None,
    tokenize: dict[str, Any] | None = None,
    pretrain: dict[str, Any] | None = None,
    finetune: list[dict[str, Any]] | None = None,
    evaluate: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the recipe end to end; returns the version each stage published, under the same keys.

    Each dict holds the parameters of that stage's flow (see its docs; nested as the flow takes them, e.g.
    ``pretrain={"preset": "tiny", "train": {"max_steps": 100}}``), without the version and upstream names the
    pipeline chains for you. ``reuse_tokenizer`` skips tokenizer training and uses that published version.
    ``finetune`` is a list, one fine-tuning run per task; each item needs a ``name`` for its run. ``evaluate`` is
    evaluated on the pretrained run and every fine-tuned run; leave it ``None`` to skip evaluation.
    """
    check_run_names(version, finetune)
    root = DataRoot.from_env(data_root)
    stages = _Stages(root, version)
    common = {"data_root": root.url}
    corpus = stages.run("build_corpus", version,
                        lambda: build_corpus_flow(**{**(build_corpus or {}), **common, "version": version}))
    tokenizer = reuse_tokenizer or stages.run(
        "train_tokenizer", version,
        lambda: train_tokenizer_flow(**{**(train_tokenizer or {}), **common, "corpus": corpus, "version": version}))
    tokens = stages.run(
        "tokenize", version,
        lambda: tokenize_flow(**{**(tokenize or {}), **common, "corpus": corpus, "tokenizer": tokenizer,
                                 "version": version}))
    run = stages.run("pretrain", version,
                     lambda: pretrain_flow(**{**(pretrain or {}), **common, "tokens": tokens, "version": version}))
    tuned = []
    for task in finetune or []:
        params = {k: v for k, v in task.items() if k != "name"}
        run_version = f"{version}-{task['name']}" if version else None
        tuned.append(stages.run("finetune", run_version,
                                lambda params=params, run_version=run_version: finetune_flow(
                                    **{**params, **common, "pretrained": run, "version": run_version}),
                                label=f"finetune {task['name']}"))
    evaluation = None
    if evaluate is not None:
        evaluation = stages.run("evaluate", version, lambda: evaluate_flow(
            **{**evaluate, **common, "runs": [run, *tuned], "version": version}))
    versions = {"build_corpus": corpus, "train_tokenizer": tokenizer, "tokenize": tokens, "pretrain": run,
                "finetune": tuned, "evaluate": evaluation}
    published = [(FOLDERS[stage], v) for stage in ORDER for v in
                 (versions[stage] if isinstance(versions[stage], list) else [versions[stage]]) if v is not None]
    create_markdown_artifact(versions_table(root, "pipeline summary", published),
                             key=artifact_key("pipeline", version or run, "summary"),
                             description="What each stage of the pipeline published")
    return versions


def check_run_names(version: str | None, finetune: list[dict[str, Any]] | None) -> None:
    """Refuse, before any stage runs, a name that would only fail later (e.g. a fine-tuning run
    ``<version>-<task name>`` too long after pretraining finished)."""
    if version is not None:
        check_name(version, "pipeline version")
    for task in finetune or []:
        if "name" not in task:
            raise ValueError(f"finetune item {task!r} has no 'name': each fine-tuning run needs one, e.g. 'fortunes'")
        check_name(task["name"], "finetune task name")
        if version is not None:
            check_name(f"{version}-{task['name']}",
                       f"finetune run version (pipeline version + '-' + task {task['name']!r})")
