"""The pure parts of monitors: a rule's expression, its window of counters, and the
state machine ok -> pending -> firing -> resolved, driven by a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conveyor.analysis import AnalysisSpecError, Histogram, ReleaseStats
from conveyor.monitors.rules import measure, parse_rule
from conveyor.monitors.state import FIRING, OK, PENDING, AlertState, advance
from conveyor.monitors.window import CounterWindow

T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


class Clock:
    """A fake clock: `tick` moves it on."""

    def __init__(self) -> None:
        self.now = T0

    def tick(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def run(readings: list[tuple[float, bool]], hold: float) -> list[tuple[str, str | None]]:
    """Feed (seconds since the previous reading, breached) readings; the states and moves."""
    clock, state, seen = Clock(), AlertState(), []
    for step, breached in readings:
        state, moved = advance(state, breached, clock.tick(step), hold, "reading")
        seen.append((state.state, moved))
    return seen


def test_fires_after_holding_for_its_duration_and_resolves_once() -> None:
    seen = run([(10, True), (10, True), (280, True), (10, True), (10, True), (10, False)], 300.0)
    assert seen == [
        (PENDING, None),
        (PENDING, None),
        (PENDING, None),  # 290 s after the first breach
        (FIRING, "firing"),  # 300 s
        (FIRING, None),  # announced once
        (OK, "resolved"),
    ]


def test_a_break_while_pending_starts_the_duration_again_without_a_word() -> None:
    seen = run([(1, True), (200, True), (1, False), (1, True), (200, True), (100, True)], 300.0)
    assert [moved for _, moved in seen] == [None, None, None, None, None, "firing"]
    assert seen[2] == (OK, None)


def test_without_for_it_fires_at_the_first_breach() -> None:
    assert run([(1, False), (1, True), (1, True), (1, False), (1, True)], 0.0) == [
        (OK, None),
        (FIRING, "firing"),
        (FIRING, None),
        (OK, "resolved"),
        (FIRING, "firing"),
    ]


def test_the_state_records_when() -> None:
    clock = Clock()
    state, _ = advance(AlertState(), True, clock.tick(1), 60.0, "error_rate 9%")
    started = clock.now
    state, _ = advance(state, True, clock.tick(60), 60.0, "error_rate 8%")
    assert (state.since, state.fired_at, state.detail) == (started, clock.now, "error_rate 8%")
    state, _ = advance(state, False, clock.tick(5), 60.0, "error_rate 0%")
    assert (state.state, state.resolved_at, state.fired_at) == (
        OK,
        clock.now,
        started + timedelta(seconds=60),
    )


def test_a_restored_firing_alert_is_not_announced_again() -> None:
    restored = AlertState(FIRING, T0, T0, None, "error_rate 9%")
    assert advance(restored, True, T0 + timedelta(seconds=5), 60.0, "x") == (restored, None)


@pytest.mark.parametrize(
    ("text", "metric", "hold", "shown"),
    [
        ("error_rate > 5% for 5m", "error_rate", 300.0, "error_rate > 5% for 5m"),
        ("p95 > 2s for 5m", "p95", 300.0, "p95 > 2s for 5m"),
        ("p99>800ms", "p99", 0.0, "p99 > 800ms"),
        ("requests < 1 for 10m", "requests", 600.0, "requests < 1 for 10m"),
        ("queue_depth >= 100 for 1m30s", "queue_depth", 90.0, "queue_depth >= 100 for 1m30s"),
    ],
)
def test_expressions(text: str, metric: str, hold: float, shown: str) -> None:
    rule = parse_rule(text)
    assert (rule.metric, rule.hold, str(rule)) == (metric, hold, shown)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("error_rate > 5", 'expected a percentage like "1%"'),
        ("p95 > 2 for 5m", 'expected a latency like "500ms"'),
        ("error_rate > 5% for ever", 'after "for": expected a duration'),
        ("5% > error_rate", 'expected "<metric> <op> <value> [for <duration>]"'),
        ("queue_depth == 3", 'expected "<metric> <op> <value> [for <duration>]"'),
        ("queue_depth < many", "expected <, <=, > or >= and a number"),
        ("", "expected a condition like"),
    ],
)
def test_bad_expressions_say_what_is_expected(text: str, said: str) -> None:
    with pytest.raises(AnalysisSpecError, match=r"^alert: ") as caught:
        parse_rule(text)
    assert said in str(caught.value)


def test_measure_needs_min_requests_for_rates_and_latencies() -> None:
    errors = parse_rule("error_rate > 5%")
    assert measure(errors, ReleaseStats(9, 9), 10).breached is False
    assert measure(errors, ReleaseStats(100, 6), 10).breached is True
    assert measure(errors, ReleaseStats(100, 5), 10).breached is False  # > 5%, not >=
    slow = parse_rule("p95 > 2s")
    latencies = Histogram.from_samples([2500.0] * 3 + [10.0] * 97)
    window = ReleaseStats(100, 0, latencies)
    assert measure(slow, window, 10).breached is False  # the 95th is fast
    slower = ReleaseStats(100, 0, Histogram.from_samples([2500.0] * 10 + [10.0] * 90))
    assert measure(parse_rule("p95 > 2s"), slower, 10).breached is True
    assert "no latencies" in measure(slow, ReleaseStats(100, 0), 10).detail
    quiet = parse_rule("requests < 1 for 10m")
    assert measure(quiet, ReleaseStats(0, 0), 10).breached is True


def test_the_window_counts_per_address_and_forgets_what_is_older() -> None:
    window = CounterWindow(10.0)
    window.add(0.0, {"a": ReleaseStats(100, 0)})
    assert window.total() == ReleaseStats(0, 0)
    window.add(5.0, {"a": ReleaseStats(110, 5)})
    assert window.total() == ReleaseStats(10, 5)
    # an address removed: its counters do not read as a drop; a new one counts from zero
    window.add(10.0, {"b": ReleaseStats(4, 0)})
    assert window.total() == ReleaseStats(4, 0)
    # a restarted counter (lower than before) counts from its restart
    window.add(16.0, {"a": ReleaseStats(3, 3), "b": ReleaseStats(6, 0)})
    # the window starts at t=5 now: a restarted (3, 3), b is new since then (6)
    assert window.total() == ReleaseStats(9, 3)
