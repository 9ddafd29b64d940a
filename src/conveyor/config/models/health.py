"""Health checks and smoke tests: how Conveyor tells a new instance works."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator

from conveyor.config.durations import Duration, describe_value, format_duration, problem
from conveyor.config.limits import MIN_HEALTH_INTERVAL
from conveyor.config.models.base import _duration_field, _Model
from conveyor.config.models.values import Command, PositiveInt, StatusCode


class _HealthBase(_Model):
    timeout: Duration = _duration_field(2.0, "How long one check may take before it fails")
    interval: Duration = _duration_field(
        1.0, f"Time between two checks (at least {format_duration(MIN_HEALTH_INTERVAL)})"
    )
    healthy_threshold: PositiveInt = Field(
        1, description="Consecutive passing checks needed before the instance counts as healthy."
    )

    @field_validator("interval")
    @classmethod
    def _interval_not_too_short(cls, value: float) -> float:
        if value < MIN_HEALTH_INTERVAL:
            raise problem(
                f"expected at least {format_duration(MIN_HEALTH_INTERVAL)} between two checks, "
                f'got "{format_duration(value)}"'
            )
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout_not_zero(cls, value: float) -> float:
        if value <= 0:
            raise problem('expected a timeout above 0s (like "2s"): every check would fail')
        return value


class HttpHealth(_HealthBase):
    """Healthy when an HTTP GET on the instance answers with the expected status."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["http"] = Field("http", description="Check with an HTTP GET request.")
    path: str = Field("/health", description='Path requested on the instance, starting with "/".')
    expect_status: StatusCode = Field(200, description="HTTP status the check must answer with.")
    unhealthy_threshold: PositiveInt = Field(
        3,
        description="The same wrong status this many times in a row (after start_period) fails "
        "the instance at once, with the status, the body's first line and a hint (400: "
        "ALLOWED_HOSTS, 301: an HTTPS redirect, 404: the path, 5xx: the app's log) instead "
        "of waiting for deploy_timeout. No answer at all (connection refused) keeps waiting.",
    )
    start_period: Duration = _duration_field(
        10.0,
        "Grace period after an instance starts during which wrong answers do not count "
        "towards unhealthy_threshold (a booting app may answer 5xx)",
    )

    @field_validator("path")
    @classmethod
    def _path_is_absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise problem(f'expected a path starting with "/", got {describe_value(value)}')
        return value


class TcpHealth(_HealthBase):
    """Healthy when the instance accepts a TCP connection on its port."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["tcp"] = Field("tcp", description="Check that the port accepts connections.")


class CommandHealth(_HealthBase):
    """Healthy when a command exits with status 0. It runs in the release directory
    with the instance's environment plus PORT; $PORT and ${PORT} (and the other instance
    variables) in an argv list are filled in, as in `run`."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["command"] = Field("command", description="Check by running a command.")
    command: Command = Field(
        description="Command to run: a string (run by /bin/sh -c) or a list of strings (argv)."
    )


HealthConfig = Annotated[HttpHealth | TcpHealth | CommandHealth, Field(discriminator="type")]
"""One of `HttpHealth`, `TcpHealth`, `CommandHealth`, chosen by `type`."""


class SmokeTest(_Model):
    """One smoke test of a new release: an HTTP GET on one of its instances, or a command.

    Smoke tests run once per deploy, on the first healthy instance of the new
    release and before any of its instances gets traffic; one failure stops
    the deploy, which then restores the previous release.
    """

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="What the test checks, shown in messages.")
    path: str | None = Field(
        None,
        description='Path requested on the new instance, starting with "/" (as the instance '
        "sees it, like health.path).",
    )
    expect_status: StatusCode = Field(200, description="HTTP status the request must answer.")
    command: Command | None = Field(
        None,
        description="Command to run instead: a string (run by /bin/sh -c) or a list of strings "
        "(argv), in the release directory with the instance's environment plus SMOKE_URL "
        "(the instance's base URL, e.g. http://127.0.0.1:24311); exit 0 passes.",
    )
    timeout: Duration = _duration_field(30.0, "How long the test may take before it fails")

    @field_validator("path")
    @classmethod
    def _path_is_absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise problem(f'expected a path starting with "/", got {describe_value(value)}')
        return value

    def model_post_init(self, context: Any, /) -> None:
        if (self.path is None) == (self.command is None):
            raise problem(
                "each smoke test is either path: /some/path (an HTTP GET on the new instance) "
                "or command: ...; got " + ("both" if self.path is not None else "neither")
            )

    def describe(self) -> str:
        """A short label: the name, else the request or the command."""
        if self.name:
            return self.name
        if self.path is not None:
            return f"GET {self.path}"
        command = self.command or ""
        return "command " + (command if isinstance(command, str) else " ".join(command))
