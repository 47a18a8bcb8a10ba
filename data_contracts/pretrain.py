"""The pretrain gate: a run is only published when its losses are finite, its validation loss beats the data's
unigram-entropy baseline (a model that learned nothing beyond token frequencies scores exactly that), and its final
checkpoint loads with ``weights_only=True`` and matches its checksum.
"""
from __future__ import annotations

import math

from data_contracts.gate import Check, GateReport, run_gate, expectations as gxe, pandas as pd


def validate_run(losses: list[float], val_loss: float | None, unigram_entropy: float, checkpoint_loads: bool) -> GateReport:
    per_step = pd.DataFrame({"loss_is_finite": [math.isfinite(x) for x in losses]})
    summary = pd.DataFrame([{"val_loss": val_loss if val_loss is not None else float("nan"),
                             "unigram_entropy": unigram_entropy, "checkpoint_loads": checkpoint_loads}])
    return run_gate("pretrain", [
        Check("steps", per_step, [gxe.ExpectTableRowCountToBeBetween(min_value=1),
                                  gxe.ExpectColumnValuesToBeInSet(column="loss_is_finite", value_set=[True])]),
        Check("run", summary, [
            gxe.ExpectColumnValuesToNotBeNull(column="val_loss"),
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="unigram_entropy", column_B="val_loss"),
            gxe.ExpectColumnValuesToBeInSet(column="checkpoint_loads", value_set=[True]),
        ]),
    ])
