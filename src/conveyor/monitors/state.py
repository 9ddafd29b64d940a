"""The life of an alert: ok -> pending -> firing -> ok (resolved), with `for:`.

Pure: the caller passes the time. A rule whose condition is met goes `pending`; once
it has been met for the rule's `hold` seconds without a break it is `firing` (at once
when `hold` is 0); the first evaluation where it is no longer met resolves it (`ok`
again). A pending alert whose condition stops is `ok` again without a word: only the
moves to `firing` and back are announced (`Transition`).

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2026, 12, 7, tzinfo=UTC)
>>> s, moved = advance(AlertState(), True, t0, 60.0, "error_rate 9%")
>>> s.state, moved
('pending', None)
>>> s, moved = advance(s, True, t0 + timedelta(seconds=60), 60.0, "error_rate 8%")
>>> s.state, moved, s.fired_at == t0 + timedelta(seconds=60)
('firing', 'firing', True)
>>> s, moved = advance(s, False, t0 + timedelta(seconds=70), 60.0, "error_rate 0%")
>>> s.state, moved
('ok', 'resolved')
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

__all__ = ["FIRING", "OK", "PENDING", "AlertState", "Transition", "advance"]

OK = "ok"
PENDING = "pending"
FIRING = "firing"
Transition = Literal["firing", "resolved"]


@dataclass(frozen=True)
class AlertState:
    """Where an alert is: `state`, since when (`since`: the condition's start while pending
    or firing, the resolution when ok), when it last fired and resolved, and the reading
    that moved it last."""

    state: str = OK
    since: datetime | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    detail: str = ""


def advance(
    current: AlertState, breached: bool, now: datetime, hold: float, detail: str
) -> tuple[AlertState, Transition | None]:
    """The state after one evaluation (`breached`: the condition is met now), and the
    announced move, if any."""
    if breached:
        if current.state == FIRING:
            return current, None
        since = current.since if current.state == PENDING and current.since else now
        if (now - since).total_seconds() >= hold:
            fired = replace(current, state=FIRING, since=since, fired_at=now, detail=detail)
            return fired, "firing"
        if current.state == PENDING:
            return current, None
        return replace(current, state=PENDING, since=now, detail=detail), None
    if current.state == FIRING:
        return replace(current, state=OK, since=now, resolved_at=now, detail=detail), "resolved"
    if current.state == PENDING:
        return replace(current, state=OK, since=now, detail=detail), None
    return current, None
