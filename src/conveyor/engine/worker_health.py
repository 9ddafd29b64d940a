"""When a worker counts as healthy: its process has been running for `min_ready`, under
the same pid, without a restart (supervisord's state, polled), and its command check,
if it has one, passes. A worker listens on nothing, so nothing else can be asked.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from conveyor.checks.wait import wait_until_healthy
from conveyor.errors import HealthCheckError
from conveyor.targets.base import RUNNING, STARTING

if TYPE_CHECKING:
    from conveyor.checks.base import Check
    from conveyor.targets.base import Target

POLL = 0.2  # seconds between two looks at the process


async def wait_worker_healthy(
    target: Target,
    name: str,
    *,
    min_ready: float,
    timeout: float,
    check: Check | None = None,
    interval: float = 1.0,
    healthy_threshold: int = 1,
) -> None:
    """Return once instance `name` ran `min_ready` seconds in one go and `check` passed
    `healthy_threshold` times; raise `HealthCheckError` when its process exits, restarts
    or gives up first (a crash at boot), or when `timeout` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    first = await target.status(name)
    restarts, pid = first.restarts, first.pid
    since: float | None = None  # when it was first seen running under `pid`

    async def alive() -> bool:
        status = await target.status(name)
        return status.state in (STARTING, RUNNING) and status.restarts == restarts

    while True:
        status = await target.status(name)
        now = loop.time()
        if status.restarts != restarts or (pid is not None and status.pid not in (None, pid)):
            raise HealthCheckError(
                f"its process exited and was restarted before it had run min_ready "
                f"({min_ready:g}s): a crash at start ({status.state}"
                f"{': ' + status.detail if status.detail else ''})"
            )
        if status.state not in (STARTING, RUNNING):
            raise HealthCheckError(
                f"its process is {status.state}, not running"
                f"{' (' + status.detail + ')' if status.detail else ''}; a worker must run "
                f"min_ready ({min_ready:g}s) in a row"
            )
        pid = status.pid if status.pid is not None else pid
        if status.state == RUNNING and since is None:
            since = now
        if since is not None and now - since >= min_ready:
            break
        if now >= deadline:
            raise HealthCheckError(
                f"its process did not run {min_ready:g}s in a row within deploy_timeout "
                f"({timeout:g}s); it is {status.state}"
            )
        await asyncio.sleep(POLL)
    if check is not None:
        await wait_until_healthy(
            check,
            interval=interval,
            healthy_threshold=healthy_threshold,
            timeout=max(deadline - loop.time(), 0.1),
            is_alive=alive,
        )
