"""Setting values as people write them: durations ("5s"), numbers ("5%"), whole numbers, on/off.

Each reader names the setting (`key`) in its `AnalysisSpecError`.
"""

from __future__ import annotations

import re

from conveyor.analysis.thresholds import AnalysisSpecError

__all__ = ["OFF", "ON", "parse_flag", "parse_integer", "parse_number", "parse_seconds"]

OFF = {"off", "false", "no", "none", "0"}
ON = {"on", "true", "yes", "1"}


def parse_seconds(key: str, value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        # conveyor.config pulls in pydantic; only callers that parse text pay for it.
        from conveyor.config.durations import parse_duration

        try:
            return parse_duration(value)
        except ValueError as exc:
            raise AnalysisSpecError(f"{key}: {exc}") from None
    raise AnalysisSpecError(f'{key}: expected a duration like "5s", got {value!r}')


def parse_number(key: str, value: object, *, percent: bool = False) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        scale = 1.0
        if percent and text.endswith("%"):
            text, scale = text[:-1], 0.01
        elif key.endswith("latency_quantile") and re.fullmatch(r"p\d{1,2}", text):
            text, scale = text[1:], 0.01
        try:
            return float(text) * scale
        except ValueError:
            pass
    raise AnalysisSpecError(f"{key}: expected a number, got {value!r}")


def parse_integer(key: str, value: object) -> int:
    number = parse_number(key, value)
    if not number.is_integer():
        raise AnalysisSpecError(f"{key}: expected a whole number, got {value!r}")
    return int(number)


def parse_flag(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in OFF | ON:
        return value.strip().lower() in ON
    raise AnalysisSpecError(f"{key}: expected on or off, got {value!r}")
