"""Instances have a host and an address (host:port).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 00:00:00

Instances recorded before this revision ran on the machine Conveyor runs on:
they read as host "local" at 127.0.0.1:<port>.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("instances") as batch:
        batch.add_column(
            sa.Column("host", sa.String(length=255), nullable=False, server_default="local")
        )
        batch.add_column(sa.Column("address", sa.String(length=255), nullable=True))
    instances = sa.table(
        "instances",
        sa.column("name", sa.String()),
        sa.column("port", sa.Integer()),
        sa.column("address", sa.String()),
    )
    conn = op.get_bind()
    # Row by row: string concatenation is spelled differently by each database.
    for name, port in conn.execute(sa.select(instances.c.name, instances.c.port)).all():
        conn.execute(
            instances.update().where(instances.c.name == name).values(address=f"127.0.0.1:{port}")
        )
    with op.batch_alter_table("instances") as batch:
        batch.alter_column("address", existing_type=sa.String(length=255), nullable=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("address")
        batch.drop_column("host")
