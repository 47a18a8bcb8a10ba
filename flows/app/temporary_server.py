"""A temporary Prefect server for a `gptforge run` that finds no API configured and no local stack up.

Prefect would start the same server itself (its "ephemeral" mode), but to do so its client imports the whole server
package (FastAPI, SQLAlchemy, docket, redis, …) into the process that runs the flow: about 1,200 modules and 130 MB
of RSS that then sit beside training for the whole run. Started from here, the flow's process only ever holds the
client. The server is the one Prefect starts (uvicorn on 127.0.0.1, UI off, the SQLite database in PREFECT_HOME) and
stops when the run ends.
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Iterator

import httpx

from flows.app.stack import HOST

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
PORT_ATTEMPTS = 3


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the server's process before it runs: a `gptforge run` that is killed (SIGKILL runs no cleanup) takes its
    server with it instead of leaving it on the database (Linux's PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def _start(port: int, log) -> subprocess.Popen:
    # The environment Prefect gives its own temporary server (prefect.server.api.server.SubprocessASGIServer).
    env = os.environ | {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    return subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
                             "--host", HOST, "--port", str(port), "--log-level", "error", "--lifespan", "on"],
                            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)


def _wait_healthy(proc: subprocess.Popen, api_url: str, timeout_s: float) -> bool:
    """True once the server answers; False if it exited first (e.g. its port was taken meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None:
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            _stop(proc)
            raise TimeoutError(f"the temporary Prefect server on {api_url} did not answer within {timeout_s:.0f}s; "
                               "start one with `gptforge up` (or set PREFECT_API_URL) and rerun")
        time.sleep(0.1)
    return False


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def temporary_server(timeout_s: float = START_TIMEOUT_S) -> Iterator[str]:
    """Run a Prefect server for the duration of the block; yields its API URL."""
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a pipe nobody reads would block the server
        for _ in range(PORT_ATTEMPTS):
            api_url = f"http://{HOST}:{(port := _free_port())}/api"
            proc = _start(port, log)
            if _wait_healthy(proc, api_url, timeout_s):
                break
        else:
            log.seek(0)
            output = log.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"the temporary Prefect server exited {PORT_ATTEMPTS} times before answering; its "
                               f"output:\n{output}\nstart one with `gptforge up` (or set PREFECT_API_URL) and rerun")
        print(f"started a temporary Prefect server on {api_url} for this run (`gptforge up` keeps one running)",
              file=sys.stderr)
        try:
            yield api_url
        finally:
            _drain_prefect_clients()
            _stop(proc)


def _drain_prefect_clients() -> None:
    """Send the run's last log lines and events while the server still answers: Prefect's background workers would
    otherwise flush them at exit into a stopped server and retry for minutes (its own temporary server stops after
    them, from an atexit hook)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=STOP_TIMEOUT_S)
    EventsWorker.drain_all(timeout=STOP_TIMEOUT_S)
