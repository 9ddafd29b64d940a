"""Initial schema: releases, deployments, steps, instances, current releases, locks, events.

Revision ID: 0001
Revises:
Create Date: 2026-05-10 00:00:00

Migrations use plain SQLAlchemy types, never the product's, so that what they
create stays fixed when `conveyor.store.tables` moves on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "releases",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("service", sa.String(length=255), nullable=False),
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(length=128), nullable=False),
        sa.Column("source_digest", sa.String(length=128), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("built_by", sa.String(length=255), nullable=False),
        sa.Column("git_commit", sa.String(length=64), nullable=True),
        sa.Column("git_commit_time", _utc(), nullable=True),
        sa.Column("build_log", sa.Text(), nullable=True),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_releases"),
        sa.UniqueConstraint("service", "id", name="uq_releases_service_id"),
    )
    op.create_index("ix_releases_service_source_digest", "releases", ["service", "source_digest"])
    op.create_index("ix_releases_service_created_at", "releases", ["service", "created_at"])

    op.create_table(
        "deployments",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("environment", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("strategy", sa.String(length=64), nullable=False),
        sa.Column("releases", sa.JSON(), nullable=False),
        sa.Column("previous", sa.JSON(), nullable=False),
        sa.Column("user_name", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_deployments"),
        sa.UniqueConstraint("id", name="uq_deployments_id"),
    )
    op.create_index(
        "ix_deployments_environment_started_at", "deployments", ["environment", "started_at"]
    )
    op.create_index("ix_deployments_status", "deployments", ["status"])

    op.create_table(
        "steps",
        sa.Column("deployment_id", sa.String(length=255), nullable=False),
        sa.Column("step_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name="fk_steps_deployment_id_deployments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("deployment_id", "step_index", name="pk_steps"),
    )

    op.create_table(
        "instances",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("environment", sa.String(length=255), nullable=False),
        sa.Column("service", sa.String(length=255), nullable=False),
        sa.Column("release_id", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("deployment_id", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_instances"),
    )
    op.create_index("ix_instances_environment_service", "instances", ["environment", "service"])

    op.create_table(
        "current_releases",
        sa.Column("environment", sa.String(length=255), nullable=False),
        sa.Column("service", sa.String(length=255), nullable=False),
        sa.Column("release_id", sa.String(length=255), nullable=False),
        sa.Column("deployment_id", sa.String(length=255), nullable=True),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("environment", "service", name="pk_current_releases"),
    )

    op.create_table(
        "locks",
        sa.Column("environment", sa.String(length=255), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("acquired_at", _utc(), nullable=False),
        sa.Column("deployment_id", sa.String(length=255), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("hostname", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("environment", name="pk_locks"),
    )

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("time", _utc(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("environment", sa.String(length=255), nullable=True),
        sa.Column("deployment_id", sa.String(length=255), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        # Ids are never reused (API clients page through events by id).
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_environment_time", "events", ["environment", "time"])
    op.create_index("ix_events_deployment_id", "events", ["deployment_id"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("events")
    op.drop_table("locks")
    op.drop_table("current_releases")
    op.drop_table("instances")
    op.drop_table("steps")
    op.drop_table("deployments")
    op.drop_table("releases")
