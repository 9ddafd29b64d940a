"""An alert rule's expression, `error_rate > 5% for 5m`, read with the analysis' parsers.

The part before ` for ` is an analysis threshold on the router's counters
(`error_rate`, `p50`..`p99`, `requests`: `conveyor.analysis.thresholds`) or a custom
metric's name and a condition (`queue_depth > 100`: `conveyor.analysis.custom`); the
duration after it is how long the condition must hold before the alert fires (none:
at once). Unlike the analysis, the condition says when something is *wrong*.

>>> rule = parse_rule("error_rate > 5% for 5m")
>>> rule.metric, rule.hold, str(rule)
('error_rate', 300.0, 'error_rate > 5% for 5m')
>>> rule = parse_rule("queue_depth >= 100")
>>> rule.custom, rule.hold, str(rule)
(True, 0.0, 'queue_depth >= 100')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from conveyor.analysis.custom import Condition, parse_condition
from conveyor.analysis.metrics import ReleaseStats
from conveyor.analysis.text import millis, percent
from conveyor.analysis.thresholds import METRICS, AnalysisSpecError, Threshold, parse_threshold

__all__ = ["Measured", "RuleExpr", "measure", "parse_rule"]

_FOR = re.compile(r"^(?P<head>.*?)\s+for\s+(?P<hold>\S+)\s*$", re.S)
_CUSTOM = re.compile(r"^\s*(?P<name>[a-z][a-z0-9_]*)\s*(?P<rest>[<>]=?.*)$", re.S)
_QUANTILE = re.compile(r"^p[1-9]\d?$")


@dataclass(frozen=True)
class RuleExpr:
    """`metric` breaches `threshold` (a built-in) or `condition` (a custom metric) for `hold`
    seconds."""

    metric: str
    threshold: Threshold | None
    condition: Condition | None
    hold: float

    @property
    def custom(self) -> bool:
        return self.condition is not None

    def breached_by(self, value: float) -> bool:
        if self.threshold is not None:
            return self.threshold.holds(value)
        assert self.condition is not None
        return self.condition.holds(value)

    def show(self, value: float) -> str:
        """A value as the expression writes it: "6.2%", "2.3 s", "140"."""
        if self.condition is not None:
            return self.condition.show(value)
        if self.metric == "error_rate":
            return percent(value)
        if self.metric == "requests":
            return f"{value:g}"
        return millis(value)

    def __str__(self) -> str:
        head = (
            str(self.threshold) if self.threshold is not None else f"{self.metric} {self.condition}"
        )
        if not self.hold:
            return head
        from conveyor.config.durations import format_duration

        return f"{head} for {format_duration(self.hold)}"


def parse_rule(text: str, where: str = "alert") -> RuleExpr:
    """Read `error_rate > 5% for 5m`, `p95 > 2s for 5m`, `queue_depth > 100 for 10m`.

    `AnalysisSpecError` (a ValueError) names `where` and what was expected."""
    if not isinstance(text, str) or not text.strip():
        raise AnalysisSpecError(
            f'{where}: expected a condition like "error_rate > 5% for 5m", got {text!r}'
        )
    hold = 0.0
    head = text
    found = _FOR.match(text)
    if found is not None:
        from conveyor.config.durations import parse_duration

        head = found["head"]
        try:
            hold = parse_duration(found["hold"])
        except ValueError as error:
            raise AnalysisSpecError(f'{where}: after "for": {error}') from None
    name = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", head)
    metric = name.group(1) if name else ""
    if metric in METRICS or _QUANTILE.match(metric):
        try:
            threshold = parse_threshold(head)
        except AnalysisSpecError as error:
            raise AnalysisSpecError(f"{where}: {error}") from None
        return RuleExpr(threshold.metric, threshold, None, hold)
    custom = _CUSTOM.match(head)
    if custom is None:
        raise AnalysisSpecError(
            f'{where}: expected "<metric> <op> <value> [for <duration>]", like'
            f' "error_rate > 5% for 5m" or "p95 > 2s for 5m", got {text!r}'
        )
    condition = parse_condition(custom["rest"], where)
    return RuleExpr(custom["name"], None, condition, hold)


@dataclass(frozen=True)
class Measured:
    """A rule's reading over its window: the value (None: nothing to judge) and what it
    says for people."""

    value: float | None
    breached: bool
    detail: str


def measure(rule: RuleExpr, window: ReleaseStats, min_requests: int) -> Measured:
    """A built-in rule judged on the requests of its window.

    An error rate or a latency quantile needs `min_requests` requests in the window:
    with fewer, nothing is wrong (one failed request of two is no 50 % outage).

    >>> rule = parse_rule("error_rate > 5% for 1m")
    >>> measure(rule, ReleaseStats(40, 4), 10)
    Measured(value=0.1, breached=True, detail='error_rate 10% (4/40 requests)')
    >>> measure(rule, ReleaseStats(3, 3), 10).breached
    False
    """
    assert rule.threshold is not None
    if rule.metric == "requests":
        value = float(window.requests)
        return Measured(value, rule.breached_by(value), f"requests {window.requests}")
    if window.requests < min_requests:
        return Measured(
            None,
            False,
            f"{rule.metric}: {window.requests} requests in the window"
            f" (fewer than min_requests {min_requests})",
        )
    if rule.metric == "error_rate":
        value = window.errors / window.requests
        detail = f"error_rate {percent(value)} ({window.errors}/{window.requests} requests)"
        return Measured(value, rule.breached_by(value), detail)
    quantile = rule.threshold.quantile
    assert quantile is not None
    found = window.latency.quantile(quantile) if window.latency is not None else None
    if found is None:
        return Measured(None, False, f"{rule.metric}: no latencies from the router")
    detail = f"{rule.metric} {millis(found)} ({window.requests} requests)"
    return Measured(found, rule.breached_by(found), detail)
