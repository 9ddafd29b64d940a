"""Analyses: how a release is judged from live metrics."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from conveyor.config.durations import Duration, problem
from conveyor.config.models.base import _duration_field, _Model
from conveyor.config.models.values import Fraction, PositiveInt


class ComparativeConfig(_Model):
    """The sequential comparison of the canary with the baseline or the stable release."""

    model_config = ConfigDict(extra="forbid")

    against: Literal["baseline", "stable"] | None = Field(
        None,
        description='"baseline" or "stable"; default: "baseline" when the canary strategy '
        'starts one (baseline: true), else "stable".',
    )
    error_rate: bool = Field(True, description="Compare the share of 5xx responses.")
    latency: bool = Field(True, description="Compare the share of slow responses.")
    max_relative_increase: Fraction = Field(
        0.2,
        description="Tolerance: a canary with up to this much more errors or slow requests "
        'than the compared release is no worse ("20%" or 0.2).',
    )
    latency_quantile: Fraction = Field(
        0.95,
        description="A request is slow above this quantile of the compared release (0.95).",
    )
    max_latency_increase: Fraction = Field(
        0.1, description='Latency margin over that quantile before a request is slow ("10%").'
    )
    min_reference_samples: PositiveInt = Field(
        100,
        description="Requests of the compared release needed before latencies are compared.",
    )


class AnalysisTemplate(_Model):
    """How a release is judged from live metrics (see docs/analysis.md)."""

    model_config = ConfigDict(extra="forbid")

    interval: Duration = _duration_field(1.0, "Time between two measurements")
    duration: Duration = _duration_field(
        60.0, "The analysis passes at the first measurement after this with enough traffic"
    )
    max_duration: Duration | None = Field(
        None,
        description="With too little traffic until then, the analysis ends inconclusive "
        '(default: 3 times "duration").',
    )
    min_requests: PositiveInt = Field(
        100, description="Requests each judged release needs before the analysis can pass."
    )
    thresholds: list[str] = Field(
        default_factory=list,
        description='Absolute limits on the new release: "error_rate < 1%", "p95 < 500ms".',
    )
    comparative: ComparativeConfig | bool = Field(
        True,
        description="Sequential comparison with the baseline or stable release (true, false, "
        "or a mapping of settings).",
    )
    alpha: Fraction = Field(
        0.01,
        description='Highest probability of aborting a release that is no worse ("1%").',
    )
    on_inconclusive: Literal["pause", "fail"] = Field(
        "pause", description='What an inconclusive analysis does: "pause" or "fail".'
    )
    metrics: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Extra metrics from Prometheus, an HTTP endpoint or a command, each with "
        "a condition (see docs/analysis.md).",
    )

    def model_post_init(self, context: Any, /) -> None:
        from conveyor.analysis import AnalysisSpecError

        try:
            self.spec_dict("baseline")
            self.spec_dict("stable")
        except AnalysisSpecError as error:
            raise problem(str(error)) from None

    def spec_dict(self, default_against: str, *, comparative: bool = True) -> dict[str, Any]:
        """The `AnalysisSpec.from_dict` form; `default_against` fills `comparative.against`.

        Raises `AnalysisSpecError` when the settings do not make a valid spec.
        """
        from conveyor.analysis import AnalysisSpec

        data: dict[str, Any] = {
            "interval": self.interval,
            "duration": self.duration,
            "max_duration": self.max_duration
            if self.max_duration is not None
            else 3 * self.duration,
            "min_requests": self.min_requests,
            "thresholds": list(self.thresholds),
            "alpha": self.alpha,
            "on_inconclusive": self.on_inconclusive,
        }
        if self.metrics:
            data["metrics"] = [dict(m) for m in self.metrics]
        settings = self.comparative
        if not comparative or settings is False:
            data["comparative"] = None
        else:
            chosen = settings if isinstance(settings, ComparativeConfig) else ComparativeConfig()
            values = chosen.model_dump()
            values["against"] = values["against"] or default_against
            data["comparative"] = values
        AnalysisSpec.from_dict(data)  # raises on a bad combination
        return data
