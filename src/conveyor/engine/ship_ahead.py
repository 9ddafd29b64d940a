"""Shipping a release to many hosts at once, one journaled step per host all the same.

A plan ships each release to each host in a step of its own (`ShipRelease`), all
of them first. Run one after the other, 50 hosts take 50 transfers' time. When a
ship step runs, `ShipAhead` also starts the transfers of the ship steps right
after it in the plan; the target bounds how many run at the same time (the SSH
target's `parallel`). Each of those steps then waits for its own transfer and is
journaled as before: done when its host has the release, failed (naming the
host) when its transfer failed. Transfers that no step waits for any more (an
earlier step failed, the run was interrupted) are cancelled when the run ends.
A transfer is idempotent, so a resumed deployment simply ships again what is
missing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from conveyor.engine.plan import ShipRelease, Step

Key = tuple[str, str, str]  # (service, release, host)
Transfer = Callable[[ShipRelease], Coroutine[Any, Any, None]]


def key_of(step: ShipRelease) -> Key:
    return (step.service, step.release, step.host)


def ships_after(upcoming: Sequence[Step]) -> list[ShipRelease]:
    """The ship steps that directly follow the current one (up to the first other step)."""
    ahead: list[ShipRelease] = []
    for step in upcoming:
        if not isinstance(step, ShipRelease):
            break
        ahead.append(step)
    return ahead


class ShipAhead:
    """The transfers of one executor run, started ahead of their steps."""

    def __init__(self) -> None:
        self._tasks: dict[Key, asyncio.Task[None]] = {}

    async def ship(self, step: ShipRelease, upcoming: Sequence[Step], transfer: Transfer) -> None:
        """Ship `step`'s release (or wait for the transfer started for it ahead), after
        starting the transfers of the ship steps in `upcoming` that follow it."""
        task = self._tasks.pop(key_of(step), None) or asyncio.create_task(transfer(step))
        for later in ships_after(upcoming):
            if key_of(later) not in self._tasks and key_of(later) != key_of(step):
                self._tasks[key_of(later)] = asyncio.create_task(transfer(later))
        await task

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        """Cancel the transfers no step waited for, and wait until they ended."""
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
