"""Every deployment `gptforge up` serves: ``<flow>/local`` for each flow, ``pipeline/demo`` (the embedded demo's
parameters) and ``retrain/weekly`` (a cron schedule, one run at a time).

Run as ``python -m flows.app.deployments`` (the serve process the local stack starts). Work-pool deployments for
shared servers live in ``deploy/prefect.yaml``.
"""
from __future__ import annotations

import os

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.flows import Flow

from flows.app.demo_parameters import DEMO_PIPELINE
from flows.app.stages import stage_flows
from flows.pipeline import pipeline
from flows.retrain import retrain
from flows.store import DataRoot

# Monday 03:00 in the server's time zone; override with GPTFORGE_RETRAIN_CRON.
RETRAIN_CRON = "0 3 * * 1"


def _summary(f: Flow) -> str:
    return (f.description or "").strip().split("\n")[0]


def local_deployments() -> list:
    deployments = [f.to_deployment(name="local", tags=["gptforge", "local"], description=_summary(f))
                   for f in stage_flows() if f is not retrain]
    deployments.append(pipeline.to_deployment(
        name="demo", tags=["gptforge", "demo"], parameters=DEMO_PIPELINE,
        description="The embedded demo: a loopback web of pydoc pages through every stage (`gptforge demo`)."))
    # One retraining at a time: a run that comes due while one is running waits for it (ENQUEUE), so no dump is
    # consumed twice and the champion is never decided by two runs at once.
    dumps = os.environ.get("GPTFORGE_DUMPS") or f"{DataRoot.from_env().url}/incoming"
    deployments.append(retrain.to_deployment(
        name="weekly", tags=["gptforge", "retrain"], cron=os.environ.get("GPTFORGE_RETRAIN_CRON", RETRAIN_CRON),
        parameters={"dumps_dir": dumps, "registry": "weekly"},
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
        description=f"Weekly retraining over new dumps in {dumps}; promotes only a better model."))
    return deployments


def served_names() -> list[str]:
    """What ``gptforge up`` waits for."""
    return [f"{f.name}/local" for f in stage_flows() if f.name != "retrain"] + ["pipeline/demo", "retrain/weekly"]


def main() -> None:
    serve(*local_deployments(), print_starting_message=True)


if __name__ == "__main__":
    main()
