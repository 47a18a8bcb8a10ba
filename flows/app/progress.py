"""Follow a flow run from the terminal: its log lines and those of every run below it, printed as they arrive.

``gptforge demo`` triggers the pipeline through the server and would otherwise be silent for minutes; this polls
the server's API (the same logs the UI shows) and prints each stage's lines under the stage's flow name, plus a
line when a stage starts and when it ends.
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import timedelta
from uuid import UUID

# Prefect's own per-task bookkeeping: thousands of lines on a large build, and the UI shows them anyway.
LATE_LOGS = timedelta(seconds=30)
LOG_PAGE = 200  # the API's largest page
_ENGINE_CHATTER = ("Finished in state", "Created task run", "Executing '", "Submitting task", "Beginning ")


class RunFollower:
    """Prints what happens below one flow run; ``poll()`` once per interval, until ``done``."""

    def __init__(self, client, flow_run_id: UUID, out: Callable[[str], None] = print) -> None:
        self.client, self.root_id, self.out = client, flow_run_id, out
        self.labels: dict[UUID, str] = {}  # flow run id → the flow's name, e.g. "build-corpus"
        self.states: dict[UUID, str] = {}
        self.flow_names: dict[UUID, str] = {}
        self.seen_logs: set[UUID] = set()
        self.after = None  # timestamp of the last log printed
        self.done = False

    def poll(self) -> None:
        from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterParentFlowRunId, LogFilter,
                                                    LogFilterFlowRunId, LogFilterLevel, LogFilterTimestamp)
        from prefect.client.schemas.sorting import LogSort

        root = self.client.read_flow_run(self.root_id)
        runs, frontier = [root], [root.id]
        while frontier:  # the whole tree: a stage may have child runs of its own (compare's cells)
            children = self.client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=frontier)))
            children = [c for c in children if c.id not in {r.id for r in runs}]
            runs += children
            frontier = [c.id for c in children]
        for run in runs:
            self._label(run)
        # Logs reach the server in batches, a run's later than another's: look back LATE_LOGS behind the newest
        # line printed, and skip what was printed already.
        since = self.after - LATE_LOGS if self.after else None
        log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[r.id for r in runs]), level=LogFilterLevel(ge_=20),
                               timestamp=LogFilterTimestamp(after_=since) if since else None)
        for offset in itertools.count(0, LOG_PAGE):
            page = self.client.read_logs(log_filter=log_filter, sort=LogSort.TIMESTAMP_ASC, limit=LOG_PAGE,
                                         offset=offset)
            for log in page:
                if log.id in self.seen_logs:
                    continue
                self.seen_logs.add(log.id)
                self.after = max(self.after or log.timestamp, log.timestamp)
                if not log.message.startswith(_ENGINE_CHATTER):
                    self.out(f"  [{self.labels.get(log.flow_run_id, '?')}] {log.message}")
            if len(page) < LOG_PAGE:
                break
        # After the logs: a stage's last lines usually arrive with its end, not after it.
        for run in sorted(runs, key=lambda r: r.created or 0):
            self._state_line(run, run.id == self.root_id)
        self.done = root.state is not None and root.state.is_final()

    def _label(self, run) -> None:
        if run.id not in self.labels:
            if run.flow_id not in self.flow_names:
                self.flow_names[run.flow_id] = self.client.read_flow(run.flow_id).name
            self.labels[run.id] = self.flow_names[run.flow_id]

    def _state_line(self, run, is_root: bool) -> None:
        state = run.state.type.value.lower() if run.state else "scheduled"
        if is_root or self.states.get(run.id) == state:
            self.states[run.id] = state
            return
        if state in ("running", "completed", "failed", "crashed", "cancelled"):
            took = f" in {run.total_run_time.total_seconds():.0f} s" if state != "running" and run.total_run_time else ""
            self.out(f"{self.labels[run.id]} ({run.name}): {state}{took}")
        self.states[run.id] = state


def follow_run(flow_run_id: UUID, poll_s: float = 2.0, out: Callable[[str], None] = print):
    """Print the run's progress until it ends; returns the finished flow run."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        follower = RunFollower(client, flow_run_id, out)
        while True:
            follower.poll()
            if follower.done:
                follower.poll()  # the last lines, written just before the final state
                return client.read_flow_run(flow_run_id)
            time.sleep(poll_s)
