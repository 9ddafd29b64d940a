"""Programs on the hosts that no instance record knows: stopped when a host is prepared.

A host that went away in the middle of a deployment keeps running what it ran;
the deployment took its traffic away and rolled back without it, and the stop
steps of its instances could not reach it, so their records are gone while the
programs live on (`engine.lost_hosts`). Every instance is recorded before its
program is written on a host, so a program of the project's supervisord that no
record of the state store names is one of those: it is stopped and its file
removed the next time a command prepares the hosts (deploy, resume, abort,
rollback).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.targets.ssh import SshTarget

STOP_TIMEOUT = 10.0  # seconds a stray program gets to stop before SIGKILL


async def stop_strays(target: SshTarget, recorded: Collection[str]) -> list[tuple[str, str]]:
    """Stop the programs on the target's reachable hosts that are not in `recorded`;
    (name, host) of each."""
    strays = [(s.name, target.where(s.name)) for s in await target.list()]
    strays = [(name, host) for name, host in strays if name not in recorded]
    for name, _ in strays:
        await target.stop(name, STOP_TIMEOUT)
    return strays
