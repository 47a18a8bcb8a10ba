"""The terminal view of a flow run (flows/app/progress.py): its log lines and its child runs', read from the server."""
from __future__ import annotations

from prefect import flow, task
from prefect.logging import get_run_logger
from prefect.logging.handlers import APILogWorker

from flows.app.progress import follow_run


@task(name="progress-step")
def step(n: int) -> int:
    get_run_logger().info("step %d of the child", n)
    return n


@flow(name="progress-grandchild")
def grandchild() -> None:
    get_run_logger().info("deep down")


@flow(name="progress-child")
def child(n: int) -> int:
    for i in range(n):
        step(i)
    grandchild()
    return n


@flow(name="progress-parent")
def parent() -> None:
    get_run_logger().info("parent starts")
    child(2)
    child(1)


def test_follow_run_prints_every_descendant_runs_lines_under_its_flow_and_one_line_per_finished_run(prefect_harness):
    run = parent(return_state=True).state_details.flow_run_id
    APILogWorker.drain_all()  # what the flow logged is on the server before it is read back
    lines: list[str] = []
    finished = follow_run(run, poll_s=0.0, out=lines.append)
    assert finished.state.is_completed()
    assert "  [progress-parent] parent starts" in lines
    assert lines.count("  [progress-child] step 0 of the child") == 2 and "  [progress-child] step 1 of the child" in lines
    assert lines.count("  [progress-grandchild] deep down") == 2
    done = [line for line in lines if not line.startswith("  ")]
    assert len(done) == 4 and all(": completed" in line for line in done), done  # two children, two grandchildren
    assert not any("Finished in state" in line for line in lines), "Prefect's own bookkeeping is left out"
