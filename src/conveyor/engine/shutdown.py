"""`conveyor shutdown`: stop everything Conveyor runs on this machine for the project.

Each environment with instances goes `down` first (drained, stopped, its
routes removed, recorded in its history as a `down` deployment, so that the
next deploy starts from a clean state); then supervisord is shut down, which
stops what still runs under it (Caddy, HAProxy, rollback-window timers) before
it exits, and its program files are removed so that nothing comes back by
itself. The next `conveyor deploy` starts the platform again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from conveyor.engine.deployments import check_unfinished, down
from conveyor.engine.runtime import Runtime
from conveyor.targets.base import RUNNING, STARTING
from conveyor.targets.supervisor import pid_alive

Progress = Callable[[str], None]

EXIT_WAIT_S = 10.0  # how long a stopped process may take to be gone from the process table
# What each owner of a supervisord program is, for people.
KINDS = {
    "instance": "instance",
    "accessory": "accessory",
    "caddy": "router",
    "haproxy": "router",
    "timer": "timer",
    "agent": "agent",
}


@dataclass(frozen=True)
class Stopped:
    """One process that was stopped."""

    kind: str  # instance | accessory | router | timer | agent | supervisord | program
    name: str
    pid: int | None
    gone: bool = True  # no longer in the process table afterwards


@dataclass
class ShutdownReport:
    project: str
    stopped: list[Stopped] = field(default_factory=list)
    downs: dict[str, str] = field(default_factory=dict)  # environment -> `down` deployment

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "stopped": [asdict(s) for s in self.stopped],
            "down": self.downs,
        }


def check_idle(rt: Runtime) -> None:
    """Refuse while any environment has an unfinished deployment or a held lock."""
    for environment in rt.loaded.config.environments:
        check_unfinished(rt, environment)


def what_runs(rt: Runtime) -> list[Stopped]:
    """The processes a shutdown would stop now (empty when supervisord is not running)."""
    supervisor = rt.supervisor
    pid = supervisor.supervisord_pid()
    if pid is None or not supervisor.is_running():
        return []
    running = [
        Stopped(KINDS.get(p.owner, "program"), p.status.name, p.status.pid)
        for p in supervisor.all_programs()
        if p.status.state in (RUNNING, STARTING)
    ]
    return [*running, Stopped("supervisord", "supervisord", pid)]


async def shutdown(rt: Runtime, progress: Progress) -> ShutdownReport:
    """Stop every instance, router and supervisord of this project; report what stopped."""
    check_idle(rt)
    report = ShutdownReport(rt.loaded.config.project)
    processes = await asyncio.to_thread(what_runs, rt)
    if not processes:
        return report
    for environment in rt.loaded.config.environments:
        if rt.store.list_instances(environment=environment) or rt.store.current_releases(
            environment
        ):
            progress(f"stopping the instances of {environment}")
            record = await down(rt, environment, progress, reason="conveyor shutdown")
            if record is not None:
                report.downs[environment] = record.id
    progress("stopping the routers and supervisord")
    await asyncio.to_thread(rt.supervisor.shutdown, forget_programs=True)
    gone = await asyncio.to_thread(_wait_gone, [p.pid for p in processes if p.pid])
    report.stopped = [
        Stopped(p.kind, p.name, p.pid, gone=p.pid is None or p.pid in gone) for p in processes
    ]
    return report


def _wait_gone(pids: list[int]) -> set[int]:
    """The pids among `pids` that are gone within `EXIT_WAIT_S`."""
    deadline = time.monotonic() + EXIT_WAIT_S
    left = set(pids)
    while left and time.monotonic() < deadline:
        left = {pid for pid in left if pid_alive(pid)}
        if left:
            time.sleep(0.05)
    return set(pids) - left
