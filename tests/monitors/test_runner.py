"""The monitors' runner on a real state database, with a stand-in router whose counters
the test sets: alerts move, are recorded, and survive a new runner (an agent's restart)
without being announced twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor.analysis.metrics import Histogram
from conveyor.config import load_config
from conveyor.engine.runtime import Runtime
from conveyor.monitors.runner import MonitorRunner
from conveyor.routers.base import TrafficStats

CONFIG = """\
project: shop
services:
  web: {run: x}
environments:
  staging:
    listen: "127.0.0.1:18080"
    monitors:
      interval: 1s
      rules:
        errors: {alert: "error_rate > 10% for 10s", window: 5s, min_requests: 10}
        slow: {alert: "p95 > 2s"}
"""
T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


class Counters:
    """A router whose cumulative counters for one backend the test sets."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0

    def serve(self, requests: int, errors: int) -> None:
        self.requests += requests
        self.errors += errors

    async def traffic_stats(self, environment: str, service: str) -> dict[str, TrafficStats]:
        latency = Histogram.from_samples([5.0] * self.requests)
        stats = TrafficStats(
            "127.0.0.1:9000",
            requests=self.requests,
            status_2xx=self.requests - self.errors,
            status_5xx=self.errors,
            latency=latency,
        )
        return {stats.address: stats}


@pytest.fixture
def rt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    (tmp_path / "conveyor.yml").write_text(CONFIG)
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / ".conveyor"))
    runtime = Runtime.open(load_config(tmp_path / "conveyor.yml", environ={}), "tester")
    try:
        yield runtime
    finally:
        runtime.close()


def fired(rt: Runtime) -> list[str]:
    events = rt.store.list_events(environment="staging")
    return [e.kind for e in reversed(events) if e.kind.startswith("alert_")]


def rounds(
    runner: MonitorRunner, router: Counters, plan: list[tuple[int, int]], start: int = 0
) -> None:
    """One evaluation a second from `start`, after `router` served each (requests, errors)."""
    for second, (requests, errors) in enumerate(plan, start):
        router.serve(requests, errors)
        asyncio.run(runner.evaluate_rules(T0 + timedelta(seconds=second), float(second)))


def test_an_alert_fires_is_kept_and_resolves_once(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = Counters()
    monkeypatch.setattr(rt, "router_for", lambda environment: router)
    runner = MonitorRunner(rt, "staging", lambda line: None)
    runner.load()
    states = {a.name: a.state for a in rt.store.list_alerts("staging")}
    assert states == {"errors": "ok", "slow": "ok"}

    rounds(runner, router, [(0, 0)] + [(20, 5)] * 11)  # 25 % errors for 10 s
    assert fired(rt) == ["alert_firing"]
    stored = {a.name: a for a in rt.store.list_alerts("staging")}
    assert stored["errors"].state == "firing"
    assert stored["errors"].detail == "error_rate 25% (25/100 requests)"
    assert stored["errors"].expression == "error_rate > 10% for 10s"
    assert stored["slow"].state == "ok"

    # the agent restarts: a new runner takes the state from the store
    again = MonitorRunner(rt, "staging", lambda line: None)
    again.load()
    assert again.watched["errors"].state.state == "firing"
    rounds(again, router, [(20, 5)] * 3, start=12)
    assert fired(rt) == ["alert_firing"]  # not announced a second time
    rounds(again, router, [(20, 0)] * 7, start=15)  # the errors leave the 5 s window
    assert fired(rt) == ["alert_firing", "alert_resolved"]
    assert {a.name: a.state for a in rt.store.list_alerts("staging")}["errors"] == "ok"
