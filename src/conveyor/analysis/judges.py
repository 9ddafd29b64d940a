"""Judges: each looks at the data after a snapshot and says ok, fail or pending, and why.

- `ThresholdJudge`: an absolute limit on the canary's data since the start
  (`error_rate < 1%`, `p95 < 500ms`, `requests >= 1000`).
- `ErrorRateComparison`, `LatencyComparison`: sequential tests that the
  canary's rate of errors, or of slow requests, is no worse than the other
  release's (see `conveyor.analysis.sequential`).
- `MetricJudge`: a custom metric's latest reading (Prometheus, HTTP, command)
  against its condition, with limits on misses and failed reads in a row.

Each returns a `CheckResult`: what was observed, the threshold, the
statistic's name and value, the decision and one sentence for people.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from conveyor.analysis.custom import MetricCheck, MetricReading
from conveyor.analysis.metrics import CANARY, Histogram, ReleaseStats
from conveyor.analysis.sequential import RateRatioTest
from conveyor.analysis.text import millis, number, rate
from conveyor.analysis.thresholds import Threshold

__all__ = [
    "FAIL",
    "OK",
    "PENDING",
    "CheckResult",
    "ErrorRateComparison",
    "Judge",
    "LatencyComparison",
    "MetricJudge",
    "ThresholdJudge",
    "Window",
]

OK = "ok"
FAIL = "fail"
PENDING = "pending"  # not enough data to say


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One judge's decision after one snapshot, with everything needed to explain it."""

    name: str
    decision: str
    statistic: str
    value: float | None
    observed: dict[str, Any]
    threshold: dict[str, Any]
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "decision": self.decision,
            "statistic": self.statistic,
            "value": self.value,
            "observed": self.observed,
            "threshold": self.threshold,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class Window:
    """The data a judge sees after a snapshot.

    `canary` and `other` (the compared release, None without a comparison)
    count everything since the analysis started; `*_step` only the interval
    since the previous snapshot; `other_before` the other release from the
    start up to the previous snapshot (the latency reference). `metrics` holds
    the custom metrics read at this snapshot (a name missing: not read).
    """

    elapsed: float
    canary: ReleaseStats
    canary_step: ReleaseStats
    other: ReleaseStats | None = None
    other_step: ReleaseStats | None = None
    other_before: ReleaseStats | None = None
    metrics: Mapping[str, MetricReading] = field(default_factory=dict)


class Judge(Protocol):
    name: str

    def update(self, window: Window) -> CheckResult:
        """Take in the interval ending at this snapshot and decide."""
        ...


def _label(decision: str) -> str:
    return decision.upper()


def _shortfall(min_requests: int, counts: dict[str, int]) -> str:
    """ "canary has 40 of min_requests 100", or "" when every release has enough."""
    short = [f"{name} has {count}" for name, count in counts.items() if count < min_requests]
    return f"{', '.join(short)} of min_requests {min_requests}" if short else ""


def _quantile_name(q: float) -> str:
    return f"p{round(q * 100, 3):g}"


class ThresholdJudge:
    """An absolute limit on the canary since the start of the analysis.

    Error rate and latency limits wait for `min_requests` canary requests (one
    error in the first three requests is not a 33% error rate); then a breach
    fails. `requests > N` / `>= N` is pending until it holds.
    """

    def __init__(self, threshold: Threshold, min_requests: int) -> None:
        self.threshold = threshold
        self.min_requests = min_requests
        self.name = str(threshold)

    def update(self, window: Window) -> CheckResult:
        t = self.threshold
        canary = window.canary
        observed: dict[str, Any] = {"requests": canary.requests}
        limit = {"expression": str(t), "metric": t.metric, "op": t.op, "value": t.value}
        value: float | None
        if t.metric == "requests":
            value = float(canary.requests)
            shown = f"canary requests {canary.requests}"
            decision = OK if t.holds(value) else PENDING if t.op in (">", ">=") else FAIL
            return self._result(decision, value, observed, limit, shown, "")
        if t.metric == "error_rate":
            value = canary.error_rate
            observed["errors"] = canary.errors
            observed["error_rate"] = value
            shown = f"canary 5xx rate {rate(canary.errors, canary.requests)}"
        else:
            quantile = t.quantile
            assert quantile is not None
            latency = canary.latency
            value = None if latency is None else latency.quantile(quantile)
            observed[t.metric] = value
            text = "n/a" if value is None else millis(value)
            shown = f"canary {t.metric} {text} ({canary.requests} requests)"
        waiting = _shortfall(self.min_requests, {CANARY: canary.requests})
        if waiting or value is None:
            decision = PENDING
            waiting = waiting or "no latency data"
        else:
            decision = OK if t.holds(value) else FAIL
        return self._result(decision, value, observed, limit, shown, waiting)

    def _result(
        self,
        decision: str,
        value: float | None,
        observed: dict[str, Any],
        limit: dict[str, Any],
        shown: str,
        waiting: str,
    ) -> CheckResult:
        message = f"{shown}; threshold {self.threshold}: {_label(decision)}"
        if decision == PENDING and waiting:
            message += f" ({waiting})"
        return CheckResult(
            self.name, decision, self.threshold.metric, value, observed, limit, message
        )


@dataclass
class _Sequential:
    """What the two comparisons share: the test, alpha split between the tests."""

    against: str
    tolerance: float
    alpha: float
    tests: int
    min_requests: int
    test: RateRatioTest = field(init=False)
    failed: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.test = RateRatioTest(self.tolerance)

    @property
    def reject_at(self) -> float:
        return self.tests / self.alpha

    def check(self) -> bool:
        """Fail for good once the e-value reached tests/alpha."""
        if not self.failed and self.test.rejects(self.alpha / self.tests):
            self.failed = True
        return self.failed

    def limit(self) -> dict[str, Any]:
        return {
            "against": self.against,
            "alpha": self.alpha,
            "tests": self.tests,
            "reject_at": self.reject_at,
            "max_relative_increase": self.tolerance,
        }

    def evidence(self, decision: str) -> str:
        e = self.test.e_value
        op = ">=" if decision == FAIL else "<"
        return f"e-value {number(e)} {op} {self.tests}/alpha = {number(self.reject_at)}"

    def decide(self, canary: ReleaseStats, other: ReleaseStats, ready: bool) -> tuple[str, str]:
        if self.check():
            return FAIL, ""
        waiting = _shortfall(
            self.min_requests, {CANARY: canary.requests, self.against: other.requests}
        )
        if waiting or not ready:
            return PENDING, waiting
        return OK, ""


class ErrorRateComparison:
    """Sequential test: is the canary's 5xx rate above (1 + tolerance) x the other's?"""

    def __init__(
        self, against: str, tolerance: float, alpha: float, tests: int, min_requests: int
    ) -> None:
        self.name = f"error_rate vs {against}"
        self.state = _Sequential(against, tolerance, alpha, tests, min_requests)

    def update(self, window: Window) -> CheckResult:
        state = self.state
        assert window.other is not None and window.other_step is not None
        step, other_step = window.canary_step, window.other_step
        if not state.failed:
            state.test.update(step.errors, step.requests, other_step.errors, other_step.requests)
        canary, other = window.canary, window.other
        decision, waiting = state.decide(canary, other, ready=True)
        message = (
            f"canary 5xx rate {rate(canary.errors, canary.requests)} vs {state.against}"
            f" {rate(other.errors, other.requests)}; {state.evidence(decision)}: {_label(decision)}"
        )
        if waiting:
            message += f" ({waiting})"
        ratio = None
        if canary.requests and other.requests and other.errors:
            ratio = (canary.errors / canary.requests) / (other.errors / other.requests)
        observed = {
            CANARY: _counts(canary.requests, canary.errors),
            state.against: _counts(other.requests, other.errors),
            "rate_ratio": ratio,
            "likeliest_ratio": state.test.likeliest_ratio,
            "log_e_value": state.test.log_e_value,
        }
        return CheckResult(
            self.name, decision, "e_value", state.test.e_value, observed, state.limit(), message
        )


def _counts(requests: int, bad: int) -> dict[str, Any]:
    return {"requests": requests, "bad": bad, "rate": bad / requests if requests else None}


class LatencyComparison:
    """Sequential test: does the canary get more slow requests than the other release?

    A request is slow when above the reference: the other release's
    `quantile` (p95) over its latencies *before* this interval, rounded up to
    a histogram bound. For the canary the bound is the reference times
    `1 + latency_tolerance`, rounded up too. The reference only uses earlier
    data, so in each interval it is a fixed number and the counts of slow
    requests follow the same binomial argument as errors.
    """

    def __init__(
        self,
        against: str,
        quantile: float,
        tolerance: float,
        latency_tolerance: float,
        min_reference: int,
        alpha: float,
        tests: int,
        min_requests: int,
    ) -> None:
        self.name = f"latency vs {against}"
        self.quantile = quantile
        self.latency_tolerance = latency_tolerance
        self.min_reference = min_reference
        self.state = _Sequential(against, tolerance, alpha, tests, min_requests)
        self.reference: float | None = None  # the other release's bound, latest interval
        self.canary_bound: float | None = None
        self.reference_samples = 0  # the other release's latencies before the last interval
        self.slow = [0, 0]  # canary, other: slow requests in compared intervals
        self.seen = [0, 0]  # canary, other: requests in compared intervals

    def _compare(self, window: Window) -> None:
        before = window.other_before.latency if window.other_before else None
        step = window.canary_step.latency
        other_step = window.other_step.latency if window.other_step else None
        if before is None or step is None or other_step is None:
            return
        self.reference_samples = before.total
        if before.total < self.min_reference:
            return
        bucket = before.quantile_bucket(self.quantile)
        if bucket == len(before.bounds):
            return  # the reference is above the last bound: no finite threshold
        reference = before.bounds[bucket]
        canary_bound = before.bound_at_or_above(reference * (1 + self.latency_tolerance))
        if canary_bound is None:
            return
        self.reference, self.canary_bound = reference, canary_bound
        slow, other_slow = step.count_above(canary_bound), other_step.count_above(reference)
        self.slow[0] += slow
        self.slow[1] += other_slow
        self.seen[0] += step.total
        self.seen[1] += other_step.total
        self.state.test.update(slow, step.total, other_slow, other_step.total)

    def update(self, window: Window) -> CheckResult:
        state = self.state
        assert window.other is not None
        if not state.failed:
            self._compare(window)
        canary, other = window.canary, window.other
        name = _quantile_name(self.quantile)
        canary_q = _quantile(canary.latency, self.quantile)
        other_q = _quantile(other.latency, self.quantile)
        head = f"canary {name} {_ms(canary_q)} vs {state.against} {_ms(other_q)}"
        decision, waiting = state.decide(canary, other, ready=self.reference is not None)
        if self.reference is None or self.canary_bound is None:
            body = (
                f"waiting for {self.min_reference} {state.against} latencies to set the"
                f" reference ({self.reference_samples} so far)"
            )
        else:
            body = (
                f"requests over the {state.against}'s {name} {millis(self.reference)}"
                f" (canary: over {millis(self.canary_bound)}): canary"
                f" {rate(self.slow[0], self.seen[0])} vs {state.against}"
                f" {rate(self.slow[1], self.seen[1])}"
            )
        if decision == PENDING:
            message = f"{head}; {body}: PENDING" + (f" ({waiting})" if waiting else "")
        else:
            message = f"{head}; {body}; {state.evidence(decision)}: {_label(decision)}"
        observed = {
            CANARY: {name: canary_q, "requests": self.seen[0], "slow": self.slow[0]},
            state.against: {name: other_q, "requests": self.seen[1], "slow": self.slow[1]},
            "reference_ms": self.reference,
            "canary_bound_ms": self.canary_bound,
            "likeliest_ratio": state.test.likeliest_ratio,
            "log_e_value": state.test.log_e_value,
        }
        limit = state.limit()
        limit.update(
            quantile=self.quantile,
            max_latency_increase=self.latency_tolerance,
            min_reference_samples=self.min_reference,
        )
        return CheckResult(
            self.name, decision, "e_value", state.test.e_value, observed, limit, message
        )


def _quantile(histogram: Histogram | None, q: float) -> float | None:
    return None if histogram is None else histogram.quantile(q)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else millis(value)


class MetricJudge:
    """A custom metric's reading at each snapshot against its condition.

    OK while the latest reading meets the condition. A reading that breaks it
    fails the check once `failure_limit` readings in a row did; before that the
    check is PENDING (the analysis cannot pass on it). A failed read is
    PENDING, and fails the check after `error_limit` in a row; read errors do
    not count as measurements, so they neither add to nor reset the run of
    failed readings. Without any reading the check is PENDING.
    """

    def __init__(self, check: MetricCheck) -> None:
        self.check = check
        self.name = check.name
        self.failures = 0  # readings in a row that broke the condition
        self.errors = 0  # failed reads in a row
        self.readings = 0  # good readings so far
        self.last_value: float | None = None
        self.final: CheckResult | None = None

    def update(self, window: Window) -> CheckResult:
        if self.final is not None:
            return self.final
        check = self.check
        reading = window.metrics.get(check.name)
        value: float | None = None
        error: str | None = None
        waiting = ""
        if reading is None:
            decision = PENDING
            shown = f"{check.name} not read {'yet' if not self.readings else 'at this snapshot'}"
        elif reading.value is None:
            self.errors += 1
            error = reading.error or "read failed"
            shown = f"{check.name} read failed: {error}"
            if self.errors >= check.error_limit:
                decision = FAIL
                waiting = f"{self.errors} failed reads in a row, error_limit {check.error_limit}"
            else:
                decision = PENDING
                waiting = f"{self.errors} of error_limit {check.error_limit} failed reads in a row"
        else:
            value = reading.value
            self.errors = 0
            self.readings += 1
            self.last_value = value
            shown = f"{check.name} {check.condition.show(value)} ({check.source.kind})"
            if check.condition.holds(value):
                self.failures = 0
                decision = OK
            else:
                self.failures += 1
                most = check.failure_limit
                if self.failures >= most:
                    decision = FAIL
                    if most > 1:
                        waiting = f"failed {self.failures} times in a row, failure_limit {most}"
                else:
                    decision = PENDING
                    waiting = f"failed {self.failures} of failure_limit {most} times in a row"
        message = f"{shown}; condition {check.condition}: {_label(decision)}"
        if waiting:
            message += f" ({waiting})"
        condition = check.condition
        observed: dict[str, Any] = {
            "value": value,
            "error": error,
            "source": check.source.kind,
            "readings": self.readings,
            "last_value": self.last_value,
            "failures_in_a_row": self.failures,
            "errors_in_a_row": self.errors,
        }
        limit: dict[str, Any] = {
            "expression": check.expression,
            "metric": check.name,
            "op": condition.op,
            "value": condition.value,
            "unit": condition.unit,
            "failure_limit": check.failure_limit,
            "error_limit": check.error_limit,
        }
        result = CheckResult(check.name, decision, check.name, value, observed, limit, message)
        if decision == FAIL:
            self.final = result
        return result
