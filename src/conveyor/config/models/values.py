"""Small value types of `conveyor.yml`: names, numbers, environment variables, paths,
commands. Each validates and describes itself in the JSON Schema."""

from __future__ import annotations

import datetime
import math
import os
import re
from typing import Annotated

from pydantic import PlainValidator, WithJsonSchema

from conveyor.config.durations import describe_value, problem
from conveyor.config.limits import MAX_NAME, MAX_REPLICAS

NAME_PATTERN = rf"^[a-z][a-z0-9-]{{0,{MAX_NAME - 1}}}$"
PROJECT_PATTERN = rf"^[a-z0-9-]{{1,{MAX_NAME}}}$"
_NAME = re.compile(NAME_PATTERN.removesuffix("$"))  # used with fullmatch: no "\n" at the end
_PROJECT = re.compile(PROJECT_PATTERN.removesuffix("$"))
# ASCII digits only: Python's \d and int() also take "\u0665" (Arabic-Indic five).
_PERCENT = re.compile(r"[0-9]+%")
_DIGITS = re.compile(r"[+-]?[0-9]+")


# --- small value types -------------------------------------------------------------


def _ascii_int(text: str) -> int:
    """The integer `text` (matching `_DIGITS`); absurdly long ones as +-10**100, which every
    bound refuses (int() gives up at 4300 digits with Python's advice as the message)."""
    if len(text) <= 100:
        return int(text)
    return -(10**100) if text.startswith("-") else 10**100


def _scalar_text(value: object) -> str | None:
    """YAML scalars as the text a program sees (`true`, `8080`); None for anything else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, datetime.date):  # YAML reads 2024-01-31 as a date
        return value.isoformat()
    return None


def _name_validator(kind: str) -> PlainValidator:
    def check(value: object) -> str:
        if isinstance(value, str) and _NAME.fullmatch(value):
            return value
        if isinstance(value, str) and _NAME.fullmatch(value[:MAX_NAME]):
            raise problem(
                f"{kind} name too long ({len(value)} characters): at most {MAX_NAME} "
                "(it becomes part of paths, process and host names)"
            )
        raise problem(
            f"invalid {kind} name {describe_value(value)}: "
            'use lowercase letters, digits and "-", starting with a letter'
        )

    return PlainValidator(check)


# Keys starting with "x-" are extensions the loader drops, so names never start with it.
_NAME_SCHEMA = WithJsonSchema({"type": "string", "pattern": "^(?!x-)" + NAME_PATTERN[1:]})
ServiceName = Annotated[str, _name_validator("service"), _NAME_SCHEMA]
EnvironmentName = Annotated[str, _name_validator("environment"), _NAME_SCHEMA]


def _check_project(value: object) -> str:
    if isinstance(value, str) and _PROJECT.fullmatch(value):
        return value
    if isinstance(value, str) and _PROJECT.fullmatch(value[:MAX_NAME]):
        raise problem(f"project name too long ({len(value)} characters): at most {MAX_NAME}")
    raise problem(
        f'expected a project name of lowercase letters, digits and "-", got {describe_value(value)}'
    )


ProjectName = Annotated[
    str,
    PlainValidator(_check_project),
    WithJsonSchema({"type": "string", "pattern": PROJECT_PATTERN}),
]


def _int_validator(minimum: int, maximum: int | None = None) -> PlainValidator:
    if maximum is None:
        expected = f"an integer >= {minimum}"
    else:
        expected = f"an integer between {minimum} and {maximum}"

    def check(value: object) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
            number = _ascii_int(value.strip())  # interpolated values arrive as text
        if number is None:
            raise problem(f"expected an integer, got {describe_value(value)}")
        if number < minimum or (maximum is not None and number > maximum):
            raise problem(f"expected {expected}, got {describe_value(value)}")
        return number

    return PlainValidator(check)


PositiveInt = Annotated[int, _int_validator(1), WithJsonSchema({"type": "integer", "minimum": 1})]
NonNegativeInt = Annotated[
    int, _int_validator(0), WithJsonSchema({"type": "integer", "minimum": 0})
]
ReplicaCount = Annotated[
    int,
    _int_validator(1, MAX_REPLICAS),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_REPLICAS}),
]
StatusCode = Annotated[
    int,
    _int_validator(100, 599),
    WithJsonSchema({"type": "integer", "minimum": 100, "maximum": 599}),
]


def _check_step(value: object) -> int | str:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if _PERCENT.fullmatch(text):
            if _ascii_int(text[:-1]) > 100:
                raise problem(f"expected a percentage of at most 100%, got {describe_value(value)}")
            return text
        if _DIGITS.fullmatch(text):
            number = _ascii_int(text)
    if number is not None and 0 <= number <= MAX_REPLICAS:
        return number
    raise problem(
        f"expected an integer between 0 and {MAX_REPLICAS} or a percentage like "
        f'"25%", got {describe_value(value)}'
    )


def _check_batch(value: object) -> int | str:
    """A host batch: a count of hosts (1 or more) or a percentage of them (1% to 100%)."""
    expected = (
        f"expected a number of hosts between 1 and {MAX_REPLICAS} or a percentage of the "
        f'hosts from 1% to 100% (like "25%"), got {describe_value(value)}'
    )
    if isinstance(value, str) and _PERCENT.fullmatch(value.strip()):
        if not 1 <= _ascii_int(value.strip()[:-1]) <= 100:
            raise problem(expected)
        return value.strip()
    try:
        number = _check_step(value)
    except ValueError:
        raise problem(expected) from None
    if isinstance(number, str) or number < 1:
        raise problem(expected)
    return number


HostBatch = Annotated[
    int | str,
    PlainValidator(_check_batch),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_REPLICAS},
                {"type": "string", "pattern": r"^[0-9]+%$"},
            ]
        }
    ),
]


Step = Annotated[
    int | str,
    PlainValidator(_check_step),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_REPLICAS},
                {"type": "string", "pattern": r"^[0-9]+%$"},
            ]
        }
    ),
]


def _check_env_name(value: object) -> str:
    text = _scalar_text(value)
    if text and "=" not in text and "\0" not in text:
        return text
    raise problem(f"invalid environment variable name {describe_value(value)}")


def _check_env_value(value: object) -> str:
    text = _scalar_text(value)
    if text is not None:
        return text
    hint = ' (write "" for an empty value)' if value is None else ""
    raise problem(f"expected a string, got {describe_value(value)}{hint}")


EnvName = Annotated[str, PlainValidator(_check_env_name), WithJsonSchema({"type": "string"})]
EnvValue = Annotated[
    str,
    PlainValidator(_check_env_value),
    WithJsonSchema({"type": ["string", "number", "boolean"]}),
]
Env = dict[EnvName, EnvValue]


def _check_relative_path(value: object) -> str:
    if not isinstance(value, str):
        raise problem(f"expected a path, got {describe_value(value)}")
    if not value.strip():
        raise problem("expected a path, got an empty string")
    if value.startswith(("/", "~")):
        raise problem(f"expected a path relative to conveyor.yml, got {describe_value(value)}")
    if "\0" in value:
        raise problem("a NUL character cannot be part of a path")
    return value


def _check_project_path(value: object) -> str:
    text = _check_relative_path(value)
    if os.path.normpath(text).split("/")[0] == "..":
        raise problem(
            "expected a directory inside the project (the directory of conveyor.yml), "
            f"got {describe_value(value)}"
        )
    return text


ProjectPath = Annotated[
    str, PlainValidator(_check_project_path), WithJsonSchema({"type": "string", "minLength": 1})
]


RelativePath = Annotated[
    str, PlainValidator(_check_relative_path), WithJsonSchema({"type": "string", "minLength": 1})
]


def _check_command(value: object) -> str | list[str]:
    if isinstance(value, str):
        if not value.strip():
            raise problem("expected a command, got an empty string")
        if "\0" in value:
            raise problem("a NUL character cannot be passed to a program")
        return value
    if isinstance(value, list):
        if not value:
            raise problem("expected a command, got an empty list")
        argv = []
        for index, item in enumerate(value):
            text = _scalar_text(item)
            if text is None:
                raise problem(f"expected a string, got {describe_value(item)}", at=str(index))
            if "\0" in text:
                raise problem("a NUL character cannot be passed to a program", at=str(index))
            argv.append(text)
        if not argv[0].strip():
            raise problem("expected the program to run, got an empty string", at="0")
        return argv
    raise problem(
        "expected a command: a string (run by /bin/sh -c) or a list of strings (argv), "
        f"got {describe_value(value)}"
    )


Command = Annotated[
    str | list[str],
    PlainValidator(_check_command),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ],
            "description": "A shell command (run with /bin/sh -c) or an argv list (run as is).",
        }
    ),
]
"""A command: a string run through `/bin/sh -c`, or an argv list run as is."""


def command_argv(cmd: str | list[str]) -> list[str]:
    """The argv that runs `cmd`: a string goes through `/bin/sh -c`, a list is used as is."""
    if isinstance(cmd, str):
        return ["/bin/sh", "-c", cmd]
    return list(cmd)


def _check_analysis_name(value: object) -> str:
    if isinstance(value, str) and _NAME.fullmatch(value):
        return value
    raise problem(
        f"expected the name of an analysis from the top-level `analysis:`, got "
        f"{describe_value(value)}"
    )


AnalysisName = Annotated[
    str, PlainValidator(_check_analysis_name), WithJsonSchema({"type": "string"})
]


def _check_fraction(value: object) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        scale = 0.01 if text.endswith("%") else 1.0
        try:
            number = float(text.removesuffix("%")) * scale if text.isascii() else None
        except ValueError:
            number = None
    if number is None or not 0 <= number < math.inf:
        raise problem(
            f'expected a number >= 0 or a percentage like "20%", got {describe_value(value)}'
        )
    return number


Fraction = Annotated[
    float,
    PlainValidator(_check_fraction),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}]}),
]
