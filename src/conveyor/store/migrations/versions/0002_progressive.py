"""Progressive delivery: control requests, warm instances, analysis measurements.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("request", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("request_by", sa.String(length=255), nullable=True))
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("warm_until", _utc(), nullable=True))
    op.create_table(
        "measurements",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.String(length=255), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("analysis", sa.String(length=255), nullable=False),
        sa.Column("run", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("time", _utc(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name="fk_measurements_deployment_id_deployments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_measurements"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_measurements_deployment_id_step_index",
        "measurements",
        ["deployment_id", "step_index"],
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("measurements")
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("warm_until")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("request_by")
        batch.drop_column("request")
