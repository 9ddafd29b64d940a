"""`conveyor logs`: the output of a service's instances, on whichever hosts they run.

Each line is prefixed with where it comes from: the instance (`web-1 | ...`) on this
machine, the host and the instance (`host2 web-3 | ...`) on other hosts. A host
that cannot be read is named in one warning and the others are still shown;
following merges every instance's new lines as they come.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

from conveyor.concurrently import every
from conveyor.errors import ConveyorError
from conveyor.targets.base import LOCAL_HOST

if TYPE_CHECKING:
    from conveyor.store.records import InstanceRecord
    from conveyor.targets.base import Target

Write = Callable[[str], None]


def prefix(instance: InstanceRecord) -> str:
    """What a line of `instance` starts with (before ` | `)."""
    if instance.host == LOCAL_HOST:
        return instance.name
    return f"{instance.host} {instance.name}"


class _Warnings:
    """One warning per host, whatever number of its instances failed."""

    def __init__(self, warn: Write) -> None:
        self._warn = warn
        self._hosts: set[str] = set()

    def host_failed(self, instance: InstanceRecord, error: ConveyorError, what: str) -> None:
        if instance.host in self._hosts:
            return
        self._hosts.add(instance.host)
        self._warn(f"{error.message}; {what}")


async def _lines(target: Target, instance: InstanceRecord, lines: int) -> list[str]:
    from conveyor.targets.ssh import SshTarget

    if isinstance(target, SshTarget):
        return await target.logs(instance.name, lines, host=instance.host)
    return await target.logs(instance.name, lines)


def _follow(target: Target, instance: InstanceRecord, lines: int) -> AsyncIterator[str]:
    from conveyor.targets.ssh import SshTarget

    if isinstance(target, SshTarget):
        return target.follow(instance.name, lines, host=instance.host)
    return target.follow(instance.name, lines)


async def tail(
    target: Target, instances: Sequence[InstanceRecord], lines: int, write: Write, warn: Write
) -> None:
    """The last `lines` lines of each instance, instance after instance (read at once)."""
    warnings = _Warnings(warn)
    found = await asyncio.gather(
        *(_lines(target, i, lines) for i in instances), return_exceptions=True
    )
    for instance, result in zip(instances, found, strict=True):
        if isinstance(result, ConveyorError):
            warnings.host_failed(instance, result, "the lines of its instances are not shown")
        elif isinstance(result, BaseException):
            raise result
        else:
            for line in result:
                write(f"{prefix(instance)} | {line}")


async def follow(
    target: Target, instances: Sequence[InstanceRecord], lines: int, write: Write, warn: Write
) -> None:
    """The last `lines` lines of each instance, then every new line of any of them as it
    is written, until interrupted (or every instance's log is lost)."""
    warnings = _Warnings(warn)

    async def one(instance: InstanceRecord) -> None:
        try:
            async for line in _follow(target, instance, lines):
                write(f"{prefix(instance)} | {line}")
        except ConveyorError as error:
            warnings.host_failed(instance, error, "the lines of its instances are not shown")
            return
        except Exception as error:  # the connection broke under the stream (asyncssh's errors)
            if instance.host == LOCAL_HOST:
                raise
            warn(f"host {instance.host}: the log of {instance.name} stopped: {error}")
            return
        if instance.host != LOCAL_HOST:
            warn(f"host {instance.host}: the log of {instance.name} stopped (connection lost?)")

    await every(*(one(i) for i in instances))
