"""One run per version at a time: an exclusive ``flock`` on ``.<version>.lock`` beside the version's work folder.

    hold(work, "tokens v0003")    # start_version: raises VersionInUse, naming the holder, if another run has it
    release(work)                 # finish_version: after publish and cleanup, or on a failed gate

The lock belongs to the flow's process, not to a task: tasks in process pools or on Dask never take it, and the
kernel drops it when that process ends, however it ends, so a killed run never blocks its rerun. A flow that fails
inside a long-lived process (tests, a script running several flows) keeps it until the next start of the same
version in that process, which takes it over once the holding flow run has ended; a start outside any flow run
(library use) can always be taken over by the next start in its process. Forked children close their copy, so a
process pool outliving a killed flow does not keep the version locked. The lock file is removed on release and
never blocks by existing: only a held lock refuses.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.context import FlowRunContext

from flows.store import StoreError, utc_now


class VersionInUse(StoreError):
    """Another run is building the same version right now."""


@dataclass(frozen=True)
class _Held:
    fd: int
    flow_run: Any  # the holding flow run (its ``state`` is kept current by Prefect's engine), None outside a flow


_held: dict[Path, _Held] = {}
_guard = threading.Lock()


def lock_path(work: Path) -> Path:
    """``<base>/.v0003.partial`` → ``<base>/.v0003.lock``."""
    return work.with_name(work.name.removesuffix(".partial") + ".lock")


def hold(work: Path, what: str) -> None:
    """Lock the version whose work folder is ``work`` for the calling flow run, or raise ``VersionInUse``."""
    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx is not None else None
    with _guard:
        held = _held.get(work)
        if held is None:
            held = _Held(_acquire(lock_path(work), what), run)
        elif held.flow_run is not None and not _same_run(held.flow_run, run) and not _ended(held.flow_run):
            raise VersionInUse(_in_use(what, _holder(held.fd)))
        _held[work] = _Held(held.fd, run)
        _write_holder(held.fd, run)


def release(work: Path) -> None:
    """Give the version up (no-op when this process does not hold it)."""
    with _guard:
        held = _held.pop(work, None)
    if held is not None:
        lock_path(work).unlink(missing_ok=True)  # while still locked: a later opener makes a fresh file
        os.close(held.fd)


def _acquire(path: Path, what: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise VersionInUse(_in_use(what, holder)) from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder released (and removed) the file between our open and our lock: open it anew


def _same_run(a: Any, b: Any) -> bool:
    return b is not None and a.id == b.id


def _ended(flow_run: Any) -> bool:
    return flow_run.state is not None and flow_run.state.is_final()


def _write_holder(fd: int, flow_run: Any) -> None:
    record = {"pid": os.getpid(), "host": socket.gethostname(), "since": utc_now(),
              "flow_run": str(flow_run.id) if flow_run is not None else None}
    data = json.dumps(record).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:  # caught mid-write: the holder is still named by the error, just less precisely
        return {}


def _in_use(what: str, holder: dict) -> str:
    who = ", ".join(f"{key} {holder[key]}" for key in ("pid", "host", "flow_run", "since") if holder.get(key))
    return (f"another run of {what} is in progress ({who or 'holder unknown'}); wait for it to finish or choose "
            "another version")


def _forget_in_child() -> None:
    global _guard
    _guard = threading.Lock()
    for held in _held.values():
        os.close(held.fd)
    _held.clear()


os.register_at_fork(after_in_child=_forget_in_child)
