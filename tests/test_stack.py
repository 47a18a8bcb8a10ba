"""The local stack for real: `gptforge up`, `prefect deployment run build-corpus/local`, lineage in the API, `gptforge down`."""
from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from flows.app.demo_parameters import demo_parameters
from tests import webhosts
from tests.builders import served_demo_inputs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.app.cli", *args], env=env, capture_output=True, text=True, timeout=timeout)


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


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory):
    """One stack state for the module (starting a server is slow): each test runs `gptforge up`, which only starts
    what is not running, so the tests pass in any order."""
    state = tmp_path_factory.mktemp("stack")
    env = os.environ | {"GPTFORGE_STATE": str(state / "state"), "GPTFORGE_DATA": str(state / "data"),
                        "GPTFORGE_PORT": str(_free_port())}
    env.pop("PREFECT_API_URL", None)
    yield env
    _cli("down", env=env)


def test_gptforge_run_on_a_running_stack_is_recorded_in_its_api(stack_env, tmp_path):
    from flows.demo.site import write_demo_texts
    from flows.app.stack import HOST

    up = _cli("up", env=stack_env)
    assert up.returncode == 0, up.stderr[-3000:]
    texts = [str(p) for p in write_demo_texts(tmp_path / "texts")]
    quality = demo_parameters(tmp_path / "none.zst", [])["process"]["quality"]
    run = _cli("run", "build-corpus", f"-ptexts={json.dumps(texts)}", "-pversion=cli1",
               f"-pquality={json.dumps(quality)}", env=stack_env)
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = json.loads((Path(run.stdout.strip().splitlines()[-1]) / "manifest.json").read_text())
    ui = f"http://{HOST}:{stack_env['GPTFORGE_PORT']}"
    # A temporary server writes the stack's database too (it inherits PREFECT_HOME), so the API alone cannot tell.
    assert "temporary" not in run.stderr.lower()
    assert manifest["flow_run"]["url"] == f"{ui}/runs/flow-run/{manifest['flow_run']['id']}"
    flow_run = httpx.get(f"{ui}/api/flow_runs/{manifest['flow_run']['id']}")
    assert flow_run.status_code == 200
    assert flow_run.json()["state"]["type"] == "COMPLETED"
    assert httpx.get(f"{ui}/api/flows/{flow_run.json()['flow_id']}").json()["name"] == "build-corpus"


def test_gptforge_run_without_a_server_runs_on_a_temporary_one_outside_its_process(tmp_path):
    """No API configured and no stack up: the run starts a server of its own, stops it at the end, and the flow's
    process never imports Prefect's server package (FastAPI, SQLAlchemy, …: ~130 MB of RSS beside training)."""
    from flows.demo.site import write_demo_texts

    texts = [str(p) for p in write_demo_texts(tmp_path / "texts")]
    quality = demo_parameters(tmp_path / "none.zst", [])["process"]["quality"]
    env = os.environ | {"GPTFORGE_STATE": str(tmp_path / "state"), "GPTFORGE_DATA": str(tmp_path / "data"),
                        "GPTFORGE_PORT": str(_free_port()), "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    code = ("import sys; from flows.app.cli import main; main(sys.argv[1:]); "
            "print('server package imported:', 'prefect.server.api.server' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code, "run", "build-corpus", f"-ptexts={json.dumps(texts)}",
                          "-pversion=tmp1", f"-pquality={json.dumps(quality)}"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    *_, folder, imported = run.stdout.strip().splitlines()
    assert imported == "server package imported: False"
    assert "Starting temporary server" not in run.stderr  # Prefect's own, in-process one
    api = re.search(r"started a temporary Prefect server on (\S+) ", run.stderr).group(1)
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    assert manifest["counts"]["documents"] > 0 and manifest["flow_run"]["id"]
    with contextlib.closing(sqlite3.connect(tmp_path / "prefect" / "prefect.db")) as db:  # the server's database
        state = db.execute("SELECT state_type FROM flow_run WHERE id = ?", (manifest["flow_run"]["id"],)).fetchone()
        flow_logs = [m for (m,) in db.execute("SELECT message FROM log WHERE flow_run_id = ? AND task_run_id IS NULL "
                                              "ORDER BY timestamp", (manifest["flow_run"]["id"],))]
    assert state == ("COMPLETED",)
    # The run's last lines were sent before the server stopped, not retried at exit against a stopped one.
    assert flow_logs[-1] == "Finished in state Completed()" and "Error logging to API" not in run.stderr
    with pytest.raises(httpx.ConnectError):  # stopped with the run
        httpx.get(f"{api}/health", timeout=5)


def test_deployment_run_through_the_local_server_builds_a_corpus_with_lineage(stack_env, tmp_path):
    up = _cli("up", env=stack_env)
    assert up.returncode == 0, up.stderr[-3000:]
    for deployment in ("build-corpus/local", "train-tokenizer/local", "tokenize/local", "pretrain/local",
                       "finetune/local", "evaluate/local", "pipeline/local", "pipeline/demo", "retrain/weekly"):
        assert deployment in up.stdout
    exports = dict(line.removeprefix("export ").split("=", 1) for line in _cli("env", env=stack_env).stdout.splitlines())
    assert exports["PREFECT_API_URL"].startswith("http://127.0.0.1:")
    client_env = stack_env | exports

    with served_demo_inputs(tmp_path, webhosts.STACK, n_pages=12) as inputs:
        params = inputs["params"] | {"version": "s1"}
        run = subprocess.run([sys.executable, "-m", "prefect", "deployment", "run", "build-corpus/local",
                              "--params", json.dumps(params), "--watch", "--watch-timeout", "300"],
                             env=client_env, capture_output=True, text=True, timeout=360)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    corpus = Path(stack_env["GPTFORGE_DATA"]) / "corpus" / "s1"
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


# --- the server's database ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, expected", [
    ("postgresql://u:pw@127.0.0.1:5432/prefect", "postgresql+asyncpg://u:pw@127.0.0.1:5432/prefect"),
    ("postgres://u@db.internal/prefect", "postgresql+asyncpg://u@db.internal/prefect"),
    ("postgresql+asyncpg://u:pw@127.0.0.1/prefect", "postgresql+asyncpg://u:pw@127.0.0.1/prefect"),
])
def test_postgresql_urls_get_the_asyncpg_driver_prefect_needs(url, expected):
    from flows.app.stack import server_database_url

    assert server_database_url(url) == expected


@pytest.mark.parametrize("url", ["mysql://u:s3cret@127.0.0.1/prefect", "postgresql://u:s3cret@127.0.0.1",
                                 "sqlite:///prefect.db", "127.0.0.1:5432/prefect"])
def test_other_database_urls_are_refused_without_showing_the_password(url):
    from flows.app.stack import server_database_url

    with pytest.raises(ValueError, match="not a PostgreSQL URL") as error:
        server_database_url(url)
    assert "s3cret" not in str(error.value)


def test_passwords_are_redacted_and_urls_without_one_unchanged():
    from flows.app.stack import redact_password

    assert redact_password("postgresql://gpt:p%40ss:w@127.0.0.1:5432/prefect") == "postgresql://gpt:***@127.0.0.1:5432/prefect"
    assert redact_password("postgresql://gpt@127.0.0.1/prefect") == "postgresql://gpt@127.0.0.1/prefect"


def test_the_database_url_reaches_the_server_environment_only(tmp_path):
    from flows.app.stack import Stack

    closed_port = 1  # nothing answers: status() reports a stopped stack without waiting
    stack = Stack(tmp_path, closed_port, "postgresql://gpt:s3cret@127.0.0.1:5432/prefect")
    assert stack.server_env() == {
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": "postgresql+asyncpg://gpt:s3cret@127.0.0.1:5432/prefect"}
    assert "s3cret" not in json.dumps(stack.env()) and "s3cret" not in json.dumps(stack.status())
    assert Stack(tmp_path, closed_port).server_env() == {}
    assert Stack(tmp_path, closed_port).status()["database"] == f"sqlite {tmp_path / 'prefect' / 'prefect.db'}"
