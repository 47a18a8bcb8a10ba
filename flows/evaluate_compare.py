"""The evaluate stage's tables: every metric of an eval version as rows, and the best run per task and metric.

Runs are only ranked against runs scored on the same thing: a task is identified by its name *and* the sha256 of its
file, perplexity by the tokens version and the number of tokens scored. Loss-like metrics rank lowest first, every
other metric highest first; counts, chance level and contamination are reported but never ranked.
"""
from __future__ import annotations

LOWER_IS_BETTER = {"loss", "perplexity", "token_perplexity", "bits_per_token", "bits_per_byte"}
NOT_RANKED = {"examples", "tokens", "bytes", "documents", "chance", "mean_words"}
CONTAMINATION = ("fraction_ngrams_found", "fraction_examples_with_overlap")


def _numeric(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metric_rows(results: dict) -> list[dict]:
    """One row per (run, task, metric) of a results.json, contamination fractions included."""
    rows = []
    for label, run in results["runs"].items():
        base = {"eval": results["version"], "run": label, "checkpoint": run["checkpoint"]}
        ppl = run["perplexity"]
        task = f"validation split of tokens {run['tokens']}"
        key = f"val:{run['tokens']}:{ppl['tokens']}"
        rows += [{**base, "task": task, "key": key, "metric": m, "value": v} for m, v in ppl.items() if _numeric(v)]
        for name, result in run["tasks"].items():
            key = f"{name}:{results['tasks'][name]['sha256']}"
            rows += [{**base, "task": name, "key": key, "metric": m, "value": v}
                     for m, v in result["metrics"].items() if _numeric(v)]
            overlap = result.get("contamination") or {}
            rows += [{**base, "task": name, "key": key, "metric": f"contamination_{f}", "value": overlap[f]}
                     for f in CONTAMINATION if f in overlap]
    return rows


def comparison_rows(all_results: list[dict]) -> list[dict]:
    """The best run per (task, metric) across eval versions, oldest first on ties."""
    best: dict[tuple[str, str], dict] = {}
    compared: dict[tuple[str, str], int] = {}
    for results in all_results:
        for row in metric_rows(results):
            metric = row["metric"]
            if metric in NOT_RANKED or metric.startswith("contamination_"):
                continue
            slot = (row["key"], metric)
            compared[slot] = compared.get(slot, 0) + 1
            current = best.get(slot)
            better = current is None or (row["value"] < current["value"] if metric in LOWER_IS_BETTER
                                         else row["value"] > current["value"])
            if better:
                best[slot] = row
    return [{"task": row["task"], "metric": metric, "best": f"{row['run']} ({row['checkpoint']})",
             "eval": row["eval"], "value": row["value"], "compared": compared[(key, metric)]}
            for (key, metric), row in best.items()]


def comparison_markdown(rows: list[dict]) -> str:
    lines = ["# Best run per task and metric", "",
             "Over this and every earlier eval version of the data root; lower is better for "
             f"{', '.join(sorted(LOWER_IS_BETTER))}, higher for the rest.", "",
             "| task | metric | best run (checkpoint) | eval | value | evaluations compared |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['task']} | {r['metric']} | {r['best']} | {r['eval']} | {r['value']:.4f} | {r['compared']} |"
              for r in rows]
    return "\n".join(lines) + "\n"
