"""conveyor.analysis: judge a canary from live metrics, explainably. Pure: no I/O.

Feed an `Analysis` (built from an `AnalysisSpec`) cumulative `ReleaseStats`
snapshots per release; read its `Verdict` (CONTINUE, PASS, FAIL,
INCONCLUSIVE) with one `CheckResult` per judge, and its records, which
`replay` re-judges with other settings. Custom metrics (`spec.metrics`: a
Prometheus query, an HTTP endpoint, a command) are read by
`conveyor.sources` and passed to `observe` as values. The statistics are in
docs/analysis.md.
"""

from __future__ import annotations

from conveyor.analysis.custom import (
    CommandOutput,
    Condition,
    HttpJson,
    MetricCheck,
    MetricReading,
    PrometheusQuery,
    SourceSpec,
    parse_condition,
    parse_source,
)
from conveyor.analysis.judges import FAIL, OK, PENDING, CheckResult
from conveyor.analysis.metrics import (
    BASELINE,
    CANARY,
    DEFAULT_BOUNDS_MS,
    STABLE,
    Histogram,
    ReleaseStats,
)
from conveyor.analysis.replay import replay
from conveyor.analysis.runner import (
    Analysis,
    Decision,
    MeasurementRecord,
    MetricValues,
    Verdict,
)
from conveyor.analysis.sequential import RateRatioTest
from conveyor.analysis.spec import AnalysisSpec, ComparativeSpec, apply_overrides
from conveyor.analysis.thresholds import AnalysisSpecError, Threshold, parse_threshold

__all__ = [
    "BASELINE",
    "CANARY",
    "DEFAULT_BOUNDS_MS",
    "FAIL",
    "OK",
    "PENDING",
    "STABLE",
    "Analysis",
    "AnalysisSpec",
    "AnalysisSpecError",
    "CheckResult",
    "CommandOutput",
    "ComparativeSpec",
    "Condition",
    "Decision",
    "Histogram",
    "HttpJson",
    "MeasurementRecord",
    "MetricCheck",
    "MetricReading",
    "MetricValues",
    "PrometheusQuery",
    "RateRatioTest",
    "ReleaseStats",
    "SourceSpec",
    "Threshold",
    "Verdict",
    "apply_overrides",
    "parse_condition",
    "parse_source",
    "parse_threshold",
    "replay",
]
