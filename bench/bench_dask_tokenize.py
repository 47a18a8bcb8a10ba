"""tokenize on Dask: the tokenize flow with the local runner vs a Dask LocalCluster of 1, 2 and 4 worker processes.

Input: the corpus and tokenizer `bench_tokenize.py` builds from the shared data ($GPTFORGE_SHARED_DATA, default
../shared/data relative to the repository root), published into a scratch data root under bench/out. Each
configuration runs the whole `tokenize` flow (plan, encode, index, gate, publish) into a new version; the Dask
clusters are started before the clock starts (their start-up is printed apart) and reached by `dask_address`, as a
deployment would. Every Dask run must give the local run's shards byte for byte. Prints docs/s, MB/s of text and the
ratio to the local runner. On a machine with C cores, more than C single-threaded workers cannot be faster.

Run: .venv/bin/python bench/bench_dask_tokenize.py [--mb 40] [--workers 1 2 4] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "bench"))
OUT = REPO_ROOT / "bench" / "out" / "dask_tokenize"


def publish_inputs(root_dir: Path, corpus_files: list[str], tokenizer_json: Path) -> None:
    """The benchmark corpus and tokenizer as published versions c1 and t1 of a scratch data root."""
    from flows.lineage import upstream_version, write_manifest
    from flows.store import DataRoot

    shutil.rmtree(root_dir, ignore_errors=True)
    root = DataRoot.from_env(str(root_dir))
    work = root.work_dir("corpus", "c1") / "out"
    (work / "data").mkdir(parents=True)
    for path in corpus_files:
        shutil.copy(path, work / "data" / Path(path).name)
    write_manifest(work, "corpus", "c1", {}, [], {})
    root.publish("corpus", "c1", work)
    work = root.work_dir("tokenizer", "t1") / "out"
    work.mkdir(parents=True)
    shutil.copy(tokenizer_json, work / "tokenizer.json")
    write_manifest(work, "tokenizer", "t1", {}, [upstream_version(root, "corpus", "c1")], {})
    root.publish("tokenizer", "t1", work)


def shards_of(folder: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(folder).glob("*.bin"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=40, help="megabytes of text (default 40)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="Dask worker processes to try")
    parser.add_argument("--repeats", type=int, default=2, help="runs per configuration; the best is reported")
    args = parser.parse_args()

    import bench_tokenize
    from distributed import LocalCluster
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from flows.tokenize_corpus import tokenize

    documents = bench_tokenize.source_documents()
    corpus = bench_tokenize.build_corpus(documents, args.mb, 4, bench_tokenize.WORK / f"corpus-{args.mb:g}mb")
    tokenizer_json, vocab_size = bench_tokenize.train_tokenizer(documents, bench_tokenize.WORK / "tokenizer")
    root_dir = OUT / "data"
    publish_inputs(root_dir, corpus.files, tokenizer_json)
    cores = os.cpu_count() or 1
    print(f"corpus: {corpus.documents} documents, {corpus.text_bytes / 1e6:.1f} MB of text; vocabulary {vocab_size}; "
          f"{cores} cores")

    options = {"data_root": str(root_dir), "shard_chars": 2_500_000, "min_shards": 16, "validation_fraction": 0.005}
    runs: dict[str, float] = {}
    reference: dict[str, bytes] | None = None
    with prefect_test_harness(server_startup_timeout=120), temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        def timed(name: str, **extra) -> None:
            nonlocal reference
            best = float("inf")
            for repeat in range(args.repeats):
                start = time.perf_counter()
                folder = tokenize(version=f"{name}-{repeat}", **options, **extra)
                best = min(best, time.perf_counter() - start)
                shards = shards_of(folder)
                if reference is None:
                    reference = shards
                elif shards != reference:
                    raise SystemExit(f"{name}: shards differ from the local run")
            runs[name] = best

        timed("local", workers=cores)
        for n in args.workers:
            start = time.perf_counter()
            with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
                print(f"dask x{n}: cluster start {time.perf_counter() - start:.1f} s")
                timed(f"dask-x{n}", task_runner="dask", dask_address=cluster.scheduler_address)

    n_shards = len(reference or {})
    print(f"\n{n_shards} shards per run; byte-identical across all runs. Best of {args.repeats}, whole flow:")
    local = runs["local"]
    for name, seconds in runs.items():
        print(f"{name:>9}: {seconds:6.2f} s  {corpus.documents / seconds:8.0f} docs/s  "
              f"{corpus.text_bytes / 1e6 / seconds:6.2f} MB/s  ratio vs local {local / seconds:.2f}x")
    print(json.dumps({name: round(s, 3) for name, s in runs.items()}))


if __name__ == "__main__":
    main()
