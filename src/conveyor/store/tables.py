"""Table definitions of the state store (SQLAlchemy Core).

These describe the schema that the Alembic migrations in `migrations/versions`
create; the product never calls `metadata.create_all`. A test compares the two
so that they cannot drift apart.

A table's data columns come from its record (`conveyor.store.records`, read by
`conveyor.store.columns`); what is written here is only what a record does not
hold: insertion counters (`seq`, `id`), keys between tables, indexes.

Times are stored in UTC and come back as timezone-aware UTC datetimes on every
backend (SQLite has no time zone support, PostgreSQL uses `timestamptz`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from conveyor.store import columns, records

# Deterministic constraint names: later migrations can refer to them by name
# (SQLite's batch mode needs that to drop or alter a constraint).
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored in UTC.

    Naive datetimes are refused: guessing their zone is how audit trails end up
    an hour off.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to the state store")
        value = value.astimezone(UTC)
        # SQLite's DATETIME storage drops the zone anyway; store a plain UTC
        # value so that text comparison and ordering stay correct.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):  # pragma: no cover - driver contract
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _json() -> JSON:
    return JSON(none_as_null=True)


def _type(stored: columns.Stored) -> TypeEngine[Any]:
    kinds: dict[str, TypeEngine[Any]] = {
        "string": String(stored.spec.length),
        "text": Text(),
        "integer": Integer(),
        "big_integer": BigInteger(),
        "float": Float(),
        "flag": Integer(),  # 1 / 0
        "time": UTCDateTime(),
        "json": _json(),
    }
    return kinds[stored.kind]


def _columns(record: type) -> list[Column[Any]]:
    """The columns of `record`'s fields (`conveyor.store.columns`)."""
    return [
        Column(
            s.column,
            _type(s),
            primary_key=s.spec.key,
            nullable=s.nullable,
            autoincrement="auto" if s.spec.autoincrement is None else s.spec.autoincrement,
            server_default=s.spec.server_default,
        )
        for s in columns.stored(record)
    ]


def _cascade_from_deployments() -> ForeignKeyConstraint:
    """`deployment_id` refers to a deployment; its rows go when the deployment does."""
    return ForeignKeyConstraint(["deployment_id"], ["deployments.id"], ondelete="CASCADE")


# Releases are addressed by (service, id); `seq` records insertion order, the
# tie-break when two releases share a creation time.
releases = Table(
    "releases",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    *_columns(records.ReleaseRecord),
    UniqueConstraint("service", "id"),
    Index(None, "service", "source_digest"),
    Index(None, "service", "created_at"),
)

# `request`: a control request for the process running the deployment: "pause",
# "abort", "promote" or "promote_full" (`conveyor pause|abort|promote`).
deployments = Table(
    "deployments",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    *_columns(records.DeploymentRecord),
    UniqueConstraint("id"),
    Index(None, "environment", "started_at"),
    Index(None, "status"),
)

# The journal: one row per plan step, rewritten when a resumed run retries it.
steps = Table(
    "steps",
    metadata,
    *_columns(records.StepRecord),
    _cascade_from_deployments(),
)

instances = Table(
    "instances",
    metadata,
    *_columns(records.InstanceRecord),
    Index(None, "environment", "service"),
)

# Accessories started once per environment (`conveyor accessory start`, or a deploy).
accessories = Table("accessories", metadata, *_columns(records.AccessoryRecord))

# What an analysis measured: one row per snapshot (`MeasurementRecord.to_dict`).
# `run` counts the analyses of one step (a resumed or background analysis
# starts a new run).
measurements = Table(
    "measurements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    *_columns(records.MeasurementRecordRow),
    _cascade_from_deployments(),
    Index(None, "deployment_id", "step_index"),
    sqlite_autoincrement=True,
)

current_releases = Table(
    "current_releases",
    metadata,
    Column("environment", String(255), primary_key=True),
    Column("service", String(255), primary_key=True),
    Column("release_id", String(255), nullable=False),
    Column("deployment_id", String(255), nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
)

# The primary key on `environment` is what makes acquiring a lock atomic.
locks = Table("locks", metadata, *_columns(records.LockRecord))

events = Table(
    "events",
    metadata,
    *_columns(records.EventRecord),
    Index(None, "environment", "time"),
    Index(None, "deployment_id"),
    # AUTOINCREMENT: never reuse an id, API clients page through events by id.
    sqlite_autoincrement=True,
)

# Database backups: the file, what it holds (rows per table as of its snapshot)
# and the last verification. `deployment_id` is set for a release phase's backup.
backups = Table(
    "backups",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    *_columns(records.BackupRecord),
    UniqueConstraint("id"),
    Index(None, "database", "created_at"),
    sqlite_autoincrement=True,
)

# Pipeline runs: one row per `conveyor pipeline run`, its jobs (status, attempts,
# reports) in JSON. A run on a clean checkout counts for the releases of its commit.
pipeline_runs = Table(
    "pipeline_runs",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    *_columns(records.PipelineRunRecord),
    UniqueConstraint("id"),
    Index(None, "git_commit", "status"),
    sqlite_autoincrement=True,
)

# Approvals and rejections of deployments that wait in awaiting_approval.
approvals = Table(
    "approvals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    *_columns(records.ApprovalRecord),
    _cascade_from_deployments(),
    Index(None, "deployment_id"),
    sqlite_autoincrement=True,
)

# Notification deliveries: one row per event and target, delivered or failed.
notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    *_columns(records.NotificationRecord),
    Index(None, "deployment_id"),
    Index(None, "target", "environment"),
    sqlite_autoincrement=True,
)

# Runs of scheduled jobs (`conveyor agent`, `conveyor jobs run`), newest last.
job_runs = Table(
    "job_runs",
    metadata,
    *_columns(records.JobRunRecord),
    Index(None, "environment", "job", "started_at"),
    sqlite_autoincrement=True,
)

# API tokens of `conveyor server`: the sha256 of each token, never the token itself.
tokens = Table(
    "tokens",
    metadata,
    *_columns(records.TokenRecord),
    UniqueConstraint("token_hash"),
)

# What was asked of `conveyor server` that changes something, by whom, and the answer.
audit = Table(
    "audit",
    metadata,
    *_columns(records.AuditRecord),
    Index(None, "time"),
    sqlite_autoincrement=True,
)

# The alerts of `monitors:`: one row per environment and rule or probe, its latest state.
alerts = Table("alerts", metadata, *_columns(records.AlertRecord))
