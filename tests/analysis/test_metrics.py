"""Histograms, cumulative counters and their JSON form; the modules' doctests."""

from __future__ import annotations

import doctest
import importlib
import itertools
import json

import pytest

from conveyor.analysis import DEFAULT_BOUNDS_MS, Histogram, ReleaseStats

MODULES = [
    "custom",
    "judges",
    "metrics",
    "replay",
    "runner",
    "sequential",
    "spec",
    "text",
    "thresholds",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(f"conveyor.analysis.{name}")
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0


def test_default_bounds_hold_the_usual_thresholds() -> None:
    assert list(DEFAULT_BOUNDS_MS) == sorted(set(DEFAULT_BOUNDS_MS))
    for ms in (1, 5, 10, 20, 25, 50, 100, 150, 200, 250, 300, 400, 500, 1000, 1500, 2000, 5000):
        assert float(ms) in DEFAULT_BOUNDS_MS
    ratios = [b / a for a, b in itertools.pairwise(DEFAULT_BOUNDS_MS)]
    assert max(ratios) <= 1.2 + 1e-9
    assert (DEFAULT_BOUNDS_MS[0], DEFAULT_BOUNDS_MS[-1]) == (0.1, 100_000.0)


def test_histogram_counts_and_quantiles() -> None:
    h = Histogram.from_samples([5.0] * 90 + [100.0] * 9 + [400.0])
    assert h.total == 100
    assert h.count_above(5.0) == 10
    assert h.count_above(100.0) == 1
    assert h.count_above(500.0) == 0
    assert h.quantile(0.5) == pytest.approx(4.5 + 0.5 * (50 / 90))  # bucket (4.5, 5]
    assert h.quantile(0.95) == pytest.approx(90 + 10 * (5 / 9))  # bucket (90, 100]
    assert h.bound_at_or_above(100.0) == 100.0
    assert h.bound_at_or_above(101.0) == 110.0
    assert h.bound_at_or_above(200_000.0) is None
    assert Histogram.empty().quantile(0.5) is None
    with pytest.raises(ValueError, match="not a bound"):
        h.count_above(101.0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        h.quantile(1.0)


def test_slow_latencies_fall_in_the_last_bucket() -> None:
    h = Histogram.from_samples([200_000.0, 300_000.0])
    assert h.counts[-1] == 2
    assert h.quantile(0.5) == 100_000.0  # a lower bound of the truth


def test_histogram_json_is_compact_and_round_trips() -> None:
    h = Histogram.from_samples([30.0, 32.0, 45.0, 45.0])
    data = h.to_dict()
    assert data == {"offset": DEFAULT_BOUNDS_MS.index(30.0), "counts": [1, 1, 0, 2]}
    assert Histogram.from_dict(json.loads(json.dumps(data))) == h
    assert Histogram.from_dict(Histogram.empty().to_dict()) == Histogram.empty()
    custom = Histogram.from_samples([1, 7, 70], bounds=(5.0, 50.0))
    assert custom.counts == (1, 1, 1)
    assert custom.to_dict() == {"bounds": [5.0, 50.0], "offset": 0, "counts": [1, 1, 1]}
    assert Histogram.from_dict(custom.to_dict()) == custom


def test_histogram_validation() -> None:
    with pytest.raises(ValueError, match="needs 3 counts"):
        Histogram((1.0, 2.0), (0, 0))
    with pytest.raises(ValueError, match="increasing"):
        Histogram((2.0, 1.0), (0, 0, 0))
    with pytest.raises(ValueError, match="negative"):
        Histogram((1.0,), (0, -1))
    with pytest.raises(ValueError, match=">= 0"):
        Histogram.from_samples([float("nan")])
    with pytest.raises(ValueError, match="different bucket bounds"):
        _ = Histogram.empty() + Histogram.empty((1.0,))


def test_release_stats_intervals_and_counter_resets() -> None:
    first = ReleaseStats(0, 0).advance(100, 2, [10.0] * 100)
    second = first.advance(50, 1, [400.0] * 50)
    step = second.since(first)
    assert (step.requests, step.errors) == (50, 1)
    assert step.latency is not None and step.latency.count_above(300.0) == 50
    assert first + step == second
    # The router restarted: its counters start again from zero.
    restarted = ReleaseStats(0, 0).advance(30, 0, [10.0] * 30)
    assert restarted.since(second) == restarted
    # Latency counters only: still a restart.
    odd = ReleaseStats(second.requests + 5, second.errors, Histogram.from_samples([10.0]))
    assert odd.since(second) == odd
    assert second.error_rate == pytest.approx(3 / 150)
    assert ReleaseStats(0, 0).error_rate is None
    assert ReleaseStats.from_dict(json.loads(json.dumps(second.to_dict()))) == second
    assert ReleaseStats.from_dict({"requests": 3, "errors": 0}) == ReleaseStats(3, 0)
    with pytest.raises(ValueError, match="2 errors out of 1 requests"):
        ReleaseStats(1, 2)
