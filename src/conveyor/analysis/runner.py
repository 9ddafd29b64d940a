"""`Analysis`: feed it snapshots, read its verdict and the records that explain it.

The caller (the canary strategy) takes a snapshot of each release's
cumulative counters every `spec.interval` and calls `observe`. The first
snapshot only sets the starting point: everything is counted from it. After
each later snapshot every judge looks at the data and the analysis decides:

- FAIL as soon as a judge fails (the verdict is final);
- PASS at the first snapshot at or after `duration` where every judge is ok
  and the canary and the compared release have `min_requests` each;
- INCONCLUSIVE at `max_duration` when that never happened (too little
  traffic is not a pass); `spec.on_inconclusive` says whether the caller
  pauses or fails;
- CONTINUE otherwise.

Custom metrics (`spec.metrics`) are read by the caller at each snapshot
(`conveyor.sources.read_metrics`) and passed to `observe` as `values`; each
has a `MetricJudge` among the others.

Each snapshot leaves a `MeasurementRecord` (the cumulative counters and the
custom metrics' readings as given, and the verdict); the first one also
carries the spec, so a list of `record.to_dict()` is enough for `replay`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from conveyor.analysis.custom import MetricReading
from conveyor.analysis.judges import (
    FAIL,
    PENDING,
    CheckResult,
    ErrorRateComparison,
    Judge,
    LatencyComparison,
    MetricJudge,
    ThresholdJudge,
    Window,
)
from conveyor.analysis.metrics import CANARY, ReleaseStats
from conveyor.analysis.spec import AnalysisSpec
from conveyor.analysis.text import seconds

__all__ = ["Analysis", "Decision", "MeasurementRecord", "MetricValues", "Verdict", "build_judges"]

# What `observe` takes for custom metrics: name -> a number, None (the read
# failed) or a `MetricReading` (a number, or None and the error's text).
MetricValues = Mapping[str, float | MetricReading | None]


class Decision(StrEnum):
    CONTINUE = "CONTINUE"
    PASS = "PASS"  # noqa: S105 - not a password
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The analysis' decision after a snapshot, with each judge's explanation."""

    decision: Decision
    elapsed: float
    message: str
    checks: tuple[CheckResult, ...] = ()
    time: float | None = None
    on_inconclusive: str = "pause"

    @property
    def final(self) -> bool:
        return self.decision is not Decision.CONTINUE

    @property
    def action(self) -> str:
        """What the caller does: "continue", "promote", "abort" or "pause"."""
        if self.decision is Decision.CONTINUE:
            return "continue"
        if self.decision is Decision.PASS:
            return "promote"
        if self.decision is Decision.FAIL or self.on_inconclusive == "fail":
            return "abort"
        return "pause"

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision.value,
            "action": self.action,
            "time": self.time,
            "elapsed": self.elapsed,
            "message": self.message,
            "checks": [check.to_dict() for check in self.checks],
        }


@dataclass(frozen=True, slots=True)
class MeasurementRecord:
    """One snapshot as fed (cumulative counters per release, custom metrics' readings)
    and the verdict it gave.

    In `to_dict`, `metrics` maps each metric read to its value (null: the read
    failed) and `metric_errors` each failed read to its error; both are left
    out when nothing was read.
    """

    seq: int
    time: float
    releases: Mapping[str, ReleaseStats]
    verdict: Verdict
    spec: AnalysisSpec | None = None  # on the first record only
    metrics: Mapping[str, MetricReading] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "seq": self.seq,
            "time": self.time,
            "releases": {name: stats.to_dict() for name, stats in self.releases.items()},
        }
        if self.metrics:
            data["metrics"] = {name: reading.value for name, reading in self.metrics.items()}
            errors = {name: r.error for name, r in self.metrics.items() if r.error is not None}
            if errors:
                data["metric_errors"] = errors
        data["verdict"] = self.verdict.to_dict()
        if self.spec is not None:
            data["spec"] = self.spec.to_dict()
        return data

    @staticmethod
    def readings_from_dict(data: Mapping[str, Any]) -> dict[str, MetricReading]:
        """The custom metrics' readings of a record's `to_dict()`."""
        errors: Mapping[str, str] = data.get("metric_errors") or {}
        return {
            name: MetricReading(None if value is None else float(value), errors.get(name))
            for name, value in (data.get("metrics") or {}).items()
        }


def build_judges(spec: AnalysisSpec) -> list[Judge]:
    """The judges a spec asks for: thresholds first, then the comparisons, then custom metrics."""
    judges: list[Judge] = [ThresholdJudge(t, spec.min_requests) for t in spec.thresholds]
    comparative = spec.comparative
    if comparative is not None:
        tests = comparative.tests
        if comparative.error_rate:
            judges.append(
                ErrorRateComparison(
                    comparative.against,
                    comparative.max_relative_increase,
                    spec.alpha,
                    tests,
                    spec.min_requests,
                )
            )
        if comparative.latency:
            judges.append(
                LatencyComparison(
                    comparative.against,
                    comparative.latency_quantile,
                    comparative.max_relative_increase,
                    comparative.max_latency_increase,
                    comparative.min_reference_samples,
                    spec.alpha,
                    tests,
                    spec.min_requests,
                )
            )
    judges.extend(MetricJudge(metric) for metric in spec.metrics)
    return judges


class Analysis:
    """A running analysis of one canary. Not thread-safe; one per canary step.

    >>> analysis = Analysis(AnalysisSpec(duration=10, max_duration=20, min_requests=1))
    >>> zero = ReleaseStats(0, 0)
    >>> analysis.observe(0.0, {"canary": zero, "baseline": zero}).decision
    <Decision.CONTINUE: 'CONTINUE'>
    """

    def __init__(self, spec: AnalysisSpec) -> None:
        self.spec = spec
        self.judges = build_judges(spec)
        self.other = spec.comparative.against if spec.comparative is not None else None
        self._records: list[MeasurementRecord] = []
        self._start: float | None = None
        self._last: Mapping[str, ReleaseStats] = {}
        self._since_start: dict[str, ReleaseStats] = {}
        self._verdict = Verdict(
            Decision.CONTINUE,
            0.0,
            "CONTINUE: waiting for the first snapshot",
            on_inconclusive=spec.on_inconclusive,
        )

    @property
    def verdict(self) -> Verdict:
        """The latest verdict."""
        return self._verdict

    @property
    def records(self) -> tuple[MeasurementRecord, ...]:
        """Every snapshot taken in, in order, each with its verdict."""
        return tuple(self._records)

    @property
    def finished(self) -> bool:
        return self._verdict.final

    def observe(
        self,
        time: float,
        releases: Mapping[str, ReleaseStats],
        values: MetricValues | None = None,
    ) -> Verdict:
        """Take in a snapshot: each release's cumulative counters at `time` (seconds).

        `releases` needs "canary" and the compared release ("baseline" or
        "stable"); others are recorded but not judged. Times must increase.
        `values` has the custom metrics read at this time: a number, None when
        the read failed, or a `MetricReading` (which carries the error's text);
        a metric left out was not read (its check stays as it was, pending
        without any reading). Names the spec does not have are recorded only.
        The first snapshot's values are recorded, not judged, like its counters.
        Once the verdict is final, further snapshots are ignored and the final
        verdict is returned.
        """
        if self.finished:
            return self._verdict
        if not math.isfinite(time):
            raise ValueError(f"a snapshot time must be a finite number, got {time}")
        if self._start is not None and time <= self._records[-1].time:
            raise ValueError(f"snapshot times must increase: {time} after {self._records[-1].time}")
        judged = [CANARY] if self.other is None else [CANARY, self.other]
        missing = [name for name in judged if name not in releases]
        if missing:
            raise ValueError(f"the snapshot at {time} has no counters for {', '.join(missing)}")
        releases = dict(releases)
        readings = {name: MetricReading.of(value) for name, value in (values or {}).items()}
        if self._start is None:
            self._start = time
            self._since_start = {name: ReleaseStats.zero(releases[name]) for name in judged}
            verdict = Verdict(
                Decision.CONTINUE,
                0.0,
                f"CONTINUE at 0s of {seconds(self.spec.duration)}: first snapshot, counting"
                f" from here",
                time=time,
                on_inconclusive=self.spec.on_inconclusive,
            )
        else:
            verdict = self._judge(time, releases, judged, readings)
        self._last = releases
        self._verdict = verdict
        first = not self._records
        self._records.append(
            MeasurementRecord(
                len(self._records), time, releases, verdict, self.spec if first else None, readings
            )
        )
        return verdict

    def _judge(
        self,
        time: float,
        releases: dict[str, ReleaseStats],
        judged: list[str],
        readings: Mapping[str, MetricReading],
    ) -> Verdict:
        assert self._start is not None
        elapsed = time - self._start
        steps = {name: releases[name].since(self._last[name]) for name in judged}
        before = self._since_start
        self._since_start = {name: before[name] + steps[name] for name in judged}
        other = self.other
        window = Window(
            elapsed,
            self._since_start[CANARY],
            steps[CANARY],
            None if other is None else self._since_start[other],
            None if other is None else steps[other],
            None if other is None else before[other],
            readings,
        )
        checks = tuple(judge.update(window) for judge in self.judges)
        return self._decide(time, elapsed, checks)

    def _decide(self, time: float, elapsed: float, checks: tuple[CheckResult, ...]) -> Verdict:
        spec = self.spec

        def verdict(decision: Decision, message: str) -> Verdict:
            return Verdict(decision, elapsed, message, checks, time, spec.on_inconclusive)

        failing = [check for check in checks if check.decision == FAIL]
        if failing:
            more = f" (and {len(failing) - 1} more failing)" if len(failing) > 1 else ""
            return verdict(
                Decision.FAIL, f"FAIL after {seconds(elapsed)}: {failing[0].message}{more}"
            )
        counts = {name: stats.requests for name, stats in self._since_start.items()}
        short = [f"{name} has {n}" for name, n in counts.items() if n < spec.min_requests]
        pending = [check.name for check in checks if check.decision == PENDING]
        traffic = ", ".join(f"{name} {n} requests" for name, n in counts.items())
        if elapsed >= spec.duration and not short and not pending:
            what = f"{_checks(len(checks))} ok" if checks else "no checks"
            return verdict(Decision.PASS, f"PASS after {seconds(elapsed)}: {what}; {traffic}")
        reasons = []
        if short:
            reasons.append(f"too little traffic: {', '.join(short)} of {spec.min_requests}")
        if pending:
            reasons.append(f"pending: {', '.join(pending)}")
        if elapsed >= spec.max_duration:
            return verdict(
                Decision.INCONCLUSIVE,
                f"INCONCLUSIVE after {seconds(elapsed)} (max_duration"
                f" {seconds(spec.max_duration)}): {'; '.join(reasons)};"
                f" on_inconclusive: {spec.on_inconclusive}",
            )
        ok = len(checks) - len(pending)
        status = "; ".join([f"{ok} of {_checks(len(checks))} ok", *reasons])
        return verdict(
            Decision.CONTINUE,
            f"CONTINUE at {seconds(elapsed)} of {seconds(spec.duration)}: {status}; {traffic}",
        )


def _checks(count: int) -> str:
    return f"{count} check" if count == 1 else f"{count} checks"
