"""The base of every model of `conveyor.yml`, and its duration fields."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from conveyor.config.durations import format_duration


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _duration_field(seconds: float, description: str) -> Any:
    """A Duration field whose schema default reads like the file ("2s", not 2.0)."""
    text = format_duration(seconds)
    return Field(
        seconds,
        description=f'{description} (default "{text}").',
        json_schema_extra={"default": text},
    )
