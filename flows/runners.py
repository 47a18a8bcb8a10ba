"""Where a stage's shard-level tasks run: in the flow's own process (``local``) or on a Dask cluster (``dask``).

A stage flow takes ``task_runner`` and ``dask_address`` parameters and runs its shard tasks through
``shard_runner(...)``; the flow itself, its gate and its publish step stay in the flow-run process. The choice is a
parameter, not a decorator argument, because a deployment's parameters are only known once its flow run has started
(a flow's own task runner is fixed by then), so the shard tasks are submitted to a runner the flow opens itself:

    with shard_runner(task_runner, dask_address, work, workers) as runner:
        stats = run_tasks(runner, encode_shard, [{"shard": s, "tokenizer_json": path} for s in shards])

``local`` runs the tasks one after another in the flow's process (each may use a process pool over the local
cores, as before). ``dask`` submits every task to prefect-dask's ``DaskTaskRunner``: to the scheduler at
``dask_address`` (``tcp://host:8786``), or to a temporary ``distributed.LocalCluster`` of ``workers`` single-threaded
worker processes when no address is given. Results are returned in submission order, so outputs never depend on
which worker finished first.

Dask workers read and write the version's work folder directly. On one machine that is always possible; on a
cluster the work folder must be on storage every worker mounts at the same path (a shared filesystem for the data
root, or ``GPTFORGE_CACHE`` on one for an object-store root). ``shard_runner`` checks this before any work is
submitted: every worker must read back a probe file the flow has just written, or the run stops and says what to do.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import Task
from prefect.task_runners import TaskRunner

from flows.store import StoreError

TASK_RUNNERS = ("local", "dask")
_PROBE = ".dask-probe"


def check_runner(task_runner: str, dask_address: str | None) -> None:
    """Refuse an unknown runner name, or an address given without ``task_runner="dask"``."""
    if task_runner not in TASK_RUNNERS:
        raise ValueError(f"task_runner must be one of {TASK_RUNNERS}, got {task_runner!r}")
    if dask_address and task_runner != "dask":
        raise ValueError(f"dask_address={dask_address!r} is only used with task_runner='dask'; pass both, or neither")


@contextmanager
def shard_runner(task_runner: str, dask_address: str | None, work: Path, workers: int) -> Iterator[TaskRunner | None]:
    """The runner for a stage's shard tasks (None: run them inline), started and checked; stopped on exit."""
    check_runner(task_runner, dask_address)
    if task_runner == "local":
        yield None
        return
    from prefect_dask import DaskTaskRunner

    if dask_address:
        runner = DaskTaskRunner(address=dask_address)
    else:
        # One thread per worker process: the shard tasks are CPU-bound Python, and a process per core is what gives
        # them every core (threads would share one GIL).
        runner = DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                                "dashboard_address": None})
    with runner:
        _check_workers_see(runner, work, dask_address)
        yield runner


# Prefect's run page draws every task run of a flow run as a node of its graph and refuses a graph of more than
# PREFECT_SERVER_FLOW_RUN_GRAPH_MAX_NODES (10,000 by default). At WebText scale build-corpus has ~45k shards per
# step, so a step with more calls than this runs them in batches: a stage's few steps stay under that limit.
MAX_TASK_RUNS = 2000


def batch_size(n_calls: int, max_task_runs: int = MAX_TASK_RUNS) -> int:
    """Calls per task run when ``run_tasks`` runs ``n_calls`` calls (1: unbatched)."""
    return max(1, -(-n_calls // max_task_runs))


def task_runs_for(n_calls: int, max_task_runs: int = MAX_TASK_RUNS) -> int:
    """How many task runs ``run_tasks`` creates for ``n_calls`` calls."""
    return -(-n_calls // batch_size(n_calls, max_task_runs))


def run_tasks(runner: TaskRunner | None, task: Task, calls: list[dict[str, Any]],
              max_task_runs: int = MAX_TASK_RUNS) -> list[Any]:
    """Run ``task`` once per keyword-argument dict; results in the order of ``calls``, the first failure raised.

    More than ``max_task_runs`` calls become at most that many task runs of ``<task name>-batch``, each running a
    slice of consecutive calls in order (with the task's retries): the results are the same, call for call.
    """
    if len(calls) > max_task_runs:
        size = batch_size(len(calls), max_task_runs)
        batches = [{"calls": calls[start:start + size]} for start in range(0, len(calls), size)]
        return [result for batch in run_tasks(runner, _batch_task(task), batches, max_task_runs) for result in batch]
    if runner is None:
        return [task(**call) for call in calls]
    futures = [runner.submit(task, parameters=call) for call in calls]
    return [future.result() for future in futures]


def _batch_task(task: Task) -> Task:
    """A task that runs ``task``'s function once per call of a slice, in order."""
    def run_batch(calls: list[dict[str, Any]]) -> list[Any]:
        return [task.fn(**call) for call in calls]

    return Task(run_batch, name=f"{task.name}-batch", retries=task.retries,
                retry_delay_seconds=task.retry_delay_seconds)


def _read_probe(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _check_workers_see(runner: TaskRunner, work: Path, dask_address: str | None) -> None:
    """Every Dask worker must read the probe this process writes into the work folder (same path, same content)."""
    work.mkdir(parents=True, exist_ok=True)
    probe, token = work / _PROBE, secrets.token_hex(16)
    probe.write_text(token)
    try:
        seen = runner.client.run(_read_probe, str(probe))
    finally:
        probe.unlink(missing_ok=True)
    blind = sorted(worker for worker, content in seen.items() if content != token)
    if blind or not seen:
        raise StoreError(
            f"Dask workers {blind or '(none connected)'} at {dask_address or 'the local cluster'} cannot read the work "
            f"folder {work}: every worker must see it at the same path. Put the data root (GPTFORGE_DATA) on a "
            "filesystem all workers mount, or with an object-store data root set GPTFORGE_CACHE to such a folder, "
            "or run with task_runner='local'")
