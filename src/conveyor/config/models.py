"""The models of `conveyor.yml`.

Every model forbids unknown keys; the loader strips `x-` keys before validation.
Validators raise `problem(...)` errors whose message the loader shows as is, so
every message here is written for the person editing the file.
"""

from __future__ import annotations

import datetime
import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    WithJsonSchema,
    field_validator,
)

from conveyor.config.durations import Duration, describe_value, format_duration, problem
from conveyor.config.lint import LintSettings
from conveyor.errors import UsageError

__all__ = [
    "NAME_PATTERN",
    "PROJECT_PATTERN",
    "AnalysisTemplate",
    "BlueGreenStrategy",
    "CanaryStep",
    "CanaryStrategy",
    "Command",
    "CommandHealth",
    "ComparativeConfig",
    "Config",
    "EnvironmentConfig",
    "HealthConfig",
    "HttpHealth",
    "ReleasesConfig",
    "RouteConfig",
    "ServiceConfig",
    "ServiceOverride",
    "StrategyConfig",
    "StrategySpec",
    "StrategyType",
    "TcpHealth",
    "command_argv",
    "parse_listen",
]

NAME_PATTERN = r"^[a-z][a-z0-9-]*$"
PROJECT_PATTERN = r"^[a-z0-9-]+$"
_NAME = re.compile(NAME_PATTERN)
_PROJECT = re.compile(PROJECT_PATTERN)
_HOST = re.compile(r"^[A-Za-z0-9.-]+$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]+$")
_ROUTE_HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
_PERCENT = re.compile(r"^\d+%$")
_DIGITS = re.compile(r"^[+-]?\d+$")


# --- small value types -------------------------------------------------------------


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
        if isinstance(value, str) and _NAME.match(value):
            return value
        raise problem(
            f"invalid {kind} name {describe_value(value)}: "
            'use lowercase letters, digits and "-", starting with a letter'
        )

    return PlainValidator(check)


# Keys starting with "x-" are extensions the loader drops, so names never start with it.
_NAME_SCHEMA = WithJsonSchema({"type": "string", "pattern": r"^(?!x-)[a-z][a-z0-9-]*$"})
ServiceName = Annotated[str, _name_validator("service"), _NAME_SCHEMA]
EnvironmentName = Annotated[str, _name_validator("environment"), _NAME_SCHEMA]


def _check_project(value: object) -> str:
    if isinstance(value, str) and _PROJECT.match(value):
        return value
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
        elif isinstance(value, str) and _DIGITS.match(value.strip()):
            number = int(value)  # interpolated values arrive as text
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
StatusCode = Annotated[
    int,
    _int_validator(100, 599),
    WithJsonSchema({"type": "integer", "minimum": 100, "maximum": 599}),
]


def _check_step(value: object) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        text = value.strip()
        if _PERCENT.match(text):
            return text
        if text.isdigit():
            return int(text)
    raise problem(
        f'expected an integer >= 0 or a percentage like "25%", got {describe_value(value)}'
    )


Step = Annotated[
    int | str,
    PlainValidator(_check_step),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": r"^\d+%$"}]}
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
    return value


RelativePath = Annotated[
    str, PlainValidator(_check_relative_path), WithJsonSchema({"type": "string", "minLength": 1})
]


def _check_command(value: object) -> str | list[str]:
    if isinstance(value, str):
        if not value.strip():
            raise problem("expected a command, got an empty string")
        return value
    if isinstance(value, list):
        if not value:
            raise problem("expected a command, got an empty list")
        argv = []
        for index, item in enumerate(value):
            text = _scalar_text(item)
            if text is None:
                raise problem(f"expected a string, got {describe_value(item)}", at=str(index))
            argv.append(text)
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


def parse_listen(text: str) -> tuple[str, int]:
    """Split a listen address into (host, port).

    "127.0.0.1:8080" -> ("127.0.0.1", 8080); "[::1]:80" -> ("::1", 80);
    ":8080" -> ("", 8080), where "" means all interfaces. Raises ValueError.
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(
                f'expected "[ipv6]:port" like "[::1]:8080", got {describe_value(text)}'
            )
        host, port_text = text[1:end], text[end + 2 :]
        if not _IPV6.match(host):
            raise ValueError(f"invalid IPv6 address {describe_value(host)}")
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise ValueError(
                'expected "host:port" like "127.0.0.1:8080" (or ":8080" for all interfaces), '
                f"got {describe_value(text)}"
            )
        if ":" in host:
            raise ValueError(
                f'put an IPv6 address in brackets, like "[::1]:8080", got {describe_value(text)}'
            )
        if host and not _HOST.match(host):
            raise ValueError(f"invalid host {describe_value(host)}")
    if not port_text.isdigit():
        raise ValueError(f'expected a port number after the last ":", got {describe_value(text)}')
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"expected a port between 1 and 65535, got {port}")
    return host, port


def _check_listen(value: object) -> str:
    if not isinstance(value, str):
        raise problem(
            'expected "host:port" like "127.0.0.1:8080" (or ":8080" for all interfaces), '
            f"got {describe_value(value)}"
        )
    try:
        parse_listen(value.strip())
    except ValueError as exc:
        raise problem(str(exc)) from None
    return value.strip()


ListenAddress = Annotated[
    str,
    PlainValidator(_check_listen),
    WithJsonSchema(
        {"type": "string", "pattern": r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):[0-9]{1,5}$"}
    ),
]


def _check_analysis_name(value: object) -> str:
    if isinstance(value, str) and _NAME.match(value):
        return value
    raise problem(
        f"expected the name of an analysis from the top-level `analysis:`, got "
        f"{describe_value(value)}"
    )


AnalysisName = Annotated[
    str, PlainValidator(_check_analysis_name), WithJsonSchema({"type": "string"})
]


def _check_pause(value: object) -> float | None:
    if value is None or value == {}:
        return None  # until `conveyor promote`
    try:
        return _validate_pause_duration(value)
    except ValueError:
        raise problem(
            f'expected a duration like "30s", or {{}} to wait for `conveyor promote`, got '
            f"{describe_value(value)}"
        ) from None


def _validate_pause_duration(value: object) -> float:
    from conveyor.config.durations import parse_duration

    if not isinstance(value, str):
        raise ValueError(value)
    return parse_duration(value)


PauseValue = Annotated[
    float | None,
    PlainValidator(_check_pause),
    WithJsonSchema(
        {"anyOf": [{"type": "string"}, {"type": "object", "maxProperties": 0}, {"type": "null"}]}
    ),
]


def _check_fraction(value: object) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        scale = 0.01 if text.endswith("%") else 1.0
        try:
            number = float(text.removesuffix("%")) * scale
        except ValueError:
            number = None
    if number is None or not number >= 0:
        raise problem(
            f'expected a number >= 0 or a percentage like "20%", got {describe_value(value)}'
        )
    return number


Fraction = Annotated[
    float,
    PlainValidator(_check_fraction),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}]}),
]


# --- models --------------------------------------------------------------------------


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


class ReleasesConfig(_Model):
    """How releases are kept on disk."""

    model_config = ConfigDict(extra="forbid")

    keep: PositiveInt = Field(
        5,
        description="How many releases to keep per service (at least 1), applied after every "
        "successful deploy and by `conveyor prune`. Never deleted: a release an environment "
        "serves, keeps warm or would roll back to, and the newest build. Releases that never "
        "deployed successfully go first.",
    )


class RouteConfig(_Model):
    """Which requests of the environment's listener reach this service."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        "/",
        description='Path prefix the service receives, starting with "/". "/" matches everything.',
    )
    host: str | None = Field(
        None,
        description='Host name the request must carry (e.g. "api.example.com", or '
        '"*.example.com"); null matches any host.',
    )
    strip_prefix: bool = Field(
        False,
        description="Remove the path prefix before passing the request to the service.",
    )

    @field_validator("path")
    @classmethod
    def _path_is_absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise problem(f'expected a path starting with "/", got {describe_value(value)}')
        return value

    @field_validator("host")
    @classmethod
    def _host_is_a_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host = value.strip().lower()
        if not _ROUTE_HOST.match(host):
            raise problem(
                'expected a host name like "api.example.com" (no scheme, port or path), '
                f"got {describe_value(value)}"
            )
        return host


class _HealthBase(_Model):
    timeout: Duration = _duration_field(2.0, "How long one check may take before it fails")
    interval: Duration = _duration_field(1.0, "Time between two checks")
    healthy_threshold: PositiveInt = Field(
        1, description="Consecutive passing checks needed before the instance counts as healthy."
    )


class HttpHealth(_HealthBase):
    """Healthy when an HTTP GET on the instance answers with the expected status."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["http"] = Field("http", description="Check with an HTTP GET request.")
    path: str = Field("/health", description='Path requested on the instance, starting with "/".')
    expect_status: StatusCode = Field(200, description="HTTP status the check must answer with.")

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
    with the instance's environment plus PORT."""

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


def _check_database_url(value: object) -> str:
    from conveyor.databases.urls import DatabaseUrlError, parse_database_url

    if not isinstance(value, str) or not value.strip():
        raise problem(
            'expected a database URL like "postgresql://user:password@host:5432/name", '
            f"got {describe_value(value)}"
        )
    try:
        parse_database_url(value)
    except DatabaseUrlError as exc:
        raise problem(str(exc)) from None
    return value


DatabaseUrlText = Annotated[
    str,
    PlainValidator(_check_database_url),
    WithJsonSchema(
        {"type": "string", "pattern": "^(postgres(ql)?|mysql|mariadb|sqlite)(\\+\\w+)?://"}
    ),
]
DatabaseName = Annotated[str, _name_validator("database"), _NAME_SCHEMA]


class BackupSettings(_Model):
    """When and how a database is backed up, and how many backups are kept."""

    model_config = ConfigDict(extra="forbid")

    before_migrate: bool = Field(
        True, description="Take (and verify) a backup before every migration of this database."
    )
    keep: PositiveInt = Field(
        10, description="Backups kept per database; older ones are deleted after a new one."
    )
    directory: RelativePath | None = Field(
        None,
        description="Where backup files go, relative to conveyor.yml "
        "(default: .conveyor/backups/<database>).",
    )
    verify: Literal["read", "restore"] = Field(
        "read",
        description='"read": read the whole backup back (pg_restore to /dev/null, the dump\'s '
        'end, SQLite\'s integrity check); "restore": restore it into a scratch database and '
        "compare every table's row count.",
    )


class DatabaseConfig(_Model):
    """A database the services use: where it is, and its backups."""

    model_config = ConfigDict(extra="forbid")

    url: DatabaseUrlText = Field(
        description='"postgresql://user:password@host:5432/name", "mysql://..." (MariaDB too) '
        'or "sqlite:///path/relative/to/conveyor.yml.db"; use ${VAR} for the password.'
    )
    backup: BackupSettings = Field(default_factory=BackupSettings, description="Backups.")
    lint: LintSettings = Field(
        default_factory=LintSettings,
        description="The migration safety check: table sizes, and findings allowed.",
    )


class DatabaseOverride(_Model):
    """A database's settings that differ in one environment (its own server, usually)."""

    model_config = ConfigDict(extra="forbid")

    url: DatabaseUrlText = Field(description="The database URL in this environment.")


class SqlDirectory(_Model):
    """A directory of .sql files: the files a release has and the running one has not."""

    model_config = ConfigDict(extra="forbid")

    directory: RelativePath = Field(
        description="Directory of .sql files, relative to the service's source directory."
    )


class MigrateConfig(_Model):
    """The release phase: the command that migrates a database to a new release's schema."""

    model_config = ConfigDict(extra="forbid")

    command: Command = Field(
        description='e.g. "alembic upgrade head" or "python manage.py migrate --noinput"; run '
        "in the new release's directory with its environment and DATABASE_URL."
    )
    database: DatabaseName = Field(description="The database it migrates (under databases:).")
    sql_preview: Command | SqlDirectory | None = Field(
        None,
        description="How to get the SQL the migration will run, for the safety check: a "
        'command that prints it ("alembic upgrade head --sql") or {directory: migrations}.',
    )
    pending: Command | bool = Field(
        True,
        description="Whether anything is pending, asked before the backup and the migration "
        "(skipped when nothing is): true asks the tool (Django's migrate --check, Alembic's "
        "current against heads); a command exits 0 when nothing is pending and 1 when "
        "something is; false always backs up and migrates.",
    )
    on_failure: Literal["keep", "restore"] = Field(
        "keep",
        description='What to do with the database when the migration fails: "keep" it as the '
        'migration left it, or "restore" the backup taken before (needed where DDL is not '
        "transactional, as in MySQL).",
    )
    timeout: Duration = _duration_field(600.0, "How long the migration may run")


Severity = Literal["critical", "high", "medium", "low", "none"]
JobName = Annotated[str, _name_validator("job"), _NAME_SCHEMA]


class JunitReport(_Model):
    """JUnit XML (pytest --junitxml, jest-junit, ...): the job fails on failed tests."""

    model_config = ConfigDict(extra="forbid")

    junit: RelativePath = Field(description="The report file, relative to the job's workdir.")


class CoberturaReport(_Model):
    """Cobertura XML (coverage xml, jest --coverageReporters=cobertura): a coverage gate."""

    model_config = ConfigDict(extra="forbid")

    cobertura: RelativePath = Field(description="The report file, relative to the job's workdir.")
    min_coverage: Fraction | None = Field(
        None, description='Line coverage below this fails the job ("80%" or 0.8).'
    )


class _FindingsReport(_Model):
    fail_on: Severity = Field(
        "high",
        description='The job fails on a finding of this severity or worse; "none": never.',
    )


class SarifReport(_FindingsReport):
    """SARIF 2.1 (ruff, semgrep, bandit, CodeQL ...): findings by severity."""

    model_config = ConfigDict(extra="forbid")

    sarif: RelativePath = Field(description="The report file, relative to the job's workdir.")


class PipAuditReport(_FindingsReport):
    """`pip-audit -f json`: vulnerable dependencies (pip-audit gives no severity: each is
    taken as high)."""

    model_config = ConfigDict(extra="forbid")

    pip_audit: RelativePath = Field(description="The report file, relative to the job's workdir.")


class NpmAuditReport(_FindingsReport):
    """`npm audit --json` (npm 7+): vulnerable packages by severity."""

    model_config = ConfigDict(extra="forbid")

    npm_audit: RelativePath = Field(description="The report file, relative to the job's workdir.")


REPORT_KINDS = ("junit", "cobertura", "sarif", "pip_audit", "npm_audit")


def _report_kind(value: object) -> str | None:
    if isinstance(value, BaseModel):
        return next((k for k in REPORT_KINDS if hasattr(value, k)), None)
    if isinstance(value, dict):
        return next((k for k in REPORT_KINDS if k in value), None)
    return None


def _check_report_kind(value: object) -> object:
    if isinstance(value, BaseModel):
        return value
    if not isinstance(value, dict):
        raise problem(f"expected a mapping like {{junit: report.xml}}, got {describe_value(value)}")
    kinds = [k for k in REPORT_KINDS if k in value]
    if len(kinds) != 1:
        got = ", ".join(str(k) for k in value) or "nothing"
        raise problem(
            "expected one of junit, cobertura, sarif, pip_audit or npm_audit, got "
            + (got if not kinds else " and ".join(kinds))
        )
    return value


ReportConfig = Annotated[
    Annotated[JunitReport, Tag("junit")]
    | Annotated[CoberturaReport, Tag("cobertura")]
    | Annotated[SarifReport, Tag("sarif")]
    | Annotated[PipAuditReport, Tag("pip_audit")]
    | Annotated[NpmAuditReport, Tag("npm_audit")],
    Discriminator(_report_kind),
    BeforeValidator(_check_report_kind),
]


class JobConfig(_Model):
    """One job of the pipeline: a command, what it needs first, the reports it writes."""

    model_config = ConfigDict(extra="forbid")

    run: Command = Field(
        description="The command: a string (run by /bin/sh -c) or a list of strings (argv)."
    )
    needs: list[JobName] = Field(
        default_factory=list, description="Jobs that must pass before this one starts."
    )
    env: Env = Field(default_factory=dict, description="Environment variables of the job.")
    workdir: RelativePath = Field(
        ".", description="Where the command runs, relative to conveyor.yml."
    )
    timeout: Duration = _duration_field(1800.0, "How long one attempt may run")
    retries: NonNegativeInt = Field(
        0, description="Attempts after the first when the job fails (flaky tools, networks)."
    )
    reports: list[ReportConfig] = Field(
        default_factory=list,
        description="Report files the job writes: junit, cobertura (min_coverage), sarif, "
        "pip_audit or npm_audit (fail_on).",
    )


class PipelineConfig(_Model):
    """The checks every release goes through: lint, tests, audits, coverage, build."""

    model_config = ConfigDict(extra="forbid")

    jobs: dict[JobName, JobConfig] = Field(description="The jobs, by name.")
    parallel: PositiveInt = Field(
        4, description="How many jobs run at the same time at most (as the needs allow)."
    )


def _check_release_path(value: object) -> str:
    text = _check_relative_path(value)
    parts = PurePosixPath(text).parts
    if ".." in parts:
        raise problem(f"expected a path inside the release, got {describe_value(value)}")
    return PurePosixPath(text).as_posix()


ReleasePath = Annotated[
    str, PlainValidator(_check_release_path), WithJsonSchema({"type": "string", "minLength": 1})
]


class DependenciesConfig(_Model):
    """What installs a service's dependencies, and what they are made of: a release whose
    `files` are unchanged gets the previous release's `paths` as hard links instead."""

    model_config = ConfigDict(extra="forbid")

    paths: list[ReleasePath] = Field(
        min_length=1,
        description='What the install creates in the release, e.g. [".venv"] or ["node_modules"].',
    )
    files: list[ReleasePath] = Field(
        min_length=1,
        description="The files that decide them (lock or requirements files), relative to "
        'the service source, e.g. ["requirements.txt"] or ["package-lock.json"].',
    )
    install: list[Command] = Field(
        min_length=1,
        description="Commands that install them, run in the release directory before `build` "
        "when no earlier release has the same files.",
    )


class ServiceConfig(_Model):
    """A program Conveyor builds into releases and runs as instances behind the router."""

    model_config = ConfigDict(extra="forbid")

    source: RelativePath = Field(
        ".", description="Directory with the service's code, relative to conveyor.yml."
    )
    include: list[RelativePath] = Field(
        default_factory=list,
        description="Extra files or directories, relative to conveyor.yml, copied into the "
        "release root when they exist.",
    )
    exclude: list[str] = Field(
        default_factory=list,
        description='Patterns of files left out of the release (gitignore-like: "tests/", '
        '"*.md", "docs/**"). The config file and .conveyor/ are always left out.',
    )
    dependencies: DependenciesConfig | None = Field(
        None,
        description="Dependency install (a virtualenv, node_modules) reused from the previous "
        "release, by hard links, while its lock or requirements files are unchanged.",
    )
    build: list[Command] = Field(
        default_factory=list,
        description="Commands run in the release directory to build it, in order, with the "
        "service's env. Each is a string (run by /bin/sh -c) or a list of strings (argv).",
    )
    writable: list[ReleasePath] = Field(
        default_factory=list,
        description="Directories of the release the app writes to at run time (e.g. Next.js's "
        '".next/cache"): left writable and out of the release digest. Everything else is sealed.',
    )
    run: Command = Field(
        description="Command that starts one instance: a string (run by /bin/sh -c) or a list "
        "of strings (argv). It must listen on the port given in $PORT."
    )
    env: Env = Field(
        default_factory=dict,
        description="Environment variables of every instance. Numbers and booleans become "
        "strings. Environments can add to and override them.",
    )
    replicas: PositiveInt = Field(1, description="How many instances run (at least 1).")
    route: RouteConfig = Field(
        default_factory=RouteConfig,
        description='Which requests reach the service (default: path "/", any host).',
    )
    health: HealthConfig = Field(
        default_factory=TcpHealth,
        description='How to tell an instance is healthy (default: {type: tcp}). "type" is '
        '"http", "tcp" or "command".',
    )
    stop_timeout: Duration = _duration_field(
        10.0, "How long an instance has to exit after SIGTERM before it gets SIGKILL"
    )
    drain_timeout: Duration = _duration_field(
        30.0,
        "How long in-flight requests may take to finish once an instance stops receiving traffic",
    )
    deploy_timeout: Duration = _duration_field(
        120.0,
        "How long a new instance has to become healthy before the deploy fails and rolls back",
    )
    smoke: list[SmokeTest] = Field(
        default_factory=list,
        description="Tests run once per deploy on the first healthy instance of the new "
        "release, before it gets any traffic; a failure rolls the deploy back.",
    )
    migrate: MigrateConfig | None = Field(
        None,
        description="Migration run before any instance of a new release gets traffic, after a "
        "verified backup of its database.",
    )


StrategyType = Literal["immediate", "recreate", "rolling", "blue_green", "canary"]
STRATEGY_TYPES: tuple[str, ...] = ("immediate", "recreate", "rolling", "blue_green", "canary")
PROGRESSIVE = ("blue_green", "canary")


class StrategyConfig(_Model):
    """How a deploy replaces the running instances: immediate, recreate or rolling."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["immediate", "recreate", "rolling"] = Field(
        "rolling",
        description='"rolling" replaces instances a few at a time behind health checks; '
        '"immediate" starts all new instances, then switches traffic at once; '
        '"recreate" stops the old instances before starting new ones (downtime: for '
        "services that must never run twice).",
    )
    max_surge: Step = Field(
        1,
        description='How many instances may run above "replicas" during a rolling deploy: a '
        'number or a percentage of replicas like "25%".',
    )
    max_unavailable: Step = Field(
        0,
        description='How many instances may be missing below "replicas" during a rolling '
        'deploy: a number or a percentage of replicas like "25%".',
    )
    min_ready: Duration = _duration_field(
        0.0, "How long a new instance must stay healthy before it counts as ready"
    )


class _ProgressiveBase(_Model):
    min_ready: Duration = _duration_field(
        0.0, "How long a new instance must stay healthy before it counts as ready"
    )
    rollback_window: Duration = _duration_field(
        600.0,
        "How long the previous release's instances stay warm (running, no traffic) after a "
        "successful promotion; `conveyor rollback` inside it is a weight flip",
    )
    abort_scale_down_delay: Duration = _duration_field(
        0.0,
        "How long the new release's instances keep running, without traffic, after an abort "
        "(for a look at their logs and state)",
    )


class BlueGreenStrategy(_ProgressiveBase):
    """Start the whole new set beside the old one, then switch all traffic at once."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["blue_green"] = Field(description='"blue_green".')
    preview: ListenAddress | None = Field(
        None,
        description='Address where the new set is exposed before the switch, "host:port" '
        "(for smoke tests and the pre-promotion analysis); null: no preview.",
    )
    auto_promote: bool = Field(
        True,
        description="Switch traffic as soon as the new set is healthy (and the pre-promotion "
        "analysis passed); false: wait for `conveyor promote`.",
    )
    pre_promotion_analysis: AnalysisName | None = Field(
        None,
        description="Analysis (from the top-level `analysis:`) run on the preview's traffic "
        "before the switch; needs `preview`.",
    )
    post_promotion_analysis: AnalysisName | None = Field(
        None,
        description="Analysis run after the switch, on all the traffic (thresholds only: "
        "nothing is left to compare with); a failure switches traffic back.",
    )


class CanaryStep(_Model):
    """One step of a canary: exactly one of set_weight, pause, analysis."""

    model_config = ConfigDict(extra="forbid")

    set_weight: Annotated[int, _int_validator(0, 100)] | None = Field(
        None, description="Share of the traffic (0-100 %) the new release receives."
    )
    pause: PauseValue = Field(
        None,
        description='Wait this long ("30s"), or until `conveyor promote` ({}).',
    )
    analysis: AnalysisName | None = Field(
        None, description="Run this analysis (from the top-level `analysis:`) and wait for it."
    )

    def model_post_init(self, context: Any, /) -> None:
        given = [k for k in ("set_weight", "pause", "analysis") if k in self.model_fields_set]
        if len(given) != 1:
            raise problem(
                "each canary step is one of set_weight: N, pause: DURATION | {}, "
                f"analysis: NAME; got {', '.join(given) or 'nothing'}"
            )

    @property
    def kind(self) -> str:
        return next(k for k in ("set_weight", "pause", "analysis") if k in self.model_fields_set)


class CanaryStrategy(_ProgressiveBase):
    """Move traffic to the new release step by step, judged by analyses."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["canary"] = Field(description='"canary".')
    steps: list[CanaryStep] = Field(
        default_factory=lambda: [
            CanaryStep(set_weight=10),
            CanaryStep(pause=60.0),
            CanaryStep(set_weight=50),
            CanaryStep(pause=60.0),
        ],
        description="What the rollout does, in order; after the last step all traffic goes to "
        "the new release.",
    )
    baseline: bool = Field(
        False,
        description="Start fresh instances of the stable release that get the same share as "
        "the canary, so that analyses compare canary and baseline on equal traffic and age.",
    )
    analysis: AnalysisName | None = Field(
        None,
        description="Background analysis that runs from the first set_weight to the final "
        "promotion; a failure aborts the rollout.",
    )


StrategySpec = Annotated[
    StrategyConfig | BlueGreenStrategy | CanaryStrategy, Field(discriminator="type")
]


class ServiceOverride(_Model):
    """Settings of one service that differ in this environment."""

    model_config = ConfigDict(extra="forbid")

    replicas: PositiveInt | None = Field(
        None, description="Number of instances in this environment (replaces the service's)."
    )
    env: Env = Field(
        default_factory=dict,
        description="Environment variables merged over the service's and the environment's.",
    )


def _strategy_shorthand(value: object) -> object:
    if isinstance(value, str):
        return {"type": value}
    if isinstance(value, dict) and "type" not in value:
        return {"type": "rolling", **value}  # the default type may be left out
    return value


def _strategy_schema(schema: dict[str, Any]) -> None:
    # The file may say `strategy: rolling`; pydantic only sees the mapping form.
    ref = schema.pop("$ref", None)
    if ref is not None:
        schema["anyOf"] = [
            {"type": "string", "enum": list(STRATEGY_TYPES)},
            {"$ref": ref},
        ]
    one_of = schema.pop("oneOf", None)
    if one_of is not None:
        schema["anyOf"] = [{"type": "string", "enum": list(STRATEGY_TYPES)}, *one_of]


_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _check_clock(value: object) -> str:
    if isinstance(value, str) and _CLOCK.match(value.strip()):
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

    required: PositiveInt = Field(1, description="Approvals needed (distinct people).")
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


class HooksConfig(_Model):
    """Commands run around deploys, in the project's directory, with CONVEYOR_* variables."""

    model_config = ConfigDict(extra="forbid")

    pre_deploy: list[Command] = Field(
        default_factory=list,
        description="Before anything changes; a failure stops the deploy.",
    )
    post_deploy: list[Command] = Field(
        default_factory=list, description="After a deploy succeeded (a failure is reported)."
    )
    on_failure: list[Command] = Field(
        default_factory=list,
        description="After a deploy failed, was rolled back, aborted or rejected.",
    )
    on_rollback: list[Command] = Field(
        default_factory=list,
        description="After the previous releases were restored: `conveyor rollback`, or a "
        "deploy rolled back or aborted.",
    )
    timeout: Duration = _duration_field(300.0, "How long one hook command may run")


NotifyEvent = Literal[
    "started",
    "awaiting_approval",
    "approved",
    "succeeded",
    "failed",
    "aborted",
    "rolled_back",
    "rejected",
    "refused",
]


class _NotifyBase(_Model):
    events: list[NotifyEvent] = Field(
        default_factory=list, description="Only these events; empty: all of them."
    )
    environments: list[EnvironmentName] = Field(
        default_factory=list, description="Only these environments; empty: all of them."
    )


class WebhookTarget(_Model):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Where the JSON event is POSTed.")
    secret: str | None = Field(
        None,
        description="Signs the body: X-Conveyor-Signature: sha256=<HMAC-SHA256 hex of the body>.",
    )
    timeout: Duration = _duration_field(10.0, "How long one delivery may take")


class SlackTarget(_Model):
    model_config = ConfigDict(extra="forbid")

    webhook_url: str = Field(description="A Slack incoming webhook URL.")
    timeout: Duration = _duration_field(10.0, "How long one delivery may take")


class SmtpConfig(_Model):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(description="The SMTP server.")
    port: PositiveInt = Field(587, description="Its port (587: submission with STARTTLS).")
    username: str | None = Field(None, description="Login, when the server wants one.")
    password: str | None = Field(None, description="Password; use ${VAR}.")
    starttls: bool = Field(True, description="Upgrade to TLS before sending (and logging in).")
    ca_file: str | None = Field(
        None, description="CA certificates to trust for the server (default: the system's)."
    )
    timeout: Duration = _duration_field(15.0, "How long one delivery may take")


class EmailTarget(_Model):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    smtp: SmtpConfig = Field(description="How to send.")
    sender: str = Field(alias="from", description="The From address.")
    to: list[str] = Field(description="Recipients.")


class GithubTarget(_Model):
    model_config = ConfigDict(extra="forbid")

    repository: str = Field(description='"owner/name".')
    token: str = Field(description="A token allowed to write deployments; use ${VAR}.")
    api_url: str = Field("https://api.github.com", description="GitHub (Enterprise) API URL.")
    timeout: Duration = _duration_field(10.0, "How long one request may take")


class NotifyConfig(_NotifyBase):
    """One place deployment events go: exactly one of webhook, slack, email, github."""

    model_config = ConfigDict(extra="forbid")

    webhook: WebhookTarget | None = Field(None, description="POST the event as signed JSON.")
    slack: SlackTarget | None = Field(None, description="Post to a Slack incoming webhook.")
    email: EmailTarget | None = Field(None, description="Send an email over SMTP.")
    github: GithubTarget | None = Field(
        None, description="Record GitHub deployments and their statuses."
    )

    def model_post_init(self, context: Any, /) -> None:
        given = [k for k in ("webhook", "slack", "email", "github") if getattr(self, k)]
        if len(given) != 1:
            raise problem(
                "each notify target is one of webhook, slack, email or github; got "
                + (" and ".join(given) or "none")
            )

    @property
    def kind(self) -> str:
        return next(k for k in ("webhook", "slack", "email", "github") if getattr(self, k))


class EnvironmentConfig(_Model):
    """A place the services are deployed to (staging, production, ...)."""

    model_config = ConfigDict(extra="forbid")

    listen: ListenAddress = Field(
        description='Address the router listens on, "host:port": "127.0.0.1:8080", '
        '"[::1]:8080", or ":8080" for all interfaces.'
    )
    url: str | None = Field(
        None,
        description="Public URL of the environment, starting with http:// or https://. "
        'Default: "http://<listen host or 127.0.0.1>:<port>".',
    )
    router: Literal["caddy", "haproxy"] = Field(
        "caddy",
        description='Router that sends traffic to instances: "caddy" (embedded, the default) or '
        '"haproxy" (from the OS packages; changes weights without reloading).',
    )
    strategy: Annotated[StrategySpec, BeforeValidator(_strategy_shorthand)] = Field(
        default_factory=StrategyConfig,
        description='Deploy strategy: "rolling", "immediate", "recreate", "blue_green" or '
        '"canary", or a mapping with "type" and its settings.',
        json_schema_extra=_strategy_schema,
    )
    env: Env = Field(
        default_factory=dict,
        description="Environment variables of every instance in this environment, merged over "
        "each service's env.",
    )
    services: dict[ServiceName, ServiceOverride] = Field(
        default_factory=dict,
        description="Per-service settings for this environment, by service name.",
    )
    databases: dict[DatabaseName, DatabaseOverride] = Field(
        default_factory=dict,
        description="Per-database settings for this environment (its URL), by database name.",
    )
    require_pipeline: bool = Field(
        False,
        description="Deploy only releases whose commit passed the pipeline (`--force` "
        "overrides, recorded).",
    )
    promote_from: EnvironmentName | None = Field(
        None,
        description="Only releases that succeeded in this environment may be deployed here "
        "(`conveyor promote SOURCE THIS`).",
    )
    branches: list[str] = Field(
        default_factory=list,
        description='Git branches (fnmatch patterns, "release/*") whose commits may be '
        "deployed here; empty: any.",
    )
    windows: list[WindowConfig] = Field(
        default_factory=list,
        description="When deploys may start; empty: any time (`--override-window` overrides, "
        "recorded).",
    )
    freeze: list[FreezeConfig] = Field(
        default_factory=list, description="Date ranges without deploys."
    )
    approvals: ApprovalsConfig | None = Field(
        None, description="Manual approval before a deploy starts."
    )
    hooks: HooksConfig | None = Field(
        None, description="This environment's hooks, run after the project's."
    )

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")) or value in ("http://", "https://"):
            raise problem(
                f"expected a URL starting with http:// or https://, got {describe_value(value)}"
            )
        return value

    @property
    def listen_host(self) -> str:
        """The host part of `listen` without brackets; "" means all interfaces."""
        return parse_listen(self.listen)[0]

    @property
    def listen_port(self) -> int:
        """The port part of `listen`."""
        return parse_listen(self.listen)[1]

    @property
    def effective_url(self) -> str:
        """`url`, else `http://<listen host or 127.0.0.1>:<port>`."""
        if self.url is not None:
            return self.url
        host = self.listen_host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.listen_port}"


class ComparativeConfig(_Model):
    """The sequential comparison of the canary with the baseline or the stable release."""

    model_config = ConfigDict(extra="forbid")

    against: Literal["baseline", "stable"] | None = Field(
        None,
        description='"baseline" or "stable"; default: "baseline" when the canary strategy '
        'starts one (baseline: true), else "stable".',
    )
    error_rate: bool = Field(True, description="Compare the share of 5xx responses.")
    latency: bool = Field(True, description="Compare the share of slow responses.")
    max_relative_increase: Fraction = Field(
        0.2,
        description="Tolerance: a canary with up to this much more errors or slow requests "
        'than the compared release is no worse ("20%" or 0.2).',
    )
    latency_quantile: Fraction = Field(
        0.95,
        description="A request is slow above this quantile of the compared release (0.95).",
    )
    max_latency_increase: Fraction = Field(
        0.1, description='Latency margin over that quantile before a request is slow ("10%").'
    )
    min_reference_samples: PositiveInt = Field(
        100,
        description="Requests of the compared release needed before latencies are compared.",
    )


class AnalysisTemplate(_Model):
    """How a release is judged from live metrics (see docs/analysis.md)."""

    model_config = ConfigDict(extra="forbid")

    interval: Duration = _duration_field(1.0, "Time between two measurements")
    duration: Duration = _duration_field(
        60.0, "The analysis passes at the first measurement after this with enough traffic"
    )
    max_duration: Duration | None = Field(
        None,
        description="With too little traffic until then, the analysis ends inconclusive "
        '(default: 3 times "duration").',
    )
    min_requests: PositiveInt = Field(
        100, description="Requests each judged release needs before the analysis can pass."
    )
    thresholds: list[str] = Field(
        default_factory=list,
        description='Absolute limits on the new release: "error_rate < 1%", "p95 < 500ms".',
    )
    comparative: ComparativeConfig | bool = Field(
        True,
        description="Sequential comparison with the baseline or stable release (true, false, "
        "or a mapping of settings).",
    )
    alpha: Fraction = Field(
        0.01,
        description='Highest probability of aborting a release that is no worse ("1%").',
    )
    on_inconclusive: Literal["pause", "fail"] = Field(
        "pause", description='What an inconclusive analysis does: "pause" or "fail".'
    )
    metrics: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Extra metrics from Prometheus, an HTTP endpoint or a command, each with "
        "a condition (see docs/analysis.md).",
    )

    def model_post_init(self, context: Any, /) -> None:
        from conveyor.analysis import AnalysisSpecError

        try:
            self.spec_dict("baseline")
            self.spec_dict("stable")
        except AnalysisSpecError as error:
            raise problem(str(error)) from None

    def spec_dict(self, default_against: str, *, comparative: bool = True) -> dict[str, Any]:
        """The `AnalysisSpec.from_dict` form; `default_against` fills `comparative.against`.

        Raises `AnalysisSpecError` when the settings do not make a valid spec.
        """
        from conveyor.analysis import AnalysisSpec

        data: dict[str, Any] = {
            "interval": self.interval,
            "duration": self.duration,
            "max_duration": self.max_duration
            if self.max_duration is not None
            else 3 * self.duration,
            "min_requests": self.min_requests,
            "thresholds": list(self.thresholds),
            "alpha": self.alpha,
            "on_inconclusive": self.on_inconclusive,
        }
        if self.metrics:
            data["metrics"] = [dict(m) for m in self.metrics]
        settings = self.comparative
        if not comparative or settings is False:
            data["comparative"] = None
        else:
            chosen = settings if isinstance(settings, ComparativeConfig) else ComparativeConfig()
            values = chosen.model_dump()
            values["against"] = values["against"] or default_against
            data["comparative"] = values
        AnalysisSpec.from_dict(data)  # raises on a bad combination
        return data


class Config(_Model):
    """conveyor.yml: the services of a project and the environments they are deployed to."""

    model_config = ConfigDict(extra="forbid")

    project: ProjectName = Field(
        description='Project name: lowercase letters, digits and "-". It names processes, '
        "routes and the state."
    )
    releases: ReleasesConfig = Field(
        default_factory=ReleasesConfig, description="How releases are kept on disk."
    )
    services: dict[ServiceName, ServiceConfig] = Field(
        description='The services, by name (lowercase letters, digits and "-", starting with a '
        "letter). At least one."
    )
    environments: dict[EnvironmentName, EnvironmentConfig] = Field(
        description='The environments, by name (lowercase letters, digits and "-", starting '
        "with a letter). At least one."
    )
    analysis: dict[AnalysisName, AnalysisTemplate] = Field(
        default_factory=dict,
        description="Analyses that judge a new release from live metrics, by name; canary and "
        "blue_green strategies refer to them.",
    )
    databases: dict[DatabaseName, DatabaseConfig] = Field(
        default_factory=dict,
        description="Databases the services use, by name: backups and migrations.",
    )
    pipeline: PipelineConfig | None = Field(
        None, description="The CI pipeline (`conveyor pipeline run`, `conveyor ci export`)."
    )
    groups: dict[str, list[str]] = Field(
        default_factory=dict,
        description='Groups of people, by name, for approvals ("@sre" in approvers).',
    )
    hooks: HooksConfig | None = Field(None, description="Commands run around every deploy.")
    notify: list[NotifyConfig] = Field(
        default_factory=list,
        description="Where deployment events go: webhook, slack, email, github.",
    )

    @field_validator("services")
    @classmethod
    def _some_services(cls, value: dict[str, ServiceConfig]) -> dict[str, ServiceConfig]:
        if not value:
            raise problem("at least one service is required")
        return value

    @field_validator("environments")
    @classmethod
    def _some_environments(
        cls, value: dict[str, EnvironmentConfig]
    ) -> dict[str, EnvironmentConfig]:
        if not value:
            raise problem("at least one environment is required")
        return value

    def environment(self, name: str) -> EnvironmentConfig:
        """The environment called `name`; `UsageError` when there is none."""
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(sorted(self.environments))
            raise UsageError(f'unknown environment "{name}" (environments are: {known})') from None

    def service(self, name: str) -> ServiceConfig:
        """The service called `name` as written, without environment overrides."""
        try:
            return self.services[name]
        except KeyError:
            known = ", ".join(sorted(self.services))
            raise UsageError(f'unknown service "{name}" (services are: {known})') from None

    def database_url(self, name: str, environment: str | None = None) -> str:
        """The URL of database `name`, as `environment` overrides it (or as written)."""
        try:
            database = self.databases[name]
        except KeyError:
            known = ", ".join(sorted(self.databases)) or "none defined"
            raise UsageError(f'unknown database "{name}" (databases: {known})') from None
        if environment is not None:
            override = self.environment(environment).databases.get(name)
            if override is not None:
                return override.url
        return database.url

    def service_for(self, environment: str, service: str) -> ServiceConfig:
        """The service as it runs in `environment`.

        `replicas` comes from the environment's override when it sets one; env is
        merged with later winning: service env < environment env < override env.
        """
        env_config = self.environment(environment)
        base = self.service(service)
        override = env_config.services.get(service)
        merged = {**base.env, **env_config.env}
        replicas = base.replicas
        if override is not None:
            merged.update(override.env)
            if override.replicas is not None:
                replicas = override.replicas
        return base.model_copy(update={"env": merged, "replicas": replicas}, deep=True)
