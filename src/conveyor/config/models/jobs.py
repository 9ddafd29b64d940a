"""Scheduled jobs (`jobs:`): a command of a service's current release, or a database
backup, run on a cron schedule by `conveyor agent ENV`."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, PlainValidator, WithJsonSchema, model_validator

from conveyor.config.durations import Duration, describe_value, problem
from conveyor.config.models.base import _duration_field, _Model
from conveyor.config.models.databases import DatabaseName
from conveyor.config.models.policies import TimeZone
from conveyor.config.models.values import (
    _NAME_SCHEMA,
    Command,
    EnvironmentName,
    PositiveInt,
    ServiceName,
    _name_validator,
)

ScheduledJobName = Annotated[str, _name_validator("job"), _NAME_SCHEMA]
MIN_EVERY_S = 1.0


def _check_cron(value: object) -> str:
    from conveyor.agent.schedule import check_schedule

    if not isinstance(value, str):
        raise problem(f'expected a cron schedule like "0 3 * * *", got {describe_value(value)}')
    try:
        check_schedule(value)
    except ValueError as error:
        raise problem(str(error)) from None
    return " ".join(value.split())


CronSchedule = Annotated[
    str,
    PlainValidator(_check_cron),
    WithJsonSchema({"type": "string", "description": 'A crontab line, "0 3 * * *".'}),
]


class ScheduledJob(_Model):
    """A command of a service's current release, or a backup of a database, on a schedule."""

    model_config = ConfigDict(extra="forbid")

    schedule: CronSchedule | None = Field(
        None,
        description='When it runs: a crontab line, "minute hour day month weekday" ("0 3 * * *": '
        "03:00 every day; weekdays 0 and 7 are Sunday), or 6 fields with the seconds first.",
    )
    every: Duration | None = Field(
        None,
        description='Instead of schedule: every so long ("30s", "1h"), from the agent\'s start.',
    )
    timezone: TimeZone = Field("UTC", description='IANA time zone of the schedule, "Europe/Paris".')
    service: ServiceName | None = Field(
        None, description="The service whose current release runs the command."
    )
    command: Command | None = Field(
        None,
        description="What runs, in the release directory with the service's variables and "
        "secrets: a string for /bin/sh -c, or an argv list.",
    )
    backup: DatabaseName | None = Field(
        None, description="Instead of a command: back up this database (from databases:)."
    )
    keep: PositiveInt | None = Field(
        None,
        description="With backup: how many of this job's backups to keep (default: the "
        "database's backup.keep).",
    )
    environments: list[EnvironmentName] = Field(
        default_factory=list, description="Only in these environments; empty: every one."
    )
    timeout: Duration = _duration_field(3600.0, "How long one run may take before it is killed")

    @model_validator(mode="before")
    @classmethod
    def _one_of_each(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if ("schedule" in data) == ("every" in data):
            raise problem('give schedule: (a cron line like "0 3 * * *") or every:, not both')
        if ("command" in data) == ("backup" in data):
            raise problem("give command: (with service:) or backup: (a database), not both")
        if "command" in data and "service" not in data:
            raise problem("a command needs service: (the service whose release runs it)")
        if "backup" in data and "service" in data:
            raise problem("service: is for a command; a backup job has none", at="service")
        if "keep" in data and "backup" not in data:
            raise problem("keep: is for backup jobs", at="keep")
        return data

    @model_validator(mode="after")
    def _every_not_too_short(self) -> ScheduledJob:
        if self.every is not None and self.every < MIN_EVERY_S:
            raise problem(f"expected at least 1s, got {self.every:g}s", at="every")
        return self

    def runs_in(self, environment: str) -> bool:
        return not self.environments or environment in self.environments
