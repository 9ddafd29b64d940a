"""Custom metric checks: the spec, the judge's decisions and messages, records and replay."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

import pytest

from conveyor.analysis import (
    Analysis,
    AnalysisSpec,
    AnalysisSpecError,
    CommandOutput,
    Decision,
    HttpJson,
    MetricCheck,
    MetricReading,
    PrometheusQuery,
    ReleaseStats,
    Verdict,
    apply_overrides,
    parse_condition,
    replay,
)

PROMETHEUS = {"url": "http://127.0.0.1:9090", "query": "sum(rate(errors[1m]))"}
ERRORS = {"name": "checkout_error_rate", "prometheus": PROMETHEUS, "condition": "< 0.01"}


def spec(*metrics: Mapping[str, object], **changes: object) -> AnalysisSpec:
    return AnalysisSpec.from_dict(
        {
            "duration": "3s",
            "max_duration": "6s",
            "min_requests": 1,
            "comparative": False,
            "metrics": list(metrics),
            **changes,
        }
    )


def run(
    analysis: Analysis, values: Sequence[Mapping[str, float | MetricReading | None] | None]
) -> list[Verdict]:
    """One snapshot per second, 10 canary requests each; `values[0]` goes with the first one."""
    return [
        analysis.observe(float(t), {"canary": ReleaseStats(10 * t, 0)}, v)
        for t, v in enumerate(values)
    ]


def test_spec_reads_and_writes_metrics() -> None:
    entries = [
        {**ERRORS, "failure_limit": 2, "error_limit": 3},
        {
            "name": "p99_checkout",
            "http": {"url": "https://stats.example/api", "path": "data.p99", "timeout": "2s"},
            "condition": "<= 800ms",
        },
        {"name": "queue_depth", "command": ["./depth", "--queue", "orders"], "condition": "< 100"},
        {
            "name": "disk_free",
            "command": {"run": "df --output=pcent / | tail -1 | tr -d ' %'", "timeout": "3s"},
            "condition": "> 10",
        },
    ]
    analysis_spec = spec(*entries)
    first, second, third, fourth = analysis_spec.metrics
    assert first == MetricCheck(
        "checkout_error_rate",
        PrometheusQuery(PROMETHEUS["url"], PROMETHEUS["query"], 5.0),
        parse_condition("< 0.01"),
        failure_limit=2,
        error_limit=3,
    )
    assert second.source == HttpJson("https://stats.example/api", "data.p99", (), 2.0)
    assert second.condition.value == 0.8 and str(second.condition) == "<= 800ms"
    assert third.source == CommandOutput(("./depth", "--queue", "orders"))
    assert isinstance(fourth.source, CommandOutput) and fourth.source.timeout == 3.0
    data = analysis_spec.to_dict()
    assert data["metrics"][0] == {
        "name": "checkout_error_rate",
        "prometheus": {**PROMETHEUS, "timeout": 5.0},
        "condition": "< 0.01",
        "failure_limit": 2,
        "error_limit": 3,
    }
    assert data["metrics"][2]["command"] == {
        "run": ["./depth", "--queue", "orders"],
        "timeout": 10.0,
    }
    assert AnalysisSpec.from_dict(json.loads(json.dumps(data))) == analysis_spec
    assert AnalysisSpec().to_dict()["metrics"] == []


def test_secrets_are_redacted_in_the_written_spec() -> None:
    entry = {
        "name": "api_errors",
        "http": {
            "url": "https://bot:hunter2@stats.example/api",
            "path": "errors",
            "headers": {"Authorization": "Bearer s3cret"},
        },
        "condition": "< 5",
    }
    written = json.dumps(spec(entry).to_dict())
    assert "s3cret" not in written and "hunter2" not in written
    http = spec(entry).to_dict()["metrics"][0]["http"]
    assert http["headers"] == {"Authorization": "<redacted>"}
    assert http["url"] == "https://bot:<redacted>@stats.example/api"


def test_conditions() -> None:
    cases = {
        "< 0.01": ("<", 0.01, "< 0.01"),
        ">=5": (">=", 5.0, ">= 5"),
        "<= 2.5%": ("<=", 0.025, "<= 2.5%"),
        "< 500ms": ("<", 0.5, "< 500ms"),
        "> 1.5s": (">", 1.5, "> 1.5s"),
        "> -3": (">", -3.0, "> -3"),
        "< 1e-3": ("<", 0.001, "< 0.001"),
    }
    for text, (op, value, shown) in cases.items():
        condition = parse_condition(text)
        assert (condition.op, condition.value, str(condition)) == (op, pytest.approx(value), shown)
    assert parse_condition("< 2%").show(0.031) == "3.1%"
    assert parse_condition("< 500ms").show(0.42) == "420 ms"
    assert parse_condition("< 5").show(0.0041234) == "0.0041234"
    for bad in ("== 1", "< abc", "1 <", "< 5 requests", ""):
        with pytest.raises(AnalysisSpecError, match="expected <, <=, > or >= and a number"):
            parse_condition(bad)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {**ERRORS, "name": "Checkout"},
            "metrics[0].name: expected a name of lowercase letters, digits and _ starting with a letter, like checkout_error_rate, got 'Checkout'",
        ),
        (
            {**ERRORS, "name": "error_rate"},
            'metrics[0].name: "error_rate" is a built-in metric; give the custom metric another name',
        ),
        (
            {**ERRORS, "name": "p95"},
            'metrics[0].name: "p95" is a built-in metric; give the custom metric another name',
        ),
        (
            {**ERRORS, "name": "alpha"},
            'metrics.alpha.name: "alpha" is an analysis setting; give the custom metric another name',
        ),
        (
            {**ERRORS, "condition": "below 1"},
            'metrics.checkout_error_rate.condition: expected <, <=, > or >= and a number, like "< 0.01", "< 2%" or "< 500ms", got \'below 1\'',
        ),
        (
            {"name": "x", "prometheus": PROMETHEUS},
            'metrics.x.condition: missing, expected one like "< 0.01"',
        ),
        (
            {"name": "x", "condition": "< 1"},
            "metrics.x: expected exactly one source, prometheus, http or command; got none",
        ),
        (
            {**ERRORS, "command": "echo 1"},
            "metrics.checkout_error_rate: expected exactly one source, prometheus, http or command; got prometheus and command",
        ),
        (
            {**ERRORS, "prometheus": {"url": "http://a"}},
            "metrics.checkout_error_rate.prometheus.query: expected a non-empty string, got None",
        ),
        (
            {**ERRORS, "failure_limt": 2},
            'metrics.checkout_error_rate: unknown key "failure_limt" (did you mean "failure_limit"?); expected name, prometheus, http, command, condition, failure_limit, error_limit',
        ),
        (
            {**ERRORS, "failure_limit": 0},
            "metrics.checkout_error_rate.failure_limit: expected at least 1",
        ),
        (
            {**ERRORS, "error_limit": 1.5},
            "metrics.checkout_error_rate.error_limit: expected a whole number, got 1.5",
        ),
    ],
)
def test_bad_metric_entries_name_the_key(entry: Mapping[str, object], message: str) -> None:
    with pytest.raises(AnalysisSpecError) as caught:
        spec(entry)
    assert str(caught.value) == message


def test_metric_names_are_unique_and_metrics_is_a_list() -> None:
    with pytest.raises(AnalysisSpecError, match='two metrics are named "checkout_error_rate"'):
        spec(ERRORS, ERRORS)
    with pytest.raises(AnalysisSpecError, match="metrics: expected a list"):
        AnalysisSpec.from_dict({"metrics": ERRORS})
    assert AnalysisSpec.from_dict({"metrics": None}).metrics == ()


def test_ok_then_fail_is_explained() -> None:
    analysis = Analysis(spec(ERRORS))
    first, ok, failed = run(
        analysis,
        [
            {"checkout_error_rate": 0.5},
            {"checkout_error_rate": 0.004},
            {"checkout_error_rate": 0.031},
        ],
    )
    assert first.checks == ()  # the first snapshot only sets the starting point
    check = ok.checks[0]
    assert check.message == "checkout_error_rate 0.004 (prometheus); condition < 0.01: OK"
    assert (check.name, check.statistic, check.decision, check.value) == (
        "checkout_error_rate",
        "checkout_error_rate",
        "ok",
        0.004,
    )
    assert check.threshold == {
        "expression": "checkout_error_rate < 0.01",
        "metric": "checkout_error_rate",
        "op": "<",
        "value": 0.01,
        "unit": "",
        "failure_limit": 1,
        "error_limit": 4,
    }
    assert failed.decision is Decision.FAIL
    assert (
        failed.message
        == "FAIL after 2s: checkout_error_rate 0.031 (prometheus); condition < 0.01: FAIL"
    )
    assert failed.checks[0].observed["failures_in_a_row"] == 1


def test_failure_limit_counts_failed_readings_in_a_row() -> None:
    analysis = Analysis(
        spec(
            {**ERRORS, "condition": "< 1%", "failure_limit": 3}, duration="20s", max_duration="30s"
        )
    )
    high, low = {"checkout_error_rate": 0.05}, {"checkout_error_rate": 0.001}
    error = {"checkout_error_rate": MetricReading(None, "prometheus: connection refused")}
    verdicts = run(analysis, [low, high, high, low, high, high, error, high])
    messages = [v.checks[0].message for v in verdicts[1:]]
    assert messages == [
        "checkout_error_rate 5% (prometheus); condition < 1%: PENDING (failed 1 of failure_limit 3 times in a row)",
        "checkout_error_rate 5% (prometheus); condition < 1%: PENDING (failed 2 of failure_limit 3 times in a row)",
        "checkout_error_rate 0.1% (prometheus); condition < 1%: OK",
        "checkout_error_rate 5% (prometheus); condition < 1%: PENDING (failed 1 of failure_limit 3 times in a row)",
        "checkout_error_rate 5% (prometheus); condition < 1%: PENDING (failed 2 of failure_limit 3 times in a row)",
        "checkout_error_rate read failed: prometheus: connection refused; condition < 1%: PENDING (1 of error_limit 4 failed reads in a row)",
        "checkout_error_rate 5% (prometheus); condition < 1%: FAIL (failed 3 times in a row, failure_limit 3)",
    ]
    assert verdicts[-1].decision is Decision.FAIL
    assert [v.decision for v in verdicts[:-1]] == [Decision.CONTINUE] * 7


def test_error_limit_counts_failed_reads_in_a_row() -> None:
    analysis = Analysis(spec({**ERRORS, "error_limit": 2}, duration="20s", max_duration="30s"))
    good = {"checkout_error_rate": 0.001}
    verdicts = run(
        analysis,
        [
            good,
            None,
            {"checkout_error_rate": None},
            good,
            {"checkout_error_rate": math.nan},
            {"checkout_error_rate": MetricReading(None, "timed out after 5 s")},
        ],
    )
    assert (
        verdicts[1].checks[0].message
        == "checkout_error_rate not read yet; condition < 0.01: PENDING"
    )
    assert (
        verdicts[2].checks[0].message
        == "checkout_error_rate read failed: read failed; condition < 0.01: PENDING (1 of error_limit 2 failed reads in a row)"
    )
    assert verdicts[3].checks[0].decision == "ok"
    assert (
        verdicts[4].checks[0].message
        == "checkout_error_rate read failed: not a finite number: nan; condition < 0.01: PENDING (1 of error_limit 2 failed reads in a row)"
    )
    assert verdicts[5].decision is Decision.FAIL
    assert (
        verdicts[5].message
        == "FAIL after 5s: checkout_error_rate read failed: timed out after 5 s; condition < 0.01: FAIL (2 failed reads in a row, error_limit 2)"
    )
    assert verdicts[5].checks[0].observed["last_value"] == 0.001


def test_a_metric_without_a_good_reading_keeps_the_analysis_from_passing() -> None:
    analysis = Analysis(
        spec(ERRORS, {"name": "queue_depth", "command": "depth", "condition": "< 100"})
    )
    both = {"checkout_error_rate": 0.001, "queue_depth": 3}
    verdicts = run(analysis, [both, both, both, {"checkout_error_rate": 0.001}, both])
    assert verdicts[3].decision is Decision.CONTINUE
    assert (
        verdicts[3].message
        == "CONTINUE at 3s of 3s: 1 of 2 checks ok; pending: queue_depth; canary 30 requests"
    )
    assert (
        verdicts[3].checks[1].message
        == "queue_depth not read at this snapshot; condition < 100: PENDING"
    )
    assert verdicts[4].decision is Decision.PASS
    assert verdicts[4].message == "PASS after 4s: 2 checks ok; canary 40 requests"

    stuck = Analysis(spec(ERRORS))
    last = run(stuck, [None] * 8)[-1]
    assert last.decision is Decision.INCONCLUSIVE
    assert (
        last.message
        == "INCONCLUSIVE after 6s (max_duration 6s): pending: checkout_error_rate; on_inconclusive: pause"
    )


def test_values_that_are_not_numbers_are_refused() -> None:
    analysis = Analysis(spec(ERRORS))
    with pytest.raises(TypeError, match="a metric reading is a number or None"):
        analysis.observe(0.0, {"canary": ReleaseStats(0, 0)}, {"checkout_error_rate": "0.1"})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        analysis.observe(0.0, {"canary": ReleaseStats(0, 0)}, {"checkout_error_rate": True})


def test_records_hold_the_readings_and_replay_rejudges_them() -> None:
    analysis = Analysis(
        spec({**ERRORS, "failure_limit": 2}, {"name": "unused", "command": "x", "condition": "> 0"})
    )
    run(
        analysis,
        [
            {"checkout_error_rate": 0.012, "extra": 1.0},
            {"checkout_error_rate": 0.015, "unused": 1},
            {"checkout_error_rate": None, "unused": 1},
            {"checkout_error_rate": MetricReading(None, "HTTP 503"), "unused": 1},
            {"checkout_error_rate": 0.018, "unused": 1},
            {"checkout_error_rate": 0.019, "unused": 1},
        ],
    )
    assert analysis.verdict.decision is Decision.FAIL
    assert analysis.verdict.elapsed == 4.0  # failed reads in between do not reset the run
    records = json.loads(json.dumps([r.to_dict() for r in analysis.records]))
    assert records[0]["metrics"] == {"checkout_error_rate": 0.012, "extra": 1.0}
    assert "metric_errors" not in records[0]
    assert records[2]["metrics"] == {"checkout_error_rate": None, "unused": 1.0}
    assert "metric_errors" not in records[2]
    assert records[3]["metric_errors"] == {"checkout_error_rate": "HTTP 503"}

    same = replay(records)
    assert [r.verdict.to_dict() for r in same.records] == [r["verdict"] for r in records]
    assert same.records[3].metrics["checkout_error_rate"] == MetricReading(None, "HTTP 503")

    looser = replay(records, ["checkout_error_rate<0.02"])
    assert looser.spec.metric("checkout_error_rate").condition == parse_condition("< 0.02")  # type: ignore[union-attr]
    assert looser.verdict.decision is Decision.PASS
    assert looser.verdict.message == "PASS after 4s: 2 checks ok; canary 40 requests"

    patient = replay(records, ["checkout_error_rate.failure_limit=3"])
    assert patient.verdict.decision is Decision.CONTINUE
    impatient = replay(records, ["checkout_error_rate.error_limit=2"])
    assert impatient.verdict.decision is Decision.FAIL
    assert impatient.verdict.elapsed == 3.0
    assert "2 failed reads in a row, error_limit 2" in impatient.verdict.message

    without = replay(records, ["checkout_error_rate=off", "unused=off"])
    assert without.spec.metrics == ()
    assert without.verdict.decision is Decision.PASS
    assert replay(records, ["metrics=off"]).spec.metrics == ()


def test_metric_overrides_are_checked() -> None:
    base = spec(ERRORS)
    assert str(apply_overrides(base, ["checkout_error_rate <= 2%"]).metrics[0].condition) == "<= 2%"
    cases = {
        "checkout_error_rate=0.02": '--set "checkout_error_rate=0.02": a condition on checkout_error_rate compares with <, <=, > or >= (like "checkout_error_rate<0.02"), and "checkout_error_rate=off" removes the check',
        "checkout_error_rate<lots": '--set "checkout_error_rate<lots": expected <, <=, > or >= and a number, like "< 0.01", "< 2%" or "< 500ms", got \'<lots\'',
        "checkout_error_rate.limit=3": '--set "checkout_error_rate.limit=3": expected "checkout_error_rate<0.02", "checkout_error_rate=off", "checkout_error_rate.failure_limit=3" or "checkout_error_rate.error_limit=2"',
        "checkout_error_rate.failure_limit=0": "metrics.checkout_error_rate.failure_limit: expected at least 1",
        "checkout_eror_rate<2": '--set "checkout_eror_rate<2": unknown metric "checkout_eror_rate" (did you mean "checkout_error_rate"?); expected error_rate, p50, p95, p99, requests or a custom metric (checkout_error_rate)',
    }
    for override, message in cases.items():
        with pytest.raises(AnalysisSpecError) as caught:
            apply_overrides(base, [override])
        assert str(caught.value) == message
    # Built-in thresholds still work beside custom metrics.
    assert [str(t) for t in apply_overrides(base, ["error_rate<2%"]).thresholds] == [
        "error_rate < 2%"
    ]
