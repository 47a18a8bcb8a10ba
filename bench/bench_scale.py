"""Benchmark: build-corpus end to end on a simulated web (bench/simweb.py) at three dump sizes 10x apart, with the
local runner and with a 2-worker Dask LocalCluster; does the cost per link stay flat, and are the origins treated
politely across processes?

Each run is the whole build-corpus flow (filter links, merge, fetch, extract, dedup, write + card + gate + publish)
in a Prefect test harness, on a Pushshift-style dump from bench_links.py's generator whose article links point at
thousands of loopback origins (127.1.x.y:8080) served by one simweb process. Per stage it prints seconds (from the
flow's Prefect task runs: first start to last end; "setup" is the flow before the first stage task, "write/gate"
the rest of the flow after dedup, "between" the waits between stages: Dask cluster start, task submission), items/s, and
the peak RSS of this process plus the processes it started for the run (process pools, Dask workers; sampled every
0.2 s, summed, so pages shared after a fork count once per process). Then the growth ratio (seconds per link at the
largest size / at the smallest; target <= 1.2) per stage, and the politeness figures the server recorded: the most
page requests in flight on one origin (the limit: FetchConfig.per_host_concurrency), the smallest gap between two
request starts on one origin (against the configured delay, and against Crawl-delay where robots.txt sets one), and
robots.txt fetches per origin (target: once per run). Results go to bench/out/scale.json.

    .venv/bin/python bench/bench_scale.py [--sizes 10000,100000,1000000] [--runners local,dask] [--origins 3000]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import fields
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import simweb  # noqa: E402

OUT = REPO / "bench" / "out"
WORK = OUT / "scale"


def stage_of(task_name: str) -> str | None:
    """The benchmark stage of a build-corpus task; None for bookkeeping tasks (start-version, publish-corpus)."""
    for prefix, stage in (("filter", "filter links"), ("merge", "merge"), ("extract", "extract"), ("dedup", "dedup")):
        if task_name.startswith(prefix):
            return stage
    return "fetch" if "fetch" in task_name else None


# ---------------------------------------------------------------------------------------------------------------------
# Measuring


class RssSampler:
    """Peak summed RSS of this process and the processes started after it began (not the web or Prefect servers)."""

    def __init__(self, interval_s: float = 0.2) -> None:
        import psutil

        self._me = psutil.Process()
        self._before = {p.pid for p in self._me.children(recursive=True)}
        self._interval, self.samples = interval_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        total = self._me.memory_info().rss
        for child in self._me.children(recursive=True):
            if child.pid not in self._before:
                try:
                    total += child.memory_info().rss
                except Exception:  # it ended between the listing and the reading
                    pass
        return total

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.samples.append((time.time(), self._rss()))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak_mib(self, start: float, end: float) -> float | None:
        inside = [rss for t, rss in self.samples if start <= t <= end]
        return max(inside) / 2**20 if inside else None


def task_runs(flow_run_id) -> list:
    """Every task run of the flow run, once the API has recorded them all as finished (events arrive shortly after)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    previous, deadline = None, time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while True:
            runs, offset = [], 0
            while True:
                page = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                             limit=200, offset=offset)
                runs += page
                offset += len(page)
                if len(page) < 200:
                    break
            done = all(r.end_time is not None for r in runs)
            if done and previous == len(runs) or time.monotonic() > deadline:
                return runs
            previous = len(runs) if done else None
            time.sleep(0.5)


def stage_windows(runs: list, started: float, ended: float) -> dict[str, tuple[float, float]]:
    """stage -> (first start, last end) in epoch seconds of its task runs; setup is the flow before the first,
    write/gate the flow after the last (writing the version folder, card, gate, publish)."""
    windows: dict[str, tuple[float, float]] = {}
    for run in runs:
        stage = stage_of(run.name.rsplit("-", 1)[0])  # a task run is named <task name>-<3 random characters>
        if stage is None:
            continue
        begin, end = run.start_time.timestamp(), run.end_time.timestamp()
        low, high = windows.get(stage, (begin, end))
        windows[stage] = (min(low, begin), max(high, end))
    first = min((w[0] for w in windows.values()), default=ended)
    last = max((w[1] for w in windows.values()), default=ended)
    in_order = dict(sorted(windows.items(), key=lambda kv: kv[1][0]))
    return {"setup": (started, first), **in_order, "write/gate": (last, ended)}


def stage_items(manifest: dict, out: Path) -> dict[str, int]:
    """What each stage took in: submissions read, submissions kept, links, pages fetched, documents, documents kept."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    counts = manifest["counts"]
    log = pq.read_table(out / "fetch_log.parquet", columns=["error"]) if (out / "fetch_log.parquet").exists() else None
    errors = {} if log is None else \
        {e["values"]: e["counts"] for e in pc.value_counts(log["error"].drop_null()).to_pylist()}
    dedup_rejects = sum(v for k, v in counts["rejects_by_reason"].items() if k.startswith("dedup:"))
    return {"filter links": counts["link_filter"]["records_read"], "merge": counts["link_filter"]["kept_submissions"],
            "fetch": counts["links"], "extract": log["error"].null_count if log is not None else 0,
            "dedup": counts["documents"] + dedup_rejects, "write/gate": counts["documents"]}, errors


def politeness(stats: dict, fetch: dict) -> dict:
    """The server's per-origin figures against the limits the flow was given."""
    from gptcore.corpus import FetchConfig

    config = FetchConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in fetch.items()})
    origins = stats["origins"]
    gaps = {a: s["min_gap_s"] for a, s in origins.items() if s["min_gap_s"] is not None}
    delayed = {a: g for a, g in gaps.items() if simweb.origin_profile(simweb.origin_number(a)).robots == "crawl_delay"}
    robots = [s["robots_hits"] for s in origins.values()]
    return {
        "origins": len(origins), "page_requests": sum(s["requests"] for s in origins.values()),
        "per_host_limit": config.per_host_concurrency,
        "max_in_flight": max((s["max_in_flight"] for s in origins.values()), default=0),
        "origins_over_limit": sum(s["max_in_flight"] > config.per_host_concurrency for s in origins.values()),
        "delay_s": getattr(config, "min_delay_s", None), "min_gap_s": min(gaps.values(), default=None),
        "min_gap_origin": min(gaps, key=gaps.get) if gaps else None,
        "origins_under_delay": sum(g < 0.95 * getattr(config, "min_delay_s", 0.0) for g in gaps.values()),
        "crawl_delay_s": simweb.CRAWL_DELAY_S, "crawl_delay_origins": len(delayed),
        "crawl_delay_min_gap_s": min(delayed.values(), default=None),
        "crawl_delay_origins_too_fast": sum(g < simweb.CRAWL_DELAY_S * 0.95 for g in delayed.values()),
        "server_loop_stalls": stats.get("loop_stalls"), "server_longest_stall_s": stats.get("longest_loop_stall_s"),
        "robots_hits_mean": statistics.fmean(robots) if robots else 0, "robots_hits_max": max(robots, default=0),
        "origins_robots_once": sum(h == 1 for h in robots), "origins_robots_more": sum(h > 1 for h in robots),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Running


def control(path: str) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, whatever the environment
    with opener.open(f"http://{simweb.CONTROL}:{simweb.PORT}{path}", timeout=30) as response:
        return json.loads(response.read())


def fetch_options() -> dict:
    """The flow's fetch parameter: loopback allowed; pacing and Crawl-delay where this FetchConfig has them."""
    from gptcore.corpus import FetchConfig

    names = {f.name for f in fields(FetchConfig)}
    options: dict = {"allow_hosts": ["127.0.0.0/8"]}
    if "min_delay_s" in names:
        options["min_delay_s"] = 0.02
    if "max_crawl_delay_s" in names:
        options["max_crawl_delay_s"] = 2 * simweb.CRAWL_DELAY_S
    return options


def run_once(dump: Path, size: int, runner: str, fetch: dict, shard_size: int, data_root: Path) -> dict:
    from flows.build_corpus import build_corpus

    control("/_reset")
    with RssSampler() as rss:
        started = time.time()
        state = build_corpus(dumps=[str(dump)], version=f"n{size}-{runner}", data_root=str(data_root), fetch=fetch,
                             shard_size=shard_size, dedup_against_earlier=False, workers=2, task_runner=runner,
                             return_state=True)
        ended = time.time()
    folder = Path(state.result().removeprefix("file://"))
    stats = control("/_stats")
    manifest = json.loads((folder / "manifest.json").read_text())
    items, fetch_errors = stage_items(manifest, folder)
    windows = stage_windows(task_runs(state.state_details.flow_run_id), started, ended)
    links = items["fetch"]
    stages, previous_end = {}, started
    for stage, (begin, end) in windows.items():
        n = items.get(stage)
        seconds = max(end - begin, 0.0)
        wait, previous_end = max(begin - previous_end, 0.0), max(previous_end, end)
        stages[stage] = {"seconds": round(seconds, 3), "wait_before_s": round(wait, 3), "items": n,
                         "items_per_s": round(n / seconds, 1) if n and seconds else None,
                         "seconds_per_link": seconds / links if links else None,
                         "peak_rss_mib": rss.peak_mib(begin, end)}
    # The time between stages: Dask cluster start and stop, Prefect's bookkeeping, the flow's own code.
    between = sum(s["wait_before_s"] for s in stages.values())
    stages["between"] = {"seconds": round(between, 3), "wait_before_s": 0.0, "items": None, "items_per_s": None,
                         "seconds_per_link": between / links if links else None, "peak_rss_mib": None}
    return {"size": size, "runner": runner, "seconds": round(ended - started, 3), "links": links,
            "seconds_per_link": (ended - started) / links if links else None,
            "peak_rss_mib": rss.peak_mib(started, ended), "stages": stages, "fetch_errors": fetch_errors,
            "counts": {k: manifest["counts"][k] for k in ("documents", "rejects", "rejects_by_reason", "accounting")},
            "politeness": politeness(stats, fetch), "version": str(folder)}


def print_run(result: dict) -> None:
    p = result["politeness"]
    print(f"\n== {result['size']:,} submissions, {result['runner']}: {result['links']:,} links, "
          f"{result['counts']['documents']:,} documents, {result['seconds']:.1f} s "
          f"({1000 * result['seconds_per_link']:.1f} ms/link), peak RSS {result['peak_rss_mib']:.0f} MiB")
    print(f"{'stage':<14}{'seconds':>9}{'items':>10}{'items/s':>10}{'peak RSS MiB':>14}{'wait before s':>15}")
    for stage, s in result["stages"].items():
        rss = f"{s['peak_rss_mib']:.0f}" if s["peak_rss_mib"] else "-"
        print(f"{stage:<14}{s['seconds']:>9.2f}{s['items'] if s['items'] is not None else '-':>10}"
              f"{s['items_per_s'] if s['items_per_s'] else '-':>10}{rss:>14}{s['wait_before_s'] or '':>15}")
    gap = lambda s: f"{1000 * s:.1f} ms" if s is not None else "-"  # noqa: E731
    print(f"politeness over {p['origins']:,} origins ({p['page_requests']:,} page requests): max in flight per origin "
          f"{p['max_in_flight']} (limit {p['per_host_limit']}; {p['origins_over_limit']} origins over it); min gap "
          f"{gap(p['min_gap_s'])} at {p['min_gap_origin']} (delay {gap(p['delay_s'])}; "
          f"{p['origins_under_delay']} origins under it; the server stalled {p['server_loop_stalls']} times over 5 ms, "
          f"longest {gap(p['server_longest_stall_s'])}); Crawl-delay origins: {p['crawl_delay_origins']}, "
          f"min gap {gap(p['crawl_delay_min_gap_s'])} vs {p['crawl_delay_s']:g} s ({p['crawl_delay_origins_too_fast']} "
          f"faster); robots.txt hits per origin: mean {p['robots_hits_mean']:.2f}, max {p['robots_hits_max']}, "
          f"once on {p['origins_robots_once']}, more on {p['origins_robots_more']} (target: once)")
    top = sorted(result["counts"]["rejects_by_reason"].items(), key=lambda kv: -kv[1])[:10]
    print("rejects: " + ", ".join(f"{k} {v:,}" for k, v in top))


def print_growth(results: list[dict]) -> dict:
    growth = {}
    for runner in dict.fromkeys(r["runner"] for r in results):
        runs = sorted((r for r in results if r["runner"] == runner), key=lambda r: r["size"])
        small, large = runs[0], runs[-1]
        if small is large:
            continue
        print(f"\ngrowth, {runner}: seconds per link at {large['size']:,} submissions / at {small['size']:,} "
              "(target <= 1.2)")
        rows = {"total": (small["seconds_per_link"], large["seconds_per_link"])}
        rows |= {s: (small["stages"][s]["seconds_per_link"], large["stages"][s]["seconds_per_link"])
                 for s in large["stages"] if s in small["stages"]}
        growth[runner] = {}
        for stage, (a, b) in rows.items():
            ratio = b / a if a and b else None
            growth[runner][stage] = ratio
            print(f"  {stage:<14}{1000 * (a or 0):>9.2f} ms{1000 * (b or 0):>9.2f} ms   "
                  f"{f'{ratio:.2f}' if ratio else '-':>6}")
    return growth


def print_agreement(results: list[dict]) -> dict:
    """Whether every runner built the same corpus counts at each size: the simulated web's faults follow the URL and
    the attempt, not the request order, so a difference is the flow's, not the schedule's."""
    agreement = {}
    for size in dict.fromkeys(r["size"] for r in results):
        runs = [r for r in results if r["size"] == size]
        if len(runs) < 2:
            continue
        reasons = [r["counts"]["rejects_by_reason"] for r in runs]
        differ = sorted({k for other in reasons[1:] for k in {*reasons[0], *other}
                         if reasons[0].get(k) != other.get(k)})
        same = not differ and len({r["counts"]["documents"] for r in runs}) == 1
        agreement[size] = same
        documents = " vs ".join(f"{r['runner']} {r['counts']['documents']:,}" for r in runs)
        print(f"\n{size:,} submissions: documents {documents}; "
              + ("same counts on every runner" if same else f"counts differ: {', '.join(differ) or 'documents'}"))
    return agreement


def start_web(n_origins: int) -> subprocess.Popen:
    ready = WORK / "simweb.ready"
    ready.unlink(missing_ok=True)
    server = subprocess.Popen([sys.executable, str(REPO / "bench" / "simweb.py"), "--origins", str(n_origins),
                               "--stats", str(WORK / "simweb_stats.json"), "--ready", str(ready)])
    deadline = time.monotonic() + 120
    while not ready.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"the simulated web did not start (exit code {server.poll()})")
        time.sleep(0.1)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="submissions per dump, comma-separated")
    parser.add_argument("--runners", default="local,dask")
    parser.add_argument("--origins", type=int, default=3000)
    parser.add_argument("--shard-size", type=int, default=1000, help="links per fetch shard (the flow's shard_size)")
    parser.add_argument("--out", type=Path, default=OUT / "scale.json")
    args = parser.parse_args()
    sizes, runners = [int(s) for s in args.sizes.split(",")], args.runners.split(",")

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    dumps = {n: simweb.simweb_dump(n, args.origins, OUT) for n in sizes}
    print(f"dumps ready in {time.perf_counter() - started:.0f} s: " + ", ".join(f"{d.name} "
          f"({d.stat().st_size / 2**20:.1f} MiB)" for d in dumps.values()))
    data_root = WORK / "data"
    shutil.rmtree(data_root, ignore_errors=True)
    fetch = fetch_options()
    print(f"fetch options: {fetch}; shard_size {args.shard_size}; {os.cpu_count()} cores")

    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    server = start_web(args.origins)
    results = []
    try:
        with prefect_test_harness(server_startup_timeout=120), \
                temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            for size in sizes:
                for runner in runners:
                    result = run_once(dumps[size], size, runner, fetch, args.shard_size, data_root)
                    results.append(result)
                    print_run(result)
    finally:
        server.terminate()
        server.wait()
    growth = print_growth(results)
    agreement = print_agreement(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"sizes": sizes, "runners": runners, "origins": args.origins, "fetch": fetch,
                                    "shard_size": args.shard_size, "runs": results, "growth": growth,
                                    "same_counts_on_every_runner": agreement}, indent=1))
    print(f"\nwrote {args.out} ({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
