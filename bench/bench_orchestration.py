"""Prefect's cost per shard task: what a stage pays the orchestrator for each of its shard tasks, against a real server.

A stage runs one Prefect task per shard (``flows.runners.run_tasks``), so at WebText scale (45M links, 1,000 links a
fetch shard) one build-corpus run creates ~135k task runs (fetch, extract and dedup keys per shard). This starts a
real Prefect server (SQLite, 127.0.0.1, a scratch PREFECT_HOME under bench/out), runs flows of N empty shard tasks
through the same ``run_tasks`` the stages use, locally and on a 2-worker Dask LocalCluster, and prints per
configuration: seconds per task run (the wall time of run_tasks inside the flow, cluster already up, over N), the server's
CPU seconds per task run, its peak RSS, and the orchestration overhead as a fraction of a shard's own work for
given seconds per link (``--seconds-per-link``: fetch + extract per link, e.g. from bench_scale.py) and shard sizes.

It also times what the UI's run page asks for first (the run, its graph, its task-run count) and counts the graph's
nodes: Prefect refuses a graph of more than 10,000 nodes, which is why ``run_tasks`` batches a step of more than
``MAX_TASK_RUNS`` calls (``--max-task-runs 1000000`` shows the page without the batching).

Run: .venv/bin/python bench/bench_orchestration.py [--tasks 200 1000] [--runners local dask] [--seconds-per-link 0.01]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
OUT = REPO_ROOT / "bench" / "out" / "orchestration"
PORT = 4297  # fixed: nothing else in the project uses it
STALL_S = 30.0


class ServerProbe:
    """Samples a process's CPU seconds and RSS (children included) in a thread."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _tree(self):
        return [self.process, *self.process.children(recursive=True)]

    def cpu_s(self) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self._tree())

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak_rss = max(self.peak_rss, sum(p.memory_info().rss for p in self._tree()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def start_server(home: Path) -> subprocess.Popen:
    import httpx

    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = os.environ | {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                               str(PORT), "--analytics-off"], env=env, stdout=open(home / "server.log", "wb"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{PORT}/api/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            raise SystemExit(f"the Prefect server exited; see {home / 'server.log'}")
        time.sleep(0.5)
    server.kill()
    raise SystemExit(f"the Prefect server did not answer on port {PORT} within 180 s; see {home / 'server.log'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[200, 1000], help="shard tasks per flow run")
    parser.add_argument("--runners", nargs="+", default=["local", "dask"], choices=["local", "dask"])
    parser.add_argument("--seconds-per-link", type=float, default=0.01,
                        help="a shard's own work per link (fetch + extract), for the overhead fraction")
    parser.add_argument("--shard-sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--max-task-runs", type=int, default=None,
                        help="run_tasks' batching threshold (default flows.runners.MAX_TASK_RUNS; a huge value: one "
                             "task run per shard)")
    args = parser.parse_args()

    home = OUT / "prefect"
    server = start_server(home)
    os.environ.update({"PREFECT_API_URL": f"http://127.0.0.1:{PORT}/api", "PREFECT_HOME": str(home)})
    try:
        rows = measure(args, ServerProbe(server.pid))
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    print(f"\n{'runner':<7} {'tasks':>6} {'task runs':>9} {'recorded after s':>16} {'s/task':>8} {'server CPU s/task':>18} "
          f"{'server peak RSS':>16} {'run page s':>10} {'graph nodes':>11}  "
          + "  ".join(f"overhead @{size} links/shard" for size in args.shard_sizes))
    for row in rows:
        fractions = "  ".join(f"{row['s_per_task'] / (size * args.seconds_per_link):>26.2%}" for size in args.shard_sizes)
        graph = row["graph_nodes"] if row["graph_nodes"] is not None else f"HTTP {row['graph_status']}"
        print(f"{row['runner']:<7} {row['tasks']:>6} {row['task_runs']:>9} {row['recorded_s']:>16.1f} "
              f"{row['s_per_task']:>8.4f} "
              f"{row['server_cpu_per_task']:>18.4f} {row['server_rss_mb']:>13.0f} MB {row['page_s']:>10.2f} "
              f"{graph!s:>11}  {fractions}")
    print(f"(a shard's own work taken as {args.seconds_per_link} s per link)")


def measure(args, probe: ServerProbe) -> list[dict]:
    from prefect import flow, task

    from flows.runners import MAX_TASK_RUNS, run_tasks, shard_runner, task_runs_for

    max_task_runs = args.max_task_runs or MAX_TASK_RUNS

    @task(name="bench-shard")
    def shard(work: str, shard: int) -> int:
        return shard

    @flow(name="bench-orchestration")
    def stage(runner_name: str, n: int) -> float:
        """The time the shard tasks take inside the flow (the cluster already started)."""
        with shard_runner(runner_name, None, OUT, 2) as runner:
            start = time.perf_counter()
            run_tasks(runner, shard, [{"work": str(OUT), "shard": s} for s in range(n)], max_task_runs=max_task_runs)
            return time.perf_counter() - start

    rows = []
    for runner_name in args.runners:
        stage(runner_name, 10)  # warm-up: imports, the flow's registration, the first cluster start
        for n in args.tasks:
            cpu_before = probe.cpu_s()
            probe.peak_rss = 0
            state = stage(runner_name, n, return_state=True)
            seconds = state.result()
            expected = task_runs_for(n, max_task_runs)
            page = run_page(state.state_details.flow_run_id, expected)  # first: the server's CPU includes catching up
            rows.append({"runner": runner_name, "tasks": n, "s_per_task": seconds / n,
                         "server_cpu_per_task": (probe.cpu_s() - cpu_before) / n,
                         "server_rss_mb": probe.peak_rss / 2**20, **page})
            print(f"{runner_name}: {n} tasks in {seconds:.1f} s", flush=True)
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all()  # the flows' last log lines reach the server before it stops
    probe.stop()
    return rows


def run_page(flow_run_id, expected: int) -> dict:
    """What the UI's flow-run page asks for first, timed: the run, its graph (a node per task run), the task-run count.

    Task runs reach the server as events, recorded a while later (minutes behind a flow of many thousand tasks):
    wait until all ``expected`` are there, or until the count has not grown for STALL_S seconds."""
    import httpx

    api = f"http://127.0.0.1:{PORT}/api"
    count_query = {"flow_runs": {"id": {"any_": [str(flow_run_id)]}}}
    with httpx.Client(timeout=300) as client:
        count, grew, waited = 0, time.monotonic(), time.monotonic()
        while count < expected and time.monotonic() - grew < STALL_S:
            time.sleep(1)
            now = client.post(f"{api}/task_runs/count", json=count_query).json()
            count, grew = now, (time.monotonic() if now > count else grew)
        start = time.perf_counter()
        client.get(f"{api}/flow_runs/{flow_run_id}").raise_for_status()
        graph = client.get(f"{api}/flow_runs/{flow_run_id}/graph-v2")
        client.post(f"{api}/task_runs/count", json=count_query).raise_for_status()
        seconds = time.perf_counter() - start
    nodes = len(graph.json()["nodes"]) if graph.status_code == 200 else None
    return {"task_runs": count, "recorded_s": grew - waited, "graph_nodes": nodes, "page_s": seconds,
            "graph_status": graph.status_code if graph.status_code != 200 else ""}


if __name__ == "__main__":
    main()
