"""retrain: the scheduled, incremental loop — new dumps → a corpus version deduplicated against every earlier one →
the champion's tokenizer → tokens → pretraining continued from the champion's weights → fine-tuning → evaluation of
challenger and champion side by side → promotion only when the challenger is better on the configured metric.

Each cycle is named ``<registry>-<NNNN>`` and runs the ``pipeline`` flow as a child run with that name as the
version of every stage, so a cycle that failed (a gate, a crash) is resumed by the next run: published stages are
reused, unfinished ones resume from their work folders. Dumps count as consumed only once a cycle decides, so a
failed cycle's dumps are tried again. The registry (``flows.registry``) records each cycle's versions by data-root
folder (``corpus``, ``tokenizer``, ``tokens``) and run (``pretrain``, ``finetune``).
"""
from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import fsspec
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from flows.cards import format_registry
from flows.evaluate import evaluate as evaluate_flow
from flows.evaluate import read_results
from flows.evaluate_compare import LOWER_IS_BETTER
from flows.pipeline import pipeline
from flows.registry import Registry
from flows.stage import artifact_key
from flows.store import DataRoot
from gptcore.names import check_name


def new_dumps(root: DataRoot, dumps_dir: str, pattern: str, seen: dict[str, int]) -> dict[str, int]:
    """Dump files in ``dumps_dir`` matching ``pattern`` not consumed yet (by name and size), oldest name first."""
    fs, base = fsspec.core.url_to_fs(dumps_dir)
    found = {}
    for path in sorted(fs.glob(f"{base.rstrip('/')}/{pattern}")):
        name, size = PurePosixPath(path).name, fs.size(path)
        if seen.get(name) != size:
            found[name] = size
    return found


def metric_of(results: dict, runs: list[str], metric: str, task: str | None) -> float | None:
    """The metric of a system (a pretrain run and its fine-tuned runs) in an eval's results: the perplexity block
    of the pretrain run when ``task`` is None, else the named task's metric in whichever run scored it."""
    for run in runs:
        scored = results["runs"].get(run)
        if scored is None:
            continue
        values = scored["perplexity"] if task is None else scored["tasks"].get(task, {}).get("metrics", {})
        if metric in values:
            return float(values[metric])
    return None


def decide_promotion(challenger: float | None, champion: float | None, metric: str) -> tuple[str, str]:
    """("promoted" or "kept", why): the challenger wins when it is better on ``metric`` (lower for losses)."""
    if challenger is None:
        raise ValueError(f"the evaluation has no {metric!r} for the challenger: check metric / metric_task")
    if champion is None:
        return "promoted", "no champion yet"
    lower = metric in LOWER_IS_BETTER
    better = challenger < champion if lower else challenger > champion
    direction = "lower" if lower else "higher"
    if better:
        return "promoted", f"challenger {metric} {challenger:.4g} beats champion {champion:.4g} ({direction} is better)"
    return "kept", f"challenger {metric} {challenger:.4g} does not beat champion {champion:.4g} ({direction} is better)"


@flow(name="retrain", log_prints=True)
def retrain(
    dumps_dir: str,
    registry: str = "weekly",
    dump_pattern: str = "RS_*.zst",
    metric: str = "bits_per_byte",
    metric_task: str | None = None,
    retrain_tokenizer: bool = False,
    continue_from_champion: bool = True,
    build_corpus: dict[str, Any] | None = None,
    train_tokenizer: dict[str, Any] | None = None,
    tokenize: dict[str, Any] | None = None,
    pretrain: dict[str, Any] | None = None,
    finetune: list[dict[str, Any]] | None = None,
    evaluate: dict[str, Any] | None = None,
    data_root: str | None = None,
) -> dict[str, Any]:
    """One retraining cycle over the dumps that arrived in ``dumps_dir`` since the last one.

    ``metric`` decides promotion: a perplexity metric of the pretrained model on the new validation split
    (``bits_per_byte`` by default: comparable across tokenizers) or, with ``metric_task``, that task's metric (e.g.
    ``metric="accuracy", metric_task="fortunes"``, a task of ``evaluate["tasks"]``). Lower is better for loss,
    perplexity and bits; higher for the rest. The other dicts are the pipeline's stage parameters, under the
    pipeline's keys (``build_corpus``, ``train_tokenizer``, ``tokenize``, ``pretrain``, ``finetune``, ``evaluate``).
    ``continue_from_champion=False`` pretrains the challenger from scratch (e.g. after changing the model).
    Returns the registry entry of this cycle's decision.
    """
    logger = get_run_logger()
    root = DataRoot.from_env(data_root)
    reg = Registry.load(root, registry)
    arrived = new_dumps(root, dumps_dir, dump_pattern, reg.dumps_seen)
    cycle = check_name(f"{registry}-{sum(1 for h in reg.history if h['decision'] != 'nothing-new') + 1:04d}",
                       "retrain cycle (registry name + '-NNNN'; use a shorter registry)")
    if not arrived:
        decision = {"cycle": None, "decision": "nothing-new", "reason": f"no new {dump_pattern} in {dumps_dir}"}
        reg.record(root, decision)
        logger.info("nothing to do: %s", decision["reason"])
        return decision
    champion = reg.champion
    logger.info("cycle %s: %d new dump(s) %s; champion %s", cycle, len(arrived), sorted(arrived),
                champion["cycle"] if champion else "none")

    reuse = champion["tokenizer"] if champion and not retrain_tokenizer else None
    base = dumps_dir.rstrip("/")
    continue_from = {"init_from_run": champion["pretrain"]} if champion and continue_from_champion else {}
    versions = pipeline(version=cycle, data_root=root.url, reuse_tokenizer=reuse,
                        build_corpus={**(build_corpus or {}), "dumps": [f"{base}/{name}" for name in arrived]},
                        train_tokenizer=train_tokenizer, tokenize=tokenize,
                        pretrain={**(pretrain or {}), **continue_from}, finetune=finetune, evaluate=None)
    challenger = {"cycle": cycle, "pretrain": versions["pretrain"], "tokenizer": versions["train_tokenizer"],
                  "tokens": versions["tokenize"], "corpus": versions["build_corpus"],
                  "finetune": {task["name"]: run for task, run in zip(finetune or [], versions["finetune"])}}
    systems = {"challenger": [challenger["pretrain"], *challenger["finetune"].values()]}
    if champion:
        systems["champion"] = [champion["pretrain"], *champion["finetune"].values()]
    # Same validation tokens for both when they share the tokenizer; otherwise each its own (bits per byte still
    # compares, per-token numbers do not).
    same_tokens = champion is None or champion["tokenizer"] == challenger["tokenizer"]
    eval_version = evaluate_flow(**{**(evaluate or {}), "runs": [r for runs in systems.values() for r in runs],
                                    "tokens": challenger["tokens"] if same_tokens else None,
                                    "version": cycle, "data_root": root.url})
    results = read_results(root, PurePosixPath(eval_version).name)
    values = {side: metric_of(results, runs, metric, metric_task) for side, runs in systems.items()}
    outcome, reason = decide_promotion(values["challenger"], values.get("champion"), metric)
    if not same_tokens:
        reason += " (tokenizers differ: each measured on its own validation split)"
    decision = {"cycle": cycle, "decision": outcome, "reason": reason, "metric": metric, "metric_task": metric_task,
                "challenger_value": values["challenger"], "champion_value": values.get("champion"),
                "champion_before": champion["cycle"] if champion else None, "eval": results["version"],
                "dumps": sorted(arrived)}
    new_champion = ({**challenger, "metric": metric, "metric_task": metric_task, "value": values["challenger"],
                     "eval": results["version"]} if outcome == "promoted" else None)
    reg.record(root, decision, champion=new_champion, dumps=arrived)
    create_markdown_artifact(f"# retrain {cycle}: {outcome}\n\n{reason}\n\n```\n{format_registry(reg)}\n```\n",
                             key=artifact_key("retrain", cycle, "decision"),
                             description=f"Promotion decision of retrain cycle {cycle}")
    logger.info("cycle %s: %s — %s", cycle, outcome, reason)
    return decision

