"""Custom metric checks: a number read every interval, compared with a condition.

The number comes from a Prometheus query, an HTTP endpoint returning JSON or
a command's output. This module only describes the sources and the checks
(pure data, parsed from the analysis spec's `metrics` list); `conveyor.sources`
reads them, and `conveyor.analysis.judges.MetricJudge` judges the readings.

    metrics:
      - name: checkout_error_rate
        prometheus: {url: "http://127.0.0.1:9090", query: "sum(rate(errors[1m]))"}
        condition: "< 0.01"
        failure_limit: 1      # failed measurements in a row before the check fails
        error_limit: 4        # failed reads in a row before the check fails

>>> entry = {"name": "queue_depth", "command": "echo 3", "condition": "<= 100"}
>>> check = MetricCheck.from_dict(entry)
>>> check.condition.holds(3.0), str(check.condition), check.source.argv
(True, '<= 100', ['/bin/sh', '-c', 'echo 3'])
>>> str(parse_condition("< 2%")), parse_condition("< 2%").value, parse_condition("<500ms").value
('< 2%', 0.02, 0.5)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast
from urllib.parse import urlsplit, urlunsplit

from conveyor import redaction
from conveyor.analysis.text import millis, percent
from conveyor.analysis.thresholds import METRICS, OPS, AnalysisSpecError
from conveyor.analysis.values import parse_integer, parse_seconds

__all__ = [
    "REDACTED",
    "CommandOutput",
    "Condition",
    "HttpJson",
    "MetricCheck",
    "MetricReading",
    "PrometheusQuery",
    "SourceSpec",
    "parse_condition",
    "parse_source",
    "redact_url",
    "show_url",
]

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_BUILTIN_QUANTILE = re.compile(r"^p[1-9]\d?$")
# Readings are in the source's own unit; a suffix on the condition says which:
# "%" means the reading is a fraction (0.01 = 1%), "s" / "ms" that it is in
# seconds, as Prometheus durations are.
_UNIT_SCALE = {"": 1.0, "%": 0.01, "s": 1.0, "ms": 0.001}
_CONDITION = re.compile(
    r"^\s*(<=|>=|<|>)\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(%|ms|s)?\s*$"
)
# Header values (tokens, keys) never leave the spec: `to_dict` writes this instead.
REDACTED = "<redacted>"
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HEADER_VALUE = re.compile(r"^[\x20-\x7e\t]*$")
_PATH_STEP = re.compile(r"^[^.]+$")


def plain(value: float) -> str:
    """A reading without a unit: six significant digits, no trailing zeros."""
    return f"{value:.6g}"


@dataclass(frozen=True, slots=True)
class Condition:
    """`op value` on a reading; `unit` is how the value was written ("", "%", "s", "ms").

    `value` is in the reading's unit: a fraction for "%", seconds for "s" and "ms".
    """

    op: str
    value: float
    unit: str = ""

    def holds(self, observed: float) -> bool:
        return OPS[self.op](observed, self.value)

    def show(self, observed: float) -> str:
        """A reading as the condition writes it: "3.1%", "420 ms", "0.031"."""
        if self.unit == "%":
            return percent(observed)
        if self.unit in ("s", "ms"):
            return millis(observed * 1000)
        return plain(observed)

    def __str__(self) -> str:
        shown = self.value / _UNIT_SCALE[self.unit]
        return f"{self.op} {round(shown, 9):g}{self.unit}"


def parse_condition(text: str, where: str = "condition") -> Condition:
    """Read `< 0.01`, `>= 5`, `< 2%`, `<= 500ms`; `AnalysisSpecError` naming `where` otherwise."""
    match = _CONDITION.match(text) if isinstance(text, str) else None
    if match is None:
        raise AnalysisSpecError(
            f'{where}: expected <, <=, > or >= and a number, like "< 0.01", "< 2%" or'
            f' "< 500ms", got {text!r}'
        )
    op, number, unit = match.group(1), float(match.group(2)), match.group(3) or ""
    return Condition(op, number * _UNIT_SCALE[unit], unit)


def redact_url(url: str) -> str:
    """`url` with its password, if any, replaced by `REDACTED`."""
    return redaction.redact_url(url, REDACTED)


def show_url(url: str) -> str:
    """`url` as it reads in a message: without its user info (which may hold a password)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _text(where: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AnalysisSpecError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _url(where: str, value: object) -> str:
    url = _text(where, value).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AnalysisSpecError(
            f'{where}: expected an http:// or https:// URL, got "{show_url(url)}"'
        )
    return url


def _timeout(where: str, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise AnalysisSpecError(f"{where}: expected a duration above 0s")
    return value


@dataclass(frozen=True, slots=True)
class PrometheusQuery:
    """An instant PromQL `query` against the Prometheus at `url`; one series or a scalar."""

    kind: ClassVar[str] = "prometheus"
    url: str
    query: str
    timeout: float = 5.0

    def __post_init__(self) -> None:
        _url(f"{self.kind}.url", self.url)
        _text(f"{self.kind}.query", self.query)
        _timeout(f"{self.kind}.timeout", self.timeout)

    def to_dict(self) -> dict[str, Any]:
        return {"url": redact_url(self.url), "query": self.query, "timeout": self.timeout}


@dataclass(frozen=True, slots=True)
class HttpJson:
    """`GET url` returning JSON; the number is at `path` ("data.error_rate", "items.0.value").

    An empty `path` means the whole document is the number. `headers` values
    may be secrets: they are never shown, and `to_dict` writes `REDACTED`.
    """

    kind: ClassVar[str] = "http"
    url: str
    path: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 5.0

    def __post_init__(self) -> None:
        _url(f"{self.kind}.url", self.url)
        if self.path and not all(_PATH_STEP.match(step) for step in self.path.split(".")):
            raise AnalysisSpecError(
                f"{self.kind}.path: expected keys and indexes separated by dots, like"
                f' "data.error_rate" or "items.0.value", got "{self.path}"'
            )
        for name, value in self.headers:
            if not _HEADER_NAME.match(name):
                raise AnalysisSpecError(f'{self.kind}.headers: "{name}" is not a header name')
            # The value is never shown: it may be a secret.
            if not isinstance(value, str) or not _HEADER_VALUE.match(value):
                raise AnalysisSpecError(
                    f"{self.kind}.headers.{name}: expected a line of printable ASCII"
                )
        _timeout(f"{self.kind}.timeout", self.timeout)

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": redact_url(self.url),
            "path": self.path,
            "headers": {name: REDACTED for name, _ in self.headers},
            "timeout": self.timeout,
        }


@dataclass(frozen=True, slots=True)
class CommandOutput:
    """A command whose last non-empty line of stdout is the number.

    `run` is a string (run by /bin/sh -c) or an argv list. A non-zero exit is a
    failed read.
    """

    kind: ClassVar[str] = "command"
    run: str | tuple[str, ...]
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if isinstance(self.run, str):
            _text(f"{self.kind}.run", self.run)
        elif not self.run or not all(isinstance(arg, str) and arg for arg in self.run):
            raise AnalysisSpecError(
                f"{self.kind}.run: expected a command string or a non-empty list of arguments"
            )
        _timeout(f"{self.kind}.timeout", self.timeout)

    @property
    def argv(self) -> list[str]:
        return ["/bin/sh", "-c", self.run] if isinstance(self.run, str) else list(self.run)

    def to_dict(self) -> dict[str, Any]:
        run = self.run if isinstance(self.run, str) else list(self.run)
        return {"run": run, "timeout": self.timeout}


SourceSpec = PrometheusQuery | HttpJson | CommandOutput
_SOURCE_KEYS = ("prometheus", "http", "command")


def _mapping(where: str, value: object) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise AnalysisSpecError(f"{where}: expected a mapping, got {value!r}")
    return cast(Mapping[str, object], value)


def _check_keys(where: str, data: Mapping[str, object], known: Sequence[str]) -> None:
    for key in data:
        if key not in known and not str(key).startswith("x-"):
            import difflib  # only on an error: keep the import light

            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.5)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise AnalysisSpecError(
                f'{where}: unknown key "{key}"{hint}; expected {", ".join(known)}'
            )


def _header_value(where: str, value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise AnalysisSpecError(f"{where}: expected a string")


def _build_source(kind: str, body: Mapping[str, object]) -> SourceSpec:
    # Values are checked by the classes' __post_init__; the casts only tell mypy.
    if kind == "command":
        _check_keys(kind, body, ("run", "timeout"))
        run = body.get("run")
        if isinstance(run, list | tuple):
            run = tuple(cast(Sequence[str], run))
        timeout = parse_seconds(f"{kind}.timeout", body.get("timeout", 10.0))
        return CommandOutput(cast(str, run), timeout)
    timeout = parse_seconds(f"{kind}.timeout", body.get("timeout", 5.0))
    if kind == "prometheus":
        _check_keys(kind, body, ("url", "query", "timeout"))
        return PrometheusQuery(cast(str, body.get("url")), cast(str, body.get("query")), timeout)
    _check_keys(kind, body, ("url", "path", "headers", "timeout"))
    path = body.get("path", "")
    if not isinstance(path, str | int) or isinstance(path, bool):
        raise AnalysisSpecError(f'{kind}.path: expected a path like "data.error_rate"')
    headers = _mapping(f"{kind}.headers", body.get("headers") or {})
    pairs = tuple((str(k), _header_value(f"{kind}.headers.{k}", v)) for k, v in headers.items())
    return HttpJson(cast(str, body.get("url")), str(path), pairs, timeout)


def _where(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def parse_source(data: Mapping[str, object], where: str = "") -> SourceSpec:
    """The source named in `data`: exactly one of its `prometheus`, `http` or `command` keys.

    Other keys of `data` are left to the caller (a metric entry has `name`,
    `condition`, ...). Errors name the key path, after `where`.
    """
    kinds = [key for key in _SOURCE_KEYS if key in data]
    if len(kinds) != 1:
        found = f"got {' and '.join(kinds)}" if kinds else "got none"
        raise AnalysisSpecError(
            f"{where or 'source'}: expected exactly one source, prometheus, http or command;"
            f" {found}"
        )
    kind = kinds[0]
    value = data[kind]
    if kind == "command":
        if isinstance(value, str | list | tuple):
            value = {"run": value}
        elif not isinstance(value, Mapping):
            raise AnalysisSpecError(
                f"{_where(where, kind)}: expected a command string, an argv list or a mapping"
                f" with run (and timeout), got {value!r}"
            )
    try:
        return _build_source(kind, _mapping(kind, value))
    except AnalysisSpecError as exc:
        if not where:
            raise
        raise AnalysisSpecError(f"{where}.{exc}") from None


def _name(value: object, where: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise AnalysisSpecError(
            f"{where}.name: expected a name of lowercase letters, digits and _ starting with"
            f" a letter, like checkout_error_rate, got {value!r}"
        )
    if value in METRICS or _BUILTIN_QUANTILE.match(value):
        raise AnalysisSpecError(
            f'{where}.name: "{value}" is a built-in metric; give the custom metric another name'
        )
    return value


@dataclass(frozen=True, slots=True)
class MetricCheck:
    """A custom metric: where it is read, the condition on it, how many misses it may have.

    - `failure_limit`: readings in a row that break the condition before the
      check fails (read errors in between do not count and do not reset it);
    - `error_limit`: failed reads in a row before the check fails.
    """

    name: str
    source: SourceSpec
    condition: Condition
    failure_limit: int = 1
    error_limit: int = 4

    def __post_init__(self) -> None:
        where = f"metrics.{self.name}"
        _name(self.name, "metrics")
        if self.failure_limit < 1:
            raise AnalysisSpecError(f"{where}.failure_limit: expected at least 1")
        if self.error_limit < 1:
            raise AnalysisSpecError(f"{where}.error_limit: expected at least 1")

    @property
    def expression(self) -> str:
        return f"{self.name} {self.condition}"

    def to_dict(self) -> dict[str, Any]:
        """The spec entry; header values and URL passwords are written as `REDACTED`."""
        return {
            "name": self.name,
            self.source.kind: self.source.to_dict(),
            "condition": str(self.condition),
            "failure_limit": self.failure_limit,
            "error_limit": self.error_limit,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object], where: str = "metrics") -> MetricCheck:
        """An entry of the spec's `metrics` list; errors name the key path."""
        data = _mapping(where, data)
        name = _name(data.get("name"), where)
        at = f"metrics.{name}"
        _check_keys(at, data, ("name", *_SOURCE_KEYS, "condition", "failure_limit", "error_limit"))
        if "condition" not in data:
            raise AnalysisSpecError(f'{at}.condition: missing, expected one like "< 0.01"')
        condition = data["condition"]
        return cls(
            name,
            parse_source(data, at),
            parse_condition(cast(str, condition), f"{at}.condition"),
            parse_integer(f"{at}.failure_limit", data.get("failure_limit", 1)),
            parse_integer(f"{at}.error_limit", data.get("error_limit", 4)),
        )


@dataclass(frozen=True, slots=True)
class MetricReading:
    """One read of a custom metric: a value, or None and why the read failed."""

    value: float | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None

    @classmethod
    def of(cls, reading: float | MetricReading | None) -> MetricReading:
        """A reading from what a caller passes: a number, None (a failed read) or a reading.

        A value that is not a finite number is a failed read.
        """
        if isinstance(reading, MetricReading):
            if reading.value is None or math.isfinite(reading.value):
                return reading
            return cls(None, f"not a finite number: {reading.value}")
        if reading is None:
            return cls(None, None)
        if isinstance(reading, bool) or not isinstance(reading, int | float):
            raise TypeError(f"a metric reading is a number or None, got {reading!r}")
        if not math.isfinite(reading):
            return cls(None, f"not a finite number: {reading}")
        return cls(float(reading))
