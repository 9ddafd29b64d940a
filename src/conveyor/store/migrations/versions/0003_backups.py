"""Database backups.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "backups",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("database", sa.String(length=255), nullable=False),
        sa.Column("environment", sa.String(length=255), nullable=True),
        sa.Column("engine", sa.String(length=32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("format", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("deployment_id", sa.String(length=255), nullable=True),
        sa.Column("server_version", sa.String(length=255), nullable=True),
        sa.Column("tables", sa.JSON(), nullable=False),
        sa.Column("verified_at", _utc(), nullable=True),
        sa.Column("verify_mode", sa.String(length=32), nullable=True),
        sa.Column("verify_ok", sa.Integer(), nullable=True),
        sa.Column("verify_detail", sa.Text(), nullable=True),
        sa.Column("verify_duration_s", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_backups"),
        sa.UniqueConstraint("id", name="uq_backups_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_backups_database_created_at", "backups", ["database", "created_at"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("backups")
