"""pipeline: the whole recipe as one flow — build-corpus → train-tokenizer → tokenize → pretrain → finetune (one
run per task) → evaluate, each stage a child flow run, so the Prefect UI shows the chain and each stage's gate.

Every stage's output gets the version name ``name`` (fine-tuning runs ``<name>-<task>``); a stage whose version
already exists is reused, so running the pipeline again after a failure picks up where it stopped (a stage killed
mid-way resumes from its work folder). A failed gate stops everything downstream: the run fails with a message
naming the stage and the failed expectations, and a markdown artifact on the run says the same.
"""
from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Callable

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from data_contracts.gate import GateFailed
from flows.stage import artifact_key
from flows.store import DataRoot
from gptcore.names import check_name

ORDER = ("corpus", "tokenizer", "tokens", "runs", "finetune", "eval")


class StageFailed(RuntimeError):
    """A stage of the pipeline failed; the stages after it did not run."""


def _version_of(url: str) -> str:
    return PurePosixPath(url.rstrip("/")).name


class _Stages:
    """Runs stages in order, reusing published versions and turning a failure into one clear message."""

    def __init__(self, root: DataRoot, name: str | None) -> None:
        self.root, self.name = root, name
        self.done: list[tuple[str, str]] = []  # (stage folder, version)
        self.logger = get_run_logger()

    def run(self, stage: str, label: str, version: str | None, call: Callable[[], str]) -> str:
        if version is not None and self.root.exists(stage, version):
            self.logger.info("%s: reusing %s", label, self.root.version_url(stage, version))
            self.done.append((stage, version))
            return version
        try:
            made = _version_of(call())
        except GateFailed as failure:
            self._stop(label, f"its gate failed: {failure}", failure, details=failure.report.markdown())
        except Exception as error:  # noqa: BLE001 - any stage error stops the chain; the message names the stage
            self._stop(label, f"it raised {type(error).__name__}: {error}", error)
        self.done.append((stage, made))
        return made

    def _stop(self, label: str, why: str, error: Exception, details: str = "") -> None:
        remaining = ", ".join(ORDER[ORDER.index(label.split(" ")[0]) + 1:]) or "none"
        text = f"# pipeline stopped at {label}\n\n{label} did not publish: {why}\n\nNot run: {remaining}.\n\n{details}"
        create_markdown_artifact(text, key=artifact_key("pipeline", self.name or "run", "failure"),
                                 description=f"Why the pipeline stopped at {label}")
        raise StageFailed(f"pipeline stopped at {label}: {why} Not run: {remaining}.") from error


@flow(name="pipeline", log_prints=True)
def pipeline(
    name: str | None = None,
    data_root: str | None = None,
    corpus: dict[str, Any] | None = None,
    tokenizer: dict[str, Any] | None = None,
    reuse_tokenizer: str | None = None,
    tokens: dict[str, Any] | None = None,
    pretrain: dict[str, Any] | None = None,
    finetune: list[dict[str, Any]] | None = None,
    evaluate: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the recipe end to end; returns the version of every stage's output.

    Each dict holds the parameters of that stage's flow (see its docs), without the version and upstream names the
    pipeline chains for you. ``reuse_tokenizer`` skips tokenizer training and uses that published version.
    ``finetune`` is a list, one fine-tuning run per task; each item needs a ``name`` for its run. ``evaluate`` is
    evaluated on the pretrained run and every fine-tuned run; leave it ``None`` to skip evaluation.
    """
    from flows.build_corpus import build_corpus
    from flows.evaluate import evaluate as evaluate_flow
    from flows.finetune import finetune as finetune_flow
    from flows.pretrain import pretrain as pretrain_flow
    from flows.tokenize_corpus import tokenize
    from flows.train_tokenizer import train_tokenizer

    check_run_names(name, finetune)
    root = DataRoot.from_env(data_root)
    stages = _Stages(root, name)
    common = {"data_root": root.url}
    corpus_version = stages.run("corpus", "corpus", name,
                                lambda: build_corpus(**{**(corpus or {}), **common, "version": name}))
    tokenizer_version = reuse_tokenizer or stages.run(
        "tokenizer", "tokenizer", name,
        lambda: train_tokenizer(**{**(tokenizer or {}), **common, "corpus": corpus_version, "version": name}))
    tokens_version = stages.run(
        "tokens", "tokens", name,
        lambda: tokenize(**{**(tokens or {}), **common, "corpus": corpus_version, "tokenizer": tokenizer_version,
                            "version": name}))
    run = stages.run("runs", "runs (pretrain)", name,
                     lambda: pretrain_flow(**{**(pretrain or {}), **common, "tokens": tokens_version, "run": name}))
    tuned = []
    for task in finetune or []:
        params = {k: v for k, v in task.items() if k != "name"}
        run_name = f"{name}-{task['name']}" if name else None
        tuned.append(stages.run("runs", f"finetune {task['name']}", run_name,
                                lambda params=params, run_name=run_name: finetune_flow(
                                    **{**params, **common, "pretrained": run, "run": run_name})))
    evaluation = None
    if evaluate is not None:
        evaluation = stages.run("eval", "eval", name, lambda: evaluate_flow(
            **{**evaluate, **common, "runs": [run, *tuned], "version": name}))
    versions = {"corpus": corpus_version, "tokenizer": tokenizer_version, "tokens": tokens_version, "pretrain": run,
                "finetune": tuned, "eval": evaluation}
    create_markdown_artifact(summary_markdown(root, versions), key=artifact_key("pipeline", name or run, "summary"),
                             description="What each stage of the pipeline published")
    return versions


def check_run_names(name: str | None, finetune: list[dict[str, Any]] | None) -> None:
    """Refuse, before any stage runs, a name that would only fail later (e.g. a fine-tuning run ``<name>-<task>``
    too long after pretraining finished)."""
    if name is not None:
        check_name(name, "pipeline name")
    for task in finetune or []:
        if "name" not in task:
            raise ValueError(f"finetune item {task!r} has no 'name': each fine-tuning run needs one, e.g. 'fortunes'")
        check_name(task["name"], "finetune task name")
        if name is not None:
            check_name(f"{name}-{task['name']}", f"finetune run name (pipeline name + '-' + task {task['name']!r})")


def summary_markdown(root: DataRoot, versions: dict[str, Any]) -> str:
    """One line per published version: its folder, headline counts and flow run."""
    lines = ["# pipeline summary", "", "| stage | version | counts | flow run |", "|---|---|---|---|"]
    pairs = [("corpus", versions["corpus"]), ("tokenizer", versions["tokenizer"]), ("tokens", versions["tokens"]),
             ("runs", versions["pretrain"]), *[("runs", v) for v in versions["finetune"]]]
    if versions.get("eval"):
        pairs.append(("eval", versions["eval"]))
    for stage, version in pairs:
        manifest = root.read_manifest(stage, version)
        counts = {k: v for k, v in manifest.get("counts", {}).items() if isinstance(v, (int, float))}
        headline = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in list(counts.items())[:6])
        flow_run = manifest.get("flow_run") or {}
        link = f"[{flow_run.get('name', flow_run.get('id', ''))}]({flow_run['url']})" if flow_run.get("url") else ""
        lines.append(f"| {stage} | `{version}` | {headline} | {link} |")
    return "\n".join(lines) + "\n"
