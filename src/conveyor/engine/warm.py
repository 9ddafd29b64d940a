"""The end of a rollback window: warm instances whose time has passed are stopped.

A `KeepWarm` step schedules `conveyor expire-warm ENV` as a supervisord
program (the supervisor Conveyor already runs; nothing else to install). It
sleeps until the earliest `warm_until` of the environment, stops the expired
warm instances when the environment is free (a deploy in progress deals with
them itself), and exits once no warm instance is left.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime

from conveyor.engine.runtime import Runtime
from conveyor.errors import LockHeldError
from conveyor.store.records import InstanceRecord, LockRecord

RECHECK_S = 30.0  # longest sleep: picks up windows changed by later deploys


def program_name(environment: str) -> str:
    return f"expire-warm-{environment}"


def expired(rt: Runtime, environment: str, now: datetime) -> list[InstanceRecord]:
    return [
        r
        for r in rt.store.list_instances(environment=environment)
        if r.state == "warm" and r.warm_until is not None and r.warm_until <= now
    ]


def next_expiry(rt: Runtime, environment: str) -> datetime | None:
    ends = [
        r.warm_until
        for r in rt.store.list_instances(environment=environment)
        if r.state == "warm" and r.warm_until is not None
    ]
    return min(ends) if ends else None


async def stop_expired(rt: Runtime, environment: str) -> list[str]:
    """Stop the warm instances past their window; none while the environment is busy."""
    due = expired(rt, environment, datetime.now(UTC))
    if not due or rt.store.unfinished_deployment(environment) is not None:
        return []
    import socket

    lock = LockRecord(
        environment=environment,
        holder="conveyor",
        acquired_at=datetime.now(UTC),
        message="stopping instances past their rollback window",
        pid=os.getpid(),
        hostname=socket.gethostname(),
    )
    try:
        rt.store.acquire_lock(lock)
    except LockHeldError:
        return []
    try:
        router = rt.router_for(environment)
        stopped = []
        for record in expired(rt, environment, datetime.now(UTC)):
            svc = rt.loaded.config.service_for(environment, record.service)
            await router.remove(environment, record.service, record.address)
            await rt.target_for(environment).stop(record.name, svc.stop_timeout)
            rt.store.delete_instance(record.name)
            stopped.append(record.name)
        if stopped:
            rt.store.add_event(
                "expired",
                f"rollback window over: stopped {', '.join(stopped)}",
                environment,
            )
        return stopped
    finally:
        rt.store.release_lock(environment)


async def watch(rt: Runtime, environment: str) -> None:
    """Sleep until each window ends and stop what expired; return when none is left."""
    while True:
        end = next_expiry(rt, environment)
        if end is None:
            return
        wait = (end - datetime.now(UTC)).total_seconds()
        if wait > 0:
            await asyncio.sleep(min(wait + 0.05, RECHECK_S))
            continue
        if not await stop_expired(rt, environment):
            await asyncio.sleep(1.0)  # busy, or someone else stopped them: look again


def schedule(rt: Runtime, environment: str) -> None:
    """Run `watch` for the environment under supervisord (no-op when it runs already)."""
    env = {
        "CONVEYOR_HOME": str(rt.paths.home),
        "CONVEYOR_USER": "conveyor",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for key in ("CONVEYOR_STATE_URL", "PYTHONPATH"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    rt.supervisor.add_program(
        program_name(environment),
        [
            sys.executable,
            "-m",
            "conveyor",
            "--config",
            str(rt.loaded.path),
            "expire-warm",
            environment,
        ],
        cwd=rt.loaded.root,
        env=env,
        stdout_log=rt.paths.home / "logs" / f"{program_name(environment)}.log",
        stop_timeout=5.0,
        autorestart=False,
        startsecs=0,
        owner="timer",
    )
