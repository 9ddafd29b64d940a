"""What runs on an environment's hosts, asked host by host (`conveyor status`).

A host that cannot be reached does not hide the others: its name and the
reason are a warning, and its instances show the process state `unreachable`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime
    from conveyor.targets.base import InstanceStatus
    from conveyor.targets.ssh import SshTarget

UNREACHABLE = "unreachable"  # the process state of an instance on a host that did not answer


@dataclass(frozen=True)
class HostsView:
    """The processes of every host that answered, and the hosts that did not."""

    processes: dict[str, InstanceStatus] | None  # None: no host could be asked at all
    unreachable: frozenset[str] = frozenset()
    warnings: tuple[str, ...] = field(default_factory=tuple)


async def observe_hosts(target: SshTarget) -> HostsView:
    """Every host's programs at the same time; a host's error becomes a warning."""
    names = target.hosts()
    found = await asyncio.gather(
        *(target.statuses_on(name) for name in names), return_exceptions=True
    )
    processes: dict[str, InstanceStatus] = {}
    unreachable: set[str] = set()
    warnings: list[str] = []
    for name, result in zip(names, found, strict=True):
        if isinstance(result, ConveyorError):
            unreachable.add(name)
            warnings.append(f"{result.message}; its instances are shown as {UNREACHABLE}")
        elif isinstance(result, BaseException):
            raise result
        else:
            processes.update(result)
    return HostsView(processes, frozenset(unreachable), tuple(warnings))


async def observe_environments(rt: Runtime, names: list[str]) -> dict[str, HostsView]:
    """The `HostsView` of each environment of `names` whose target is `ssh`."""
    from conveyor.targets.ssh import SshTarget

    views: dict[str, HostsView] = {}
    for name in names:
        if rt.environment(name).target == "local":
            continue
        recorded = rt.store.list_instances(environment=name) or rt.store.list_accessories(name)
        if not recorded:
            views[name] = HostsView({})  # nothing recorded there: no host to ask
            continue
        try:
            target = rt.target_for(name)
        except ConveyorError as error:  # e.g. its inventory file is missing
            views[name] = HostsView(None, warnings=(f"cannot ask its hosts: {error.message}",))
            continue
        if isinstance(target, SshTarget):
            views[name] = await observe_hosts(target)
    return views
