"""Durations written with units ("500ms", "30s", "1m30s") and the pydantic type for them.

A bare number is refused in `conveyor.yml` on purpose: `timeout: 5` could mean
seconds or milliseconds, `timeout: 5s` cannot.
"""

from __future__ import annotations

import json
import math
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, ValidationInfo, WithJsonSchema
from pydantic_core import PydanticCustomError

from conveyor.config.limits import MAX_DURATION, MAX_DURATION_TEXT

__all__ = [
    "DURATION_PATTERN",
    "ERROR_TYPE",
    "FROM_FILE",
    "Duration",
    "describe_value",
    "format_duration",
    "parse_duration",
    "parse_span",
    "problem",
]

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|h|m|s))+$"
# ASCII digits only: Python's \d and float() also take "\u0665" (Arabic-Indic five).
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}

# The pydantic error type of Conveyor's own validation errors: the loader shows
# their message as is (see `problem`).
ERROR_TYPE = "conveyor"
# Validation context key set by the loader: values come from the file, where
# bare numbers are refused as durations.
FROM_FILE = "conveyor_from_file"

_SHOWN_TEXT = 60


def describe_value(value: object) -> str:
    """A value as it reads in an error message: strings quoted, YAML spellings for the rest."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value.bit_length() > 200:  # repr() fails past 4300 digits
        return f"a number of about {len(hex(value)) * 6 // 5} digits"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        text = value if len(value) <= _SHOWN_TEXT else value[: _SHOWN_TEXT - 3] + "..."
        return json.dumps(text, ensure_ascii=False)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return describe_value(str(value))


def problem(message: str, at: str | None = None) -> PydanticCustomError:
    """A validation error whose `message` is shown verbatim; `at` extends the key path."""
    context: dict[str, Any] = {"message": message}
    if at is not None:
        context["at"] = at
    return PydanticCustomError(ERROR_TYPE, "{message}", context)


def _duration_message(value: object) -> str:
    message = f'expected a duration like "5s", got {describe_value(value)}'
    if isinstance(value, str) and any(c.isdigit() and not c.isascii() for c in value):
        message += " (write its digits as 0-9)"
    return message


def parse_duration(text: str) -> float:
    """Seconds in `text`: one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h`.

    >>> parse_duration("1m30s"), parse_duration("500ms"), parse_duration("0s")
    (90.0, 0.5, 0.0)

    Raises `ValueError('expected a duration like "5s", got ...')` for anything else,
    including bare numbers, and for durations over `MAX_DURATION` (7 days).
    """
    if not isinstance(text, str):
        raise ValueError(_duration_message(text))
    stripped = text.strip()
    position, total = 0, 0.0
    while position < len(stripped):
        match = _PART.match(stripped, position)
        if match is None:
            raise ValueError(_duration_message(text))
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position == 0:
        raise ValueError(_duration_message(text))
    if total > MAX_DURATION:
        raise ValueError(
            f'expected a duration of at most 7 days ("{MAX_DURATION_TEXT}"), '
            f"got {describe_value(text)}"
        )
    return total


# Spans of days written on the command line (`dora --since 30d`, `tokens create --expires 90d`).
_SPAN = re.compile(r"^([0-9]{1,5})([hdw])$")
_SPAN_UNIT = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_span(text: str) -> timedelta | None:
    """ "48h", "30d" or "12w" as a timedelta; None when `text` is not such a span."""
    span = _SPAN.match(text.strip())
    return None if span is None else int(span.group(1)) * _SPAN_UNIT[span.group(2)]


def format_duration(seconds: float) -> str:
    """The shortest unit spelling of `seconds` that `parse_duration` reads back.

    Rounded to the millisecond: 0 -> "0s", 0.5 -> "500ms", 90 -> "1m30s",
    3600 -> "1h", 1.25 -> "1.25s", 61.5 -> "1m1.5s".
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration")
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    whole, millis = divmod(millis, 1000)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if whole:
        fraction = f".{millis:03d}".rstrip("0") if millis else ""
        parts.append(f"{whole}{fraction}s")
    elif millis:
        parts.append(f"{millis}ms")
    return "".join(parts)


def _validate_duration(value: object, info: ValidationInfo) -> float:
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise problem(str(exc)) from None
    # Seconds as a number are fine from Python code (tests, the engine), never from the file.
    from_file = bool(info.context and info.context.get(FROM_FILE))
    if (
        not from_file
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and 0 <= value <= MAX_DURATION
    ):
        return float(value)
    raise problem(_duration_message(value))


Duration = Annotated[
    float,
    PlainValidator(_validate_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": 'A duration with units: "500ms", "30s", "2m", "1h", "1m30s".',
        }
    ),
]
"""Seconds as a float, written in the file as a string with units."""
