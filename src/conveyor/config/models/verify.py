"""`verify:`: the check that goes on after a deploy gave the new releases all the traffic."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from conveyor.config.durations import Duration, format_duration, problem
from conveyor.config.models.base import _duration_field, _Model
from conveyor.config.models.health import SmokeTest
from conveyor.config.models.values import AnalysisName


class VerifyConfig(_Model):
    """Smoke tests against the environment's public URL and/or an analysis of the router's
    counters, for `bake` after the release has all the traffic; a failure rolls it back."""

    model_config = ConfigDict(extra="forbid")

    bake: Duration = Field(
        description='How long the checks go on after the last traffic change ("2m"); the '
        "deploy succeeds when it ends without a failure."
    )
    interval: Duration = _duration_field(5.0, "Time between two rounds of the smoke tests")
    smoke: list[SmokeTest] = Field(
        default_factory=list,
        description="Tests run every interval against the environment's URL: `path` is "
        "requested there (as clients see it, e.g. /api/orders); a `command` runs in the "
        "directory of conveyor.yml with SMOKE_URL set to that URL.",
    )
    analysis: AnalysisName | None = Field(
        None,
        description="Analysis (from the top-level `analysis:`) of the new releases' traffic "
        "through the router during the whole bake (thresholds and metrics; nothing is left "
        "to compare with).",
    )

    @field_validator("bake", "interval")
    @classmethod
    def _above_zero(cls, value: float, info: ValidationInfo) -> float:
        if value <= 0:
            example = "2m" if info.field_name == "bake" else "5s"
            raise problem(f'expected a duration above 0s, like "{example}"')
        return value

    def model_post_init(self, context: Any, /) -> None:
        if not self.smoke and self.analysis is None:
            raise problem(
                "a bake needs something to check: smoke tests (smoke: [{path: /}]), an "
                "analysis (analysis: NAME), or both"
            )
        if self.interval > self.bake:
            raise problem(
                f"interval ({format_duration(self.interval)}) is longer than the bake "
                f"({format_duration(self.bake)}): the smoke tests would run once at most",
                at="interval",
            )
