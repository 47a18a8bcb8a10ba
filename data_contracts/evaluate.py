"""The evaluate gate: an eval version is only published when every run has every metric its tasks promise, every
metric is a finite number, every count it was computed over is positive, and every contamination fraction is a
fraction. A NaN accuracy or an empty evaluation set would otherwise rank a run in the comparison on nothing.
"""
from __future__ import annotations

import math

from data_contracts.gate import Check, GateReport, run_gate, expectations as gxe, pandas as pd

# What each kind of result must report (a finetuned task reports what its task type measures: at least one metric).
EXPECTED_METRICS: dict[str, tuple[str, ...]] = {
    "perplexity": ("loss", "perplexity", "bits_per_token", "bits_per_byte"),
    "multiple_choice": ("acc", "acc_norm", "acc_bytes", "acc_per_token", "chance"),
    "lambada": ("acc", "perplexity", "token_perplexity"),
    "completion": ("rouge1_f1", "rougeL_f1"),
    "finetuned": (),
}
COUNT_FIELDS = ("examples", "tokens", "bytes")  # what a metric was computed over; each present one must be > 0
CONTAMINATION_FRACTIONS = ("fraction_ngrams_found", "fraction_examples_with_overlap")


def validate_results(results: dict) -> GateReport:
    """Check ``results.json`` content: ``{"runs": {run: {"perplexity": {...}, "tasks": {name: {...}}}}}``."""
    presence, values, counts, fractions = [], [], [], []
    for run, result in results["runs"].items():
        blocks = [("perplexity", "perplexity", result.get("perplexity"))]
        blocks += [(name, task.get("type"), task) for name, task in result.get("tasks", {}).items()]
        for name, kind, block in blocks:
            block = block or {}
            metrics = block.get("metrics", block)
            expected = EXPECTED_METRICS.get(kind, ())
            presence += [{"run": run, "task": name, "metric": m, "present": m in metrics} for m in expected]
            presence.append({"run": run, "task": name, "metric": "(any)", "present": bool(_numbers(metrics))})
            values += [{"run": run, "task": name, "metric": m, "finite": math.isfinite(v)}
                       for m, v in _numbers(metrics).items() if m not in COUNT_FIELDS]
            counts += [{"run": run, "task": name, "count": c, "value": metrics[c]}
                       for c in COUNT_FIELDS if c in metrics]
            overlap = block.get("contamination") if isinstance(block, dict) else None
            if overlap:
                fractions += [{"run": run, "task": name, "fraction": f, "value": overlap[f]}
                              for f in CONTAMINATION_FRACTIONS]
    checks = [
        Check("metrics_present", pd.DataFrame(presence, columns=["run", "task", "metric", "present"]),
              [gxe.ExpectTableRowCountToBeBetween(min_value=1),
               gxe.ExpectColumnValuesToBeInSet(column="present", value_set=[True])]),
        Check("metrics_finite", pd.DataFrame(values, columns=["run", "task", "metric", "finite"]),
              [gxe.ExpectTableRowCountToBeBetween(min_value=1),
               gxe.ExpectColumnValuesToBeInSet(column="finite", value_set=[True])]),
        Check("counts", pd.DataFrame(counts, columns=["run", "task", "count", "value"]),
              [gxe.ExpectColumnValuesToBeBetween(column="value", min_value=1)]),
    ]
    if fractions:
        checks.append(Check("contamination", pd.DataFrame(fractions), [
            gxe.ExpectColumnValuesToNotBeNull(column="value"),
            gxe.ExpectColumnValuesToBeBetween(column="value", min_value=0.0, max_value=1.0)]))
    return run_gate("evaluate", checks)


def _numbers(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
