"""Re-judge recorded snapshots with other settings (`conveyor analyze --replay`).

The records of an `Analysis` hold each snapshot's cumulative counters as
they were fed, and the first record holds the spec. `replay` feeds the same
snapshots (and custom metrics' readings) to a new `Analysis` built from that
spec changed by overrides, so "would `error_rate<2%` have passed this canary?"
or "`checkout_error_rate<0.02`?" has an exact answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from conveyor.analysis.custom import MetricReading
from conveyor.analysis.metrics import ReleaseStats
from conveyor.analysis.runner import Analysis, MeasurementRecord
from conveyor.analysis.spec import AnalysisSpec, apply_overrides
from conveyor.analysis.thresholds import AnalysisSpecError

__all__ = ["replay"]


def _snapshot(
    record: Mapping[str, Any] | MeasurementRecord,
) -> tuple[float, dict[str, ReleaseStats], dict[str, MetricReading]]:
    if isinstance(record, MeasurementRecord):
        return record.time, dict(record.releases), dict(record.metrics)
    releases = {name: ReleaseStats.from_dict(data) for name, data in record["releases"].items()}
    return float(record["time"]), releases, MeasurementRecord.readings_from_dict(record)


def _recorded_spec(records: Sequence[Mapping[str, Any] | MeasurementRecord]) -> AnalysisSpec:
    for record in records:
        if isinstance(record, MeasurementRecord):
            if record.spec is not None:
                return record.spec
        elif record.get("spec") is not None:
            return AnalysisSpec.from_dict(record["spec"])
    raise AnalysisSpecError("the recording has no spec (it is on the first record); pass spec=")


def replay(
    records: Sequence[Mapping[str, Any] | MeasurementRecord],
    spec_overrides: Iterable[str] = (),
    *,
    spec: AnalysisSpec | None = None,
) -> Analysis:
    """A new `Analysis` fed with the recorded snapshots, judged with changed settings.

    `records` are `MeasurementRecord`s or their `to_dict()` (from a journal),
    in order; `spec_overrides` are `--set` arguments (see `apply_overrides`);
    `spec` replaces the recorded spec. Feeding stops at a final verdict; when
    the recording ends first, the verdict stays CONTINUE.
    """
    base = spec if spec is not None else _recorded_spec(records)
    analysis = Analysis(apply_overrides(base, spec_overrides))
    for record in records:
        time, releases, readings = _snapshot(record)
        if analysis.observe(time, releases, readings).final:
            break
    return analysis
