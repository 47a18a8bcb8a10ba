"""The compare gate: a comparison is only published when every cell of its grid ran exactly once with a finite score,
every mean and standard error is a number a reader can trust (SE ≥ 0, n ≥ 1), and every paired difference compares
as many seeds as both inits share. A cell that silently did not run would otherwise turn "pretrained helps" into a
comparison of different seed sets.
"""
from __future__ import annotations

import math

from data_contracts.gate import Check, GateReport, run_gate, expectations as gxe, pandas as pd


def validate_comparison(results: dict, grid: list[tuple[str, float, float, int]]) -> GateReport:
    """Check ``results.json`` content (``runs``, ``cells``, ``paired``) against the grid the flow was asked for."""
    ran = [(r["init"], float(r["aux_lm_weight"]), float(r["lr"]), int(r["seed"])) for r in results["runs"]]
    wanted = [(init, float(lam), float(lr), int(seed)) for init, lam, lr, seed in grid]
    coverage = [{"cell": str(cell), "runs": ran.count(cell)} for cell in wanted]
    coverage += [{"cell": str(cell), "runs": 0} for cell in set(ran) - set(wanted)]  # a run nobody asked for
    runs = pd.DataFrame([{"run": r["run"], "finite": _finite(r["value"])} for r in results["runs"]],
                        columns=["run", "finite"])
    cells = pd.DataFrame([{"n": c["n"], "se": c["se"], "finite": _finite(c["mean"]) and _finite(c["se"])}
                          for c in results["cells"]], columns=["n", "se", "finite"])
    seeds: dict[tuple, set] = {}
    for init, lam, lr, seed in ran:
        seeds.setdefault((init, lam, lr), set()).add(seed)
    paired = pd.DataFrame([{"n": p["n"], "shared_seeds": len(seeds.get(("pretrained", float(p["aux_lm_weight"]),
                                                                         float(p["lr"])), set())
                                                             & seeds.get(("random", float(p["aux_lm_weight"]),
                                                                          float(p["lr"])), set()))}
                           for p in results["paired"]], columns=["n", "shared_seeds"])
    checks = [
        Check("every_cell_ran_once", pd.DataFrame(coverage, columns=["cell", "runs"]),
              [gxe.ExpectTableRowCountToBeBetween(min_value=1),
               gxe.ExpectColumnValuesToBeBetween(column="runs", min_value=1, max_value=1)]),
        Check("scores_finite", runs, [gxe.ExpectColumnValuesToBeInSet(column="finite", value_set=[True]),
                                      gxe.ExpectColumnValuesToBeUnique(column="run")]),
        Check("cells", cells, [gxe.ExpectTableRowCountToBeBetween(min_value=1),
                               gxe.ExpectColumnValuesToBeInSet(column="finite", value_set=[True]),
                               gxe.ExpectColumnValuesToBeBetween(column="n", min_value=1),
                               gxe.ExpectColumnValuesToBeBetween(column="se", min_value=0.0)]),
        Check("paired_over_shared_seeds", paired,
              [gxe.ExpectColumnPairValuesToBeEqual(column_A="n", column_B="shared_seeds")]),
    ]
    return run_gate("compare", checks)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
