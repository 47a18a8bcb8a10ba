"""The local stack for real: `gptforge up`, `prefect deployment run build-corpus/local`, lineage in the API, `gptforge down`."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from flows.demo.run import demo_parameters, prepare_inputs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], env=env, capture_output=True, text=True, timeout=timeout)


def _wait_for_materialization(api: str, asset_key: str, timeout_s: float = 60) -> bool:
    """Events reach the API asynchronously (the client batches them), so poll."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events = httpx.post(f"{api}/events/filter", json={
            "filter": {"event": {"prefix": ["prefect.asset.materialization"]}}, "limit": 50}).json()["events"]
        if any(e["resource"]["prefect.resource.id"] == asset_key for e in events):
            return True
        time.sleep(1)
    return False


@pytest.fixture
def stack_env(tmp_path):
    env = os.environ | {"GPTFORGE_STATE": str(tmp_path / "state"), "GPTFORGE_DATA": str(tmp_path / "data"),
                        "GPTFORGE_PORT": str(_free_port())}
    env.pop("PREFECT_API_URL", None)
    yield env
    _cli("down", env=env)


def test_deployment_run_through_the_local_server_builds_a_corpus_with_lineage(stack_env, tmp_path):
    from flows.demo.server import DemoServer
    from flows.demo.site import build_site

    up = _cli("up", env=stack_env)
    assert up.returncode == 0, up.stderr[-3000:]
    for deployment in ("build-corpus/local", "train-tokenizer/local", "tokenize/local", "pretrain/local",
                       "finetune/local", "evaluate/local", "pipeline/local", "pipeline/demo", "retrain/weekly"):
        assert deployment in up.stdout
    exports = dict(line.removeprefix("export ").split("=", 1) for line in _cli("env", env=stack_env).stdout.splitlines())
    assert exports["PREFECT_API_URL"].startswith("http://127.0.0.1:")
    client_env = stack_env | exports

    pages = build_site(tmp_path / "site", n_pages=12)
    with DemoServer(tmp_path / "site") as server, DemoServer(tmp_path / "site", delay_s=5.0) as slow:
        dump, texts = prepare_inputs(tmp_path, server.base_url, slow.base_url, pages)
        params = demo_parameters(dump, texts) | {"version": "s1"}
        run = subprocess.run([sys.executable, "-m", "prefect", "deployment", "run", "build-corpus/local",
                              "--params", json.dumps(params), "--watch", "--watch-timeout", "300"],
                             env=client_env, capture_output=True, text=True, timeout=360)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    corpus = tmp_path / "data" / "corpus" / "s1"
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert manifest["counts"]["documents"] > 0
    run_id = manifest["flow_run"]["id"]
    assert manifest["flow_run"]["url"].endswith(f"/runs/flow-run/{run_id}")

    api = exports["PREFECT_API_URL"]
    deployments = httpx.post(f"{api}/deployments/filter", json={"deployments": {"name": {"any_": ["weekly"]}}}).json()
    assert deployments[0]["schedules"][0]["schedule"]["cron"] == "0 3 * * 1"
    assert deployments[0]["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    limits = httpx.post(f"{api}/v2/concurrency_limits/filter", json={}).json()
    assert ("gpu", 1) in [(l["name"], l["limit"]) for l in limits], "the GPU slot every training task holds"
    flow_run = httpx.get(f"{api}/flow_runs/{run_id}").json()
    assert flow_run["state"]["type"] == "COMPLETED"
    keys = {a["key"] for a in httpx.post(f"{api}/artifacts/filter", json={
        "artifacts": {"flow_run_id": {"any_": [run_id]}}}).json()}
    assert {"corpus-s1-lineage", "corpus-s1-counts"} <= keys
    assert _wait_for_materialization(api, corpus.as_uri()), "no asset materialization event for the corpus"

    lineage = _cli("lineage", str(corpus), env=stack_env)
    assert lineage.stdout.startswith("corpus s1") and "RS_2019-06.zst" in lineage.stdout

    down = _cli("down", env=stack_env)
    assert "server" in down.stdout and "serve" in down.stdout
    assert _cli("status", env=stack_env).returncode == 1
