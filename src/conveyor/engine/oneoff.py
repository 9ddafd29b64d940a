"""`conveyor run`: a one-off command in the current release of a service.

It runs where and as the service's instances do (the release directory, the
same environment variables, through the target) but attached to the
deployer's terminal, and it is recorded in the event log as a `run` event with
its command line redacted: the values of the service's secrets, and of options
named like secrets, never reach the store.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.environ import minimal_environment
from conveyor.errors import CommandNotRunError, ConveyorError, UsageError
from conveyor.redaction import env_secrets, redact_argv
from conveyor.runas import RunUser

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime
    from conveyor.ssh.hosts import HostSpec
    from conveyor.store.records import EventRecord

RUN_EVENT = "run"
EXAMPLE = "conveyor run staging web -- python manage.py createsuperuser"
# Directories of a release whose programs a one-off command finds by name, as in an
# activated virtualenv: `python manage.py ...`, `flask ...`, `prisma ...`.
RELEASE_BINS = (".venv/bin", "node_modules/.bin")


@dataclass(frozen=True)
class OneOff:
    """A resolved one-off command: what runs, where, with which variables."""

    environment: str
    service: str
    release_id: str
    release_dir: Path
    argv: list[str]
    env: dict[str, str]
    user: RunUser | None = None  # who it runs as (None: Conveyor's own user)

    @property
    def recorded_argv(self) -> list[str]:
        """The command line as the history keeps it: secrets masked."""
        return redact_argv(self.argv, env_secrets(self.env))


def prepare(rt: Runtime, environment: str, service: str, argv: list[str]) -> OneOff:
    """Resolve the environment, the service's current release and its variables.

    Raises `UsageError` (exit 2) for an unknown environment or service or no
    command, and `ConveyorError` (exit 1) when no release of the service runs
    in the environment.
    """
    from conveyor.engine.release_env import release_env, release_user

    rt.environment(environment)
    rt.loaded.config.service(service)
    if not argv:
        raise UsageError("no command given", hint=f"put it after --, e.g. {EXAMPLE}")
    release_id = rt.store.current_releases(environment).get(service)
    if release_id is None:
        raise ConveyorError(
            f"no release of {service} is running in {environment}",
            hint=f"deploy first: conveyor deploy {environment}",
        )
    release = rt.store.get_release(service, release_id)
    if release is None:
        raise ConveyorError(
            f"release {release_id} of {service}, current in {environment}, is not in the store",
            hint=f"deploy again: conveyor deploy {environment}",
        )
    release_dir = Path(release.path)
    env = release_env(rt, environment, service, release_id)
    env["PATH"] = search_path(release_dir, env.get("PATH") or minimal_environment()["PATH"])
    return OneOff(
        environment=environment,
        service=service,
        release_id=release_id,
        release_dir=release_dir,
        argv=list(argv),
        env=env,
        user=release_user(rt, environment, service, release_dir),
    )


def search_path(release_dir: Path, path: str) -> str:
    """`path` with the release's program directories (`RELEASE_BINS`) that exist first.

    >>> search_path(Path("/nonexistent"), "/usr/bin:/bin")
    '/usr/bin:/bin'
    """
    bins = [str(release_dir / d) for d in RELEASE_BINS if (release_dir / d).is_dir()]
    return os.pathsep.join([*bins, path])


def run_host(rt: Runtime, oneoff: OneOff) -> HostSpec | None:
    """The host the command runs on when its target runs instances on other hosts (the
    service's run host, as the target picks it), else None (this machine)."""
    from conveyor.targets.ssh import SshTarget

    target = rt.target_for(oneoff.environment)
    return target.command_host(oneoff.release_dir) if isinstance(target, SshTarget) else None


async def run_oneoff(
    rt: Runtime, oneoff: OneOff, announce: Callable[[str], None] | None = None
) -> int:
    """Run it attached to the terminal through the target, record a `run` event,
    and return its exit status (a shell's: 127 not found, 128+N killed by signal N).
    `announce` gets one line saying on which host it runs, when that is another one."""
    host = run_host(rt, oneoff)
    if host is not None and announce is not None:
        announce(f"running on {host.describe()} in release {oneoff.release_id} of {oneoff.service}")
    started_at = datetime.now(UTC)
    started = time.monotonic()
    try:
        exit_code = await rt.target_for(oneoff.environment).run_attached(
            oneoff.argv, oneoff.release_dir, oneoff.env, oneoff.user
        )
    except CommandNotRunError as error:  # recorded too: someone tried to run it
        record_run(rt, oneoff, error.exit_code, started_at, time.monotonic() - started, host)
        raise
    record_run(rt, oneoff, exit_code, started_at, time.monotonic() - started, host)
    return exit_code


def record_run(
    rt: Runtime,
    oneoff: OneOff,
    exit_code: int,
    started_at: datetime,
    duration_s: float,
    host: HostSpec | None = None,
) -> EventRecord:
    argv = oneoff.recorded_argv
    data: dict[str, Any] = {
        "service": oneoff.service,
        "release": oneoff.release_id,
        "argv": argv,
        "command": shlex.join(argv),
        "exit_code": exit_code,
        "user": rt.user,
        "started_at": started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration_s": round(duration_s, 3),
    }
    if host is not None:
        data["host"] = host.name
    return rt.store.add_event(
        RUN_EVENT, describe_run(data), environment=oneoff.environment, data=data
    )


def describe_run(data: dict[str, Any]) -> str:
    """One line for `history` and the event log.

    >>> describe_run({"service": "web", "command": "python manage.py createsuperuser",
    ...               "exit_code": 0})
    'run  web  "python manage.py createsuperuser"  exit 0'
    """
    where = f"  on {data['host']}" if data.get("host") else ""
    return f'run  {data["service"]}  "{data["command"]}"  exit {data["exit_code"]}{where}'


def run_json(event: EventRecord) -> dict[str, Any]:
    """A `run` event as `history --json` lists it beside the deployments."""
    data = event.data
    return {
        "id": f"run-{event.id}",
        "environment": event.environment,
        "kind": RUN_EVENT,
        "status": "succeeded" if data.get("exit_code") == 0 else "failed",
        "service": data.get("service"),
        "release": data.get("release"),
        "releases": {data.get("service"): data.get("release")},
        "command": data.get("command"),
        "argv": data.get("argv"),
        "exit_code": data.get("exit_code"),
        "user": data.get("user"),
        "started_at": data.get("started_at"),
        "finished_at": event.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration_s": data.get("duration_s"),
        "host": data.get("host") or "local",  # this machine (before hosts were recorded)
    }
