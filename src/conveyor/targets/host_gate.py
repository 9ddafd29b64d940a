"""`HostGate`: at most `parallel` hosts acted on at once (`parallel:` of an environment).

Shipping, starting and stopping take a host's slot for as long as they act on
it; more work on a host that holds a slot shares it, so one host never waits
for itself, and a batch of instances on more hosts than `parallel` proceeds
`parallel` hosts at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["HostGate"]


class HostGate:
    def __init__(self, parallel: int) -> None:
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        self.parallel = parallel
        self._slots = asyncio.Semaphore(parallel)
        self._users: dict[str, int] = {}  # host -> tasks acting on it now (it holds a slot)

    @property
    def active(self) -> tuple[str, ...]:
        """The hosts acted on now."""
        return tuple(self._users)

    @contextlib.asynccontextmanager
    async def acting_on(self, host: str) -> AsyncIterator[None]:
        """Hold `host`'s slot (taking a free one first if no task holds it) while inside."""
        while host not in self._users:
            await self._slots.acquire()
            if host in self._users:  # another task took the host's slot meanwhile
                self._slots.release()
            else:
                self._users[host] = 0
        self._users[host] += 1
        try:
            yield
        finally:
            self._users[host] -= 1
            if not self._users[host]:
                del self._users[host]
                self._slots.release()
