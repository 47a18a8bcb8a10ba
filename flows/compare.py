"""compare: does pretraining help this task? A grid of fine-tuning runs (init × λ × lr × seed) → ``compare/<v>/``.

Each cell of the grid is a ``finetune`` child flow run (its own ``runs/<v>`` with lineage and gates). The task's
main metric (the first of ``gptcore.finetune.metric_names`` after ``n``) is read back from each child's manifest;
per (init, λ, lr) the report gives the mean and standard error (sample std / √n) over seeds, and per (λ, lr) the
paired difference pretrained − random over the same seeds, with "pretrained beats random by k SE".
"""
from __future__ import annotations

import json
import math
import statistics

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from data_contracts.compare import validate_comparison
from flows.charts import bar_chart_svg
from flows.finetune import finetune, newest_pretrain_run
from flows.lineage import upstream_version, write_manifest
from flows.stage import artifact_key, finish_version, start_version
from flows.store import DataRoot
from gptcore.finetune import metric_names
from gptcore.tasks import TaskSpec

STAGE = "compare"  # its own folder: eval/ holds evaluate's results.json, which evaluate compares across versions
PAPER_LR = 6.25e-5  # GPT-1's fine-tuning lr, for its 768-wide model
PAPER_WIDTH = 768


def width_scaled_lr(n_embd: int, base: float = PAPER_LR, cap: float = 1e-3) -> float:
    """GPT-1's lr scaled up for a narrower model (lr ∝ 1/width), capped so tiny models stay stable."""
    return min(cap, base * PAPER_WIDTH / n_embd)


def mean_and_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error (sample std / √n; 0 with a single value)."""
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return statistics.mean(values), se


def summarise(scores: dict[tuple[str, float, float, int], float]) -> dict:
    """Per (init, λ, lr) mean/SE over seeds; per (λ, lr) paired pretrained − random over shared seeds."""
    cells: dict[tuple[str, float, float], dict[int, float]] = {}
    for (init, lam, lr, seed), value in scores.items():
        cells.setdefault((init, lam, lr), {})[seed] = value
    per_cell = []
    for (init, lam, lr), by_seed in sorted(cells.items()):
        mean, se = mean_and_se(list(by_seed.values()))
        per_cell.append({"init": init, "aux_lm_weight": lam, "lr": lr, "n": len(by_seed), "mean": mean, "se": se})
    paired = []
    for (lam, lr) in sorted({(lam, lr) for (_, lam, lr) in cells}):
        pre, rnd = cells.get(("pretrained", lam, lr), {}), cells.get(("random", lam, lr), {})
        seeds = sorted(set(pre) & set(rnd))
        if not seeds:
            continue
        mean, se = mean_and_se([pre[s] - rnd[s] for s in seeds])
        paired.append({"aux_lm_weight": lam, "lr": lr, "n": len(seeds), "mean_diff": mean, "se": se,
                       "k_se": (mean / se) if se > 0 else None})
    return {"cells": per_cell, "paired": paired}


def markdown_report(metric: str, summary: dict) -> str:
    lines = [f"## Pretrained vs random init: test {metric}", "", "| init | λ | lr | n | mean | SE |", "|---|---|---|---|---|---|"]
    lines += [f"| {c['init']} | {c['aux_lm_weight']} | {c['lr']:.3g} | {c['n']} | {c['mean']:.4f} | {c['se']:.4f} |"
              for c in summary["cells"]]
    lines += ["", "| λ | lr | n | pretrained − random | SE | verdict |", "|---|---|---|---|---|---|"]
    for p in summary["paired"]:
        verdict = f"pretrained beats random by {p['k_se']:.1f} SE" if p["k_se"] is not None else "SE is 0 (one seed?)"
        lines.append(f"| {p['aux_lm_weight']} | {p['lr']:.3g} | {p['n']} | {p['mean_diff']:+.4f} | {p['se']:.4f} | {verdict} |")
    return "\n".join(lines) + "\n"


def _resolve_lrs(lrs: list[float] | str, n_embd: int) -> list[float]:
    if lrs == "paper":
        return [PAPER_LR]
    if lrs == "scaled":
        return [width_scaled_lr(n_embd)]
    if isinstance(lrs, str):
        raise ValueError(f"compare lrs={lrs!r}: pass 'scaled', 'paper' or a list of learning rates")
    return [float(lr) for lr in lrs]


@flow(name="compare", log_prints=True)
def compare(
    task: str,
    train: str,
    test: str,
    pretrained: str | None = None,
    reader: str = "auto",
    columns: dict[str, str] | None = None,
    labels: list[str] | None = None,
    inits: list[str] = ["pretrained", "random"],  # noqa: B006 (read only; JSON defaults for deployments)
    aux_lm_weights: list[float] = [0.5],  # noqa: B006
    lrs: list[float] | str = "scaled",
    seeds: list[int] = [0, 1, 2],  # noqa: B006
    finetune_config: dict | None = None,
    version: str | None = None,
    data_root: str | None = None,
) -> str:
    """Fine-tune a pretrain run and its random-init twin over a grid; report mean ± SE and paired differences.

    ``lrs``: "scaled" (GPT-1's 6.25e-5 × 768 / n_embd, capped at 1e-3), "paper" (6.25e-5), or a list.
    ``finetune_config``: other ``FinetuneConfig`` fields shared by every child run (epochs, batch_size, ...).
    """
    if not (inits and aux_lm_weights and lrs and seeds):
        raise ValueError(f"compare: the grid is empty (inits={inits}, aux_lm_weights={aux_lm_weights}, lrs={lrs}, "
                         f"seeds={seeds}); give at least one value of each")
    root = DataRoot.from_env(data_root)
    pretrained = pretrained or newest_pretrain_run(root)
    pretrained_up = upstream_version(root, "runs", pretrained)
    n_embd = root.read_manifest("runs", pretrained)["parameters"]["model"]["n_embd"]
    grid_lrs = _resolve_lrs(lrs, n_embd)
    base = dict(finetune_config or {})
    parameters = json.loads(json.dumps({"task": task, "train": train, "test": test, "pretrained": pretrained,
                                        "inits": list(inits), "aux_lm_weights": list(aux_lm_weights),
                                        "lrs": grid_lrs, "seeds": list(seeds), "finetune_config": base}))
    started = start_version(root, STAGE, version, parameters)
    if started.published:
        return started.published
    grid = [(init, float(lam), lr, int(seed)) for init in inits for lam in aux_lm_weights for lr in grid_lrs
            for seed in seeds]
    children, scores, metric = [], {}, None
    for index, (init, lam, lr, seed) in enumerate(grid):
        # Named after the compare version and the cell, so a rerun after a kill reuses the runs already published.
        child = f"{started.name}-cell{index:03d}"
        config = {**base, "init": init, "aux_lm_weight": lam, "lr": lr, "seed": seed}
        finetune(task=task, train=train, test=test, pretrained=pretrained, reader=reader, columns=columns,
                 labels=labels, finetune=config, version=child, data_root=root.url)
        manifest = root.read_manifest("runs", child)
        metric = metric_names(TaskSpec.from_dict(manifest["parameters"]["spec"]))[1]
        scores[(init, lam, lr, seed)] = manifest["counts"][f"test_{metric}"]
        children.append({"init": init, "aux_lm_weight": lam, "lr": lr, "seed": seed, "run": child,
                         "value": scores[(init, lam, lr, seed)]})
    summary = summarise(scores)
    started.out.mkdir(parents=True, exist_ok=True)
    report = markdown_report(metric, summary)
    results = {"metric": metric, "runs": children, **summary}
    (started.out / "results.json").write_text(json.dumps(results, indent=2))
    (started.out / "report.md").write_text(report)
    bars = [(f"{c['init'][:3]} λ{c['aux_lm_weight']:g} lr{c['lr']:.2g}", c["mean"]) for c in summary["cells"]]
    (started.out / "compare.svg").write_text(bar_chart_svg(bars, title=f"test {metric} (mean ± SE over seeds)",
                                                           x_label="cell", y_label=metric,
                                                           errors=[c["se"] for c in summary["cells"]]))
    create_markdown_artifact(report, key=artifact_key(STAGE, started.name, "compare"),
                             description="pretrained vs random fine-tuning")
    upstream = [pretrained_up, *(upstream_version(root, "runs", c["run"]) for c in children)]
    manifest = write_manifest(started.out, STAGE, started.name, parameters, upstream,
                              {"child_runs": len(children), "cells": len(summary["cells"])})
    return finish_version(root, started, manifest, validate_comparison(results, grid), summary["paired"],
                          asset_deps=[root.asset_key("runs", pretrained)],
                          description=f"{task}: pretrained vs random over {len(children)} fine-tuning runs")
