"""Threshold expressions, spec dictionaries and `--set` overrides."""

from __future__ import annotations

import json

import pytest

from conveyor.analysis import (
    AnalysisSpec,
    AnalysisSpecError,
    ComparativeSpec,
    apply_overrides,
    parse_threshold,
)


@pytest.mark.parametrize(
    ("text", "metric", "op", "value", "shown"),
    [
        ("error_rate < 1%", "error_rate", "<", 0.01, "error_rate < 1%"),
        ("error_rate<0.5%", "error_rate", "<", 0.005, "error_rate < 0.5%"),
        ("  error_rate <= 2 % ", "error_rate", "<=", 0.02, "error_rate <= 2%"),
        ("error_rate<.5%", "error_rate", "<", 0.005, "error_rate < 0.5%"),
        ("p95 < 500ms", "p95", "<", 500.0, "p95 < 500ms"),
        ("p95<0.5s", "p95", "<", 500.0, "p95 < 0.5s"),
        ("p99 <= 1.5s", "p99", "<=", 1500.0, "p99 <= 1.5s"),
        ("p50>=20ms", "p50", ">=", 20.0, "p50 >= 20ms"),
        ("p90 < 250 ms", "p90", "<", 250.0, "p90 < 250ms"),
        ("requests >= 1000", "requests", ">=", 1000.0, "requests >= 1000"),
        ("requests>50", "requests", ">", 50.0, "requests > 50"),
    ],
)
def test_parse_threshold(text: str, metric: str, op: str, value: float, shown: str) -> None:
    threshold = parse_threshold(text)
    assert (threshold.metric, threshold.op) == (metric, op)
    assert threshold.value == pytest.approx(value)
    assert str(threshold) == shown
    assert parse_threshold(shown) == threshold


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "error_rate < 1",
            'threshold "error_rate < 1": expected a percentage like "1%" for error_rate, got "1"',
        ),
        (
            "error_rate < 1ms",
            'threshold "error_rate < 1ms": expected a percentage like "1%" for error_rate,'
            ' got "1ms"',
        ),
        (
            "p95 < 500",
            'threshold "p95 < 500": expected a latency like "500ms" or "1.5s" for p95, got "500"',
        ),
        (
            "p95 < 5%",
            'threshold "p95 < 5%": expected a latency like "500ms" or "1.5s" for p95, got "5%"',
        ),
        (
            "requests >= 10s",
            'threshold "requests >= 10s": expected a whole number like "1000" for requests,'
            ' got "10s"',
        ),
        ("requests >= 10.5", 'threshold "requests >= 10.5": requests is a whole number'),
        (
            "eror_rate < 1%",
            'threshold "eror_rate < 1%": unknown metric "eror_rate" (did you mean "error_rate"?);'
            " expected one of error_rate, p50, p95, p99, requests",
        ),
        (
            "latency < 1s",
            'threshold "latency < 1s": unknown metric "latency";'
            " expected one of error_rate, p50, p95, p99, requests",
        ),
        (
            "p100 < 1s",
            'threshold "p100 < 1s": unknown metric "p100";'
            " expected one of error_rate, p50, p95, p99, requests",
        ),
        ("p95 == 1s", 'threshold "p95 == 1s": unknown comparison "=="; expected <, <=, > or >='),
        ("p95 =< 1s", 'threshold "p95 =< 1s": unknown comparison "=<"; expected <, <=, > or >='),
        (
            "error_rate < 120%",
            'threshold "error_rate < 120%": an error rate is at most 100%',
        ),
        (
            "< 1%",
            'threshold "< 1%": expected "<metric> <op> <value>", like "error_rate < 1%"'
            ' or "p95 < 500ms"',
        ),
        (
            "",
            'threshold "": expected "<metric> <op> <value>", like "error_rate < 1%" or "p95 < 500ms"',
        ),
    ],
)
def test_parse_threshold_errors(text: str, message: str) -> None:
    with pytest.raises(AnalysisSpecError) as caught:
        parse_threshold(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "observed", "holds"),
    [
        ("error_rate < 1%", 0.0099, True),
        ("error_rate < 1%", 0.01, False),
        ("error_rate <= 1%", 0.01, True),
        ("p95 > 10ms", 10.0, False),
        ("p95 >= 10ms", 10.0, True),
    ],
)
def test_threshold_holds(text: str, observed: float, holds: bool) -> None:
    assert parse_threshold(text).holds(observed) is holds


def test_spec_round_trips_through_json() -> None:
    spec = AnalysisSpec.from_dict(
        {
            "thresholds": ["error_rate < 1%", "p95 < 500ms"],
            "comparative": {"against": "stable", "max_relative_increase": "50%"},
            "alpha": 0.05,
            "min_requests": 200,
            "interval": "5s",
            "duration": "2m",
            "max_duration": "10m",
            "on_inconclusive": "fail",
        }
    )
    assert spec.comparative == ComparativeSpec(against="stable", max_relative_increase=0.5)
    assert (spec.interval, spec.duration, spec.max_duration) == (5.0, 120.0, 600.0)
    assert AnalysisSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert AnalysisSpec.from_dict({"comparative": None}).comparative is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"alpah": 0.1}, 'unknown analysis setting "alpah" (did you mean "alpha"?)'),
        ({"alpha": 2}, "alpha: expected a probability in (0, 1), got 2.0"),
        ({"duration": "soon"}, 'duration: expected a duration like "5s", got "soon"'),
        (
            {"duration": "10m", "max_duration": "5m"},
            "max_duration: expected a duration at least `duration`",
        ),
        (
            {"on_inconclusive": "retry"},
            'on_inconclusive: expected "pause" or "fail", got \'retry\'',
        ),
        (
            {"comparative": {"against": "prod"}},
            'comparative.against: expected "baseline" or "stable", got "prod"',
        ),
        (
            {"comparative": {"tolerance": 1}},
            'unknown analysis setting "comparative.tolerance"'
            ' (did you mean "max_relative_increase"?)',
        ),
        ({"thresholds": "error_rate<1%"}, 'thresholds: expected a list like ["error_rate < 1%"]'),
        ({"min_requests": "1.5"}, "min_requests: expected a whole number, got '1.5'"),
    ],
)
def test_spec_errors_name_the_setting(data: dict[str, object], message: str) -> None:
    with pytest.raises(AnalysisSpecError) as caught:
        AnalysisSpec.from_dict(data)
    assert str(caught.value) == message


def test_overrides() -> None:
    spec = AnalysisSpec.from_dict({"thresholds": ["error_rate < 1%", "p95 < 500ms"]})
    changed = apply_overrides(
        spec,
        [
            "error_rate<2%",
            "p95=off",
            "p99 < 1s",
            "alpha=5%",
            "duration=2m",
            "max_duration=10m",
            "max_relative_increase=0.5",
            "comparative.latency=off",
            "latency_quantile=p99",
            "on_inconclusive=fail",
        ],
    )
    assert [str(t) for t in changed.thresholds] == ["error_rate < 2%", "p99 < 1s"]
    assert (changed.alpha, changed.duration, changed.max_duration) == (0.05, 120.0, 600.0)
    assert changed.comparative == ComparativeSpec(
        latency=False, max_relative_increase=0.5, latency_quantile=0.99
    )
    assert changed.on_inconclusive == "fail"
    assert apply_overrides(spec, ["comparative=off"]).comparative is None
    assert spec.thresholds[0] == parse_threshold("error_rate < 1%")  # unchanged


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "fast",
            '--set "fast": expected a threshold like "error_rate<2%" or a setting like "alpha=0.05"',
        ),
        (
            "error_rate=on",
            '--set "error_rate=on": a threshold compares with <, <=, > or >= (like "error_rate<2%"),'
            ' and "error_rate=off" removes the thresholds on error_rate',
        ),
        (
            "latency=off",
            'unknown analysis setting "latency" (did you mean "comparative.latency"?)',
        ),
        ("alfa=0.1", 'unknown analysis setting "alfa" (did you mean "alpha"?)'),
        (
            "error_rate < 2",
            'threshold "error_rate < 2": expected a percentage like "1%" for error_rate, got "2"',
        ),
    ],
)
def test_override_errors(override: str, message: str) -> None:
    with pytest.raises(AnalysisSpecError) as caught:
        apply_overrides(AnalysisSpec(), [override])
    assert str(caught.value) == message
