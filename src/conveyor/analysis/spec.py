"""What an analysis checks and for how long: `AnalysisSpec`, from a dict or overrides.

`AnalysisSpec.from_dict` reads the shape a config block or a journal gives
(thresholds as strings, durations as "5m" or seconds); `to_dict` writes it
back (durations in seconds), so a recorded analysis carries its own spec.
`apply_overrides` reads `--set` arguments: a threshold (`error_rate<2%`)
replaces the thresholds on its metric, `p95=off` removes them, `key=value`
sets a field (`alpha=0.05`, `duration=2m`, `max_relative_increase=50%`,
`comparative=off`). Custom metrics (`metrics`, see `conveyor.analysis.custom`)
take `checkout_error_rate<0.02` (a new condition), `checkout_error_rate=off`
and `checkout_error_rate.failure_limit=3` / `.error_limit=2`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from conveyor.analysis.custom import MetricCheck, parse_condition
from conveyor.analysis.metrics import BASELINE, STABLE
from conveyor.analysis.thresholds import METRICS, AnalysisSpecError, Threshold, parse_threshold
from conveyor.analysis.values import (
    OFF,
    parse_flag,
    parse_integer,
    parse_number,
    parse_seconds,
)

__all__ = ["AnalysisSpec", "ComparativeSpec", "apply_overrides"]

OnInconclusive = Literal["pause", "fail"]


@dataclass(frozen=True)
class ComparativeSpec:
    """The sequential comparison of the canary with `against` ("baseline" or "stable").

    - `error_rate`, `latency`: which comparisons run (each is one sequential test);
    - `max_relative_increase`: tolerance; the canary is "no worse" while its rate
      of bad events is at most `1 + max_relative_increase` times the other's
      (0.2: a canary with 1.2x the errors is never aborted by this judge);
    - `latency_quantile`: a request is slow when it is above this quantile of the
      other release's latencies measured before the interval (the reference);
    - `max_latency_increase`: a canary request is slow only above the reference
      times `1 + max_latency_increase` (rounded up to a histogram bound);
    - `min_reference_samples`: latencies of the other release needed before the
      latency comparison starts (its warm-up).
    """

    against: str = BASELINE
    error_rate: bool = True
    latency: bool = True
    max_relative_increase: float = 0.2
    latency_quantile: float = 0.95
    max_latency_increase: float = 0.1
    min_reference_samples: int = 100

    def __post_init__(self) -> None:
        if self.against not in (BASELINE, STABLE):
            raise AnalysisSpecError(
                f'comparative.against: expected "baseline" or "stable", got "{self.against}"'
            )
        if not (math.isfinite(self.max_relative_increase) and self.max_relative_increase >= 0):
            raise AnalysisSpecError("comparative.max_relative_increase: expected a number >= 0")
        if not 0 < self.latency_quantile < 1:
            raise AnalysisSpecError("comparative.latency_quantile: expected a number in (0, 1)")
        if not (math.isfinite(self.max_latency_increase) and self.max_latency_increase >= 0):
            raise AnalysisSpecError("comparative.max_latency_increase: expected a number >= 0")
        if self.min_reference_samples < 1:
            raise AnalysisSpecError("comparative.min_reference_samples: expected at least 1")

    @property
    def tests(self) -> int:
        """How many sequential tests share `alpha`."""
        return int(self.error_rate) + int(self.latency)


@dataclass(frozen=True)
class AnalysisSpec:
    """How a canary is judged.

    - `thresholds`: absolute limits on the canary (`error_rate < 1%`, `p95 < 500ms`);
    - `comparative`: the sequential comparison with the baseline (None: none);
    - `alpha`: the highest probability that the comparative judge aborts a canary
      that is no worse (shared equally by its tests);
    - `min_requests`: each judged release needs this many requests before
      thresholds apply and before the analysis can pass;
    - `interval`: how often the caller takes a snapshot (seconds);
    - `duration`: the analysis passes at the first snapshot after this, with
      enough data and no failure; `max_duration`: with too little data by then,
      it ends INCONCLUSIVE, and `on_inconclusive` says what the caller does;
    - `metrics`: custom metric checks, each a number read every interval (from
      Prometheus, an HTTP endpoint or a command) and a condition on it.
    """

    thresholds: tuple[Threshold, ...] = ()
    comparative: ComparativeSpec | None = field(default_factory=ComparativeSpec)
    alpha: float = 0.01
    min_requests: int = 100
    interval: float = 1.0
    duration: float = 300.0
    max_duration: float = 900.0
    on_inconclusive: OnInconclusive = "pause"
    metrics: tuple[MetricCheck, ...] = ()

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise AnalysisSpecError(f"alpha: expected a probability in (0, 1), got {self.alpha}")
        if self.min_requests < 1:
            raise AnalysisSpecError("min_requests: expected at least 1")
        if not (math.isfinite(self.interval) and self.interval > 0):
            raise AnalysisSpecError("interval: expected a duration above 0s")
        if not (math.isfinite(self.duration) and self.duration >= 0):
            raise AnalysisSpecError("duration: expected a duration")
        if not (math.isfinite(self.max_duration) and self.max_duration >= self.duration):
            raise AnalysisSpecError("max_duration: expected a duration at least `duration`")
        if self.on_inconclusive not in ("pause", "fail"):
            raise AnalysisSpecError(
                f'on_inconclusive: expected "pause" or "fail", got "{self.on_inconclusive}"'
            )
        seen: set[str] = set()
        for metric in self.metrics:
            if metric.name in seen:
                raise AnalysisSpecError(f'metrics: two metrics are named "{metric.name}"')
            if metric.name in _RESERVED:
                raise AnalysisSpecError(
                    f'metrics.{metric.name}.name: "{metric.name}" is an analysis setting;'
                    f" give the custom metric another name"
                )
            seen.add(metric.name)

    def metric(self, name: str) -> MetricCheck | None:
        """The custom metric named `name`, if any."""
        return next((m for m in self.metrics if m.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON form; `from_dict` reads it back to an equal spec.

        Except for secrets: custom metrics' header values and URL passwords are
        written as "<redacted>" (a recorded spec is for replay, which reads no
        source).
        """
        return {
            "thresholds": [str(t) for t in self.thresholds],
            "comparative": None
            if self.comparative is None
            else dataclasses.asdict(self.comparative),
            "alpha": self.alpha,
            "min_requests": self.min_requests,
            "interval": self.interval,
            "duration": self.duration,
            "max_duration": self.max_duration,
            "on_inconclusive": self.on_inconclusive,
            "metrics": [metric.to_dict() for metric in self.metrics],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnalysisSpec:
        """A spec from a mapping: thresholds as strings, durations as "5m" or seconds.

        Keys left out keep their defaults; `comparative` may be a mapping, or
        None / false for no comparison. `AnalysisSpecError` names the bad key.
        """
        spec = cls()
        for key, value in data.items():
            spec = _set(spec, key, value)
        return spec


_SPEC_FIELDS = {f.name for f in dataclasses.fields(AnalysisSpec)}
_COMPARATIVE_FIELDS = {f.name for f in dataclasses.fields(ComparativeSpec)}
# Custom metric names that would read as a setting in `--set NAME=...`.
_RESERVED = _SPEC_FIELDS | _COMPARATIVE_FIELDS
# Comparative fields that may be set without the "comparative." prefix: not
# `error_rate` / `latency`, which would read as threshold metrics.
_COMPARATIVE_SHORT = _COMPARATIVE_FIELDS - {"error_rate", "latency"}
_DURATIONS = ("interval", "duration", "max_duration")


def _unknown(key: str, known: Iterable[str]) -> AnalysisSpecError:
    import difflib  # only on an error: keep the import light

    if key in _COMPARATIVE_FIELDS:
        known = [f"comparative.{key}"]
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.5)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return AnalysisSpecError(f'unknown analysis setting "{key}"{hint}')


def _set_comparative(
    comparative: ComparativeSpec, key: str, name: str, value: object
) -> ComparativeSpec:
    parsed: object
    if name == "against":
        parsed = str(value)
    elif name in ("error_rate", "latency"):
        parsed = parse_flag(key, value)
    elif name == "min_reference_samples":
        parsed = parse_integer(key, value)
    else:
        parsed = parse_number(key, value, percent=name != "latency_quantile")
    values = dataclasses.asdict(comparative)
    values[name] = parsed
    return ComparativeSpec(**values)


def _metrics(value: object) -> tuple[MetricCheck, ...]:
    if value is None or value is False or (isinstance(value, str) and value.lower() in OFF):
        return ()
    if isinstance(value, str | Mapping) or not isinstance(value, Iterable):
        raise AnalysisSpecError(
            'metrics: expected a list like [{name: ..., prometheus: {...}, condition: "< 1"}]'
        )
    return tuple(
        item if isinstance(item, MetricCheck) else MetricCheck.from_dict(item, f"metrics[{i}]")
        for i, item in enumerate(value)
    )


def _set(spec: AnalysisSpec, key: str, value: object) -> AnalysisSpec:
    """`spec` with one setting changed; `comparative.X` or a bare comparative field name."""
    name = key.strip()
    prefixed = name.startswith("comparative.")
    if prefixed:
        name = name.removeprefix("comparative.")
        if name not in _COMPARATIVE_FIELDS:
            raise _unknown(key, {f"comparative.{n}" for n in _COMPARATIVE_FIELDS})
    if prefixed or name in _COMPARATIVE_SHORT:
        return dataclasses.replace(
            spec,
            comparative=_set_comparative(spec.comparative or ComparativeSpec(), key, name, value),
        )
    if name == "thresholds":
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise AnalysisSpecError('thresholds: expected a list like ["error_rate < 1%"]')
        items = cast(Iterable[object], value)
        return dataclasses.replace(
            spec,
            thresholds=tuple(
                t if isinstance(t, Threshold) else parse_threshold(str(t)) for t in items
            ),
        )
    if name == "comparative":
        if value is None or value is False:
            return dataclasses.replace(spec, comparative=None)
        if isinstance(value, ComparativeSpec):
            return dataclasses.replace(spec, comparative=value)
        if isinstance(value, str):
            enabled = parse_flag(key, value)
            return dataclasses.replace(
                spec, comparative=(spec.comparative or ComparativeSpec()) if enabled else None
            )
        if isinstance(value, Mapping):
            comparative = ComparativeSpec()
            for sub, subvalue in cast(Mapping[str, object], value).items():
                if sub not in _COMPARATIVE_FIELDS:
                    raise _unknown(f"comparative.{sub}", _COMPARATIVE_FIELDS)
                comparative = _set_comparative(comparative, f"comparative.{sub}", sub, subvalue)
            return dataclasses.replace(spec, comparative=comparative)
        raise AnalysisSpecError(f"comparative: expected a mapping or off, got {value!r}")
    if name == "metrics":
        return dataclasses.replace(spec, metrics=_metrics(value))
    if name in _DURATIONS:
        changes: dict[str, Any] = {name: parse_seconds(name, value)}
        return dataclasses.replace(spec, **changes)
    if name == "alpha":
        return dataclasses.replace(spec, alpha=parse_number(name, value, percent=True))
    if name == "min_requests":
        return dataclasses.replace(spec, min_requests=parse_integer(name, value))
    if name == "on_inconclusive":
        if value not in ("pause", "fail"):
            raise AnalysisSpecError(f'on_inconclusive: expected "pause" or "fail", got {value!r}')
        return dataclasses.replace(spec, on_inconclusive=value)
    raise _unknown(key, _SPEC_FIELDS | _COMPARATIVE_SHORT)


_METRIC_OVERRIDE = re.compile(r"^([a-z][a-z0-9_]*)(?:\.([a-z_]+))?\s*(<=|>=|<|>|=)\s*(.*)$", re.S)


def _override_metric(spec: AnalysisSpec, override: str, text: str) -> AnalysisSpec | None:
    """`spec` changed by a `--set` on a custom metric; None when `text` names none."""
    match = _METRIC_OVERRIDE.match(text)
    metric = spec.metric(match.group(1)) if match else None
    if match is None or metric is None:
        return None
    name, setting, op, rest = match.groups()
    where = f'--set "{override}"'
    if setting is None and op != "=":
        changed = dataclasses.replace(metric, condition=parse_condition(op + rest, where))
    elif setting is None:
        if rest.lower() not in OFF:
            raise AnalysisSpecError(
                f"{where}: a condition on {name} compares with <, <=, > or >= (like"
                f' "{name}<0.02"), and "{name}=off" removes the check'
            )
        return dataclasses.replace(spec, metrics=tuple(m for m in spec.metrics if m is not metric))
    elif setting in ("failure_limit", "error_limit") and op == "=":
        limit = parse_integer(f"{where}: {name}.{setting}", rest)
        changes: dict[str, Any] = {setting: limit}
        changed = dataclasses.replace(metric, **changes)
    else:
        raise AnalysisSpecError(
            f'{where}: expected "{name}<0.02", "{name}=off", "{name}.failure_limit=3"'
            f' or "{name}.error_limit=2"'
        )
    return dataclasses.replace(
        spec, metrics=tuple(changed if m is metric else m for m in spec.metrics)
    )


def _threshold(spec: AnalysisSpec, override: str, text: str) -> Threshold:
    head = re.match(r"\s*([A-Za-z_][A-Za-z0-9_.]*)", text)
    name = head.group(1) if head else ""
    builtin = name in METRICS or re.fullmatch(r"p[1-9]\d?", name)
    if spec.metrics and head and not builtin:
        import difflib  # only on an error: keep the import light

        custom = [m.name for m in spec.metrics]
        close = difflib.get_close_matches(name, [*METRICS, *custom], n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        raise AnalysisSpecError(
            f'--set "{override}": unknown metric "{name}"{hint}; expected'
            f" {', '.join(METRICS)} or a custom metric ({', '.join(custom)})"
        )
    return parse_threshold(text)


def apply_overrides(spec: AnalysisSpec, overrides: Iterable[str]) -> AnalysisSpec:
    """`spec` changed by `--set` arguments, in order.

    >>> spec = apply_overrides(AnalysisSpec(), ["error_rate<2%", "duration=2m", "alpha=5%"])
    >>> [str(t) for t in spec.thresholds], spec.duration, spec.alpha
    (['error_rate < 2%'], 120.0, 0.05)
    """
    for override in overrides:
        text = override.strip()
        changed = _override_metric(spec, override, text)
        if changed is not None:
            spec = changed
            continue
        if re.search(r"[<>]", text):
            threshold = _threshold(spec, override, text)
            kept = tuple(t for t in spec.thresholds if t.metric != threshold.metric)
            spec = dataclasses.replace(spec, thresholds=(*kept, threshold))
            continue
        key, equals, value = text.partition("=")
        if not equals or not key.strip():
            raise AnalysisSpecError(
                f'--set "{override}": expected a threshold like "error_rate<2%"'
                f' or a setting like "alpha=0.05"'
            )
        key, value = key.strip(), value.strip()
        metric_named = key in ("error_rate", "requests") or re.fullmatch(r"p[1-9]\d?", key)
        if metric_named:
            if value.lower() not in OFF:
                raise AnalysisSpecError(
                    f'--set "{override}": a threshold compares with <, <=, > or >='
                    f' (like "{key}<2%"), and "{key}=off" removes the thresholds on {key}'
                )
            spec = dataclasses.replace(
                spec, thresholds=tuple(t for t in spec.thresholds if t.metric != key)
            )
            continue
        spec = _set(spec, key, value)
    return spec
