"""Alembic environment of the shop: the URL is DATABASE_URL, online or offline (--sql)."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine


def url() -> str:
    raw = os.environ["DATABASE_URL"]
    # SQLAlchemy names the driver: postgresql+psycopg is psycopg 3.
    return raw.replace("postgresql://", "postgresql+psycopg://", 1).replace(
        "postgres://", "postgresql+psycopg://", 1
    )


if context.is_offline_mode():
    context.configure(url=url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url())
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
