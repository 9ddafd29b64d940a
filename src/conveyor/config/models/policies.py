"""When and by whose leave an environment is deployed: windows, freezes, approvals."""

from __future__ import annotations

import datetime
import re
from typing import Annotated

from pydantic import ConfigDict, Field, PlainValidator, WithJsonSchema

from conveyor.config.durations import Duration, describe_value, problem
from conveyor.config.limits import MAX_APPROVALS
from conveyor.config.models.base import _duration_field, _Model
from conveyor.config.models.values import _int_validator

_CLOCK = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")


def _check_clock(value: object) -> str:
    if isinstance(value, str) and _CLOCK.fullmatch(value.strip()):
        return value.strip()
    raise problem(f'expected a time of day like "09:00", got {describe_value(value)}')


def _check_timezone(value: object) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if isinstance(value, str):
        try:
            ZoneInfo(value)
            return value
        except (ZoneInfoNotFoundError, ValueError):
            pass
    raise problem(
        f'expected a time zone like "Europe/Berlin" or "UTC", got {describe_value(value)}'
    )


def _check_day(value: object) -> str:
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    if isinstance(value, str) and value.strip().lower()[:3] in days:
        return value.strip().lower()[:3]
    raise problem(f"expected a day like mon, tue, ... sun, got {describe_value(value)}")


Clock = Annotated[str, PlainValidator(_check_clock), WithJsonSchema({"type": "string"})]
TimeZone = Annotated[str, PlainValidator(_check_timezone), WithJsonSchema({"type": "string"})]
Day = Annotated[str, PlainValidator(_check_day), WithJsonSchema({"type": "string"})]


class WindowConfig(_Model):
    """When deploys may start: on these days, between these times, in this time zone."""

    model_config = ConfigDict(extra="forbid")

    days: list[Day] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"],
        description="Days the window opens (mon ... sun).",
    )
    start: Clock = Field(description='Opening time, "09:00".')
    end: Clock = Field(description='Closing time, "17:00"; before start: past midnight.')
    timezone: TimeZone = Field("UTC", description='IANA time zone, "Europe/Berlin".')


class FreezeConfig(_Model):
    """Days without deploys (both included), e.g. the holidays."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: datetime.date = Field(alias="from", description="First day of the freeze.")
    end: datetime.date = Field(alias="to", description="Last day of the freeze.")
    reason: str = Field("", description="Shown to whoever tries to deploy.")
    timezone: TimeZone = Field("UTC", description="Time zone of the dates.")


class ApprovalsConfig(_Model):
    """Deploys wait in awaiting_approval until enough approvers say yes."""

    model_config = ConfigDict(extra="forbid")

    required: Annotated[int, _int_validator(1, MAX_APPROVALS)] = Field(
        1,
        description=f"Approvals needed (distinct people, at most {MAX_APPROVALS} and no more "
        "than the approvers can give).",
    )
    approvers: list[str] = Field(
        default_factory=list,
        description='People (as CONVEYOR_USER names them) and "@group"s (groups:); empty: anyone.',
    )
    prevent_self_approval: bool = Field(
        True, description="Whoever started the deploy may not approve it."
    )
    expires: Duration = _duration_field(86400.0, "How long the request stays open")
    wait_timer: Duration = _duration_field(
        0.0, "How long after the request the deploy waits at least, approved or not"
    )
