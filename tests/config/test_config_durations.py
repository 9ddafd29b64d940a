from __future__ import annotations

import math

import pytest
from pydantic import BaseModel, ValidationError

from conveyor.config import Duration, format_duration, parse_duration
from conveyor.config.durations import FROM_FILE


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0.0),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h2m3s", 3723.0),
        ("1.5s", 1.5),
        ("2s250ms", 2.25),
        (" 5s ", 5.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert math.isclose(parse_duration(text), seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("fast", 'expected a duration like "5s", got "fast"'),
        (5, 'expected a duration like "5s", got 5'),
        (1.5, 'expected a duration like "5s", got 1.5'),
        ("5", 'expected a duration like "5s", got "5"'),
        ("", 'expected a duration like "5s", got ""'),
        ("-5s", 'expected a duration like "5s", got "-5s"'),
        ("5 s", 'expected a duration like "5s", got "5 s"'),
        ("5d", 'expected a duration like "5s", got "5d"'),
        ("s", 'expected a duration like "5s", got "s"'),
        (None, 'expected a duration like "5s", got null'),
        (True, 'expected a duration like "5s", got true'),
    ],
)
def test_parse_duration_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)  # type: ignore[arg-type]
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0004, "0s"),
        (0.5, "500ms"),
        (1, "1s"),
        (1.25, "1.25s"),
        (30, "30s"),
        (90, "1m30s"),
        (120, "2m"),
        (3600, "1h"),
        (3723, "1h2m3s"),
        (61.5, "1m1.5s"),
        (7200.001, "2h1ms"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert math.isclose(parse_duration(text), round(seconds, 3))


@pytest.mark.parametrize("seconds", [-1, math.inf, math.nan])
def test_format_duration_rejects(seconds: float) -> None:
    with pytest.raises(ValueError):
        format_duration(seconds)


class _Timed(BaseModel):
    timeout: Duration = 2.0


def test_duration_type_parses_and_serialises() -> None:
    model = _Timed.model_validate({"timeout": "1m30s"})
    assert model.timeout == 90.0
    assert model.model_dump() == {"timeout": 90.0}
    assert model.model_dump(mode="json") == {"timeout": "1m30s"}
    assert _Timed.model_validate(model.model_dump(mode="json")) == model


def test_duration_type_accepts_seconds_from_python_but_not_from_the_file() -> None:
    assert _Timed(timeout=0.25).timeout == 0.25
    with pytest.raises(ValidationError):
        _Timed.model_validate({"timeout": 5}, context={FROM_FILE: True})
    with pytest.raises(ValidationError):
        _Timed(timeout=-1)


def test_duration_json_schema_is_a_string_with_a_pattern() -> None:
    schema = _Timed.model_json_schema()["properties"]["timeout"]
    assert schema["type"] == "string"
    assert schema["pattern"]
    assert "description" in schema
