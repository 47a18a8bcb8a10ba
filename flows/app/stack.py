"""The local Prefect stack: a real Prefect server (127.0.0.1) and one serve process for every deployment.

State lives in the project's state folder (``GPTFORGE_STATE``, default ``./.state``): ``prefect/`` is PREFECT_HOME
(the SQLite database), ``*.pid`` and ``*.log`` belong to the two processes, ``database.txt`` names the server's
database with its password redacted. Nothing listens beyond 127.0.0.1.

For shared use the server can keep its database in PostgreSQL instead of SQLite (``gptforge up --database URL`` or
``GPTFORGE_DATABASE_URL``, e.g. ``postgresql://user:pw@127.0.0.1:5432/prefect``). The URL reaches the server process
only, as ``PREFECT_SERVER_DATABASE_CONNECTION_URL`` with the asyncpg driver Prefect needs; clients and the serve
process talk to the API and never see it, and whatever this module prints or writes shows it redacted.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

HOST = "127.0.0.1"
DATABASE_ENV = "GPTFORGE_DATABASE_URL"
POSTGRES_SCHEMES = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg",
                    "postgresql+asyncpg": "postgresql+asyncpg"}


def server_database_url(url: str) -> str:
    """The SQLAlchemy URL Prefect's server needs for a PostgreSQL URL: ``postgresql://`` → ``postgresql+asyncpg://``."""
    parts = urlsplit(url)
    if parts.scheme not in POSTGRES_SCHEMES or not parts.hostname or not parts.path.strip("/"):
        raise ValueError(f"database URL {redact_password(url)!r} is not a PostgreSQL URL with a host and a database "
                         f"name; give e.g. postgresql://user:password@127.0.0.1:5432/prefect, or leave "
                         f"{DATABASE_ENV} unset for SQLite in the state folder")
    return urlunsplit(parts._replace(scheme=POSTGRES_SCHEMES[parts.scheme]))


def redact_password(url: str) -> str:
    """The URL with its password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{host}"))


@dataclass(frozen=True)
class Stack:
    state: Path
    port: int
    database: str | None = None  # a PostgreSQL URL for the server's database; None: SQLite in PREFECT_HOME

    @classmethod
    def from_env(cls, database: str | None = None) -> "Stack":
        state = Path(os.environ.get("GPTFORGE_STATE", ".state")).resolve()
        return cls(state, int(os.environ.get("GPTFORGE_PORT", "4200")), database or os.environ.get(DATABASE_ENV) or None)

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment for every process of the stack and for clients that talk to it."""
        return {
            "PREFECT_HOME": str(self.state / "prefect"),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_UI_URL": self.ui_url,
            "PREFECT_SERVER_API_HOST": HOST,
            "PREFECT_SERVER_API_PORT": str(self.port),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "GX_ANALYTICS_ENABLED": "false",
        }

    def _pid(self, name: str) -> int | None:
        path = self.state / f"{name}.pid"
        if not path.exists():
            return None
        pid = int(path.read_text())
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child that exited: reap it
                raise OSError
        except ChildProcessError:
            pass  # not our child (started by an earlier `gptforge up`)
        except OSError:
            path.unlink(missing_ok=True)
            return None
        try:
            os.kill(pid, 0)
            return pid
        except OSError:
            path.unlink(missing_ok=True)
            return None

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def database_label(self) -> str:
        """The server's database as it may be shown: the URL without its password, or the SQLite file."""
        if self.database is None:
            return f"sqlite {self.state / 'prefect' / 'prefect.db'}"
        return redact_password(self.database)

    def server_env(self) -> dict[str, str]:
        """The server's environment on top of `env`: its database (the one place the URL with password goes)."""
        if self.database is None:
            return {}
        return {"PREFECT_SERVER_DATABASE_CONNECTION_URL": server_database_url(self.database)}

    def _start(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> int:
        self.state.mkdir(parents=True, exist_ok=True)
        log = open(self.state / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=os.environ | self.env() | (extra_env or {}), start_new_session=True)
        (self.state / f"{name}.pid").write_text(str(proc.pid))
        return proc.pid

    def up(self, timeout_s: float = 120) -> None:
        """Start whatever is not running; wait until the server answers and the deployments are registered."""
        server_env = self.server_env()  # a bad database URL fails here, before anything starts
        if self._pid("server") is None:
            if self.healthy():
                raise RuntimeError(f"something else already answers on {self.api_url}; stop it or set GPTFORGE_PORT")
            self._start("server", [sys.executable, "-m", "prefect", "server", "start", "--host", HOST,
                                   "--port", str(self.port), "--analytics-off"], server_env)
            (self.state / "database.txt").write_text(self.database_label + "\n")
        elif self.database is not None and (running := self.running_database()) != self.database_label:
            raise RuntimeError(f"the stack's server already runs on {running}, not {self.database_label}; "
                               f"run `gptforge down` first to switch databases")
        self._wait(self.healthy, timeout_s, "server", "the Prefect server to answer")
        self._ensure_gpu_limit()
        if self._pid("serve") is None:
            self._start("serve", [sys.executable, "-m", "flows.app.deployments"])
        self._wait(self.deployments_ready, timeout_s, "serve", "the deployments to be served")

    def _ensure_gpu_limit(self) -> None:
        # Imported here: Prefect reads its settings on import, and callers point them at this stack first.
        from flows.gpu import ensure_gpu_limit
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.api_url}):
            ensure_gpu_limit()

    def _wait(self, ready, timeout_s: float, name: str, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if self._pid(name) is None:
                raise RuntimeError(f"the {name} process exited while waiting for {what}; see {self.state / (name + '.log')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}; see {self.state / (name + '.log')}")
            time.sleep(0.5)

    def deployments(self) -> list[str]:
        try:
            r = httpx.post(f"{self.api_url}/deployments/filter", json={"limit": 200}, timeout=5)
            flows = {f["id"]: f["name"] for f in httpx.post(f"{self.api_url}/flows/filter", json={"limit": 200}, timeout=5).json()}
            return sorted(f"{flows.get(d['flow_id'], '?')}/{d['name']}" for d in r.json())
        except (httpx.HTTPError, ValueError):
            return []

    def deployments_ready(self) -> bool:
        from flows.app.deployments import served_names  # imports Prefect, which must read this stack's settings

        served = self.deployments()
        return all(name in served for name in served_names())

    def down(self) -> list[str]:
        """Stop the serve process, then the server; returns what was stopped."""
        stopped = []
        for name in ("serve", "server"):
            pid = self._pid(name)
            if pid is None:
                continue
            os.killpg(pid, signal.SIGTERM)
            for _ in range(100):
                if self._pid(name) is None:
                    break
                time.sleep(0.1)
            else:
                os.killpg(pid, signal.SIGKILL)
            (self.state / f"{name}.pid").unlink(missing_ok=True)
            stopped.append(name)
        return stopped

    def running_database(self) -> str:
        """What the running (or last started) server was given, as `database_label` wrote it."""
        path = self.state / "database.txt"
        return path.read_text().strip() if path.exists() else Stack(self.state, self.port).database_label

    def status(self) -> dict:
        return {"server": "running" if self._pid("server") and self.healthy() else "stopped",
                "serve": "running" if self._pid("serve") else "stopped",
                "api": self.api_url, "ui": self.ui_url, "state": str(self.state),
                "database": self.running_database(),
                "deployments": self.deployments() if self.healthy() else []}
