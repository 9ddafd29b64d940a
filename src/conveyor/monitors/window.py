"""The router's counters over a sliding window, per backend address.

The router reports cumulative counters per backend (`conveyor.routers.base.
TrafficStats`). A `CounterWindow` keeps the snapshots of the last `length` seconds
and gives what happened in between, address by address, so that a backend that is
removed (its counters gone) or registered again (its counters back at zero) does not
read as a burst or a drop. Pure: the caller passes the time (monotonic seconds).

>>> from conveyor.analysis.metrics import ReleaseStats
>>> w = CounterWindow(60.0)
>>> w.add(0.0, {"a": ReleaseStats(100, 1)})
>>> w.add(30.0, {"a": ReleaseStats(150, 6), "b": ReleaseStats(10, 0)})
>>> w.add(70.0, {"a": ReleaseStats(200, 16), "b": ReleaseStats(20, 0)})
>>> w.total()
ReleaseStats(requests=120, errors=15, latency=None)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from conveyor.analysis.metrics import ReleaseStats

__all__ = ["CounterWindow"]


class CounterWindow:
    """Snapshots of per-address cumulative counters, `length` seconds of them."""

    def __init__(self, length: float) -> None:
        self.length = length
        self._snapshots: deque[tuple[float, Mapping[str, ReleaseStats]]] = deque()

    def add(self, now: float, counters: Mapping[str, ReleaseStats]) -> None:
        """Take a snapshot; keep the newest one at least `length` old as the window's start."""
        self._snapshots.append((now, counters))
        while len(self._snapshots) >= 2 and now - self._snapshots[1][0] >= self.length:
            self._snapshots.popleft()

    @property
    def ready(self) -> bool:
        """Whether there is anything to judge: two snapshots at least (an agent that just
        started has one, and no traffic to speak of yet)."""
        return len(self._snapshots) >= 2

    def total(self) -> ReleaseStats:
        """What every address saw between the window's start and the latest snapshot
        (the first snapshot: nothing yet)."""
        if len(self._snapshots) < 2:
            return ReleaseStats.zero()
        start, latest = self._snapshots[0][1], self._snapshots[-1][1]
        total: ReleaseStats | None = None
        for address, now in latest.items():
            before = start.get(address)
            seen = now if before is None else now.since(before)
            total = seen if total is None else total + seen
        return total if total is not None else ReleaseStats.zero()
