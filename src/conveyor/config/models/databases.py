"""Databases, their backups and the migration (release phase) of a service."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, PlainValidator, WithJsonSchema

from conveyor.config.durations import Duration, describe_value, problem
from conveyor.config.lint import LintSettings
from conveyor.config.models.base import _duration_field, _Model
from conveyor.config.models.values import (
    _NAME_SCHEMA,
    Command,
    PositiveInt,
    RelativePath,
    _name_validator,
)


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
