"""The same flows on a real Dask cluster (a `distributed.LocalCluster` of 2 worker processes): identical outputs."""
from __future__ import annotations

import html
import io
import json
import pydoc
import time
from pathlib import Path

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from flows.runners import check_runner
from flows.store import DataRoot
from tests.builders import LENIENT, MODULES, publish_corpus


@pytest.fixture(scope="module")
def dask_address():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def page(text: str) -> bytes:
    paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n") if p.strip())
    return f"<html><head><title>doc</title></head><body><article>{paragraphs}</article></body></html>".encode()


def write_warc(path: Path, pages: dict[str, bytes]) -> Path:
    with open(path, "wb") as file:
        writer = WARCWriter(file, gzip=True)
        for url, body in pages.items():
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers))
    return path


@pytest.fixture(scope="module")
def warcs(tmp_path_factory) -> list[str]:
    """Two WARC files of pydoc pages, with exact and near duplicates within and across the files."""
    folder = tmp_path_factory.mktemp("warcs")
    texts = {name: pydoc.render_doc(name, renderer=pydoc.plaintext)[:6000] for name in MODULES[:8]}
    first = {f"https://docs.example/{name}": page(text) for name, text in list(texts.items())[:5]}
    second = {f"https://mirror.example/{name}": page(text) for name, text in list(texts.items())[3:]}
    second["https://mirror.example/json-copy"] = page(texts["csv"].replace("CSV", "Csv", 3) + "\n\nShare this page.")
    return [str(write_warc(folder / "a.warc.gz", first)), str(write_warc(folder / "b.warc.gz", second))]


def outputs(folder: str) -> dict[str, str]:
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    return {name: entry["sha256"] for name, entry in manifest["outputs"].items()}


def test_build_corpus_on_dask_gives_the_same_corpus_as_a_local_run(warcs, dask_address, tmp_path, prefect_harness):
    from flows.build_corpus import build_corpus

    process = {"quality": {"min_words": 20, **LENIENT}}
    local = build_corpus(warcs=warcs, version="v1", data_root=str(tmp_path / "local"), process=process)
    on_dask = build_corpus(warcs=warcs, version="v1", data_root=str(tmp_path / "dask"), process=process,
                           task_runner="dask", dask_address=dask_address)
    assert outputs(on_dask) == outputs(local)
    counts = json.loads((Path(local) / "manifest.json").read_text())["counts"]
    assert counts["rejects_by_reason"].get("dedup:exact_duplicate", 0) >= 2  # the pages present in both files


@pytest.fixture(scope="module")
def tokenizer_root(tmp_path_factory, prefect_harness) -> DataRoot:
    from flows.train_tokenizer import train_tokenizer

    root = DataRoot.from_env(str(tmp_path_factory.mktemp("data")))
    publish_corpus(root, "c1", MODULES[:12])
    train_tokenizer(corpus="c1", version="t1", data_root=root.url, vocab_size=512, holdout_fraction=0.1)
    return root


def shard_bytes(folder: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(folder).glob("*.bin"))}


def test_tokenize_on_dask_writes_byte_identical_shards(tokenizer_root, dask_address, prefect_harness):
    from flows.tokenize_corpus import tokenize

    options = {"data_root": tokenizer_root.url, "validation_fraction": 0.1, "max_documents_per_shard": 20}
    local = tokenize(version="k-local", **options)
    on_dask = tokenize(version="k-dask", task_runner="dask", dask_address=dask_address, **options)
    assert len(shard_bytes(local)) > 2
    assert shard_bytes(on_dask) == shard_bytes(local)
    index = lambda folder: json.loads((Path(folder) / "index.json").read_text())["shards"]  # noqa: E731
    assert index(on_dask) == index(local)


def test_dask_without_an_address_starts_a_temporary_local_cluster(tokenizer_root, prefect_harness):
    from flows.tokenize_corpus import tokenize

    options = {"data_root": tokenizer_root.url, "validation_fraction": 0.1, "max_documents_per_shard": 40}
    local = tokenize(version="k2-local", **options)
    on_dask = tokenize(version="k2-dask", task_runner="dask", workers=2, **options)
    assert shard_bytes(on_dask) == shard_bytes(local)


def test_more_calls_than_the_task_run_limit_run_in_batches_with_the_same_results(dask_address, tmp_path,
                                                                                 prefect_harness):
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.events.worker import EventsWorker

    from flows.runners import run_tasks, shard_runner

    @task(name="square")
    def square(x: int) -> int:
        return x * x

    @flow(name="batched-squares")
    def squares(task_runner: str, address: str | None) -> list[int]:
        with shard_runner(task_runner, address, tmp_path, 2) as runner:
            return run_tasks(runner, square, [{"x": x} for x in range(7)], max_task_runs=3)

    for task_runner, address in (("local", None), ("dask", dask_address)):
        state = squares(task_runner, address, return_state=True)
        assert state.result() == [x * x for x in range(7)], task_runner
        EventsWorker.drain_all()
        runs, deadline = [], time.monotonic() + 60
        with get_client(sync_client=True) as client:
            while len(runs) < 3 and time.monotonic() < deadline:  # the server records task runs from their events
                time.sleep(0.2)
                runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
        assert sorted(r.name.rsplit("-", 1)[0] for r in runs) == ["square-batch"] * 3, [r.name for r in runs]


def test_unknown_runner_or_an_address_without_dask_is_refused():
    with pytest.raises(ValueError, match="task_runner must be one of"):
        check_runner("ray", None)
    with pytest.raises(ValueError, match="only used with task_runner='dask'"):
        check_runner("local", "tcp://10.0.0.1:8786")
