"""`monitors:` of an environment: probes and alert rules its agent keeps watching."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from conveyor.config.durations import Duration, describe_value, problem
from conveyor.config.models.base import _duration_field, _Model
from conveyor.config.models.values import (
    _NAME_SCHEMA,
    Command,
    PositiveInt,
    ServiceName,
    StatusCode,
    _name_validator,
)

MonitorName = Annotated[str, _name_validator("monitor"), _NAME_SCHEMA]
MIN_INTERVAL_S = 1.0
OnFire = Literal["notify", "rollback"]
_SOURCES = ("prometheus", "http", "command")


def _at_least_a_second(value: float) -> float:
    if value < MIN_INTERVAL_S:
        raise problem(f'expected at least 1s, got "{value:g}s"')
    return value


class AlertRule(_Model):
    """A condition on the router's counters or a custom metric that fires an alert."""

    model_config = ConfigDict(extra="forbid")

    alert: str = Field(
        description='When it fires: "error_rate > 5% for 5m", "p95 > 2s for 5m", '
        '"requests < 1 for 10m", or a custom metric "queue_depth > 100 for 10m" (with '
        "prometheus:, http: or command:); the analysis' thresholds and conditions."
    )
    service: ServiceName | None = Field(
        None, description="Only this service's traffic; default: every service's."
    )
    window: Duration = _duration_field(
        60.0, "The router's counters are taken over this much of the latest traffic"
    )
    min_requests: PositiveInt = Field(
        10,
        description="Requests the window needs before an error rate or a latency is judged "
        "(fewer: nothing is wrong).",
    )
    on_fire: OnFire = Field(
        "notify",
        description='"notify" (the notify: targets get alert_firing), or "rollback": also '
        "roll back, when the previous release is still warm (inside the rollback window).",
    )
    prometheus: dict[str, Any] | None = Field(
        None, description="Custom metric: {url, query, timeout} (as in an analysis' metrics)."
    )
    http: dict[str, Any] | None = Field(
        None, description="Custom metric: {url, path, headers, timeout}."
    )
    command: Any = Field(None, description="Custom metric: a command whose output is the number.")

    @field_validator("window")
    @classmethod
    def _window(cls, value: float) -> float:
        return _at_least_a_second(value)

    @model_validator(mode="after")
    def _parses(self) -> AlertRule:
        from conveyor.analysis.thresholds import AnalysisSpecError

        try:
            expr = self.expression()
            source = self.source_dict()
            if expr.custom and source is None:
                raise problem(
                    f'"{expr.metric}" is not a metric of the router (error_rate, p50..p99, '
                    "requests): give a custom metric its source, prometheus:, http: or command:",
                    at="alert",
                )
            if not expr.custom and source is not None:
                raise problem(
                    f"{expr.metric} is read from the router: a source ({', '.join(source)}) is "
                    "for a custom metric"
                )
            if source is not None:
                from conveyor.analysis.custom import parse_source

                parse_source(source)
        except AnalysisSpecError as error:
            message = str(error).removeprefix("alert: ")
            raise problem(message, at="alert" if str(error).startswith("alert") else None) from None
        return self

    def expression(self) -> Any:
        """The parsed `alert` (`conveyor.monitors.rules.RuleExpr`)."""
        from conveyor.monitors.rules import parse_rule

        return parse_rule(self.alert)

    def source_dict(self) -> dict[str, Any] | None:
        """The custom metric's source, as `conveyor.sources.source_from_dict` reads it."""
        given = {key: getattr(self, key) for key in _SOURCES if getattr(self, key) is not None}
        return given or None


class Probe(_Model):
    """A health check run on an interval against the environment's URL or each instance."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["http", "tcp", "command"] = Field(
        "http", description='The kind of check, as health checks: "http", "tcp" or "command".'
    )
    path: str = Field("/", description='http: the path requested, starting with "/".')
    expect_status: StatusCode = Field(200, description="http: the status expected.")
    command: Command | None = Field(
        None,
        description="command: what runs (in the directory of conveyor.yml, with PROBE_URL: "
        "the URL or instance probed); exit 0 passes.",
    )
    against: Literal["url", "instances"] = Field(
        "url",
        description='"url": the environment\'s public URL (through the router); "instances": '
        "each serving instance, directly.",
    )
    service: ServiceName | None = Field(
        None, description="With against: instances, only this service's; default every one."
    )
    interval: Duration = _duration_field(30.0, "Time between two checks")
    timeout: Duration = _duration_field(5.0, "How long one check may take")
    for_: Duration = Field(
        0.0,
        alias="for",
        description='How long it must keep failing before the alert fires ("1m"; default: '
        "at the first failure).",
        json_schema_extra={"default": "0s"},
    )
    on_fire: OnFire = Field("notify", description='"notify", or "rollback" as for rules.')

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        return _at_least_a_second(value)

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if value <= 0:
            raise problem('expected a timeout above 0s (like "5s")')
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise problem(f'expected a path starting with "/", got {describe_value(value)}')
        return value

    @model_validator(mode="after")
    def _command_for_command(self) -> Probe:
        if self.type == "command" and self.command is None:
            raise problem("a command probe needs command: (what runs)", at="command")
        if self.type != "command" and self.command is not None:
            raise problem(f"command: is for type: command, not {self.type}", at="command")
        if self.type == "command" and self.against == "instances":
            raise problem("a command probe runs against the url", at="against")
        return self


class MonitorsConfig(_Model):
    """Probes and alert rules the environment's agent evaluates after the deploys."""

    model_config = ConfigDict(extra="forbid")

    interval: Duration = _duration_field(10.0, "Time between two evaluations of the rules")
    rules: dict[MonitorName, AlertRule] = Field(
        default_factory=dict, description="Alert rules by name."
    )
    probes: dict[MonitorName, Probe] = Field(default_factory=dict, description="Probes by name.")

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        return _at_least_a_second(value)

    @model_validator(mode="after")
    def _names_apart(self) -> MonitorsConfig:
        both = sorted(set(self.rules) & set(self.probes))
        if both:
            raise problem(f'"{both[0]}" names a rule and a probe: alerts are known by name')
        return self

    @property
    def empty(self) -> bool:
        return not self.rules and not self.probes
