"""`conveyor lock status|acquire|release ENV`."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime

import typer

from conveyor.cli.context import JsonOption, runtime
from conveyor.cli.output import emit_json, iso, local_time, say

app = typer.Typer(help="Hold or release an environment's deploy lock.", no_args_is_help=True)


@app.command("status")
def lock_status(
    environment: str = typer.Argument(..., help="Environment."), as_json: bool = JsonOption
) -> None:
    """Who holds the lock, since when, for which deployment."""
    rt = runtime(defer_unset=True)
    rt.environment(environment)
    lock = rt.store.get_lock(environment)
    if as_json:
        emit_json(
            None
            if lock is None
            else {
                "environment": lock.environment,
                "holder": lock.holder,
                "acquired_at": iso(lock.acquired_at),
                "deployment_id": lock.deployment_id,
                "message": lock.message,
                "pid": lock.pid,
                "hostname": lock.hostname,
            }
        )
        return
    if lock is None:
        say(f"{environment} is not locked")
        return
    what = f"deployment {lock.deployment_id}" if lock.deployment_id else "by hand"
    say(
        f"{environment} is locked by {lock.holder} since {local_time(lock.acquired_at)} "
        f"({what}): {lock.message or 'no message'}"
    )


@app.command("acquire")
def lock_acquire(
    environment: str = typer.Argument(..., help="Environment."),
    message: str | None = typer.Option(None, "--message", "-m", help="Why (shown to others)."),
) -> None:
    """Lock ENVIRONMENT so nobody deploys to it until it is released."""
    from conveyor.store.records import LockRecord

    rt = runtime(defer_unset=True)
    rt.environment(environment)
    rt.store.acquire_lock(
        LockRecord(
            environment=environment,
            holder=rt.user,
            acquired_at=datetime.now(UTC),
            message=message,
            pid=None,
            hostname=socket.gethostname(),
        )
    )
    rt.store.add_event("lock", f"locked by {rt.user}: {message or ''}", environment)
    say(f"locked {environment}")


@app.command("release")
def lock_release(environment: str = typer.Argument(..., help="Environment.")) -> None:
    """Release the lock (also a stale one left by a killed deploy: resume or abort next)."""
    from conveyor.engine.unfinished import process_alive
    from conveyor.errors import ConveyorError

    rt = runtime(defer_unset=True)
    rt.environment(environment)
    lock = rt.store.get_lock(environment)
    if lock is None:
        say(f"{environment} is not locked")
        return
    if lock.deployment_id and lock.pid and process_alive(lock) and lock.pid != os.getpid():
        raise ConveyorError(
            f"deployment {lock.deployment_id} is running (pid {lock.pid}); "
            "its lock is released when it ends"
        )
    rt.store.release_lock(environment)
    rt.store.add_event("unlock", f"lock released by {rt.user}", environment)
    say(f"released the lock on {environment}")
