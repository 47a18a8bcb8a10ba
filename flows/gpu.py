"""The accelerator slot: training tasks hold one slot of the global concurrency limit ``gpu`` (``GPTFORGE_GPU_LIMIT``)
while they run, so scheduled retraining, the pipeline and ad-hoc runs never train on the same GPU at once.

``gptforge up`` creates the limit with ``GPTFORGE_GPU_SLOTS`` slots (default 1); on a server without it the slot
is skipped with a warning (Prefect's non-strict behaviour), so flows still run anywhere.
"""
from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext

from prefect.concurrency.sync import concurrency


def limit_name() -> str:
    return os.environ.get("GPTFORGE_GPU_LIMIT", "gpu")


def gpu_slot() -> AbstractContextManager:
    """The slot on a configured server; nothing to share with an ephemeral in-process server."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return nullcontext()
    return concurrency(limit_name(), occupy=1, strict=False)


def ensure_gpu_limit(slots: int | None = None) -> None:
    """Create the limit on the current Prefect API if it does not exist (the local stack calls this)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    slots = slots or int(os.environ.get("GPTFORGE_GPU_SLOTS", "1"))
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(limit_name())
        except ObjectNotFound:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit_name(), limit=slots))
