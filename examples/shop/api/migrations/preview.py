"""Print the SQL the next `alembic upgrade head` will run: from the database's current
revision, not from the start (`alembic upgrade head --sql` alone prints every migration).

Conveyor runs it as the api's `sql_preview` to check that the migration keeps the
release still serving working.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

HERE = Path(__file__).resolve().parent


def main() -> None:
    config = Config(str(HERE.parent / "alembic.ini"))
    url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
    with create_engine(url).connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    config.output_buffer = sys.stdout
    command.upgrade(config, f"{current}:head" if current else "head", sql=True)


if __name__ == "__main__":
    main()
