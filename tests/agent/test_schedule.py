"""When jobs run: crontab lines (crontab's weekday numbers), time zones and intervals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conveyor.agent.schedule import cron_fields, missed, next_run

# A Sunday evening, UTC.
NOW = datetime(2026, 12, 6, 20, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "timezone", "expected"),
    [
        ("0 3 * * *", "UTC", datetime(2026, 12, 7, 3, 0, tzinfo=UTC)),
        # 03:00 in Paris is 02:00 UTC in winter.
        ("0 3 * * *", "Europe/Paris", datetime(2026, 12, 7, 2, 0, tzinfo=UTC)),
        # crontab's 0 and 7 are Sunday (APScheduler 3's 0 is Monday): next week's Sunday.
        ("0 3 * * 0", "UTC", datetime(2026, 12, 13, 3, 0, tzinfo=UTC)),
        ("0 3 * * 7", "UTC", datetime(2026, 12, 13, 3, 0, tzinfo=UTC)),
        ("0 3 * * 1", "UTC", datetime(2026, 12, 7, 3, 0, tzinfo=UTC)),
        ("0 3 * * 6", "UTC", datetime(2026, 12, 12, 3, 0, tzinfo=UTC)),
        ("0 3 * * 2-5", "UTC", datetime(2026, 12, 8, 3, 0, tzinfo=UTC)),
        ("0 21 * * 0-2", "UTC", datetime(2026, 12, 6, 21, 0, tzinfo=UTC)),  # still Sunday
        ("0 3 * * sat,sun", "UTC", datetime(2026, 12, 12, 3, 0, tzinfo=UTC)),
        ("30 2 1 * *", "UTC", datetime(2027, 1, 1, 2, 30, tzinfo=UTC)),
        # Six fields: seconds first.
        ("*/10 * * * * *", "UTC", datetime(2026, 12, 6, 20, 0, 40, tzinfo=UTC)),
    ],
)
def test_next_run_of_a_cron_schedule(schedule: str, timezone: str, expected: datetime) -> None:
    assert next_run(schedule, None, timezone, NOW) == expected


def test_next_run_of_an_interval_counts_from_the_last_start() -> None:
    assert next_run(None, 60.0, "UTC", NOW) == NOW + timedelta(seconds=60)
    last = NOW - timedelta(seconds=15)
    assert next_run(None, 60.0, "UTC", NOW, last_start=last) == last + timedelta(seconds=60)
    # Overdue (the agent was down): due now.
    assert next_run(None, 60.0, "UTC", NOW, last_start=NOW - timedelta(hours=1)) == NOW


@pytest.mark.parametrize(
    ("weekdays", "expected"),
    [
        ("*", "*"),
        ("1-5", "mon-fri"),
        ("0", "sun"),
        ("0,6", "sun,sat"),
        ("0-3", "sun,mon-wed"),
        ("0-7", "mon-sun"),
        ("5-7", "fri-sun"),
        ("*/2", "*/2"),
        ("mon-fri", "mon-fri"),
    ],
)
def test_crontab_weekday_numbers_become_names(weekdays: str, expected: str) -> None:
    assert cron_fields(f"0 3 * * {weekdays}")["day_of_week"] == expected


def test_a_backwards_range_is_refused() -> None:
    with pytest.raises(ValueError, match="ends before it starts"):
        cron_fields("0 3 * * 5-1")


@pytest.mark.parametrize(
    ("now", "last_start", "expected"),
    [
        # Due at 03:00, the agent back at 03:05 with no run since: run it now.
        (datetime(2026, 12, 7, 3, 5, tzinfo=UTC), None, True),
        (datetime(2026, 12, 7, 3, 5, tzinfo=UTC), datetime(2026, 12, 6, 3, 0, tzinfo=UTC), True),
        # It ran at 03:00: nothing missed.
        (
            datetime(2026, 12, 7, 3, 5, tzinfo=UTC),
            datetime(2026, 12, 7, 3, 0, 1, tzinfo=UTC),
            False,
        ),
        # Back after the grace (10 min): not made up, as cron would not.
        (datetime(2026, 12, 7, 3, 11, tzinfo=UTC), None, False),
        # Nothing was due in the last 10 minutes.
        (datetime(2026, 12, 7, 2, 59, tzinfo=UTC), None, False),
    ],
)
def test_a_run_missed_while_the_agent_was_down(
    now: datetime, last_start: datetime | None, expected: bool
) -> None:
    assert missed("0 3 * * *", None, "UTC", now, 600.0, last_start) is expected


def test_an_interval_is_never_made_up() -> None:
    assert not missed(None, 60.0, "UTC", NOW, 600.0, None)
