"""Pipeline runs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "pipeline_runs",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("git_commit", sa.String(length=64), nullable=True),
        sa.Column("dirty", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("user_name", sa.String(length=255), nullable=False),
        sa.Column("jobs", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_pipeline_runs"),
        sa.UniqueConstraint("id", name="uq_pipeline_runs_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_pipeline_runs_git_commit_status", "pipeline_runs", ["git_commit", "status"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("pipeline_runs")
