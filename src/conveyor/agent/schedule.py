"""When scheduled jobs run: `schedule:` (cron) and `every:` turned into APScheduler triggers.

Pure: no store, no processes. A cron schedule has the five crontab fields
(minute hour day month weekday) or six with the seconds first. Weekday numbers
follow crontab (0 and 7 are Sunday, 1 is Monday); APScheduler 3 numbers them
from Monday, so they are passed to it as names (`mon`..`sun`).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from apscheduler.triggers.base import BaseTrigger

FIELDS = ("minute", "hour", "day", "month", "day_of_week")
# crontab's weekday numbers: 0 and 7 are Sunday.
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NUMBERED = re.compile(r"^(?P<first>[0-7])(?:-(?P<last>[0-7]))?(?P<step>/[0-9]+)?$")


def cron_fields(text: str) -> dict[str, str]:
    """The CronTrigger arguments of a crontab line; `ValueError` says what is wrong.

    >>> cron_fields("30 2 * * 1-5")
    {'minute': '30', 'hour': '2', 'day': '*', 'month': '*', 'day_of_week': 'mon-fri'}
    >>> cron_fields("*/2 * * * * *")["second"]
    '*/2'
    """
    parts = text.split()
    if len(parts) not in (5, 6):
        raise ValueError(
            'expected a cron schedule of 5 fields, "minute hour day month weekday" like '
            f'"0 3 * * *" (or 6, seconds first), got {len(parts)} field'
            f"{'s' * (len(parts) != 1)}"
        )
    names = ("second", *FIELDS) if len(parts) == 6 else FIELDS
    fields = dict(zip(names, parts, strict=True))
    fields["day_of_week"] = ",".join(_weekday(w) for w in fields["day_of_week"].split(","))
    return fields


def _weekday(item: str) -> str:
    """One item of crontab's weekday list with its numbers as names."""
    match = _NUMBERED.fullmatch(item)
    if match is None:
        return item  # names, "*", "*/2": the same in both
    first, last, step = int(match["first"]), match["last"], match["step"] or ""
    if last is None:
        return _WEEKDAYS[first] + step
    end = int(last)
    if first == 0 and end >= 1:  # Sunday first: APScheduler's week starts on Monday
        if step:
            raise ValueError(f'weekdays "{item}": write a range with a step by name ("mon-fri/2")')
        if end >= 6:
            return "mon-sun"
        return f"sun,mon-{_WEEKDAYS[end]}" if end > 1 else "sun,mon"
    if first > end:
        raise ValueError(f'weekdays "{item}": the range ends before it starts')
    return f"{_WEEKDAYS[first]}-{_WEEKDAYS[end]}{step}"


def trigger(schedule: str | None, every: float | None, timezone: str) -> BaseTrigger:
    """The trigger of a job: a cron schedule in `timezone`, or every `every` seconds.

    Raises `ValueError` with a message for people when the schedule is wrong."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    zone = ZoneInfo(timezone)
    if every is not None:
        return IntervalTrigger(seconds=every, timezone=zone)
    if schedule is None:
        raise ValueError("a job needs schedule: or every:")
    fields = cron_fields(schedule)
    try:
        return CronTrigger(timezone=zone, **fields)
    except ValueError as error:
        raise ValueError(f"invalid cron schedule {schedule!r}: {error}") from None


def missed(
    schedule: str | None,
    every: float | None,
    timezone: str,
    now: datetime,
    grace: float,
    last_start: datetime | None,
) -> bool:
    """Whether a run was due in the `grace` seconds before `now` and none started since
    (the agent was down then): a cron schedule's only; an interval counts from the start.

    >>> from datetime import UTC
    >>> at = datetime(2026, 12, 7, 3, 5, tzinfo=UTC)
    >>> missed("0 3 * * *", None, "UTC", at, 600.0, None)
    True
    >>> missed("0 3 * * *", None, "UTC", at, 600.0, at.replace(minute=0, second=1))
    False
    >>> missed("0 3 * * *", None, "UTC", at.replace(minute=20), 600.0, None)
    False
    """
    if every is not None:
        return False
    since = now - timedelta(seconds=grace)
    due = trigger(schedule, None, timezone).get_next_fire_time(None, since)
    return due is not None and due <= now and (last_start is None or last_start < due)


def check_schedule(text: str) -> None:
    """Raise `ValueError` when `text` is not a cron schedule APScheduler can run."""
    trigger(text, None, "UTC")


def next_run(
    schedule: str | None,
    every: float | None,
    timezone: str,
    now: datetime,
    last_start: datetime | None = None,
) -> datetime | None:
    """When the job runs next after `now`: the cron schedule's next time, or, for `every`,
    the last start plus the interval (`now` plus it when it never ran); None: never."""
    if every is not None:
        due = (last_start or now) + timedelta(seconds=every)
        return due if due > now else now
    after = now + timedelta(microseconds=1)  # strictly after: a run due now is under way
    fire = trigger(schedule, None, timezone).get_next_fire_time(None, after)
    return None if fire is None else fire.astimezone(now.tzinfo)
