"""Absolute thresholds on the canary, written as `error_rate < 1%` or `p95 < 500ms`.

Grammar: `<metric> <op> <number><unit>`, spaces optional.

- metrics: `error_rate` (share of 5xx responses), `p50`, `p95`, `p99` (any
  `pNN` from p1 to p99: latency quantiles), `requests` (a count);
- ops: `<`, `<=`, `>`, `>=`;
- units: `%` for `error_rate` (required: `error_rate < 1` could be 1% or
  100%), `ms` or `s` for latencies (required, as for durations), none for
  `requests`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["METRICS", "OPS", "AnalysisSpecError", "Threshold", "parse_threshold"]

METRICS = ("error_rate", "p50", "p95", "p99", "requests")
OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_UNIT_SCALE = {"%": 0.01, "ms": 1.0, "s": 1000.0, "": 1.0}

_SHAPE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*([<>=!]+)\s*(.*?)\s*$")
_VALUE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z%]*)$")
_QUANTILE = re.compile(r"^p([1-9]\d?)$")


class AnalysisSpecError(ValueError):
    """An analysis setting (a threshold, an override, a spec field) is malformed."""


@dataclass(frozen=True, slots=True)
class Threshold:
    """`metric op value` on the canary. `value` is a fraction for `error_rate`,
    milliseconds for quantiles and a count for `requests`; `unit` is how it was
    written, for display.

    >>> t = parse_threshold("p95<0.5s")
    >>> t.value, str(t), t.holds(420.0)
    (500.0, 'p95 < 0.5s', True)
    """

    metric: str
    op: str
    value: float
    unit: str = ""

    @property
    def quantile(self) -> float | None:
        """0.95 for `p95`; None for the other metrics."""
        match = _QUANTILE.match(self.metric)
        return int(match.group(1)) / 100 if match else None

    def holds(self, observed: float) -> bool:
        return OPS[self.op](observed, self.value)

    def __str__(self) -> str:
        shown = self.value / _UNIT_SCALE[self.unit]
        return f"{self.metric} {self.op} {round(shown, 9):g}{self.unit}"


def _metric(name: str, text: str) -> str:
    if name in METRICS or _QUANTILE.match(name):
        return name
    import difflib  # only on an error: keep the import light

    close = difflib.get_close_matches(name, METRICS, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    raise AnalysisSpecError(
        f'threshold "{text}": unknown metric "{name}"{hint};'
        f" expected one of error_rate, p50, p95, p99, requests"
    )


def parse_threshold(text: str) -> Threshold:
    """Read `error_rate < 1%`, `p95 <= 500ms`, `requests >= 1000`; `AnalysisSpecError` otherwise.

    >>> str(parse_threshold(" error_rate<0.5 % ")), parse_threshold("error_rate<0.5%").value
    ('error_rate < 0.5%', 0.005)
    """
    shape = _SHAPE.match(text)
    if shape is None:
        raise AnalysisSpecError(
            f'threshold "{text}": expected "<metric> <op> <value>", like "error_rate < 1%"'
            f' or "p95 < 500ms"'
        )
    metric = _metric(shape.group(1), text)
    op = shape.group(2)
    if op not in OPS:
        raise AnalysisSpecError(
            f'threshold "{text}": unknown comparison "{op}"; expected <, <=, > or >='
        )
    value = _VALUE.match(shape.group(3))
    units: tuple[str, ...]
    if metric == "error_rate":
        expected, units = 'a percentage like "1%"', ("%",)
    elif metric == "requests":
        expected, units = 'a whole number like "1000"', ("",)
    else:
        expected, units = 'a latency like "500ms" or "1.5s"', ("ms", "s")
    if value is None or value.group(2) not in units:
        raise AnalysisSpecError(
            f'threshold "{text}": expected {expected} for {metric}, got "{shape.group(3)}"'
        )
    number = float(value.group(1))
    unit = value.group(2)
    if metric == "requests" and not number.is_integer():
        raise AnalysisSpecError(f'threshold "{text}": requests is a whole number')
    if metric == "error_rate" and number > 100:
        raise AnalysisSpecError(f'threshold "{text}": an error rate is at most 100%')
    return Threshold(metric, op, number * _UNIT_SCALE[unit], unit)
