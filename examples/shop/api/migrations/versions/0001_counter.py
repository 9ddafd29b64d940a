"""The counter.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "counter",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
        sa.CheckConstraint("id = 1", name="one_counter"),
    )
    op.execute("INSERT INTO counter (id, value) VALUES (1, 0)")


def downgrade() -> None:
    op.drop_table("counter")
