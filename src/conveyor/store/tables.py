"""Table definitions of the state store (SQLAlchemy Core).

These describe the schema that the Alembic migrations in `migrations/versions`
create; the product never calls `metadata.create_all`. A test compares the two
so that they cannot drift apart.

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
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

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


# Releases are addressed by (service, id); `seq` records insertion order, the
# tie-break when two releases share a creation time.
releases = Table(
    "releases",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("service", String(255), nullable=False),
    Column("id", String(255), nullable=False),
    Column("path", Text, nullable=False),
    Column("digest", String(128), nullable=False),
    Column("source_digest", String(128), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("built_by", String(255), nullable=False),
    Column("git_commit", String(64), nullable=True),
    Column("git_commit_time", UTCDateTime, nullable=True),
    Column("build_log", Text, nullable=True),
    Column("manifest", _json(), nullable=False),
    UniqueConstraint("service", "id"),
    Index(None, "service", "source_digest"),
    Index(None, "service", "created_at"),
)

deployments = Table(
    "deployments",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(255), nullable=False, unique=True),
    Column("environment", String(255), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("strategy", String(64), nullable=False),
    Column("releases", _json(), nullable=False),
    Column("previous", _json(), nullable=False),
    # "user" is reserved in PostgreSQL; a plain name keeps ad-hoc SQL simple.
    Column("user_name", String(255), nullable=False),
    Column("reason", Text, nullable=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("error", Text, nullable=True),
    Column("plan", _json(), nullable=False),
    # A control request for the process running the deployment: "pause",
    # "abort", "promote" or "promote_full" (`conveyor pause|abort|promote`).
    Column("request", String(32), nullable=True),
    Column("request_by", String(255), nullable=True),
    Index(None, "environment", "started_at"),
    Index(None, "status"),
)

# The journal: one row per plan step, rewritten when a resumed run retries it.
steps = Table(
    "steps",
    metadata,
    Column(
        "deployment_id",
        String(255),
        ForeignKey("deployments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("step_index", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(64), nullable=False),
    Column("description", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("error", Text, nullable=True),
    Column("attempt", Integer, nullable=False),
)

instances = Table(
    "instances",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("environment", String(255), nullable=False),
    Column("service", String(255), nullable=False),
    Column("release_id", String(255), nullable=False),
    Column("port", Integer, nullable=False),
    Column("state", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("deployment_id", String(255), nullable=True),
    Column("warm_until", UTCDateTime, nullable=True),  # end of its rollback window
    Index(None, "environment", "service"),
)

# What an analysis measured: one row per snapshot (`MeasurementRecord.to_dict`).
# `run` counts the analyses of one step (a resumed or background analysis
# starts a new run).
measurements = Table(
    "measurements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "deployment_id",
        String(255),
        ForeignKey("deployments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("step_index", Integer, nullable=False),
    Column("analysis", String(255), nullable=False),
    Column("run", Integer, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("time", UTCDateTime, nullable=False),
    Column("data", _json(), nullable=False),
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
locks = Table(
    "locks",
    metadata,
    Column("environment", String(255), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("deployment_id", String(255), nullable=True),
    Column("message", Text, nullable=True),
    Column("pid", Integer, nullable=True),
    Column("hostname", String(255), nullable=True),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", UTCDateTime, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("environment", String(255), nullable=True),
    Column("deployment_id", String(255), nullable=True),
    Column("data", _json(), nullable=False),
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
    Column("id", String(255), nullable=False, unique=True),
    Column("database", String(255), nullable=False),
    Column("environment", String(255), nullable=True),
    Column("engine", String(32), nullable=False),
    Column("url", Text, nullable=False),  # password redacted
    Column("path", Text, nullable=False),
    Column("format", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),  # bytes: backups exceed 2 GiB
    Column("sha256", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("reason", Text, nullable=True),
    Column("deployment_id", String(255), nullable=True),
    Column("server_version", String(255), nullable=True),
    Column("tables", _json(), nullable=False),
    Column("verified_at", UTCDateTime, nullable=True),
    Column("verify_mode", String(32), nullable=True),  # "read" | "restore"
    Column("verify_ok", Integer, nullable=True),  # 1 ok, 0 failed, NULL never verified
    Column("verify_detail", Text, nullable=True),
    Column("verify_duration_s", Float, nullable=True),
    Index(None, "database", "created_at"),
    sqlite_autoincrement=True,
)

# Pipeline runs: one row per `conveyor pipeline run`, its jobs (status, attempts,
# reports) in JSON. A run on a clean checkout counts for the releases of its commit.
pipeline_runs = Table(
    "pipeline_runs",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(255), nullable=False, unique=True),
    Column("git_commit", String(64), nullable=True),
    Column("dirty", Integer, nullable=False),  # 1: uncommitted changes were tested
    Column("release_id", String(255), nullable=True),  # --release
    Column("status", String(32), nullable=False),  # running | passed | failed
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("user_name", String(255), nullable=False),
    Column("jobs", _json(), nullable=False),
    Index(None, "git_commit", "status"),
    sqlite_autoincrement=True,
)

# Approvals and rejections of deployments that wait in awaiting_approval.
approvals = Table(
    "approvals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "deployment_id",
        String(255),
        ForeignKey("deployments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("user_name", String(255), nullable=False),
    Column("approve", Integer, nullable=False),  # 1 approve, 0 reject
    Column("message", Text, nullable=True),
    Column("at", UTCDateTime, nullable=False),
    Index(None, "deployment_id"),
    sqlite_autoincrement=True,
)

# Notification deliveries: one row per event and target, delivered or failed.
notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment_id", String(255), nullable=True),
    Column("environment", String(255), nullable=True),
    Column("target", String(255), nullable=False),  # "slack", "github owner/repo", ...
    Column("event", String(64), nullable=False),
    Column("status", String(32), nullable=False),  # delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("at", UTCDateTime, nullable=False),
    Column("data", _json(), nullable=False),  # e.g. {"github_deployment_id": 42}
    Index(None, "deployment_id"),
    Index(None, "target", "environment"),
    sqlite_autoincrement=True,
)
