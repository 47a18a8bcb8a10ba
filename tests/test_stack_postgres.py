"""The local stack on PostgreSQL: `gptforge up --database postgresql://…` against a real server the test starts.

The PostgreSQL server binaries (Debian's `postgresql` package; `.ci/run` installs it) run a throwaway cluster on
127.0.0.1:15432 with a password; the test brings the stack up on it, runs a flow through it, and finds the run's rows
in PostgreSQL itself. initdb refuses to run as root, so as root the cluster runs as `nobody`.
"""
from __future__ import annotations

import asyncio
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

PG_PORT = 15432
STACK_PORT = 14252
USER, PASSWORD, DATABASE = "gptforge", "pg-s3cret-pw", "prefect"
URL = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{PG_PORT}/{DATABASE}"


def postgres_bin() -> Path | None:
    """The folder with initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(debian[-1]).parent if debian else None


BIN = postgres_bin()
pytestmark = pytest.mark.skipif(BIN is None, reason="no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in "
                                "/usr/lib/postgresql/*/bin: install Debian's postgresql package (.ci/run does)")


def as_cluster_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "nobody", "--", *argv] if os.geteuid() == 0 else argv


def _cli(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.app.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def query(sql: str, *args, database: str = DATABASE) -> list[tuple]:
    import asyncpg

    async def run() -> list[tuple]:
        connection = await asyncpg.connect(user=USER, password=PASSWORD, host="127.0.0.1", port=PG_PORT,
                                           database=database)
        try:
            return [tuple(row) for row in await connection.fetch(sql, *args)]
        finally:
            await connection.close()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL cluster on 127.0.0.1:PG_PORT with password authentication and an empty `prefect` database."""
    # Outside pytest's tmp folders: those are private to root, and the cluster's owner may be `nobody`.
    root = Path(tempfile.mkdtemp(prefix="gptforge-pg-"))
    data, password_file = root / "data", root / "password"
    password_file.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "nobody")
        shutil.chown(password_file, "nobody")
    initdb = subprocess.run(as_cluster_owner([str(BIN / "initdb"), "-D", str(data), "-U", USER,
                                              f"--pwfile={password_file}", "--auth=scram-sha-256", "-E", "UTF8",
                                              "--locale=C"]), capture_output=True, text=True)
    assert initdb.returncode == 0, initdb.stderr[-3000:]
    start = subprocess.run(as_cluster_owner([
        str(BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60", "start",
        "-o", f"-c listen_addresses=127.0.0.1 -p {PG_PORT} -k {root}"]), capture_output=True, text=True)
    assert start.returncode == 0, start.stdout[-2000:] + start.stderr[-2000:] + (root / "server.log").read_text()
    try:
        query(f"CREATE DATABASE {DATABASE}", database="postgres")
        yield
    finally:
        subprocess.run(as_cluster_owner([str(BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def stack_env(postgres, tmp_path):
    env = os.environ | {"GPTFORGE_STATE": str(tmp_path / "state"), "GPTFORGE_DATA": str(tmp_path / "data"),
                        "GPTFORGE_PORT": str(STACK_PORT)}
    for name in ("PREFECT_API_URL", "GPTFORGE_DATABASE_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL",
                 "PREFECT_API_DATABASE_CONNECTION_URL"):
        env.pop(name, None)
    yield env
    _cli("down", env=env)


def test_stack_on_postgresql_keeps_its_runs_there_and_never_shows_the_password(stack_env, tmp_path):
    up = _cli("up", "--database", URL, env=stack_env)
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
    # The serve process registered the deployments through the API, into PostgreSQL.
    assert ("build-corpus", "local") in query("SELECT f.name, d.name FROM deployment d JOIN flow f ON f.id = d.flow_id")

    text = tmp_path / "harbour.txt"
    text.write_text("The harbour town woke slowly on winter mornings, and the ferry left for the island at noon. "
                    "Fishermen checked their nets by lamplight while the bakery on the corner baked bread. " * 3)
    run = _cli("run", "build-corpus", f"-ptexts={json.dumps([str(text)])}", "-pversion=pg1",
               "-pprocess.quality.min_words=10", "-pprocess.quality.max_duplicate_line_char_fraction=1",
               "-pprocess.quality.max_top_ngram_char_fraction=[]",
               "-pprocess.quality.max_duplicate_ngram_char_fraction=[]", env=stack_env)
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = json.loads((Path(run.stdout.strip().splitlines()[-1]) / "manifest.json").read_text())
    assert manifest["counts"]["documents"] == 1
    rows = query("SELECT f.name, r.state_type::text FROM flow_run r JOIN flow f ON f.id = r.flow_id WHERE r.id = $1",
                 uuid.UUID(manifest["flow_run"]["id"]))
    assert rows == [("build-corpus", "COMPLETED")]
    assert not (Path(stack_env["GPTFORGE_STATE"]) / "prefect" / "prefect.db").exists(), "the server used SQLite"

    status = _cli("status", env=stack_env)
    assert status.returncode == 0, status.stderr[-2000:]
    assert f"postgresql://{USER}:***@127.0.0.1:{PG_PORT}/{DATABASE}" in status.stdout
    assert PASSWORD not in status.stdout + up.stdout + up.stderr + run.stdout + run.stderr
    state_files = [p for p in Path(stack_env["GPTFORGE_STATE"]).rglob("*") if p.is_file()]
    assert [p for p in state_files if PASSWORD.encode() in p.read_bytes()] == []

    again = _cli("up", "--database", URL.replace(DATABASE, "elsewhere"), env=stack_env)
    assert again.returncode != 0 and "gptforge down" in again.stderr and PASSWORD not in again.stderr
